"""LISTEN on a connection of its own, for a worker woken by NOTIFY (the card and delivery outboxes)."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from canopy_svc.core.db import UNAVAILABLE_ERRORS

# Retried, not raised: the database down, no primary among DATABASE_URL's hosts yet (a failover),
# or an error answered (LISTEN on a standby).
_RETRIED: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, asyncpg.PostgresError)


async def listen_forever(dsn: str, channel: str, wake: asyncio.Event) -> None:
    """Sets `wake` on every NOTIFY of `channel`, and once on each (re)connect: what was committed while
    nobody listened is due too. Reconnects when the database comes back; runs until cancelled."""
    while True:
        connection: asyncpg.Connection | None = None
        lost = asyncio.Event()
        try:
            connection = await asyncpg.connect(dsn, timeout=5)
            connection.add_termination_listener(lambda _connection, lost=lost: lost.set())
            await connection.add_listener(channel, lambda *_: wake.set())
            wake.set()
            while not connection.is_closed():  # a dead server may not call the termination listener
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), 10)
        except _RETRIED:
            await asyncio.sleep(1)
        finally:
            if connection is not None and not connection.is_closed():
                await connection.close()
