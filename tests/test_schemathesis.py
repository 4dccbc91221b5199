"""Schemathesis against the OpenAPI document the app serves, over the ASGI app (issue 5, item 3).

For every operation of `/openapi.json`, a bounded, deterministic set of generated requests, valid
and invalid ones, with a bearer token, checked for: no 5xx (`not_a_server_error`), a status code the
document lists (`status_code_conformance`), the content type it lists, a body that matches the
document's schema for that status (`response_schema_conformance`), 401 without a valid token
(`ignored_auth`) and 405 for a method the path does not have (`unsupported_method`).

The document's request examples (the README's customer, product and account) are created first, and
its path examples name them, so generated requests reach real objects and 200 bodies get checked too.

The app runs with its own lifespan (its own pool, migrated on start) in schemathesis' event-loop
thread, on the session's test database. Each operation is one test item, so each starts from empty
tables (conftest's clean_database) with a fresh organization and client.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
import schemathesis
from conftest import TEST_DATA_KEY, TEST_JWT_SECRET, make_client
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from starlette.applications import Starlette

from canopy_svc.api import openapi
from canopy_svc.api.app import OPERATIONS, create_app
from canopy_svc.config import Settings
from canopy_svc.store import api_clients

EXAMPLES_PER_OPERATION = 25
# Not negative_data_rejection: the contract has the server accept what the document's types alone would
# reject (a `limit` that is not a number falls back to the default, "never rejected").
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          ignored_auth, unsupported_method]

# The document exactly as GET /openapi.json serves it (test_openapi_json_is_the_document_tested checks that).
DOCUMENT = openapi.build_document(OPERATIONS)


class ServedApp:
    """The ASGI app schemathesis calls (its checks' extra requests too). The real one needs the test
    database's URL, a fixture: `served_app` plugs it in."""

    app: Starlette | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.app is not None, "the served_app fixture plugs the app in"
        await self.app(scope, receive, send)


SERVED = ServedApp()
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.app = SERVED


def example(path: str) -> Any:
    return DOCUMENT["paths"][path]["post"]["requestBody"]["content"]["application/json"]["example"]


@pytest.fixture(scope="module")
def served_app(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Starlette]:
    settings_ = Settings(database_url=database_url, data_dir=tmp_path_factory.mktemp("schemathesis"),
                         jwt_secret=TEST_JWT_SECRET, data_key=TEST_DATA_KEY, pool_min_size=1, pool_max_size=4,
                         card_worker=False)
    SERVED.app = create_app(settings_)
    try:
        yield SERVED.app
    finally:
        schemathesis_asgi.shutdown_lifespans()  # closes the app's pool, in the loop that opened it
        SERVED.app = None


@pytest.fixture
async def bearer_headers(pool: asyncpg.Pool, served_app: Starlette) -> dict[str, str]:
    org_id, client_id, _ = await make_client(pool, "acme")
    # Generated requests come fast; the rate limiter is tested elsewhere.
    await api_clients.set_limits(pool, client_id, rate=1_000_000.0, burst=1_000_000)
    token = served_app.state.tokens.issue(client_id, org_id, "read write")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def seeded(served_app: Starlette, bearer_headers: dict[str, str]) -> dict[str, str]:
    """The document's own examples, created: the customer, product and account (with the customer on
    it) its path examples name, so generated requests reach real objects, not only 404s."""
    with schemathesis_asgi.get_client(SERVED) as client:
        for path in ("/customers", "/products", "/accounts"):
            answer = client.post(path, json=example(path), headers=bearer_headers)
            assert answer.status_code == 200, answer.text
    return bearer_headers


def test_openapi_json_is_the_document_tested(served_app: Starlette, tmp_path: Path) -> None:
    with schemathesis_asgi.get_client(SERVED) as client:
        served = client.get("/openapi.json")
    assert served.status_code == 200
    assert msgspec.json.decode(served.content) == openapi.build_document(OPERATIONS)


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case: Any, served_app: Starlette, seeded: dict[str, str]) -> None:
    case.call_and_validate(headers=seeded, checks=CHECKS)
