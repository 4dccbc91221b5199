"""POST/GET/PUT/PATCH /customers over HTTP (ASGI), against a real PostgreSQL."""

from __future__ import annotations

import datetime
import re
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest

from tests.helpers import SEED_ASSIGNMENT, ApiClient, assert_error, assert_invalid, minimal_customer, seed_customer

CUSTOMER_FIELDS = {
    "customer_id", "name_prefix", "name_first", "name_middle", "name_last", "name_suffix",
    "phone_number", "address_line_one", "address_line_two", "address_city", "address_state",
    "address_zip", "address_country_code", "ssn", "international_customer_id", "email",
    "date_of_birth", "business_details", "customer_type", "verification_status", "title", "passport",
    "customer_parent_id", "created_at", "updated_at",
}  # fmt: skip
# business_details' optional fields, answered as null when unset.
UNSET_BUSINESS = dict.fromkeys(
    ("business_legal_name", "business_type", "business_classification_id", "website", "controller")
)
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
BASE62_24 = re.compile(r"^[0-9A-Za-z]{24}$")


async def count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM customers"))


async def snapshot(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """Every customer row, whole, to prove a failed request changed nothing."""
    rows = await pool.fetch("SELECT * FROM customers ORDER BY id")
    return [dict(r) for r in rows]


async def create(api: ApiClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.http.post("/customers", json=body)
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


# --- create --------------------------------------------------------------------------------------


async def test_create_seed_customer_answers_every_field(api: ApiClient) -> None:
    body = seed_customer()
    created = await create(api, body)
    assert set(created) == CUSTOMER_FIELDS
    for name, value in body.items():
        expected = UNSET_BUSINESS | value if name == "business_details" else value
        assert created[name] == expected, name
    assert TIMESTAMP.match(created["created_at"]) and TIMESTAMP.match(created["updated_at"])
    assert created["date_of_birth"] == "1985-06-20"
    assert created["ssn"] == "888888888"
    assert "assign_to_accounts" not in created


async def test_create_minimal_answers_nulls_for_unset_optional_fields(api: ApiClient) -> None:
    created = await create(api, minimal_customer())
    assert set(created) == CUSTOMER_FIELDS
    for name in (
        "name_prefix",
        "name_middle",
        "name_suffix",
        "address_line_two",
        "address_country_code",
        "ssn",
        "international_customer_id",
        "business_details",
    ):
        assert created[name] is None, name
    assert created["name_first"] == "Ada" and created["date_of_birth"] == "1990-12-10"


async def test_created_at_is_utc_now(api: ApiClient) -> None:
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0) - datetime.timedelta(seconds=2)
    created = await create(api, minimal_customer())
    after = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=2)
    stamp = datetime.datetime.fromisoformat(created["created_at"].replace("Z", "+00:00"))
    assert before <= stamp <= after
    assert created["created_at"].endswith("Z") and created["updated_at"].endswith("Z")


async def test_ssn_is_returned_as_sent(api: ApiClient) -> None:
    created = await create(api, minimal_customer(ssn="123-45-6789"))
    assert created["ssn"] == "123-45-6789"
    fetched = (await api.http.get(f"/customers/{created['customer_id']}")).json()
    assert fetched["ssn"] == "123-45-6789"


async def test_generated_customer_id_is_24_base62_and_fresh(api: ApiClient) -> None:
    ids = {(await create(api, minimal_customer(email=f"a{i}@example.com")))["customer_id"] for i in range(5)}
    assert len(ids) == 5
    assert all(BASE62_24.match(i) for i in ids)


async def test_customer_id_null_is_generated_too(api: ApiClient) -> None:
    created = await create(api, minimal_customer(customer_id=None))
    assert BASE62_24.match(created["customer_id"])


async def test_taken_customer_id_is_conflict_and_stores_nothing(api: ApiClient, pool: asyncpg.Pool) -> None:
    await create(api, seed_customer())
    before = await snapshot(pool)
    response = await api.http.post("/customers", json=seed_customer(name_first="Other"))
    error = assert_error(response, 409, "conflict")
    assert "0x1234" in error["message"]
    assert await snapshot(pool) == before


