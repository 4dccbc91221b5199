"""GET /metrics (issue 15, item 2): Prometheus' text format, parsed here with prometheus-client's own
parser; labels bounded (a route is its template, never its ids); no tenant's data; loopback or the
operator's token only.

The metrics are the process's, shared by every test of the session: each test reads what changed
between two scrapes, never absolute counts."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from canopy_svc.api import docs_ui
from canopy_svc.api.app import ENDPOINTS, create_app
from canopy_svc.cli import metrics_dir
from canopy_svc.core.db import DatabaseGate, create_pool
from canopy_svc.core.settings import METRICS_DIR_ENV, Settings
from canopy_svc.rules import clients
from tests.helpers import ApiClient, assert_error, minimal_customer
from tests.processes import ServerProcess

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]
# Every route the app serves (the API's, the document, the /docs page and its files, /metrics): fixed
# paths and templates only, never a path as requested.
TEMPLATES = {e.path for e in ENDPOINTS} | {"/openapi.json", "/metrics", "unmatched"}
TEMPLATES |= {e.path for e in docs_ui.endpoints(lambda: b"")}
# Every label any of our series may carry; `le` is the histogram's.
LABELS = {"route", "method", "status", "limit", "kind", "outbox", "le"}
BOUND_SECONDS = 30.0
CARD_CONFIG = {"lithic": {"type": "SINGLE_USE"}}


async def scrape(http: httpx.AsyncClient) -> tuple[str, Series]:
    answer = await http.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return answer.text, parse(answer.text)


def parse(text: str) -> Series:
    """Each sample by its name and labels, by prometheus-client's own parser of the text format."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(series: Series, name: str, **labels: str) -> float:
    return series.get((name, frozenset(labels.items())), 0.0)


def ours(series: Series) -> Series:
    return {key: v for key, v in series.items() if key[0].startswith("canopy_")}


async def test_requests_are_counted_by_route_template_method_and_status(
    api: ApiClient, anonymous: httpx.AsyncClient
) -> None:
    _, before = await scrape(anonymous)
    ids = [f"secret-id-{n:02d}" for n in range(50)]
    for customer_id in ids:
        assert (await api.http.get(f"/customers/{customer_id}")).status_code == 404
    created = await api.http.post("/customers", json=minimal_customer(customer_id="c-metrics"))
    assert created.status_code == 200, created.text
    text, after = await scrape(anonymous)

    template = "/customers/{customer_id}"
    assert value(after, "canopy_http_requests_total", route=template, method="GET", status="404") - value(
        before, "canopy_http_requests_total", route=template, method="GET", status="404"
    ) == pytest.approx(50)
    assert value(after, "canopy_http_requests_total", route="/customers", method="POST", status="200") - value(
        before, "canopy_http_requests_total", route="/customers", method="POST", status="200"
    ) == pytest.approx(1)
    # The latency histogram: every one of the 50 in its count, and in the +Inf bucket.
    count = "canopy_http_request_duration_seconds_count"
    assert value(after, count, route=template, method="GET") - value(
        before, count, route=template, method="GET"
    ) == pytest.approx(50)
    buckets = [
        k
        for k in after
        if k[0] == "canopy_http_request_duration_seconds_bucket" and {("route", template), ("method", "GET")} <= k[1]
    ]  # GET's only: the registry is the process's, and earlier tests may have sent PUT or PATCH
    assert len(buckets) == 14  # 13 bounds and +Inf, for GET: one series per bucket, not per id

    # Cardinality: 50 ids, one series per (template, method, status); no id, no org anywhere in the text.
    of_template = [k for k in after if k[0] == "canopy_http_requests_total" and ("route", template) in k[1]]
    assert len({k for k in of_template if ("method", "GET") in k[1] and ("status", "404") in k[1]}) == 1
    for customer_id in [*ids, "c-metrics"]:
        assert customer_id not in text
    assert "acme" not in text and api.client_id not in text
    for name, labels in ours(after):
        assert {label for label, _ in labels} <= LABELS, name
        assert dict(labels).get("route", "unmatched") in TEMPLATES, (name, labels)


