"""Failover on a real PostgreSQL (issue 16, item 1): several hosts in DATABASE_URL, a node that takes no
writes, a backend cut mid-request. Each is an answer of 503 with Retry-After (never a 500), and the
gate's probe closes on a node that is no primary, so the pool reconnects to whichever is.
The three-node formation itself (pg_auto_failover, SIGKILL and switchover under load) is
`make failover-drill` (tests/failover_drill.py): too slow, and too root-bound, for the suite."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import asyncpg
import httpx
import pytest

from canopy_svc.api.app import create_app
from canopy_svc.api.responses import error_for
from canopy_svc.core.db import UNAVAILABLE_ERRORS, UNREACHABLE_ERRORS, DatabaseGate, create_pool
from canopy_svc.core.settings import Settings
from canopy_svc.wire.errors import Unavailable
from tests.helpers import make_client, minimal_customer

MISSING_SOCKET_DIR = "/nonexistent-canopy-socket-dir"  # a host that is not there: refused at once


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(params)
    return parts._replace(query=urlencode(query, safe="/,")).geturl()


def many_hosts(url: str) -> str:
    """`url` with a dead host first, in the multi-host form: `host=a,b` for sockets (the embedded
    server's), `h1:p1,h2:p2` for TCP."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if "host" in query:
        return with_query(url, host=f"{MISSING_SOCKET_DIR},{query['host']}", target_session_attrs="read-write")
    return with_query(
        parts._replace(netloc=parts.netloc.replace("@", "@127.0.0.1:1,", 1)).geturl(),
        target_session_attrs="read-write",
    )


def read_only(url: str) -> str:
    """Sessions that take no writes, as on a standby or a primary being demoted (asyncpg passes an
    unknown query parameter as a server setting)."""
    return with_query(url, default_transaction_read_only="on")


async def wait_until(predicate: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def watching(gate: DatabaseGate, dsn: str) -> AsyncIterator[None]:
    task = asyncio.create_task(gate.watch(dsn))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert task.cancelled(), "the probe must survive every failure (its supervisor's backoff is slow)"


async def test_a_pool_on_many_hosts_uses_the_one_that_takes_writes(database_url: str) -> None:
    pool = await create_pool(many_hosts(database_url), min_size=1, max_size=2)
    try:
        assert await pool.fetchval("SELECT NOT pg_is_in_recovery()") is True
    finally:
        await pool.close()


async def test_no_host_taking_writes_is_an_outage(database_url: str) -> None:
    """Between a primary's loss and its standby's promotion, every host answers read-only."""
    # (With a host refused among them, asyncpg raises that host's OSError instead: down as well.)
    no_primary = with_query(read_only(database_url), target_session_attrs="read-write")
    with pytest.raises(asyncpg.exceptions.TargetServerAttributeNotMatched) as raised:
        await asyncpg.connect(no_primary, timeout=5)
    assert isinstance(raised.value, UNREACHABLE_ERRORS)  # the probe closes the gate on it
    assert isinstance(error_for(raised.value), Unavailable)


async def test_the_probe_closes_the_gate_on_a_node_that_takes_no_writes(database_url: str) -> None:
    gate = DatabaseGate(interval=0.05, timeout=1.0)
    async with watching(gate, read_only(database_url)):
        await wait_until(lambda: not gate.is_open, 5.0)
    async with watching(gate, database_url):  # the primary again: the gate opens by itself
        await wait_until(lambda: gate.is_open, 5.0)
    async with watching(gate, read_only(many_hosts(database_url))):  # no primary among the hosts
        await wait_until(lambda: not gate.is_open, 5.0)


async def test_closing_on_a_demoted_node_moves_the_pool_to_the_primary(database_url: str) -> None:
    """The pool's connections on a node that stopped taking writes are cut, and the ones it makes
    instead go where DATABASE_URL's target_session_attrs finds a primary."""
    gate = DatabaseGate(interval=0.05, timeout=1.0)
    pool = await create_pool(database_url, min_size=1, max_size=2, gate=gate)
    try:
        async with pool.acquire() as held:
            pid_before = await held.fetchval("SELECT pg_backend_pid()")
        async with watching(gate, read_only(database_url)):
            await wait_until(lambda: not gate.is_open, 5.0)
        async with watching(gate, database_url):
            await wait_until(lambda: gate.is_open, 5.0)
        async with pool.acquire() as held:
            assert await held.fetchval("SELECT pg_backend_pid()") != pid_before  # a new connection
    finally:
        await pool.close()


async def test_a_write_on_a_read_only_node_is_unavailable(database_url: str) -> None:
    conn = await asyncpg.connect(read_only(database_url))
    try:
        with pytest.raises(asyncpg.exceptions.ReadOnlySQLTransactionError) as raised:
            await conn.execute("INSERT INTO organizations (name) VALUES ($1)", "read-only")
    finally:
        await conn.close()
    assert raised.value.sqlstate == "25006"
    assert isinstance(error_for(raised.value), Unavailable)


async def test_a_terminated_backend_is_unavailable(pool: asyncpg.Pool, database_url: str) -> None:
    """pg_terminate_backend is what a fast shutdown or a demotion does to every session (57P01)."""
    victim = await asyncpg.connect(database_url)
    try:
        pid = await victim.fetchval("SELECT pg_backend_pid()")
        sleeping = asyncio.create_task(victim.fetchval("SELECT pg_sleep(30)"))
        await wait_until(lambda: not sleeping.done(), 1.0)
        async with pool.acquire() as killer:
            await wait_until_active(killer, pid)
            assert await killer.fetchval("SELECT pg_terminate_backend($1)", pid)
        with pytest.raises(UNAVAILABLE_ERRORS) as raised:
            await sleeping
    finally:
        victim.terminate()
    assert isinstance(raised.value, asyncpg.exceptions.AdminShutdownError | asyncpg.ConnectionDoesNotExistError)
    assert isinstance(error_for(raised.value), Unavailable)


async def wait_until_active(conn: asyncpg.Connection, pid: int) -> None:
    deadline = time.monotonic() + 10
    while await conn.fetchval("SELECT state FROM pg_stat_activity WHERE pid = $1", pid) != "active":
        assert time.monotonic() < deadline, "the query never started"
        await asyncio.sleep(0.02)


async def test_writes_to_a_read_only_node_are_503_with_retry_after_and_write_nothing(
    pool: asyncpg.Pool, database_url: str, settings: Settings
) -> None:
    """Through the app: a create (with and without an Idempotency-Key) on a pool whose node has
    stopped taking writes is a 503 `unavailable` with Retry-After, and a retry once the primary is
    back does the work once."""
    org_id, client_id, _ = await make_client(pool, "failover-ro")
    demoted = await asyncpg.create_pool(read_only(database_url), min_size=1, max_size=2)
    assert demoted is not None
    try:
        app = create_app(settings, pool=demoted)
        token = app.resources.tokens.issue(client_id, org_id, "read write")
        headers = {"Authorization": f"Bearer {token}"}
        body = minimal_customer(customer_id="ro-1")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            for extra in ({}, {"Idempotency-Key": "ro-key-1"}):
                answer = await http.post("/customers", json=body, headers=headers | extra)
                assert answer.status_code == 503, answer.text
                assert answer.json()["error"]["code"] == "unavailable"
                assert int(answer.headers["retry-after"]) >= 1
    finally:
        await demoted.close()
    assert await pool.fetchval("SELECT count(*) FROM customers WHERE org_id = $1", org_id) == 0
    assert await pool.fetchval("SELECT count(*) FROM idempotency_keys WHERE org_id = $1", org_id) == 0

    app = create_app(settings, pool=pool)  # the primary: the client's retry under the same key
    headers = {"Authorization": f"Bearer {app.resources.tokens.issue(client_id, org_id, 'read write')}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        for _ in range(2):
            answer = await http.post("/customers", json=body, headers=headers | {"Idempotency-Key": "ro-key-1"})
            assert answer.status_code == 200, answer.text
    assert await pool.fetchval("SELECT count(*) FROM customers WHERE org_id = $1", org_id) == 1
