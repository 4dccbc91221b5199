from __future__ import annotations

import base64
import os
import stat
import threading
from pathlib import Path

import pytest

from canopy_svc.core import crypto
from canopy_svc.core.crypto import DataCipher, DataKeyError, DecryptionError, mask
from canopy_svc.core.secret_files import DATA_KEY_FILE
from canopy_svc.core.settings import DATA_KEY_ENV, load_data_key

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


@pytest.fixture
def cipher() -> DataCipher:
    return DataCipher(KEY)


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_KEY_ENV, raising=False)


def test_roundtrip(cipher: DataCipher) -> None:
    for value in ["123-45-6789", "", "ünïcødé ✓", "x" * 10_000]:
        blob = cipher.encrypt(value, context=b"ssn")
        assert cipher.decrypt(blob, context=b"ssn") == value


def test_format_and_nonce_randomness(cipher: DataCipher) -> None:
    blobs = [cipher.encrypt("123456789", context=b"ssn") for _ in range(50)]
    assert all(b[0] == crypto.VERSION for b in blobs)
    assert all(len(b) == 1 + 12 + len("123456789") + 16 for b in blobs)
    assert len({b[1:13] for b in blobs}) == 50
    assert len(set(blobs)) == 50
    assert all(b"123456789" not in b for b in blobs)


def test_decrypt_accepts_memoryview(cipher: DataCipher) -> None:
    blob = cipher.encrypt("k", context=b"lithic_api_key")
    assert cipher.decrypt(memoryview(blob), context=b"lithic_api_key") == "k"  # type: ignore[arg-type]


def test_wrong_key(cipher: DataCipher) -> None:
    blob = cipher.encrypt("123456789", context=b"ssn")
    with pytest.raises(DecryptionError) as info:
        DataCipher(OTHER_KEY).decrypt(blob, context=b"ssn")
    assert "123456789" not in str(info.value)


def test_context_mismatch(cipher: DataCipher) -> None:
    blob = cipher.encrypt("sk_live_abc", context=b"lithic_api_key")
    with pytest.raises(DecryptionError):
        cipher.decrypt(blob, context=b"ssn")


@pytest.mark.parametrize("index", [0, 1, 12, 13, -1])
def test_tamper_detection(cipher: DataCipher, index: int) -> None:
    blob = bytearray(cipher.encrypt("123456789", context=b"ssn"))
    blob[index] ^= 0x01
    with pytest.raises(DecryptionError):
        cipher.decrypt(bytes(blob), context=b"ssn")


def test_truncated(cipher: DataCipher) -> None:
    blob = cipher.encrypt("123456789", context=b"ssn")
    for cut in (0, 1, 13, 28, len(blob) - 1):
        with pytest.raises(DecryptionError):
            cipher.decrypt(blob[:cut], context=b"ssn")


def test_lookup_hash(cipher: DataCipher) -> None:
    h = cipher.lookup_hash("123456789", context=b"ssn")
    assert len(h) == 32
    assert h == DataCipher(KEY).lookup_hash("123456789", context=b"ssn")
    assert h != cipher.lookup_hash("123456788", context=b"ssn")
    assert h != cipher.lookup_hash("123456789", context=b"lithic_api_key")
    assert h != DataCipher(OTHER_KEY).lookup_hash("123456789", context=b"ssn")
    with pytest.raises(ValueError):
        cipher.lookup_hash("x", context=b"a\x00b")


def test_subkeys_are_independent(cipher: DataCipher) -> None:
    # The master key must not be used directly for either purpose.
    assert cipher._hmac_key != KEY
    assert cipher._check_key not in (KEY, cipher._hmac_key)


def test_key_check_and_fingerprint(cipher: DataCipher) -> None:
    check = cipher.key_check()
    assert len(check) == 16
    assert check == DataCipher(KEY).key_check()
    assert check != DataCipher(OTHER_KEY).key_check()
    assert cipher.matches_key_check(check)
    assert not DataCipher(OTHER_KEY).matches_key_check(check)
    fp = cipher.fingerprint()
    assert len(fp) == 8 and int(fp, 16) >= 0
    assert fp != DataCipher(OTHER_KEY).fingerprint()
    assert fp in repr(cipher) and KEY.hex() not in repr(cipher)


@pytest.mark.parametrize("bad", [b"", b"short", bytes(31), bytes(33)])
def test_cipher_rejects_bad_key(bad: bytes) -> None:
    with pytest.raises(DataKeyError):
        DataCipher(bad)


@pytest.mark.parametrize("padded", [True, False])
def test_key_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, padded: bool) -> None:
    text = base64.urlsafe_b64encode(b"\xfb\xff" + bytes(30)).decode()  # exercises '-' and '_'
    assert text.endswith("=")
    monkeypatch.setenv(DATA_KEY_ENV, text if padded else text.rstrip("="))
    assert load_data_key(tmp_path) == b"\xfb\xff" + bytes(30)
    assert not (tmp_path / DATA_KEY_FILE).exists()


@pytest.mark.parametrize(
    "bad",
    [
        base64.urlsafe_b64encode(bytes(16)).decode(),  # 16 bytes
        base64.urlsafe_b64encode(bytes(33)).decode(),  # 33 bytes
        "not base64 at all!!",
        "A" * 42 + "=A",  # padding in the middle
    ],
)
def test_bad_env_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, bad: str) -> None:
    monkeypatch.setenv(DATA_KEY_ENV, bad)
    with pytest.raises(DataKeyError) as info:
        load_data_key(tmp_path)
    assert DATA_KEY_ENV in str(info.value)
    assert bad not in str(info.value)


def test_standard_alphabet_env_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(DATA_KEY_ENV, base64.b64encode(b"\xfb\xff" + bytes(30)).decode())
    assert load_data_key(tmp_path) == b"\xfb\xff" + bytes(30)


def test_empty_env_means_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(DATA_KEY_ENV, "")
    assert len(load_data_key(tmp_path)) == 32
    assert (tmp_path / DATA_KEY_FILE).exists()


def test_key_file_created_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = load_data_key(data_dir)
    path = data_dir / DATA_KEY_FILE
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_bytes()
    assert load_data_key(data_dir) == first
    assert path.read_bytes() == content
    assert [p.name for p in data_dir.iterdir()] == [DATA_KEY_FILE]  # no temp files left


def test_key_file_race(tmp_path: Path) -> None:
    results: list[bytes] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        results.append(load_data_key(tmp_path))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert os.listdir(tmp_path) == [DATA_KEY_FILE]


def test_corrupt_key_file(tmp_path: Path) -> None:
    path = tmp_path / DATA_KEY_FILE
    path.write_text("tooshort\n")
    with pytest.raises(DataKeyError) as info:
        load_data_key(tmp_path)
    assert "tooshort" not in str(info.value)


def test_mask() -> None:
    assert mask("sk_live_1234567890abcd") == "****abcd"
    assert mask("123456789") == "****6789"
    assert mask("12345678") == "****"
    assert mask("") == "****"
    assert mask("abcdefghijkl", keep=2) == "****kl"
    assert mask("abcdefghijkl", keep=0) == "****"
