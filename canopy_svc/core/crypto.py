"""Encryption at rest for sensitive columns (SSNs, Lithic API keys).

One 32-byte master key (Settings.data_key: env `CANOPY_SVC_DATA_KEY`, else the data folder's
`data-key`, canopy_svc/core/secret_files.py) is expanded with HKDF into independent subkeys, so the AES-GCM
key, the HMAC lookup key and the key check can never be confused with one another, and none of them
reveals the master key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32

VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16
_HEADER = bytes([VERSION])

_INFO_AEAD = b"canopy-svc aes-gcm v1"
_INFO_HMAC = b"canopy-svc hmac v1"
_INFO_CHECK = b"canopy-svc key-check v1"
_CHECK_LABEL = b"canopy-svc data key check"
_URLSAFE_TO_STD = str.maketrans("-_", "+/")


class DataKeyError(ValueError):
    """The data key is missing or malformed. Messages never include key material."""


class DecryptionError(Exception):
    """A stored value could not be decrypted (wrong key, tampering, or wrong column)."""


def _derive(master_key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master_key)


class DataCipher:
    """AES-256-GCM for values at rest plus keyed hashes for equality lookups."""

    __slots__ = ("_aead", "_check_key", "_hmac_key")

    def __init__(self, master_key: bytes) -> None:
        if not isinstance(master_key, bytes | bytearray) or len(master_key) != KEY_BYTES:
            raise DataKeyError(f"data key must be exactly {KEY_BYTES} bytes")
        master = bytes(master_key)
        # The master key itself is not kept: only the derived subkeys are needed.
        self._aead = AESGCM(_derive(master, _INFO_AEAD))
        self._hmac_key = _derive(master, _INFO_HMAC)
        self._check_key = _derive(master, _INFO_CHECK)

    def __repr__(self) -> str:
        return f"DataCipher(fingerprint={self.fingerprint()!r})"

    def encrypt(self, plaintext: str, *, context: bytes) -> bytes:
        """version (1) || nonce (12) || ciphertext+tag; `context` is bound as associated data."""
        return self.encrypt_bytes(plaintext.encode("utf-8"), context=context)

    def encrypt_bytes(self, plaintext: bytes, *, context: bytes) -> bytes:
        """`encrypt` for bytes (stored answers are JSON bytes already)."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        # Random 96-bit nonces are safe far beyond the number of rows this service will write.
        return _HEADER + nonce + self._aead.encrypt(nonce, plaintext, context)

    def decrypt(self, blob: bytes, *, context: bytes) -> str:
        plain = self.decrypt_bytes(blob, context=context)
        try:
            return plain.decode("utf-8")
        except UnicodeDecodeError:
            raise DecryptionError("decrypted value is not valid UTF-8") from None

    def decrypt_bytes(self, blob: bytes, *, context: bytes) -> bytes:
        data = bytes(blob)
        if len(data) < 1 + NONCE_BYTES + TAG_BYTES:
            raise DecryptionError("encrypted value is truncated")
        if data[0] != VERSION:
            raise DecryptionError(f"unsupported encrypted value version {data[0]}")
        nonce, sealed = data[1 : 1 + NONCE_BYTES], data[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, sealed, context)
        except InvalidTag:
            raise DecryptionError("cannot decrypt value: wrong data key, wrong column, or corrupted data") from None

    def lookup_hash(self, value: str, *, context: bytes) -> bytes:
        """Deterministic keyed hash, so equal values can be found without decrypting every row."""
        return self.keyed_hash(value.encode("utf-8"), context=context)

    def keyed_hash(self, data: bytes, *, context: bytes) -> bytes:
        """`lookup_hash` for bytes: HMAC-SHA256 of context, NUL, data."""
        # A NUL in the context would make (context, value) splits ambiguous.
        if b"\x00" in context:
            raise ValueError("context must not contain NUL bytes")
        return hmac.new(self._hmac_key, context + b"\x00" + data, hashlib.sha256).digest()

    def key_check(self) -> bytes:
        """16 bytes stored once in the database to detect a start with a different key."""
        return hmac.new(self._check_key, _CHECK_LABEL, hashlib.sha256).digest()[:16]

    def matches_key_check(self, stored: bytes) -> bool:
        return hmac.compare_digest(self.key_check(), bytes(stored))

    def fingerprint(self) -> str:
        """8 hex chars identifying the key, safe to log (derived one-way from key_check)."""
        return hashlib.sha256(self.key_check()).hexdigest()[:8]


def decode_key(raw: str, *, source: str) -> bytes:
    """Urlsafe base64 with or without padding -> 32 bytes; `source` names where it came from.

    The standard alphabet ('+', '/') is accepted too: both encode the same bits unambiguously.
    """
    text = raw.strip().rstrip("=").translate(_URLSAFE_TO_STD)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise DataKeyError(f"{source} is not valid urlsafe base64") from None
    if len(key) != KEY_BYTES:
        raise DataKeyError(
            f"{source} must decode to {KEY_BYTES} bytes, got {len(key)}; "
            "generate one with: python -c 'import base64,os;"
            "print(base64.urlsafe_b64encode(os.urandom(32)).decode())'"
        )
    return key


def generate_key_text() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode().rstrip("=")


def mask(value: str, keep: int = 4) -> str:
    """Show only the tail of a secret, and nothing when it is too short to hide the rest."""
    if keep > 0 and len(value) > keep * 2:
        return "****" + value[-keep:]
    return "****"
