from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from canopy_svc.rules.ratelimit import (
    Decision,
    FailOpenRateLimiter,
    LeasingRateLimiter,
    MemoryRateLimiter,
    PostgresRateLimiter,
    gcra,
    headers_for,
)

# Slow enough that refill during a test (milliseconds) never changes a decision.
SLOW = 0.001


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _key() -> str:
    return f"test:{uuid.uuid4()}"


# --- GCRA math -------------------------------------------------------------------------------


def test_burst_then_denied() -> None:
    tat: float | None = None
    seen = []
    for _ in range(5):
        decision, tat = gcra(tat, 0.0, rate=1.0, burst=5)
        seen.append((decision.allowed, decision.remaining, decision.reset_seconds))
    assert seen == [(True, 4, 1), (True, 3, 2), (True, 2, 3), (True, 1, 4), (True, 0, 5)]
    denied, tat_after = gcra(tat, 0.0, rate=1.0, burst=5)
    assert denied == Decision(allowed=False, limit=5, remaining=0, reset_seconds=5, retry_after_seconds=1)
    assert tat_after == tat  # a denied request does not use capacity


def test_denied_does_not_advance_tat() -> None:
    _, tat = gcra(None, 0.0, rate=0.5, burst=1)
    for step in range(20):
        decision, new_tat = gcra(tat, step * 0.09, rate=0.5, burst=1)
        assert not decision.allowed
        assert new_tat == tat
    decision, _ = gcra(tat, 2.0, rate=0.5, burst=1)
    assert decision.allowed


def test_sustained_rate() -> None:
    tat: float | None = None
    for _ in range(3):
        _, tat = gcra(tat, 0.0, rate=3.0, burst=3)
    admitted = 0
    # Ten requests per emission interval for 100 s: exactly rate * 100 get through.
    for i in range(1, 3001):
        decision, tat = gcra(tat, i / 30.0, rate=3.0, burst=3)
        admitted += decision.allowed
    assert admitted == 300


def test_exactly_on_time_is_admitted() -> None:
    # 1/3 is not exact in binary; float rounding must not deny a request arriving on schedule.
    tat: float | None = None
    now = 0.0
    for _ in range(1000):
        decision, tat = gcra(tat, now, rate=3.0, burst=1)
        assert decision.allowed
        now += 1 / 3


def test_retry_after_and_reset_values() -> None:
    tat: float | None = None
    for _ in range(2):
        _, tat = gcra(tat, 100.0, rate=0.1, burst=2)  # T = 10 s
    denied, _ = gcra(tat, 100.0, rate=0.1, burst=2)
    assert (denied.allowed, denied.remaining, denied.reset_seconds, denied.retry_after_seconds) == (
        False,
        0,
        20,
        10,
    )
    denied, _ = gcra(tat, 103.5, rate=0.1, burst=2)
    assert (denied.reset_seconds, denied.retry_after_seconds) == (17, 7)  # rounded up
    allowed, tat2 = gcra(tat, 110.0, rate=0.1, burst=2)
    assert (allowed.allowed, allowed.remaining, allowed.reset_seconds) == (True, 0, 20)
    # After a long idle period the bucket is full again, not over-full.
    fresh, _ = gcra(tat2, 10_000.0, rate=0.1, burst=2)
    assert (fresh.allowed, fresh.remaining, fresh.reset_seconds, fresh.retry_after_seconds) == (
        True,
        1,
        10,
        1,
    )


def test_partial_refill_remaining() -> None:
    tat: float | None = None
    for _ in range(10):
        _, tat = gcra(tat, 0.0, rate=2.0, burst=10)  # T = 0.5 s, empty bucket
    decision, _ = gcra(tat, 1.6, rate=2.0, burst=10)  # 3.2 intervals refilled, one spent
    assert decision.allowed and decision.remaining == 2
    assert decision.reset_seconds == 4  # TAT 5.5, so full again in 3.9 s


def test_invalid_parameters() -> None:
    for rate, burst in [(0.0, 1), (-1.0, 1), (float("inf"), 1), (float("nan"), 1), (1.0, 0)]:
        with pytest.raises(ValueError):
            gcra(None, 0.0, rate=rate, burst=burst)


def test_headers_for() -> None:
    ok = Decision(allowed=True, limit=10, remaining=7, reset_seconds=3, retry_after_seconds=1)
    assert headers_for(ok) == [
        (b"ratelimit-limit", b"10"),
        (b"ratelimit-remaining", b"7"),
        (b"ratelimit-reset", b"3"),
    ]
    denied = Decision(allowed=False, limit=10, remaining=0, reset_seconds=9, retry_after_seconds=2)
    assert headers_for(denied)[-1] == (b"retry-after", b"2")
    assert len(headers_for(denied)) == 4


