"""Products keep what Canopy's product has (issue 11, item 6): the lifecycle, promotional and
post-promotional policies, effective_at, external_product_id (unique in the organization) and
product_color, each validated; the policies are kept as JSONB encoded from the validated Structs.

Through the ASGI app, against a real PostgreSQL. Canopy's shapes: its CreateProduct schema and the
bodies its Cypress material sends (intervals such as "1 month", "-2 days", times such as 17:00:00-05:00).
"""

from __future__ import annotations

import copy
from typing import Any

import asyncpg
import httpx
import pytest

from tests.helpers import ApiClient, assert_error, assert_invalid

INT64_MAX = 2**63 - 1

# A product as Canopy's own material creates one: every policy field set.
CANOPY_PRODUCT: dict[str, Any] = {
    "product_id": "prod-canopy",
    "external_product_id": "95fea111-d121-40f8-9e8e-a6c335e48a45",
    "effective_at": "2021-08-01T02:18:27-08:00",
    "product_overview": {
        "product_name": "BNPL 24 Month Standard",
        "product_type": "REVOLVING",
        "product_short_description": "12mm3apr.",
        "product_long_description": "Student credit card.",
        "product_color": "#0000FF",
    },
    "product_lifecycle_policies": {
        "billing_cycle_policies": {
            "cycle_interval": "1 month",
            "cycle_due_interval": "-5 days",
            "first_cycle_interval": "25 days",
            "close_of_business_time": "17:00:00-05:00",
            "product_time_zone": "America/New_York",
        },
        "default_attributes": {
            "default_credit_limit_cents": 600000,
            "default_late_fee_cents": 2900,
            "default_payment_reversal_fee_cents": 1500,
        },
        "fee_policies": {
            "late_fee_grace": "5 days",
            "surcharge_fee_interval": "1 month",
            "default_surcharge_fee_structure": [
                {
                    "percent_surcharge": 1.5,
                    "surcharge_start_inclusive_cents": 0,
                    "surcharge_end_exclusive_cents": 100000,
                },
                {"percent_surcharge": 1, "surcharge_start_inclusive_cents": 100000},
            ],
        },
        "interest_policies": {"interest_calc_time": "01:00:00-05:00"},
        "payment_due_policies": {
            "delinquent_on_n_consecutive_late_fees": 2,
            "charge_off_on_n_consecutive_late_fees": 4,
        },
    },
    "promotional_policies": {
        "promo_len": 6,
        "promo_min_pay_type": "PERCENT_PRINCIPAL",
        "promo_purchase_window_len": 5,
        "promo_interest_deferred": True,
        "promo_default_interest_rate_percent": 3,
        "promo_min_pay_percent": 100,
        "promo_apr_range_inclusive_lower": 2,
        "promo_apr_range_inclusive_upper": 5.5,
    },
    "post_promotional_policies": {
        "post_promo_len": 48,
        "post_promo_am_len_range_inclusive_lower": 2,
        "post_promo_am_len_range_inclusive_upper": 5,
        "post_promo_min_pay_type": "AM",
        "post_promo_default_interest_rate_percent": 3,
        "post_promo_apr_range_inclusive_lower": 2,
        "post_promo_apr_range_inclusive_upper": 5,
    },
}
OVERVIEW = {"product_name": "Card", "product_type": "REVOLVING"}


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def canopy_product(**overrides: Any) -> dict[str, Any]:
    body = copy.deepcopy(CANOPY_PRODUCT)
    body.update(overrides)
    return body


