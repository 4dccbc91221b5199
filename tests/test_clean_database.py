"""The harness's cleaning between tests (tests/helpers.py empty_tables): what it does when it cannot."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from tests.helpers import empty_tables


async def test_a_session_holding_the_tables_is_named_ended_and_fails_the_test(
    pool: asyncpg.Pool, database_url: str
) -> None:
    leaked = await asyncpg.connect(database_url, server_settings={"application_name": "leaked-by-a-test"})
    try:
        await leaked.execute("BEGIN; SELECT count(*) FROM customers")  # idle in transaction, holding a lock
        with pytest.raises(pytest.fail.Exception) as failed:
            await empty_tables(pool, patience_seconds=0.2)
        message = str(failed.value)
        assert "leaked-by-a-test" in message and "idle in transaction" in message, message
        assert "'customers'" in message  # the tables it held
        deadline = time.monotonic() + 30
        while await pool.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'leaked-by-a-test'"):
            assert time.monotonic() < deadline, "the blocking session was not terminated"
            await asyncio.sleep(0.02)
        await empty_tables(pool, patience_seconds=30)  # and the tables can be cleaned again
    finally:
        leaked.terminate()


async def test_a_slow_clean_with_no_blocker_waits_and_warns(pool: asyncpg.Pool) -> None:
    await pool.execute("INSERT INTO organizations (name) VALUES ('left over')")
    with pytest.warns(UserWarning, match="cleaning the tables took over 0 s"):
        await empty_tables(pool, patience_seconds=0)  # "slow": not done the instant it was sent
    assert await pool.fetchval("SELECT count(*) FROM organizations") == 0
