"""One log line as an outage starts and one as it ends, not a stack trace per request (issue 8, item 7).

A real outage: the app's own lifespan (pool and database gate) on a PostgreSQL of the test's own, which
is crashed (`pg_ctl stop -m immediate`) and started again. While the gate is closed, a few hundred
requests are each answered 503 and log their access line only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from canopy_svc.api.app import create_app
from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.settings import Settings
from canopy_svc.store.migrations import migrate_database
from tests.helpers import (
    TEST_DATA_KEY,
    TEST_JWT_SECRET,
    TEST_LITHIC_HOSTS,
    CrashablePostgres,
    make_client,
    minimal_customer,
    served,
)
from tests.processes import scratch_dir

BOUND_SECONDS = 60.0
REQUESTS_DURING = 300
CLOSED, REOPENED = "database unavailable, answering 503 until it is back", "database available again"


async def wait_for(predicate: object, what: str) -> None:
    deadline = time.monotonic() + BOUND_SECONDS
    while True:
        result = predicate()  # type: ignore[operator]
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out after {BOUND_SECONDS}s waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.fixture
def postgres() -> Iterator[CrashablePostgres]:
    with scratch_dir("canopy-outage-") as root:
        yield CrashablePostgres(root)


async def test_an_outage_logs_its_two_transitions_and_no_stack_per_request(
    postgres: CrashablePostgres, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dsn = await asyncio.to_thread(postgres.start)
    try:
        await migrate_database(dsn, DataCipher(TEST_DATA_KEY))
        async with asyncpg.create_pool(dsn, min_size=1, max_size=1) as setup:
            # Clients enough that no one's rate limit (the defaults, while limits cannot be read) is hit.
            clients = [await make_client(setup, "acme") for _ in range(4)]
        settings = Settings(
            database_url=dsn,
            data_dir=tmp_path,
            jwt_secret=TEST_JWT_SECRET,
            data_key=TEST_DATA_KEY,
            lithic_allowed_hosts=TEST_LITHIC_HOSTS,
            db_probe_seconds=0.1,
            db_probe_timeout_seconds=2,
        )
        app = create_app(settings)
        auth = [
            {"Authorization": f"Bearer {app.resources.tokens.issue(client_id, org_id, 'read write')}"}
            for org_id, client_id, _ in clients
        ]
        async with (
            served(app) as running,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=running), base_url="http://testserver", headers=auth[0], timeout=30
            ) as http,
        ):
            created = await http.post("/customers", json=minimal_customer(customer_id="c0"))
            assert created.status_code == 200, created.text
            caplog.clear()
            caplog.set_level(logging.INFO)

            await asyncio.to_thread(postgres.crash)
            await wait_for(lambda: any(r.getMessage() == CLOSED for r in caplog.records), "the gate to close")
            caplog_at_close = len(caplog.records)
            for batch in range(REQUESTS_DURING // 30):
                answers = await asyncio.gather(
                    *(
                        http.post("/customers", json=minimal_customer(customer_id=f"d{batch}-{i}"), headers=auth[i % 4])
                        if i % 3 == 0
                        else http.get("/customers/c0", headers=auth[i % 4])
                        if i % 3 == 1
                        else http.get("/readyz")
                        for i in range(30)
                    )
                )
                assert {a.status_code for a in answers} == {503}, {a.status_code for a in answers}
            assert not any(r.getMessage() == REOPENED for r in caplog.records)  # all while it was closed

            await asyncio.to_thread(postgres.restart)

            async def back() -> bool:
                return (await http.get("/customers/c0")).status_code == 200

            await wait_for(back, "answers again")
    finally:
        await asyncio.to_thread(postgres.stop)

    records = caplog.records
    closed = [r for r in records if r.getMessage() == CLOSED]
    reopened = [r for r in records if r.getMessage() == REOPENED]
    stacks = [r for r in records if hasattr(r, "stack")]
    assert stacks == [], f"{len(stacks)} stack traces, the first: {stacks[0].__dict__}"  # none, for any request
    assert len(closed) == 1 and closed[0].levelno == logging.ERROR and closed[0].error_type  # type: ignore[attr-defined]
    assert len(reopened) == 1 and reopened[0].down_s > 0  # type: ignore[attr-defined]
    assert [r for r in records if r.levelno >= logging.ERROR] == closed  # the outage's one error line
    # Every request of the outage has its access line, 503, and nothing else was logged for them.
    during = records[caplog_at_close:]
    access = [r for r in during if r.name == "canopy_svc.access" and r.status == 503]  # type: ignore[attr-defined]
    assert len(access) >= REQUESTS_DURING
    assert [r for r in during if r.name == "canopy_svc.wire.errors"] == []
