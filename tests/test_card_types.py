"""Issue 13, items 1 and 2: Lithic's current card types, what is sent for each, and Lithic's answer as
the card this service stores and shows (tests/fake_lithic.py checks each request against the spec)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from tests.fake_lithic import FakeLithic
from tests.helpers import (
    CARD_CONFIG,
    CUSTOMERS_SHIPPING_ADDRESS,
    SHIPPING_ELSEWHERE,
    ApiClient,
    account,
    assert_invalid,
    linked_customer,
    make_worker,
    minimal_customer,
    use_lithic,
)

CARDS = "/accounts/acc-1/customers/cust-1/cards"


def creates(fake: FakeLithic) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST" and r.path == "/v1/cards"]


async def new_card(api: ApiClient, lithic: dict[str, Any], **body: Any) -> dict[str, Any]:
    answer = await api.http.post(CARDS, json={"lithic": lithic, **body})
    assert answer.status_code == 200, answer.text
    (card,) = answer.json()
    assert card["status"] == "PENDING"
    return dict(card)


async def shown(api: ApiClient) -> list[dict[str, Any]]:
    answer = await api.http.get("/accounts/acc-1")
    assert answer.status_code == 200, answer.text
    (customer,) = answer.json()["customers"]
    cards: list[dict[str, Any]] = customer["card_details"]
    return cards


@pytest.fixture
async def at_lithic(api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic) -> FakeLithic:
    """acme's cards go to the fake Lithic; cust-1 is linked to acc-1 with its first card issued."""
    await use_lithic(api, fake_lithic)
    await linked_customer(api, await account(api))
    assert await make_worker(pool).process_due() == 1
    return fake_lithic


async def test_a_link_that_names_no_type_gets_a_virtual_card(api: ApiClient, pool: asyncpg.Pool) -> None:
    await account(api)
    config = {"spend_limit": 500, "lithic": {"memo": "default type"}}
    answer = await api.http.post(
        "/customers",
        json=minimal_customer(
            customer_id="cust-1",
            assign_to_accounts=[{"account_id": "acc-1", "customer_account_issuer_processor_config": config}],
        ),
    )
    assert answer.status_code == 200, answer.text
    (card,) = await shown(api)
    assert (card["status"], card["type"]) == ("PENDING", "VIRTUAL")


async def test_unlocked_is_sent_as_virtual_and_shown_as_lithic_made_it(
    api: ApiClient, pool: asyncpg.Pool, at_lithic: FakeLithic
) -> None:
    pending = await new_card(api, {"type": "UNLOCKED"})
    assert pending["type"] == "UNLOCKED"  # what was asked, until Lithic answers
    await make_worker(pool).process_due()

    assert creates(at_lithic)[-1].body["type"] == "VIRTUAL"
    assert at_lithic.spec_violations == []  # the fake refuses a deprecated type
    issued = (await shown(api))[-1]
    assert (issued["status"], issued["type"], issued["lithic"]["type"]) == ("ISSUED", "VIRTUAL", "VIRTUAL")


async def test_physical_card_ships_to_its_customer_by_default(
    api: ApiClient, pool: asyncpg.Pool, at_lithic: FakeLithic
) -> None:
    await new_card(api, {"type": "PHYSICAL", "product_id": "783991122", "shipping_method": "EXPEDITED"})
    await make_worker(pool).process_due()

    body = creates(at_lithic)[-1].body
    assert body["type"] == "PHYSICAL"
    assert (body["product_id"], body["shipping_method"]) == ("783991122", "EXPEDITED")
    # minimal_customer's name and address, in Lithic's shape (alpha-3 country), and the contacts
    # Lithic requires to ship EXPEDITED
    assert body["shipping_address"] == {
        **CUSTOMERS_SHIPPING_ADDRESS,
        "email": "ada@example.com",
        "phone_number": "+14155550123",
    }
    assert at_lithic.spec_violations == []
    issued = (await shown(api))[-1]
    assert (issued["status"], issued["type"], issued["state"]) == ("ISSUED", "PHYSICAL", "PENDING_FULFILLMENT")


async def test_a_given_shipping_address_is_sent_sealed_until_then_and_erased_after(
    api: ApiClient, pool: asyncpg.Pool, at_lithic: FakeLithic
) -> None:
    await new_card(api, {"type": "PHYSICAL", "shipping_address": SHIPPING_ELSEWHERE})
    (sealed,) = await pool.fetch("SELECT * FROM cards WHERE shipping_address_encrypted IS NOT NULL")
    row_text = str(dict(sealed)).encode() + bytes(sealed["shipping_address_encrypted"])
    assert b"Evergreen" not in row_text and b"Simpson" not in row_text

    await make_worker(pool).process_due()

    assert creates(at_lithic)[-1].body["shipping_address"] == SHIPPING_ELSEWHERE
    assert at_lithic.spec_violations == []
    assert await pool.fetchval("SELECT count(*) FROM cards WHERE shipping_address_encrypted IS NOT NULL") == 0


