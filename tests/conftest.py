"""Test harness: one real PostgreSQL per session (embedded, or TEST_DATABASE_URL), clean per test.

Fixtures only: what test modules share besides fixtures is in tests/helpers.py."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from canopy_svc.api.app import create_app
from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.db import create_pool
from canopy_svc.core.settings import Settings
from canopy_svc.store.migrations import migrate_database
from tests.fake_lithic import FakeLithic
from tests.helpers import (
    LITHIC_KEY,
    TEST_DATA_KEY,
    TEST_JWT_SECRET,
    TEST_LITHIC_HOSTS,
    ApiClient,
    empty_tables,
    make_client,
)


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
    await empty_tables(pool)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=None,
        data_dir=tmp_path,
        jwt_secret=TEST_JWT_SECRET,
        data_key=TEST_DATA_KEY,
        lithic_allowed_hosts=TEST_LITHIC_HOSTS,
    )


@pytest.fixture
def app(settings: Settings, pool: asyncpg.Pool) -> Any:
    return create_app(settings, pool=pool)


@pytest.fixture
async def anonymous(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def _api_client(app: Any, pool: asyncpg.Pool, org_name: str) -> ApiClient:
    org_id, client_id, secret = await make_client(pool, org_name)
    token = app.resources.tokens.issue(client_id, org_id, "read write")
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {token}"},
    )
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


@pytest.fixture
def fake_lithic() -> Iterator[FakeLithic]:
    with FakeLithic(api_key=LITHIC_KEY) as fake:
        yield fake