# --- memory limiter --------------------------------------------------------------------------


async def test_memory_limiter_with_clock() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    results = [(await limiter.hit("a", 1.0, 3)).allowed for _ in range(5)]
    assert results == [True, True, True, False, False]
    assert (await limiter.hit("b", 1.0, 3)).allowed  # keys are independent
    clock.now += 1.0
    assert (await limiter.hit("a", 1.0, 3)).allowed
    assert not (await limiter.hit("a", 1.0, 3)).allowed
    clock.now += 10.0
    decision = await limiter.hit("a", 1.0, 3)
    assert (decision.allowed, decision.remaining) == (True, 2)


async def test_memory_limiter_evicts_idle_keys() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock, max_keys=10)
    for i in range(10):
        await limiter.hit(f"k{i}", 1.0, 1)
    assert len(limiter) == 10
    clock.now += 5.0  # every bucket is full again
    await limiter.hit("new", 1.0, 1)
    assert len(limiter) == 1
    # Active keys are never evicted (that would reset their limit).
    for i in range(15):
        await limiter.hit(f"a{i}", SLOW, 1)
    assert len(limiter) == 16
    assert not (await limiter.hit("a0", SLOW, 1)).allowed


# --- PostgreSQL limiter ----------------------------------------------------------------------


@pytest_asyncio.fixture
async def pg_limiter(pool: asyncpg.Pool) -> AsyncIterator[PostgresRateLimiter]:
    yield PostgresRateLimiter(pool)
    await pool.execute("DELETE FROM rate_limit_buckets WHERE key LIKE 'test:%'")


async def test_table_is_unlogged(pool: asyncpg.Pool, pg_limiter: PostgresRateLimiter) -> None:
    persistence = await pool.fetchval(
        "SELECT relpersistence::text FROM pg_class WHERE oid = 'rate_limit_buckets'::regclass"
    )
    assert persistence == "u"


async def test_postgres_matches_memory(pg_limiter: PostgresRateLimiter) -> None:
    memory = MemoryRateLimiter(clock=FakeClock())
    a, b, c = _key(), _key(), _key()
    sequence = [(a, 3)] * 5 + [(b, 1)] * 3 + [(a, 3), (c, 10)] * 12 + [(b, 1)]
    for key, burst in sequence:
        expected = await memory.hit(key, SLOW, burst)
        got = await pg_limiter.hit(key, SLOW, burst)
        assert got == expected, (key, burst)


async def test_postgres_denied_keeps_tat(pool: asyncpg.Pool, pg_limiter: PostgresRateLimiter) -> None:
    key = _key()
    first = await pg_limiter.hit(key, SLOW, 1)
    tat = await pool.fetchval("SELECT tat FROM rate_limit_buckets WHERE key = $1", key)
    for _ in range(5):
        decision = await pg_limiter.hit(key, SLOW, 1)
        assert not decision.allowed
        assert decision.retry_after_seconds == 1000
    assert first.allowed
    assert await pool.fetchval("SELECT tat FROM rate_limit_buckets WHERE key = $1", key) == tat


async def test_postgres_concurrent_hits(pool: asyncpg.Pool, pg_limiter: PostgresRateLimiter) -> None:
    key = _key()
    decisions = await asyncio.gather(*(pg_limiter.hit(key, SLOW, 10) for _ in range(50)))
    assert sum(d.allowed for d in decisions) == 10
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(10))


async def test_postgres_concurrent_new_keys(pg_limiter: PostgresRateLimiter) -> None:
    # Many first hits racing on keys that do not exist yet (the INSERT path of the upsert).
    keys = [_key() for _ in range(5)]
    decisions = await asyncio.gather(*(pg_limiter.hit(k, SLOW, 2) for k in keys for _ in range(6)))
    assert sum(d.allowed for d in decisions) == 10


async def test_postgres_purge(pool: asyncpg.Pool, pg_limiter: PostgresRateLimiter) -> None:
    idle, busy = _key(), _key()
    await pg_limiter.hit(busy, SLOW, 1)
    await pool.execute("INSERT INTO rate_limit_buckets VALUES ($1, 0, true)", idle)
    assert await pg_limiter.purge_expired() >= 1
    keys = await pool.fetch("SELECT key FROM rate_limit_buckets WHERE key = ANY($1)", [idle, busy])
    assert [r["key"] for r in keys] == [busy]


