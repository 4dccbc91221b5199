"""Accounts as Canopy answers them (issue 11, items 6 and 7): `account_product`, the summary's limit
and fee fields (the product's defaults where the account gives none), `cycle_type`, `external_fields`,
`issuer_processor_details.lithic.account_token`; a product named by external_product_id; and
GET /accounts/{id}?external=true. Every answer that embeds an account carries the same fields.

Through the ASGI app, against a real PostgreSQL.
"""

from __future__ import annotations

import copy
from typing import Any

import asyncpg
import httpx
import pytest

from tests.helpers import ApiClient, assert_error, assert_invalid, minimal_customer

INT64_MAX = 2**63 - 1
OVERVIEW = {"product_name": "Card", "product_type": "REVOLVING"}
PRODUCT: dict[str, Any] = {
    "product_id": "prod-1",
    "external_product_id": "ext-prod-1",
    "product_overview": {**OVERVIEW, "product_color": "#4867FF", "product_long_description": "A card"},
    "product_lifecycle_policies": {
        "billing_cycle_policies": {
            "cycle_interval": "1 month",
            "cycle_due_interval": "-5 days",
            "first_cycle_interval": "25 days",
            "product_time_zone": "America/Chicago",
        },
        "default_attributes": {
            "default_credit_limit_cents": 600000,
            "default_late_fee_cents": 2900,
            "default_payment_reversal_fee_cents": 1500,
        },
        "fee_policies": {"late_fee_grace": "5 days"},
    },
    "promotional_policies": {"promo_len": 6, "promo_purchase_window_len": 5, "promo_default_interest_rate_percent": 3},
    "post_promotional_policies": {"post_promo_len": 48, "post_promo_default_interest_rate_percent": 6.2},
}
SUMMARY_FIELDS = {
    "credit_limit_cents", "max_approved_credit_limit_cents", "late_fee_cents", "payment_reversal_fee_cents",
    "initial_principal_cents", "origination_fee_cents", "monthly_fee_cents", "annual_fee_cents",
    "late_fee_cap_percent",
}  # fmt: skip
ACCOUNT_FIELDS = {
    "account_id", "product_id", "external_account_id", "effective_at", "created_at", "updated_at",
    "account_overview", "summary", "account_product", "cycle_type", "external_fields", "issuer_processor_details",
}  # fmt: skip
NOT_FOUND_BY_EITHER = "No product found with the provided product_id or external_product_id."


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def make_product(api: ApiClient, **overrides: Any) -> dict[str, Any]:
    body = copy.deepcopy(PRODUCT)
    body.update(overrides)
    return ok(await api.http.post("/products", json={k: v for k, v in body.items() if v is not ...}))


async def make_account(api: ApiClient, **body: Any) -> dict[str, Any]:
    return ok(await api.http.post("/accounts", json={"product_id": "prod-1", **body}))


async def account_count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM accounts"))


# --- the answer's shape, the same wherever an account is answered ----------------------------------


async def test_every_answer_embedding_an_account_has_the_same_fields(api: ApiClient) -> None:
    await make_product(api)
    ok(await api.http.post("/customers", json=minimal_customer(customer_id="cust-1")))
    created = await make_account(
        api,
        account_id="acc-1",
        external_account_id="loan-1",
        external_fields=[{"key": "Umbrella Corporation", "value": "22445702"}],
        assign_customers=[{"customer_id": "cust-1"}],
    )
    own = {key: value for key, value in created.items() if key != "customers"}
    assert set(own) == ACCOUNT_FIELDS
    assert ok(await api.http.get("/accounts/acc-1")) == created
    assert ok(await api.http.get("/accounts/loan-1", params={"external": "true"})) == created
    (listed,) = ok(await api.http.get("/accounts"))["results"]
    assert listed == created
    (of_customer,) = ok(await api.http.get("/customers/cust-1/accounts"))["results"]
    assert of_customer == created
    (link,) = ok(await api.http.get("/customers/accounts"))["results"]
    assert link["account"] == own


