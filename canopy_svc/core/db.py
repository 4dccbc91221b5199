"""The connection pool, and the mapping of database failures to the contract's errors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from canopy_svc.core import metrics
from canopy_svc.core.dbtypes import Conn

log = logging.getLogger("canopy_svc.core.db")

T = TypeVar("T")


class DatabaseUnavailable(ConnectionError):
    """The gate is closed: the last probe found the database unreachable or hung."""


# The server is down, unreachable or frozen (DatabaseUnavailable is a ConnectionError, hence an OSError).
# A probe failing with one of these closes the gate; anything else (too many connections, a bad
# password) is an answer from a server that is up.
# With several hosts in DATABASE_URL and target_session_attrs=read-write, "none of them is a primary
# right now" (a failover between the old primary's loss and the standby's promotion) is down too.
UNREACHABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,  # class 08: the connection is gone or was refused
    asyncpg.exceptions.CannotConnectNowError,  # 57P03: starting up, shutting down, in recovery
    asyncpg.exceptions.AdminShutdownError,  # 57P01: a fast stop, a switchover's demotion
    asyncpg.exceptions.CrashShutdownError,  # 57P02
    asyncpg.exceptions.TargetServerAttributeNotMatched,
)

# Failures that mean "the database is not there right now": answered 503, never 500. asyncpg's
# InternalClientError is what a pooled connection that the gate terminated mid-operation can raise.
# A read-only transaction (25006) is a write sent to a node that is no primary (any more): a demoted
# primary, or a standby a single-host DATABASE_URL names; the gate's probe notices it and reconnects.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    *UNREACHABLE_ERRORS,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)


class NotPrimary(ConnectionError):
    """The probe's node answers but takes no writes (a standby, or a primary being demoted): for this
    service, whose every request may write, that is down (an OSError, so one of UNREACHABLE_ERRORS)."""


# The probe's one query: is this node one that takes writes? (`SELECT 1` would succeed on a standby.)
PROBE_QUERY = "SELECT NOT (pg_is_in_recovery() OR current_setting('transaction_read_only')::bool)"

# What ends a probe without ending the gate's watch: the server down, or answering with an error.
# Named (not unpacked inside `except`) because mypy cannot type a starred tuple there.
PROBE_ERRORS: tuple[type[BaseException], ...] = (*UNREACHABLE_ERRORS, asyncpg.PostgresError, asyncpg.InterfaceError)


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Releasing a connection to the pool sends no reset query (asyncpg's default costs a round trip
    per request). Safe because requests leave no session state: transactions are always closed
    (asyncpg rolls back any left open), locks are transaction-scoped, settings are SET LOCAL, and
    LISTEN runs on connections of its own."""


