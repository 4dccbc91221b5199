"""How background work runs in every server process, off the request path: the periodic loop of
housekeeping jobs, and the supervisor that keeps every background task running (workers/ holds the
work itself; /readyz reads the supervisor)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import traceback
from collections.abc import Awaitable, Callable

import asyncpg

from canopy_svc.core.db import UNAVAILABLE_ERRORS

log = logging.getLogger("canopy_svc.core.supervision")

Job = Callable[[], Awaitable[int]]

# What a background loop expects and retries on its next round: the database not there (the gate's
# own termination of busy connections included) or answering with an error.
RETRIED_ERRORS: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, asyncpg.PostgresError)


async def run_every(interval_seconds: float, name: str, job: Job) -> None:
    """Runs `job` until it has nothing left to do, then waits; forever, until cancelled.
    Failures are logged and retried next round: housekeeping never takes a process down."""
    while True:
        try:
            for _ in range(1000):  # batch after batch while there is work, within a bound
                if await job() == 0:
                    break
        except RETRIED_ERRORS as exc:
            log.warning("maintenance job failed", extra={"job": name, "error_type": type(exc).__name__})
        await asyncio.sleep(interval_seconds)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class Supervisor:
    """Keeps background tasks running: each is a coroutine meant to run until cancelled.

    When one fails (any exception, a bug included) or returns, the failure is logged once with its
    stack and the task is started again after a backoff that doubles up to `max_delay`. A failure that
    repeats in a streak logs a line without the stack; a run that lasted `healthy_after` ends the
    streak. While a task waits for its restart it is in `not_running()`, which /readyz reports.
    """

    def __init__(self, *, first_delay: float = 1.0, max_delay: float = 30.0, healthy_after: float = 60.0) -> None:
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.healthy_after = healthy_after
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._down: set[str] = set()

    def start(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        assert name not in self._tasks, name
        self._tasks[name] = asyncio.create_task(self._keep_running(name, run), name=name)

    def not_running(self) -> list[str]:
        """The tasks waiting to be restarted, and any whose supervision itself ended (never expected)."""
        ended = {name for name, task in self._tasks.items() if task.done()}
        return sorted(self._down | ended)

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _keep_running(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        streak = 0
        while True:
            started = time.monotonic()
            error: Exception | None = None
            try:
                await run()
            except Exception as exc:  # CancelledError (a BaseException) still ends the task
                error = exc
            streak = 1 if time.monotonic() - started >= self.healthy_after else streak + 1
            delay = min(self.first_delay * 2 ** (streak - 1), self.max_delay) * random.uniform(0.5, 1.0)
            fields: dict[str, object] = {
                "task": name,
                "error_type": type(error).__name__ if error else None,
                "failures": streak,
                "restart_in_s": round(delay, 2),
            }
            if streak == 1 and error is not None:
                # Type and stack only: exception text can carry row values (an SSN in a CHECK failure).
                fields["stack"] = [
                    f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(error.__traceback__)
                ][-8:]
                log.error("background task failed, restarting it", extra=fields)
            elif error is None:
                log.error("background task ended, restarting it", extra=fields)
            else:
                log.warning("background task failed again, restarting it", extra=fields)
            self._down.add(name)
            try:
                await asyncio.sleep(delay)
            finally:
                self._down.discard(name)