async def test_account_product_is_the_products_overview_and_the_accounts_fees(api: ApiClient) -> None:
    await make_product(api)
    created = await make_account(api, summary={"origination_fee_cents": 1000, "monthly_fee_cents": 500})
    assert created["account_product"] == {
        "product_id": "prod-1",
        "external_product_id": "ext-prod-1",
        "product_overview": {
            "product_name": "Card", "product_type": "REVOLVING", "product_short_description": None,
            "product_long_description": "A card", "product_color": "#4867FF", "product_time_zone": "America/Chicago",
        },
        "product_lifecycle": {
            "late_fee_impl_cents": 2900, "payment_reversal_fee_impl_cents": 1500, "origination_fee_impl_cents": 1000,
            "monthly_fee_impl_cents": 500, "annual_fee_impl_cents": None,
        },
        "product_duration_information": {"promo_len": 6, "promo_purchase_window_len": 5},
        "promo_overview": {"promo_impl_interest_rate_percent": 3.0},
        "post_promo_overview": {"post_promo_impl_interest_rate_percent": 6.2, "post_promo_len": 48},
    }  # fmt: skip


async def test_a_product_without_policies_answers_nulls(api: ApiClient) -> None:
    ok(await api.http.post("/products", json={"product_id": "plain", "product_overview": OVERVIEW}))
    created = await make_account(api, product_id="plain")
    assert created["summary"] == dict.fromkeys(SUMMARY_FIELDS)
    assert created["cycle_type"] == {
        "first_cycle_interval": None, "cycle_interval": None, "cycle_due_interval": None, "late_fee_grace": None,
    }  # fmt: skip
    product = created["account_product"]
    assert product["product_overview"]["product_time_zone"] is None
    assert product["promo_overview"] == {"promo_impl_interest_rate_percent": None}
    assert product["product_duration_information"] == {"promo_len": None, "promo_purchase_window_len": None}
    assert created["external_fields"] == []
    assert created["issuer_processor_details"] == {"lithic": {"account_token": None}}


async def test_lithic_account_token_is_answered_when_there_is_one(api: ApiClient, pool: asyncpg.Pool) -> None:
    await make_product(api)
    await make_account(api, account_id="acc-1")
    token = "8a6d8c4e-3c2f-4a8e-9a55-5d1b3f1c2a77"
    await pool.execute("UPDATE accounts SET lithic_account_token = $1", token)
    assert ok(await api.http.get("/accounts/acc-1"))["issuer_processor_details"] == {"lithic": {"account_token": token}}


# --- the summary: the account's values, else the product's defaults -------------------------------


async def test_an_account_without_a_credit_limit_takes_the_products_default(api: ApiClient) -> None:
    await make_product(api)
    assert (await make_account(api))["summary"] == dict.fromkeys(SUMMARY_FIELDS) | {
        "credit_limit_cents": 600000, "late_fee_cents": 2900, "payment_reversal_fee_cents": 1500,
    }  # fmt: skip
    assert (await make_account(api, summary={}))["summary"]["credit_limit_cents"] == 600000
    assert (await make_account(api, summary={"credit_limit_cents": None}))["summary"]["credit_limit_cents"] == 600000


async def test_the_accounts_own_values_win_over_the_products_defaults(api: ApiClient) -> None:
    await make_product(api)
    summary = {
        "credit_limit_cents": 0, "max_approved_credit_limit_cents": 900000, "late_fee_cents": 0,
        "payment_reversal_fee_cents": 100, "initial_principal_cents": 5000, "origination_fee_cents": 250,
        "monthly_fee_cents": 99, "annual_fee_cents": INT64_MAX, "late_fee_cap_percent": 12.5,
    }  # fmt: skip
    created = await make_account(api, account_id="acc-1", summary=summary)
    assert created["summary"] == summary  # 0 is a limit, not an absent one
    assert ok(await api.http.get("/accounts/acc-1"))["summary"] == summary


