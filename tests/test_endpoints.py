"""Each endpoint declared once (issue 10, item 1): what is served is what /openapi.json documents, the
public paths and scopes the authentication applies come from the same declarations, and the example
bodies are the same everywhere they are shown."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from canopy_svc.api import examples, openapi, routing
from canopy_svc.api.app import ENDPOINTS
from canopy_svc.api.routing import Endpoint
from canopy_svc.cli import dev_banner
from tests.helpers import ApiClient, seed_customer

REPOSITORY = Path(__file__).resolve().parent.parent
# Served, and not in the document: the document and its page do not describe themselves, and the
# operator's /metrics is not part of the Canopy contract (its access: tests/test_metrics.py).
# /docs is Swagger UI: the page, its options, the files of the bundle it loads and its 3.0 document.
DOCS_PAGE = {
    "/docs", "/docs/init.js", "/docs/openapi-3.0.json", "/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js",
    "/docs/favicon-32x32.png",
}  # fmt: skip
SELF_DESCRIBING = {("GET", "/openapi.json"), *(("GET", path) for path in DOCS_PAGE)}
OPERATOR = {("GET", "/metrics")}
# CONTRACT section 3: these need no token; every other route needs one.
# /webhooks/lithic: Lithic signs it instead (tests/test_lithic_webhooks.py).
PUBLIC = {"/auth/token", "/healthz", "/readyz", "/openapi.json", "/webhooks/lithic", *DOCS_PAGE}


def served_operations(app: Starlette) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves, paths as documented ("{customer_id}", no convertor).
    HEAD is left out: Starlette answers it for every GET, and OpenAPI lists GET only."""
    served = set()
    for route in app.routes:
        assert isinstance(route, Route)
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        served |= {(method, path) for method in route.methods or () if method != "HEAD"}
    return served


async def documented_operations(anonymous: httpx.AsyncClient) -> dict[tuple[str, str], dict[str, Any]]:
    document = (await anonymous.get("/openapi.json")).json()
    return {
        (method.upper(), path): operation
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }


async def test_every_served_operation_is_documented_and_every_documented_one_served(
    app: Starlette, anonymous: httpx.AsyncClient
) -> None:
    served = served_operations(app)
    documented = set(await documented_operations(anonymous))
    assert documented - served == set()
    assert served - documented == SELF_DESCRIBING | OPERATOR
    assert documented == {(e.method, e.path) for e in ENDPOINTS}


async def test_every_documented_operation_reaches_its_handler(api: ApiClient, anonymous: httpx.AsyncClient) -> None:
    """Not the router's 404 or 405: each documented (method, path), with the document's path ids, gets past
    routing (its answer may be any other, a 404 for an object that is not there included)."""
    for method, path in await documented_operations(anonymous):
        url = path.format(**examples.PATH_IDS)
        answer = await api.http.request(method, url, json={} if method != "GET" else None)
        assert answer.status_code != 405, (method, path)
        if answer.status_code == 404:
            assert answer.json()["error"]["message"] != "No route matches this path", (method, path)


async def test_public_paths_are_the_public_endpoints_and_the_document_says_so(anonymous: httpx.AsyncClient) -> None:
    served = [*ENDPOINTS, *openapi.endpoints(ENDPOINTS)]
    assert routing.public_paths(served) == PUBLIC
    for (method, path), operation in (await documented_operations(anonymous)).items():
        assert ("security" not in operation) == (path in PUBLIC), (method, path)
    for path in PUBLIC:  # let through with no token
        for method in {e.method for e in served if e.path == path}:
            answer = await anonymous.request(method, path, json={} if method == "POST" else None)
            assert answer.status_code not in (401, 403), (method, path, answer.text)


def test_reads_need_read_and_everything_else_write() -> None:
    for endpoint in ENDPOINTS:
        expected = None if endpoint.public else "read" if endpoint.method == "GET" else "write"
        assert endpoint.scope == expected, (endpoint.method, endpoint.path)
    assert routing.scopes_by_method(ENDPOINTS) == {
        "GET": "read",
        "HEAD": "read",
        "POST": "write",
        "PUT": "write",
        "PATCH": "write",
        "DELETE": "write",
    }


async def handler(request: Request) -> Response:
    return PlainTextResponse(request.url.path)