async def test_same_customer_id_in_another_org_is_allowed(
    api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool
) -> None:
    mine = await create(api, seed_customer())
    theirs = await create(other_api, seed_customer(name_first="Globex"))
    assert mine["customer_id"] == theirs["customer_id"] == "0x1234"
    assert (await api.http.get("/customers/0x1234")).json()["name_first"] == "Miriam"
    assert (await other_api.http.get("/customers/0x1234")).json()["name_first"] == "Globex"
    assert await count(pool) == 2


async def test_unknown_fields_are_ignored(api: ApiClient) -> None:
    created = await create(api, minimal_customer(customer_id="x1", shoe_size=44, extra={"a": 1}))
    assert "shoe_size" not in created and "extra" not in created


@pytest.mark.parametrize("customer_id", ["a b", "émile", "x" * 255, "0x1234", "with.dots-and_underscores"])
async def test_customer_ids_round_trip_through_the_path(api: ApiClient, customer_id: str) -> None:
    await create(api, minimal_customer(customer_id=customer_id))
    response = await api.http.get(f"/customers/{quote(customer_id, safe='')}")
    assert response.status_code == 200, response.text
    assert response.json()["customer_id"] == customer_id


async def test_customer_id_with_a_slash_can_be_read_back(api: ApiClient) -> None:
    await create(api, minimal_customer(customer_id="a/b"))
    response = await api.http.get("/customers/a%2Fb")
    assert response.status_code == 200, response.text
    assert response.json()["customer_id"] == "a/b"


# --- 422 -----------------------------------------------------------------------------------------


async def test_422_envelope_and_ajv_details(api: ApiClient, pool: asyncpg.Pool) -> None:
    body = minimal_customer(assign_to_accounts=[{"account_id": "a", "customer_account_role": "OWNER"}])
    details = assert_invalid(await api.http.post("/customers", json=body))
    assert details == [
        {
            "instancePath": "/assign_to_accounts/0/customer_account_role",
            "keyword": "enum",
            "params": {"allowedValues": ["PRIMARY", "SECONDARY"]},
            "message": "must be equal to one of the allowed values",
        }
    ]
    assert await count(pool) == 0


async def test_422_required_is_at_the_root(api: ApiClient) -> None:
    details = assert_invalid(await api.http.post("/customers", json=minimal_customer(name_last=...)))
    assert details == [
        {
            "instancePath": "",
            "keyword": "required",
            "params": {"missingProperty": "name_last"},
            "message": "must have required property name_last",
        }
    ]


async def test_422_lists_every_bad_field(api: ApiClient, pool: asyncpg.Pool) -> None:
    body = seed_customer(
        name_first="   ", phone_number="+1 410 555 6789", ssn="12-345-6789", email="nope", date_of_birth="1985/06/20"
    )
    details = assert_invalid(await api.http.post("/customers", json=body))
    assert len(details) == 5
    assert sorted(d["instancePath"] for d in details) == sorted(
        ["/name_first", "/phone_number", "/ssn", "/email", "/date_of_birth"]
    )
    phone = next(d for d in details if d["instancePath"] == "/phone_number")
    assert phone["keyword"] == "format" and "+14105556789" in phone["message"]
    assert await count(pool) == 0