def with_value(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """The Canopy product with `value` at `path` (`...` removes the field there)."""
    body = canopy_product()
    target: Any = body
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


def pointer(path: tuple[str | int, ...]) -> str:
    return "".join(f"/{key}" for key in path)


def without_nulls(value: Any) -> Any:
    """An answer without the nulls it has for fields the body left unset."""
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


async def product_count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM products"))


# --- what is kept and answered ----------------------------------------------------------------------


async def test_canopys_product_is_answered_as_sent_and_read_back(api: ApiClient) -> None:
    created = ok(await api.http.post("/products", json=CANOPY_PRODUCT))
    for name in ("product_lifecycle_policies", "promotional_policies", "post_promotional_policies"):
        assert without_nulls(created[name]) == CANOPY_PRODUCT[name], name
    second_tier = created["product_lifecycle_policies"]["fee_policies"]["default_surcharge_fee_structure"][1]
    assert second_tier["surcharge_end_exclusive_cents"] is None  # unset: null, as every unset field
    assert created["product_overview"] == CANOPY_PRODUCT["product_overview"]
    assert created["external_product_id"] == CANOPY_PRODUCT["external_product_id"]
    assert created["effective_at"] == "2021-08-01T10:18:27Z"  # UTC, as every timestamp (CONTRACT section 1)
    assert ok(await api.http.get("/products/prod-canopy")) == created
    (listed,) = ok(await api.http.get("/products"))["results"]
    assert listed == created


async def test_unset_policy_fields_and_absent_policies_are_null(api: ApiClient) -> None:
    created = ok(
        await api.http.post(
            "/products",
            json={
                "product_overview": OVERVIEW,
                "product_lifecycle_policies": {"billing_cycle_policies": {"cycle_interval": "7 days"}},
            },
        )
    )
    lifecycle = created["product_lifecycle_policies"]
    assert lifecycle["billing_cycle_policies"] == {
        "cycle_interval": "7 days", "cycle_due_interval": None, "first_cycle_interval": None,
        "close_of_business_time": None, "product_time_zone": None,
    }  # fmt: skip
    assert lifecycle["default_attributes"] is None and lifecycle["fee_policies"] is None
    assert created["promotional_policies"] is None and created["post_promotional_policies"] is None
    assert created["external_product_id"] is None
    assert created["product_overview"]["product_color"] is None
    assert created["effective_at"] == created["created_at"]  # effective from its creation


async def test_only_known_policy_fields_are_kept(api: ApiClient, pool: asyncpg.Pool) -> None:
    """Unknown properties are ignored here as everywhere in this API, so they are not stored either."""
    body = canopy_product()
    body["product_lifecycle_policies"]["billing_cycle_policies"]["cycle_interval_unit"] = "months"
    body["promotional_policies"]["promo_extra"] = {"nested": [1, 2]}
    created = ok(await api.http.post("/products", json=body))
    assert "cycle_interval_unit" not in created["product_lifecycle_policies"]["billing_cycle_policies"]
    assert "promo_extra" not in created["promotional_policies"]
    stored = await pool.fetchrow(
        """SELECT jsonb_typeof(product_lifecycle_policies) AS kind,
                  product_lifecycle_policies -> 'billing_cycle_policies' ? 'cycle_interval_unit' AS unknown_kept,
                  promotional_policies ? 'promo_extra' AS promo_extra_kept,
                  (product_lifecycle_policies #>> '{default_attributes,default_credit_limit_cents}')::bigint AS limit
           FROM products"""
    )
    assert dict(stored) == {"kind": "object", "unknown_kept": False, "promo_extra_kept": False, "limit": 600000}


async def test_a_product_made_before_the_policies_answers_them_as_null(api: ApiClient, pool: asyncpg.Pool) -> None:
    created = ok(await api.http.post("/products", json={"product_id": "old", "product_overview": OVERVIEW}))
    await pool.execute("UPDATE products SET effective_at = NULL")  # as the column's rows before it existed
    read = ok(await api.http.get("/products/old"))
    assert read["effective_at"] == created["created_at"]
    assert read == created


@pytest.mark.parametrize(
    ("path", "value"),
    [
        *[
            (("product_lifecycle_policies", "billing_cycle_policies", "cycle_interval"), interval)
            for interval in ("1 day", "7 days", "2 weeks", "1 month", "3 months", "1 year", "999 years", "1 months")
        ],
        *[
            (("product_lifecycle_policies", "billing_cycle_policies", "cycle_due_interval"), interval)
            for interval in ("0 days", "25 days", "-5 days", "-2 days", "-999 days")
        ],
        (("product_lifecycle_policies", "billing_cycle_policies", "first_cycle_interval"), "0 days"),
        (("product_lifecycle_policies", "fee_policies", "late_fee_grace"), "0 days"),
        (("product_lifecycle_policies", "billing_cycle_policies", "close_of_business_time"), "23:59:59"),
        (("product_lifecycle_policies", "interest_policies", "interest_calc_time"), "00:00:00+14:00"),
        *[
            (("product_lifecycle_policies", "billing_cycle_policies", "product_time_zone"), zone)
            for zone in ("UTC", "America/Argentina/Buenos_Aires", "Etc/GMT+5", "America/Port-au-Prince")
        ],
        (("product_lifecycle_policies", "default_attributes", "default_credit_limit_cents"), 0),
        (("product_lifecycle_policies", "default_attributes", "default_credit_limit_cents"), INT64_MAX),
        (("product_lifecycle_policies", "default_attributes", "default_late_fee_cents"), None),
        (("promotional_policies", "promo_default_interest_rate_percent"), 0),
        (("promotional_policies", "promo_default_interest_rate_percent"), 299.99),
        (("post_promotional_policies", "post_promo_len"), 0),
        *[(("promotional_policies", "promo_min_pay_type"), kind) for kind in ("AM", "NONE", "PERCENT_INTEREST")],
        (("product_overview", "product_color"), "#abc"),
        (("product_overview", "product_color"), "#A1b2C3"),
        (("product_lifecycle_policies", "fee_policies", "default_surcharge_fee_structure"), []),
        (("product_lifecycle_policies", "payment_due_policies"), {}),
        (("product_lifecycle_policies",), {}),
        (("effective_at",), "1900-01-01T00:00:00Z"),
    ],
)
async def test_good_values_are_kept(api: ApiClient, path: tuple[str | int, ...], value: Any) -> None:
    created = ok(await api.http.post("/products", json=with_value(path, value)))
    answered: Any = created
    for key in path:
        answered = answered[key]
    if isinstance(value, dict):
        assert without_nulls(answered) == value
    elif path == ("effective_at",):
        assert answered == "1900-01-01T00:00:00Z"
    else:
        assert answered == value


LIFECYCLE = ("product_lifecycle_policies",)
BILLING = (*LIFECYCLE, "billing_cycle_policies")
DEFAULTS = (*LIFECYCLE, "default_attributes")
FEES = (*LIFECYCLE, "fee_policies")
TIER = (*FEES, "default_surcharge_fee_structure", 0)
DUE = (*LIFECYCLE, "payment_due_policies")
PROMO = ("promotional_policies",)
POST_PROMO = ("post_promotional_policies",)
BAD_INTERVALS = ["1month", "1  month", " 1 month", "1 month ", "one month", "1 fortnight", "1000 days", "1.5 months",
                 "1 Month", "1 month\n", "-1 month", "+1 month", "", "\u0661 month"]  # fmt: skip
BAD_TIMES = ["24:00:00", "12:60:00", "12:00", "12:00:00Z", "12:00:00-5:00", "12:00:00-24:00", "noon", "12:00:00\n"]
BAD_ZONES = ["America/New York", "/UTC", "America//Chicago", "1America", "A/B/C/D", "Europe/Paris\n", "x" * 65]


CENTS = [
    (*DEFAULTS, "default_credit_limit_cents"), (*DEFAULTS, "default_late_fee_cents"),
    (*DEFAULTS, "default_payment_reversal_fee_cents"), (*TIER, "surcharge_start_inclusive_cents"),
    (*TIER, "surcharge_end_exclusive_cents"),
]  # fmt: skip
BAD_CENTS = [(-1, "minimum"), (1.5, "type"), ("100", "type"), (True, "type"), (INT64_MAX + 1, "format")]
CYCLE_COUNTS = [
    (*PROMO, "promo_len"), (*PROMO, "promo_purchase_window_len"), (*POST_PROMO, "post_promo_len"),
    (*POST_PROMO, "post_promo_am_len_range_inclusive_lower"), (*POST_PROMO, "post_promo_am_len_range_inclusive_upper"),
]  # fmt: skip
BAD_COUNTS = [(-1, "minimum"), (2.5, "type"), ("6", "type")]
LATE_FEE_COUNTS = [(*DUE, "delinquent_on_n_consecutive_late_fees"), (*DUE, "charge_off_on_n_consecutive_late_fees")]
BAD_LATE_FEE_COUNTS = [(0, "minimum"), (-3, "minimum"), ("2", "type"), (1.5, "type")]
PERCENTS = [
    (*PROMO, "promo_default_interest_rate_percent"), (*PROMO, "promo_min_pay_percent"),
    (*PROMO, "promo_apr_range_inclusive_lower"), (*PROMO, "promo_apr_range_inclusive_upper"),
    (*POST_PROMO, "post_promo_default_interest_rate_percent"), (*POST_PROMO, "post_promo_apr_range_inclusive_lower"),
    (*TIER, "percent_surcharge"),
]  # fmt: skip
BAD_PERCENTS = [(-0.01, "minimum"), (-5, "minimum"), ("3", "type"), (False, "type")]


def _bad(path: tuple[str | int, ...], values: list[Any], keyword: str) -> list[tuple[tuple[str | int, ...], Any, str]]:
    return [(path, value, keyword) for value in values]


BAD_VALUES = [
    # the intervals: a count and a unit, Canopy's way
    *_bad((*BILLING, "cycle_interval"), [*BAD_INTERVALS, "0 days", "000 months"], "pattern"),
    *_bad((*BILLING, "cycle_due_interval"), ["-5days", "- 5 days", "--5 days", "1000 days", "5"], "pattern"),
    *_bad((*BILLING, "first_cycle_interval"), BAD_INTERVALS, "pattern"),
    *_bad((*FEES, "late_fee_grace"), BAD_INTERVALS, "pattern"),
    *_bad((*FEES, "surcharge_fee_interval"), BAD_INTERVALS, "pattern"),
    *_bad((*BILLING, "close_of_business_time"), BAD_TIMES, "pattern"),
    *_bad((*LIFECYCLE, "interest_policies", "interest_calc_time"), BAD_TIMES, "pattern"),
    *_bad((*BILLING, "product_time_zone"), BAD_ZONES[:-1], "pattern"),
    (((*BILLING, "product_time_zone")), BAD_ZONES[-1], "maxLength"),
    # cents: integers >= 0 that a bigint holds; counts of cycles and of late fees; percentages >= 0
    *[(path, value, keyword) for path in CENTS for value, keyword in BAD_CENTS],
    *[(path, value, keyword) for path in CYCLE_COUNTS for value, keyword in BAD_COUNTS],
    *[(path, value, keyword) for path in LATE_FEE_COUNTS for value, keyword in BAD_LATE_FEE_COUNTS],
    *[(path, value, keyword) for path in PERCENTS for value, keyword in BAD_PERCENTS],
    # enums and booleans
    *_bad((*PROMO, "promo_min_pay_type"), ["PERCENT", "am", ""], "enum"),
    (((*PROMO, "promo_min_pay_type")), 1, "type"),
    *_bad((*POST_PROMO, "post_promo_min_pay_type"), ["MINIMUM", "Am"], "enum"),
    *_bad((*PROMO, "promo_interest_deferred"), ["true", 1, "yes"], "type"),
    # required members of a present object
    (BILLING, {"cycle_due_interval": "5 days"}, "required"),
    (DEFAULTS, {"default_late_fee_cents": 100}, "required"),
    ((*FEES, "default_surcharge_fee_structure"), [{"percent_surcharge": 1}], "required"),
    ((*FEES, "default_surcharge_fee_structure"), [{"surcharge_start_inclusive_cents": 1}], "required"),
    # objects and arrays of the wrong type, too many tiers
    *_bad(LIFECYCLE, ["monthly", [], 1], "type"),
    *_bad(BILLING, ["1 month", ["1 month"]], "type"),
    *_bad(PROMO, [True, "6"], "type"),
    *_bad(POST_PROMO, [[], 48], "type"),
    *_bad((*FEES, "default_surcharge_fee_structure"), [{"percent_surcharge": 1}, "1%"], "type"),
    (
        (*FEES, "default_surcharge_fee_structure"),
        [{"percent_surcharge": 1, "surcharge_start_inclusive_cents": n} for n in range(101)],
        "maxItems",
    ),
    # the product's own new fields
    *_bad(("product_overview", "product_color"), ["blue", "#12", "#1234", "#GGGGGG", "0000FF", "#0000FF\n"], "pattern"),
    (("product_overview", "product_color"), 255, "type"),
    (("external_product_id",), "", "minLength"),
    (("external_product_id",), "x" * 256, "maxLength"),
    *_bad(("external_product_id",), ["ext\n1", "ext\x00", "\x7f"], "pattern"),
    *_bad(("external_product_id",), [12, ["e"]], "type"),
    *_bad(("effective_at",), ["yesterday", "2021-02-30T00:00:00Z", "0001-01-01T00:00:00+01:00"], "format"),
    (("effective_at",), "9999-12-31T23:00:00-05:00", "format"),
    # NUL is refused in every string
    *_bad((*BILLING, "cycle_interval"), ["1 month\x00"], "pattern"),
    *_bad((*BILLING, "product_time_zone"), ["UTC\x00"], "pattern"),
]


@pytest.mark.parametrize(("path", "value", "keyword"), BAD_VALUES)
async def test_bad_values_are_422_at_their_field_and_store_nothing(
    api: ApiClient, pool: asyncpg.Pool, path: tuple[str | int, ...], value: Any, keyword: str
) -> None:
    details = assert_invalid(await api.http.post("/products", json=with_value(path, value)))
    found = {(d["instancePath"], d["keyword"]) for d in details}
    expected_path = pointer(path)
    if keyword == "required":  # named at the object (or the list's item) that lacks the member
        assert any(p.startswith(expected_path) and k == keyword for p, k in found), details
    else:
        assert (expected_path, keyword) in found, details
    assert await product_count(pool) == 0


@pytest.mark.parametrize("path", [(*BILLING, "cycle_interval"), (*DEFAULTS, "default_credit_limit_cents")])
async def test_a_missing_required_member_is_named(api: ApiClient, path: tuple[str | int, ...]) -> None:
    (problem,) = assert_invalid(await api.http.post("/products", json=with_value(path, ...)))
    assert problem["instancePath"] == pointer(path[:-1])
    assert problem["params"] == {"missingProperty": path[-1]}
    assert problem["message"] == f"must have required property {path[-1]}"


async def test_every_bad_field_is_listed_at_once(api: ApiClient) -> None:
    body = with_value((*BILLING, "cycle_interval"), "monthly")
    body["promotional_policies"]["promo_len"] = -1
    body["post_promotional_policies"]["post_promo_min_pay_type"] = "X"
    body["product_overview"]["product_color"] = "red"
    details = assert_invalid(await api.http.post("/products", json=body))
    assert {(d["instancePath"], d["keyword"]) for d in details} == {
        (pointer((*BILLING, "cycle_interval")), "pattern"),
        ("/promotional_policies/promo_len", "minimum"),
        ("/post_promotional_policies/post_promo_min_pay_type", "enum"),
        ("/product_overview/product_color", "pattern"),
    }


async def test_a_percentage_no_float_holds_is_422_at_its_field(api: ApiClient) -> None:
    text = httpx.Request("POST", "/", json=canopy_product()).content.decode()
    text = text.replace('"promo_default_interest_rate_percent":3', '"promo_default_interest_rate_percent":1e400')
    assert "1e400" in text
    response = await api.http.post("/products", content=text, headers={"Content-Type": "application/json"})
    (problem,) = assert_invalid(response)
    assert (problem["instancePath"], problem["keyword"]) == (
        "/promotional_policies/promo_default_interest_rate_percent",
        "type",
    )


async def test_whole_floats_are_integers_where_cents_are_asked(api: ApiClient) -> None:
    """JSON Schema's integer is any number without a fraction (OpenAPI 3.1 clients send 600000.0)."""
    created = ok(await api.http.post("/products", json=with_value((*DEFAULTS, "default_credit_limit_cents"), 6e5)))
    assert created["product_lifecycle_policies"]["default_attributes"]["default_credit_limit_cents"] == 600000


# --- external_product_id: unique in the organization ------------------------------------------------


async def test_taken_external_product_id_is_409_and_stores_nothing(api: ApiClient, pool: asyncpg.Pool) -> None:
    ok(await api.http.post("/products", json=canopy_product()))
    error = assert_error(await api.http.post("/products", json=canopy_product(product_id="prod-2")), 409, "conflict")
    assert (
        error["message"]
        == f"A product with external_product_id '{CANOPY_PRODUCT['external_product_id']}' already exists"
    )
    assert await product_count(pool) == 1


async def test_products_without_an_external_id_do_not_collide(api: ApiClient) -> None:
    for product_id in ("a", "b"):
        ok(await api.http.post("/products", json={"product_id": product_id, "product_overview": OVERVIEW}))
    assert len(ok(await api.http.get("/products"))["results"]) == 2


async def test_taken_product_id_still_names_the_product_id(api: ApiClient) -> None:
    ok(await api.http.post("/products", json=canopy_product()))
    error = assert_error(
        await api.http.post("/products", json=canopy_product(external_product_id="other")), 409, "conflict"
    )
    assert error["message"] == "A product with product_id 'prod-canopy' already exists"


# --- organizations ----------------------------------------------------------------------------------


async def test_another_organization_neither_sees_nor_uses_our_product(api: ApiClient, other_api: ApiClient) -> None:
    ok(await api.http.post("/products", json=CANOPY_PRODUCT))
    assert_error(await other_api.http.get("/products/prod-canopy"), 404, "not_found")
    assert ok(await other_api.http.get("/products"))["results"] == []
    by_external = await other_api.http.post(
        "/accounts", json={"external_product_id": CANOPY_PRODUCT["external_product_id"]}
    )
    assert_error(by_external, 404, "not_found")
    # Its own product may carry the same ids: unique per organization.
    ok(await other_api.http.post("/products", json=CANOPY_PRODUCT))
