"""Test harness: one real PostgreSQL per session (embedded, or TEST_DATABASE_URL), clean per test."""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from canopy_svc.api import examples
from canopy_svc.api.app import create_app
from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.db import create_pool
from canopy_svc.core.settings import Settings
from canopy_svc.rules.ids import new_client_id, new_client_secret
from canopy_svc.rules.passwords import hash_secret
from canopy_svc.store import organizations
from canopy_svc.store.migrations import migrate_database

TEST_JWT_SECRET = "test-jwt-secret-with-enough-length-0123456789"
TEST_DATA_KEY = bytes(range(32))
# The operator setting that lets the fake Lithic (tests/fake_lithic.py, on 127.0.0.1) be a base_url.
TEST_LITHIC_HOSTS = ("127.0.0.1", "localhost", "::1")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield external
        return
    from canopy_svc.core.embedded import EmbeddedPostgres

    data_dir = Path(tempfile.mkdtemp(prefix="canopy-test-"))
    server = EmbeddedPostgres(data_dir)
    uri = server.start()
    try:
        yield uri
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    await migrate_database(database_url, DataCipher(TEST_DATA_KEY))
    created = await create_pool(database_url, min_size=2, max_size=10)
    try:
        yield created
    finally:
        await created.close()


@pytest.fixture(autouse=True)
async def clean_database(pool: asyncpg.Pool) -> None:
    """Every test starts from empty tables (the schema and its version stay)."""
    tables = await pool.fetch(
        "SELECT quote_ident(tablename) AS name FROM pg_tables "
        "WHERE schemaname = 'public' AND tablename <> 'schema_version'"
    )
    if tables:
        await pool.execute(f"TRUNCATE {', '.join(t['name'] for t in tables)} RESTART IDENTITY CASCADE")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=None, data_dir=tmp_path, jwt_secret=TEST_JWT_SECRET, data_key=TEST_DATA_KEY,
                    lithic_allowed_hosts=TEST_LITHIC_HOSTS)


@pytest.fixture
def app(settings: Settings, pool: asyncpg.Pool) -> Any:
    return create_app(settings, pool=pool)


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


async def make_client(pool: asyncpg.Pool, org_name: str, scopes: str = "read write") -> tuple[int, str, str]:
    async with pool.acquire() as conn:
        org_id = await organizations.get_or_create_organization(conn, org_name)
        client_id, secret = new_client_id(), new_client_secret()
        await organizations.insert_client(conn, org_id, client_id, hash_secret(secret), scopes)
    return org_id, client_id, secret


@pytest.fixture
async def anonymous(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def _api_client(app: Any, pool: asyncpg.Pool, org_name: str) -> ApiClient:
    org_id, client_id, secret = await make_client(pool, org_name)
    token = app.resources.tokens.issue(client_id, org_id, "read write")
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver",
                             headers={"Authorization": f"Bearer {token}"})
    return ApiClient(org_id, client_id, secret, http)


@pytest.fixture
async def api(app: Any, pool: asyncpg.Pool) -> AsyncIterator[ApiClient]:
    """A client of the organization "acme"."""
    client = await _api_client(app, pool, "acme")
    async with client.http:
        yield client


@pytest.fixture
async def other_api(app: Any, pool: asyncpg.Pool) -> AsyncIterator[ApiClient]:
    """A client of another organization, "globex", for isolation tests."""
    client = await _api_client(app, pool, "globex")
    async with client.http:
        yield client


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


@pytest.fixture
def embedded_data_dir() -> Iterator[Path]:
    """A data folder for an embedded PostgreSQL started by a test, outside pytest's tmp_path.

    pgserver runs PostgreSQL as its own system user and opens every parent folder to it; pytest
    closes its `pytest-of-<user>` root again (mode 0700) whenever another pytest session starts, and
    the server then cannot reach its data. A folder of its own in the system temp dir has no such race."""
    path = Path(tempfile.mkdtemp(prefix="canopy-e2e-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
