"""LISTEN on a connection of its own, for a worker woken by NOTIFY (the card and delivery outboxes)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from canopy_svc.core.db import UNAVAILABLE_ERRORS

# Retried, not raised: the database down, no primary among DATABASE_URL's hosts yet (a failover),
# or an error answered (LISTEN on a standby).
_RETRIED: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, asyncpg.PostgresError)


async def listen_forever(dsn: str, channel: str, wake: asyncio.Event) -> None:
    """Sets `wake` on every NOTIFY of `channel`, and once on each (re)connect: what was committed while
    nobody listened is due too. Reconnects when the database comes back; runs until cancelled."""

    def connected(up: bool) -> None:
        if up:
            wake.set()

    await listen(dsn, channel, lambda _payload: wake.set(), connected)


async def wait_set(event: asyncio.Event, seconds: float) -> bool:
    """`event.wait()` for at most `seconds`: whether it was set. Not `asyncio.wait_for`: on
    Python 3.10 and 3.11 that swallows a cancellation arriving in the loop tick the event is set in
    (cpython#86296), and a worker cancelled at that moment never stops; `asyncio.wait` never absorbs
    the caller's cancellation."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=seconds)
    finally:
        waiter.cancel()  # nothing when it is done; else it would wait on, unawaited
    return event.is_set()


async def listen(
    dsn: str, channel: str, on_notify: Callable[[str], None], on_connected: Callable[[bool], None]
) -> None:
    """LISTEN on a connection of its own until cancelled: `on_notify(payload)` for every NOTIFY,
    `on_connected(True)` once the LISTEN holds and `on_connected(False)` when the connection is lost
    (then it reconnects, every second, through outages and failovers alike)."""
    while True:
        connection: asyncpg.Connection | None = None
        lost = asyncio.Event()
        try:
            connection = await asyncpg.connect(dsn, timeout=5)
            connection.add_termination_listener(lambda _connection, lost=lost: lost.set())
            await connection.add_listener(channel, lambda *args: on_notify(args[-1]))
            on_connected(True)
            while not connection.is_closed():  # a dead server may not call the termination listener
                await wait_set(lost, 10)
        except _RETRIED:
            on_connected(False)
            await asyncio.sleep(1)
        finally:
            on_connected(False)
            if connection is not None and not connection.is_closed():
                await connection.close()


# --- requests waiting for the cards they queued (issue 13 item 7) ---------------------------------

# The card worker NOTIFYs this channel with a card's row id when it records the card issued or failed
# (store/cards.py), in whichever process it runs: each process's one listener wakes its requests.
CARD_SETTLED_CHANNEL = "canopy_card_settled"

# The row ids of the cards the current request queued (rules/links.py appends each); None outside a
# request that asked for them (api/card_waits.py sets it).
queued_cards: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("queued_cards", default=None)


def note_queued_card(card_id: int) -> None:
    queued = queued_cards.get()
    if queued is not None:
        queued.append(card_id)


class CardSettlements:
    """Requests of this process waiting, a bounded time, for the worker (any process's) to settle the
    cards they queued. Waits only while its listener is connected: with no listener (no database URL,
    or while the database is away) a wait would only run out, so the request answers at once."""

    def __init__(self) -> None:
        self._waiting: dict[int, set[asyncio.Event]] = {}
        self.listening = False

    def settled(self, payload: str) -> None:
        with contextlib.suppress(ValueError):
            for event in self._waiting.get(int(payload), ()):
                event.set()

    async def wait(
        self, card_ids: Sequence[int], pending: Callable[[Sequence[int]], Awaitable[Sequence[int]]], seconds: float
    ) -> None:
        """Returns when `pending(ids)` (the ids still PENDING, read from the database) is empty, or after
        `seconds`. Registered before the first read: a card settled in between is not missed."""
        if not card_ids or seconds <= 0 or not self.listening:
            return
        woken = asyncio.Event()
        for card_id in card_ids:
            self._waiting.setdefault(card_id, set()).add(woken)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        try:
            remaining = await pending(card_ids)
            while remaining and (left := deadline - loop.time()) > 0:
                if not await wait_set(woken, left):
                    return
                woken.clear()
                remaining = await pending(remaining)
        finally:
            for card_id in card_ids:
                waiters = self._waiting.get(card_id)
                if waiters is not None:
                    waiters.discard(woken)
                    if not waiters:
                        del self._waiting[card_id]

    async def listen(self, dsn: str) -> None:
        """LISTEN on a connection of its own until cancelled; reconnects when the database comes back."""
        await listen(dsn, CARD_SETTLED_CHANNEL, self.settled, self._connected)

    def _connected(self, up: bool) -> None:
        self.listening = up
