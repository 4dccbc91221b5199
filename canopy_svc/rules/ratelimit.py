"""Per-client rate limiting with GCRA (generic cell rate algorithm).

State per client is one number, the theoretical arrival time (TAT): the instant at which the
client's bucket would be empty again if it sent nothing more. With emission interval T = 1/rate,
a request arriving at `now` is admitted iff

    max(TAT, now) + T - now <= burst * T

and then TAT := max(TAT, now) + T; a denied request leaves TAT untouched. From a full bucket
(TAT <= now) exactly `burst` requests pass at once, then one every T seconds. This is the usual
GCRA with delay-variation tolerance tau = (burst - 1) * T checked before the increment.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import asyncpg

from canopy_svc.store import rate_limit_buckets

log = logging.getLogger("canopy_svc.ratelimit")

T = TypeVar("T")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int
    retry_after_seconds: int


def _check(rate: float, burst: int) -> float:
    if not rate > 0 or not math.isfinite(rate):
        raise ValueError("rate must be a positive finite number of requests per second")
    if burst < 1:
        raise ValueError("burst must be at least 1")
    return 1.0 / rate


def _slack(interval: float) -> float:
    # Float rounding must not deny a request that arrives exactly on time; capped so it can
    # never add up to an extra request even at very high rates.
    return min(1e-6, interval / 1000.0)


def _bound(interval: float, burst: int) -> float:
    """Largest allowed value of (new TAT - now); shared with SQL so both decide identically."""
    return burst * interval + _slack(interval)


def decision_from(allowed: bool, tat: float, now: float, interval: float, burst: int) -> Decision:
    """Header values from the TAT after the decision (the new one, or the old one if denied)."""
    slack = _slack(interval)
    backlog = max(tat, now) - now  # seconds of capacity in use
    remaining = math.floor((burst * interval + slack - backlog) / interval)
    wait = backlog - (burst - 1) * interval - slack  # until one more request fits
    return Decision(
        allowed=allowed,
        limit=burst,
        remaining=min(burst, max(0, remaining)),
        reset_seconds=max(0, math.ceil(backlog - slack)),
        retry_after_seconds=max(1, math.ceil(wait)),
    )


def gcra(tat: float | None, now: float, rate: float, burst: int) -> tuple[Decision, float | None]:
    """One GCRA step: the decision, and the TAT to store (unchanged when denied)."""
    interval = _check(rate, burst)
    candidate = (now if tat is None else max(tat, now)) + interval
    if candidate - now <= _bound(interval, burst):
        return decision_from(True, candidate, now, interval, burst), candidate
    assert tat is not None  # an empty bucket always admits (burst >= 1)
    return decision_from(False, tat, now, interval, burst), tat


class RateLimiter(Protocol):
    async def hit(self, key: str, rate: float, burst: int) -> Decision: ...

    # Stores may also have `async def give_back(key, rate, burst)`: take back one admitted request, for
    # limits that count only some outcomes, known after the hit (the token route's failures).


class MemoryRateLimiter:
    """TATs in a dict: exact for one process, no I/O."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._sweep_at = max_keys
        self._tats: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._tats)

    async def hit(self, key: str, rate: float, burst: int) -> Decision:
        # No await inside: the read-modify-write is atomic on the event loop.
        now = self._clock()
        decision, new_tat = gcra(self._tats.get(key), now, rate, burst)
        if new_tat is not None:
            self._tats[key] = new_tat
            if len(self._tats) > self._sweep_at:
                self._sweep(now)
        return decision

    async def give_back(self, key: str, rate: float, burst: int) -> None:
        _check(rate, burst)
        tat = self._tats.get(key)
        if tat is not None:  # T earlier, never before now: a full bucket stays full
            self._tats[key] = max(tat - 1.0 / rate, self._clock())

    def _sweep(self, now: float) -> None:
        # A TAT in the past means a full bucket, which is what a missing key means too.
        self._tats = {k: t for k, t in self._tats.items() if t > now}
        # If most keys are still active, wait for the dict to double before sweeping again,
        # so a flood of distinct clients costs amortised O(1) per hit, not O(n).
        self._sweep_at = max(self._max_keys, 2 * len(self._tats))


