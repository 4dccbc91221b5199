"""Test harness: one real PostgreSQL per session (embedded, or TEST_DATABASE_URL), clean per test.

Fixtures only: what test modules share besides fixtures is in tests/helpers.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import warnings
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
from tests.helpers import LITHIC_KEY, TEST_DATA_KEY, TEST_JWT_SECRET, TEST_LITHIC_HOSTS, ApiClient, make_client


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


# The TRUNCATE that cleans between tests waits this long before it asks why: a loaded machine takes
# a second or two, a session of an earlier test that still holds a table would block it for ever.
CLEAN_PATIENCE_SECONDS = 10.0
CLEAN_LIMIT_SECONDS = 300.0

_SESSIONS_SQL = """\
SELECT pid, application_name, backend_type, state, wait_event_type, wait_event, xact_start,
       left(query, 300) AS query, pid = ANY(pg_blocking_pids($1)) AS blocking,
       (SELECT array_agg(DISTINCT l.relation::regclass::text) FROM pg_locks l
        WHERE l.pid = a.pid AND l.granted AND l.relation IS NOT NULL) AS tables
FROM pg_stat_activity a WHERE datname = current_database() AND pid <> pg_backend_pid()"""


@pytest.fixture(autouse=True)
async def clean_database(pool: asyncpg.Pool) -> None:
    """Every test starts from empty tables (the schema and its version stay)."""
    tables = await pool.fetch(
        "SELECT quote_ident(tablename) AS name FROM pg_tables "
        "WHERE schemaname = 'public' AND tablename <> 'schema_version'"
    )
    if not tables:
        return
    statement = f"TRUNCATE {', '.join(t['name'] for t in tables)} RESTART IDENTITY CASCADE"
    async with pool.acquire() as connection:
        truncating = asyncio.ensure_future(connection.execute(statement, timeout=CLEAN_LIMIT_SECONDS))
        done, _ = await asyncio.wait({truncating}, timeout=CLEAN_PATIENCE_SECONDS)
        if done:
            truncating.result()  # raises what the TRUNCATE raised
            return
        # Still waiting: ask the server what it waits on, while it does.
        sessions = [dict(s) for s in await pool.fetch(_SESSIONS_SQL, connection.get_server_pid())]
        blockers = [s for s in sessions if s["blocking"]]
        if blockers:
            # A session holding a table (a leaked transaction, a worker never stopped): name it, since
            # the test that left it has already passed, and end it so later tests are not blocked too.
            await pool.execute(
                "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", [b["pid"] for b in blockers]
            )
            with contextlib.suppress(asyncpg.PostgresError, TimeoutError):
                await truncating
            pytest.fail(f"a session held the tables when this test began (terminated): {blockers}")
        # Nobody holds a lock: the server is slow (I/O, a loaded machine). Wait, and say so.
        warnings.warn(f"cleaning the tables took over {CLEAN_PATIENCE_SECONDS} s; sessions: {sessions}", stacklevel=1)
        await truncating


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