async def test_requests_refused_before_routing_are_counted_under_their_template(
    app: Any, anonymous: httpx.AsyncClient
) -> None:
    _, before = await scrape(anonymous)
    for n in range(5):
        assert (await anonymous.get(f"/customers/anon-{n}")).status_code == 401  # refused before routing
    assert (await anonymous.get("/no/such/path/id-7")).status_code == 401
    text, after = await scrape(anonymous)
    template = "/customers/{customer_id}"
    name = "canopy_http_requests_total"
    assert value(after, name, route=template, method="GET", status="401") - value(
        before, name, route=template, method="GET", status="401"
    ) == pytest.approx(5)
    assert value(after, name, route="unmatched", method="GET", status="401") - value(
        before, name, route="unmatched", method="GET", status="401"
    ) == pytest.approx(1)
    assert "anon-" not in text and "id-7" not in text
    assert value(after, "canopy_token_failures_total", kind="bearer") - value(
        before, "canopy_token_failures_total", kind="bearer"
    ) == pytest.approx(6)


async def test_rate_limit_denials_and_token_failures_are_counted(
    api: ApiClient, anonymous: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    await clients.set_limits(pool, api.client_id, rate=0.001, burst=1)
    _, before = await scrape(anonymous)
    assert (await api.http.get("/customers")).status_code == 200
    assert_error(await api.http.get("/customers"), 429, "rate_limited")
    wrong = {"client_id": api.client_id, "client_secret": "not-the-secret"}
    assert_error(await anonymous.post("/auth/token", json=wrong), 401, "unauthorized")
    _, after = await scrape(anonymous)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("canopy_rate_limit_denials_total", limit="client") == pytest.approx(1)
    assert grew("canopy_token_failures_total", kind="credentials") == pytest.approx(1)
    assert grew("canopy_http_requests_total", route="/customers", method="GET", status="429") == pytest.approx(1)


async def test_pool_connections_in_use_and_waiting(database_url: str, anonymous: httpx.AsyncClient) -> None:
    small = await create_pool(database_url, min_size=1, max_size=1)
    try:
        _, idle = await scrape(anonymous)
        held = await small.acquire()
        waiter = asyncio.ensure_future(small.acquire())
        try:
            deadline = time.monotonic() + BOUND_SECONDS
            while True:  # the waiter takes its place in line at its first step
                _, busy = await scrape(anonymous)
                if value(busy, "canopy_db_pool_waiting") == value(idle, "canopy_db_pool_waiting") + 1:
                    break
                assert time.monotonic() < deadline, "the waiting acquire never showed"
                await asyncio.sleep(0.01)
            assert (
                value(busy, "canopy_db_pool_connections_in_use") == value(idle, "canopy_db_pool_connections_in_use") + 1
            )
        finally:
            await small.release(held)
            await small.release(await waiter)
        _, released = await scrape(anonymous)
        assert value(released, "canopy_db_pool_connections_in_use") == value(idle, "canopy_db_pool_connections_in_use")
        assert value(released, "canopy_db_pool_waiting") == value(idle, "canopy_db_pool_waiting")
    finally:
        await small.close()


async def test_the_database_gate_state(anonymous: httpx.AsyncClient) -> None:
    gate = DatabaseGate()
    assert value((await scrape(anonymous))[1], "canopy_db_gate_open") == 1
    gate.close("OSError")
    try:
        assert value((await scrape(anonymous))[1], "canopy_db_gate_open") == 0
    finally:
        gate.open()
    assert value((await scrape(anonymous))[1], "canopy_db_gate_open") == 1


async def test_the_webhook_delivery_outbox_depth_and_oldest_age(
    api: ApiClient, anonymous: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """Issue 12's outbox: deliveries waiting for a receiver (no delivery worker runs here)."""
    _, empty = await scrape(anonymous)
    assert value(empty, "canopy_outbox_depth", outbox="webhook_deliveries") == 0
    subscribed = await api.http.put("/organization/subscribe", json={"webhook_url": "https://hooks.example.com/m"})
    assert subscribed.status_code == 201, subscribed.text
    created = await api.http.post("/customers", json=minimal_customer(customer_id="cust-w"))
    assert created.status_code == 200, created.text
    await pool.execute("UPDATE webhook_deliveries SET created_at = now() - interval '90 seconds'")
    text, waiting = await scrape(anonymous)
    assert value(waiting, "canopy_outbox_depth", outbox="webhook_deliveries") == 1
    assert 89 <= value(waiting, "canopy_outbox_oldest_age_seconds", outbox="webhook_deliveries") < 90 + BOUND_SECONDS
    assert "cust-w" not in text and subscribed.json()["subscription_id"] not in text


async def test_the_card_outbox_depth_and_oldest_age(
    api: ApiClient, anonymous: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    _, empty = await scrape(anonymous)
    assert value(empty, "canopy_outbox_depth", outbox="cards") == 0
    assert ("canopy_outbox_oldest_age_seconds", frozenset({("outbox", "cards")})) not in empty
    product = await api.http.post(
        "/products", json={"product_overview": {"product_name": "Card", "product_type": "REVOLVING"}}
    )
    account = await api.http.post("/accounts", json={"account_id": "acc-m", "product_id": product.json()["product_id"]})
    assert account.status_code == 200, account.text
    created = await api.http.post(
        "/customers",
        json=minimal_customer(
            customer_id="cust-m",
            assign_to_accounts=[{"account_id": "acc-m", "customer_account_issuer_processor_config": CARD_CONFIG}],
        ),
    )
    assert created.status_code == 200, created.text
    await pool.execute("UPDATE cards SET created_at = now() - interval '90 seconds'")  # no worker here: it waits
    text, pending = await scrape(anonymous)
    assert value(pending, "canopy_outbox_depth", outbox="cards") == 1
    # created_at keeps whole seconds (timestamptz(0)): rounded, it may be up to half a second later.
    assert 89 <= value(pending, "canopy_outbox_oldest_age_seconds", outbox="cards") < 90 + BOUND_SECONDS
    assert value(pending, "canopy_outbox_depth", outbox="card_closes") == 0
    assert "acc-m" not in text and "cust-m" not in text


async def test_a_scrape_answers_while_the_database_does_not(
    settings: Settings, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    closed = await create_pool(database_url, min_size=1, max_size=1)
    await closed.close()
    app = create_app(settings, pool=closed)
    caplog.set_level(logging.WARNING, logger="canopy_svc.metrics")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        for _ in range(3):
            _, series = await scrape(http)
            assert not [key for key in series if key[0].startswith("canopy_outbox_")]
    warned = [r for r in caplog.records if r.name == "canopy_svc.metrics"]
    assert len(warned) == 1  # once per failure, not per scrape
    assert warned[0].getMessage() == "outbox depths unavailable for /metrics"


# --- who may read it --------------------------------------------------------------------------------


@pytest.fixture
async def remote(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A caller from another host (the ASGI scope's client address)."""
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def test_not_from_loopback_without_the_operator_token_is_not_found(
    remote: httpx.AsyncClient, api: ApiClient
) -> None:
    assert_error(await remote.get("/metrics"), 404, "not_found")
    # A tenant's token is not the operator's.
    token = api.http.headers["Authorization"]
    assert_error(await remote.get("/metrics", headers={"Authorization": token}), 404, "not_found")


async def test_ipv6_loopback_is_loopback(app: Any) -> None:
    transport = httpx.ASGITransport(app=app, client=("::1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        await scrape(http)


async def test_with_the_operator_token_set_only_it_is_let_in_from_anywhere(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    token = "operator-token-0123456789"
    app = create_app(dataclasses.replace(settings, metrics_token=token), pool=pool)
    for address in ("127.0.0.1", "203.0.113.7"):
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            operator = {"Authorization": f"Bearer {token}"}
            before = await http.get("/metrics", headers=operator)
            assert before.status_code == 200, before.text
            assert_error(await http.get("/metrics"), 401, "unauthorized")  # loopback too: a proxy may be local
            wrong = {"Authorization": "Bearer operator-token-wrong"}
            assert_error(await http.get("/metrics", headers=wrong), 401, "unauthorized")
            http.headers.update(operator)
            _, after = await scrape(http)
            assert value(after, "canopy_token_failures_total", kind="metrics") - value(
                parse(before.text), "canopy_token_failures_total", kind="metrics"
            ) == pytest.approx(2)


# --- several workers ---------------------------------------------------------------------------------

_WORKERS = textwrap.dedent(
    """
    import multiprocessing, sys
    from canopy_svc.core import metrics

    def worker(started, stop):
        metrics.observe_request("/customers/{customer_id}", "GET", 200, 0.002)
        metrics.POOL_IN_USE.inc()
        started.release()
        stop.wait()  # never set: each worker lives until it is stopped or killed

    if __name__ == "__main__":
        spawn = multiprocessing.get_context("spawn")  # as uvicorn starts its workers
        started, stop = spawn.Semaphore(0), spawn.Event()
        workers = [spawn.Process(target=worker, args=(started, stop)) for _ in range(2)]
        for process in workers:
            process.start()
        for _ in workers:
            assert started.acquire(timeout=60)
        sys.stdout.write(metrics.render().decode() + "\\n=====\\n")
        workers[0].terminate()
        workers[0].join(60)
        metrics.mark_process_dead(workers[0].pid)  # what a worker's lifespan does as it stops
        sys.stdout.write(metrics.render().decode() + "\\n=====\\n")
        workers[1].kill()  # dies without stopping: the next scrape forgets its live gauges
        workers[1].join(60)
        sys.stdout.write(metrics.render().decode())
    """
)


def test_several_workers_add_up_in_one_scrape(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    script = tmp_path / "workers.py"
    script.write_text(_WORKERS)
    done = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, METRICS_DIR_ENV: str(folder)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    both, one_left, none_left = done.stdout.split("=====")
    parsed = parse

    route = {"route": "/customers/{customer_id}", "method": "GET"}
    assert value(parsed(both), "canopy_http_requests_total", **route, status="200") == 2
    assert value(parsed(both), "canopy_http_request_duration_seconds_count", **route) == 2
    assert value(parsed(both), "canopy_db_pool_connections_in_use") == 2
    # A stopped worker's requests stay counted; its connections are no longer in use.
    assert value(parsed(one_left), "canopy_http_requests_total", **route, status="200") == 2
    assert value(parsed(one_left), "canopy_db_pool_connections_in_use") == 1
    assert value(parsed(none_left), "canopy_http_requests_total", **route, status="200") == 2
    assert value(parsed(none_left), "canopy_db_pool_connections_in_use") == 0


def test_serve_gives_several_workers_a_metrics_folder_of_their_own_and_removes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(METRICS_DIR_ENV, "/somewhere/left/over")
    with metrics_dir(1) as none:
        assert none is None and METRICS_DIR_ENV not in os.environ  # one worker: its memory
    with metrics_dir(3) as folder:
        assert folder is not None and folder.is_dir() and not any(folder.iterdir())
        assert os.environ[METRICS_DIR_ENV] == str(folder)
    assert not folder.exists() and METRICS_DIR_ENV not in os.environ


def test_serve_with_two_workers_scrapes_both_and_cleans_its_folder(database_url: str, tmp_path: Path) -> None:
    """The real thing: `serve --workers 2`, requests spread over both, one scrape adding them up; its
    JSON log (not a terminal) without escape codes, uvicorn's lines included; the folder gone after."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    server = ServerProcess(database_url, tmp_path / "server", workers=2, TMPDIR=str(temp)).start(timeout=60)
    try:
        (folder,) = temp.glob("canopy-metrics-*")
        assert folder.is_dir()
        for _ in range(20):  # a new connection each: the kernel hands them to either worker
            assert httpx.get(f"{server.base_url}/healthz", timeout=10).status_code == 200
        answer = httpx.get(f"{server.base_url}/metrics", timeout=10)
        assert answer.status_code == 200, answer.text
        healthz = value(parse(answer.text), "canopy_http_requests_total", route="/healthz", method="GET", status="200")
        assert healthz == 20
        # Both workers keep their values in the folder (each opened its gate: a live gauge file per pid).
        assert len({path.stem.rsplit("_", 1)[1] for path in folder.glob("gauge_livemin_*.db")}) == 2
    finally:
        code = server.terminate(timeout=60)
    log = server.log()
    assert code == 0, log
    assert not list(temp.glob("canopy-metrics-*")), "serve left its metrics folder behind"
    assert "\x1b" not in log and "\\u001b" not in log
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(line["message"].startswith("Uvicorn running on") for line in lines), log
    assert all("color_message" not in line for line in lines)