async def test_postgres_take_grants_what_fits(pool: asyncpg.Pool, pg_limiter: PostgresRateLimiter) -> None:
    key = _key()
    granted, first = await pg_limiter.take(key, SLOW, 10, 4)
    assert granted == 4 and first.allowed and first.remaining == 6
    granted, _ = await pg_limiter.take(key, SLOW, 10, 4)
    assert granted == 4
    granted, last = await pg_limiter.take(key, SLOW, 10, 4)  # only 2 left: a partial batch
    assert granted == 2 and last.allowed and last.remaining == 0
    granted, denied = await pg_limiter.take(key, SLOW, 10, 4)
    assert granted == 0 and not denied.allowed
    tat, now = await pool.fetchrow(
        "SELECT tat, extract(epoch FROM clock_timestamp())::double precision FROM rate_limit_buckets WHERE key = $1",
        key,
    )
    assert 10 / SLOW - 60 < tat - now <= 10 / SLOW  # exactly 10 tokens' worth was taken, no more


async def test_postgres_concurrent_takes_never_exceed_the_burst(pg_limiter: PostgresRateLimiter) -> None:
    key = _key()
    grants = await asyncio.gather(*(pg_limiter.take(key, SLOW, 25, 3) for _ in range(20)))
    assert sum(granted for granted, _ in grants) == 25


async def test_postgres_take_gives_back_unspent_tokens(pool: asyncpg.Pool, pg_limiter: PostgresRateLimiter) -> None:
    key = _key()
    assert (await pg_limiter.take(key, SLOW, 10, 4))[0] == 4
    granted, decision = await pg_limiter.take(key, SLOW, 10, 4, returned=3)  # 1 of the 4 was spent
    assert granted == 4 and decision.remaining == 5  # 1 + 4 taken in all
    granted, decision = await pg_limiter.take(key, SLOW, 10, 1, returned=50)  # never more than full
    assert granted == 1 and decision.remaining == 9


class RecordingStore(PostgresRateLimiter):
    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.takes: list[tuple[int, int, int]] = []  # (wanted, returned, granted)

    async def take(self, key: str, rate: float, burst: int, wanted: int, returned: int = 0) -> tuple[int, Decision]:
        granted, decision = await super().take(key, rate, burst, wanted, returned)
        self.takes.append((wanted, returned, granted))
        return granted, decision


async def test_leasing_grows_its_batches_while_they_are_spent(
    pool: asyncpg.Pool, pg_limiter: PostgresRateLimiter
) -> None:
    store = RecordingStore(pool)
    leasing = LeasingRateLimiter(store, lease_seconds=0.05, clock=FakeClock())
    key = _key()
    assert leasing.batch_cap(1000.0, 800) == 50  # rate x 50 ms; an eighth of the burst would be 100
    decisions = [await leasing.hit(key, 1000.0, 800) for _ in range(200)]
    assert all(d.allowed for d in decisions)
    assert [wanted for wanted, _, _ in store.takes] == [1, 2, 4, 8, 16, 32, 50, 50, 50]  # 9 round trips


async def test_concurrent_requests_of_one_client_share_one_batch(
    pool: asyncpg.Pool, pg_limiter: PostgresRateLimiter
) -> None:
    """One request takes a batch while the others of that client wait for it, rather than each going
    to the database (which would also keep the batch from growing)."""
    store = RecordingStore(pool)
    leasing = LeasingRateLimiter(store, lease_seconds=0.05, clock=FakeClock())
    key = _key()
    decisions = await asyncio.gather(*(leasing.hit(key, 1000.0, 800) for _ in range(60)))
    assert all(d.allowed for d in decisions)
    assert len(store.takes) <= 7, store.takes  # 1, 2, 4, 8, 16, 32: doubling, one at a time
    assert sum(granted for _, _, granted in store.takes) >= 60


async def test_leasing_gives_back_what_it_did_not_spend(pool: asyncpg.Pool, pg_limiter: PostgresRateLimiter) -> None:
    store, clock = RecordingStore(pool), FakeClock()
    leasing = LeasingRateLimiter(store, lease_seconds=0.05, clock=clock)
    key = _key()
    for _ in range(4):  # batches of 1, 2 and 4: 3 of the last are unspent
        await leasing.hit(key, 1000.0, 800)
    clock.now += 0.06  # the lease expires
    await leasing.hit(key, 1000.0, 800)
    assert store.takes[-1] == (1, 3, 1)  # gives the 3 back, asks for about what was spent


