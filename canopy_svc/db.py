"""The connection pool, and the mapping of database failures to the contract's errors."""

from __future__ import annotations

import asyncpg

from canopy_svc.crypto import DataCipher
from canopy_svc.migrations import migrate

# Failures that mean "the database is not there right now": answered 503, never 500.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
)


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        # A dead server must surface as a quick 503, not a request that hangs.
        timeout=5,
        command_timeout=30,
        server_settings={"application_name": "canopy-svc", "timezone": "UTC"},
    )
    assert pool is not None
    return pool


async def migrate_database(dsn: str, cipher: DataCipher) -> int:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await migrate(conn, cipher)
    finally:
        await conn.close()
