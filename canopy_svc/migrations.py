"""Applies schema.sql and the data migrations that DDL alone cannot express.

schema.sql is idempotent and always describes the newest schema. A step here moves data already
stored by an older version (and may drop what schema.sql no longer declares). The recorded version
says which steps a database has had; every process runs this under one advisory lock, so workers
starting together migrate once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from canopy_svc.crypto import DataCipher
from canopy_svc.store.data_key import ensure_key_check

log = logging.getLogger("canopy_svc.migrations")

_MIGRATION_LOCK_ID = 0x43616E6F7079  # "Canopy"

Step = Callable[[asyncpg.Connection, DataCipher], Awaitable[None]]


async def _v1_initial(conn: asyncpg.Connection, cipher: DataCipher) -> None:
    """The first schema: nothing to move."""


STEPS: dict[int, Step] = {
    1: _v1_initial,
}
SCHEMA_VERSION = max(STEPS)


def schema_path() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "schema.sql", here / "schema.sql"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError("schema.sql not found beside the canopy_svc package")


async def migrate(conn: asyncpg.Connection, cipher: DataCipher) -> int:
    """Brings the database to SCHEMA_VERSION; returns the version it is at.

    The data key is checked first: data encrypted under two keys could never be read back whole.
    """
    sql = schema_path().read_text()
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
    try:
        async with conn.transaction():
            await conn.execute(sql)
            await ensure_key_check(conn, cipher.key_check(), cipher.fingerprint())
            current = await conn.fetchval("SELECT version FROM schema_version") or 0
            if current > SCHEMA_VERSION:
                raise RuntimeError(
                    f"database schema version {current} is newer than this build ({SCHEMA_VERSION})"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                log.info("applying schema step %d", version)
                await STEPS[version](conn, cipher)
            await conn.execute(
                """INSERT INTO schema_version (version) VALUES ($1)
                   ON CONFLICT (singleton) DO UPDATE SET version = $1, applied_at = now()""",
                SCHEMA_VERSION,
            )
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)
    return SCHEMA_VERSION
