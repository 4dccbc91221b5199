"""Issue 11, item 3: a customer's beneficial owners. POST, the paged list and GET one; the person's field
rules (those of a customer, CONTRACT section 4), the caller's id or a generated one, 409 for a taken id,
the organization's isolation, paging like every listing, and Idempotency-Key."""

from __future__ import annotations

import base64
import datetime
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import msgspec
import pytest

from canopy_svc.api import examples
from canopy_svc.rules.beneficial_owners import CREATE_DECODER, parse_create
from canopy_svc.wire.errors import InvalidInput
from canopy_svc.wire.models import BeneficialOwnerCreate
from tests.helpers import ApiClient, assert_error, assert_invalid, minimal_customer

OWNER_FIELDS = {
    "beneficial_owner_id", "customer_id", "name_prefix", "name_first", "name_middle", "name_last", "name_suffix",
    "phone_number", "address_line_one", "address_line_two", "address_city", "address_state", "address_zip",
    "address_country_code", "ssn", "email", "date_of_birth", "verification_status", "created_at", "updated_at",
}  # fmt: skip
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
BASE62_24 = re.compile(r"^[0-9A-Za-z]{24}$")
REQUIRED = [
    "name_first", "name_last", "phone_number", "address_line_one", "address_city", "address_state", "address_zip",
    "email", "date_of_birth",
]  # fmt: skip
REQUIRED_TEXT = ["name_first", "name_last", "address_line_one", "address_city", "address_state", "address_zip"]
OPTIONAL_TEXT = ["name_prefix", "name_middle", "name_suffix", "address_line_two"]


def owner(**overrides: Any) -> dict[str, Any]:
    """A valid owner body; `...` removes a field."""
    body: dict[str, Any] = {
        "name_first": "Grace",
        "name_last": "Hopper",
        "phone_number": "+14155550199",
        "address_line_one": "9 Elm St",
        "address_city": "Arlington",
        "address_state": "VA",
        "address_zip": "22201",
        "email": "grace@example.com",
        "date_of_birth": "1956-12-09",
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not ...}


def owners_path(customer_id: str) -> str:
    return f"/customers/{quote(customer_id, safe='')}/beneficial_owners"


def owner_path(customer_id: str, beneficial_owner_id: str) -> str:
    return f"{owners_path(customer_id)}/{quote(beneficial_owner_id, safe='')}"


async def business(api: ApiClient, customer_id: str = "biz-1") -> str:
    created = await api.http.post(
        "/customers",
        json=minimal_customer(
            customer_id=customer_id,
            email=f"{customer_id.replace('/', '-')}@example.com",
            business_details={"doing_business_as": "Acme", "business_ein": "12-3456789"},
        ),
    )
    assert created.status_code == 200, created.text
    return customer_id


