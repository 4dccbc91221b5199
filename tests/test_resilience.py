"""Faults survived by real `canopy-svc serve` processes (issue 5, item 3).

- PostgreSQL stopped hard (`pg_ctl stop -m immediate`) under a steady stream of requests: every
  answer is a quick 503 `unavailable` with Retry-After (never a hang, never a 500), /readyz is 503
  while /healthz stays 200, the server recovers by itself once PostgreSQL is back, and no customer
  is half-written. This test runs its own embedded PostgreSQL: the session's is never stopped.
- PostgreSQL hung (SIGSTOP): /readyz and every request are a quick 503 (the database gate's probe
  notices within seconds), and the server recovers by itself when PostgreSQL resumes.
- SIGTERM: requests in flight (held deterministically on a row lock) all finish with complete
  answers, new connections are refused from the moment of the signal, the process exits 0. One still
  running when --graceful-timeout ends gets a 503 envelope, and its transaction is rolled back.
- A short soak (tests/soak.py; `make soak` runs the long one): RSS stays flat.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from canopy_svc.core.crypto import DataCipher
from canopy_svc.store import api_clients, organizations
from canopy_svc.store.migrations import migrate_database
from tests.helpers import TEST_DATA_KEY, CrashablePostgres, make_client, minimal_customer, seed_customer
from tests.processes import ServerProcess
from tests.soak import SoakConfig, fetch_token, run_soak

# An answer during the outage must come at least this fast (the pool's connect timeout is 5 s).
OUTAGE_ANSWER_SECONDS = 6.0
RECOVERY_SECONDS = 30.0
LOAD_RATE_PER_SECOND = 40.0  # below the default rate limit (100/s), which applies while limits can't be read


async def create_api_client(dsn: str, org: str = "acme") -> tuple[int, str, str]:
    """An organization and a client on `dsn`, with limits high enough that only the test's pace counts."""
    conn = await asyncpg.connect(dsn)
    try:
        from canopy_svc.rules.ids import new_client_id, new_client_secret
        from canopy_svc.rules.passwords import hash_secret

        org_id = await organizations.get_or_create_organization(conn, org)
        client_id, secret = new_client_id(), new_client_secret()
        await organizations.insert_client(conn, org_id, client_id, hash_secret(secret), "read write")
        await api_clients.set_limits(conn, client_id, rate=100_000.0, burst=100_000)
    finally:
        await conn.close()
    return org_id, client_id, secret


async def bearer(http: httpx.AsyncClient, client_id: str, secret: str) -> dict[str, str]:
    answer = await http.post("/auth/token", json={"client_id": client_id, "client_secret": secret})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def assert_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, (answer.status_code, answer.text)
    body = answer.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == "unavailable"
    assert body["error"]["details"] == []
    assert int(answer.headers["retry-after"]) >= 1
    assert answer.headers.get("x-request-id")


# --- the load: a steady, paced stream of creates and reads ------------------------------------------


@dataclass
class Answer:
    kind: str  # "create", "read" or "list"
    started: float
    finished: float
    status: int | None = None  # None: no HTTP answer at all (the failure is in `error`)
    error: str | None = None
    response: httpx.Response | None = None
    customer_id: str | None = None
    sent: dict[str, Any] | None = None
    idempotency_key: str | None = None

    @property
    def seconds(self) -> float:
        return self.finished - self.started