@pytest.mark.parametrize(
    ("overrides", "path", "keyword"),
    [
        ({"customer_id": "can_1"}, "/customer_id", "pattern"),
        ({"customer_id": "a\nb"}, "/customer_id", "pattern"),
        ({"customer_id": "x" * 256}, "/customer_id", "maxLength"),
        ({"name_first": "   "}, "/name_first", "pattern"),
        ({"name_prefix": "x" * 256}, "/name_prefix", "maxLength"),
        ({"phone_number": "4105556789"}, "/phone_number", "format"),
        ({"phone_number": "+1555"}, "/phone_number", "format"),
        ({"address_line_one": ""}, "/address_line_one", "minLength"),
        ({"address_country_code": "us"}, "/address_country_code", "enum"),
        ({"address_zip": "9999"}, "/address_zip", "pattern"),
        ({"address_state": "Georgia"}, "/address_state", "enum"),
        ({"ssn": "000-12-3456"}, "/ssn", "format"),
        ({"ssn": "12345678"}, "/ssn", "pattern"),
        ({"email": "a@"}, "/email", "format"),
        ({"date_of_birth": "2020-02-30"}, "/date_of_birth", "format"),
        ({"date_of_birth": "1899-12-31"}, "/date_of_birth", "format"),
        (
            {"business_details": {"doing_business_as": "U", "business_ein": "12345678"}},
            "/business_details/business_ein",
            "pattern",
        ),
        ({"business_details": {"business_ein": "123456789"}}, "/business_details", "required"),
        ({"assign_to_accounts": [{"account_id": f"a{i}"} for i in range(101)]}, "/assign_to_accounts", "maxItems"),
        ({"assign_to_accounts": [{"account_id": "a"}, {"account_id": "a"}]}, "/assign_to_accounts", "uniqueItems"),
        (
            {
                "assign_to_accounts": [
                    {"account_id": "a", "customer_account_issuer_processor_config": {"spend_limit": 0}}
                ]
            },
            "/assign_to_accounts/0/customer_account_issuer_processor_config/spend_limit",
            "minimum",
        ),
        (
            {
                "assign_to_accounts": [
                    {
                        "account_id": "a",
                        "customer_account_issuer_processor_config": {"lithic": {"card_program_token": "nope"}},
                    }
                ]
            },
            "/assign_to_accounts/0/customer_account_issuer_processor_config/lithic/card_program_token",
            "pattern",
        ),
    ],
)
async def test_create_refuses_bad_values(
    api: ApiClient, pool: asyncpg.Pool, overrides: dict[str, Any], path: str, keyword: str
) -> None:
    details = assert_invalid(await api.http.post("/customers", json=seed_customer(**overrides)))
    assert (path, keyword) in [(d["instancePath"], d["keyword"]) for d in details], details
    assert await count(pool) == 0


@pytest.mark.parametrize(
    "overrides",
    [
        {"phone_number": "+442079460958"},
        {"address_country_code": None},
        {"address_country_code": "AN", "address_state": "Curaçao", "address_zip": "0000"},
        {"address_country_code": "GB", "address_state": "Greater London", "address_zip": "SW1A 1AA"},
        {"address_country_code": "PR", "address_state": "PR", "address_zip": "00901"},
        {"address_state": "AE", "address_zip": "999991000"},
        {"ssn": "123-45-6789"},
        {"date_of_birth": "1900-01-01"},
        {"business_details": {"doing_business_as": "U", "business_ein": "12-3456789"}},
        {"business_details": None},
        {"assign_to_accounts": None},
        {"assign_to_accounts": []},
    ],
)
async def test_create_accepts_good_values(api: ApiClient, overrides: dict[str, Any]) -> None:
    created = await create(api, seed_customer(**overrides))
    for name, value in overrides.items():
        if name == "business_details" and value is not None:
            value = UNSET_BUSINESS | value  # unset optional fields are answered as null
        if name != "assign_to_accounts":
            assert created[name] == value, name


@pytest.mark.parametrize(
    "name",
    [
        "name_first",
        "name_middle",
        "address_line_one",
        "address_line_two",
        "address_city",
        "international_customer_id",
        "email",
        "phone_number",
        "customer_id",
    ],
)
async def test_text_with_a_nul_character_is_422_not_a_server_error(
    api: ApiClient, pool: asyncpg.Pool, name: str
) -> None:
    """PostgreSQL text cannot hold NUL; the API must refuse it as input, not fail on the INSERT."""
    response = await api.http.post("/customers", json=seed_customer(**{name: "Ab\u0000c"}))
    details = assert_invalid(response)
    assert [d["instancePath"] for d in details] == [f"/{name}"]
    assert await count(pool) == 0


