"""Validation before a connection (issue 10, item 5): a write decodes and checks its body before it takes a
pooled connection, so refused bodies, however many or large, cannot take the pool from the valid ones."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from canopy_svc.api.app import create_app
from canopy_svc.core.db import create_pool
from canopy_svc.core.settings import Settings
from tests.helpers import ApiClient, make_client, minimal_customer

BOUND_SECONDS = 30.0  # a bound on waiting, not a measure: on a busy machine everything is slow

# Bodies each write refuses on its own (400 or 422), before any row is read.
REFUSED = [
    ("POST", "/customers", {"name_first": ""}),
    ("PUT", "/customers/c-1", {"name_last": None}),
    # (An update's meaning, a malformed email say, is checked against the stored row it changes.)
    ("PATCH", "/customers/c-1", {"email": 5}),
    ("POST", "/products", {"product_id": "p"}),
    ("POST", "/accounts", {"product_id": "p", "effective_at": "0001-01-01T00:00:00+01:00"}),
    ("POST", "/accounts/a-1/customers/c-1/cards", {"spend_limit": -1}),
    ("PUT", "/accounts/a-1/customers/c-1/cards", {}),  # neither state nor spend_limit
    ("PUT", "/organization/settings", {"duplicate_customer_policy": "sometimes"}),
    ("PUT", "/organization/issuer_processors", {"lithic_config": {"api_key": "k" * 20,
                                                                  "base_url": "https://lithic.example.com"}}),
]  # fmt: skip


@pytest.fixture
async def one_connection(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        yield pool
    finally:
        await pool.close()


async def finished(task: asyncio.Task[httpx.Response], what: object = None) -> httpx.Response:
    deadline = time.monotonic() + BOUND_SECONDS
    while not task.done():
        assert time.monotonic() < deadline, f"{what}: waited for the pool"
        await asyncio.sleep(0.01)
    return task.result()


async def test_a_refused_body_takes_no_pooled_connection(
    settings: Settings, pool: asyncpg.Pool, one_connection: asyncpg.Pool
) -> None:
    # The client's rate limits are read once, then kept: later requests need the pool for nothing else.
    app = create_app(dataclasses.replace(settings, rate_limit_cache_seconds=3600), pool=one_connection)
    org_id, client_id, _ = await make_client(pool, "acme")
    token = app.resources.tokens.issue(client_id, org_id, "read write")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {token}"},
    ) as http:
        assert (await http.get("/customers")).status_code == 200
        async with one_connection.acquire():  # the pool's only connection, held
            valid = asyncio.create_task(http.post("/customers", json=minimal_customer(customer_id="c-1")))
            for method, path, body in REFUSED:
                answer = await finished(asyncio.create_task(http.request(method, path, json=body)), (method, path))
                assert answer.status_code in (400, 422), (method, path, answer.text)
            assert not valid.done()  # a valid write waits for a connection: the pool really is taken
        assert (await finished(valid)).status_code == 200


async def test_with_a_key_a_refused_body_is_still_an_answer_under_it(api: ApiClient) -> None:
    """The refusal is claimed and remembered like the work's own: a repeat is replayed, and the key
    with another body is refused as reused (not validated again)."""
    keyed = {"Idempotency-Key": "refused-1"}
    first = await api.http.put("/accounts/a-1/customers/c-1/cards", json={}, headers=keyed)
    again = await api.http.put("/accounts/a-1/customers/c-1/cards", json={}, headers=keyed)
    assert first.status_code == again.status_code == 422
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    other = await api.http.put("/accounts/a-1/customers/c-1/cards", json={"state": ""}, headers=keyed)
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