@dataclass
class Load:
    http: httpx.AsyncClient
    account_id: str
    answers: list[Answer] = field(default_factory=list)
    created: list[str] = field(default_factory=list)  # customer ids answered 200, to read back
    _count: int = 0

    def next_request(self) -> tuple[str, str, str, dict[str, Any] | None, dict[str, str], str | None, str | None]:
        n = self._count
        self._count += 1
        if n % 3 == 0 or not self.created:
            customer_id = f"load-{n}-{uuid.uuid4().hex[:8]}"
            body = seed_customer(customer_id=customer_id, email=f"load{n}@example.com", name_first=f"Load{n}")
            headers: dict[str, str] = {}
            key = None
            if n % 2 == 0:  # every other create also has a link: customer and link are one transaction
                body["assign_to_accounts"] = [{"account_id": self.account_id, "customer_account_role": "SECONDARY"}]
            if n % 4 == 0:  # and some an Idempotency-Key, whose answer is stored in that transaction too
                key = f"key-{customer_id}"
                headers["Idempotency-Key"] = key
            return "create", "POST", "/customers", body, headers, customer_id, key
        if n % 3 == 1:
            customer_id = self.created[n % len(self.created)]
            return "read", "GET", f"/customers/{customer_id}", None, {}, customer_id, None
        return "list", "GET", "/customers?limit=5&search_parameters=load", None, {}, None, None

    async def one(self) -> None:
        kind, method, url, body, headers, customer_id, key = self.next_request()
        answer = Answer(kind, time.monotonic(), 0.0, customer_id=customer_id, sent=body, idempotency_key=key)
        try:
            response = await self.http.request(method, url, json=body, headers=headers)
            answer.status, answer.response = response.status_code, response
        except httpx.HTTPError as exc:
            answer.error = f"{type(exc).__name__}: {exc}"
        answer.finished = time.monotonic()
        self.answers.append(answer)
        if kind == "create" and answer.status == 200:
            self.created.append(customer_id or "")

    async def run(self, stop: asyncio.Event, rate: float) -> None:
        """Open loop: one request every 1/rate s whatever the earlier ones do, so a hang shows up as
        answers that take long (bounded below: at most 200 outstanding)."""
        tasks: set[asyncio.Task[None]] = set()
        interval, next_at = 1.0 / rate, time.monotonic()
        try:
            while not stop.is_set():
                if len(tasks) < 200:
                    task = asyncio.create_task(self.one())
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                next_at += interval
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
        finally:
            if tasks:
                await asyncio.wait(tasks, timeout=OUTAGE_ANSWER_SECONDS + 10)

    def answered_between(self, start: float, end: float) -> list[Answer]:
        return [a for a in self.answers if a.started >= start and a.finished <= end]


async def wait_for(predicate: Any, seconds: float, what: str) -> float:
    """Awaits predicate() (sync or async) until truthy, within a bound; the seconds it took."""
    started = time.monotonic()
    deadline = started + seconds
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(0.05)


def same_customer(sent: dict[str, Any], stored: dict[str, Any]) -> None:
    """What was sent is what is stored, every field, nested business details included."""
    for name, value in sent.items():
        if name == "assign_to_accounts":
            continue
        if isinstance(value, dict):  # business details: what was sent, and the fields not sent null
            assert {key: stored[name][key] for key in value} == value, (name, stored[name], value)
            assert all(stored[name][key] is None for key in stored[name].keys() - value.keys()), stored[name]
            continue
        assert stored[name] == value, (name, stored[name], value)
    assert stored["created_at"] and stored["updated_at"]