async def test_nul_in_a_business_or_card_field_is_422(api: ApiClient) -> None:
    body = seed_customer(
        business_details={"doing_business_as": "U\u0000", "business_ein": "123456789", "business_legal_name": "\u0000"}
    )
    details = assert_invalid(await api.http.post("/customers", json=body))
    assert sorted(d["instancePath"] for d in details) == [
        "/business_details/business_legal_name",
        "/business_details/doing_business_as",
    ]
    item = {
        "account_id": "a",
        "customer_account_external_id": "x\u0000",
        "customer_account_issuer_processor_config": {"lithic": {"memo": "m\u0000"}},
    }
    details = assert_invalid(await api.http.post("/customers", json=seed_customer(assign_to_accounts=[item])))
    assert sorted(d["instancePath"] for d in details) == [
        "/assign_to_accounts/0/customer_account_external_id",
        "/assign_to_accounts/0/customer_account_issuer_processor_config/lithic/memo",
    ]


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH"])
async def test_nul_in_the_path_customer_id_is_404_not_a_server_error(api: ApiClient, method: str) -> None:
    kwargs: dict[str, Any] = {} if method == "GET" else {"json": {"name_middle": "x"}}
    response = await api.http.request(method, "/customers/a%00b", **kwargs)
    assert_error(response, 404, "not_found")


# --- nothing half-written ------------------------------------------------------------------------


async def test_unknown_account_is_404_naming_it_and_stores_nothing(api: ApiClient, pool: asyncpg.Pool) -> None:
    await create(api, minimal_customer(customer_id="existing"))
    before = await snapshot(pool)
    body = seed_customer(assign_to_accounts=[{"account_id": "no-such-account-42"}])
    error = assert_error(await api.http.post("/customers", json=body), 404, "not_found")
    assert "no-such-account-42" in error["message"]
    assert await snapshot(pool) == before
    assert (await api.http.get("/customers/0x1234")).status_code == 404


async def test_seed_body_with_its_accounts_is_404_when_the_account_is_not_ours(
    api: ApiClient, pool: asyncpg.Pool
) -> None:
    response = await api.http.post("/customers", json=seed_customer(assign_to_accounts=[SEED_ASSIGNMENT]))
    error = assert_error(response, 404, "not_found")
    assert SEED_ASSIGNMENT["account_id"] in error["message"]
    assert await count(pool) == 0


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (seed_customer(ssn="000-00-0000"), 422),
        (seed_customer(name_first=...), 422),
        (seed_customer(customer_id="taken"), 409),
        (seed_customer(assign_to_accounts=[{"account_id": "missing"}]), 404),
    ],
)
async def test_failed_create_leaves_the_table_unchanged(
    api: ApiClient, pool: asyncpg.Pool, body: dict[str, Any], status: int
) -> None:
    await create(api, minimal_customer(customer_id="taken"))
    before = await snapshot(pool)
    response = await api.http.post("/customers", json=body)
    assert response.status_code == status, response.text
    assert await snapshot(pool) == before


# --- get -----------------------------------------------------------------------------------------


async def test_get_answers_what_create_answered(api: ApiClient) -> None:
    created = await create(api, seed_customer())
    response = await api.http.get("/customers/0x1234")
    assert response.status_code == 200
    assert response.json() == created


async def test_get_unknown_is_404(api: ApiClient) -> None:
    error = assert_error(await api.http.get("/customers/nobody"), 404, "not_found")
    assert "nobody" in error["message"]


# --- put / patch ---------------------------------------------------------------------------------

UPDATE_METHODS = pytest.mark.parametrize("method", ["PUT", "PATCH"])


async def update(api: ApiClient, method: str, customer_id: str, body: Any) -> httpx.Response:
    return await api.http.request(method, f"/customers/{customer_id}", json=body)


