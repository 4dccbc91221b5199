"""The data key's check value, so a process with the wrong key fails at start, not by answering garbage."""

from __future__ import annotations

import hmac

from canopy_svc.core.dbtypes import Queryable


class DataKeyMismatch(RuntimeError):
    """This database was encrypted with another data key."""


async def ensure_key_check(conn: Queryable, key_check: bytes, fingerprint: str) -> None:
    await conn.execute(
        "INSERT INTO data_key_check (key_check) VALUES ($1) ON CONFLICT (singleton) DO NOTHING", key_check
    )
    stored: bytes = await conn.fetchval("SELECT key_check FROM data_key_check")
    if not hmac.compare_digest(bytes(stored), key_check):
        raise DataKeyMismatch(
            f"The data key in use (fingerprint {fingerprint}) is not the key this database's SSNs and Lithic keys "
            "were encrypted with. Set CANOPY_SVC_DATA_KEY to that key (or restore <data-dir>/data-key)."
        )
