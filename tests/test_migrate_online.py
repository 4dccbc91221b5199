"""Starting a process on a database already at this build's schema must not disturb live traffic:
each worker and host migrates at start, and a rolling restart happens under load."""

from __future__ import annotations

import asyncpg
from conftest import TEST_DATA_KEY

from canopy_svc.crypto import DataCipher
from canopy_svc.migrations import SCHEMA_VERSION, migrate

# Every table the service writes to; ROW EXCLUSIVE is the lock each INSERT/UPDATE/DELETE holds.
LIVE_TABLES = ("organizations", "api_clients", "customers", "products", "accounts", "customer_account_links",
               "cards", "idempotency_keys", "schema_version", "data_key_check")


async def test_migrating_a_current_database_waits_for_no_live_transaction(pool: asyncpg.Pool,
                                                                          database_url: str) -> None:
    async with pool.acquire() as busy, busy.transaction():
        for table in LIVE_TABLES:
            await busy.execute(f"LOCK TABLE {table} IN ROW EXCLUSIVE MODE")
        starting = await asyncpg.connect(database_url)
        try:
            # Blocked behind the open transaction, this would fail with LockNotAvailableError.
            await starting.execute("SET lock_timeout = '2s'")
            assert await migrate(starting, DataCipher(TEST_DATA_KEY)) == SCHEMA_VERSION
        finally:
            await starting.close()


async def test_a_changed_schema_file_is_applied_again(pool: asyncpg.Pool, database_url: str) -> None:
    """The fast path is keyed by schema.sql's digest: an edited file (a new index, say) still runs."""
    await pool.execute("UPDATE schema_version SET schema_sha256 = 'an older schema.sql'")
    conn = await asyncpg.connect(database_url)
    try:
        assert await migrate(conn, DataCipher(TEST_DATA_KEY)) == SCHEMA_VERSION
    finally:
        await conn.close()
    assert await pool.fetchval("SELECT schema_sha256 FROM schema_version") != "an older schema.sql"