@UPDATE_METHODS
async def test_update_changes_only_the_given_fields(api: ApiClient, method: str) -> None:
    created = await create(api, seed_customer())
    response = await update(api, method, "0x1234", {"name_middle": "Ann", "address_city": "Savannah"})
    assert response.status_code == 200, response.text
    updated = response.json()
    assert set(updated) == CUSTOMER_FIELDS
    assert updated["name_middle"] == "Ann" and updated["address_city"] == "Savannah"
    for name in CUSTOMER_FIELDS - {"name_middle", "address_city", "updated_at"}:
        assert updated[name] == created[name], name
    assert updated["updated_at"] >= created["updated_at"]
    assert TIMESTAMP.match(updated["updated_at"])
    assert (await api.http.get("/customers/0x1234")).json() == updated


@UPDATE_METHODS
async def test_update_null_clears_optional_fields(api: ApiClient, method: str) -> None:
    await create(api, seed_customer())
    cleared = [
        "name_prefix",
        "name_middle",
        "name_suffix",
        "address_line_two",
        "ssn",
        "international_customer_id",
        "business_details",
        "address_country_code",
    ]
    response = await update(api, method, "0x1234", dict.fromkeys(cleared))
    assert response.status_code == 200, response.text
    updated = response.json()
    for name in cleared:
        assert updated[name] is None, name
    assert updated["name_first"] == "Miriam"
    assert (await api.http.get("/customers/0x1234")).json() == updated


@UPDATE_METHODS
@pytest.mark.parametrize(
    "name",
    [
        "name_first",
        "name_last",
        "phone_number",
        "address_line_one",
        "address_city",
        "address_state",
        "address_zip",
        "email",
        "date_of_birth",
    ],
)
async def test_update_cannot_clear_required_fields(api: ApiClient, pool: asyncpg.Pool, method: str, name: str) -> None:
    await create(api, seed_customer())
    before = await snapshot(pool)
    details = assert_invalid(await update(api, method, "0x1234", {name: None}))
    assert [(d["instancePath"], d["keyword"]) for d in details] == [(f"/{name}", "type")]
    assert await snapshot(pool) == before


@UPDATE_METHODS
@pytest.mark.parametrize(
    ("body", "path", "keyword"),
    [
        ({"phone_number": "4105556789"}, "/phone_number", "format"),
        ({"phone_number": "+1555"}, "/phone_number", "format"),
        ({"email": "nope"}, "/email", "format"),
        ({"ssn": "123-00-4567"}, "/ssn", "format"),
        ({"ssn": "12345678"}, "/ssn", "pattern"),
        ({"date_of_birth": "2020-02-30"}, "/date_of_birth", "format"),
        ({"date_of_birth": "1899-12-31"}, "/date_of_birth", "format"),
        ({"address_state": "Georgia"}, "/address_state", "enum"),
        ({"address_zip": "ABCDE"}, "/address_zip", "pattern"),
        ({"address_country_code": "us"}, "/address_country_code", "enum"),
        ({"name_first": "  "}, "/name_first", "pattern"),
        ({"name_suffix": "x" * 256}, "/name_suffix", "maxLength"),
        ({"business_details": {"doing_business_as": "U"}}, "/business_details", "required"),
        ({"assign_to_accounts": [{"account_id": "a"}, {"account_id": "a"}]}, "/assign_to_accounts", "uniqueItems"),
    ],
)
async def test_update_applies_the_create_rules_and_changes_nothing_on_failure(
    api: ApiClient, pool: asyncpg.Pool, method: str, body: dict[str, Any], path: str, keyword: str
) -> None:
    await create(api, seed_customer())
    before = await snapshot(pool)
    details = assert_invalid(await update(api, method, "0x1234", {"name_middle": "Changed", **body}))
    assert (path, keyword) in [(d["instancePath"], d["keyword"]) for d in details], details
    assert await snapshot(pool) == before


