"""The database gate (canopy_svc/core/db.py): closed, it fails every database call at once and cuts the
queries in flight; its probe closes it when the server is unreachable and opens it when it answers.
The frozen-server case end to end is tests/test_resilience.py::test_postgres_hung_answers_503_quickly."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import pytest

from canopy_svc.core.db import UNAVAILABLE_ERRORS, DatabaseGate, DatabaseUnavailable, create_pool

UNREACHABLE_DSN = "postgresql://nobody@127.0.0.1:1/none"  # port 1: refused at once
CUT_QUERY_MARK = "/* cut by the gate */"


async def wait_until(predicate: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def gated(database_url: str) -> AsyncIterator[tuple[DatabaseGate, asyncpg.Pool]]:
    gate = DatabaseGate(interval=0.05, timeout=1.0)
    pool = await create_pool(database_url, min_size=2, max_size=4, gate=gate)
    try:
        yield gate, pool
    finally:
        gate.open()
        # The server's side of a connection the gate cut runs on until it next writes (a pg_sleep for
        # 30 s): ended here, not to linger under later tests, whether the test passed or not.
        await pool.execute(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE '%' || $1 AND pid <> pg_backend_pid()",
            CUT_QUERY_MARK,
        )
        await pool.close()


async def test_closing_cuts_queries_in_flight_and_refuses_new_ones_at_once(
    gated: tuple[DatabaseGate, asyncpg.Pool],
) -> None:
    gate, pool = gated
    assert await pool.fetchval("SELECT 1") == 1
    in_flight = asyncio.create_task(pool.fetchval(f"SELECT pg_sleep(30) {CUT_QUERY_MARK}"))
    await asyncio.sleep(0.2)  # let it reach the server; the assertion below does not depend on it
    started = time.monotonic()
    gate.close("test")
    with pytest.raises(UNAVAILABLE_ERRORS):
        await in_flight
    with pytest.raises(DatabaseUnavailable):
        await pool.fetchval("SELECT 1")
    # Not the 30 s of pg_sleep, nor a connect timeout; generous, so a loaded machine passes too.
    assert time.monotonic() - started < 10.0
    assert not gate.is_open

    gate.open()
    assert await pool.fetchval("SELECT 1") == 1  # the pool reconnects by itself


async def test_a_closed_gate_is_an_unavailable_error(gated: tuple[DatabaseGate, asyncpg.Pool]) -> None:
    gate, pool = gated
    gate.close("test")
    with pytest.raises(DatabaseUnavailable) as raised:
        async with pool.acquire():
            pass
    assert isinstance(raised.value, UNAVAILABLE_ERRORS)  # so the HTTP layer answers 503, not 500


@contextlib.asynccontextmanager
async def watching(gate: DatabaseGate, dsn: str) -> AsyncIterator[None]:
    task = asyncio.create_task(gate.watch(dsn))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_probe_closes_the_gate_when_unreachable_and_opens_it_when_back(database_url: str) -> None:
    gate = DatabaseGate(interval=0.05, timeout=1.0)
    async with watching(gate, UNREACHABLE_DSN):
        await wait_until(lambda: not gate.is_open, 5.0)
    async with watching(gate, database_url):
        await wait_until(lambda: gate.is_open, 5.0)


async def test_a_refused_login_is_not_an_outage(database_url: str) -> None:
    """The server answered (here: no such database), so requests should not all be failed for it."""
    gate = DatabaseGate(interval=0.05, timeout=1.0)
    gate.close("earlier outage")
    wrong_database = urlsplit(database_url)._replace(path="/no_such_database").geturl()
    async with watching(gate, wrong_database):
        await wait_until(lambda: gate.is_open, 5.0)
