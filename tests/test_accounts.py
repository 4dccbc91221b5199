"""Products, accounts, customer-account links and their cards over HTTP (ASGI), against a real PostgreSQL.

CONTRACT.md sections 4 (links from the customer's side) and 5 (products, accounts, cards, the
organization's Lithic config), and section 2's isolation between organizations.
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import httpx
import pytest

from canopy_svc.workers.cards import CardWorker
from tests.helpers import ApiClient, assert_error, assert_invalid, minimal_customer

PRODUCT_TYPES = [
    "REVOLVING", "INSTALLMENT", "MIXED_RATE_INSTALLMENT", "DEFERRED_INSTALLMENT",
    "FIXED_RATE_INSTALLMENT", "INVENTORY_FINANCING", "LOGISTICS_FINANCING",
]  # fmt: skip
CUSTOMER_FIELDS = {
    "customer_id", "name_prefix", "name_first", "name_middle", "name_last", "name_suffix",
    "phone_number", "address_line_one", "address_line_two", "address_city", "address_state",
    "address_zip", "address_country_code", "ssn", "international_customer_id", "email",
    "date_of_birth", "business_details", "created_at", "updated_at", "customer_type",
    "verification_status", "title", "passport", "customer_parent_id",
}  # fmt: skip
LINK_FIELDS = {"customer_account_role", "customer_account_external_id", "card_details"}
CARD_FIELDS = {
    "status", "token", "last_four", "state", "type", "memo", "spend_limit", "error", "lithic",
    "spend_limit_duration", "exp_month", "exp_year", "created", "hostname",
}  # fmt: skip
# Canopy's 2021 spec nests these under `lithic`; every card item carries them there too.
LITHIC_CARD_FIELDS = (
    "type", "state", "token", "last_four", "memo", "spend_limit", "spend_limit_duration", "exp_month", "exp_year",
    "created", "hostname",
)  # fmt: skip
BASE62_24 = re.compile(r"^[0-9A-Za-z]{24}$")
PROGRAM = "a5e38341-cc95-4a9b-a21c-751aeca67e9c"
CARD_CONFIG: dict[str, Any] = {
    "spend_limit": 8000000,
    "lithic": {
        "memo": "Primary College Card",
        "type": "MERCHANT_LOCKED",
        "state": "OPEN",
        "card_program_token": PROGRAM,
    },
}
LITHIC_KEY = "sk_live_abcdefghijkl1234"


# --- helpers -------------------------------------------------------------------------------------


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def issued_cards(response: httpx.Response) -> list[dict[str, Any]]:
    """POST .../cards answers an array of card items, as Canopy does."""
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    assert isinstance(body, list)
    return body


def assert_both_forms(card: dict[str, Any]) -> None:
    """A card item in both of Canopy's forms: the flat fields, and the same values nested under `lithic`."""
    assert set(card) == CARD_FIELDS
    assert card["lithic"] == {name: card[name] for name in LITHIC_CARD_FIELDS}


async def make_product(
    api: ApiClient, product_id: str | None = "prod-1", product_type: str = "REVOLVING", name: str = "Card"
) -> dict[str, Any]:
    body: dict[str, Any] = {"product_overview": {"product_name": name, "product_type": product_type}}
    if product_id is not None:
        body["product_id"] = product_id
    return ok(await api.http.post("/products", json=body))


async def make_account(
    api: ApiClient, account_id: str | None = "acc-1", product_id: str = "prod-1", **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"product_id": product_id, **extra}
    if account_id is not None:
        body["account_id"] = account_id
    return ok(await api.http.post("/accounts", json=body))


async def make_customer(api: ApiClient, customer_id: str, **overrides: Any) -> dict[str, Any]:
    return ok(await api.http.post("/customers", json=minimal_customer(customer_id=customer_id, **overrides)))


async def get_account(api: ApiClient, account_id: str) -> dict[str, Any]:
    return ok(await api.http.get(f"/accounts/{account_id}"))


def on_account(account: dict[str, Any], customer_id: str) -> dict[str, Any]:
    (found,) = [c for c in account["customers"] if c["customer_id"] == customer_id]
    return found


async def counts(pool: asyncpg.Pool) -> dict[str, int]:
    tables = ("customers", "accounts", "customer_account_links", "cards")
    return {table: int(await pool.fetchval(f"SELECT count(*) FROM {table}")) for table in tables}


async def issue_cards(pool: asyncpg.Pool, app: Any) -> int:
    """What the server's card worker would do: issue every due card (simulator: no Lithic key)."""
    worker = CardWorker(pool, None, app.resources.card_gateway)
    total = 0
    while handled := await worker.process_due():
        total += handled
    return total