async def test_a_default_is_taken_at_creation(api: ApiClient, pool: asyncpg.Pool) -> None:
    """The account keeps the limit it was made with (Canopy: limits change per account afterwards)."""
    await make_product(api)
    await make_account(api, account_id="acc-1")
    assert await pool.fetchval("SELECT credit_limit_cents FROM accounts") == 600000


@pytest.mark.parametrize("field", sorted(SUMMARY_FIELDS - {"late_fee_cap_percent"}))
@pytest.mark.parametrize(
    ("value", "keyword"), [(-1, "minimum"), (1.5, "type"), ("100", "type"), (True, "type"), (INT64_MAX + 1, "format")]
)
async def test_bad_summary_cents_are_422_and_create_nothing(
    api: ApiClient, pool: asyncpg.Pool, field: str, value: Any, keyword: str
) -> None:
    await make_product(api)
    (problem,) = assert_invalid(
        await api.http.post("/accounts", json={"product_id": "prod-1", "summary": {field: value}})
    )
    assert (problem["instancePath"], problem["keyword"]) == (f"/summary/{field}", keyword)
    assert await account_count(pool) == 0


@pytest.mark.parametrize(("value", "keyword"), [(-0.5, "minimum"), ("5", "type"), (False, "type"), ([5], "type")])
async def test_bad_late_fee_cap_percent_is_422(api: ApiClient, value: Any, keyword: str) -> None:
    await make_product(api)
    body = {"product_id": "prod-1", "summary": {"late_fee_cap_percent": value}}
    (problem,) = assert_invalid(await api.http.post("/accounts", json=body))
    assert (problem["instancePath"], problem["keyword"]) == ("/summary/late_fee_cap_percent", keyword)


# --- cycle_type ------------------------------------------------------------------------------------


async def test_cycle_type_is_the_accounts_own_else_its_products(api: ApiClient) -> None:
    await make_product(api)
    inherited = await make_account(api)
    assert inherited["cycle_type"] == {
        "first_cycle_interval": "25 days", "cycle_interval": "1 month", "cycle_due_interval": "-5 days",
        "late_fee_grace": "5 days",
    }  # fmt: skip
    own = {"first_cycle_interval": "10 days", "cycle_interval": "14 days", "cycle_due_interval": "-2 days"}
    created = await make_account(api, account_id="acc-own", cycle_type=own)
    assert created["cycle_type"] == own | {"late_fee_grace": "5 days"}
    assert ok(await api.http.get("/accounts/acc-own"))["cycle_type"] == created["cycle_type"]


async def test_an_account_made_before_cycle_type_was_kept_answers_nulls(api: ApiClient, pool: asyncpg.Pool) -> None:
    await make_product(api)
    await make_account(api, account_id="acc-1")
    await pool.execute("UPDATE accounts SET cycle_type = NULL")
    assert set(ok(await api.http.get("/accounts/acc-1"))["cycle_type"].values()) == {None}


@pytest.mark.parametrize(
    ("field", "value", "keyword"),
    [
        *[("first_cycle_interval", v, "pattern") for v in ("10days", "ten days", "-1 days", "1000 days", "1 day\x00")],
        *[("cycle_interval", v, "pattern") for v in ("0 days", "1 fortnight", "1 month ")],
        *[("cycle_due_interval", v, "pattern") for v in ("- 5 days", "5")],
        *[("late_fee_grace", v, "pattern") for v in ("-5 days", "5 Days")],
        ("late_fee_grace", 5, "type"),
    ],
)
async def test_bad_cycle_type_is_422(api: ApiClient, pool: asyncpg.Pool, field: str, value: Any, keyword: str) -> None:
    await make_product(api)
    body = {"product_id": "prod-1", "cycle_type": {field: value}}
    (problem,) = assert_invalid(await api.http.post("/accounts", json=body))
    assert (problem["instancePath"], problem["keyword"]) == (f"/cycle_type/{field}", keyword)
    assert await account_count(pool) == 0


