"""What several test modules share: the tests' keys, API clients and bodies, the error envelope's
checks, database helpers and the card worker's set-up. Fixtures live in tests/conftest.py; test
modules import from here, never from conftest or from one another (tests/test_test_imports.py)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from canopy_svc.api import examples
from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.embedded import EmbeddedPostgres
from canopy_svc.issuers.gateway import CardGateway
from canopy_svc.issuers.hosts import LithicHosts
from canopy_svc.issuers.lithic import LithicClient
from canopy_svc.rules.ids import new_client_id, new_client_secret
from canopy_svc.rules.passwords import hash_secret
from canopy_svc.store import organizations
from canopy_svc.workers.cards import CardWorker, RetryPolicy
from canopy_svc.workers.reconciler import CardReconciler
from tests.fake_lithic import FakeLithic

TEST_JWT_SECRET = "test-jwt-secret-with-enough-length-0123456789"
TEST_DATA_KEY = bytes(range(32))
# The operator setting that lets the fake Lithic (tests/fake_lithic.py, on 127.0.0.1) be a base_url.
TEST_LITHIC_HOSTS = ("127.0.0.1", "localhost", "::1")
# TEST_DATA_KEY as CANOPY_SVC_DATA_KEY spells it.
TEST_KEY_TEXT = base64.urlsafe_b64encode(TEST_DATA_KEY).decode()


# --- the app and its clients ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def served(app: Starlette) -> AsyncIterator[ASGIApp]:
    """The app under its lifespan, each request given the lifespan's state as uvicorn gives it
    (httpx's ASGITransport runs no lifespan): an ASGI app for the transport."""
    async with app.router.lifespan_context(app) as state:

        async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                scope["state"] = {**(state or {}), **scope.get("state", {})}
            await app(scope, receive, send)

        yield with_state


@dataclass
class ApiClient:
    """A client of one organization: an httpx client that already carries its bearer token."""

    org_id: int
    client_id: str
    client_secret: str
    http: httpx.AsyncClient


async def truncate_all_statement(conn: asyncpg.Pool | asyncpg.Connection) -> str | None:
    """The TRUNCATE that empties every table but schema_version (None: no tables yet)."""
    tables = await conn.fetch(
        "SELECT quote_ident(tablename) AS name FROM pg_tables "
        "WHERE schemaname = 'public' AND tablename <> 'schema_version'"
    )
    return f"TRUNCATE {', '.join(t['name'] for t in tables)} RESTART IDENTITY CASCADE" if tables else None


_SESSIONS_SQL = """\
SELECT pid, application_name, backend_type, state, wait_event_type, wait_event, xact_start,
       left(query, 300) AS query, pid = ANY(pg_blocking_pids($1)) AS blocking,
       (SELECT array_agg(DISTINCT l.relation::regclass::text) FROM pg_locks l
        WHERE l.pid = a.pid AND l.granted AND l.relation IS NOT NULL) AS tables
FROM pg_stat_activity a WHERE datname = current_database() AND pid <> pg_backend_pid()"""


async def empty_tables(pool: asyncpg.Pool, *, patience_seconds: float = 10.0, limit_seconds: float = 300.0) -> None:
    """Empties the tables. A TRUNCATE still waiting after `patience_seconds` (a loaded machine takes a
    second or two) asks the server why, while it waits: a session holding the tables (a transaction an
    earlier test leaked, a worker never stopped) is terminated, so later tests are not blocked too,
    and this one fails naming it, since the test that left it has already passed. With no blocker the
    server is only slow (I/O, load): it waits up to `limit_seconds`, with a warning."""
    statement = await truncate_all_statement(pool)
    if statement is None:
        return
    async with pool.acquire() as connection:
        # The statement's own timeout is the limit: past it, the task ends with TimeoutError.
        truncating = asyncio.ensure_future(connection.execute(statement, timeout=limit_seconds))
        warned = False
        while True:
            done, _ = await asyncio.wait({truncating}, timeout=patience_seconds)
            if done:
                truncating.result()  # raises what the TRUNCATE raised
                return
            # Asked again each round: a lock wait can begin after the first question.
            sessions = [dict(s) for s in await pool.fetch(_SESSIONS_SQL, connection.get_server_pid())]
            blockers = [s for s in sessions if s["blocking"]]
            if blockers:
                await pool.execute(
                    "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", [b["pid"] for b in blockers]
                )
                with contextlib.suppress(asyncpg.PostgresError, TimeoutError):
                    await truncating
                pytest.fail(f"a session held the tables when this test began (terminated): {blockers}")
            if not warned:
                warnings.warn(f"cleaning the tables took over {patience_seconds} s; sessions: {sessions}", stacklevel=2)
                warned = True


async def make_client(pool: asyncpg.Pool, org_name: str, scopes: str = "read write") -> tuple[int, str, str]:
    async with pool.acquire() as conn:
        org_id = await organizations.get_or_create_organization(conn, org_name)
        client_id, secret = new_client_id(), new_client_secret()
        await organizations.insert_client(conn, org_id, client_id, hash_secret(secret), scopes)
    return org_id, client_id, secret


# --- request bodies -------------------------------------------------------------------------------


def seed_customer(**overrides: Any) -> dict[str, Any]:
    """The example body of Canopy's create-customer page (seed 003), without assign_to_accounts."""
    body: dict[str, Any] = copy.deepcopy(examples.CUSTOMER)
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not ...}


