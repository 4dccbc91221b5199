"""Schemathesis against the OpenAPI document the app serves, over the ASGI app, with every check
(issue 8, item 12): what `schemathesis run --checks all` does against a running server, bounded and
deterministic for CI.

For every operation of `/openapi.json`: its examples, schemathesis' coverage cases (boundaries and each
constraint broken in turn) and a bounded number of generated requests, valid and invalid ones, NUL in
strings included, with a bearer token; then a bounded stateful run following the links between
operations. Every built-in check runs: no 5xx, status codes, content types, headers and bodies as the
document lists them, valid data accepted and invalid data refused (so the document must state every rule
the server enforces), 401 without a token, 405 for a method a path does not have, and the stateful
ones. schemathesis.toml (and the hooks it names) is the configuration `schemathesis run` reads too.

The document's request examples (the README's customer, product and account) are created first, and
its path examples name them, so generated requests reach real objects and 200 bodies get checked too.

The app runs with its own lifespan (its own pool, migrated on start) in schemathesis' event-loop
thread, on the session's test database. Each operation is one test item, so each starts from empty
tables (conftest's clean_database) with a fresh organization and client.

Deterministic: a fixed seed, derandomized Hypothesis and no example database, so a failure here fails
every run, and `EXAMPLES_PER_OPERATION` bounds the time (about two minutes on two cores).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi as schemathesis_asgi

from canopy_svc.api import examples, openapi
from canopy_svc.api.app import ENDPOINTS, CanopyApp, create_app
from canopy_svc.core.settings import Settings
from canopy_svc.issuers.simulator import CardSimulator
from canopy_svc.store import api_clients
from tests.helpers import TEST_DATA_KEY, TEST_JWT_SECRET, make_client, truncate_all_statement

REPOSITORY = Path(__file__).resolve().parent.parent
EXAMPLES_PER_OPERATION = 200
STATEFUL_SCENARIOS, STATEFUL_STEPS = 30, 8
SEED = 20261201

# The document exactly as GET /openapi.json serves it (test_openapi_json_is_the_document_tested checks that).
DOCUMENT = openapi.build_document(ENDPOINTS)


def load_config() -> SchemathesisConfig:
    """schemathesis.toml, as `schemathesis run` reads it from the repository root (its hooks path is
    relative to the root, so it is loaded from there whatever pytest's working directory)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPOSITORY)
        config = SchemathesisConfig.from_path(REPOSITORY / "schemathesis.toml")
    config.update(seed=SEED, max_failures=None)
    return config


class ServedApp:
    """The ASGI app schemathesis calls (its checks' extra requests too). The real one needs the test
    database's URL, a fixture: `served_app` plugs it in."""

    app: CanopyApp | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.app is not None, "the served_app fixture plugs the app in"
        await self.app(scope, receive, send)


SERVED = ServedApp()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=load_config())
schema.app = SERVED


@schema.auth(refresh_interval=None)
class FixtureToken:
    """The bearer token of the test's own client (bearer_headers sets it), given to schemathesis as its
    auth, as `-H "Authorization: ..."` is on the command line: so the checks that drop or spoil it know."""

    value: ClassVar[str | None] = None

    def get(self, case: Any, context: Any) -> str | None:
        return FixtureToken.value

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def example(path: str) -> Any:
    return DOCUMENT["paths"][path]["post"]["requestBody"]["content"]["application/json"]["example"]


@pytest.fixture(scope="module")
def served_app(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CanopyApp]:
    settings_ = Settings(
        database_url=database_url,
        data_dir=tmp_path_factory.mktemp("schemathesis"),
        jwt_secret=TEST_JWT_SECRET,
        data_key=TEST_DATA_KEY,
        pool_min_size=1,
        pool_max_size=4,
        card_worker=False,
        delivery_worker=False,  # generated subscriptions name hosts anywhere: nothing is sent to them
    )
    SERVED.app = create_app(settings_)
    # A generated PUT /organization/issuer_processors sets a Lithic key: cards are then changed "at Lithic",
    # here the simulator, so the test never reaches out to api.lithic.com.
    SERVED.app.resources.card_gateway.lithic = CardSimulator()  # type: ignore[assignment]  # the same calls
    try:
        yield SERVED.app
    finally:
        schemathesis_asgi.shutdown_lifespans()  # closes the app's pool, in the loop that opened it
        SERVED.app = None