@UPDATE_METHODS
async def test_update_lists_every_problem(api: ApiClient, method: str) -> None:
    await create(api, seed_customer())
    body = {"name_first": "", "phone_number": "4105556789", "email": "nope", "ssn": "000-11-2222"}
    details = assert_invalid(await update(api, method, "0x1234", body))
    assert sorted(d["instancePath"] for d in details) == ["/email", "/name_first", "/phone_number", "/ssn"]


@UPDATE_METHODS
async def test_update_us_to_gb_with_free_text_state(api: ApiClient, method: str) -> None:
    await create(api, seed_customer())
    response = await update(
        api,
        method,
        "0x1234",
        {"address_country_code": "GB", "address_state": "Greater London", "address_zip": "SW1A 1AA"},
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["address_country_code"], updated["address_state"], updated["address_zip"]) == (
        "GB",
        "Greater London",
        "SW1A 1AA",
    )


@UPDATE_METHODS
async def test_update_country_alone_rechecks_stored_state_and_zip(
    api: ApiClient, pool: asyncpg.Pool, method: str
) -> None:
    await create(api, seed_customer(address_country_code="GB", address_state="Greater London", address_zip="SW1A 1AA"))
    before = await snapshot(pool)
    details = assert_invalid(await update(api, method, "0x1234", {"address_country_code": "US"}))
    assert sorted(d["instancePath"] for d in details) == ["/address_state", "/address_zip"]
    details = assert_invalid(await update(api, method, "0x1234", {"address_country_code": "US", "address_state": "NY"}))
    assert [d["instancePath"] for d in details] == ["/address_zip"]
    assert await snapshot(pool) == before
    # with a zip of the US too, it goes through
    response = await update(
        api, method, "0x1234", {"address_country_code": "US", "address_state": "NY", "address_zip": "10001"}
    )
    assert response.status_code == 200, response.text


@UPDATE_METHODS
async def test_update_clearing_the_country_brings_back_us_rules(api: ApiClient, method: str) -> None:
    await create(api, seed_customer(address_country_code="GB", address_state="Greater London", address_zip="SW1A 1AA"))
    details = assert_invalid(await update(api, method, "0x1234", {"address_country_code": None}))
    assert sorted(d["instancePath"] for d in details) == ["/address_state", "/address_zip"]


@UPDATE_METHODS
async def test_update_zip_alone_follows_the_stored_country(api: ApiClient, method: str) -> None:
    await create(api, seed_customer(address_country_code="GB", address_state="Greater London", address_zip="SW1A 1AA"))
    response = await update(api, method, "0x1234", {"address_zip": "EC1A 1BB"})
    assert response.status_code == 200, response.text
    await create(api, seed_customer(customer_id="us-one"))
    assert_invalid(await update(api, method, "us-one", {"address_zip": "EC1A 1BB"}))


@UPDATE_METHODS
async def test_update_business_details_replaces_them_whole(api: ApiClient, method: str) -> None:
    await create(api, minimal_customer(customer_id="c1"))
    response = await update(
        api, method, "c1", {"business_details": {"doing_business_as": "Acme", "business_ein": "12-3456789"}}
    )
    assert response.status_code == 200, response.text
    assert response.json()["business_details"] == UNSET_BUSINESS | {
        "doing_business_as": "Acme",
        "business_ein": "12-3456789",
    }


@UPDATE_METHODS
async def test_update_unknown_customer_is_404(api: ApiClient, pool: asyncpg.Pool, method: str) -> None:
    error = assert_error(await update(api, method, "ghost", {"name_first": "Boo"}), 404, "not_found")
    assert "ghost" in error["message"]
    assert await count(pool) == 0


@UPDATE_METHODS
async def test_update_ignores_customer_id_and_unknown_fields(api: ApiClient, method: str) -> None:
    await create(api, seed_customer())
    response = await update(api, method, "0x1234", {"customer_id": "renamed", "colour": "red", "name_middle": "M"})
    assert response.status_code == 200, response.text
    assert response.json()["customer_id"] == "0x1234" and response.json()["name_middle"] == "M"
    assert (await api.http.get("/customers/renamed")).status_code == 404