async def test_postgres_crash_under_load_answers_503_quickly_and_recovers_without_half_writes(
    tmp_path: Path, embedded_data_dir: Path
) -> None:
    postgres = CrashablePostgres(embedded_data_dir / "own-postgres")
    dsn = await asyncio.to_thread(postgres.start)
    server: ServerProcess | None = None
    try:
        await migrate_database(dsn, DataCipher(TEST_DATA_KEY))
        org_id, client_id, secret = await create_api_client(dsn)
        server = await asyncio.to_thread(ServerProcess(dsn, tmp_path / "server").start)
        timeout = httpx.Timeout(OUTAGE_ANSWER_SECONDS + 10)
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=timeout, limits=limits) as http:
            http.headers.update(await bearer(http, client_id, secret))
            assert (
                await http.post(
                    "/products",
                    json={"product_id": "p", "product_overview": {"product_name": "Card", "product_type": "REVOLVING"}},
                )
            ).status_code == 200
            assert (await http.post("/accounts", json={"account_id": "acc", "product_id": "p"})).status_code == 200

            load, stop = Load(http, "acc"), asyncio.Event()
            runner = asyncio.create_task(load.run(stop, LOAD_RATE_PER_SECOND))
            try:
                await wait_for(lambda: sum(a.status == 200 for a in load.answers) >= 30, 20, "answers before")
                await asyncio.to_thread(postgres.crash)
                down_at = time.monotonic()

                # While it is down: the probes, then enough of the stream to judge.
                for _ in range(3):
                    ready_started = time.monotonic()
                    ready = await http.get("/readyz")
                    assert time.monotonic() - ready_started < OUTAGE_ANSWER_SECONDS
                    assert_unavailable(ready)
                    health = await http.get("/healthz")
                    assert health.status_code == 200 and health.json() == {"status": "ok"}
                await wait_for(
                    lambda: len(load.answered_between(down_at, time.monotonic())) >= 40, 20, "answers during the outage"
                )
                restart_at = time.monotonic()
                await asyncio.to_thread(postgres.restart)
                up_at = time.monotonic()

                def recovered() -> bool:
                    after = [a for a in load.answers if a.started >= up_at]
                    return len(after) >= 10 and all(a.status == 200 for a in after[-10:])

                recovery_seconds = await wait_for(recovered, RECOVERY_SECONDS, "200s after the restart")
                assert (await http.get("/readyz")).status_code == 200
            finally:
                stop.set()
                await runner

            # Every answer, before, during and after: a 200 or a 503, and quick; no 500, no hang.
            failures = [(a.kind, a.status, a.error) for a in load.answers if a.status not in (200, 503)]
            assert not failures, failures[:10]
            slowest = max(a.seconds for a in load.answers)
            assert slowest < OUTAGE_ANSWER_SECONDS, slowest
            # During the outage: only 503 `unavailable` with Retry-After.
            during = load.answered_between(down_at, restart_at)
            assert len(during) >= 40
            for answer in during:
                assert answer.response is not None
                assert_unavailable(answer.response)
            assert server.process is not None and server.process.poll() is None  # never restarted

            # No customer half-written: 200 means there whole; 503 means absent or there whole.
            creates = [a for a in load.answers if a.kind == "create"]
            assert any(a.status == 200 for a in creates) and any(a.status == 503 for a in creates)
            present: set[str] = set()
            for answer in creates:
                assert answer.customer_id and answer.sent is not None
                stored = await http.get(f"/customers/{answer.customer_id}")
                if answer.status == 200:
                    assert stored.status_code == 200, stored.text
                else:
                    assert stored.status_code in (200, 404), stored.text
                if stored.status_code == 200:
                    same_customer(answer.sent, stored.json())
                    present.add(answer.customer_id)

        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                """SELECT c.customer_id, (c.ssn_encrypted IS NULL) = (c.ssn_hash IS NULL) AS ssn_whole,
                          c.search_vector <> ''::tsvector AS searchable,
                          (SELECT count(*) FROM customer_account_links l WHERE l.customer_row_id = c.id) AS links,
                          EXISTS (SELECT 1 FROM idempotency_keys k
                                  WHERE k.org_id = c.org_id AND k.key = 'key-' || c.customer_id) AS keyed
                   FROM customers c WHERE c.org_id = $1""",
                org_id,
            )
            orphan_keys = await conn.fetchval(
                """SELECT count(*) FROM idempotency_keys k WHERE k.org_id = $1 AND NOT EXISTS (
                       SELECT 1 FROM customers c WHERE c.org_id = k.org_id AND 'key-' || c.customer_id = k.key)""",
                org_id,
            )
        finally:
            await conn.close()
        assert {row["customer_id"] for row in rows} == present
        by_id = {a.customer_id: a for a in creates}
        for row in rows:
            sent = by_id[row["customer_id"]]
            assert row["ssn_whole"] and row["searchable"], dict(row)
            assert row["links"] == (1 if sent.sent and "assign_to_accounts" in sent.sent else 0), dict(row)
            assert row["keyed"] == (sent.idempotency_key is not None), dict(row)
        assert orphan_keys == 0
        print(
            f"\noutage: {len(during)} answers, all 503 in <= {max(a.seconds for a in during):.3f}s; "
            f"slowest overall {slowest:.3f}s; recovered {recovery_seconds:.2f}s after restart; "
            f"{len(creates)} creates, {len(present)} stored"
        )
    finally:
        if server is not None:
            server.kill()
        await asyncio.to_thread(postgres.stop)


