"""How an SSN is kept: AES-GCM encrypted, and looked up through a keyed hash of its digits.

One place for both the API's writes and the migration that encrypted version 1's clear SSNs, so a
migrated row and a new one always hash alike for the duplicate check."""

from __future__ import annotations

from canopy_svc.core.crypto import DataCipher

SSN_CONTEXT = b"ssn"


def ssn_digits(ssn: str) -> str:
    """What the duplicate check compares: 123-45-6789 and 123456789 are one SSN."""
    return ssn.replace("-", "")


def ssn_columns(ssn: str | None, cipher: DataCipher) -> tuple[bytes | None, bytes | None]:
    """(ssn_encrypted, ssn_hash) for the customers table."""
    if ssn is None:
        return None, None
    return cipher.encrypt(ssn, context=SSN_CONTEXT), cipher.lookup_hash(ssn_digits(ssn), context=SSN_CONTEXT)