@UPDATE_METHODS
async def test_failed_update_with_unknown_account_changes_nothing(
    api: ApiClient, pool: asyncpg.Pool, method: str
) -> None:
    await create(api, seed_customer())
    before = await snapshot(pool)
    response = await update(
        api, method, "0x1234", {"name_first": "Changed", "assign_to_accounts": [{"account_id": "nope-1"}]}
    )
    error = assert_error(response, 404, "not_found")
    assert "nope-1" in error["message"]
    assert await snapshot(pool) == before


@UPDATE_METHODS
async def test_update_with_an_empty_body_changes_no_field(api: ApiClient, method: str) -> None:
    created = await create(api, seed_customer())
    response = await update(api, method, "0x1234", {})
    assert response.status_code == 200, response.text
    updated = response.json()
    assert {k: v for k, v in updated.items() if k != "updated_at"} == {
        k: v for k, v in created.items() if k != "updated_at"
    }


@UPDATE_METHODS
async def test_update_body_must_be_a_json_object(api: ApiClient, method: str) -> None:
    await create(api, seed_customer())
    for raw in (b"[]", b'"x"', b"{nope"):
        response = await api.http.request(
            method, "/customers/0x1234", content=raw, headers={"Content-Type": "application/json"}
        )
        assert_error(response, 400, "bad_request")


# --- organizations -------------------------------------------------------------------------------


async def test_other_org_cannot_get_or_change_our_customer(
    api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool
) -> None:
    created = await create(api, seed_customer())
    before = await snapshot(pool)
    assert_error(await other_api.http.get("/customers/0x1234"), 404, "not_found")
    for method in ("PUT", "PATCH"):
        assert_error(await update(other_api, method, "0x1234", {"name_first": "Mallory"}), 404, "not_found")
        # a body whose meaning depends on the stored row is judged only once the row is found: 404
        response = await update(other_api, method, "0x1234", {"address_country_code": "US", "address_zip": "SW1A 1AA"})
        assert_error(response, 404, "not_found")
    assert await snapshot(pool) == before
    assert (await api.http.get("/customers/0x1234")).json() == created


async def test_other_org_list_does_not_show_our_customers(api: ApiClient, other_api: ApiClient) -> None:
    await create(api, seed_customer())
    await create(api, minimal_customer())
    listing = (await other_api.http.get("/customers")).json()
    assert listing["results"] == []
    searched = (await other_api.http.get("/customers", params={"search_parameters": "trevino"})).json()
    assert searched["results"] == []
    assert len((await api.http.get("/customers")).json()["results"]) == 2


async def test_404_for_another_orgs_customer_is_the_same_as_for_a_missing_one(
    api: ApiClient, other_api: ApiClient
) -> None:
    await create(api, seed_customer())
    theirs = await other_api.http.get("/customers/0x1234")
    missing = await other_api.http.get("/customers/0x9999")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["error"]["message"].replace("0x1234", "ID") == missing.json()["error"]["message"].replace(
        "0x9999", "ID"
    )


# --- data at rest (CONTRACT section 8) -----------------------------------------------------------


async def test_ssn_is_not_stored_in_clear(api: ApiClient, pool: asyncpg.Pool) -> None:
    created = await create(api, seed_customer(ssn="123-45-6789"))
    row = await pool.fetchval("SELECT row_to_json(c)::text FROM customers c")
    assert "123-45-6789" not in row and "123456789" not in row
    assert created["ssn"] == "123-45-6789"
    updated = await update(api, "PATCH", "0x1234", {"ssn": "234-56-7890"})
    assert updated.status_code == 200 and updated.json()["ssn"] == "234-56-7890"
    row = await pool.fetchval("SELECT row_to_json(c)::text FROM customers c")
    assert "234-56-7890" not in row and "234567890" not in row
    assert (await api.http.get("/customers/0x1234")).json()["ssn"] == "234-56-7890"