async def start_fresh(database_url: str, served_app: CanopyApp) -> dict[str, str]:
    """Empty tables (the schema stays), a fresh organization and client, and its bearer token."""
    connection = await asyncpg.connect(database_url)
    try:
        statement = await truncate_all_statement(connection)
        if statement is not None:
            await connection.execute(statement)
    finally:
        await connection.close()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        org_id, client_id, _ = await make_client(pool, "acme")
        # Generated requests come fast; the rate limiter is tested elsewhere.
        await api_clients.set_limits(pool, client_id, rate=1_000_000.0, burst=1_000_000)
    finally:
        await pool.close()
    token = served_app.resources.tokens.issue(client_id, org_id, "read write")
    FixtureToken.value = token
    return {"Authorization": f"Bearer {token}"}


def seed(bearer_headers: dict[str, str]) -> None:
    """The document's own examples, created: the customer, product and account (with the customer on
    it) and the customer's beneficial owner its path examples name, so generated requests reach real
    objects, not only 404s."""
    with schemathesis_asgi.get_client(SERVED) as client:
        for path in ("/customers", "/products", "/accounts", "/customers/{customer_id}/beneficial_owners"):
            answer = client.post(path.format(**examples.PATH_IDS), json=example(path), headers=bearer_headers)
            assert answer.status_code == 200, answer.text


@pytest.fixture
async def bearer_headers(database_url: str, served_app: CanopyApp) -> dict[str, str]:
    return await start_fresh(database_url, served_app)


@pytest.fixture
def seeded(bearer_headers: dict[str, str]) -> dict[str, str]:
    seed(bearer_headers)
    return bearer_headers


def test_openapi_json_is_the_document_tested(served_app: CanopyApp) -> None:
    # The document is the UTC day's: read the day on both sides, so a request at midnight is either day's.
    before = openapi.utc_today()
    with schemathesis_asgi.get_client(SERVED) as client:
        served = client.get("/openapi.json")
    after = openapi.utc_today()
    assert served.status_code == 200
    assert msgspec.json.decode(served.content) in [openapi.build_document(ENDPOINTS, day) for day in {before, after}]


def test_every_check_runs() -> None:
    """`--checks all`: the checks a case validates with are every built-in one (none left disabled)."""
    from schemathesis.checks import CHECKS

    config = schema.config.checks_config_for(operation=schema["/customers"]["POST"], phase=None)
    names = CHECKS.get_all_names()
    assert {
        "negative_data_rejection",
        "positive_data_acceptance",
        "use_after_free",
        "ignored_auth",
        "response_headers_conformance",
        "missing_required_header",
    } <= set(names)
    assert all(config.get_by_name(name=name).enabled for name in names)


