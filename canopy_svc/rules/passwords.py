"""Client secrets, kept only as a slow (scrypt) hash."""

from __future__ import annotations

import base64
import ctypes
import hashlib
import hmac
import secrets
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
            secret.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
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