def test_the_authentication_cannot_be_given_declarations_it_would_not_enforce() -> None:
    # It decides by method, before routing: two GETs needing different scopes would be one of them wrong.
    with pytest.raises(ValueError, match="another GET endpoint"):
        routing.scopes_by_method([Endpoint("GET", "/a", handler), Endpoint("GET", "/b", handler, scope="write")])
    with pytest.raises(ValueError, match="public"):
        Endpoint("GET", "/a", handler, public=True, scope="read")
    # A public path is public for every method on it, and matched as written.
    with pytest.raises(ValueError, match="needs a token on a public path"):
        routing.public_paths([Endpoint("GET", "/a", handler, public=True), Endpoint("POST", "/a", handler)])
    with pytest.raises(ValueError, match="without parameters"):
        routing.public_paths([Endpoint("GET", "/a/{a_id}", handler, public=True)])


def test_an_endpoint_declared_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        routing.routes([Endpoint("GET", "/a", handler), Endpoint("GET", "/a", handler)])


@pytest.mark.parametrize("order", [1, -1])
async def test_a_literal_segment_is_routed_before_a_parameter_whatever_the_order(order: int) -> None:
    async def links(request: Request) -> Response:
        return PlainTextResponse("links")

    async def one(request: Request) -> Response:
        return PlainTextResponse(f"customer {request.path_params['customer_id']}")

    declared = [Endpoint("GET", "/customers/{customer_id}", one), Endpoint("GET", "/customers/accounts", links)]
    app = Starlette(routes=routing.routes(declared[::order]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        assert (await client.get("/customers/accounts")).text == "links"
        assert (await client.get("/customers/c-1")).text == "customer c-1"


# --- the example bodies ----------------------------------------------------------------------------


async def test_the_document_shows_the_declared_examples(anonymous: httpx.AsyncClient) -> None:
    operations = await documented_operations(anonymous)

    def example(method: str, path: str) -> Any:
        return operations[(method, path)]["requestBody"]["content"]["application/json"]["example"]

    assert example("POST", "/customers") == examples.CUSTOMER
    assert example("PATCH", "/customers/{customer_id}") == examples.CUSTOMER_UPDATE
    assert example("POST", "/products") == examples.PRODUCT
    assert example("POST", "/accounts") == examples.ACCOUNT
    assert example("POST", "/customers/{customer_id}/beneficial_owners") == examples.BENEFICIAL_OWNER
    # The path ids /docs shows are those of the bodies, so its requests reach what they create.
    ids = {
        "customer_id": examples.CUSTOMER["customer_id"],
        "product_id": examples.PRODUCT["product_id"],
        "account_id": examples.ACCOUNT["account_id"],
        "beneficial_owner_id": examples.BENEFICIAL_OWNER["beneficial_owner_id"],
        "subscription_id": examples.PATH_IDS["subscription_id"],
        "event_id": examples.PATH_IDS["event_id"],
        "card_token": examples.PATH_IDS["card_token"],  # made by Lithic: it stands for one
        "loanpro_id": examples.PATH_IDS["loanpro_id"],
        "navigation": examples.PATH_IDS["navigation"],
    }
    shown = {
        (parameter["name"], parameter["example"])
        for operation in operations.values()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "path"
    }
    assert shown == set(ids.items())
    assert examples.ACCOUNT["product_id"] == examples.PRODUCT["product_id"]
    assert [c["customer_id"] for c in examples.ACCOUNT["assign_customers"]] == [examples.CUSTOMER["customer_id"]]


def bodies_sent(text: str) -> list[Any]:
    """The JSON bodies of the curl lines in `text` (`-d '...'`), but those shortened with `…`."""
    bodies = []
    for body in re.findall(r"-d '(\{.*?\})'", text):
        try:
            bodies.append(json.loads(body))
        except json.JSONDecodeError:
            assert "…" in body, body  # shortened on purpose; anything else is a broken example
    return bodies


def test_the_readme_and_the_dev_banner_send_the_declared_customer() -> None:
    readme = bodies_sent((REPOSITORY / "README.md").read_text())
    assert examples.CUSTOMER in readme
    assert examples.CUSTOMER_UPDATE in readme
    banner = dev_banner({"org": "dev", "client_id": "cli_x", "client_secret": "s"}, "http://127.0.0.1:8000")
    create = next(line for line in banner.splitlines() if "/customers" in line)
    assert bodies_sent(create) == [examples.CUSTOMER]
    assert "-d" in shlex.split(create)  # a line a shell takes as it is


def test_the_tests_seed_the_declared_customer() -> None:
    assert seed_customer() == examples.CUSTOMER
    assert seed_customer() is not examples.CUSTOMER  # a copy: a test changing it changes no other
