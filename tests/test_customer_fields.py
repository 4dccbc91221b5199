"""Canopy's newer customer fields (issue 11, item 2): customer_type, verification_status, title,
passport, customer_parent_id, and business_details' business_type, business_classification_id,
website and controller. Each is accepted, validated, stored and answered wherever a customer is: none
is dropped, each round-trips (create -> GET -> update -> GET), null clears an optional one, and a bad
value is a 422 in the contract's envelope that writes nothing.

Through the ASGI app, against a real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import asyncpg
import httpx
import pytest

from canopy_svc.wire.models import VerificationStatus
from tests.helpers import BUSINESS, CONTROLLER, NEW_FIELDS, ApiClient, assert_error, assert_invalid, minimal_customer

VERIFICATION_STATUSES: tuple[str, ...] = VerificationStatus.__args__  # type: ignore[attr-defined]
UPDATE_METHODS = pytest.mark.parametrize("method", ["PUT", "PATCH"])


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def create(api: ApiClient, **fields: Any) -> dict[str, Any]:
    """The customer created (the duplicate check's warnings aside: test customers share an email)."""
    created = ok(await api.http.post("/customers", json=minimal_customer(**fields)))
    created.pop("warnings", None)
    return created


async def count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM customers"))


# --- round trips ---------------------------------------------------------------------------------


async def test_every_new_field_round_trips_through_create_get_update_get(api: ApiClient) -> None:
    await create(api, customer_id="parent-1")
    await create(api, customer_id="parent-2")
    created = await create(api, customer_id="c1", customer_parent_id="parent-1", **NEW_FIELDS)
    for name, value in NEW_FIELDS.items():
        assert created[name] == value, name
    assert created["customer_parent_id"] == "parent-1"
    assert ok(await api.http.get("/customers/c1")) == created

    controller = CONTROLLER | {
        "name_first": "Ada", "ssn": "987654321", "passport": None, "address_country_code": "GB",
        "address_state": "Greater London", "address_zip": "SW1A 1AA", "phone_number": "+442071838750",
    }  # fmt: skip
    changes: dict[str, Any] = {
        "customer_type": "person",
        "verification_status": "pending",
        "title": "Prof.",
        "passport": {"number": "Y7654321", "country": "FR"},
        "customer_parent_id": "parent-2",
        "business_details": BUSINESS
        | {"business_type": "corporation", "website": "www.acme.example", "controller": controller},
    }
    updated = ok(await api.http.put("/customers/c1", json=changes))
    for name, value in changes.items():
        assert updated[name] == value, name
    assert ok(await api.http.get("/customers/c1")) == updated


@UPDATE_METHODS
async def test_null_clears_each_optional_new_field(api: ApiClient, method: str) -> None:
    await create(api, customer_id="parent")
    await create(api, customer_id="c1", customer_parent_id="parent", **NEW_FIELDS)
    cleared = {"title": None, "passport": None, "customer_parent_id": None}
    updated = ok(await api.http.request(method, "/customers/c1", json=cleared))
    for name in cleared:
        assert updated[name] is None, name
    assert updated["customer_type"] == "business" and updated["verification_status"] == "verified"

    # Inside business_details (sent whole): each optional field cleared, the controller too.
    business = {name: BUSINESS[name] for name in ("doing_business_as", "business_ein")} | {
        "business_type": None, "business_classification_id": None, "website": None, "controller": None,
    }  # fmt: skip
    updated = ok(await api.http.request(method, "/customers/c1", json={"business_details": business}))
    assert updated["business_details"] == business | {"business_legal_name": None}
    assert ok(await api.http.get("/customers/c1")) == updated


async def test_an_update_without_the_new_fields_leaves_them_as_they_are(api: ApiClient) -> None:
    await create(api, customer_id="parent")
    created = await create(api, customer_id="c1", customer_parent_id="parent", **NEW_FIELDS)
    updated = ok(await api.http.patch("/customers/c1", json={"name_first": "Ann"}))
    for name in (*NEW_FIELDS, "customer_parent_id"):
        assert updated[name] == created[name], name


async def test_defaults_person_unverified_and_nulls(api: ApiClient) -> None:
    created = await create(api)
    assert created["customer_type"] == "person" and created["verification_status"] == "unverified"
    assert (created["title"], created["passport"], created["customer_parent_id"]) == (None, None, None)


async def test_customer_type_defaults_to_business_with_business_details_on_create_only(api: ApiClient) -> None:
    business = {"doing_business_as": "U", "business_ein": "123456789"}
    assert (await create(api, customer_id="b", business_details=business))["customer_type"] == "business"
    assert (await create(api, customer_id="p", business_details=None))["customer_type"] == "person"
    explicit = await create(api, customer_id="sole", customer_type="person", business_details=business)
    assert explicit["customer_type"] == "person"  # a sole proprietor, as Canopy's own client example sends
    # An update does not infer: the type stays what it was.
    updated = ok(await api.http.put("/customers/p", json={"business_details": business}))
    assert updated["customer_type"] == "person"


@pytest.mark.parametrize("status", VERIFICATION_STATUSES)
async def test_every_verification_status_is_taken_and_kept(api: ApiClient, status: str) -> None:
    assert (await create(api, customer_id="c1", verification_status=status))["verification_status"] == status
    assert ok(await api.http.get("/customers/c1"))["verification_status"] == status


async def test_business_details_without_its_new_fields_answers_them_as_null(api: ApiClient) -> None:
    created = await create(api, business_details={"doing_business_as": "U", "business_ein": "123456789"})
    assert created["business_details"] == {
        "doing_business_as": "U", "business_ein": "123456789", "business_legal_name": None,
        "business_type": None, "business_classification_id": None, "website": None, "controller": None,
    }  # fmt: skip


async def test_a_minimal_controller_answers_its_optional_fields_as_null(api: ApiClient) -> None:
    required = {
        "name_first": "Grace", "name_last": "Hopper", "address_line_one": "1 Navy Way", "address_city": "Arlington",
        "address_state": "VA", "address_zip": "22202",
    }  # fmt: skip
    business = {"doing_business_as": "U", "business_ein": "123456789", "controller": required}
    controller = (await create(api, business_details=business))["business_details"]["controller"]
    assert controller == dict.fromkeys(CONTROLLER) | required


# --- answered wherever a customer is -------------------------------------------------------------


async def test_the_new_fields_are_answered_in_lists_and_on_accounts(api: ApiClient) -> None:
    await create(api, customer_id="parent")
    created = await create(api, customer_id="c1", customer_parent_id="parent", **NEW_FIELDS)
    product = {"product_id": "p1", "product_overview": {"product_name": "Card", "product_type": "REVOLVING"}}
    ok(await api.http.post("/products", json=product))
    ok(
        await api.http.post(
            "/accounts", json={"account_id": "a1", "product_id": "p1", "assign_customers": [{"customer_id": "c1"}]}
        )
    )
    expected = {name: created[name] for name in (*NEW_FIELDS, "customer_parent_id")}

    def carried(customer: dict[str, Any]) -> dict[str, Any]:
        return {name: customer[name] for name in expected}

    listed = ok(await api.http.get("/customers"))["results"]
    assert [carried(c) for c in listed if c["customer_id"] == "c1"] == [expected]
    on_account = ok(await api.http.get("/accounts/a1"))["customers"]
    assert [carried(c) for c in on_account] == [expected]
    accounts = ok(await api.http.get("/accounts"))["results"]
    assert [carried(c) for c in accounts[0]["customers"]] == [expected]
    of_customer = ok(await api.http.get("/customers/c1/accounts"))["results"]
    assert [carried(c) for c in of_customer[0]["customers"]] == [expected]
    rows = ok(await api.http.get("/customers/accounts"))["results"]
    assert [carried(row) for row in rows] == [expected]


# --- customer_parent_id --------------------------------------------------------------------------


async def test_an_integer_parent_id_is_its_decimal_string(api: ApiClient) -> None:
    await create(api, customer_id="2300")
    assert (await create(api, customer_id="c1", customer_parent_id=2300))["customer_parent_id"] == "2300"
    await create(api, customer_id="7")
    assert ok(await api.http.patch("/customers/c1", json={"customer_parent_id": 7}))["customer_parent_id"] == "7"


async def test_an_unknown_parent_is_404_and_writes_nothing(api: ApiClient, pool: asyncpg.Pool) -> None:
    error = assert_error(
        await api.http.post("/customers", json=minimal_customer(customer_parent_id="ghost")), 404, "not_found"
    )
    assert error["message"] == "No customer found with the provided customer_parent_id: ghost"
    assert await count(pool) == 0
    await create(api, customer_id="c1")
    error = assert_error(
        await api.http.put("/customers/c1", json={"customer_parent_id": "ghost", "title": "Dr."}), 404, "not_found"
    )
    assert error["message"] == "No customer found with the provided customer_parent_id: ghost"
    assert ok(await api.http.get("/customers/c1"))["title"] is None  # the failed update changed nothing


async def test_another_organizations_customer_is_as_unknown_as_a_missing_one(
    api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool
) -> None:
    """Naming it answers exactly what naming an id nobody has does: no existence is learnt."""
    ok(await other_api.http.post("/customers", json=minimal_customer(customer_id="theirs")))
    theirs = await api.http.post("/customers", json=minimal_customer(customer_id="c2", customer_parent_id="theirs"))
    nobodys = await api.http.post("/customers", json=minimal_customer(customer_id="c2", customer_parent_id="nobodys"))
    assert theirs.status_code == nobodys.status_code == 404
    assert theirs.json() == {
        "error": nobodys.json()["error"] | {"message": nobodys.json()["error"]["message"].replace("nobodys", "theirs")}
    }
    await create(api, customer_id="mine")
    on_update = await api.http.patch("/customers/mine", json={"customer_parent_id": "theirs"})
    assert_error(on_update, 404, "not_found")
    assert await pool.fetchval("SELECT count(*) FROM customers WHERE org_id = $1", api.org_id) == 1
    # And the other organization sees none of this customer's fields: it is not its customer.
    assert_error(await other_api.http.get("/customers/mine"), 404, "not_found")
    assert_error(await other_api.http.patch("/customers/mine", json={"title": "Dr."}), 404, "not_found")


async def test_a_customer_is_not_its_own_parent(api: ApiClient, pool: asyncpg.Pool) -> None:
    expected = [
        {
            "instancePath": "/customer_parent_id",
            "keyword": "format",
            "params": {"format": "another_customer"},
            "message": "must name another customer of the organization, not the customer itself",
        }
    ]
    body = minimal_customer(customer_id="c1", customer_parent_id="c1")
    assert assert_invalid(await api.http.post("/customers", json=body)) == expected
    assert await count(pool) == 0
    await create(api, customer_id="2300")
    for value in ("2300", 2300):
        assert assert_invalid(await api.http.put("/customers/2300", json={"customer_parent_id": value})) == expected
    assert ok(await api.http.get("/customers/2300"))["customer_parent_id"] is None


@UPDATE_METHODS
async def test_a_loop_of_parents_is_refused_at_any_depth(api: ApiClient, pool: asyncpg.Pool, method: str) -> None:
    """a <- b <- c <- d: making a (or b) the child of d, or of any of its descendants, is a loop."""
    await create(api, customer_id="a")
    for child, parent in (("b", "a"), ("c", "b"), ("d", "c")):
        await create(api, customer_id=child, customer_parent_id=parent)
    for customer_id, parent_id in (("a", "b"), ("a", "d"), ("b", "d"), ("c", "d")):
        details = assert_invalid(
            await api.http.request(method, f"/customers/{customer_id}", json={"customer_parent_id": parent_id})
        )
        assert [(d["instancePath"], d["keyword"]) for d in details] == [("/customer_parent_id", "format")]
    chain = await pool.fetch("SELECT customer_id, customer_parent_id FROM customers ORDER BY customer_id")
    assert [tuple(row) for row in chain] == [("a", None), ("b", "a"), ("c", "b"), ("d", "c")]  # nothing written
    # Moving a branch elsewhere is no loop: d under a, then a under a new root.
    assert (
        ok(await api.http.request(method, "/customers/d", json={"customer_parent_id": "a"}))["customer_parent_id"]
        == "a"
    )
    await create(api, customer_id="root")
    assert ok(await api.http.request(method, "/customers/a", json={"customer_parent_id": "root"}))


async def test_two_racing_updates_cannot_make_a_loop_together(api: ApiClient, pool: asyncpg.Pool) -> None:
    """x under y and y under x, at once: each alone is fine, both would be a loop; one is refused."""
    await create(api, customer_id="x")
    await create(api, customer_id="y")
    for _ in range(5):
        await pool.execute("UPDATE customers SET customer_parent_id = NULL")
        first, second = await asyncio.gather(
            api.http.patch("/customers/x", json={"customer_parent_id": "y"}),
            api.http.patch("/customers/y", json={"customer_parent_id": "x"}),
        )
        assert sorted([first.status_code, second.status_code]) == [200, 422], (first.text, second.text)
        parents = await pool.fetchval("SELECT count(*) FROM customers WHERE customer_parent_id IS NOT NULL")
        assert parents == 1


async def test_the_self_reference_is_listed_with_the_other_problems(api: ApiClient) -> None:
    body = minimal_customer(customer_id="c1", customer_parent_id="c1", title=5)
    details = assert_invalid(await api.http.post("/customers", json=body))
    assert [(d["instancePath"], d["keyword"]) for d in details] == [
        ("/title", "type"),
        ("/customer_parent_id", "format"),
    ]


# --- bad values: every field, every class --------------------------------------------------------

WRONG_TYPES: list[Any] = [5, 1.5, True, [], {}]
TEXT_PROBLEMS: list[tuple[Any, str]] = [*((v, "type") for v in WRONG_TYPES), ("a\u0000b", "pattern")]


def _cases() -> list[tuple[str, dict[str, Any], str, str]]:
    """(id, body overrides, instancePath, keyword) for every bad value class of every new field."""
    cases: list[tuple[str, dict[str, Any], str, str]] = []

    def add(path: str, overrides: dict[str, Any], keyword: str) -> None:
        cases.append((f"{path}={list(overrides.values())!r:.40}", overrides, path, keyword))

    for name in ("customer_type", "verification_status"):
        for value in [*WRONG_TYPES, None]:
            add(f"/{name}", {name: value}, "type")
        for value in ("", "PERSON", "Business", "verified\u0000", "unknown", "company"):
            add(f"/{name}", {name: value}, "enum")
    for value, keyword in [*TEXT_PROBLEMS, ("x" * 256, "maxLength")]:
        add("/title", {"title": value}, keyword)
    for value in (*WRONG_TYPES[:4], "X1"):
        add("/passport", {"passport": value}, "type")
    for missing in ("number", "country"):
        passport = {"number": "X1", "country": "GB"}
        del passport[missing]
        add("/passport", {"passport": passport}, "required")
    for value, keyword in [*TEXT_PROBLEMS, ("", "minLength"), ("x" * 65, "maxLength"), ("   ", "pattern"),
                           ("X1\n", "pattern"), ("X\t1", "pattern"), ("Ünï", "pattern")]:  # fmt: skip
        add("/passport/number", {"passport": {"number": value, "country": "GB"}}, keyword)
    for value, keyword in [
        ("gb", "enum"),
        ("GBR", "enum"),
        ("XX", "enum"),
        ("", "enum"),
        (826, "type"),
        (None, "type"),
    ]:
        add("/passport/country", {"passport": {"number": "X1", "country": value}}, keyword)
    for value, keyword in [(v, "type") for v in (1.5, True, [], {})] + [
        ("", "minLength"), ("x" * 256, "maxLength"), ("a\nb", "pattern"), ("a\u0000", "pattern"), (-1, "minimum"),
    ]:  # fmt: skip
        add("/customer_parent_id", {"customer_parent_id": value}, keyword)
    base = {"doing_business_as": "U", "business_ein": "123456789"}
    for value, keyword in [*TEXT_PROBLEMS, ("", "minLength"), ("  ", "pattern"), ("x" * 256, "maxLength")]:
        add("/business_details/business_type", {"business_details": base | {"business_type": value}}, keyword)
    for value, keyword in [*TEXT_PROBLEMS, ("", "minLength"), ("x" * 256, "maxLength"), ("a\nb", "pattern")]:
        add(
            "/business_details/business_classification_id",
            {"business_details": base | {"business_classification_id": value}},
            keyword,
        )
    for value, keyword in [*TEXT_PROBLEMS, ("", "minLength"), ("https://a.example/" + "x" * 2048, "maxLength"),
                           ("https://a b.example", "pattern"), ("www.é.example", "pattern")]:  # fmt: skip
        add("/business_details/website", {"business_details": base | {"website": value}}, keyword)
    for value in (*WRONG_TYPES[:4], "Grace"):
        add("/business_details/controller", {"business_details": base | {"controller": value}}, "type")
    return cases


@pytest.mark.parametrize(("overrides", "path", "keyword"), [c[1:] for c in _cases()], ids=[c[0] for c in _cases()])
async def test_a_bad_value_is_a_422_naming_it_on_create_and_update(
    api: ApiClient, pool: asyncpg.Pool, overrides: dict[str, Any], path: str, keyword: str
) -> None:
    details = assert_invalid(await api.http.post("/customers", json=minimal_customer(**overrides)))
    assert [(d["instancePath"], d["keyword"]) for d in details] == [(path, keyword)], details
    assert await count(pool) == 0
    created = await create(api, customer_id="c1")
    details = assert_invalid(await api.http.patch("/customers/c1", json=overrides))
    assert [(d["instancePath"], d["keyword"]) for d in details] == [(path, keyword)], details
    assert ok(await api.http.get("/customers/c1")) == created


@pytest.mark.parametrize(("name", "value"), [("customer_type", None), ("verification_status", None)])
async def test_the_always_answered_fields_cannot_be_cleared(api: ApiClient, name: str, value: Any) -> None:
    await create(api, customer_id="c1")
    details = assert_invalid(await api.http.put("/customers/c1", json={name: value}))
    assert [d["instancePath"] for d in details] == [f"/{name}"]


# --- the controller -------------------------------------------------------------------------------

CONTROLLER_REQUIRED = ("name_first", "name_last", "address_line_one", "address_city", "address_state", "address_zip")


def with_controller(**changes: Any) -> dict[str, Any]:
    controller = {k: v for k, v in (CONTROLLER | changes).items() if v is not ...}
    return {"business_details": BUSINESS | {"controller": controller}}


@pytest.mark.parametrize("name", CONTROLLER_REQUIRED)
async def test_each_required_controller_field_is_required(api: ApiClient, name: str) -> None:
    details = assert_invalid(await api.http.post("/customers", json=minimal_customer(**with_controller(**{name: ...}))))
    assert details == [
        {
            "instancePath": "/business_details/controller",
            "keyword": "required",
            "params": {"missingProperty": name},
            "message": f"must have required property {name}",
        }
    ]


CONTROLLER_TEXT = ("name_prefix", "name_middle", "name_suffix", "title", "address_line_two", *CONTROLLER_REQUIRED)


@pytest.mark.parametrize("name", CONTROLLER_TEXT)
async def test_each_controller_text_field_refuses_every_bad_class(api: ApiClient, name: str) -> None:
    for value, keyword in [*TEXT_PROBLEMS, ("x" * 256, "maxLength")]:
        details = assert_invalid(
            await api.http.post("/customers", json=minimal_customer(**with_controller(**{name: value})))
        )
        assert [(d["instancePath"], d["keyword"]) for d in details if d["instancePath"].endswith(name)] == [
            (f"/business_details/controller/{name}", keyword)
        ], (value, details)


@pytest.mark.parametrize(
    ("changes", "path", "keyword"),
    [
        ({"address_zip": "2220"}, "address_zip", "pattern"),
        ({"address_state": "Virginia"}, "address_state", "enum"),
        ({"address_country_code": "PR", "address_state": "XX"}, "address_state", "enum"),
        (
            {"address_country_code": "GB", "address_zip": "SW1A#1AA", "address_state": "London"},
            "address_zip",
            "pattern",
        ),
        ({"address_country_code": "gb"}, "address_country_code", "enum"),
        ({"ssn": "000-12-3456"}, "ssn", "format"),
        ({"ssn": "12345678"}, "ssn", "pattern"),
        ({"phone_number": "4105556789"}, "phone_number", "format"),
        ({"phone_number": "+1555555555"}, "phone_number", "format"),
        ({"passport": {"number": "", "country": "US"}}, "passport/number", "minLength"),
        ({"passport": {"number": "X1", "country": "USA"}}, "passport/country", "enum"),
    ],
)
@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_the_controllers_own_rules_on_create_and_update(
    api: ApiClient, method: str, changes: dict[str, Any], path: str, keyword: str
) -> None:
    """Its country decides its zip and state as the customer's does (it is sent whole, so on an update
    too); its phone, SSN and passport follow the customer's rules."""
    body = with_controller(**changes)
    if method == "POST":
        response = await api.http.post("/customers", json=minimal_customer(**body))
    else:
        await create(api, customer_id="c1")
        response = await api.http.put("/customers/c1", json=body)
    details = assert_invalid(response)
    assert [(d["instancePath"], d["keyword"]) for d in details] == [(f"/business_details/controller/{path}", keyword)]


async def test_controller_problems_are_listed_with_the_customers_own(api: ApiClient) -> None:
    body = minimal_customer(name_first="", address_zip="1", **with_controller(address_zip="2", ssn="000000000"))
    details = assert_invalid(await api.http.post("/customers", json=body))
    assert [(d["instancePath"], d["keyword"]) for d in details] == [
        ("/name_first", "minLength"),
        ("/address_zip", "pattern"),
        ("/business_details/controller/address_zip", "pattern"),
        ("/business_details/controller/ssn", "format"),
    ]


@pytest.mark.parametrize(
    "changes",
    [
        {"address_country_code": "GB", "address_state": "Greater London", "address_zip": "SW1A 1AA"},
        {"address_country_code": "PR", "address_state": "PR", "address_zip": "00901"},
        {"phone_number": None, "ssn": None, "passport": None, "address_country_code": None},
        {"ssn": "123456789", "passport": {"number": "AB 123-456", "country": "DE"}},
    ],
)
async def test_the_controller_takes_good_values(api: ApiClient, changes: dict[str, Any]) -> None:
    created = await create(api, **with_controller(**changes))
    assert created["business_details"]["controller"] == CONTROLLER | changes


# --- good values of the rest ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"title": ""},
        {"title": "x" * 255},
        {"passport": {"number": "x" * 64, "country": "AN"}},
        {"passport": {"number": "1", "country": "ZW"}},
        {"passport": {"number": " A B ", "country": "US"}},
        {
            "business_details": {
                "doing_business_as": "U",
                "business_ein": "123456789",
                "website": "https://" + "a" * 2040,
            }
        },
        {
            "business_details": {
                "doing_business_as": "U",
                "business_ein": "123456789",
                "business_classification_id": "é 1",
            }
        },
    ],
)
async def test_good_values_are_kept_as_sent(api: ApiClient, overrides: dict[str, Any]) -> None:
    created = await create(api, customer_id="c1", **copy.deepcopy(overrides))
    got = ok(await api.http.get("/customers/c1"))
    for name, value in overrides.items():
        if name == "business_details":
            value = {k: None for k in created[name]} | value
        assert created[name] == got[name] == value, name
