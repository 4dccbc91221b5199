"""The connection pool, and the mapping of database failures to the contract's errors."""

from __future__ import annotations

import contextlib
from typing import Any

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


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Releasing a connection to the pool sends no reset query (asyncpg's default costs a round trip
    per request). Safe because requests leave no session state: transactions are always closed
    (asyncpg rolls back any left open), locks are transaction-scoped, settings are SET LOCAL, and
    LISTEN runs on connections of its own."""


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        # A dead server must surface as a quick 503, not a request that hangs.
        timeout=5,
        command_timeout=30,
        server_settings={"application_name": "canopy-svc", "timezone": "UTC"},
        reset=_keep_session,
    )
    assert pool is not None
    return pool


async def migrate_database(dsn: str, cipher: DataCipher) -> int:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await migrate(conn, cipher)
    finally:
        await conn.close()


def atomic(conn: asyncpg.Connection) -> contextlib.AbstractAsyncContextManager[Any]:
    """A transaction, unless the connection is in one already (then the outer one holds the work)."""
    if conn.is_in_transaction():
        return contextlib.nullcontext()
    return conn.transaction()