async def test_postgres_hung_answers_503_quickly(tmp_path: Path, embedded_data_dir: Path) -> None:
    """PostgreSQL frozen (SIGSTOP: a paused VM, a frozen disk, a partition whose packets the kernel still
    acknowledges): /readyz says so quickly, and so should every request."""
    postgres = CrashablePostgres(embedded_data_dir / "own-postgres")
    dsn = await asyncio.to_thread(postgres.start)
    server: ServerProcess | None = None
    frozen: list[psutil.Process] = []
    try:
        await migrate_database(dsn, DataCipher(TEST_DATA_KEY))
        _, client_id, secret = await create_api_client(dsn)
        server = await asyncio.to_thread(ServerProcess(dsn, tmp_path / "server").start)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=OUTAGE_ANSWER_SECONDS + 1) as http:
            http.headers.update(await bearer(http, client_id, secret))
            created = await asyncio.gather(
                *(http.post("/customers", json=minimal_customer(customer_id=f"h{i}")) for i in range(4))
            )  # the pool holds a few connections now
            assert all(answer.status_code == 200 for answer in created)
            postmaster = psutil.Process(postgres.embedded._server.get_pid())  # type: ignore[union-attr]
            for process in [postmaster, *postmaster.children(recursive=True)]:
                process.suspend()
                frozen.append(process)

            async def timed(method: str, url: str, body: Any = None) -> tuple[float, int | str]:
                sent = time.monotonic()
                try:
                    answer = await http.request(method, url, json=body)
                except httpx.TimeoutException:
                    return time.monotonic() - sent, "timeout"
                return time.monotonic() - sent, answer.status_code

            # Sent the moment it froze, so these wait the longest: until the gate's probe gives up.
            answers = await asyncio.gather(
                timed("GET", "/readyz"),
                *(
                    timed("GET", f"/customers/h{i % 4}")
                    if i % 2
                    else timed("POST", "/customers", minimal_customer(customer_id=f"hung-{i}"))
                    for i in range(12)
                ),
            )
            assert all(status == 503 and seconds < OUTAGE_ANSWER_SECONDS for seconds, status in answers), answers
            assert max(seconds for seconds, _ in answers) > 0.5  # they did wait for the probe, not for nothing
            # Once the gate is closed, an answer comes at once.
            later = await asyncio.gather(*(timed("GET", f"/customers/h{i}") for i in range(4)))
            assert all(status == 503 and seconds < 1.0 for seconds, status in later), later
            assert_unavailable(await http.get("/readyz"))
            assert_unavailable(await http.get("/customers/h0"))  # the contract's envelope, with Retry-After
            assert_unavailable(await http.post("/customers", json=minimal_customer(customer_id="hung-late")))
            assert (await http.get("/healthz")).status_code == 200

            for process in frozen:
                process.resume()
            frozen.clear()

            # Back by itself: the gate's next probe succeeds and requests reach the database again.
            async def served() -> bool:
                answer = await http.get("/customers/h0")
                assert answer.status_code in (200, 503), answer.text
                return answer.status_code == 200

            await wait_for(served, RECOVERY_SECONDS, "recovery after PostgreSQL resumed")
            created_after = await http.post("/customers", json=minimal_customer(customer_id="after-thaw"))
            assert created_after.status_code == 200, created_after.text
            # A POST that reached the frozen server's socket before the gate closed may still run when it
            # resumes (a 503 means "unknown", as for any lost answer: retry with an Idempotency-Key). But
            # nothing is half-written: each customer stored is whole, as sent.
            conn = await asyncpg.connect(dsn)
            try:
                stored = [
                    r["customer_id"]
                    for r in await conn.fetch("SELECT customer_id FROM customers WHERE customer_id LIKE 'hung-%'")
                ]
            finally:
                await conn.close()
            for customer_id in stored:
                answer = await http.get(f"/customers/{customer_id}")
                assert answer.status_code == 200, answer.text
                same_customer(minimal_customer(customer_id=customer_id), answer.json())
    finally:
        for process in frozen:
            with contextlib.suppress(psutil.Error):
                process.resume()
        if server is not None:
            server.kill()
        await asyncio.to_thread(postgres.stop)


# --- SIGTERM ------------------------------------------------------------------------------------------


IN_FLIGHT = 12
GRACEFUL_SECONDS = 15


def connection_refused(base_url: str) -> bool:
    try:
        httpx.get(f"{base_url}/healthz", timeout=1)
    except httpx.ConnectError:
        return True
    except httpx.HTTPError:
        return False
    return False


