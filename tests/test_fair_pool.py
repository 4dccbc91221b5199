"""The pool hands connections out first come, first served (canopy_svc/core/db.py FairPool): a request
arriving just as a connection is freed must not overtake the ones already waiting, or a few of them
starve and the tail latency grows under load."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import pytest

from canopy_svc.core.db import _keep_session as keep_session
from canopy_svc.core.db import create_pool


async def serving_order(pool: asyncpg.Pool) -> list[str]:
    """One connection, five waiters queued in order, and five newcomers asking just as it is freed,
    each a few turns of the loop later than the one before (so one of them lands in the gap between
    the release and the first waiter's wake-up, whatever the pool's internals take)."""
    served: list[str] = []
    holder = await pool.acquire()
    go = asyncio.Event()

    async def take_turn(name: str, delay_turns: int = 0) -> None:
        if name.startswith("newcomer"):
            await go.wait()
            for _ in range(delay_turns):
                await asyncio.sleep(0)
        async with pool.acquire():
            served.append(name)
            await asyncio.sleep(0)  # hold it across a turn of the loop, as a query would

    waiters = [asyncio.create_task(take_turn(f"w{i}")) for i in range(5)]
    newcomers = [asyncio.create_task(take_turn(f"newcomer{i}", i)) for i in range(5)]
    for _ in range(5):
        await asyncio.sleep(0)  # every waiter is queued now, every newcomer waits for `go`
    go.set()
    await pool.release(holder)
    await asyncio.wait_for(asyncio.gather(*waiters, *newcomers), 10)
    return served


async def test_connections_are_handed_out_in_order(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        assert (await serving_order(pool))[:5] == ["w0", "w1", "w2", "w3", "w4"]
    finally:
        await pool.close()


async def test_asyncpgs_own_pool_lets_a_newcomer_overtake(database_url: str) -> None:
    """The control: what the test above guards against (if asyncpg fixes it, this fails: drop FairPool)."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1, reset=keep_session)
    try:
        order = await serving_order(pool)
        assert order[:5] != ["w0", "w1", "w2", "w3", "w4"], order
    finally:
        await pool.close()


@pytest.mark.parametrize(
    "use",
    [
        lambda pool: pool.fetchval("SELECT 1"),
        lambda pool: pool.execute("SELECT 1"),
    ],
)
async def test_turns_are_given_back(database_url: str, use: Callable) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        for _ in range(10):
            await use(pool)
        async with pool.acquire() as conn:
            conn.terminate()  # a cut connection (the gate does this) still gives its turn back
        with pytest.raises(asyncpg.PostgresError):
            await pool.fetchval("SELECT no_such_column")
        await asyncio.wait_for(asyncio.gather(*(pool.fetchval("SELECT 1") for _ in range(6))), 10)
        assert pool._turns._value == 2 and not pool._turn_holders  # type: ignore[attr-defined]
    finally:
        await pool.close()


async def test_an_acquire_timeout_covers_the_wait_for_a_turn(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire():
            with pytest.raises(TimeoutError):
                await pool.acquire(timeout=0.2)
        assert await pool.fetchval("SELECT 1") == 1  # the timed-out wait left no turn taken
    finally:
        await pool.close()