def test_hooks_drop_only_what_no_schema_can_see() -> None:
    """schemathesis_hooks.py's failure filter (as schemathesis.toml registered it) drops each refusal it
    names and nothing next to it: the same status with another cause is still a failure."""
    import json
    from types import SimpleNamespace

    from schemathesis.core.failures import ServerError
    from schemathesis.hooks import get_all_by_name
    from schemathesis.openapi.checks import EnsureResourceAvailability, RejectedPositiveData

    (keep,) = get_all_by_name("filter_failure")
    customer, cards = "/customers/{customer_id}", "/accounts/{account_id}/customers/{customer_id}/cards"

    def kept(failure: Any, method: str, path: str, status: int, error: dict[str, Any], body: Any = None) -> bool:
        case = SimpleNamespace(operation=SimpleNamespace(path=path), method=method, body=body)
        response = SimpleNamespace(status_code=status, content=json.dumps({"error": error}).encode())
        return bool(keep(None, failure, case, response))

    def rejected(status: int) -> RejectedPositiveData:
        return RejectedPositiveData(operation="op", message="", status_code=status, allowed_statuses=["200"])

    def invalid(*paths: str, keyword: str = "pattern", **params: Any) -> dict[str, Any]:
        return {
            "code": "invalid_input",
            "details": [{"instancePath": p, "keyword": keyword, "params": params} for p in paths],
        }

    # An update's zip and state, decided by what is stored: dropped only when the body leaves a part out.
    for body in ({"address_zip": "SW1A 1AA"}, {"address_country_code": "US"}, {"address_state": "Bavaria"}):
        assert not kept(rejected(422), "PATCH", customer, 422, invalid("/address_zip", "/address_state"), body)
    assert kept(
        rejected(422),
        "PUT",
        customer,
        422,
        invalid("/address_zip"),
        {"address_country_code": "US", "address_zip": "12345"},
    )
    assert kept(rejected(422), "PUT", customer, 422, invalid("/address_zip", "/email"), {"address_zip": "1"})
    assert kept(rejected(422), "POST", "/customers", 422, invalid("/address_zip"), {"address_zip": "1"})
    # One id twice in items that differ: dropped; equal items (the document's uniqueItems) or another list: kept.
    twice = {"assign_to_accounts": [{"account_id": "a", "customer_account_role": "PRIMARY"}, {"account_id": "a"}]}
    duplicate = invalid("/assign_to_accounts", keyword="uniqueItems", i=1, j=0)
    assert not kept(rejected(422), "POST", "/customers", 422, duplicate, twice)
    assert kept(rejected(422), "POST", "/customers", 422, duplicate, {"assign_to_accounts": [{"account_id": "a"}] * 2})
    assert kept(rejected(422), "POST", "/customers", 422, {**duplicate, "code": "conflict"}, twice)
    # A listing's forged cursor or too many words: dropped; any other 400 there, or elsewhere: kept.
    forged = {"code": "bad_request", "message": "Invalid starting_after cursor"}
    words = {"code": "bad_request", "message": "search_parameters may have at most 10 words"}
    assert not kept(rejected(400), "GET", "/customers", 400, forged)
    assert not kept(rejected(400), "GET", "/customers", 400, words)
    assert kept(rejected(400), "GET", "/customers", 400, {"code": "bad_request", "message": "Send at most one"})
    assert kept(rejected(400), "GET", customer, 400, forged)
    # Lithic unreachable on a card change: dropped; any other 5xx: kept.
    unavailable = {"code": "unavailable", "message": "Service temporarily unavailable"}
    assert not kept(ServerError(operation="op", status_code=503), "PUT", cards, 503, unavailable)
    assert kept(ServerError(operation="op", status_code=500), "PUT", cards, 500, {"code": "server_error"})
    assert kept(ServerError(operation="op", status_code=503), "POST", "/customers", 503, unavailable)
    # After a create, a 404 for an id the update's body references: dropped; for the customer itself, or
    # for an id the body does not name: kept (the created resource really is gone).
    gone = EnsureResourceAvailability(
        operation="op", message="", created_with="POST /customers", not_available_with="PATCH /customers/{customer_id}"
    )
    unknown_account = {"code": "not_found", "message": "No account found with the provided account_id: acc-9"}
    assigning = {"assign_to_accounts": [{"account_id": "acc-9"}]}
    assert not kept(gone, "PATCH", customer, 404, unknown_account, assigning)
    assert kept(gone, "PATCH", customer, 404, unknown_account, {"assign_to_accounts": [{"account_id": "acc-1"}]})
    assert kept(
        gone,
        "PATCH",
        customer,
        404,
        {"code": "not_found", "message": "No customer found with the provided customer_id: c"},
        assigning,
    )
    assert kept(gone, "PATCH", customer, 404, {**unknown_account, "code": "bad_request"}, assigning)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi_document(case: Any, served_app: CanopyApp, seeded: dict[str, str]) -> None:
    case.call_and_validate()


def test_stateful_sequences_conform(database_url: str, served_app: CanopyApp) -> None:
    """Sequences along the document's links (create, then read, change and list what was made), with the
    stateful checks (use_after_free, ensure_resource_availability) beside the others.

    Each scenario starts from the seeded state anew. Hypothesis replays a scenario (to shrink it, and to
    check it draws the same way) and chooses its next step by what earlier answers put in its bundles: on
    tables that kept every earlier scenario's customers, the same steps met other answers (a duplicate's
    409 where a 200 was), and Hypothesis rightly called the run flaky."""

    class FromSeededState(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            seed(asyncio.run(start_fresh(database_url, served_app)))

    FromSeededState.run(
        settings=settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_STEPS,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