async def test_leasing_at_low_rates_is_the_plain_limiter(pg_limiter: PostgresRateLimiter) -> None:
    memory = MemoryRateLimiter(clock=FakeClock())
    leasing = LeasingRateLimiter(pg_limiter, clock=FakeClock())
    key = _key()
    assert leasing.batch_cap(SLOW, 5) == 1
    for _ in range(8):
        assert await leasing.hit(key, SLOW, 5) == await memory.hit(key, SLOW, 5)


async def test_two_leasing_processes_keep_one_limit(pool: asyncpg.Pool, pg_limiter: PostgresRateLimiter) -> None:
    """Two workers' limiters on one store: batches are counted when taken, so together they admit at
    most the burst plus what the bucket refills meanwhile, never a batch more per worker."""
    rate, burst = 400.0, 80  # batches of up to 10
    workers = [LeasingRateLimiter(PostgresRateLimiter(pool)) for _ in range(2)]
    key = _key()
    started = asyncio.get_running_loop().time()
    decisions = [await workers[i % 2].hit(key, rate, burst) for i in range(200)]
    elapsed = asyncio.get_running_loop().time() - started
    admitted = sum(d.allowed for d in decisions)
    assert burst <= admitted <= burst + rate * elapsed + 1, (admitted, elapsed)


# --- fail open -------------------------------------------------------------------------------


class BrokenLimiter:
    def __init__(self) -> None:
        self.broken = True
        self.calls = 0

    async def hit(self, key: str, rate: float, burst: int) -> Decision:
        self.calls += 1
        if self.broken:
            raise ConnectionRefusedError("db down")
        return Decision(allowed=False, limit=burst, remaining=0, reset_seconds=5, retry_after_seconds=5)


class HangingLimiter:
    async def hit(self, key: str, rate: float, burst: int) -> Decision:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_fail_open_logs_once_per_burst(caplog: pytest.LogCaptureFixture) -> None:
    inner = BrokenLimiter()
    limiter = FailOpenRateLimiter(inner)
    caplog.set_level(logging.INFO, logger="canopy_svc.ratelimit")
    for _ in range(3):
        decision = await limiter.hit("client-1", 1.0, 5)
        assert decision.allowed and decision.limit == 5
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].client_id == "client-1"
    assert "db down" not in caplog.text
    inner.broken = False
    assert not (await limiter.hit("client-1", 1.0, 5)).allowed  # real decisions again
    assert not limiter.failing
    inner.broken = True
    await limiter.hit("client-1", 1.0, 5)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


async def test_fail_open_give_back_is_best_effort(caplog: pytest.LogCaptureFixture) -> None:
    """A give-back the store cannot take (down, slow, or a store without give_back) is dropped, logged
    with the hits' failures: once per burst."""
    caplog.set_level(logging.WARNING, logger="canopy_svc.ratelimit")

    class BrokenGiveBack(BrokenLimiter):
        async def give_back(self, key: str, rate: float, burst: int) -> None:
            raise ConnectionRefusedError("db down")

    class HangingGiveBack(HangingLimiter):
        async def give_back(self, key: str, rate: float, burst: int) -> None:
            await asyncio.Event().wait()

    broken = FailOpenRateLimiter(BrokenGiveBack())
    await broken.give_back("client-4", 1.0, 5)
    assert broken.failing
    await broken.hit("client-4", 1.0, 5)
    await broken.give_back("client-4", 1.0, 5)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    hanging = FailOpenRateLimiter(HangingGiveBack(), timeout=0.05)
    await asyncio.wait_for(hanging.give_back("client-5", 1.0, 5), timeout=2)
    assert hanging.failing
    without = FailOpenRateLimiter(BrokenLimiter())
    await without.give_back("client-6", 1.0, 5)
    assert not without.failing  # nothing to call: nothing failed


async def test_fail_open_on_timeout() -> None:
    limiter = FailOpenRateLimiter(HangingLimiter(), timeout=0.05)
    decision = await asyncio.wait_for(limiter.hit("client-2", 1.0, 3), timeout=2)
    assert decision.allowed and limiter.failing


async def test_fail_open_keeps_parameter_errors() -> None:
    with pytest.raises(ValueError):
        await FailOpenRateLimiter(BrokenLimiter()).hit("c", 0.0, 1)


async def test_fail_open_with_closed_pool() -> None:
    # min_size=0: no connection is attempted until the first query.
    dead = await asyncpg.create_pool("postgresql://nobody@127.0.0.1:1/none", min_size=0, max_size=1)
    limiter = FailOpenRateLimiter(PostgresRateLimiter(dead))
    assert (await limiter.hit("client-3", 1.0, 3)).allowed  # server unreachable
    await dead.close()
    assert (await limiter.hit("client-3", 1.0, 3)).allowed  # pool closed
    assert limiter.failing
