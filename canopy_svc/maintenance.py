"""Periodic housekeeping in every server process, off the request path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

log = logging.getLogger("canopy_svc.maintenance")

Job = Callable[[], Awaitable[int]]


async def run_every(interval_seconds: float, name: str, job: Job) -> None:
    """Runs `job` until it has nothing left to do, then waits; forever, until cancelled.
    Failures are logged and retried next round: housekeeping never takes a process down."""
    while True:
        try:
            for _ in range(1000):  # batch after batch while there is work, within a bound
                if await job() == 0:
                    break
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("maintenance job failed", extra={"job": name, "error_type": type(exc).__name__})
        await asyncio.sleep(interval_seconds)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