# --- external_fields -------------------------------------------------------------------------------


async def test_up_to_ten_external_fields_are_kept_in_order(api: ApiClient) -> None:
    await make_product(api)
    fields = [{"key": f"system-{n}", "value": f"id-{9 - n}"} for n in range(10)]
    fields[3] = {"key": "k" * 100, "value": ""}
    fields[4] = {"key": "Umbrella Corporation", "value": "v" * 255}
    created = await make_account(api, account_id="acc-1", external_fields=fields)
    assert created["external_fields"] == fields
    assert ok(await api.http.get("/accounts/acc-1"))["external_fields"] == fields


@pytest.mark.parametrize(
    ("external_fields", "path", "keyword"),
    [
        ([{"key": "k", "value": "v"}] * 11, "/external_fields", "maxItems"),
        ({"key": "k", "value": "v"}, "/external_fields", "type"),
        ("k=v", "/external_fields", "type"),
        (["k"], "/external_fields/0", "type"),
        ([{"value": "v"}], "/external_fields/0", "required"),
        ([{"key": "k"}], "/external_fields/0", "required"),
        ([{"key": "", "value": "v"}], "/external_fields/0/key", "minLength"),
        ([{"key": "k" * 101, "value": "v"}], "/external_fields/0/key", "maxLength"),
        ([{"key": "k", "value": "v" * 256}], "/external_fields/0/value", "maxLength"),
        ([{"key": "k\x00", "value": "v"}], "/external_fields/0/key", "pattern"),
        ([{"key": "k", "value": "v\x00"}], "/external_fields/0/value", "pattern"),
        ([{"key": 1, "value": "v"}], "/external_fields/0/key", "type"),
        ([{"key": "k", "value": 22445702}], "/external_fields/0/value", "type"),
        ([{"key": "k", "value": "v"}, {"key": "k", "value": None}], "/external_fields/1/value", "type"),
    ],
)
async def test_bad_external_fields_are_422_and_create_nothing(
    api: ApiClient, pool: asyncpg.Pool, external_fields: Any, path: str, keyword: str
) -> None:
    await make_product(api)
    body = {"product_id": "prod-1", "external_fields": external_fields}
    details = assert_invalid(await api.http.post("/accounts", json=body))
    assert (path, keyword) in {(d["instancePath"], d["keyword"]) for d in details}, details
    assert await account_count(pool) == 0


# --- naming the product by external_product_id -----------------------------------------------------


async def test_an_account_may_name_its_product_by_external_product_id(api: ApiClient) -> None:
    await make_product(api)
    created = ok(await api.http.post("/accounts", json={"account_id": "a", "external_product_id": "ext-prod-1"}))
    assert created["product_id"] == "prod-1"
    assert created["account_product"]["external_product_id"] == "ext-prod-1"
    assert created["summary"]["credit_limit_cents"] == 600000
    both = {"account_id": "b", "product_id": "prod-1", "external_product_id": "ext-prod-1"}
    assert ok(await api.http.post("/accounts", json=both))["product_id"] == "prod-1"


@pytest.mark.parametrize(
    "reference",
    [
        {"external_product_id": "nope"},
        {"external_product_id": "prod-1"},  # a product_id is not an external one
        {"product_id": "prod-1", "external_product_id": "ext-prod-2"},  # both given: they must name one product
        {"product_id": "prod-2", "external_product_id": "ext-prod-1"},
    ],
)
async def test_an_unknown_external_product_is_404_and_creates_nothing(
    api: ApiClient, pool: asyncpg.Pool, reference: dict[str, str]
) -> None:
    await make_product(api)
    await make_product(api, product_id="prod-2", external_product_id="ext-prod-2")
    error = assert_error(await api.http.post("/accounts", json=reference), 404, "not_found")
    assert error["message"] == NOT_FOUND_BY_EITHER
    assert await account_count(pool) == 0