async def test_sigterm_lets_in_flight_requests_finish_and_refuses_new_ones(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    org_id, client_id, secret = await make_client(pool, "acme")
    server = ServerProcess(
        database_url,
        tmp_path,
        CANOPY_SVC_POOL_MAX=str(IN_FLIGHT + 4),
        CANOPY_SVC_CARD_WORKER="0",
        CANOPY_SVC_GRACEFUL_TIMEOUT=str(GRACEFUL_SECONDS),
    )
    await asyncio.to_thread(server.start)
    blocker: asyncpg.Connection | None = None
    try:
        async with httpx.AsyncClient(
            base_url=server.base_url, timeout=60, limits=httpx.Limits(max_connections=IN_FLIGHT + 4)
        ) as http:
            http.headers.update(await bearer(http, client_id, secret))
            ids = [f"term-{i}" for i in range(IN_FLIGHT)]
            for customer_id in ids:
                created = await http.post("/customers", json=minimal_customer(customer_id=customer_id))
                assert created.status_code == 200, created.text

            # Hold every customer's row lock: each PATCH below then waits inside the server, in its
            # transaction, until we let go. pg_stat_activity shows when they all do.
            blocker = await asyncpg.connect(database_url)
            lock = blocker.transaction()
            await lock.start()
            await blocker.execute("SELECT 1 FROM customers WHERE org_id = $1 FOR UPDATE", org_id)
            patches = [
                asyncio.create_task(
                    http.patch(f"/customers/{customer_id}", json={"name_middle": f"Middle {customer_id}"})
                )
                for customer_id in ids
            ]

            async def waiting_on_lock() -> bool:
                count = await pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'canopy-svc' "
                    "AND wait_event_type = 'Lock'"
                )
                return int(count) == IN_FLIGHT

            await wait_for(waiting_on_lock, 20, f"{IN_FLIGHT} PATCHes waiting on the row lock")

            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            # From the signal on, nobody new gets in: the listening socket is closed.
            await wait_for(lambda: asyncio.to_thread(connection_refused, server.base_url), 5, "new connections refused")
            assert server.process.poll() is None  # still draining
            assert not any(task.done() for task in patches)

            await lock.rollback()
            answers = await asyncio.wait_for(asyncio.gather(*patches), GRACEFUL_SECONDS)
            code = await asyncio.to_thread(server.process.wait, GRACEFUL_SECONDS)
            exited_after = time.monotonic() - signalled

        for customer_id, answer in zip(ids, answers, strict=True):
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["customer_id"] == customer_id
            assert body["name_middle"] == f"Middle {customer_id}"
            assert body["name_first"] == "Ada" and body["created_at"] and body["updated_at"]
        stored = await pool.fetch("SELECT customer_id, name_middle FROM customers WHERE org_id = $1", org_id)
        assert {row["customer_id"]: row["name_middle"] for row in stored} == {i: f"Middle {i}" for i in ids}
        assert code == 0, server.log()[-3000:]
        assert exited_after < GRACEFUL_SECONDS
    finally:
        if blocker is not None:
            await blocker.close()
        server.kill()


async def test_sigterm_past_the_graceful_timeout_answers_503_and_keeps_nothing_half_done(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    """A request still running when --graceful-timeout ends is cancelled: its client gets a complete
    503 `unavailable` with Retry-After (not uvicorn's text/plain 500, not half an answer), its
    transaction is rolled back, and the process exits 0, in bounded time."""
    org_id, client_id, secret = await make_client(pool, "acme")
    server = ServerProcess(database_url, tmp_path, CANOPY_SVC_CARD_WORKER="0", CANOPY_SVC_GRACEFUL_TIMEOUT="2")
    await asyncio.to_thread(server.start)
    blocker: asyncpg.Connection | None = None
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
            http.headers.update(await bearer(http, client_id, secret))
            assert (await http.post("/customers", json=minimal_customer(customer_id="slow"))).status_code == 200
            blocker = await asyncpg.connect(database_url)
            lock = blocker.transaction()
            await lock.start()
            await blocker.execute("SELECT 1 FROM customers WHERE org_id = $1 FOR UPDATE", org_id)
            patch = asyncio.create_task(http.patch("/customers/slow", json={"name_middle": "Never"}))
            await wait_for(
                lambda: pool.fetchval(
                    "SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'canopy-svc' "
                    "AND wait_event_type = 'Lock'"
                ),
                20,
                "the PATCH waiting on the row lock",
            )
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            code = await asyncio.to_thread(server.process.wait, 2 + 15)
            exited_after = time.monotonic() - signalled
            assert_unavailable(await asyncio.wait_for(patch, 10))
            await lock.rollback()
        assert await pool.fetchval("SELECT name_middle FROM customers WHERE customer_id = 'slow'") is None
        assert 1.5 <= exited_after < 2 + 15, exited_after
        assert code == 0, server.log()[-3000:]
        assert '"path":"/customers/slow","status":503' in server.log()
    finally:
        if blocker is not None:
            await blocker.close()
        server.kill()


# --- a short soak (the long one: `make soak`) ----------------------------------------------------------


async def test_short_soak_keeps_rss_flat(pool: asyncpg.Pool, database_url: str, tmp_path: Path) -> None:
    _, client_id, secret = await make_client(pool, "acme")
    await api_clients.set_limits(pool, client_id, rate=1_000_000.0, burst=1_000_000)
    with ServerProcess(database_url, tmp_path, CANOPY_SVC_CARD_WORKER="0") as server:
        assert server.process is not None
        token = await fetch_token(server.base_url, client_id, secret)
        result = await run_soak(
            server.base_url,
            token,
            server.process.pid,
            SoakConfig(requests=2_000, seconds=60, concurrency=8, warmup=500),
        )
    print("\n" + result.summary())
    assert result.errors == {}, result.errors
    assert result.total == 2_000
    assert result.growth_mb < 10, result.rss_samples_mb
