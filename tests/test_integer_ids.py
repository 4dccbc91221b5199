"""Ids in bodies may be integers (issue 11, item 4): Canopy documents that "both strings and integers
are accepted" for account, product and customer ids, and its clients send 2300. An integer is stored
and answered as its decimal string; anything else that is not a string stays a 422, AJV-shaped.

Through the ASGI app, against a real PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.helpers import ApiClient, assert_error, assert_invalid, minimal_customer

OVERVIEW = {"product_name": "Card", "product_type": "REVOLVING"}
INT64_MAX = 2**63 - 1


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# Each id field: the route, a body that carries `value` there, the JSON pointer, whether it is required.
Body = Callable[[Any], dict[str, Any]]
FIELDS: dict[str, tuple[str, Body, str, bool]] = {
    "product.product_id": (
        "/products",
        lambda v: {"product_overview": OVERVIEW, "product_id": v},
        "/product_id",
        False,
    ),
    "account.product_id": ("/accounts", lambda v: {"product_id": v}, "/product_id", True),
    "account.account_id": ("/accounts", lambda v: {"product_id": "p", "account_id": v}, "/account_id", False),
    "assign_customers.customer_id": (
        "/accounts",
        lambda v: {"product_id": "p", "assign_customers": [{"customer_id": v}]},
        "/assign_customers/0/customer_id",
        True,
    ),
    "assign_customers.customer_account_external_id": (
        "/accounts",
        lambda v: {"product_id": "p", "assign_customers": [{"customer_id": "c", "customer_account_external_id": v}]},
        "/assign_customers/0/customer_account_external_id",
        False,
    ),
    "assign_to_accounts.account_id": (
        "/customers",
        lambda v: minimal_customer(assign_to_accounts=[{"account_id": v}]),
        "/assign_to_accounts/0/account_id",
        True,
    ),
    "assign_to_accounts.customer_account_external_id": (
        "/customers",
        lambda v: minimal_customer(assign_to_accounts=[{"account_id": "a", "customer_account_external_id": v}]),
        "/assign_to_accounts/0/customer_account_external_id",
        False,
    ),
}

STRING_OR_INTEGER = {"keyword": "type", "params": {"type": ["string", "integer"]}, "message": "must be string,integer"}
MINIMUM = {"keyword": "minimum", "params": {"comparison": ">=", "limit": 0}, "message": "must be >= 0"}
INT64 = {"keyword": "format", "params": {"format": "int64"}, "message": f"must be a 64-bit integer (<= {INT64_MAX})"}
# Raw JSON text, so a float stays a float and 1e400 reaches the service as written.
BAD_VALUES: dict[str, tuple[str, dict[str, Any]]] = {
    "true": ("true", STRING_OR_INTEGER),
    "false": ("false", STRING_OR_INTEGER),
    "fraction": ("2300.5", STRING_OR_INTEGER),
    "float too big": ("1e400", STRING_OR_INTEGER),
    "object": ('{"id": 1}', STRING_OR_INTEGER),
    "array": ("[2300]", STRING_OR_INTEGER),
    "negative": ("-1", MINIMUM),
    "int64 + 1": (str(INT64_MAX + 1), INT64),
    "huge": ("1" + "0" * 40, INT64),
}


def _raw(body: dict[str, Any], value: str) -> bytes:
    """The body, with the id field's placeholder replaced by raw JSON text."""
    return httpx.Request("POST", "/", json=body).content.replace(b'"@ID@"', value.encode())


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("bad", BAD_VALUES)
async def test_a_bad_id_is_an_ajv_shaped_422(api: ApiClient, field: str, bad: str) -> None:
    route, body, pointer, _ = FIELDS[field]
    value, expected = BAD_VALUES[bad]
    answer = await api.http.post(route, content=_raw(body("@ID@"), value), headers={"Content-Type": "application/json"})
    details = assert_invalid(answer)
    assert {"instancePath": pointer, **expected} in details, details


@pytest.mark.parametrize("field", [name for name, (*_, required) in FIELDS.items() if required])
async def test_a_required_id_is_not_null(api: ApiClient, field: str) -> None:
    route, body, pointer, _ = FIELDS[field]
    details = assert_invalid(await api.http.post(route, json=body(None)))
    assert {"instancePath": pointer, **STRING_OR_INTEGER} in details, details


@pytest.mark.parametrize("field", FIELDS)
async def test_an_integer_id_passes_validation(api: ApiClient, field: str) -> None:
    """Valid in shape: whatever follows (a 404 for the id no one made) is not a 422."""
    route, body, _, _ = FIELDS[field]
    for value in (0, 2300, INT64_MAX):
        answer = await api.http.post(route, json=body(value))
        assert answer.status_code != 422, answer.text


async def test_a_string_id_keeps_its_rules(api: ApiClient) -> None:
    details = assert_invalid(await api.http.post("/products", json={"product_overview": OVERVIEW, "product_id": ""}))
    assert [d["keyword"] for d in details] == ["minLength"]