async def test_a_customer_zip_plus_four_and_country_are_sent_in_lithics_spelling(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await use_lithic(api, fake_lithic)
    await account(api)
    physical = {"lithic": {"type": "PHYSICAL"}}
    answer = await api.http.post(
        "/customers",
        json=minimal_customer(
            customer_id="cust-1",
            address_zip="627011234",
            address_country_code="PR",
            address_state="PR",
            assign_to_accounts=[{"account_id": "acc-1", "customer_account_issuer_processor_config": physical}],
        ),
    )
    assert answer.status_code == 200, answer.text
    await make_worker(pool).process_due()

    address = creates(fake_lithic)[-1].body["shipping_address"]
    assert (address["postal_code"], address["country"], address["state"]) == ("62701-1234", "PRI", "PR")
    assert "email" not in address  # only EXPEDITED needs the customer's contacts


async def test_duration_and_expiry_are_sent_and_lithics_values_shown(
    api: ApiClient, pool: asyncpg.Pool, at_lithic: FakeLithic
) -> None:
    await new_card(api, {"type": "VIRTUAL", "spend_limit_duration": "MONTHLY", "exp_month": "07", "exp_year": "2030"})
    await make_worker(pool).process_due()

    body = creates(at_lithic)[-1].body
    assert (body["spend_limit_duration"], body["exp_month"], body["exp_year"]) == ("MONTHLY", "07", "2030")
    issued = (await shown(api))[-1]
    lithic_card = at_lithic.cards[issued["token"]]
    for name in ("spend_limit_duration", "exp_month", "exp_year"):
        assert issued[name] == issued["lithic"][name] == lithic_card[name]
    assert issued["created"] == lithic_card["created"]


async def test_lithics_answer_is_what_is_stored_not_the_request(
    api: ApiClient, pool: asyncpg.Pool, at_lithic: FakeLithic
) -> None:
    await new_card(api, {"type": "MERCHANT_LOCKED", "memo": "asked"}, spend_limit=100)
    token = "4b1b0c1e-6f57-4f3c-9c1a-2f1e9f6a0d11"
    at_lithic.answer_next(
        200,
        {
            "token": token, "last_four": "4142", "type": "MERCHANT_LOCKED", "state": "PAUSED", "memo": "answered",
            "spend_limit": 0, "spend_limit_duration": "FOREVER", "exp_month": "01", "exp_year": "2031",
            "created": "2026-06-28T22:53:15Z", "hostname": "coffee.example.com", "pan": "4111111289144142",
            "cvv": "776",
        },
    )  # fmt: skip
    await make_worker(pool).process_due()

    issued = (await shown(api))[-1]
    assert issued["token"] == token
    assert (issued["state"], issued["memo"], issued["spend_limit"]) == ("PAUSED", "answered", None)  # 0: no limit
    assert (issued["spend_limit_duration"], issued["exp_month"], issued["exp_year"]) == ("FOREVER", "01", "2031")
    assert (issued["created"], issued["hostname"]) == ("2026-06-28T22:53:15Z", "coffee.example.com")
    assert issued["lithic"]["hostname"] == "coffee.example.com"


async def test_a_change_records_lithics_answer(api: ApiClient, pool: asyncpg.Pool, at_lithic: FakeLithic) -> None:
    (card,) = await shown(api)
    at_lithic.cards[card["token"]]["spend_limit_duration"] = "ANNUALLY"  # as Lithic holds it now
    changed = await api.http.put(CARDS, json={"spend_limit": 2500})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["spend_limit"], changed.json()["spend_limit_duration"]) == (2500, "ANNUALLY")


def physical(**address: Any) -> dict[str, Any]:
    """A PHYSICAL card's `lithic` sent to SHIPPING_ELSEWHERE changed by `address` (None: that field left out)."""
    changed = {name: value for name, value in (SHIPPING_ELSEWHERE | address).items() if value is not None}
    return {"type": "PHYSICAL", "shipping_address": changed}


ADDRESS = "/lithic/shipping_address"