class DatabaseGate:
    """Fail fast while the database is down or hung, instead of letting every request wait on it.

    A stopped server refuses connections at once, but a frozen one (a paused VM, a stalled disk, a
    partition whose packets the kernel still acknowledges) accepts them and never answers: queries wait
    for command_timeout, new connections for the connect timeout, and requests queue behind the pool.
    So a probe on a connection of its own runs PROBE_QUERY every `interval` seconds with a `timeout`.
    When it fails, or finds a node that takes no writes (after a failover, or during a switchover),
    the gate closes: every connection the pool made is terminated (queries in flight
    fail at once, their transactions roll back server-side) and the pool may not connect again, so
    every request gets a quick 503. The first probe that succeeds opens the gate again.
    """

    def __init__(self, *, interval: float = 1.0, timeout: float = 2.0) -> None:
        self.interval = interval
        self.timeout = timeout
        self._closed = asyncio.Event()
        self._closed_at = 0.0
        self._probe_failing = False  # answered with an error: logged once until it answers right
        self._connections: weakref.WeakSet[asyncpg.Connection] = weakref.WeakSet()
        metrics.GATE_OPEN.set(1)

    @property
    def is_open(self) -> bool:
        return not self._closed.is_set()

    async def connect(self, *args: Any, **kwargs: Any) -> asyncpg.Connection:
        """The pool's `connect` hook: refused while closed, and abandoned if the gate closes meanwhile
        (a connection attempt to a frozen server would otherwise wait out the connect timeout)."""
        if not self.is_open:
            raise DatabaseUnavailable("the database is unavailable")
        connecting = asyncio.ensure_future(asyncpg.connect(*args, **kwargs))
        closing = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait((connecting, closing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            if not connecting.done():
                connecting.cancel()  # takes effect later: the task is not done yet
        if not connecting.done() or connecting.cancelled():
            raise DatabaseUnavailable("the database became unavailable while connecting")
        connection: asyncpg.Connection = connecting.result()
        self._connections.add(connection)
        return connection

    def close(self, reason: str) -> None:
        """One line per outage: this transition, and its end in open(); refused requests log none."""
        if self.is_open:
            self._closed_at = time.monotonic()
            # The exception type only: the text of a connection error can carry the DSN.
            log.error("database unavailable, answering 503 until it is back", extra={"error_type": reason})
        self._closed.set()
        metrics.GATE_OPEN.set(0)
        for connection in list(self._connections):
            connection.terminate()

    def open(self) -> None:
        if not self.is_open:
            log.warning("database available again", extra={"down_s": round(time.monotonic() - self._closed_at, 2)})
        self._closed.clear()
        metrics.GATE_OPEN.set(1)

    async def watch(self, dsn: str) -> None:
        """Probe forever (until cancelled), opening and closing the gate."""
        probe: asyncpg.Connection | None = None
        try:
            while True:
                try:
                    async with asyncio.timeout(self.timeout):
                        if probe is None or probe.is_closed():
                            probe = await asyncpg.connect(
                                dsn, timeout=self.timeout, server_settings={"application_name": "canopy-svc-probe"}
                            )
                        if not await probe.fetchval(PROBE_QUERY):
                            raise NotPrimary("the database takes no writes")
                except PROBE_ERRORS as exc:
                    if probe is not None:
                        probe.terminate()  # a fresh connection next round
                        probe = None
                    if isinstance(exc, UNREACHABLE_ERRORS):  # NotPrimary included (a ConnectionError)
                        # Cutting the pool's connections makes it reconnect: with several hosts and
                        # target_session_attrs=read-write in DATABASE_URL, to the new primary.
                        self.close(type(exc).__name__)
                    else:  # answered, so not down; the pool's own errors say the rest
                        if not self._probe_failing:
                            log.warning("database probe failed", extra={"error_type": type(exc).__name__})
                        self._probe_failing = True
                        self.open()
                else:
                    self._probe_failing = False
                    self.open()
                await asyncio.sleep(self.interval)
        finally:
            if probe is not None:
                probe.terminate()


class FairPool(asyncpg.Pool):
    """asyncpg's pool, with connections handed out first come, first served.

    The pool queues for its connections on an asyncio.Queue, where a request arriving just as a
    connection is released takes it ahead of the one that was woken for it, which goes back to the end
    of the line. Under load (more requests than connections) that starves a few requests: at 32
    connections on a pool of 10 the benchmark's GET p99 was 3-4x its median, and ~2x with a pool large
    enough never to queue. So each acquire first takes a turn from a FIFO semaphore (asyncio's admits
    no one ahead of a waiter) with one turn per connection: the pool itself never has a queue.
    """

    def __init__(self, *args: Any, max_size: int, **kwargs: Any) -> None:
        super().__init__(*args, max_size=max_size, **kwargs)
        self._turns = asyncio.Semaphore(max_size)
        self._turn_holders: set[Any] = set()  # the proxies holding a turn: each gives it back once

    async def _acquire(self, timeout: float | None) -> Any:  # noqa: ASYNC109 (asyncpg's signature)
        if timeout is None:
            return await self._acquire_in_turn()
        async with asyncio.timeout(timeout):  # one budget for the turn and the connection
            return await self._acquire_in_turn()

    async def _acquire_in_turn(self) -> Any:
        # The gauges move with the events (no sampling task): waiting from the call until a connection
        # is held or the wait fails, in use from then until release.
        metrics.POOL_WAITING.inc()
        try:
            await self._turns.acquire()
            try:
                proxy = await super()._acquire(None)  # type: ignore[misc]  # private: asyncpg's stubs omit it
            except BaseException:
                self._turns.release()
                raise
        finally:
            metrics.POOL_WAITING.dec()
        self._turn_holders.add(proxy)
        metrics.POOL_IN_USE.inc()
        return proxy

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        try:
            await super().release(connection, timeout=timeout)
        finally:
            if connection in self._turn_holders:
                self._turn_holders.discard(connection)
                self._turns.release()
                metrics.POOL_IN_USE.dec()


async def create_pool(
    dsn: str, *, min_size: int = 2, max_size: int = 10, gate: DatabaseGate | None = None
) -> asyncpg.Pool:
    # asyncpg.create_pool's defaults, made explicit because the class is ours.
    pool = await FairPool(
        dsn,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        min_size=min_size,
        max_size=max_size,
        # A dead server must surface as a quick 503, not a request that hangs; a hung one is the
        # gate's to detect (its probe is much quicker than these last-resort timeouts).
        timeout=5,
        command_timeout=30,
        server_settings={"application_name": "canopy-svc", "timezone": "UTC"},
        reset=_keep_session,
        connect=gate.connect if gate is not None else None,
    )
    assert pool is not None
    return pool


async def when_available(attempt: Callable[[], Awaitable[T]], *, what: str, seconds: float = 300.0) -> T:
    """attempt(), tried again with backoff while the database is unavailable, for up to `seconds`.
    For a worker's startup: one that starts while the database restarts (uvicorn starting a second
    worker, or replacing one) waits for it, as running workers do, instead of failing its startup,
    which makes uvicorn stop every worker."""
    deadline = time.monotonic() + seconds
    delay = 0.25
    while True:
        try:
            return await attempt()
        except UNAVAILABLE_ERRORS as exc:
            if time.monotonic() + delay > deadline:
                raise
            if delay == 0.25:  # once per wait
                log.warning(
                    "database unavailable at startup, waiting for it",
                    extra={"step": what, "error_type": type(exc).__name__, "wait_s": seconds},
                )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


def atomic(conn: Conn) -> contextlib.AbstractAsyncContextManager[Any]:
    """A transaction, unless the connection is in one already (then the outer one holds the work)."""
    if conn.is_in_transaction():
        return contextlib.nullcontext()
    return conn.transaction()
