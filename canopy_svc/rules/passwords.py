"""Client secrets, kept only as a slow (scrypt) hash."""

from __future__ import annotations

import base64
import ctypes
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

# ~16 MiB and tens of milliseconds per hash: cheap for a login, ruinous for guessing at speed.
_N, _R, _P = 2**14, 8, 1
_SALT_BYTES = 16


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    _return_memory()
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            secret.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except ValueError:
        return False
    finally:
        _return_memory()
    return hmac.compare_digest(actual, expected)


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None
    return trim


_malloc_trim = _load_malloc_trim()


def _return_memory() -> None:
    """scrypt's 16 MiB stay in the allocator's arena after a verification (a worker held ~16 MB more
    for good after one /auth/token): hand them back to the system."""
    if _malloc_trim is not None:
        _malloc_trim(0)


# Verified against when the client does not exist, so both paths cost one scrypt.
DUMMY_HASH = hash_secret(secrets.token_urlsafe(16))


class RecentSecrets:
    """Credentials verified lately, so presenting them again costs an HMAC, not a scrypt.

    Kept per process, in memory only. The key of an entry is HMAC(a random key made here,
    client_id and secret): neither the secret nor anything computable from it without that key is
    kept. The value is the stored hash the secret was verified against: `matches` holds only while
    the client's row still has that hash, so a new secret (made with a new salt) or a deleted client
    ends it at once. At most `max_entries` (the oldest go first), each for `ttl` seconds.
    """

    def __init__(
        self, *, max_entries: int = 10_000, ttl: float = 600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._key = secrets.token_bytes(32)
        self._max_entries = max_entries
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[bytes, tuple[float, str]] = {}  # key -> (expires_at, stored hash)

    def __len__(self) -> int:
        return len(self._entries)

    def key(self, client_id: str, secret: str) -> bytes:
        # Length-prefixed, so no (client_id, secret) pair reads as another.
        client = client_id.encode()
        message = len(client).to_bytes(4, "big") + client + secret.encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def known(self, key: bytes) -> bool:
        """Whether `key` was verified lately (against some hash: `matches` says if still the current one)."""
        entry = self._entries.get(key)
        if entry is None:
            return False
        if entry[0] <= self._clock():
            del self._entries[key]
            return False
        return True

    def matches(self, key: bytes, stored: str) -> bool:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self._clock():
            return False
        if not hmac.compare_digest(entry[1], stored):
            del self._entries[key]  # the client's secret changed since
            return False
        return True

    def remember(self, key: bytes, stored: str) -> None:
        self._entries.pop(key, None)
        while len(self._entries) >= self._max_entries:
            del self._entries[next(iter(self._entries))]  # insertion order: the oldest entry
        self._entries[key] = (self._clock() + self.ttl, stored)