async def add(api: ApiClient, customer_id: str, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    answer = await api.http.post(owners_path(customer_id), json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    created: dict[str, Any] = answer.json()
    return created


async def rows(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    return [dict(r) for r in await pool.fetch("SELECT * FROM beneficial_owners ORDER BY id")]


# --- the field rules (no HTTP) --------------------------------------------------------------------


def problems(body: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        parse_create(json.dumps(body).encode())
    except InvalidInput as exc:
        return [msgspec.to_builtins(d) for d in exc.details]
    return []


def refused(body: dict[str, Any], path: str, keyword: str) -> dict[str, Any]:
    found = problems(body)
    at_path = [d for d in found if d["instancePath"] == path]
    assert at_path, (path, found)
    assert at_path[0]["keyword"] == keyword, at_path
    return at_path[0]


def test_the_example_and_a_minimal_owner_are_valid() -> None:
    payload = parse_create(json.dumps(examples.BENEFICIAL_OWNER).encode())
    assert payload.beneficial_owner_id == "bo-1" and payload.ssn == "777-77-7777"
    minimal = parse_create(json.dumps(owner()).encode())
    assert minimal.beneficial_owner_id is None and minimal.ssn is None and minimal.address_country_code is None
    assert minimal.date_of_birth == datetime.date(1956, 12, 9)


def test_unknown_fields_are_ignored() -> None:
    # Canopy's client types an owner as a customer: a customer's other fields may come along.
    payload = parse_create(json.dumps(owner(customer_type="person", business_details={"x": 1})).encode())
    assert not hasattr(payload, "customer_type")


@pytest.mark.parametrize("name", REQUIRED)
def test_every_required_field_is_required_with_canopys_message(name: str) -> None:
    assert {
        "instancePath": "",
        "keyword": "required",
        "params": {"missingProperty": name},
        "message": f"must have required property {name}",
    } in problems(owner(**{name: ...}))
    refused(owner(**{name: None}), f"/{name}", "type")
    refused(owner(**{name: 7}), f"/{name}", "type")
    refused(owner(**{name: ["x"]}), f"/{name}", "type")


def test_an_empty_body_lists_every_required_field() -> None:
    missing = {d["params"]["missingProperty"] for d in problems({}) if d["keyword"] == "required"}
    assert missing == set(REQUIRED)
    required = {f.encode_name for f in msgspec.structs.fields(BeneficialOwnerCreate) if f.required}
    assert required == set(REQUIRED)


@pytest.mark.parametrize("name", REQUIRED_TEXT)
def test_required_text_fields(name: str) -> None:
    refused(owner(**{name: ""}), f"/{name}", "minLength")
    refused(owner(**{name: "   "}), f"/{name}", "pattern")
    refused(owner(**{name: "\t\n"}), f"/{name}", "pattern")
    refused(owner(**{name: "x" * 256}), f"/{name}", "maxLength")
    refused(owner(**{name: "Ab\u0000c"}), f"/{name}", "pattern")
    if name not in ("address_state", "address_zip"):  # those follow the country's rules too
        assert problems(owner(**{name: " O'Brien-Smith "})) == []
        assert problems(owner(**{name: "x" * 255})) == []


@pytest.mark.parametrize("name", OPTIONAL_TEXT)
def test_optional_text_fields(name: str) -> None:
    assert problems(owner(**{name: "x" * 255})) == []
    assert problems(owner(**{name: None})) == []
    assert problems(owner(**{name: ""})) == []
    refused(owner(**{name: "x" * 256}), f"/{name}", "maxLength")
    refused(owner(**{name: ["x"]}), f"/{name}", "type")
    refused(owner(**{name: 1}), f"/{name}", "type")
    refused(owner(**{name: "a\u0000"}), f"/{name}", "pattern")


@pytest.mark.parametrize(("value", "stored"), [("bo-1", "bo-1"), ("x" * 255, "x" * 255), ("CAN_x", "CAN_x"),
                                               ("a/b%c", "a/b%c"), (2300, "2300"), (0, "0")])  # fmt: skip
def test_beneficial_owner_id_good(value: Any, stored: str) -> None:
    assert parse_create(json.dumps(owner(beneficial_owner_id=value)).encode()).beneficial_owner_id == stored


@pytest.mark.parametrize(
    ("value", "keyword"),
    [
        ("", "minLength"),
        ("x" * 256, "maxLength"),
        ("can_1", "pattern"),
        ("can_", "pattern"),
        ("a\x00b", "pattern"),
        ("a\tb", "pattern"),
        ("a\x7f", "pattern"),
        ("abc\n", "pattern"),
        (True, "type"),
        (1.5, "type"),
        (["bo"], "type"),
        ({"id": 1}, "type"),
        (-1, "minimum"),
        (2**63, "format"),
    ],
)
def test_beneficial_owner_id_bad(value: Any, keyword: str) -> None:
    detail = refused(owner(beneficial_owner_id=value), "/beneficial_owner_id", keyword)
    if keyword == "pattern":
        assert "(?!\\n)" not in detail["params"]["pattern"]  # the pattern as the contract writes it


def test_beneficial_owner_id_null_means_generated() -> None:
    assert parse_create(json.dumps(owner(beneficial_owner_id=None)).encode()).beneficial_owner_id is None


@pytest.mark.parametrize("phone", ["+14155550199", "+15555555555", "+442079460958"])
def test_phone_good(phone: str) -> None:
    assert problems(owner(phone_number=phone)) == []


@pytest.mark.parametrize("phone", ["4105556789", "+1 410 555 6789", "+1555", "+999999999999", "", "+14105556789\n"])
def test_phone_bad(phone: str) -> None:
    detail = refused(owner(phone_number=phone), "/phone_number", "format")
    if phone in ("4105556789", "+1 410 555 6789"):
        assert "+14105556789" in detail["message"]  # the E.164 form suggested


@pytest.mark.parametrize("email", ["plain", "a@b", "a@example.test", "@example.com", "a@@example.com"])
def test_email_bad(email: str) -> None:
    refused(owner(email=email), "/email", "format")


def test_email_too_long() -> None:
    refused(owner(email="a" * 250 + "@x.com"), "/email", "maxLength")


@pytest.mark.parametrize("value", ["1899-12-31", "2999-01-01", "1990-02-30", "1990-1-1", "01/02/1990", "nope"])
def test_date_of_birth_bad(value: str) -> None:
    refused(owner(date_of_birth=value), "/date_of_birth", "format")


def test_date_of_birth_today_is_good_and_tomorrow_is_not() -> None:
    today = datetime.datetime.now(datetime.UTC).date()
    assert problems(owner(date_of_birth=today.isoformat())) == []
    refused(owner(date_of_birth=(today + datetime.timedelta(days=2)).isoformat()), "/date_of_birth", "format")


def test_zip_and_state_follow_the_country() -> None:
    refused(owner(address_zip="SW1A 1AA"), "/address_zip", "pattern")
    refused(owner(address_state="Virginia"), "/address_state", "enum")
    refused(owner(address_state="Virginia", address_country_code="PR"), "/address_state", "enum")
    assert problems(owner(address_zip="SW1A 1AA", address_state="Greater London", address_country_code="GB")) == []
    refused(owner(address_zip="SW1A_1AA", address_country_code="GB"), "/address_zip", "pattern")


@pytest.mark.parametrize(("code", "keyword"), [("us", "enum"), ("USA", "enum"), ("XX", "enum"), (840, "type")])
def test_country_code_bad(code: Any, keyword: str) -> None:
    refused(owner(address_country_code=code), "/address_country_code", keyword)


@pytest.mark.parametrize("ssn", ["123456789", "123-45-6789", "001-01-0001"])
def test_ssn_good(ssn: str) -> None:
    assert parse_create(json.dumps(owner(ssn=ssn)).encode()).ssn == ssn


@pytest.mark.parametrize(
    ("ssn", "keyword"),
    [
        ("12345678", "pattern"),
        ("123 45 6789", "pattern"),
        ("12-345-6789", "pattern"),
        ("123456789\n", "pattern"),
        ("000-12-3456", "format"),
        ("123-00-4567", "format"),
        ("123-45-0000", "format"),
        (123456789, "type"),
    ],
)
def test_ssn_bad(ssn: Any, keyword: str) -> None:
    refused(owner(ssn=ssn), "/ssn", keyword)


def test_every_problem_is_listed_shape_and_meaning_together() -> None:
    found = problems(
        owner(
            name_first=...,
            beneficial_owner_id="can_x",
            phone_number="4105556789",
            email="nope",
            ssn="000-00-0000",
            address_zip="x",
        )
    )
    assert {(d["instancePath"], d["keyword"]) for d in found} == {
        ("", "required"),
        ("/beneficial_owner_id", "pattern"),
        ("/phone_number", "format"),
        ("/email", "format"),
        ("/ssn", "format"),
        ("/address_zip", "pattern"),
    }


def test_the_decoder_is_the_one_the_route_uses() -> None:
    assert CREATE_DECODER.model is BeneficialOwnerCreate


# --- create and read over HTTP --------------------------------------------------------------------


async def test_create_answers_every_field_unverified_and_get_answers_the_same(api: ApiClient) -> None:
    customer_id = await business(api)
    created = await add(api, customer_id, examples.BENEFICIAL_OWNER)
    assert set(created) == OWNER_FIELDS
    for name, value in examples.BENEFICIAL_OWNER.items():
        assert created[name] == value, name
    assert created["customer_id"] == customer_id
    assert created["verification_status"] == "unverified"
    assert TIMESTAMP.match(created["created_at"]) and TIMESTAMP.match(created["updated_at"])
    for name in ("name_prefix", "name_middle", "name_suffix", "address_line_two"):
        assert created[name] is None, name
    fetched = await api.http.get(owner_path(customer_id, "bo-1"))
    assert fetched.status_code == 200 and fetched.json() == created


async def test_a_generated_id_is_like_a_customer_id(api: ApiClient) -> None:
    customer_id = await business(api)
    first = await add(api, customer_id, owner())
    second = await add(api, customer_id, owner(beneficial_owner_id=None))
    assert BASE62_24.match(first["beneficial_owner_id"]) and BASE62_24.match(second["beneficial_owner_id"])
    assert first["beneficial_owner_id"] != second["beneficial_owner_id"]
    assert first["ssn"] is None and first["address_country_code"] is None


async def test_an_integer_id_is_its_decimal_string(api: ApiClient) -> None:
    customer_id = await business(api)
    created = await add(api, customer_id, owner(beneficial_owner_id=2300))
    assert created["beneficial_owner_id"] == "2300"
    assert (await api.http.get(owner_path(customer_id, "2300"))).json() == created
    assert_error(await api.http.post(owners_path(customer_id), json=owner(beneficial_owner_id="2300")), 409, "conflict")


async def test_ids_with_separators_round_trip(api: ApiClient) -> None:
    customer_id = await business(api, "biz/1%")
    created = await add(api, customer_id, owner(beneficial_owner_id="bo/2%"))
    assert created["customer_id"] == "biz/1%" and created["beneficial_owner_id"] == "bo/2%"
    assert (await api.http.get(owner_path(customer_id, "bo/2%"))).json() == created


async def test_a_taken_id_is_409_for_that_customer_only(
    api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool
) -> None:
    first, second = await business(api, "biz-1"), await business(api, "biz-2")
    await add(api, first, owner(beneficial_owner_id="bo-1"))
    before = await rows(pool)
    error = assert_error(
        await api.http.post(owners_path(first), json=owner(beneficial_owner_id="bo-1")), 409, "conflict"
    )
    assert "bo-1" in error["message"]
    assert await rows(pool) == before
    # Another customer, or another organization's customer of the same id, may use the id.
    await add(api, second, owner(beneficial_owner_id="bo-1"))
    await add(other_api, await business(other_api, "biz-1"), owner(beneficial_owner_id="bo-1"))


async def test_unknown_customer_is_404_on_every_route(api: ApiClient, pool: asyncpg.Pool) -> None:
    for answer in (
        await api.http.post(owners_path("nobody"), json=owner()),
        await api.http.get(owners_path("nobody")),
        await api.http.get(owner_path("nobody", "bo-1")),
    ):
        error = assert_error(answer, 404, "not_found")
        assert error["message"] == "No customer found with the provided customer_id: nobody"
    assert await rows(pool) == []


async def test_unknown_owner_of_a_known_customer_is_404(api: ApiClient) -> None:
    customer_id = await business(api)
    await add(api, customer_id, owner(beneficial_owner_id="bo-1"))
    other = await business(api, "biz-2")
    for path in (owner_path(customer_id, "bo-2"), owner_path(other, "bo-1")):  # nor another customer's owner
        error = assert_error(await api.http.get(path), 404, "not_found")
        assert error["message"] == f"No beneficial owner found with the provided beneficial_owner_id: {path[-4:]}"


async def test_an_invalid_body_is_422_and_writes_nothing(api: ApiClient, pool: asyncpg.Pool) -> None:
    customer_id = await business(api)
    details = assert_invalid(await api.http.post(owners_path(customer_id), json=owner(ssn="000-12-3456", email=7)))
    assert {(d["instancePath"], d["keyword"]) for d in details} == {("/ssn", "format"), ("/email", "type")}
    # An unknown customer with a bad body: the body is judged first, before any connection is taken.
    assert_invalid(await api.http.post(owners_path("nobody"), json={}))
    assert await rows(pool) == []


async def test_owners_go_with_their_customer(api: ApiClient, pool: asyncpg.Pool) -> None:
    customer_id = await business(api)
    await add(api, customer_id, owner())
    await pool.execute("DELETE FROM customers WHERE customer_id = $1", customer_id)
    assert await rows(pool) == []


# --- isolation ------------------------------------------------------------------------------------


async def test_another_organization_sees_and_changes_nothing(
    api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool
) -> None:
    customer_id = await business(api)
    await add(api, customer_id, owner(beneficial_owner_id="bo-1"))
    before = await rows(pool)
    for answer in (
        await other_api.http.post(owners_path(customer_id), json=owner(beneficial_owner_id="bo-2")),
        await other_api.http.get(owners_path(customer_id)),
        await other_api.http.get(owner_path(customer_id, "bo-1")),
    ):
        error = assert_error(answer, 404, "not_found")
        assert error["message"] == f"No customer found with the provided customer_id: {customer_id}"
    assert await rows(pool) == before
    # Its own customer of the same id has its own owners: none of ours.
    await business(other_api, customer_id)
    listed = (await other_api.http.get(owners_path(customer_id))).json()
    assert listed["results"] == []
    assert_error(await other_api.http.get(owner_path(customer_id, "bo-1")), 404, "not_found")


# --- the list -------------------------------------------------------------------------------------


async def listing(api: ApiClient, customer_id: str, **query: Any) -> dict[str, Any]:
    answer = await api.http.get(owners_path(customer_id), params=query)
    assert answer.status_code == 200, answer.text
    page: dict[str, Any] = answer.json()
    return page


@pytest.fixture
async def many(api: ApiClient) -> list[str]:
    """Seven owners of biz-1 with an owner of biz-2 between them, in creation order."""
    customer_id, other = await business(api, "biz-1"), await business(api, "biz-2")
    ids = []
    for n in range(7):
        ids.append((await add(api, customer_id, owner(beneficial_owner_id=f"bo-{n}")))["beneficial_owner_id"])
        if n == 3:
            await add(api, other, owner(beneficial_owner_id="theirs"))
    return ids


async def test_an_empty_list(api: ApiClient) -> None:
    page = await listing(api, await business(api))
    assert page == {"results": [], "paging": {"starting_after": None, "ending_before": None, "has_more": False}}


async def test_the_list_is_the_customers_oldest_first_with_the_default_limit(api: ApiClient, many: list[str]) -> None:
    page = await listing(api, "biz-1")
    assert [r["beneficial_owner_id"] for r in page["results"]] == many
    assert all(set(r) == OWNER_FIELDS and r["customer_id"] == "biz-1" for r in page["results"])
    assert page["paging"] == {"starting_after": None, "ending_before": None, "has_more": False}
    for n in range(7, 13):
        await add(api, "biz-1", owner(beneficial_owner_id=f"bo-{n}"))
    page = await listing(api, "biz-1")
    assert len(page["results"]) == 12 and page["paging"]["has_more"] is True  # the default limit, 12


async def test_paging_forwards_and_back(api: ApiClient, many: list[str]) -> None:
    first = await listing(api, "biz-1", limit=3)
    assert [r["beneficial_owner_id"] for r in first["results"]] == many[:3]
    assert first["paging"]["has_more"] is True and first["paging"]["ending_before"] is None
    second = await listing(api, "biz-1", limit=3, starting_after=first["paging"]["starting_after"])
    assert [r["beneficial_owner_id"] for r in second["results"]] == many[3:6]
    last = await listing(api, "biz-1", limit=3, starting_after=second["paging"]["starting_after"])
    assert [r["beneficial_owner_id"] for r in last["results"]] == many[6:]
    assert last["paging"]["starting_after"] is None and last["paging"]["has_more"] is False
    back = await listing(api, "biz-1", limit=3, ending_before=last["paging"]["ending_before"])
    assert back == second
    # Backwards, has_more says whether there is a page before this one: none before the first.
    front = await listing(api, "biz-1", limit=3, ending_before=second["paging"]["ending_before"])
    assert (
        front["results"] == first["results"] and front["paging"]["starting_after"] == first["paging"]["starting_after"]
    )
    assert front["paging"]["ending_before"] is None and front["paging"]["has_more"] is False


@pytest.mark.parametrize(("limit", "count"), [("0", 1), ("-5", 1), ("2", 2), ("5000", 7), ("abc", 7), ("", 7)])
async def test_limit_is_clamped_never_refused(api: ApiClient, many: list[str], limit: str, count: int) -> None:
    assert len((await listing(api, "biz-1", limit=limit))["results"]) == count


async def test_bad_cursors_are_400(api: ApiClient, other_api: ApiClient, many: list[str]) -> None:
    cursor = (await listing(api, "biz-1", limit=2))["paging"]["starting_after"]
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    forged = base64.urlsafe_b64encode(bytes([raw[0] ^ 1]) + raw[1:]).decode().rstrip("=")
    await add(api, "biz-2", owner(beneficial_owner_id="theirs-2"))
    from_biz_2 = (await listing(api, "biz-2", limit=1))["paging"]["starting_after"]
    from_customers = (await api.http.get("/customers", params={"limit": 1})).json()["paging"]["starting_after"]
    await business(other_api, "biz-1")
    for n in range(2):
        await add(other_api, "biz-1", owner(beneficial_owner_id=f"o-{n}"))
    from_other_org = (await listing(other_api, "biz-1", limit=1))["paging"]["starting_after"]
    assert from_biz_2 and from_customers and from_other_org
    for parameter in ("starting_after", "ending_before"):
        for bad in (forged, cursor[:-2], "not a cursor", from_biz_2, from_customers, from_other_org):
            answer = await api.http.get(owners_path("biz-1"), params={parameter: bad})
            assert_error(answer, 400, "bad_request")
    both = await api.http.get(owners_path("biz-1"), params={"starting_after": cursor, "ending_before": cursor})
    assert_error(both, 400, "bad_request")


# --- Idempotency-Key ------------------------------------------------------------------------------


async def test_a_keyed_create_is_replayed_and_made_once(api: ApiClient, pool: asyncpg.Pool) -> None:
    customer_id = await business(api)
    headers = {"Idempotency-Key": "bo-key-1"}
    first = await api.http.post(owners_path(customer_id), json=owner(), headers=headers)
    again = await api.http.post(owners_path(customer_id), json=owner(), headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true" and again.content == first.content
    assert "Idempotent-Replayed" not in first.headers
    assert len(await rows(pool)) == 1  # a generated id, yet one owner
    other = await api.http.post(owners_path(customer_id), json=owner(name_first="Other"), headers=headers)
    assert_error(other, 422, "idempotency_key_reused")
    # A refusal is an answer under its key too: replayed, and nothing written.
    refused_once = await api.http.post(owners_path(customer_id), json={}, headers={"Idempotency-Key": "bo-key-2"})
    refused_twice = await api.http.post(owners_path(customer_id), json={}, headers={"Idempotency-Key": "bo-key-2"})
    assert refused_once.status_code == refused_twice.status_code == 422
    assert refused_twice.headers["Idempotent-Replayed"] == "true" and refused_twice.content == refused_once.content
    assert len(await rows(pool)) == 1


def test_the_readme_sends_the_declared_example() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert f"-d '{json.dumps(examples.BENEFICIAL_OWNER, separators=(',', ':'))}'" in readme