@pytest.mark.parametrize(
    ("lithic", "path", "keyword"),
    [
        ({"exp_month": "07"}, "/lithic", "required"),
        ({"exp_year": "2030"}, "/lithic", "required"),
        ({"exp_month": "13", "exp_year": "2030"}, "/lithic/exp_month", "pattern"),
        ({"exp_month": "7", "exp_year": "2030"}, "/lithic/exp_month", "pattern"),
        ({"exp_month": "07", "exp_year": "30"}, "/lithic/exp_year", "pattern"),
        ({"exp_month": 7, "exp_year": 2030}, "/lithic/exp_month", "type"),
        ({"spend_limit_duration": "DAILY"}, "/lithic/spend_limit_duration", "enum"),
        ({"type": "PHYSICAL", "shipping_method": "BULK"}, "/lithic/shipping_method", "enum"),
        ({"type": "VIRTUAL", "product_id": "1"}, "/lithic/product_id", "not"),
        ({"type": "SINGLE_USE", "shipping_address": SHIPPING_ELSEWHERE}, ADDRESS, "not"),
        # the link's type (MERCHANT_LOCKED) is the card's when the body names none
        ({"shipping_method": "STANDARD"}, "/lithic/shipping_method", "not"),
        (physical(country="US"), f"{ADDRESS}/country", "enum"),
        (physical(first_name="Maximilian Alexander"), f"{ADDRESS}/last_name", "maxLength"),
        (physical(state="Oregon"), f"{ADDRESS}/state", "enum"),
        (physical(postal_code="974031234"), f"{ADDRESS}/postal_code", "pattern"),
        (physical(country="CAN", state="Ontario"), f"{ADDRESS}/state", "pattern"),
        (physical(phone_number="555-0100"), f"{ADDRESS}/phone_number", "format"),
        (physical(email="homer@example.test"), f"{ADDRESS}/email", "format"),
        (physical() | {"shipping_method": "EXPEDITED"}, ADDRESS, "required"),
        (physical(city=None), ADDRESS, "required"),
    ],
)
async def test_card_requests_lithic_would_refuse_are_422s(
    api: ApiClient, pool: asyncpg.Pool, at_lithic: FakeLithic, lithic: dict[str, Any], path: str, keyword: str
) -> None:
    details = assert_invalid(await api.http.post(CARDS, json={"lithic": lithic}))
    assert (path, keyword) in [(d["instancePath"], d["keyword"]) for d in details]
    assert await pool.fetchval("SELECT count(*) FROM cards") == 1  # only the link's first card


async def test_a_customer_whose_name_does_not_fit_a_card_needs_a_shipping_address(
    api: ApiClient, pool: asyncpg.Pool
) -> None:
    await account(api)
    physical = {"lithic": {"type": "PHYSICAL"}}
    body = minimal_customer(
        customer_id="cust-1",
        name_first="Maximilian Alexander",
        assign_to_accounts=[{"account_id": "acc-1", "customer_account_issuer_processor_config": physical}],
    )
    (detail,) = assert_invalid(await api.http.post("/customers", json=body))
    assert (
        detail["instancePath"]
        == "/assign_to_accounts/0/customer_account_issuer_processor_config/lithic/shipping_address"
    )
    assert "25 characters" in detail["message"]
    assert await pool.fetchval("SELECT count(*) FROM customers") == 0  # the whole request is refused

    given = {"lithic": {"type": "PHYSICAL", "shipping_address": {**SHIPPING_ELSEWHERE, "first_name": "Max"}}}
    body["assign_to_accounts"][0]["customer_account_issuer_processor_config"] = given
    assert (await api.http.post("/customers", json=body)).status_code == 200


async def test_the_simulator_issues_the_new_types_as_lithic_would(api: ApiClient, pool: asyncpg.Pool) -> None:
    await account(api)
    config = {"lithic": {"type": "PHYSICAL", "exp_month": "03", "exp_year": "2029"}}
    answer = await api.http.post(
        "/customers",
        json=minimal_customer(
            customer_id="cust-1",
            assign_to_accounts=[{"account_id": "acc-1", "customer_account_issuer_processor_config": config}],
        ),
    )
    assert answer.status_code == 200, answer.text
    await make_worker(pool).process_due()

    (card,) = await shown(api)
    assert (card["status"], card["type"], card["state"]) == ("ISSUED", "PHYSICAL", "PENDING_FULFILLMENT")
    assert (card["exp_month"], card["exp_year"], card["spend_limit_duration"]) == ("03", "2029", "TRANSACTION")
    assert card["created"] is not None


async def test_old_links_keep_their_card_config(api: ApiClient, pool: asyncpg.Pool, at_lithic: FakeLithic) -> None:
    """CARD_CONFIG (MERCHANT_LOCKED, a memo, a program) still issues what it did."""
    (card,) = await shown(api)
    assert (card["type"], card["memo"]) == (CARD_CONFIG["lithic"]["type"], CARD_CONFIG["lithic"]["memo"])
    assert "shipping_address" not in creates(at_lithic)[0].body
