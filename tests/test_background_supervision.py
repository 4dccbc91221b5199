"""Every background task is supervised (issue 8, item 6): one that fails with an unexpected error is
logged once with its stack, restarted with backoff, and named by /readyz (503) while it is down.

The failure is injected into the app's own code path (the store function the task calls), on the real
database; nothing else is replaced. Also: InternalClientError, which a pooled connection the gate
terminated mid-operation can raise, is a 503, not a 500.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from canopy_svc.api.app import create_app
from canopy_svc.api.responses import error_for
from canopy_svc.core import supervision
from canopy_svc.core.db import UNAVAILABLE_ERRORS
from canopy_svc.core.settings import Settings
from canopy_svc.store import cards, idempotency, lithic_sync
from tests.helpers import served

BOUND_SECONDS = 60.0  # generous: a busy machine


class InjectedBug(Exception):
    """Stands for a bug: an error no background loop expects."""


class Switch:
    """Wraps a store function: raises InjectedBug while on, calls the real one while off."""

    def __init__(self, real: Callable[..., Awaitable[Any]]) -> None:
        self.real = real
        self.on = True
        self.failures = 0
        self.successes = 0

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.on:
            self.failures += 1
            raise InjectedBug("injected")
        result = await self.real(*args, **kwargs)
        self.successes += 1
        return result


async def wait_for(predicate: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    deadline = time.monotonic() + BOUND_SECONDS
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out after {BOUND_SECONDS}s waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    ("task", "module", "function"),
    [
        ("idempotency-keys", idempotency, "purge_expired"),
        ("card-worker", cards, "seconds_until_next_due"),
        ("card-reconciler", lithic_sync, "seconds_until_next_read"),
    ],
)
async def test_a_failing_background_task_is_logged_once_restarted_and_reported_by_readyz(
    settings: Settings,
    pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    task: str,
    module: Any,
    function: str,
) -> None:
    switch = Switch(getattr(module, function))
    monkeypatch.setattr(module, function, switch)
    caplog.set_level(logging.INFO, logger="canopy_svc.core.supervision")
    app = create_app(dataclasses.replace(settings, card_worker=True), pool=pool)
    async with (
        served(app) as running,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=running), base_url="http://testserver") as http,
    ):
        down: list[httpx.Response] = []

        async def readyz_names_the_task() -> bool:
            answer = await http.get("/readyz")
            if answer.status_code == 503:
                down.append(answer)
            return answer.status_code == 503

        await wait_for(readyz_names_the_task, f"/readyz to report {task}")
        body = down[-1].json()
        assert body == {
            "error": {"code": "unavailable", "message": "A background task is not running", "details": [{"task": task}]}
        }
        assert int(down[-1].headers["retry-after"]) >= 1

        await wait_for(lambda: switch.failures >= 3, "the task to be restarted and fail twice more")
        switch.on = False  # the bug is gone: the next restart runs
        await wait_for(lambda: switch.successes >= 1, "a restart that runs")

        async def ready() -> bool:
            answer = await http.get("/readyz")
            return answer.status_code == 200 and answer.json() == {"status": "ready"}

        await wait_for(ready, "/readyz 200 once the task runs again")

    mine = [r for r in caplog.records if r.name == "canopy_svc.core.supervision" and getattr(r, "task", None) == task]
    with_stack = [r for r in mine if getattr(r, "stack", None)]
    assert len(with_stack) == 1, [r.getMessage() for r in mine]  # once, however often it failed
    first = with_stack[0]
    assert first.levelno == logging.ERROR and first.getMessage() == "background task failed, restarting it"
    assert first.error_type == "InjectedBug"  # type: ignore[attr-defined]
    assert any("in __call__" in frame for frame in first.stack)  # type: ignore[attr-defined]  # where it raised
    again = [r for r in mine if r.getMessage() == "background task failed again, restarting it"]
    assert len(again) == switch.failures - 1 >= 2
    assert all(not hasattr(r, "stack") for r in again)
    delays = [r.restart_in_s for r in mine]  # type: ignore[attr-defined]
    assert delays[-1] > delays[0]  # backing off


async def test_internal_client_error_is_unavailable_not_a_server_error() -> None:
    error = asyncpg.exceptions.InternalClientError("cannot perform operation: connection is closed")
    assert isinstance(error, UNAVAILABLE_ERRORS)
    assert error_for(error).status == 503
    assert isinstance(error, supervision.RETRIED_ERRORS)  # and the background loops retry it next round
