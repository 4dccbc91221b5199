"""The reconciler: cards whose state changes at Lithic on its own are read back (GET /v1/cards/{token})
and what changed is recorded, with its event, as a webhook would; once per card however many run."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from canopy_svc.rules import lithic_sync
from tests.fake_lithic import FakeLithic
from tests.helpers import ApiClient, account, linked_customer, make_reconciler, make_worker, use_lithic

CARDS = "/accounts/acc-1/customers/cust-1/cards"


async def single_use_card(api: ApiClient, pool: asyncpg.Pool, fake: FakeLithic) -> asyncpg.Record:
    """acme's cust-1 on acc-1 with a SINGLE_USE card issued at the fake (besides the link's first card)."""
    await use_lithic(api, fake)
    await linked_customer(api, await account(api))
    answer = await api.http.post(CARDS, json={"lithic": {"type": "SINGLE_USE", "memo": "one purchase"}})
    assert answer.status_code == 200, answer.text
    while await make_worker(pool).process_due():
        pass
    card = await pool.fetchrow("SELECT * FROM cards WHERE card_type = 'SINGLE_USE'")
    assert card is not None and (card["status"], card["state"]) == ("ISSUED", "OPEN")
    return card


async def events_of(api: ApiClient, event_type: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = (await api.http.get("/events", params={"type": event_type})).json()["results"]
    return results


def reads(fake: FakeLithic) -> list[str]:
    return [r.path for r in fake.requests if r.method == "GET"]


async def test_a_single_use_card_closed_at_lithic_shows_closed_after_a_pass(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    card = await single_use_card(api, pool, fake_lithic)
    fake_lithic.change_card(card["token"], state="CLOSED")  # its first authorization, and no webhook

    await make_reconciler(pool).process_due()

    account_answer = (await api.http.get("/accounts/acc-1")).json()
    shown = {item["token"]: item["state"] for item in account_answer["customers"][0]["card_details"]}
    assert shown[card["token"]] == "CLOSED"
    (closed,) = await events_of(api, "card_closed")
    assert (closed["data"]["token"], closed["data"]["state"]) == (card["token"], "CLOSED")
    assert f"/v1/cards/{card['token']}" in reads(fake_lithic)
    assert fake_lithic.spec_violations == []

    # CLOSED is final: the card is no longer read back, and a second pass changes nothing.
    fake_lithic.requests.clear()
    await make_reconciler(pool).process_due()
    assert f"/v1/cards/{card['token']}" not in reads(fake_lithic)
    assert len(await events_of(api, "card_closed")) == 1


async def test_a_card_read_back_unchanged_writes_no_event_and_waits_its_age(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    card = await single_use_card(api, pool, fake_lithic)
    reconciler = make_reconciler(pool, min_age_seconds=3600)
    assert await reconciler.process_due() >= 1
    assert f"/v1/cards/{card['token']}" in reads(fake_lithic)
    assert await events_of(api, "card_updated") == []
    fake_lithic.requests.clear()
    assert await reconciler.process_due() == 0  # read an hour ago at the most: not again
    assert reads(fake_lithic) == []
    assert await pool.fetchval("SELECT reconciled_at IS NOT NULL FROM cards WHERE id = $1", card["id"])


async def test_only_cards_that_change_on_their_own_are_read_back(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await use_lithic(api, fake_lithic)
    await linked_customer(api, await account(api))
    answer = await api.http.post(CARDS, json={"lithic": {"type": "VIRTUAL"}})
    assert answer.status_code == 200, answer.text
    while await make_worker(pool).process_due():
        pass
    virtual = await pool.fetchrow("SELECT * FROM cards WHERE card_type = 'VIRTUAL'")
    assert virtual["status"] == "ISSUED"
    await make_reconciler(pool).process_due()
    # The link's MERCHANT_LOCKED card, not locked to a merchant yet, is; the VIRTUAL one is not.
    assert f"/v1/cards/{virtual['token']}" not in reads(fake_lithic)
    assert len(reads(fake_lithic)) == 1


async def test_two_reconcilers_read_each_card_once(api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic) -> None:
    await single_use_card(api, pool, fake_lithic)
    for memo in ("two", "three", "four"):
        answer = await api.http.post(CARDS, json={"lithic": {"type": "SINGLE_USE", "memo": memo}})
        assert answer.status_code == 200, answer.text
    while await make_worker(pool).process_due():
        pass
    issued = await pool.fetchval("SELECT count(*) FROM cards WHERE status = 'ISSUED'")
    assert issued == 5
    one, two = make_reconciler(pool, min_age_seconds=3600), make_reconciler(pool, min_age_seconds=3600)
    done = await asyncio.gather(one.process_due(), two.process_due())
    assert sum(done) == issued
    assert sorted(reads(fake_lithic)) == sorted(set(reads(fake_lithic)))


async def test_a_read_back_is_not_applied_over_a_change_made_meanwhile(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    """The read may predate our own change at Lithic: applied only if the row is as it was when claimed."""
    card = await single_use_card(api, pool, fake_lithic)
    claimed = await pool.fetch("SELECT id, xmin::text AS row_version FROM cards WHERE id = $1", card["id"])
    await pool.execute("UPDATE cards SET memo = 'changed meanwhile' WHERE id = $1", card["id"])
    async with pool.acquire() as conn, conn.transaction():
        seen = lithic_sync.Observed(state="PAUSED")
        outcome = await lithic_sync.apply_observed(conn, card["id"], seen, row_version=claimed[0]["row_version"])
    assert outcome == "stale"
    row = await pool.fetchrow("SELECT state, reconcile_due_at FROM cards WHERE id = $1", card["id"])
    assert row["state"] == "OPEN" and row["reconcile_due_at"] is not None  # read again soon


async def test_lithic_unreachable_leaves_the_card_as_it_was(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    card = await single_use_card(api, pool, fake_lithic)
    fake_lithic.go_down(503)
    assert await make_reconciler(pool).process_due() >= 1
    fake_lithic.come_back()
    row = await pool.fetchrow("SELECT state FROM cards WHERE id = $1", card["id"])
    assert row["state"] == "OPEN"
    assert await events_of(api, "card_updated") == []