async def test_an_unknown_product_id_alone_keeps_the_contracts_text(api: ApiClient) -> None:
    error = assert_error(await api.http.post("/accounts", json={"product_id": "nope"}), 404, "not_found")
    assert error["message"] == "No product found with the provided product_id"


@pytest.mark.parametrize("body", [{}, {"external_product_id": None}, {"account_id": "a"}])
async def test_neither_product_reference_is_422_required(api: ApiClient, body: dict[str, Any]) -> None:
    await make_product(api)
    (problem,) = assert_invalid(await api.http.post("/accounts", json=body))
    assert problem == {
        "instancePath": "", "keyword": "required", "params": {"missingProperty": "product_id"},
        "message": "must have required property product_id",
    }  # fmt: skip


async def test_a_null_product_id_is_a_type_error_as_before(api: ApiClient) -> None:
    """product_id was required: sent, it is a string or an integer, never null."""
    body = {"product_id": None, "external_product_id": "ext-prod-1"}
    (problem,) = assert_invalid(await api.http.post("/accounts", json=body))
    assert (problem["instancePath"], problem["keyword"]) == ("/product_id", "type")


@pytest.mark.parametrize(
    ("value", "keyword"), [("", "minLength"), ("x" * 256, "maxLength"), ("a\nb", "pattern"), (5, "type")]
)
async def test_bad_external_product_id_on_an_account_is_422(api: ApiClient, value: Any, keyword: str) -> None:
    (problem,) = assert_invalid(await api.http.post("/accounts", json={"external_product_id": value}))
    assert (problem["instancePath"], problem["keyword"]) == ("/external_product_id", keyword)


# --- GET /accounts/{id}?external=true --------------------------------------------------------------


async def test_external_true_finds_the_account_by_its_external_account_id(api: ApiClient) -> None:
    await make_product(api)
    created = await make_account(api, account_id="acc-1", external_account_id="4465220133024156")
    await make_account(api, account_id="4465220133024156")  # an account whose own id is the other's external id
    assert ok(await api.http.get("/accounts/4465220133024156?external=true")) == created
    assert ok(await api.http.get("/accounts/4465220133024156?external=false"))["account_id"] == "4465220133024156"
    assert ok(await api.http.get("/accounts/acc-1"))["account_id"] == "acc-1"


async def test_external_true_for_an_unknown_external_id_is_404(api: ApiClient) -> None:
    await make_product(api)
    await make_account(api, account_id="acc-1")
    error = assert_error(await api.http.get("/accounts/acc-1?external=true"), 404, "not_found")
    assert error["message"] == "No account found with the provided external_account_id: acc-1"


@pytest.mark.parametrize("value", ["True", "1", "yes", ""])
async def test_external_other_than_true_or_false_is_400(api: ApiClient, value: str) -> None:
    assert_error(await api.http.get("/accounts/acc-1", params={"external": value}), 400, "bad_request")


async def test_external_ids_with_slashes_are_found(api: ApiClient) -> None:
    await make_product(api)
    await make_account(api, account_id="acc-1", external_account_id="loans/2026/7")
    assert ok(await api.http.get("/accounts/loans%2F2026%2F7?external=true"))["account_id"] == "acc-1"


# --- organizations ---------------------------------------------------------------------------------


async def test_another_organization_cannot_read_our_account_by_its_external_id(
    api: ApiClient, other_api: ApiClient
) -> None:
    await make_product(api)
    await make_account(api, account_id="acc-1", external_account_id="loan-1")
    assert_error(await other_api.http.get("/accounts/loan-1?external=true"), 404, "not_found")
    assert_error(await other_api.http.get("/accounts/acc-1"), 404, "not_found")
    # Its own account may carry the same external id; each organization reads its own.
    await make_product(other_api)
    await make_account(other_api, account_id="theirs", external_account_id="loan-1")
    assert ok(await other_api.http.get("/accounts/loan-1?external=true"))["account_id"] == "theirs"
    assert ok(await api.http.get("/accounts/loan-1?external=true"))["account_id"] == "acc-1"
