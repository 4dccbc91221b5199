"""`ignore_warnings` is an alias of `__ignoreWarnings` (issue 11, item 11): clients that snake-case
their bodies cannot send the latter. Sent both ways, they must agree: a 422 otherwise, since whether
the duplicate check is waived hangs on which one was meant.

Through the ASGI app, against a real PostgreSQL, under the `block` policy (contract section 6).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import ApiClient, assert_invalid, minimal_customer

# Shares only the email with minimal_customer(): a duplicate_email warning, which may be waived.
SAME_EMAIL = {
    "phone_number": "+14155550199",
    "address_line_one": "9 Elm St",
    "address_zip": "94105",
}


async def blocking(api: ApiClient) -> None:
    answer = await api.http.put("/organization/settings", json={"duplicate_customer_policy": "block"})
    assert answer.status_code == 200, answer.text
    answer = await api.http.post("/customers", json=minimal_customer(customer_id="first"))
    assert answer.status_code == 200, answer.text


def assert_blocked(response: httpx.Response) -> None:
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "duplicate_customer"


async def create_again(api: ApiClient, **flags: Any) -> httpx.Response:
    return await api.http.post("/customers", json=minimal_customer(customer_id="second", **SAME_EMAIL, **flags))


@pytest.mark.parametrize(
    "flags",
    [{"ignore_warnings": True}, {"ignore_warnings": True, "__ignoreWarnings": True}, {"__ignoreWarnings": True}],
)
async def test_either_name_waives_the_warning(api: ApiClient, flags: dict[str, Any]) -> None:
    await blocking(api)
    answer = await create_again(api, **flags)
    assert answer.status_code == 200, answer.text
    assert [w["code"] for w in answer.json()["warnings"]] == ["duplicate_email"]


@pytest.mark.parametrize(
    "flags", [{}, {"ignore_warnings": False}, {"ignore_warnings": False, "__ignoreWarnings": False}]
)
async def test_false_or_absent_waives_nothing(api: ApiClient, flags: dict[str, Any]) -> None:
    await blocking(api)
    assert_blocked(await create_again(api, **flags))


@pytest.mark.parametrize(("dunder", "alias"), [(True, False), (False, True)])
async def test_the_two_names_disagreeing_is_a_422(api: ApiClient, pool: Any, dunder: bool, alias: bool) -> None:
    await blocking(api)
    details = assert_invalid(await create_again(api, __ignoreWarnings=dunder, ignore_warnings=alias))
    assert details == [
        {
            "instancePath": "/ignore_warnings",
            "keyword": "enum",
            "params": {"allowedValues": [dunder]},
            "message": "must be equal to __ignoreWarnings when both are sent",
        }
    ]
    assert await pool.fetchval("SELECT count(*) FROM customers") == 1


async def test_the_disagreement_is_listed_with_the_other_problems(api: ApiClient) -> None:
    body = minimal_customer(name_first="", __ignoreWarnings=True, ignore_warnings=False)
    details = assert_invalid(await api.http.post("/customers", json=body))
    assert [(d["instancePath"], d["keyword"]) for d in details] == [
        ("/name_first", "minLength"),
        ("/ignore_warnings", "enum"),
    ]


@pytest.mark.parametrize("bad", [None, "true", 1, [True]])
async def test_the_alias_is_a_boolean(api: ApiClient, bad: Any) -> None:
    details = assert_invalid(await api.http.post("/customers", json=minimal_customer(ignore_warnings=bad)))
    assert details == [
        {
            "instancePath": "/ignore_warnings",
            "keyword": "type",
            "params": {"type": "boolean"},
            "message": "must be boolean",
        }
    ]


async def test_an_update_takes_the_alias(api: ApiClient) -> None:
    await blocking(api)
    second = await api.http.post(
        "/customers", json=minimal_customer(customer_id="second", **SAME_EMAIL, email="b@example.com")
    )
    assert second.status_code == 200, second.text
    changes = {"email": "ada@example.com"}  # first's
    assert_blocked(await api.http.put("/customers/second", json=changes))
    details = assert_invalid(
        await api.http.put("/customers/second", json={**changes, "ignore_warnings": True, "__ignoreWarnings": False})
    )
    assert [d["instancePath"] for d in details] == ["/ignore_warnings"]
    answer = await api.http.put("/customers/second", json={**changes, "ignore_warnings": True})
    assert answer.status_code == 200, answer.text
    assert answer.json()["email"] == "ada@example.com"


async def test_the_document_names_both(api: ApiClient) -> None:
    answer = await api.http.get("/openapi.json")
    schemas = answer.json()["components"]["schemas"]
    for struct in ("CustomerCreate", "CustomerUpdate"):
        properties = schemas[struct]["properties"]
        assert properties["ignore_warnings"]["type"] == "boolean"
        assert properties["__ignoreWarnings"]["type"] == "boolean"
        assert {"not": {"required": ["__ignoreWarnings", "ignore_warnings"]}} in schemas[struct]["anyOf"]