async def test_integer_product_and_account_ids_are_their_decimal_strings(api: ApiClient) -> None:
    product = ok(await api.http.post("/products", json={"product_overview": OVERVIEW, "product_id": 2300}))
    assert product["product_id"] == "2300"
    assert ok(await api.http.get("/products/2300")) == product
    # One id, however it is written.
    assert_error(
        await api.http.post("/products", json={"product_overview": OVERVIEW, "product_id": "2300"}), 409, "conflict"
    )

    created = ok(await api.http.post("/accounts", json={"account_id": INT64_MAX, "product_id": 2300}))
    assert (created["account_id"], created["product_id"]) == (str(INT64_MAX), "2300")
    assert ok(await api.http.get(f"/accounts/{INT64_MAX}"))["account_id"] == str(INT64_MAX)
    again = await api.http.post("/accounts", json={"account_id": str(INT64_MAX), "product_id": "2300"})
    assert_error(again, 409, "conflict")
    # A whole float is an integer, as JSON Schema (and Canopy's AJV) reads one.
    assert ok(await api.http.post("/accounts", json={"account_id": 7.0, "product_id": 2300}))["account_id"] == "7"


async def test_an_unknown_integer_product_is_a_404_naming_it(api: ApiClient) -> None:
    error = assert_error(await api.http.post("/accounts", json={"product_id": 4040}), 404, "not_found")
    assert "product_id" in error["message"]


async def test_assign_customers_takes_integer_ids(api: ApiClient) -> None:
    ok(await api.http.post("/products", json={"product_overview": OVERVIEW, "product_id": "p"}))
    ok(await api.http.post("/customers", json=minimal_customer(customer_id="77")))
    body = {
        "account_id": 5,
        "product_id": "p",
        "assign_customers": [{"customer_id": 77, "customer_account_external_id": 4465220133024156}],
    }
    account = ok(await api.http.post("/accounts", json=body))
    (customer,) = account["customers"]
    assert (customer["customer_id"], customer["customer_account_external_id"]) == ("77", "4465220133024156")
    assert ok(await api.http.get("/accounts/5")) == account


async def test_an_integer_and_its_string_are_one_customer_twice(api: ApiClient) -> None:
    body = {"product_id": "p", "assign_customers": [{"customer_id": 7}, {"customer_id": "7"}]}
    details = assert_invalid(await api.http.post("/accounts", json=body))
    assert [(d["instancePath"], d["keyword"]) for d in details] == [("/assign_customers", "uniqueItems")]


async def test_assign_to_accounts_takes_integer_ids(api: ApiClient) -> None:
    ok(await api.http.post("/products", json={"product_overview": OVERVIEW, "product_id": "p"}))
    ok(await api.http.post("/accounts", json={"account_id": 2300, "product_id": "p"}))
    ok(await api.http.post("/accounts", json={"account_id": 2301, "product_id": "p"}))
    created = minimal_customer(
        customer_id="c1", assign_to_accounts=[{"account_id": 2300, "customer_account_external_id": 12}]
    )
    ok(await api.http.post("/customers", json=created))
    # And on an update: a new link by integer, and the existing one's external id changed by integer.
    changes = {"assign_to_accounts": [{"account_id": 2301}, {"account_id": 2300, "customer_account_external_id": 13}]}
    ok(await api.http.put("/customers/c1", json=changes))
    for account_id, external_id in (("2300", "13"), ("2301", None)):
        (link,) = ok(await api.http.get(f"/accounts/{account_id}"))["customers"]
        assert link["customer_id"] == "c1"
        if external_id is not None:
            assert link["customer_account_external_id"] == external_id
    twice = {"assign_to_accounts": [{"account_id": 2300}, {"account_id": "2300"}]}
    details = assert_invalid(await api.http.put("/customers/c1", json=twice))
    assert [(d["instancePath"], d["keyword"]) for d in details] == [("/assign_to_accounts", "uniqueItems")]


async def test_an_integer_id_stays_in_its_organization(api: ApiClient, other_api: ApiClient) -> None:
    ok(await api.http.post("/products", json={"product_overview": OVERVIEW, "product_id": 2300}))
    assert_error(await other_api.http.post("/accounts", json={"product_id": 2300}), 404, "not_found")
    # Its ids may repeat another organization's.
    ok(await other_api.http.post("/products", json={"product_overview": OVERVIEW, "product_id": 2300}))


async def test_the_document_states_string_or_integer(api: ApiClient) -> None:
    schemas = ok(await api.http.get("/openapi.json"))["components"]["schemas"]
    places = {
        ("ProductCreate", "product_id"),
        ("AccountCreate", "product_id"),
        ("AccountCreate", "account_id"),
        ("CustomerAssignment", "customer_id"),
        ("CustomerAssignment", "customer_account_external_id"),
        ("AccountAssignment", "account_id"),
        ("AccountAssignment", "customer_account_external_id"),
    }
    for struct, name in places:
        schema = schemas[struct]["properties"][name]
        types = [member.get("type") for member in schema["oneOf"]]
        assert {"string", "integer"} <= set(types), (struct, name, schema)
        integer = next(member for member in schema["oneOf"] if member.get("type") == "integer")
        assert (integer["minimum"], integer["maximum"]) == (0, INT64_MAX)
