"""Starting a process on a database already at this build's schema must not disturb live traffic:
each worker and host migrates at start, and a rolling restart happens under load."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from canopy_svc.core.crypto import DataCipher
from canopy_svc.store import customers, migrations
from canopy_svc.store.migrations import SCHEMA_VERSION, migrate
from tests.helpers import FIXTURES, SLOW_DDL_SECONDS, TEST_DATA_KEY, schema_of, with_database

# Every table the service writes to; ROW EXCLUSIVE is the lock each INSERT/UPDATE/DELETE holds.
LIVE_TABLES = (
    "organizations",
    "api_clients",
    "customers",
    "products",
    "accounts",
    "customer_account_links",
    "cards",
    "idempotency_keys",
    "schema_version",
    "data_key_check",
)


async def test_migrating_a_current_database_waits_for_no_live_transaction(
    pool: asyncpg.Pool, database_url: str
) -> None:
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


class _BetweenBatches:
    """The migrating connection, calling `hook` once after the first batch of the v4 backfill."""

    def __init__(self, conn: asyncpg.Connection, hook: Callable[[], Awaitable[None]]) -> None:
        self._conn = conn
        self._hook: Callable[[], Awaitable[None]] | None = hook

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def fetchval(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        value = await self._conn.fetchval(sql, *args, **kwargs)
        if sql == migrations._SEARCH_TERMS_BACKFILL and self._hook is not None:
            hook, self._hook = self._hook, None
            await hook()
        return value


_TRIGGERS = """SELECT tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
               WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal"""


async def test_a_version_3_database_gets_its_search_terms_while_customers_are_written(
    pool: asyncpg.Pool, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v3 -> v4: the customers already stored get their search terms in batches, each its own
    transaction, after schema.sql's triggers are committed. Between two batches another connection
    creates a customer and renames one not yet written, without waiting (lock_timeout): both are found
    by their new names afterwards, the old name finds nobody, and the GIN index is gone. The upgraded
    database then has the schema a fresh one has (tables, indexes, constraints, functions, triggers)."""
    name = "canopy_v3_migration"
    await pool.execute(f"DROP DATABASE IF EXISTS {name}", timeout=SLOW_DDL_SECONDS)
    await pool.execute(f"CREATE DATABASE {name}", timeout=SLOW_DDL_SECONDS)
    url = with_database(database_url, name)
    cipher = DataCipher(TEST_DATA_KEY)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute((FIXTURES / "schema_v3.sql").read_text())
        await conn.execute("INSERT INTO schema_version (version) VALUES (3)")
        await conn.execute("INSERT INTO data_key_check (key_check) VALUES ($1)", cipher.key_check())
        org_id = await conn.fetchval("INSERT INTO organizations (name) VALUES ('acme') RETURNING id")
        await conn.execute(
            """INSERT INTO customers (org_id, customer_id, name_first, name_last, phone_number, address_line_one,
                   address_city, address_state, address_zip, email, date_of_birth)
               SELECT $1, 'c' || n, 'Ada', CASE WHEN n = 5 THEN 'Oldname' ELSE 'Lovelace' || n END, '+14155550123',
                      '1 Main St', 'X', 'CA', '94105', 'c' || n || '@example.com', '1990-01-01'
               FROM generate_series(1, 10) n""",
            org_id,
        )
        assert await conn.fetchval("SELECT to_regclass('customers_search_vector') IS NOT NULL")

        async def live_traffic() -> None:
            other = await asyncpg.connect(url)
            try:
                await other.execute("SET lock_timeout = '5s'")  # blocked behind the migration, this fails
                await other.execute(
                    """INSERT INTO customers (org_id, customer_id, name_first, name_last, phone_number,
                           address_line_one, address_city, address_state, address_zip, email, date_of_birth)
                       VALUES ($1, 'newcomer', 'Grace', 'Hopper', '+14155550123', '1 Main St', 'X', 'CA', '94105',
                               'grace@example.com', '1990-01-01')""",
                    org_id,
                )
                await other.execute("UPDATE customers SET name_last = 'Renamed' WHERE customer_id = 'c5'")
            finally:
                await other.close()

        monkeypatch.setattr(migrations, "_SEARCH_TERMS_BATCH", 2)
        assert await migrations.migrate(_BetweenBatches(conn, live_traffic), cipher) == SCHEMA_VERSION == 4  # type: ignore[arg-type]

        async def found(word: str) -> list[str]:
            return [row["customer_id"] for row in await customers.page(conn, org_id, limit=50, search=[word])]

        assert await found("lovelace") == [f"c{n}" for n in range(1, 11) if n != 5]
        assert await found("hop") == ["newcomer"]
        assert await found("renamed") == ["c5"]
        assert await found("oldname") == []
        assert await conn.fetchval("SELECT to_regclass('customers_search_vector') IS NULL")
        assert await conn.fetchval("SELECT version FROM schema_version") == SCHEMA_VERSION
        assert await schema_of(conn) == await schema_of(pool)  # as the tests' database, made fresh
        assert {tuple(r) for r in await conn.fetch(_TRIGGERS)} == {tuple(r) for r in await pool.fetch(_TRIGGERS)}
        assert await migrations.migrate(conn, cipher) == SCHEMA_VERSION  # idempotent
    finally:
        await conn.close()
    await pool.execute(f"DROP DATABASE {name}", timeout=SLOW_DDL_SECONDS)


async def test_a_backfill_stopped_midway_is_finished_at_the_next_start(
    pool: asyncpg.Pool, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The version is recorded only once the online step is done: a process that dies in it leaves
    version 3, and the next start applies schema.sql again and writes the terms still missing."""
    name = "canopy_v3_interrupted"
    await pool.execute(f"DROP DATABASE IF EXISTS {name}", timeout=SLOW_DDL_SECONDS)
    await pool.execute(f"CREATE DATABASE {name}", timeout=SLOW_DDL_SECONDS)
    url = with_database(database_url, name)
    cipher = DataCipher(TEST_DATA_KEY)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute((FIXTURES / "schema_v3.sql").read_text())
        await conn.execute("INSERT INTO schema_version (version) VALUES (3)")
        org_id = await conn.fetchval("INSERT INTO organizations (name) VALUES ('acme') RETURNING id")
        await conn.execute(
            """INSERT INTO customers (org_id, customer_id, name_first, name_last, phone_number, address_line_one,
                   address_city, address_state, address_zip, email, date_of_birth)
               SELECT $1, 'c' || n, 'Ada', 'Lovelace', '+14155550123', '1 Main St', 'X', 'CA', '94105',
                      'c' || n || '@example.com', '1990-01-01' FROM generate_series(1, 6) n""",
            org_id,
        )

        async def die() -> None:
            raise ConnectionResetError("the process stopped here")

        monkeypatch.setattr(migrations, "_SEARCH_TERMS_BATCH", 2)
        with pytest.raises(ConnectionResetError):
            await migrations.migrate(_BetweenBatches(conn, die), cipher)  # type: ignore[arg-type]
        assert await conn.fetchval("SELECT version FROM schema_version") == 3
        assert await conn.fetchval("SELECT count(DISTINCT customer_row_id) FROM customer_search_terms") == 2

        assert await migrations.migrate(conn, cipher) == SCHEMA_VERSION
        rows = await customers.page(conn, org_id, limit=50, search=["lovelace"])
        assert [row["customer_id"] for row in rows] == [f"c{n}" for n in range(1, 7)]
    finally:
        await conn.close()
    await pool.execute(f"DROP DATABASE {name}", timeout=SLOW_DDL_SECONDS)