class PostgresRateLimiter:
    """TATs in an UNLOGGED table (canopy_svc/store/rate_limit_buckets.py), shared by every worker and host
    on the database."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def hit(self, key: str, rate: float, burst: int) -> Decision:
        return (await self.take(key, rate, burst, 1))[1]

    async def take(self, key: str, rate: float, burst: int, wanted: int, returned: int = 0) -> tuple[int, Decision]:
        """Gives back `returned` unspent tokens and takes up to `wanted`, in one decision:
        (tokens granted, the decision for the first of them)."""
        interval = _check(rate, burst)
        wanted = max(0 if returned > 0 else 1, min(wanted, burst))  # 0: only a give-back
        granted, tat, now = await rate_limit_buckets.take(
            self._pool, key, interval=interval, bound=_bound(interval, burst), wanted=wanted, returned=max(0, returned)
        )
        return granted, decision_from(granted > 0, tat, now, interval, burst)

    async def give_back(self, key: str, rate: float, burst: int) -> None:
        await self.take(key, rate, burst, 0, 1)

    async def purge_expired(self) -> int:
        """Drop full buckets (same as absent); run now and then to keep the table small."""
        return await rate_limit_buckets.purge_expired(self._pool)


@dataclass
class _Lease:
    tokens: int  # granted by the store and not yet spent here
    batch: int  # how many were asked for: the next batch grows from it, or shrinks to what was spent
    expires_at: float
    rate: float
    burst: int
    store_remaining: int  # what the store had left after granting them
    reset_seconds: int

    def decision(self) -> Decision:
        """Admitted: the client's remaining tokens are the store's plus the ones still held here."""
        return Decision(
            allowed=True,
            limit=self.burst,
            remaining=min(self.burst, self.store_remaining + self.tokens),
            reset_seconds=self.reset_seconds,
            retry_after_seconds=1,
        )


class LeasingRateLimiter:
    """The shared store, asked for small batches of tokens instead of one per request.

    A busy client costs the database one upsert of its hot row per batch, not per request. A process
    asks for one token, then twice as many each time a batch is spent within `lease_seconds`, up to
    its rate times `lease_seconds` and an eighth of its burst (so no process sits on much of a burst
    others may need). Tokens not spent within `lease_seconds` are given back with the next batch
    (and the batch shrinks to what was spent). The limit holds across processes: tokens are counted
    in the shared bucket when taken, whoever spends them, and unspent ones return to it. At low
    rates the batch is one token: exactly the unbatched limiter.
    """

    def __init__(
        self,
        store: PostgresRateLimiter,
        *,
        lease_seconds: float = 0.05,
        timeout: float | None = 0.25,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self._store = store
        self._lease_seconds = lease_seconds
        self._timeout = timeout
        self._clock = clock
        self._max_keys = max_keys
        self._leases: dict[str, _Lease] = {}
        self._taking: dict[str, asyncio.Future[None]] = {}  # keys with a batch being taken, one at a time

    def batch_cap(self, rate: float, burst: int) -> int:
        return max(1, min(burst // 8, int(rate * self._lease_seconds)))

    async def hit(self, key: str, rate: float, burst: int) -> Decision:
        cap = self.batch_cap(rate, burst)
        if cap == 1:
            return (await self._take(key, rate, burst, 1, 0))[1]
        while True:
            lease = self._leases.get(key)
            if lease is not None and (lease.rate != rate or lease.burst != burst):
                del self._leases[key]  # the client's limits changed: start over (its few tokens are lost)
                lease = None
            if lease is not None and lease.tokens > 0 and lease.expires_at > self._clock():
                lease.tokens -= 1
                return lease.decision()
            pending = self._taking.get(key)
            if pending is None:
                break
            # Another request of this process is taking a batch for this client: spend from it after.
            await asyncio.shield(pending)
        returned = 0
        if lease is None:
            wanted = 1
        elif lease.tokens == 0:  # spent in time: busy, ask for more
            wanted = min(cap, 2 * lease.batch)
        else:  # expired with some unspent: give them back, ask for about what was spent
            returned, lease.tokens = lease.tokens, 0
            wanted = max(1, min(cap, lease.batch - returned))
        taking = asyncio.get_running_loop().create_future()
        self._taking[key] = taking
        try:
            granted, decision = await self._take(key, rate, burst, wanted, returned)
        finally:
            del self._taking[key]
            taking.set_result(None)
        if granted == 0:
            self._leases.pop(key, None)  # denied: the next request starts again from one token
            return decision
        if key not in self._leases and len(self._leases) >= self._max_keys:
            now = self._clock()
            self._leases = {k: v for k, v in self._leases.items() if v.expires_at > now}
        lease = _Lease(
            tokens=granted - 1,
            batch=wanted,
            expires_at=self._clock() + self._lease_seconds,
            rate=rate,
            burst=burst,
            store_remaining=decision.remaining,
            reset_seconds=decision.reset_seconds,
        )
        self._leases[key] = lease
        return lease.decision()

    async def give_back(self, key: str, rate: float, burst: int) -> None:
        """To the shared bucket, whether the request was admitted from a lease or by the store: one
        token was counted there for it either way."""
        await self._take(key, rate, burst, 0, 1)

    async def _take(self, key: str, rate: float, burst: int, wanted: int, returned: int) -> tuple[int, Decision]:
        if self._timeout is None:
            return await self._store.take(key, rate, burst, wanted, returned)
        async with asyncio.timeout(self._timeout):
            return await self._store.take(key, rate, burst, wanted, returned)


class FailOpenRateLimiter:
    """Admit requests when the store is slow or down: rate limiting must not cause an outage."""

    def __init__(self, inner: RateLimiter, *, timeout: float | None = 0.25) -> None:
        """`timeout=None` sets no timer, for a store that never waits on I/O or times its own round
        trips (a timer per request shows in profiles)."""
        self._inner = inner
        self._timeout = timeout
        self._failing = False

    @property
    def failing(self) -> bool:
        return self._failing

    async def hit(self, key: str, rate: float, burst: int) -> Decision:
        _check(rate, burst)  # caller bugs must still surface, not be swallowed as store failures
        decision = await self._call(self._inner.hit, key, rate, burst)
        if decision is None:
            return Decision(allowed=True, limit=burst, remaining=burst - 1, reset_seconds=0, retry_after_seconds=1)
        if self._failing:
            log.info("rate limit store available again")
            self._failing = False
        return decision

    async def give_back(self, key: str, rate: float, burst: int) -> None:
        """Best effort, as hit: a store that cannot take it back (down, slow, or without give_back) keeps it."""
        give_back = getattr(self._inner, "give_back", None)
        if give_back is not None:
            await self._call(give_back, key, rate, burst)

    async def _call(
        self, method: Callable[[str, float, int], Awaitable[T]], key: str, rate: float, burst: int
    ) -> T | None:
        """The store's answer, or None if it failed or took longer than the timeout."""
        try:
            if self._timeout is None:
                return await method(key, rate, burst)
            async with asyncio.timeout(self._timeout):
                return await method(key, rate, burst)
        except Exception as exc:  # includes TimeoutError; CancelledError still propagates
            if not self._failing:
                # Once per failure burst; the exception type only, its text may carry a DSN.
                log.warning(
                    "rate limit store unavailable, admitting requests: %s",
                    type(exc).__name__,
                    extra={"client_id": key},
                )
                self._failing = True
            return None


def headers_for(decision: Decision) -> list[tuple[bytes, bytes]]:
    """RateLimit-* response headers (and Retry-After when denied) as raw ASGI tuples."""
    headers = [
        (b"ratelimit-limit", str(decision.limit).encode()),
        (b"ratelimit-remaining", str(decision.remaining).encode()),
        (b"ratelimit-reset", str(decision.reset_seconds).encode()),
    ]
    if not decision.allowed:
        headers.append((b"retry-after", str(decision.retry_after_seconds).encode()))
    return headers