async def walk(api: ApiClient, path: str, limit: int, id_of: Any) -> list[list[Any]]:
    """Follows paging.starting_after from the first page to the last; the ids of each page."""
    pages: list[list[Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["starting_after"] = cursor
        page = ok(await api.http.get(path, params=params))
        pages.append([id_of(row) for row in page["results"]])
        assert len(pages) <= 100, "paging never ends"
        if not page["paging"]["has_more"]:
            assert page["paging"]["starting_after"] is None
            return pages
        cursor = page["paging"]["starting_after"]
        assert cursor


# --- products ------------------------------------------------------------------------------------


async def test_create_product_answers_it_and_get_reads_it_back(api: ApiClient) -> None:
    created = await make_product(api, "prod-x", "INSTALLMENT", name="Home Improvement")
    assert created["product_id"] == "prod-x"
    assert created["product_overview"]["product_name"] == "Home Improvement"
    assert created["product_overview"]["product_type"] == "INSTALLMENT"
    assert created["created_at"]
    assert ok(await api.http.get("/products/prod-x")) == created


@pytest.mark.parametrize("product_type", PRODUCT_TYPES)
async def test_every_product_type_is_accepted(api: ApiClient, product_type: str) -> None:
    created = await make_product(api, f"p-{product_type}", product_type)
    assert created["product_overview"]["product_type"] == product_type


async def test_bad_product_type_is_422_enum(api: ApiClient, pool: asyncpg.Pool) -> None:
    response = await api.http.post(
        "/products",
        json={"product_id": "p", "product_overview": {"product_name": "Card", "product_type": "CREDIT_CARD"}},
    )
    (problem,) = assert_invalid(response)
    assert problem["instancePath"] == "/product_overview/product_type"
    assert problem["keyword"] == "enum"
    assert sorted(problem["params"]["allowedValues"]) == sorted(PRODUCT_TYPES)
    assert await pool.fetchval("SELECT count(*) FROM products") == 0


async def test_missing_product_overview_is_422_required(api: ApiClient, pool: asyncpg.Pool) -> None:
    (problem,) = assert_invalid(await api.http.post("/products", json={"product_id": "p"}))
    assert problem["instancePath"] == ""
    assert problem["keyword"] == "required"
    assert problem["params"] == {"missingProperty": "product_overview"}
    assert await pool.fetchval("SELECT count(*) FROM products") == 0


async def test_product_id_is_generated_when_absent(api: ApiClient) -> None:
    first = await make_product(api, None)
    second = await make_product(api, None)
    assert BASE62_24.match(first["product_id"]) and BASE62_24.match(second["product_id"])
    assert first["product_id"] != second["product_id"]
    assert ok(await api.http.get(f"/products/{first['product_id']}")) == first


async def test_taken_product_id_is_409_conflict(api: ApiClient, pool: asyncpg.Pool) -> None:
    await make_product(api, "prod-1", name="First")
    response = await api.http.post(
        "/products",
        json={"product_id": "prod-1", "product_overview": {"product_name": "Second", "product_type": "REVOLVING"}},
    )
    assert_error(response, 409, "conflict")
    assert await pool.fetchval("SELECT count(*) FROM products") == 1
    assert ok(await api.http.get("/products/prod-1"))["product_overview"]["product_name"] == "First"


async def test_get_unknown_product_is_404(api: ApiClient) -> None:
    assert_error(await api.http.get("/products/nope"), 404, "not_found")


async def test_products_paging_walks_every_product_once_in_order(api: ApiClient) -> None:
    ids = [f"prod-{n:02d}" for n in range(13)]
    for product_id in ids:
        await make_product(api, product_id)
    first = ok(await api.http.get("/products"))
    assert [p["product_id"] for p in first["results"]] == ids[:12]  # default limit 12
    assert first["paging"]["has_more"] is True
    pages = await walk(api, "/products", 5, lambda p: p["product_id"])
    assert [len(page) for page in pages] == [5, 5, 3]
    assert [product_id for page in pages for product_id in page] == ids
    # ending_before of the second page leads back to the first
    second = ok(
        await api.http.get(
            "/products",
            params={
                "limit": 5,
                "starting_after": ok(await api.http.get("/products?limit=5"))["paging"]["starting_after"],
            },
        )
    )
    back = ok(await api.http.get("/products", params={"limit": 5, "ending_before": second["paging"]["ending_before"]}))
    assert [p["product_id"] for p in back["results"]] == ids[:5]


# --- accounts ------------------------------------------------------------------------------------


async def test_account_with_unknown_product_is_404_and_stores_nothing(api: ApiClient, pool: asyncpg.Pool) -> None:
    error = assert_error(await api.http.post("/accounts", json={"product_id": "nope"}), 404, "not_found")
    assert error["message"] == "No product found with the provided product_id"
    assert (await counts(pool))["accounts"] == 0


async def test_create_account_answers_it(api: ApiClient) -> None:
    await make_product(api)
    created = await make_account(api, "acc-1", external_account_id="ext-1", summary={"credit_limit_cents": 500000})
    assert created["account_id"] == "acc-1"
    assert created["product_id"] == "prod-1"
    assert created["external_account_id"] == "ext-1"
    assert created["summary"]["credit_limit_cents"] == 500000
    assert created["account_overview"]["account_status"] == "ACTIVE"
    assert created["customers"] == []
    assert created["effective_at"] and created["created_at"] and created["updated_at"]
    assert await get_account(api, "acc-1") == created


async def test_account_without_summary_has_null_credit_limit(api: ApiClient) -> None:
    await make_product(api)
    created = await make_account(api)
    assert created["summary"]["credit_limit_cents"] is None
    assert created["external_account_id"] is None


async def test_account_id_is_generated_when_absent(api: ApiClient) -> None:
    await make_product(api)
    first = await make_account(api, None)
    second = await make_account(api, None)
    assert BASE62_24.match(first["account_id"]) and BASE62_24.match(second["account_id"])
    assert first["account_id"] != second["account_id"]
    assert await get_account(api, first["account_id"]) == first


async def test_taken_account_id_is_409(api: ApiClient, pool: asyncpg.Pool) -> None:
    await make_product(api)
    await make_account(api, "acc-1")
    assert_error(
        await api.http.post("/accounts", json={"account_id": "acc-1", "product_id": "prod-1"}), 409, "conflict"
    )
    assert (await counts(pool))["accounts"] == 1


async def test_taken_external_account_id_is_409(api: ApiClient, pool: asyncpg.Pool) -> None:
    await make_product(api)
    await make_account(api, "acc-1", external_account_id="ext-1")
    response = await api.http.post(
        "/accounts", json={"account_id": "acc-2", "product_id": "prod-1", "external_account_id": "ext-1"}
    )
    assert_error(response, 409, "conflict")
    assert_error(await api.http.get("/accounts/acc-2"), 404, "not_found")
    # accounts without an external id do not collide with one another
    await make_account(api, "acc-3")
    await make_account(api, "acc-4")
    assert (await counts(pool))["accounts"] == 3


async def test_get_unknown_account_is_404(api: ApiClient) -> None:
    assert_error(await api.http.get("/accounts/nope"), 404, "not_found")


async def test_accounts_keyset_paging_visits_each_account_once(api: ApiClient) -> None:
    await make_product(api)
    ids = [f"acc-{n:02d}" for n in range(25)]
    for account_id in ids:
        await make_account(api, account_id)
    pages = await walk(api, "/accounts", 10, lambda a: a["account_id"])
    assert [len(page) for page in pages] == [10, 10, 5]
    assert [account_id for page in pages for account_id in page] == ids


# --- links ---------------------------------------------------------------------------------------


async def test_assign_to_accounts_on_create_links_with_defaults(api: ApiClient) -> None:
    await make_product(api)
    await make_account(api, "acc-1")
    await make_account(api, "acc-2")
    await make_customer(
        api,
        "cust-1",
        assign_to_accounts=[
            {"account_id": "acc-1"},
            {"account_id": "acc-2", "customer_account_role": "SECONDARY", "customer_account_external_id": "x-2"},
        ],
    )
    first = on_account(await get_account(api, "acc-1"), "cust-1")
    assert first["customer_account_role"] == "PRIMARY"
    assert BASE62_24.match(first["customer_account_external_id"])
    second = on_account(await get_account(api, "acc-2"), "cust-1")
    assert second["customer_account_role"] == "SECONDARY"
    assert second["customer_account_external_id"] == "x-2"


async def test_account_customers_carry_every_customer_field_and_the_link(api: ApiClient) -> None:
    await make_product(api)
    await make_account(api, "acc-1")
    await make_customer(
        api,
        "cust-1",
        name_middle="Grace",
        assign_to_accounts=[
            {"account_id": "acc-1", "customer_account_role": "SECONDARY", "customer_account_external_id": "e-1"}
        ],
    )
    customer = ok(await api.http.get("/customers/cust-1"))
    (seen,) = (await get_account(api, "acc-1"))["customers"]
    assert set(seen) == CUSTOMER_FIELDS | LINK_FIELDS
    for name in CUSTOMER_FIELDS:
        assert seen[name] == customer[name], name
    assert seen["customer_account_role"] == "SECONDARY"
    assert seen["customer_account_external_id"] == "e-1"
    assert seen["card_details"] == []


async def test_several_primary_customers_on_one_account(api: ApiClient) -> None:
    await make_product(api)
    await make_account(api, "acc-1")
    for customer_id in ("cust-1", "cust-2", "cust-3"):
        await make_customer(api, customer_id, assign_to_accounts=[{"account_id": "acc-1"}])
    account = await get_account(api, "acc-1")
    assert [c["customer_id"] for c in account["customers"]] == ["cust-1", "cust-2", "cust-3"]
    assert {c["customer_account_role"] for c in account["customers"]} == {"PRIMARY"}
    external_ids = {c["customer_account_external_id"] for c in account["customers"]}
    assert len(external_ids) == 3  # generated ones differ


async def test_same_external_id_twice_on_one_account_is_409_and_stores_nothing(
    api: ApiClient, pool: asyncpg.Pool
) -> None:
    await make_product(api)
    await make_account(api, "acc-1")
    await make_account(api, "acc-2")
    await make_customer(
        api, "cust-1", assign_to_accounts=[{"account_id": "acc-1", "customer_account_external_id": "shared"}]
    )
    before = await counts(pool)
    response = await api.http.post(
        "/customers",
        json=minimal_customer(
            customer_id="cust-2",
            assign_to_accounts=[
                {"account_id": "acc-2", "customer_account_issuer_processor_config": CARD_CONFIG},
                {
                    "account_id": "acc-1",
                    "customer_account_external_id": "shared",
                    "customer_account_issuer_processor_config": CARD_CONFIG,
                },
            ],
        ),
    )
    assert_error(response, 409, "conflict")
    assert await counts(pool) == before
    assert_error(await api.http.get("/customers/cust-2"), 404, "not_found")
    assert (await get_account(api, "acc-2"))["customers"] == []


async def test_same_external_id_on_two_accounts_is_fine(api: ApiClient) -> None:
    await make_product(api)
    await make_account(api, "acc-1")
    await make_account(api, "acc-2")
    await make_customer(
        api, "cust-1", assign_to_accounts=[{"account_id": "acc-1", "customer_account_external_id": "shared"}]
    )
    await make_customer(
        api, "cust-2", assign_to_accounts=[{"account_id": "acc-2", "customer_account_external_id": "shared"}]
    )
    for account_id, customer_id in (("acc-1", "cust-1"), ("acc-2", "cust-2")):
        link = on_account(await get_account(api, account_id), customer_id)
        assert link["customer_account_external_id"] == "shared"


async def test_unknown_account_in_assign_to_accounts_is_404_naming_it_and_stores_nothing(
    api: ApiClient, pool: asyncpg.Pool
) -> None:
    await make_product(api)
    await make_account(api, "acc-1")
    response = await api.http.post(
        "/customers",
        json=minimal_customer(
            customer_id="cust-1",
            assign_to_accounts=[
                {"account_id": "acc-1", "customer_account_issuer_processor_config": CARD_CONFIG},
                {"account_id": "acc-missing"},
            ],
        ),
    )
    error = assert_error(response, 404, "not_found")
    assert "acc-missing" in error["message"]
    assert await counts(pool) == {"customers": 0, "accounts": 1, "customer_account_links": 0, "cards": 0}


async def test_assign_customers_on_create_account(api: ApiClient) -> None:
    await make_product(api)
    await make_customer(api, "cust-1")
    await make_customer(api, "cust-2")
    created = await make_account(
        api,
        "acc-1",
        assign_customers=[
            {"customer_id": "cust-1"},
            {"customer_id": "cust-2", "customer_account_role": "SECONDARY", "customer_account_external_id": "e-2"},
        ],
    )
    assert [c["customer_id"] for c in created["customers"]] == ["cust-1", "cust-2"]
    first, second = created["customers"]
    assert set(first) == CUSTOMER_FIELDS | LINK_FIELDS
    assert first["customer_account_role"] == "PRIMARY"
    assert BASE62_24.match(first["customer_account_external_id"])
    assert second["customer_account_role"] == "SECONDARY"
    assert second["customer_account_external_id"] == "e-2"
    assert await get_account(api, "acc-1") == created


async def test_assign_customers_same_external_id_is_409_and_creates_no_account(
    api: ApiClient, pool: asyncpg.Pool
) -> None:
    await make_product(api)
    await make_customer(api, "cust-1")
    await make_customer(api, "cust-2")
    before = await counts(pool)
    response = await api.http.post(
        "/accounts",
        json={
            "account_id": "acc-1",
            "product_id": "prod-1",
            "assign_customers": [
                {
                    "customer_id": "cust-1",
                    "customer_account_external_id": "same",
                    "customer_account_issuer_processor_config": CARD_CONFIG,
                },
                {"customer_id": "cust-2", "customer_account_external_id": "same"},
            ],
        },
    )
    assert_error(response, 409, "conflict")
    assert await counts(pool) == before
    assert_error(await api.http.get("/accounts/acc-1"), 404, "not_found")


async def test_unknown_customer_in_assign_customers_is_404_and_creates_no_account(
    api: ApiClient, pool: asyncpg.Pool
) -> None:
    await make_product(api)
    await make_customer(api, "cust-1")
    before = await counts(pool)
    response = await api.http.post(
        "/accounts",
        json={
            "account_id": "acc-1",
            "product_id": "prod-1",
            "assign_customers": [
                {"customer_id": "cust-1", "customer_account_issuer_processor_config": CARD_CONFIG},
                {"customer_id": "cust-missing"},
            ],
        },
    )
    error = assert_error(response, 404, "not_found")
    assert "cust-missing" in error["message"]
    assert await counts(pool) == before
    assert_error(await api.http.get("/accounts/acc-1"), 404, "not_found")


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_update_assign_to_accounts_adds_links(api: ApiClient, method: str) -> None:
    await make_product(api)
    await make_account(api, "acc-1")
    await make_account(api, "acc-2")
    await make_customer(api, "cust-1", assign_to_accounts=[{"account_id": "acc-1"}])
    kept = on_account(await get_account(api, "acc-1"), "cust-1")
    ok(
        await api.http.request(
            method,
            "/customers/cust-1",
            json={
                "assign_to_accounts": [
                    {"account_id": "acc-2", "customer_account_role": "SECONDARY", "customer_account_external_id": "new"}
                ]
            },
        )
    )
    added = on_account(await get_account(api, "acc-2"), "cust-1")
    assert added["customer_account_role"] == "SECONDARY"
    assert added["customer_account_external_id"] == "new"
    # the existing link is untouched
    still = on_account(await get_account(api, "acc-1"), "cust-1")
    assert still["customer_account_role"] == kept["customer_account_role"] == "PRIMARY"
    assert still["customer_account_external_id"] == kept["customer_account_external_id"]


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_update_assign_to_accounts_changes_an_existing_link(
    api: ApiClient, pool: asyncpg.Pool, method: str
) -> None:
    await make_product(api)
    await make_account(api, "acc-1")
    await make_customer(
        api,
        "cust-1",
        assign_to_accounts=[
            {"account_id": "acc-1", "customer_account_role": "PRIMARY", "customer_account_external_id": "old"}
        ],
    )
    ok(
        await api.http.request(
            method,
            "/customers/cust-1",
            json={
                "assign_to_accounts": [
                    {"account_id": "acc-1", "customer_account_role": "SECONDARY", "customer_account_external_id": "new"}
                ]
            },
        )
    )
    (link,) = (await get_account(api, "acc-1"))["customers"]
    assert link["customer_account_role"] == "SECONDARY"
    assert link["customer_account_external_id"] == "new"
    assert (await counts(pool))["customer_account_links"] == 1


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_update_to_a_taken_external_id_is_409_and_changes_nothing(
    api: ApiClient, pool: asyncpg.Pool, method: str
) -> None:
    await make_product(api)
    await make_account(api, "acc-1")
    await make_account(api, "acc-2")
    await make_customer(
        api, "cust-1", assign_to_accounts=[{"account_id": "acc-1", "customer_account_external_id": "taken"}]
    )
    await make_customer(
        api, "cust-2", assign_to_accounts=[{"account_id": "acc-1", "customer_account_external_id": "mine"}]
    )
    customer_before = ok(await api.http.get("/customers/cust-2"))
    account_before = await get_account(api, "acc-1")
    counts_before = await counts(pool)
    response = await api.http.request(
        method,
        "/customers/cust-2",
        json={
            "name_first": "Changed",
            "assign_to_accounts": [
                {"account_id": "acc-2", "customer_account_issuer_processor_config": CARD_CONFIG},
                {"account_id": "acc-1", "customer_account_role": "SECONDARY", "customer_account_external_id": "taken"},
            ],
        },
    )
    assert_error(response, 409, "conflict")
    assert ok(await api.http.get("/customers/cust-2")) == customer_before
    assert await get_account(api, "acc-1") == account_before
    assert await counts(pool) == counts_before


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_update_with_unknown_account_is_404_naming_it(api: ApiClient, pool: asyncpg.Pool, method: str) -> None:
    await make_product(api)
    await make_account(api, "acc-1")
    await make_customer(api, "cust-1")
    before = await counts(pool)
    response = await api.http.request(
        method,
        "/customers/cust-1",
        json={
            "assign_to_accounts": [
                {"account_id": "acc-1", "customer_account_issuer_processor_config": CARD_CONFIG},
                {"account_id": "acc-missing"},
            ]
        },
    )
    assert "acc-missing" in assert_error(response, 404, "not_found")["message"]
    assert await counts(pool) == before


# --- a customer's accounts, and every link ---------------------------------------------------------


async def test_customer_accounts_lists_that_customers_accounts(api: ApiClient) -> None:
    await make_product(api)
    for account_id in ("acc-1", "acc-2", "acc-3"):
        await make_account(api, account_id)
    await make_customer(api, "cust-1", assign_to_accounts=[{"account_id": "acc-3"}, {"account_id": "acc-1"}])
    await make_customer(api, "cust-2", assign_to_accounts=[{"account_id": "acc-2"}])
    await make_customer(api, "cust-3")
    page = ok(await api.http.get("/customers/cust-1/accounts"))
    assert sorted(a["account_id"] for a in page["results"]) == ["acc-1", "acc-3"]
    assert page["paging"]["has_more"] is False
    for account in page["results"]:
        assert account == await get_account(api, account["account_id"])
    pages = await walk(api, "/customers/cust-1/accounts", 1, lambda a: a["account_id"])
    assert sorted(account_id for p in pages for account_id in p) == ["acc-1", "acc-3"]
    assert [len(p) for p in pages] == [1, 1]
    assert ok(await api.http.get("/customers/cust-3/accounts"))["results"] == []


async def test_customer_accounts_of_unknown_customer_is_404(api: ApiClient) -> None:
    assert_error(await api.http.get("/customers/nope/accounts"), 404, "not_found")


async def test_links_listing_is_one_row_per_link(api: ApiClient) -> None:
    await make_product(api)
    await make_account(api, "acc-1", external_account_id="ext-1", summary={"credit_limit_cents": 100})
    await make_account(api, "acc-2")
    await make_customer(
        api,
        "cust-1",
        assign_to_accounts=[
            {"account_id": "acc-1", "customer_account_role": "SECONDARY", "customer_account_external_id": "e-1"},
            {"account_id": "acc-2"},
        ],
    )
    await make_customer(api, "cust-2", assign_to_accounts=[{"account_id": "acc-1"}])
    await make_customer(api, "cust-3")  # no link: no row
    page = ok(await api.http.get("/customers/accounts"))
    rows = page["results"]
    assert sorted((r["customer_id"], r["account"]["account_id"]) for r in rows) == [
        ("cust-1", "acc-1"),
        ("cust-1", "acc-2"),
        ("cust-2", "acc-1"),
    ]
    customer = ok(await api.http.get("/customers/cust-1"))
    (row,) = [r for r in rows if r["customer_id"] == "cust-1" and r["account"]["account_id"] == "acc-1"]
    assert CUSTOMER_FIELDS | {"customer_account_role", "customer_account_external_id", "account"} <= set(row)
    for name in CUSTOMER_FIELDS:
        assert row[name] == customer[name], name
    assert row["customer_account_role"] == "SECONDARY"
    assert row["customer_account_external_id"] == "e-1"
    assert row["account"]["external_account_id"] == "ext-1"
    assert row["account"]["product_id"] == "prod-1"
    assert row["account"]["summary"]["credit_limit_cents"] == 100


async def test_links_listing_default_limit_is_30(api: ApiClient) -> None:
    await make_product(api)
    accounts = [f"acc-{n}" for n in range(5)]
    for account_id in accounts:
        await make_account(api, account_id)
    for n in range(7):
        await make_customer(api, f"cust-{n}", assign_to_accounts=[{"account_id": a} for a in accounts])
    first = ok(await api.http.get("/customers/accounts"))
    assert len(first["results"]) == 30
    assert first["paging"]["has_more"] is True
    second = ok(await api.http.get("/customers/accounts", params={"starting_after": first["paging"]["starting_after"]}))
    assert len(second["results"]) == 5
    assert second["paging"]["has_more"] is False
    pairs = [(r["customer_id"], r["account"]["account_id"]) for r in first["results"] + second["results"]]
    assert sorted(pairs) == sorted((f"cust-{n}", a) for n in range(7) for a in accounts)


# --- cards ---------------------------------------------------------------------------------------


async def linked(
    api: ApiClient, config: dict[str, Any] | None = CARD_CONFIG, account_id: str = "acc-1", customer_id: str = "cust-1"
) -> None:
    """A product, an account and a customer on it (with `config` as its card config)."""
    if (await api.http.get("/products/prod-1")).status_code == 404:
        await make_product(api)
    if (await api.http.get(f"/accounts/{account_id}")).status_code == 404:
        await make_account(api, account_id)
    item: dict[str, Any] = {"account_id": account_id}
    if config is not None:
        item["customer_account_issuer_processor_config"] = config
    await make_customer(api, customer_id, assign_to_accounts=[item])


async def cards_of(api: ApiClient, account_id: str = "acc-1", customer_id: str = "cust-1") -> list[dict[str, Any]]:
    details: list[dict[str, Any]] = on_account(await get_account(api, account_id), customer_id)["card_details"]
    return details


async def test_a_card_request_repeated_with_its_idempotency_key_makes_one_card(
    api: ApiClient, pool: asyncpg.Pool
) -> None:
    await linked(api)
    headers = {"Idempotency-Key": "card-once"}
    first = await api.http.post("/accounts/acc-1/customers/cust-1/cards", json={}, headers=headers)
    assert first.status_code == 200, first.text
    again = await api.http.post("/accounts/acc-1/customers/cust-1/cards", json={}, headers=headers)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert (await counts(pool))["cards"] == 2  # the link's own card and this one, not a third


async def test_link_with_lithic_config_gets_a_pending_card_then_an_issued_one(
    api: ApiClient, pool: asyncpg.Pool, app: Any
) -> None:
    await linked(api)
    (card,) = await cards_of(api)
    assert_both_forms(card)
    assert card["status"] == "PENDING"
    assert card["token"] is None and card["last_four"] is None
    assert card["type"] == "MERCHANT_LOCKED"
    assert card["memo"] == "Primary College Card"
    assert card["state"] == "OPEN"
    assert card["spend_limit"] == 8000000
    assert (await counts(pool))["cards"] == 1

    assert await issue_cards(pool, app) == 1
    (card,) = await cards_of(api)
    assert card["status"] == "ISSUED"
    assert isinstance(card["token"], str) and card["token"]
    assert re.fullmatch(r"[0-9]{4}", card["last_four"])
    assert card["type"] == "MERCHANT_LOCKED" and card["state"] == "OPEN" and card["spend_limit"] == 8000000
    assert card["error"] is None
    (row,) = ok(await api.http.get("/customers/accounts"))["results"]
    assert row["card_details"] == [card]


async def test_paused_lithic_state_is_echoed(api: ApiClient, pool: asyncpg.Pool, app: Any) -> None:
    await linked(api, {"lithic": {"type": "SINGLE_USE", "state": "PAUSED"}})
    (card,) = await cards_of(api)
    assert (card["status"], card["type"], card["state"], card["spend_limit"]) == (
        "PENDING",
        "SINGLE_USE",
        "PAUSED",
        None,
    )
    await issue_cards(pool, app)
    (card,) = await cards_of(api)
    assert (card["status"], card["state"]) == ("ISSUED", "PAUSED")


@pytest.mark.parametrize("config", [None, {"spend_limit": 100}], ids=["no-config", "no-lithic"])
async def test_link_without_lithic_config_has_no_card(
    api: ApiClient, pool: asyncpg.Pool, app: Any, config: dict[str, Any] | None
) -> None:
    await linked(api, config)
    assert await cards_of(api) == []
    assert await issue_cards(pool, app) == 0
    assert (await counts(pool))["cards"] == 0


async def test_assign_customers_with_lithic_config_answers_a_pending_card(api: ApiClient, pool: asyncpg.Pool) -> None:
    await make_product(api)
    await make_customer(api, "cust-1")
    created = await make_account(
        api,
        "acc-1",
        assign_customers=[{"customer_id": "cust-1", "customer_account_issuer_processor_config": CARD_CONFIG}],
    )
    (customer,) = created["customers"]
    (card,) = customer["card_details"]
    assert (card["status"], card["type"], card["memo"]) == ("PENDING", "MERCHANT_LOCKED", "Primary College Card")
    assert (await counts(pool))["cards"] == 1


async def test_post_cards_issues_another_pending_card(api: ApiClient, pool: asyncpg.Pool, app: Any) -> None:
    await linked(api)
    await issue_cards(pool, app)
    (card,) = issued_cards(await api.http.post("/accounts/acc-1/customers/cust-1/cards", json={}))
    assert_both_forms(card)
    assert card["status"] == "PENDING"
    # what the body leaves out comes from the link's settings
    assert (card["type"], card["memo"], card["spend_limit"]) == ("MERCHANT_LOCKED", "Primary College Card", 8000000)
    first, second = await cards_of(api)
    assert first["status"] == "ISSUED" and second == card
    await issue_cards(pool, app)
    first_again, second = await cards_of(api)
    assert first_again == first
    assert second["status"] == "ISSUED" and second["token"] != first["token"]


async def test_every_route_answers_card_items_in_both_forms(api: ApiClient, pool: asyncpg.Pool, app: Any) -> None:
    await make_product(api)
    await make_customer(api, "cust-1")
    created = await make_account(
        api,
        "acc-1",
        assign_customers=[{"customer_id": "cust-1", "customer_account_issuer_processor_config": CARD_CONFIG}],
    )
    (pending,) = on_account(created, "cust-1")["card_details"]  # POST /accounts
    assert_both_forms(pending)
    assert pending["lithic"] == {
        "type": "MERCHANT_LOCKED", "state": "OPEN", "token": None, "last_four": None, "memo": "Primary College Card",
        "spend_limit": 8000000, "spend_limit_duration": None, "exp_month": None, "exp_year": None, "created": None,
        "hostname": None,
    }  # fmt: skip
    await issue_cards(pool, app)
    (issued,) = await cards_of(api)
    assert_both_forms(issued)
    assert issued["lithic"]["token"] == issued["token"] and re.fullmatch(r"[0-9]{4}", issued["lithic"]["last_four"])
    listings = {
        "GET /accounts": ok(await api.http.get("/accounts"))["results"],
        "GET /customers/cust-1/accounts": ok(await api.http.get("/customers/cust-1/accounts"))["results"],
    }
    for route, accounts in listings.items():
        (account,) = accounts
        assert on_account(account, "cust-1")["card_details"] == [issued], route
    (row,) = ok(await api.http.get("/customers/accounts"))["results"]
    assert row["card_details"] == [issued]
    (another,) = issued_cards(await api.http.post("/accounts/acc-1/customers/cust-1/cards", json={}))
    assert_both_forms(another)
    await issue_cards(pool, app)  # PUT changes the newest card, once issued
    changed = ok(await api.http.put("/accounts/acc-1/customers/cust-1/cards", json={"state": "PAUSED"}))
    assert_both_forms(changed)


async def test_post_cards_body_overrides_the_link_settings(api: ApiClient) -> None:
    await linked(api)
    (card,) = issued_cards(
        await api.http.post(
            "/accounts/acc-1/customers/cust-1/cards",
            json={"spend_limit": 25, "lithic": {"type": "SINGLE_USE", "memo": "One-off"}},
        )
    )
    assert (card["status"], card["type"], card["memo"], card["spend_limit"]) == ("PENDING", "SINGLE_USE", "One-off", 25)


async def test_post_cards_for_a_customer_not_on_the_account_is_404(api: ApiClient, pool: asyncpg.Pool) -> None:
    await linked(api)
    await make_account(api, "acc-2")
    await make_customer(api, "cust-2")
    before = await counts(pool)
    for path in (
        "/accounts/acc-2/customers/cust-1/cards",
        "/accounts/acc-1/customers/cust-2/cards",
        "/accounts/nope/customers/cust-1/cards",
        "/accounts/acc-1/customers/nope/cards",
    ):
        assert_error(await api.http.post(path, json={}), 404, "not_found")
    assert await counts(pool) == before


async def test_put_cards_pauses_an_issued_card(api: ApiClient, pool: asyncpg.Pool, app: Any) -> None:
    await linked(api)
    await issue_cards(pool, app)
    (issued,) = await cards_of(api)
    card = ok(await api.http.put("/accounts/acc-1/customers/cust-1/cards", json={"state": "PAUSED"}))
    assert_both_forms(card)
    assert card["state"] == "PAUSED" and card["lithic"]["state"] == "PAUSED"
    assert card["status"] == "ISSUED" and card["token"] == issued["token"]
    assert card["spend_limit"] == issued["spend_limit"]
    assert (await cards_of(api)) == [card]
    card = ok(await api.http.put("/accounts/acc-1/customers/cust-1/cards", json={"state": "OPEN"}))
    assert card["state"] == "OPEN"


async def test_put_cards_changes_the_spend_limit(api: ApiClient, pool: asyncpg.Pool, app: Any) -> None:
    await linked(api)
    await issue_cards(pool, app)
    card = ok(await api.http.put("/accounts/acc-1/customers/cust-1/cards", json={"spend_limit": 1234}))
    assert card["spend_limit"] == 1234 and card["state"] == "OPEN"
    assert (await cards_of(api))[0]["spend_limit"] == 1234


async def test_closed_card_is_final(api: ApiClient, pool: asyncpg.Pool, app: Any) -> None:
    await linked(api)
    await issue_cards(pool, app)
    card = ok(await api.http.put("/accounts/acc-1/customers/cust-1/cards", json={"state": "CLOSED"}))
    assert card["state"] == "CLOSED"
    for change in ({"state": "OPEN"}, {"state": "PAUSED"}, {"state": "CLOSED"}, {"spend_limit": 5}):
        assert_error(await api.http.put("/accounts/acc-1/customers/cust-1/cards", json=change), 409, "conflict")
    (card,) = await cards_of(api)
    assert card["state"] == "CLOSED" and card["spend_limit"] == 8000000


async def test_put_cards_when_the_newest_card_is_pending_is_409(api: ApiClient, pool: asyncpg.Pool, app: Any) -> None:
    await linked(api)
    assert_error(
        await api.http.put("/accounts/acc-1/customers/cust-1/cards", json={"state": "PAUSED"}), 409, "conflict"
    )
    await issue_cards(pool, app)
    issued_cards(await api.http.post("/accounts/acc-1/customers/cust-1/cards", json={}))
    assert_error(
        await api.http.put("/accounts/acc-1/customers/cust-1/cards", json={"state": "PAUSED"}), 409, "conflict"
    )
    assert [c["state"] for c in await cards_of(api)] == ["OPEN", "OPEN"]


async def test_put_cards_with_an_empty_body_is_422(api: ApiClient, pool: asyncpg.Pool, app: Any) -> None:
    await linked(api)
    await issue_cards(pool, app)
    assert_invalid(await api.http.put("/accounts/acc-1/customers/cust-1/cards", json={}))


async def test_put_cards_spend_limit_zero_is_422_minimum(api: ApiClient, pool: asyncpg.Pool, app: Any) -> None:
    await linked(api)
    await issue_cards(pool, app)
    (problem,) = assert_invalid(await api.http.put("/accounts/acc-1/customers/cust-1/cards", json={"spend_limit": 0}))
    assert problem["instancePath"] == "/spend_limit"
    assert problem["keyword"] == "minimum"
    assert (await cards_of(api))[0]["spend_limit"] == 8000000


async def test_put_cards_bad_state_is_422_enum(api: ApiClient, pool: asyncpg.Pool, app: Any) -> None:
    await linked(api)
    await issue_cards(pool, app)
    (problem,) = assert_invalid(await api.http.put("/accounts/acc-1/customers/cust-1/cards", json={"state": "FROZEN"}))
    assert (problem["instancePath"], problem["keyword"]) == ("/state", "enum")


async def test_put_cards_without_a_link_or_a_card_is_404(api: ApiClient) -> None:
    await linked(api, None)
    await make_customer(api, "cust-2")
    for path in (
        "/accounts/acc-1/customers/cust-1/cards",  # on the account, but no card
        "/accounts/acc-1/customers/cust-2/cards",
        "/accounts/nope/customers/cust-1/cards",
    ):
        assert_error(await api.http.put(path, json={"state": "PAUSED"}), 404, "not_found")


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_adding_a_lithic_config_to_an_existing_link_issues_one_card(
    api: ApiClient, pool: asyncpg.Pool, method: str
) -> None:
    await linked(api, None)
    body = {"assign_to_accounts": [{"account_id": "acc-1", "customer_account_issuer_processor_config": CARD_CONFIG}]}
    ok(await api.http.request(method, "/customers/cust-1", json=body))
    (card,) = await cards_of(api)
    assert (card["status"], card["type"], card["spend_limit"]) == ("PENDING", "MERCHANT_LOCKED", 8000000)
    ok(await api.http.request(method, "/customers/cust-1", json=body))  # the link has a card already
    assert len(await cards_of(api)) == 1
    assert (await counts(pool))["customer_account_links"] == 1


@pytest.mark.parametrize(
    ("body", "path", "keyword"),
    [
        ({"lithic": {"state": "CLOSED"}}, "/lithic/state", "enum"),
        ({"lithic": {"type": "DIGITAL_WALLET"}}, "/lithic/type", "enum"),
        ({"lithic": {"card_program_token": "not-a-uuid"}}, "/lithic/card_program_token", "pattern"),
        ({"spend_limit": 0}, "/spend_limit", "minimum"),
    ],
)
async def test_post_cards_refuses_bad_values(
    api: ApiClient, pool: asyncpg.Pool, body: dict[str, Any], path: str, keyword: str
) -> None:
    await linked(api)
    (problem,) = assert_invalid(await api.http.post("/accounts/acc-1/customers/cust-1/cards", json=body))
    assert (problem["instancePath"], problem["keyword"]) == (path, keyword)
    assert (await counts(pool))["cards"] == 1


# --- the organization's Lithic config ------------------------------------------------------------


async def test_issuer_processors_start_empty(api: ApiClient) -> None:
    assert ok(await api.http.get("/organization/issuer_processors")) == {"lithic_config": None}


async def test_lithic_key_is_masked_and_encrypted(api: ApiClient, pool: asyncpg.Pool) -> None:
    response = await api.http.put(
        "/organization/issuer_processors",
        json={"lithic_config": {"api_key": LITHIC_KEY, "base_url": "https://sandbox.lithic.com"}},
    )
    answer = ok(response)
    assert LITHIC_KEY not in response.text
    assert answer["lithic_config"]["base_url"] == "https://sandbox.lithic.com"
    masked = answer["lithic_config"]["api_key"]
    assert isinstance(masked, str) and masked != LITHIC_KEY and masked.endswith("1234")
    read = await api.http.get("/organization/issuer_processors")
    assert LITHIC_KEY not in read.text
    assert ok(read) == answer
    stored = await pool.fetchval("SELECT lithic_api_key_encrypted FROM organizations WHERE id = $1", api.org_id)
    assert stored is not None
    assert LITHIC_KEY.encode() not in bytes(stored)
    row = await pool.fetchrow("SELECT * FROM organizations WHERE id = $1", api.org_id)
    assert row is not None
    for value in row.values():
        if isinstance(value, str | bytes):
            assert LITHIC_KEY not in (value.decode("latin-1") if isinstance(value, bytes) else value)


@pytest.mark.parametrize("base_url", ["http://sandbox.lithic.com", "http://10.0.0.5:8080", "ftp://lithic.com"])
async def test_lithic_base_url_must_be_https_off_loopback(api: ApiClient, pool: asyncpg.Pool, base_url: str) -> None:
    response = await api.http.put(
        "/organization/issuer_processors", json={"lithic_config": {"api_key": LITHIC_KEY, "base_url": base_url}}
    )
    details = assert_invalid(response)
    assert {d["instancePath"] for d in details} == {"/lithic_config/base_url"}
    assert LITHIC_KEY not in response.text
    assert await pool.fetchval("SELECT lithic_api_key_encrypted FROM organizations WHERE id = $1", api.org_id) is None


async def test_lithic_base_url_may_be_plain_http_to_loopback(api: ApiClient) -> None:
    answer = ok(
        await api.http.put(
            "/organization/issuer_processors",
            json={"lithic_config": {"api_key": LITHIC_KEY, "base_url": "http://127.0.0.1:8089"}},
        )
    )
    assert answer["lithic_config"]["base_url"] == "http://127.0.0.1:8089"


async def test_lithic_config_null_removes_it(api: ApiClient, pool: asyncpg.Pool) -> None:
    ok(await api.http.put("/organization/issuer_processors", json={"lithic_config": {"api_key": LITHIC_KEY}}))
    assert ok(await api.http.get("/organization/issuer_processors"))["lithic_config"] is not None
    assert ok(await api.http.put("/organization/issuer_processors", json={"lithic_config": None})) == {
        "lithic_config": None
    }
    assert ok(await api.http.get("/organization/issuer_processors")) == {"lithic_config": None}
    row = await pool.fetchrow(
        "SELECT lithic_api_key_encrypted, lithic_api_key_last_four, lithic_base_url FROM organizations WHERE id = $1",
        api.org_id,
    )
    assert row is not None and set(row.values()) == {None}


# --- organizations are isolated ------------------------------------------------------------------


async def test_other_org_cannot_see_our_product_account_or_cards(
    api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool, app: Any
) -> None:
    await linked(api)
    await issue_cards(pool, app)
    before = await counts(pool)
    # answered exactly as an id that exists nowhere: nothing tells the product exists
    unknown = assert_error(await other_api.http.get("/products/never-made"), 404, "not_found")
    hidden = assert_error(await other_api.http.get("/products/prod-1"), 404, "not_found")
    assert hidden["message"] == unknown["message"].replace("never-made", "prod-1")
    assert_error(await other_api.http.get("/accounts/acc-1"), 404, "not_found")
    assert_error(await other_api.http.get("/customers/cust-1/accounts"), 404, "not_found")
    assert_error(await other_api.http.post("/accounts/acc-1/customers/cust-1/cards", json={}), 404, "not_found")
    assert_error(
        await other_api.http.put("/accounts/acc-1/customers/cust-1/cards", json={"state": "CLOSED"}), 404, "not_found"
    )
    assert await counts(pool) == before
    (card,) = await cards_of(api)
    assert card["state"] == "OPEN"


async def test_other_org_cannot_reference_our_product_customer_or_account(
    api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool
) -> None:
    await linked(api, None)
    await make_product(other_api, "their-prod")
    await make_account(other_api, "their-acc", product_id="their-prod")
    before = await counts(pool)
    error = assert_error(
        await other_api.http.post("/accounts", json={"account_id": "x", "product_id": "prod-1"}), 404, "not_found"
    )
    assert error["message"] == "No product found with the provided product_id"
    response = await other_api.http.post(
        "/accounts",
        json={"account_id": "x", "product_id": "their-prod", "assign_customers": [{"customer_id": "cust-1"}]},
    )
    assert_error(response, 404, "not_found")
    response = await other_api.http.post(
        "/customers", json=minimal_customer(customer_id="theirs", assign_to_accounts=[{"account_id": "acc-1"}])
    )
    assert_error(response, 404, "not_found")
    await make_customer(other_api, "their-cust")
    response = await other_api.http.patch(
        "/customers/their-cust", json={"assign_to_accounts": [{"account_id": "acc-1"}]}
    )
    assert_error(response, 404, "not_found")
    after = await counts(pool)
    assert after == before | {"customers": before["customers"] + 1}
    assert (await get_account(api, "acc-1"))["customers"][0]["customer_id"] == "cust-1"
    assert len((await get_account(api, "acc-1"))["customers"]) == 1


async def test_other_org_lists_do_not_show_our_rows(api: ApiClient, other_api: ApiClient) -> None:
    await linked(api)
    for path in ("/products", "/accounts", "/customers/accounts"):
        page = ok(await other_api.http.get(path))
        assert page["results"] == [], path
        assert page["paging"]["has_more"] is False
        assert len(ok(await api.http.get(path))["results"]) == 1, path


async def test_other_org_may_reuse_our_ids(api: ApiClient, other_api: ApiClient) -> None:
    await linked(api, None)
    ok_product = await make_product(other_api, "prod-1", "INSTALLMENT", name="Theirs")
    assert ok_product["product_id"] == "prod-1"
    account = await make_account(other_api, "acc-1", product_id="prod-1", external_account_id="ext-1")
    assert account["account_id"] == "acc-1" and account["customers"] == []
    await make_customer(other_api, "cust-1", assign_to_accounts=[{"account_id": "acc-1"}])
    # ours is untouched
    assert ok(await api.http.get("/products/prod-1"))["product_overview"]["product_type"] == "REVOLVING"
    ours = await get_account(api, "acc-1")
    assert ours["external_account_id"] is None and len(ours["customers"]) == 1
    theirs = await get_account(other_api, "acc-1")
    assert theirs["external_account_id"] == "ext-1" and len(theirs["customers"]) == 1
    (their_link,) = ok(await other_api.http.get("/customers/cust-1/accounts"))["results"]
    assert their_link["external_account_id"] == "ext-1"
    (our_link,) = ok(await api.http.get("/customers/cust-1/accounts"))["results"]
    assert our_link["external_account_id"] is None
    # and our external_account_id is free for them too
    await make_account(api, "acc-2", external_account_id="ext-1")


async def test_other_orgs_cursor_is_400(api: ApiClient, other_api: ApiClient) -> None:
    await make_product(api, "p1")
    await make_product(api, "p2")
    await make_account(api, "a1", product_id="p1")
    await make_account(api, "a2", product_id="p1")
    for path in ("/products", "/accounts"):
        cursor = ok(await api.http.get(path, params={"limit": 1}))["paging"]["starting_after"]
        assert cursor
        assert_error(await other_api.http.get(path, params={"starting_after": cursor}), 400, "bad_request")


async def test_a_cursor_from_another_listing_is_400(api: ApiClient) -> None:
    """A cursor is bound to the listing it came from, not only to the organization."""
    await make_product(api, "p1")
    await make_product(api, "p2")
    cursor = ok(await api.http.get("/products", params={"limit": 1}))["paging"]["starting_after"]
    assert cursor
    for path in ("/customers", "/accounts", "/customers/accounts"):
        assert_error(await api.http.get(path, params={"starting_after": cursor}), 400, "bad_request")


async def test_lithic_config_is_per_organization(api: ApiClient, other_api: ApiClient) -> None:
    ok(await api.http.put("/organization/issuer_processors", json={"lithic_config": {"api_key": LITHIC_KEY}}))
    assert ok(await other_api.http.get("/organization/issuer_processors")) == {"lithic_config": None}
    ok(await other_api.http.put("/organization/issuer_processors", json={"lithic_config": None}))
    assert ok(await api.http.get("/organization/issuer_processors"))["lithic_config"] is not None


# --- values the database cannot hold are 422, never 500 --------------------------------------------

BIGINT_MAX = 2**63 - 1


@pytest.mark.parametrize("side", ["assign_to_accounts", "assign_customers"])
async def test_empty_customer_account_external_id_is_not_a_server_error(
    api: ApiClient, pool: asyncpg.Pool, side: str
) -> None:
    await make_product(api)
    if side == "assign_to_accounts":
        await make_account(api, "acc-1")
        response = await api.http.post(
            "/customers",
            json=minimal_customer(
                customer_id="cust-1", assign_to_accounts=[{"account_id": "acc-1", "customer_account_external_id": ""}]
            ),
        )
        path = "/assign_to_accounts/0/customer_account_external_id"
    else:
        await make_customer(api, "cust-1")
        response = await api.http.post(
            "/accounts",
            json={
                "account_id": "acc-1",
                "product_id": "prod-1",
                "assign_customers": [{"customer_id": "cust-1", "customer_account_external_id": ""}],
            },
        )
        path = "/assign_customers/0/customer_account_external_id"
    # either refused where it is, or accepted and answered with a usable (non-empty) external id
    if response.status_code == 422:
        assert path in {d["instancePath"] for d in assert_invalid(response)}
        assert (await counts(pool))["customer_account_links"] == 0
    else:
        assert response.status_code == 200, response.text
        link = on_account(await get_account(api, "acc-1"), "cust-1")
        assert link["customer_account_external_id"]


async def test_credit_limit_beyond_bigint_is_422(api: ApiClient, pool: asyncpg.Pool) -> None:
    await make_product(api)
    response = await api.http.post(
        "/accounts",
        json={"account_id": "acc-1", "product_id": "prod-1", "summary": {"credit_limit_cents": BIGINT_MAX + 1}},
    )
    details = assert_invalid(response)
    assert {d["instancePath"] for d in details} == {"/summary/credit_limit_cents"}
    assert details[0]["keyword"] == "format" and details[0]["params"] == {"format": "int64"}  # contract's keywords
    assert (await counts(pool))["accounts"] == 0


async def test_credit_limit_at_bigint_max_is_kept(api: ApiClient) -> None:
    await make_product(api)
    created = await make_account(api, summary={"credit_limit_cents": BIGINT_MAX})
    assert created["summary"]["credit_limit_cents"] == BIGINT_MAX


@pytest.mark.parametrize("route", ["create-customer", "patch-customer", "post-card", "put-card"])
async def test_spend_limit_beyond_bigint_is_422(api: ApiClient, pool: asyncpg.Pool, app: Any, route: str) -> None:
    huge = BIGINT_MAX + 1
    items = [
        {
            "account_id": "acc-1",
            "customer_account_issuer_processor_config": {"spend_limit": huge, "lithic": {"type": "UNLOCKED"}},
        }
    ]
    link_path = "/assign_to_accounts/0/customer_account_issuer_processor_config/spend_limit"
    await linked(api, CARD_CONFIG if route.endswith("card") else None)
    await issue_cards(pool, app)
    before = await counts(pool)
    if route == "create-customer":
        response = await api.http.post(
            "/customers", json=minimal_customer(customer_id="cust-2", assign_to_accounts=items)
        )
    elif route == "patch-customer":
        response = await api.http.patch("/customers/cust-1", json={"assign_to_accounts": items})
    else:
        response = await api.http.request(
            "POST" if route == "post-card" else "PUT",
            "/accounts/acc-1/customers/cust-1/cards",
            json={"spend_limit": huge},
        )
    details = assert_invalid(response)
    assert {d["instancePath"] for d in details} == {link_path if route.endswith("customer") else "/spend_limit"}
    assert await counts(pool) == before


async def test_spend_limit_at_bigint_max_is_kept(api: ApiClient, pool: asyncpg.Pool, app: Any) -> None:
    await linked(api)
    await issue_cards(pool, app)
    card = ok(await api.http.put("/accounts/acc-1/customers/cust-1/cards", json={"spend_limit": BIGINT_MAX}))
    assert card["spend_limit"] == BIGINT_MAX


@pytest.mark.parametrize("effective_at", ["2026-13-01T00:00:00Z", "2026-12-01", "yesterday"])
async def test_bad_effective_at_is_422_format(api: ApiClient, pool: asyncpg.Pool, effective_at: str) -> None:
    await make_product(api)
    response = await api.http.post(
        "/accounts", json={"account_id": "acc-1", "product_id": "prod-1", "effective_at": effective_at}
    )
    (problem,) = assert_invalid(response)
    assert problem["instancePath"] == "/effective_at"
    assert problem["keyword"] == "format"
    assert problem["params"] == {"format": "date-time"}
    assert (await counts(pool))["accounts"] == 0


async def test_effective_at_is_answered_in_utc(api: ApiClient) -> None:
    await make_product(api)
    created = await make_account(api, effective_at="2026-01-01T10:00:00+02:00")
    assert created["effective_at"] == "2026-01-01T08:00:00Z"
    assert (await get_account(api, "acc-1"))["effective_at"] == "2026-01-01T08:00:00Z"


async def test_an_update_without_a_role_keeps_the_links_role(api: ApiClient) -> None:
    await make_product(api)
    await make_account(api)
    await make_customer(api, "c-1", assign_to_accounts=[{"account_id": "acc-1", "customer_account_role": "SECONDARY"}])
    changed = await api.http.patch(
        "/customers/c-1",
        json={"assign_to_accounts": [{"account_id": "acc-1", "customer_account_external_id": "ext-9"}]},
    )
    assert changed.status_code == 200
    (customer,) = (await api.http.get("/accounts/acc-1")).json()["customers"]
    assert customer["customer_account_role"] == "SECONDARY"
    assert customer["customer_account_external_id"] == "ext-9"


async def test_assign_customers_may_not_name_a_customer_twice(api: ApiClient, pool: asyncpg.Pool) -> None:
    await make_product(api)
    await make_customer(api, "c-1")
    response = await api.http.post(
        "/accounts",
        json={
            "account_id": "acc-1",
            "product_id": "prod-1",
            "assign_customers": [{"customer_id": "c-1"}, {"customer_id": "c-1"}],
        },
    )
    (detail,) = assert_invalid(response)
    assert detail["instancePath"] == "/assign_customers" and detail["keyword"] == "uniqueItems"
    assert (await counts(pool))["accounts"] == 0


async def test_issuer_processors_without_lithic_config_change_nothing(api: ApiClient) -> None:
    key = "sk_test_abcdefghijkl1234"
    await api.http.put("/organization/issuer_processors", json={"lithic_config": {"api_key": key}})
    unchanged = await api.http.put("/organization/issuer_processors", json={})
    assert unchanged.status_code == 200
    assert unchanged.json()["lithic_config"]["api_key"] == "****1234"
