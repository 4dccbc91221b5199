"""An idle server costs (almost) nothing: its periodic work is counted here, not timed (issue 9, item 4).

An idle `canopy-svc serve` used 10% of a core: the card worker saw an empty outbox as due at once
(`greatest(0, NULL)` is 0) and drained it every 10 ms, three queries a round, and the embedded
PostgreSQL's supervisor read the pid file twice a second. Each test counts what happens in an idle
window: a slow machine can only make the counts smaller, never larger, so the bounds hold anywhere.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from canopy_svc.api.app import create_app
from canopy_svc.core.db import PROBE_QUERY
from canopy_svc.core.embedded import EmbeddedPostgres
from canopy_svc.core.settings import Settings
from canopy_svc.store import cards as card_store
from tests.helpers import ApiClient, minimal_customer

IDLE_WINDOW_SECONDS = 2.5
BOUND_SECONDS = 30.0
CARD_CONFIG = {"lithic": {"type": "SINGLE_USE"}}


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOUND_SECONDS
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {BOUND_SECONDS}s waiting for {what}"
        time.sleep(0.01)


async def pending_card(api: ApiClient) -> None:
    product = await api.http.post(
        "/products", json={"product_overview": {"product_name": "Card", "product_type": "REVOLVING"}}
    )
    account = await api.http.post("/accounts", json={"account_id": "acc-1", "product_id": product.json()["product_id"]})
    assert account.status_code == 200, account.text
    created = await api.http.post(
        "/customers",
        json=minimal_customer(
            customer_id="cust-1",
            assign_to_accounts=[{"account_id": "acc-1", "customer_account_issuer_processor_config": CARD_CONFIG}],
        ),
    )
    assert created.status_code == 200, created.text


async def test_an_empty_outbox_is_never_due(pool: asyncpg.Pool) -> None:
    assert await card_store.seconds_until_next_due(pool, lease_seconds=60) is None


async def test_the_next_wake_is_the_earliest_due_card_or_expiring_change(api: ApiClient, pool: asyncpg.Pool) -> None:
    await pending_card(api)
    await pool.execute("UPDATE cards SET next_attempt_at = now() + interval '100 seconds'")
    due_in = await card_store.seconds_until_next_due(pool, lease_seconds=60)
    assert due_in is not None and 50 < due_in <= 100
    await pool.execute("UPDATE cards SET next_attempt_at = now() - interval '5 seconds'")
    assert await card_store.seconds_until_next_due(pool, lease_seconds=60) == 0.0

    # An issued card whose change was recorded 50 s ago: its lease of 60 s runs out in 10 s.
    await pool.execute("""UPDATE cards SET status = 'ISSUED', token = 'tok', last_four = '4242',
                                           change_id = gen_random_uuid(), change_fields = '{}',
                                           change_started_at = now() - interval '50 seconds'""")
    due_in = await card_store.seconds_until_next_due(pool, lease_seconds=60)
    assert due_in is not None and 0 < due_in <= 10


async def test_an_idle_app_sends_only_its_database_probe(
    settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole lifespan (its own pool, the gate's probe every second, the card and delivery workers,
    the reconciler, the purges of idempotency keys and of events): once started, an idle window sees the probe's
    SELECT 1 and nothing else."""
    sent: list[str] = []
    real_execute, real_simple = asyncpg.Connection._execute, asyncpg.Connection.execute

    async def counted_execute(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(" ".join(query.split()))
        return await real_execute(self, query, *args, **kwargs)

    async def counted_simple(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
        if not args:  # with arguments it goes through _execute, counted there
            sent.append(" ".join(query.split()))
        return await real_simple(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "_execute", counted_execute)
    monkeypatch.setattr(asyncpg.Connection, "execute", counted_simple)
    real_add_listener = asyncpg.Connection.add_listener

    async def marked_add_listener(self: asyncpg.Connection, channel: str, callback: Any) -> None:
        await real_add_listener(self, channel, callback)
        sent.append(f"LISTENING {channel}")  # the worker's wake is set after this, not when LISTEN is sent

    monkeypatch.setattr(asyncpg.Connection, "add_listener", marked_add_listener)
    idle = dataclasses.replace(settings, database_url=database_url, card_worker=True, db_probe_seconds=1.0)
    app = create_app(idle)
    async with app.router.lifespan_context(app):

        def woken_round_done(channel: str, claim: str, due: str) -> bool:
            # The worker's round that its LISTEN woke (a round that began after it: the one the LISTEN
            # fell into ends before the wake is seen), up to its look at when the next work is due.
            after_listen = [q for q in itertools.dropwhile(lambda q: q != f"LISTENING {channel}", sent)]
            round_start = next((i for i, q in enumerate(after_listen) if claim in q), None)
            return round_start is not None and any(due in q for q in after_listen[round_start:])

        def started() -> bool:
            # The purges and the probe ran, and so did each worker's round that its LISTEN woke.
            return (
                woken_round_done("canopy_card_outbox", "SET attempts = c.attempts", "min(next_attempt_at) FROM cards")
                and woken_round_done(
                    # Not "FROM webhook_deliveries": the retention purge's DELETE says it too.
                    "canopy_webhook_deliveries",
                    "WITH candidates",
                    "min(next_attempt_at) FROM webhook_deliveries",
                )
                and any("min(reconcile_due_at)" in q for q in sent)  # the reconciler's first round
                and any("DELETE FROM lithic_webhooks_received" in q for q in sent)
                and "LISTENING canopy_card_settled" in sent  # the requests' wait for their cards
                and any("idempotency_keys" in q for q in sent)
                and any("DELETE FROM events" in q for q in sent)
                and " ".join(PROBE_QUERY.split()) in sent
            )

        deadline = time.monotonic() + BOUND_SECONDS
        while not started():
            assert time.monotonic() < deadline, f"the background tasks did not start: {sent}"
            await asyncio.sleep(0.01)
        sent.clear()
        await asyncio.sleep(IDLE_WINDOW_SECONDS)  # the idle window itself, not a wait for anything
        seen = Counter(sent)
    probes = seen.pop(" ".join(PROBE_QUERY.split()), 0)
    assert probes <= IDLE_WINDOW_SECONDS / idle.db_probe_seconds + 1
    assert seen == Counter()  # before the fix: ~250 rounds of the card worker's three queries


def test_the_embedded_supervisor_waits_on_the_postmaster_instead_of_polling(tmp_path: Path) -> None:
    """With a pidfd the supervisor reads the pid file once, then sleeps until the process exits; at
    check_seconds=0.01 a polling one would have read it ~50 times in the window."""
    postmaster = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])  # stands in for it
    supervisor = EmbeddedPostgres(tmp_path, supervise=True, check_seconds=0.01)
    checks: list[int | None] = []

    def running_pid() -> int | None:
        alive = postmaster.poll() is None
        if not alive:
            supervisor._stopping.set()  # no restart: this test is about the wait
        checks.append(postmaster.pid if alive else None)
        return checks[-1]

    supervisor._running_pid = running_pid  # type: ignore[method-assign]
    supervisor._wake = os.pipe()
    thread = threading.Thread(target=supervisor._supervise, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(checks) >= 1, "the first check")
        time.sleep(0.5)  # the idle window itself
        assert checks == [postmaster.pid]
        postmaster.kill()  # the exit wakes it at once: the next check finds the postmaster gone
        wait_until(lambda: len(checks) >= 2, "the check after the postmaster's exit")
        assert checks[1] is None
        thread.join(BOUND_SECONDS)
        assert not thread.is_alive()
    finally:
        postmaster.kill()
        postmaster.wait()
        supervisor._stopping.set()
        if supervisor._wake is not None:
            for fd in supervisor._wake:
                os.close(fd)


def test_stop_ends_the_supervisors_wait(tmp_path: Path) -> None:
    postmaster = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    supervisor = EmbeddedPostgres(tmp_path, supervise=True, recheck_seconds=300)
    supervisor._running_pid = lambda: postmaster.pid  # type: ignore[method-assign]
    supervisor._wake = os.pipe()
    supervisor._supervisor = threading.Thread(target=supervisor._supervise, daemon=True)
    thread = supervisor._supervisor
    thread.start()
    try:
        supervisor.stop()  # joins the thread: it must leave its 300 s wait now, not at its end
        assert not thread.is_alive()
    finally:
        postmaster.kill()
        postmaster.wait()
