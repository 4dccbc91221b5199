"""Rate limiting on the wire (CONTRACT section 3): per-client limits, the store, and the middleware.

The GCRA itself and its stores are in canopy_svc/rules/ratelimit.py. Here:

- `ClientLimitCache`: each client's (rate, burst) from api_clients, kept per process for a few
  seconds (`CANOPY_SVC_RATE_LIMIT_CACHE_SECONDS`) so a request does not pay a query for them.
  A lookup that fails (database down, slow) gives the defaults: fail open.
- `RateLimiting`: the process's limiter, chosen by `CANOPY_SVC_RATE_LIMIT_STORE` (memory for one
  process, postgres when several workers or hosts share the database), always behind
  `FailOpenRateLimiter`. (The Postgres store's purge_expired() runs every
  `CANOPY_SVC_RATE_LIMIT_PURGE_SECONDS` from the app's lifespan, by canopy_svc/core/supervision.py.)
- `RateLimitMiddleware`: runs after authentication; every response to a request with a principal
  carries RateLimit-Limit/-Remaining/-Reset; over the limit is 429 `rate_limited` with Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import asyncpg
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from canopy_svc.api.responses import error_for, send_error
from canopy_svc.api.state import state_of
from canopy_svc.core import metrics
from canopy_svc.core.settings import Settings
from canopy_svc.rules import clients
from canopy_svc.rules.clients import DEFAULT_LIMITS, Limits
from canopy_svc.rules.ratelimit import (
    Decision,
    FailOpenRateLimiter,
    LeasingRateLimiter,
    MemoryRateLimiter,
    PostgresRateLimiter,
    RateLimiter,
    headers_for,
)
from canopy_svc.wire import loanpro as lp
from canopy_svc.wire.errors import RateLimited

log = logging.getLogger("canopy_svc.ratelimit")

# A limits lookup gets at least this long before the defaults are used: it is one indexed read, and
# only a cold cache pays it, so a busy database should not turn a client's own limit into the default.
_MIN_LOOKUP_TIMEOUT = 1.0


class ClientLimitCache:
    """(rate, burst) per client_id, each kept `ttl` seconds; at most `max_entries` (oldest dropped)."""

    def __init__(
        self,
        fetch: Callable[[str], Awaitable[Limits | None]],
        *,
        ttl: float,
        timeout: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.ttl = ttl
        self._timeout = timeout
        self._max_entries = max_entries
        self.clock = clock
        self._entries: dict[str, tuple[float, Limits]] = {}  # client_id -> (expires_at, limits)
        self._failing = False

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, client_id: str) -> Limits:
        now = self.clock()
        cached = self._entries.get(client_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            async with asyncio.timeout(self._timeout):
                found = await self._fetch(client_id)
        except Exception as exc:  # includes TimeoutError; CancelledError still propagates
            if not self._failing:
                # The type only: the text of a connection error can carry the DSN.
                log.warning(
                    "client rate limits unavailable, using defaults: %s",
                    type(exc).__name__,
                    extra={"client_id": client_id},
                )
                self._failing = True
            return DEFAULT_LIMITS  # not cached: the client's own limits return with the database
        self._failing = False
        limits = found if found is not None else DEFAULT_LIMITS  # a deleted client's token: defaults
        if self.ttl > 0:
            self._entries.pop(client_id, None)
            while len(self._entries) >= self._max_entries:
                del self._entries[next(iter(self._entries))]  # insertion order: the oldest entry
            self._entries[client_id] = (now + self.ttl, limits)
        return limits


class RateLimiting:
    """One per app (so one per worker process), made once its pool exists: the limiter and the client
    limits it is fed."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.store = settings.rate_limit_store
        self._timeout = settings.rate_limit_timeout_seconds
        self._pool = pool
        self.client_limits = ClientLimitCache(
            self._fetch_limits,
            ttl=settings.rate_limit_cache_seconds,
            timeout=max(_MIN_LOOKUP_TIMEOUT, settings.rate_limit_timeout_seconds),
        )
        self._postgres: PostgresRateLimiter | None = None
        self._limiter = self.use_store(MemoryRateLimiter() if self.store == "memory" else PostgresRateLimiter(pool))

    async def _fetch_limits(self, client_id: str) -> Limits | None:
        return await clients.limits(self._pool, client_id)

    def use_store(self, store: RateLimiter) -> FailOpenRateLimiter:
        """Put `store` (wrapped to fail open) in place of the configured one; for tests and tools.
        A PostgresRateLimiter is used through a LeasingRateLimiter, as in serving."""
        self._postgres = store if isinstance(store, PostgresRateLimiter) else None
        if self._postgres is not None:
            store = LeasingRateLimiter(self._postgres, timeout=self._timeout)
        # Memory never waits on I/O, and the leasing store times its own round trips: no timer per request.
        untimed = isinstance(store, MemoryRateLimiter | LeasingRateLimiter)
        self._limiter = FailOpenRateLimiter(store, timeout=None if untimed else self._timeout)
        return self._limiter

    def limiter(self) -> FailOpenRateLimiter:
        return self._limiter

    async def hit(self, key: str, rate: float, burst: int) -> Decision:
        return await self.limiter().hit(key, rate, burst)

    async def give_back(self, key: str, rate: float, burst: int) -> None:
        """Takes back one request `hit` admitted (best effort: fails open, as hit does)."""
        await self.limiter().give_back(key, rate, burst)

    def postgres_store(self) -> PostgresRateLimiter:
        """The Postgres store, for its periodic purge_expired()."""
        if self._postgres is None:
            raise RuntimeError("the rate limit store is not PostgreSQL")
        return self._postgres


class RateLimitMiddleware:
    """Pure ASGI, inside AuthenticationMiddleware: limits requests that carry a principal, with the
    RateLimiting of the app's state (api/state.py)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = scope.get("state", {}).get("principal") if scope["type"] == "http" else None
        if principal is None:  # public paths (and failed authentication, already answered)
            await self.app(scope, receive, send)
            return
        limiting = state_of(scope).rate_limiting
        rate, burst = await limiting.client_limits.get(principal.client_id)
        decision = await limiting.hit(f"client:{principal.client_id}", rate, burst)
        if not decision.allowed:
            await send_error(send, lp.in_face(scope["path"], denied(decision, "client")))
            return
        rate_headers = headers_for(decision)

        response_started = False

        async def send_with_limits(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
                message["headers"] = [*message.get("headers", []), *rate_headers]
            await send(message)

        try:
            await self.app(scope, receive, send_with_limits)
        except Exception as exc:
            # RequestContextMiddleware (outside) logs the failure and answers it; answering here
            # first, with the same error it would choose, lets this answer carry RateLimit-* too.
            # It sees the response started and only logs. A client that went away gets no answer.
            if not response_started and not isinstance(exc, ClientDisconnect):
                await send_error(send_with_limits, lp.in_face(scope["path"], error_for(exc)))
            raise


def denied(decision: Decision, limit: str) -> RateLimited:
    """429 `rate_limited`: Retry-After and the RateLimit-* headers of the decision; counted by `limit`
    (a fixed word: core/metrics.py RATE_LIMIT_DENIALS)."""
    metrics.rate_limit_denied(limit)
    return RateLimited(
        decision.retry_after_seconds,
        headers={name.decode(): value.decode() for name, value in headers_for(decision) if name != b"retry-after"},
    )
