"""`canopy-svc serve` supervises the embedded PostgreSQL it started (issue 8, item 5).

The postmaster is killed under the server (SIGKILL: a crash, with a stale postmaster.pid and shared
memory still attached by its backends for a moment; SIGINT: a fast shutdown). With nobody touching it,
/readyz is 200 again within a bound, on the same DSN, and every customer whose create was answered 200,
before, during or after the outage, is there, whole. The recovery time is printed (`pytest -s`).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.helpers import make_client, minimal_customer
from tests.processes import (
    EmbeddedServerProcess,
    embedded_dsn,
    poll,
    postmaster_pid,
    scratch_dir,
    stop_leftover_postgres,
)

STARTUP_SECONDS = 180.0  # initdb on a busy machine
RECOVERY_SECONDS = 120.0  # generous: crash recovery and backoff on two shared, busy cores


@pytest.fixture
def data_dir() -> Iterator[Path]:
    with scratch_dir("canopy-supervised-") as root:
        yield root / "data"


async def create(http: httpx.AsyncClient, n: int, tag: str) -> tuple[str, httpx.Response]:
    customer_id = f"{tag}-{n}"
    body = minimal_customer(customer_id=customer_id, email=f"{tag}{n}@example.com", name_first=f"N{n}")
    return customer_id, await http.post("/customers", json=body)


@pytest.mark.parametrize(
    ("signum", "workers"), [(signal.SIGKILL, 2), (signal.SIGINT, 1)], ids=["SIGKILL-2-workers", "SIGINT-1-worker"]
)
async def test_serve_restarts_its_dead_postgres_and_keeps_every_acknowledged_customer(
    data_dir: Path, signum: signal.Signals, workers: int
) -> None:
    server = EmbeddedServerProcess(data_dir, workers=workers, CANOPY_SVC_CARD_WORKER="0")
    await asyncio.to_thread(server.start, STARTUP_SECONDS)
    try:
        # start() returns when one worker answers; the others may still be starting.
        await asyncio.to_thread(
            poll, lambda: server.log().count("Application startup complete.") >= workers, timeout=STARTUP_SECONDS
        )
        dsn = embedded_dsn(server.pgdata)
        async with asyncpg.create_pool(dsn, min_size=1, max_size=1) as setup:
            _, client_id, secret = await make_client(setup, "acme")
        acknowledged: dict[str, dict[str, Any]] = {}
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            token = await http.post("/auth/token", json={"client_id": client_id, "client_secret": secret})
            assert token.status_code == 200, token.text
            http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
            for n in range(10):
                customer_id, answer = await create(http, n, "before")
                assert answer.status_code == 200, answer.text
                acknowledged[customer_id] = answer.json()

            old_pid = postmaster_pid(server.pgdata)
            assert old_pid is not None
            os.kill(old_pid, signum)
            killed_at = time.monotonic()

            # Keep creating while it is down and coming back; poll /readyz until 200, within a bound.
            statuses: set[int] = set()
            n = 0
            while True:
                customer_id, answer = await create(http, n, "during")
                n += 1
                statuses.add(answer.status_code)
                if answer.status_code == 200:
                    acknowledged[customer_id] = answer.json()
                # Back once the outage was seen, not after a guessed 0.5 s: a shutdown under load (SIGINT's
                # checkpoint) may take longer to show.
                if 503 in statuses and (await http.get("/readyz")).status_code == 200:
                    break
                assert time.monotonic() - killed_at < RECOVERY_SECONDS, (
                    f"/readyz not 200 {RECOVERY_SECONDS}s after the postmaster died:\n{server.log()[-4000:]}"
                )
                await asyncio.sleep(0.05)  # the polling pace, not a wait for anything
            recovery_seconds = time.monotonic() - killed_at
            during = n
            assert statuses <= {200, 503}, statuses  # never a 500 on the way
            assert 503 in statuses  # the outage was seen

            new_pid = postmaster_pid(server.pgdata)
            assert new_pid is not None and new_pid != old_pid
            assert embedded_dsn(server.pgdata) == dsn  # the same socket: the workers' DSN still holds
            assert server.process is not None and server.process.poll() is None

            for n in range(5):
                customer_id, answer = await create(http, n, "after")
                assert answer.status_code == 200, answer.text
                acknowledged[customer_id] = answer.json()
            for customer_id, created in acknowledged.items():
                stored = await http.get(f"/customers/{customer_id}")
                assert stored.status_code == 200, (customer_id, stored.text)
                assert stored.json() == {k: v for k, v in created.items() if k != "warnings"}  # duplicate warnings
        # /readyz answered from one worker; the other's probe may log its reopening a moment later.
        deadline = time.monotonic() + RECOVERY_SECONDS
        while True:
            log = server.log()
            lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
            messages = [line["message"] for line in lines]
            # The database accepts connections (and /readyz turns 200) a moment before `pg_ctl -w`
            # returns and the supervisor logs its restart: wait for that line too.
            if (
                messages.count("database unavailable, answering 503 until it is back")
                == messages.count("database available again")
                and messages.count("embedded postgres restarted")
                >= messages.count("embedded postgres died, restarting it")
            ) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)  # the polling pace of a bounded wait
        # At least one death seen, and each one ended in a restart. (Under two CPU hogs a second
        # detection was once logged for one kill; why is still open, see the issue note.)
        deaths = messages.count("embedded postgres died, restarting it")
        assert deaths >= 1 and messages.count("embedded postgres restarted") == deaths, log[-4000:]
        # One line as each worker's gate closes and one as it reopens (if its probe saw the outage at
        # all), and no stack trace: not one per request, nor from a background task.
        closed, reopened = (
            messages.count(m)
            for m in ("database unavailable, answering 503 until it is back", "database available again")
        )
        assert closed == reopened <= workers, log[-4000:]
        assert [line for line in lines if "stack" in line] == []
        errors = {line["message"] for line in lines if line["level"] == "error"}
        assert errors <= {
            "embedded postgres died, restarting it",
            "database unavailable, answering 503 until it is back",
        }, errors
        print(
            f"\n{signal.Signals(signum).name}, {workers} worker(s): /readyz 200 again "
            f"{recovery_seconds:.2f}s after the postmaster died; {during} creates during the outage; "
            f"{len(acknowledged)} acknowledged customers all present"
        )
        assert server.terminate() == 0
    finally:
        server.kill()
        stop_leftover_postgres(server.pgdata)