def minimal_customer(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name_first": "Ada",
        "name_last": "Lovelace",
        "phone_number": "+14155550123",
        "address_line_one": "1 Main St",
        "address_city": "Springfield",
        "address_state": "IL",
        "address_zip": "62701",
        "email": "ada@example.com",
        "date_of_birth": "1990-12-10",
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not ...}


# Lithic's ShippingAddress of minimal_customer's address, and one elsewhere (to tell them apart).
CUSTOMERS_SHIPPING_ADDRESS = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "address1": "1 Main St",
    "city": "Springfield",
    "state": "IL",
    "postal_code": "62701",
    "country": "USA",
}
SHIPPING_ELSEWHERE = {
    "first_name": "Homer",
    "last_name": "Simpson",
    "address1": "742 Evergreen Terrace",
    "city": "Springfield",
    "state": "OR",
    "postal_code": "97403-1234",
    "country": "USA",
}


# Canopy's newer customer fields (issue 11 item 2), every one of them given.
CONTROLLER: dict[str, Any] = {
    "name_prefix": "Ms.", "name_first": "Grace", "name_middle": "B.", "name_last": "Hopper", "name_suffix": None,
    "title": "CEO", "phone_number": "+15555555555", "address_line_one": "1 Navy Way", "address_line_two": "Apt 2",
    "address_city": "Arlington", "address_state": "VA", "address_zip": "22202", "address_country_code": "US",
    "ssn": "123-45-6789", "passport": {"number": "C01X00T47", "country": "US"},
}  # fmt: skip
BUSINESS: dict[str, Any] = {
    "doing_business_as": "Umbrella", "business_ein": "12-3456789", "business_legal_name": "Umbrella Corporation",
    "business_type": "llc", "business_classification_id": "9ed3f670-7d6f-11e3-b1ce-5404a6144203",
    "website": "https://www.umbrella.example.com", "controller": CONTROLLER,
}  # fmt: skip
NEW_FIELDS: dict[str, Any] = {
    "customer_type": "business",
    "verification_status": "verified",
    "title": "Dr.",
    "passport": {"number": "X1234567", "country": "GB"},
    "business_details": BUSINESS,
}


# --- the contract's error envelope ----------------------------------------------------------------


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The contract's envelope: {"error": {"code", "message", "details"}} with this status and code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


def assert_invalid(response: httpx.Response) -> list[dict[str, Any]]:
    """A 422 `invalid_input` whose details are AJV-shaped; the details."""
    error = assert_error(response, 422, "invalid_input")
    assert set(error) == {"code", "message", "details"}
    details: list[dict[str, Any]] = error["details"]
    assert details
    for item in details:
        assert set(item) == {"instancePath", "keyword", "params", "message"}
    return details


# The seed customer's account assignment (seed 003), for bodies that carry assign_to_accounts.
SEED_ASSIGNMENT: dict[str, Any] = {
    "account_id": "31mNprzLd2bKl6koVna68ARM",
    "customer_account_role": "PRIMARY",
    "customer_account_external_id": "4465220133024156",
    "customer_account_issuer_processor_config": {
        "spend_limit": 8000000,
        "lithic": {
            "memo": "Primary College Card",
            "type": "MERCHANT_LOCKED",
            "state": "OPEN",
            "card_program_token": "a5e38341-cc95-4a9b-a21c-751aeca67e9c",
        },
    },
}


# --- databases of a test's own --------------------------------------------------------------------


FIXTURES = Path(__file__).parent / "fixtures"

# CREATE/DROP DATABASE and CHECKPOINT write every dirty buffer: on a loaded machine that takes
# longer than the pool's 30 s command timeout, which is for requests, not for this.
SLOW_DDL_SECONDS = 300


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


_SCHEMA_QUERIES = (
    # Columns (as a set: an added column comes last, a created one where CREATE TABLE has it).
    """SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
              pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped""",
    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
    """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
       WHERE connamespace = 'public'::regnamespace""",
    "SELECT proname, pg_get_functiondef(oid) FROM pg_proc WHERE pronamespace = 'public'::regnamespace",
)


async def schema_of(conn: asyncpg.Connection | asyncpg.Pool) -> set[tuple[object, ...]]:
    """Every table's columns, index, constraint and function, to compare an upgraded database with a
    fresh one: schema.sql creates what is new in CREATE TABLE, and must ALTER an older database to match."""
    found: set[tuple[object, ...]] = set()
    for query in _SCHEMA_QUERIES:
        found |= {tuple(row.values()) for row in await conn.fetch(query)}
    return found


