"""How a passport number is kept: only AES-GCM encrypted, under its own context (never readable as an
SSN's ciphertext, nor an SSN as one of these). No lookup hash: nothing compares passports."""

from __future__ import annotations

PASSPORT_CONTEXT = b"passport"
