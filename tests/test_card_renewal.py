"""Renewing and reissuing a card (issue 13 item 3): POST .../cards/{card_token}/renew (Lithic's renew:
same token and number, a new expiry) and .../reissue (a duplicate PHYSICAL card, same expiry).

Lithic counts both (8 at most a card) and takes no Idempotency-Key for them: one whose outcome is not
known is never sent again; the card worker reads the card back instead."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from canopy_svc.issuers.gateway import CardGateway
from canopy_svc.rules import cards as card_rules
from canopy_svc.wire.models import CardRenewal
from tests.fake_lithic import FakeLithic
from tests.helpers import (
    CUSTOMERS_SHIPPING_ADDRESS,
    SHIPPING_ELSEWHERE,
    ApiClient,
    account,
    assert_error,
    linked_customer,
    make_worker,
    use_lithic,
)

CARDS = "/accounts/acc-1/customers/cust-1/cards"


async def drain(pool: asyncpg.Pool, gateway: CardGateway | None = None) -> None:
    worker = make_worker(pool, gateway=gateway)
    while await worker.process_due():
        pass


async def issued(api: ApiClient, pool: asyncpg.Pool, fake: FakeLithic | None, card_type: str, app: Any = None) -> str:
    """The link (its first card MERCHANT_LOCKED) and a card of `card_type`, issued: its token. Without
    `fake`, by the simulator of `app` (the one its requests ask)."""
    if fake is not None:
        await use_lithic(api, fake)
    await linked_customer(api, await account(api))
    answer = await api.http.post(CARDS, json={"spend_limit": 5000, "lithic": {"type": card_type}})
    assert answer.status_code == 200, answer.text
    await drain(pool, app.resources.card_gateway if fake is None else None)
    token: str = await pool.fetchval("SELECT token FROM cards WHERE card_type = $1", card_type)
    assert token is not None
    return token


def sent(fake: FakeLithic, operation: str) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST" and r.path.endswith(f"/{operation}")]


async def stored(pool: asyncpg.Pool, token: str) -> asyncpg.Record:
    record = await pool.fetchrow(
        "SELECT state, exp_month, exp_year, change_id, change_fields FROM cards WHERE token = $1", token
    )
    assert record is not None
    return record


async def test_a_virtual_card_is_renewed_with_the_customers_address_and_lithics_new_expiry(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    token = await issued(api, pool, fake_lithic, "VIRTUAL")
    before = await stored(pool, token)
    headers = {"Idempotency-Key": "renew-1"}
    answer = await api.http.post(f"{CARDS}/{token}/renew", json={}, headers=headers)
    assert answer.status_code == 200, answer.text
    card = answer.json()
    now = datetime.now(UTC)
    # Lithic's answer: six years on when no expiry is asked; the same token, still OPEN.
    assert (card["token"], card["state"], card["lithic"]["exp_year"]) == (token, "OPEN", str(now.year + 6))
    assert card["lithic"]["exp_month"] == f"{now.month:02d}"
    assert (card["lithic"]["exp_year"], card["lithic"]["exp_month"]) != (before["exp_year"], before["exp_month"])
    (renewal,) = sent(fake_lithic, "renew")
    # Lithic's renew requires a shipping_address for every card type: the customer's.
    assert renewal.path == f"/v1/cards/{token}/renew"
    assert renewal.body == {"shipping_address": CUSTOMERS_SHIPPING_ADDRESS}
    after = await stored(pool, token)
    assert (after["exp_year"], after["change_id"], after["change_fields"]) == (str(now.year + 6), None, None)
    assert (await api.http.get(f"{CARDS}/{token}")).json() == card
    replay = await api.http.post(f"{CARDS}/{token}/renew", json={}, headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.json() == card
    assert len(sent(fake_lithic, "renew")) == 1  # a replay is not a second renewal
    (event,) = await pool.fetch("SELECT data::text AS data FROM events WHERE type = 'card_updated'")
    assert json.loads(event["data"])["lithic"]["exp_year"] == str(now.year + 6)
    assert fake_lithic.spec_violations == []


async def test_a_physical_card_is_renewed_and_reissued_with_what_the_body_gives(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    token = await issued(api, pool, fake_lithic, "PHYSICAL")
    body = {
        "exp_month": "09",
        "exp_year": "2033",
        "shipping_address": SHIPPING_ELSEWHERE,
        "shipping_method": "PRIORITY",
        "product_id": "card-art-2",
    }
    renewed = await api.http.post(f"{CARDS}/{token}/renew", json=body)
    assert renewed.status_code == 200, renewed.text
    assert (renewed.json()["lithic"]["exp_month"], renewed.json()["lithic"]["exp_year"]) == ("09", "2033")
    assert sent(fake_lithic, "renew")[0].body == body

    reissued = await api.http.post(f"{CARDS}/{token}/reissue", json={})
    assert reissued.status_code == 200, reissued.text
    # A duplicate: same token, same expiry; with no shipping_address, Lithic uses the card's last one.
    assert reissued.json()["token"] == token
    assert (reissued.json()["lithic"]["exp_month"], reissued.json()["lithic"]["exp_year"]) == ("09", "2033")
    assert sent(fake_lithic, "reissue")[0].body == {}
    again = await api.http.post(f"{CARDS}/{token}/reissue", json={"shipping_method": "STANDARD"})
    assert again.status_code == 200 and sent(fake_lithic, "reissue")[1].body == {"shipping_method": "STANDARD"}
    assert fake_lithic.replacements[token] == 3
    assert fake_lithic.spec_violations == []


async def test_cards_lithic_does_not_renew_or_reissue_are_refused_and_nothing_is_sent(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    virtual = await issued(api, pool, fake_lithic, "VIRTUAL")
    merchant_locked = await pool.fetchval("SELECT token FROM cards WHERE card_type = 'MERCHANT_LOCKED'")
    assert (await api.http.post(CARDS, json={"lithic": {"type": "SINGLE_USE"}})).status_code == 200
    await drain(pool)
    single_use_token = await pool.fetchval("SELECT token FROM cards WHERE card_type = 'SINGLE_USE'")
    pending = await pool.fetchval("SELECT count(*) FROM cards")

    assert (
        "VIRTUAL"
        in assert_error(await api.http.post(f"{CARDS}/{virtual}/reissue", json={}), 409, "conflict")["message"]
    )
    for token in (merchant_locked, single_use_token):
        assert_error(await api.http.post(f"{CARDS}/{token}/renew", json={}), 409, "conflict")
        assert_error(await api.http.post(f"{CARDS}/{token}/reissue", json={}), 409, "conflict")
    for operation in ("renew", "reissue"):
        assert_error(await api.http.post(f"{CARDS}/no-such-card/{operation}", json={}), 404, "not_found")
        missing_link = f"/accounts/acc-1/customers/nobody/cards/{virtual}/{operation}"
        assert_error(await api.http.post(missing_link, json={}), 404, "not_found")
    # PHYSICAL-only fields on a VIRTUAL card: a 422 naming each (its shipping_address Lithic requires).
    refused = await api.http.post(f"{CARDS}/{virtual}/renew", json={"product_id": "x", "shipping_method": "STANDARD"})
    pointers = {d["instancePath"] for d in assert_error(refused, 422, "invalid_input")["details"]}
    assert pointers == {"/product_id", "/shipping_method"}
    assert (await api.http.put(CARDS, json={"card_token": virtual, "state": "CLOSED"})).status_code == 200
    closed = assert_error(await api.http.post(f"{CARDS}/{virtual}/renew", json={}), 409, "conflict")
    assert "CLOSED" in closed["message"]
    assert sent(fake_lithic, "renew") == [] and sent(fake_lithic, "reissue") == []
    assert await pool.fetchval("SELECT count(*) FROM cards") == pending
    assert await pool.fetchval("SELECT count(*) FROM cards WHERE change_id IS NOT NULL") == 0


BAD_RENEWALS: list[tuple[Any, int]] = [
    ({"exp_month": "06"}, 422),  # exp_month and exp_year go together
    ({"exp_year": "2031"}, 422),
    ({"exp_month": "13", "exp_year": "2031"}, 422),
    ({"exp_month": "06", "exp_year": "31"}, 422),
    ({"exp_month": 6, "exp_year": 2031}, 422),
    ({"shipping_method": "CARRIER_PIGEON"}, 422),
    ({"shipping_address": {**SHIPPING_ELSEWHERE, "country": "US"}}, 422),
    ({"shipping_address": {**SHIPPING_ELSEWHERE, "state": "Oregon"}}, 422),
    ({"shipping_address": {**SHIPPING_ELSEWHERE, "first_name": "A" * 20}}, 422),
    ({"shipping_address": {k: v for k, v in SHIPPING_ELSEWHERE.items() if k != "city"}}, 422),
    ({"shipping_address": {**SHIPPING_ELSEWHERE, "city": "Spring\u0000field"}}, 422),
    ({"shipping_method": "EXPEDITED", "shipping_address": SHIPPING_ELSEWHERE}, 422),  # EXPEDITED needs email and phone
    ({"shipping_address": "742 Evergreen Terrace"}, 422),
    ({"product_id": "x" * 10_000}, 422),
    ([], 422),
    ("renew", 422),
]


async def test_unknown_fields_are_ignored_as_the_contract_says_and_not_sent(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    token = await issued(api, pool, fake_lithic, "PHYSICAL")
    extra = {"carrier": {"qr_code_url": "https://example.com"}, "spend_limit": 5, "pan": "4111111111111111"}
    assert (await api.http.post(f"{CARDS}/{token}/reissue", json=extra)).status_code == 200
    assert sent(fake_lithic, "reissue")[0].body == {}
    assert fake_lithic.spec_violations == []


@pytest.mark.parametrize(("body", "status"), BAD_RENEWALS)
@pytest.mark.parametrize("operation", ["renew", "reissue"])
async def test_a_bad_body_is_refused_before_anything_is_sent(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic, operation: str, body: Any, status: int
) -> None:
    token = await issued(api, pool, fake_lithic, "PHYSICAL")
    if operation == "reissue" and isinstance(body, dict) and set(body) <= {"exp_month", "exp_year"}:
        body = {**body, "shipping_method": "NOPE"}  # a reissue has no expiry: another bad field stands in
    before = await stored(pool, token)
    answer = await api.http.post(f"{CARDS}/{token}/{operation}", json=body)
    assert answer.status_code in (400, status), answer.text
    assert answer.json()["error"]["code"] in ("invalid_input", "bad_request")
    assert await stored(pool, token) == before
    assert sent(fake_lithic, operation) == []


async def test_nested_and_huge_bodies_are_refused(api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic) -> None:
    token = await issued(api, pool, fake_lithic, "PHYSICAL")
    deep = "[" * 10_000 + "]" * 10_000
    for operation in ("renew", "reissue"):
        nested = await api.http.post(
            f"{CARDS}/{token}/{operation}", content=deep, headers={"Content-Type": "application/json"}
        )
        assert nested.status_code == 400, nested.text
        huge = await api.http.post(
            f"{CARDS}/{token}/{operation}",
            content=b'{"product_id": "' + b"x" * (2 << 20) + b'"}',
            headers={"Content-Type": "application/json"},
        )
        assert huge.status_code == 413
    assert sent(fake_lithic, "renew") == [] and sent(fake_lithic, "reissue") == []


async def test_lithics_refusal_is_a_422_and_leaves_the_card_as_it_was(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    token = await issued(api, pool, fake_lithic, "VIRTUAL")
    before = await stored(pool, token)
    fake_lithic.fail_next(status=400, message="Card has been reissued or renewed the maximum number of times")
    headers = {"Idempotency-Key": "renew-refused"}
    refused = await api.http.post(f"{CARDS}/{token}/renew", json={}, headers=headers)
    assert "maximum number of times" in assert_error(refused, 422, "invalid_input")["message"]
    assert await stored(pool, token) == before
    replay = await api.http.post(f"{CARDS}/{token}/renew", json={}, headers=headers)
    assert replay.status_code == 422 and replay.headers["Idempotent-Replayed"] == "true"
    assert len(sent(fake_lithic, "renew")) == 1


async def test_lithic_counts_renewals_and_reissues_eight_at_most(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    token = await issued(api, pool, fake_lithic, "PHYSICAL")
    for n in range(8):
        operation = "renew" if n % 2 else "reissue"
        assert (await api.http.post(f"{CARDS}/{token}/{operation}", json={})).status_code == 200
    ninth = await api.http.post(f"{CARDS}/{token}/renew", json={})
    assert "maximum" in assert_error(ninth, 422, "invalid_input")["message"]
    assert fake_lithic.spec_violations == []


async def test_a_renewal_whose_answer_is_lost_is_read_back_never_sent_twice(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    token = await issued(api, pool, fake_lithic, "VIRTUAL")
    fake_lithic.lose_answer_next()  # Lithic renews the card, then answers 500
    lost = await api.http.post(f"{CARDS}/{token}/renew", json={"exp_month": "03", "exp_year": "2034"})
    assert_error(lost, 503, "unavailable")
    recorded = await stored(pool, token)
    # The renewal may have been made: it stays recorded (no second one while it is), its expiry unknown.
    assert recorded["change_id"] is not None and recorded["exp_year"] != "2034"
    assert recorded["change_fields"] == '{"operation": "renew"}'  # no address kept with it
    assert_error(await api.http.post(f"{CARDS}/{token}/renew", json={}), 409, "conflict")
    assert_error(await api.http.put(CARDS, json={"card_token": token, "state": "PAUSED"}), 409, "conflict")

    worker = make_worker(pool)
    await worker.process_due()
    assert recorded == await stored(pool, token)  # the lease has not run out: the request may still settle it
    await pool.execute("UPDATE cards SET change_started_at = change_started_at - interval '2 minutes'")
    await worker.process_due()
    settled = await stored(pool, token)
    assert (settled["exp_month"], settled["exp_year"], settled["change_id"]) == ("03", "2034", None)
    assert len(sent(fake_lithic, "renew")) == 1  # read back (GET), not renewed again
    assert [r for r in fake_lithic.requests if r.method == "GET" and r.path == f"/v1/cards/{token}"]
    assert (await api.http.get(f"{CARDS}/{token}")).json()["lithic"]["exp_year"] == "2034"
    assert fake_lithic.spec_violations == []


async def test_a_renewal_lithic_never_got_is_read_back_too_and_the_card_keeps_its_expiry(
    api: ApiClient, pool: asyncpg.Pool, app: Any, fake_lithic: FakeLithic
) -> None:
    token = await issued(api, pool, fake_lithic, "VIRTUAL")
    before = await stored(pool, token)
    async with pool.acquire() as conn, conn.transaction():  # phase 1 committed, then the process died
        await card_rules.begin_card_renewal(
            conn, api.org_id, "acc-1", "cust-1", token, CardRenewal(), app.resources.card_gateway, lease_seconds=60
        )
    await pool.execute("UPDATE cards SET change_started_at = change_started_at - interval '2 minutes'")
    await make_worker(pool).process_due()
    after = await stored(pool, token)
    assert (after["exp_month"], after["exp_year"], after["change_id"]) == (
        before["exp_month"],
        before["exp_year"],
        None,
    )
    assert sent(fake_lithic, "renew") == []
    # Free again: a renewal asked now is sent.
    assert (await api.http.post(f"{CARDS}/{token}/renew", json={})).status_code == 200


async def test_a_rate_limited_renewal_was_not_made_and_is_forgotten(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    token = await issued(api, pool, fake_lithic, "VIRTUAL")
    fake_lithic.fail_next(status=429, retry_after="2")
    limited = await api.http.post(f"{CARDS}/{token}/renew", json={})
    assert limited.status_code == 503 and limited.headers["Retry-After"] == "2"
    assert (await stored(pool, token))["change_id"] is None  # a 429 is Lithic saying it did nothing
    assert (await api.http.post(f"{CARDS}/{token}/renew", json={})).status_code == 200


async def test_another_organization_cannot_renew_or_reissue_the_card(
    api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    token = await issued(api, pool, fake_lithic, "PHYSICAL")
    await use_lithic(other_api, fake_lithic)
    await linked_customer(other_api, await account(other_api))
    before = await stored(pool, token)
    for operation in ("renew", "reissue"):
        assert_error(await other_api.http.post(f"{CARDS}/{token}/{operation}", json={}), 404, "not_found")
    assert await stored(pool, token) == before
    assert sent(fake_lithic, "renew") == [] and sent(fake_lithic, "reissue") == []


async def test_the_simulator_renews_and_reissues_as_lithic_does(api: ApiClient, pool: asyncpg.Pool, app: Any) -> None:
    virtual = await issued(api, pool, None, "VIRTUAL", app)
    renewed = await api.http.post(f"{CARDS}/{virtual}/renew", json={"exp_month": "01", "exp_year": "2035"})
    assert renewed.status_code == 200, renewed.text
    assert (renewed.json()["lithic"]["exp_month"], renewed.json()["lithic"]["exp_year"]) == ("01", "2035")
    assert (await stored(pool, virtual))["change_id"] is None
    assert_error(await api.http.post(f"{CARDS}/{virtual}/reissue", json={}), 409, "conflict")
    assert (await api.http.post(CARDS, json={"lithic": {"type": "PHYSICAL"}})).status_code == 200
    await drain(pool, app.resources.card_gateway)
    physical_token = await pool.fetchval("SELECT token FROM cards WHERE card_type = 'PHYSICAL'")
    for _ in range(8):
        assert (await api.http.post(f"{CARDS}/{physical_token}/reissue", json={})).status_code == 200
    assert_error(await api.http.post(f"{CARDS}/{physical_token}/renew", json={}), 422, "invalid_input")
    types = [row["type"] for row in await pool.fetch("SELECT type FROM events WHERE type = 'card_updated'")]
    assert len(types) == 9


async def test_a_card_the_simulator_no_longer_holds_is_a_409(api: ApiClient, pool: asyncpg.Pool, app: Any) -> None:
    virtual = await issued(api, pool, None, "VIRTUAL", app)
    app.resources.card_gateway.simulator._cards.clear()  # as after a restart: it keeps cards in memory
    gone = assert_error(await api.http.post(f"{CARDS}/{virtual}/renew", json={}), 409, "conflict")
    assert "simulator" in gone["message"]
    assert (await stored(pool, virtual))["change_id"] is None
