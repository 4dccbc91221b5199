"""Replacing a lost or stolen card (issue 13 item 3): POST .../cards/{card_token}/replace queues a new
card of the replaced card's type through the card outbox, sent to Lithic with `replacement_for`."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.fake_lithic import FakeLithic
from tests.helpers import ApiClient, account, assert_error, linked_customer, make_worker, use_lithic

CARDS = "/accounts/acc-1/customers/cust-1/cards"


async def drain(pool: asyncpg.Pool) -> None:
    worker = make_worker(pool)
    while await worker.process_due():
        pass


async def issued_virtual_card(api: ApiClient, pool: asyncpg.Pool, fake: FakeLithic | None) -> str:
    """The link (its first card MERCHANT_LOCKED) and a VIRTUAL card, both issued: the VIRTUAL's token."""
    if fake is not None:
        await use_lithic(api, fake)
    await linked_customer(api, await account(api))
    answer = await api.http.post(CARDS, json={"spend_limit": 5000, "lithic": {"type": "VIRTUAL", "memo": "Main"}})
    assert answer.status_code == 200, answer.text
    await drain(pool)
    token: str = await pool.fetchval("SELECT token FROM cards WHERE card_type = 'VIRTUAL'")
    return token


def creates(fake: FakeLithic) -> list[dict[str, Any]]:
    return [r.body for r in fake.requests if r.method == "POST" and r.path == "/v1/cards"]


async def test_a_replacement_is_issued_once_with_replacement_for_and_the_replaced_cards_values(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    old = await issued_virtual_card(api, pool, fake_lithic)
    headers = {"Idempotency-Key": "replace-1"}
    answer = await api.http.post(f"{CARDS}/{old}/replace", json={}, headers=headers)
    assert answer.status_code == 200, answer.text
    (pending,) = answer.json()
    assert (pending["status"], pending["type"], pending["memo"], pending["spend_limit"]) == (
        "PENDING",
        "VIRTUAL",
        "Main",
        5000,
    )
    replay = await api.http.post(f"{CARDS}/{old}/replace", json={}, headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.json() == answer.json()
    await drain(pool)
    sent = creates(fake_lithic)[-1]
    assert sent["replacement_for"] == old and sent["type"] == "VIRTUAL"
    assert len([body for body in creates(fake_lithic) if "replacement_for" in body]) == 1
    listed = (await api.http.get(CARDS)).json()
    assert len(listed) == 3
    assert listed[0]["status"] == "ISSUED" and listed[0]["token"] not in (None, old)
    assert fake_lithic.cards[listed[0]["token"]]["replacement_for"] == old
    assert (await api.http.get(f"{CARDS}/{old}")).json()["state"] == "OPEN"  # Lithic decides the old card's fate
    types = [row["type"] for row in await pool.fetch("SELECT type FROM events ORDER BY id")]
    assert types.count("card_pending") == 3 and types.count("card_issued") == 3


async def test_cards_that_cannot_be_replaced_are_refused_and_nothing_is_written(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    old = await issued_virtual_card(api, pool, fake_lithic)
    merchant_locked = await pool.fetchval("SELECT token FROM cards WHERE card_type = 'MERCHANT_LOCKED'")
    before = await pool.fetchval("SELECT count(*) FROM cards")
    assert_error(await api.http.post(f"{CARDS}/{merchant_locked}/replace", json={}), 409, "conflict")
    wrong_type = await api.http.post(f"{CARDS}/{old}/replace", json={"lithic": {"type": "PHYSICAL"}})
    assert assert_error(wrong_type, 422, "invalid_input")["details"][0]["instancePath"] == "/lithic/type"
    assert_error(await api.http.post(f"{CARDS}/no-such-card/replace", json={}), 404, "not_found")
    assert (await api.http.put(CARDS, json={"card_token": old, "state": "CLOSED"})).status_code == 200
    closed = assert_error(await api.http.post(f"{CARDS}/{old}/replace", json={}), 409, "conflict")
    assert "CLOSED" in closed["message"]
    assert await pool.fetchval("SELECT count(*) FROM cards") == before


async def test_another_organization_cannot_replace_the_card(
    api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    old = await issued_virtual_card(api, pool, fake_lithic)
    await use_lithic(other_api, fake_lithic)
    await linked_customer(other_api, await account(other_api))
    before = await pool.fetchval("SELECT count(*) FROM cards")
    assert_error(await other_api.http.post(f"{CARDS}/{old}/replace", json={}), 404, "not_found")
    assert await pool.fetchval("SELECT count(*) FROM cards") == before


async def test_the_simulator_replaces_a_card_too(api: ApiClient, pool: asyncpg.Pool) -> None:
    old = await issued_virtual_card(api, pool, None)
    answer = await api.http.post(f"{CARDS}/{old}/replace", json={})
    assert answer.status_code == 200, answer.text
    await drain(pool)
    newest = (await api.http.get(CARDS)).json()[0]
    assert (newest["status"], newest["type"]) == ("ISSUED", "VIRTUAL") and newest["token"] != old
    assert await pool.fetchval("SELECT replacement_for FROM cards ORDER BY id DESC LIMIT 1") == old