class CrashablePostgres:
    """EmbeddedPostgres in `data_dir`, plus the harsh stop (`-m immediate`, a crash: no checkpoint, no
    goodbye to clients) and a restart on the same data dir, socket and port, so the DSN stays valid."""

    def __init__(self, data_dir: Path) -> None:
        self.embedded = EmbeddedPostgres(data_dir)
        self.dsn = ""

    def start(self) -> str:
        self.dsn = self.embedded.start()
        return self.dsn

    def _pgserver(self) -> Any:
        server = self.embedded._server  # pgserver's PostgresServer: its data dir, OS user and log
        assert server is not None
        return server

    def crash(self) -> None:
        from pgserver._commands import pg_ctl

        server = self._pgserver()
        pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=30)

    def restart(self) -> None:
        """`pg_ctl start` with the options pgserver starts it with: no TCP, the same socket dir."""
        from pgserver._commands import pg_ctl

        server = self._pgserver()
        socket_dir = parse_qs(urlsplit(self.dsn).query)["host"][0]
        pg_ctl(
            ["-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(server.log), "start"],
            pgdata=server.pgdata,
            user=server.system_user,
            timeout=60,
        )

    def stop(self) -> None:
        self.embedded.stop()


# --- the card worker against the fake Lithic ------------------------------------------------------


LITHIC_KEY = "test-key"  # the fake_lithic fixture's api key
PROGRAM = "a5e38341-cc95-4a9b-a21c-751aeca67e9c"
CARD_CONFIG = {
    "spend_limit": 8000000,
    "lithic": {
        "memo": "Primary College Card",
        "type": "MERCHANT_LOCKED",
        "state": "OPEN",
        "card_program_token": PROGRAM,
    },
}


def make_worker(
    pool: asyncpg.Pool,
    *,
    timeout: float = 5.0,
    base_seconds: float = 0.01,
    min_interval_seconds: float = 0.0,
    dsn: str | None = None,
    gateway: CardGateway | None = None,
) -> CardWorker:
    """`dsn`: the worker LISTENs there and wakes on NOTIFY when run() (None: process_due() by hand).
    `gateway`: the app's (its simulator is the one the app's requests ask), else one of its own."""
    if gateway is None:
        lithic = LithicClient(timeout=timeout, hosts=LithicHosts.from_entries(TEST_LITHIC_HOSTS))
        gateway = CardGateway(DataCipher(TEST_DATA_KEY), lithic=lithic)
    return CardWorker(
        pool,
        dsn,
        gateway,
        policy=RetryPolicy(base_seconds=base_seconds, lease_seconds=30),
        min_interval_seconds=min_interval_seconds,
    )


async def use_lithic(api: ApiClient, fake: FakeLithic) -> None:
    answer = await api.http.put(
        "/organization/issuer_processors", json={"lithic_config": {"api_key": LITHIC_KEY, "base_url": fake.base_url}}
    )
    assert answer.status_code == 200, answer.text


async def account(api: ApiClient, account_id: str = "acc-1") -> str:
    product = await api.http.post(
        "/products", json={"product_overview": {"product_name": "Card", "product_type": "REVOLVING"}}
    )
    created = await api.http.post(
        "/accounts", json={"account_id": account_id, "product_id": product.json()["product_id"]}
    )
    assert created.status_code == 200, created.text
    return account_id


async def linked_customer(api: ApiClient, account_id: str, customer_id: str = "cust-1") -> None:
    answer = await api.http.post(
        "/customers",
        json=minimal_customer(
            customer_id=customer_id,
            assign_to_accounts=[{"account_id": account_id, "customer_account_issuer_processor_config": CARD_CONFIG}],
        ),
    )
    assert answer.status_code == 200, answer.text


# --- Lithic's webhooks and the reconciler -----------------------------------------------------------


async def use_lithic_webhooks(api: ApiClient, fake: FakeLithic, secret: str | None = None) -> None:
    """The organization's cards go to `fake`, whose webhooks (signed with `secret`, default the fake's)
    the service verifies."""
    config = {"api_key": LITHIC_KEY, "base_url": fake.base_url, "webhook_secret": secret or fake.webhook_secret}
    answer = await api.http.put("/organization/issuer_processors", json={"lithic_config": config})
    assert answer.status_code == 200, answer.text


def make_reconciler(pool: asyncpg.Pool, *, min_age_seconds: float = 0.0) -> CardReconciler:
    """A reconciler on the fake Lithic, unpaced (reads_per_second 0), driven by process_due()."""
    lithic = LithicClient(timeout=5.0, hosts=LithicHosts.from_entries(TEST_LITHIC_HOSTS))
    gateway = CardGateway(DataCipher(TEST_DATA_KEY), lithic=lithic)
    return CardReconciler(pool, gateway, reads_per_second=0, min_age_seconds=min_age_seconds)


async def eventually(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 60.0) -> None:
    """Polls `check` until it holds, bounded: for what a background task does on its own time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)
