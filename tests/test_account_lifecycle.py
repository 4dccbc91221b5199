"""Issue 11 item 7: DELETE /accounts/{id} (soft: 404 everywhere after) and PUT /accounts/{id}/status,
and the closes of the account's cards they leave in the card outbox for the worker to send to Lithic."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from canopy_svc.store import cards as card_store
from tests.fake_lithic import FakeLithic
from tests.helpers import (
    ApiClient,
    account,
    assert_error,
    assert_invalid,
    linked_customer,
    make_client,
    make_worker,
    minimal_customer,
    use_lithic,
)

DELETED = {"description": "Account deleted successfully."}
CARDS = "/accounts/acc-1/customers/cust-1/cards"


async def cards(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM cards ORDER BY id")


def patches(fake: FakeLithic) -> list[Any]:
    return [r for r in fake.requests if r.method == "PATCH"]


def creates(fake: FakeLithic) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST" and r.path == "/v1/cards"]


async def issued_card(api: ApiClient, pool: asyncpg.Pool, fake: FakeLithic) -> asyncpg.Record:
    """acc-1 with cust-1 on it, and cust-1's card issued at the fake Lithic."""
    await use_lithic(api, fake)
    await linked_customer(api, await account(api))
    await make_worker(pool).process_due()
    (card,) = await cards(pool)
    assert card["status"] == "ISSUED"
    return card


async def drain(pool: asyncpg.Pool) -> None:
    """Runs the worker until nothing is due (bounded), skipping backoff waits."""
    worker = make_worker(pool)
    for _ in range(20):
        await pool.execute("UPDATE cards SET close_due_at = now() WHERE close_due_at IS NOT NULL")
        await pool.execute("UPDATE cards SET next_attempt_at = now() WHERE status = 'PENDING'")
        if await worker.process_due() == 0:
            return
    raise AssertionError("the outbox never drained")


# --- DELETE ------------------------------------------------------------------------------------------


async def test_a_deleted_account_answers_404_on_every_route_but_its_row_stays(
    api: ApiClient, pool: asyncpg.Pool
) -> None:
    await account(api)
    await account(api, "acc-2")
    await linked_customer(api, "acc-1")
    await linked_customer(api, "acc-2", "cust-2")

    deleted = await api.http.delete("/accounts/acc-1")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == DELETED

    assert_error(await api.http.get("/accounts/acc-1"), 404, "not_found")
    assert_error(await api.http.delete("/accounts/acc-1"), 404, "not_found")  # deleting twice
    assert_error(await api.http.put("/accounts/acc-1/status", json={"account_status": "ACTIVE"}), 404, "not_found")
    assert_error(await api.http.post(CARDS, json={}), 404, "not_found")
    assert_error(await api.http.put(CARDS, json={"state": "PAUSED"}), 404, "not_found")
    # Linking a customer to it: by a new customer, and by an update of one.
    new_customer = minimal_customer(customer_id="cust-3", assign_to_accounts=[{"account_id": "acc-1"}])
    assert_error(await api.http.post("/customers", json=new_customer), 404, "not_found")
    relink = {"assign_to_accounts": [{"account_id": "acc-1"}]}
    assert_error(await api.http.put("/customers/cust-2", json=relink), 404, "not_found")

    listed = (await api.http.get("/accounts")).json()["results"]
    assert [a["account_id"] for a in listed] == ["acc-2"]
    assert (await api.http.get("/customers/cust-1/accounts")).json()["results"] == []
    links = (await api.http.get("/customers/accounts")).json()["results"]
    assert [(link["customer_id"], link["account"]["account_id"]) for link in links] == [("cust-2", "acc-2")]
    # The customer itself stays, and so do the rows (soft delete); the id stays taken.
    assert (await api.http.get("/customers/cust-1")).status_code == 200
    assert await pool.fetchval("SELECT count(*) FROM accounts WHERE account_id = 'acc-1' AND deleted_at IS NOT NULL")
    assert await pool.fetchval("SELECT count(*) FROM customer_account_links WHERE deleted_at IS NOT NULL") == 1
    product_id = (await api.http.get("/accounts/acc-2")).json()["product_id"]
    again = await api.http.post("/accounts", json={"account_id": "acc-1", "product_id": product_id})
    assert_error(again, 409, "conflict")


async def test_a_failed_link_to_a_deleted_account_writes_nothing(api: ApiClient, pool: asyncpg.Pool) -> None:
    await account(api)
    await account(api, "acc-2")
    assert (await api.http.delete("/accounts/acc-1")).status_code == 200
    before = await pool.fetchval("SELECT count(*) FROM customers")
    body = minimal_customer(assign_to_accounts=[{"account_id": "acc-2"}, {"account_id": "acc-1"}])
    assert_error(await api.http.post("/customers", json=body), 404, "not_found")
    assert await pool.fetchval("SELECT count(*) FROM customers") == before
    assert await pool.fetchval("SELECT count(*) FROM customer_account_links") == 0


async def test_delete_with_an_idempotency_key_is_replayed_not_404(api: ApiClient) -> None:
    await account(api)
    headers = {"Idempotency-Key": "delete-1"}
    first = await api.http.delete("/accounts/acc-1", headers=headers)
    assert first.status_code == 200 and first.json() == DELETED
    replay = await api.http.delete("/accounts/acc-1", headers=headers)
    assert replay.status_code == 200 and replay.json() == DELETED
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert_error(await api.http.delete("/accounts/acc-1"), 404, "not_found")


async def test_delete_needs_no_body_nor_content_type(api: ApiClient) -> None:
    """Clients send DELETE bare; one that sends `{}` with its JSON header is served the same."""
    await account(api)
    await account(api, "acc-2")
    bare = await api.http.delete("/accounts/acc-1")
    assert bare.status_code == 200 and "content-type" not in bare.request.headers
    with_body = await api.http.request(
        "DELETE", "/accounts/acc-2", content=b"{}", headers={"Content-Type": "application/json"}
    )
    assert with_body.status_code == 200 and with_body.json() == DELETED


# --- the cards of a deleted account, through the outbox ------------------------------------------------


async def test_delete_closes_an_issued_card_at_lithic_through_the_outbox(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    card = await issued_card(api, pool, fake_lithic)
    assert (await api.http.delete("/accounts/acc-1")).json() == DELETED
    # Committed with the delete, not sent by it: the request never waits for Lithic.
    assert patches(fake_lithic) == []
    (pending,) = await cards(pool)
    assert pending["close_due_at"] is not None and pending["state"] == "OPEN"

    assert await make_worker(pool).process_due() == 1

    (patch,) = patches(fake_lithic)
    assert (patch.method, patch.path, patch.body) == ("PATCH", f"/v1/cards/{card['token']}", {"state": "CLOSED"})
    assert fake_lithic.cards[card["token"]]["state"] == "CLOSED"
    (closed,) = await cards(pool)
    assert (closed["state"], closed["close_due_at"], closed["error"]) == ("CLOSED", None, None)
    assert await make_worker(pool).process_due() == 0  # sent once
    assert fake_lithic.spec_violations == []


async def test_a_close_is_retried_after_a_5xx_with_backoff(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    card = await issued_card(api, pool, fake_lithic)
    await api.http.delete("/accounts/acc-1")
    fake_lithic.fail_next(status=503)
    fake_lithic.fail_next(status=429, retry_after="7")
    # A base long enough that no busy machine reaches it between two calls: 15-30 s for the first retry.
    worker = make_worker(pool, base_seconds=30)

    await worker.process_due()
    (waiting,) = await cards(pool)
    assert waiting["state"] == "OPEN" and waiting["close_due_at"] is not None
    assert waiting["error"] == "Closing: issuer unavailable; retrying"
    # The delay the worker chose, from the statement that set it (updated_at is its now()): a stall
    # between that statement and this read does not shrink it.
    chosen_delay = "SELECT extract(epoch FROM close_due_at - updated_at) FROM cards"
    wait = await pool.fetchval(chosen_delay)
    assert 10 < wait <= 30  # the backoff
    assert await worker.process_due() == 0  # not due again before its backoff
    await pool.execute("UPDATE cards SET close_due_at = now()")
    await worker.process_due()
    wait = await pool.fetchval(chosen_delay)
    assert 5 < wait <= 7.5  # Lithic's Retry-After, not the base backoff (30 s, doubled by now)
    await pool.execute("UPDATE cards SET close_due_at = now()")
    await worker.process_due()

    (closed,) = await cards(pool)
    assert (closed["state"], closed["close_due_at"], closed["error"]) == ("CLOSED", None, None)
    assert closed["close_attempts"] == 3 and len(patches(fake_lithic)) == 3
    assert fake_lithic.cards[card["token"]]["state"] == "CLOSED"
    assert fake_lithic.spec_violations == []


async def test_a_worker_that_dies_after_claiming_a_close_loses_nothing(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    """The process dies after the delete's commit: before sending, or after leasing the close. The
    outbox row is still there; after the lease, another worker sends it."""
    card = await issued_card(api, pool, fake_lithic)
    await api.http.delete("/accounts/acc-1")
    # A worker leases the close and dies before its call (the lease is committed, the call never made).
    (leased,) = await card_store.claim_due_closes(pool, limit=8, lease_seconds=30)
    assert leased["id"] == card["id"]
    assert await make_worker(pool).process_due() == 0  # another worker leaves it while the lease runs
    assert patches(fake_lithic) == []

    await pool.execute("UPDATE cards SET close_due_at = now()")  # the lease ran out
    assert await make_worker(pool).process_due() == 1
    (closed,) = await cards(pool)
    assert closed["state"] == "CLOSED" and fake_lithic.cards[card["token"]]["state"] == "CLOSED"


async def test_two_workers_racing_send_each_close_once(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await use_lithic(api, fake_lithic)
    account_id = await account(api)
    for number in range(10):
        await linked_customer(api, account_id, f"cust-{number}")
    await drain(pool)
    await api.http.delete("/accounts/acc-1")
    first, second = make_worker(pool), make_worker(pool)
    first.batch_size = second.batch_size = 3
    for _ in range(20):
        handled = await first.process_due() + await second.process_due()
        if handled == 0:
            break
    assert [card["state"] for card in await cards(pool)] == ["CLOSED"] * 10
    assert len(patches(fake_lithic)) == 10
    assert {card["state"] for card in fake_lithic.cards.values()} == {"CLOSED"}


async def test_a_pending_card_never_sent_is_never_issued(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await use_lithic(api, fake_lithic)
    await linked_customer(api, await account(api))
    await api.http.delete("/accounts/acc-1")
    await drain(pool)
    assert fake_lithic.requests == []  # no card made only to be closed
    (card,) = await cards(pool)
    assert (card["status"], card["state"], card["close_due_at"]) == ("FAILED", "CLOSED", None)
    assert card["error"] == "Not issued: its account was closed first"


async def test_a_pending_card_lithic_may_have_made_is_issued_then_closed(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    """Lithic made the card but its answer was lost: the card is PENDING here and OPEN there. It is
    issued again under its Idempotency-Key (Lithic's first card back) and closed: no open card is left."""
    await use_lithic(api, fake_lithic)
    await linked_customer(api, await account(api))
    fake_lithic.lose_answer_next()
    await make_worker(pool).process_due()
    assert (await cards(pool))[0]["status"] == "PENDING" and len(fake_lithic.cards) == 1

    await api.http.delete("/accounts/acc-1")
    await drain(pool)

    (card,) = await cards(pool)
    assert (card["status"], card["state"], card["close_due_at"]) == ("ISSUED", "CLOSED", None)
    assert list(fake_lithic.cards) == [card["token"]]
    assert fake_lithic.cards[card["token"]]["state"] == "CLOSED"
    assert len({r.headers["Idempotency-Key"] for r in creates(fake_lithic)}) == 1
    assert fake_lithic.spec_violations == []


async def test_a_refused_close_stops_and_shows_the_refusal(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await issued_card(api, pool, fake_lithic)
    await api.http.delete("/accounts/acc-1")
    fake_lithic.fail_next(status=401, message="Invalid API key")
    await make_worker(pool).process_due()
    (card,) = await cards(pool)
    assert card["close_due_at"] is None and card["state"] == "OPEN"
    assert card["error"] == "The issuer refused to close the card: Invalid API key"
    assert await make_worker(pool).process_due() == 0  # never retried


async def test_a_close_waits_for_a_card_change_in_flight(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    """A change recorded before the delete (its request still at Lithic) is finished first: the close
    is sent after it, so its answer cannot be recorded over the close's."""
    await issued_card(api, pool, fake_lithic)
    await pool.execute(
        """UPDATE cards SET change_id = gen_random_uuid(), change_fields = '{"state": "PAUSED"}',
               change_started_at = now()"""
    )
    await api.http.delete("/accounts/acc-1")
    worker = make_worker(pool)
    assert await worker.process_due() == 0
    assert patches(fake_lithic) == []
    assert await card_store.seconds_until_next_due(pool, lease_seconds=30) > 1  # no busy loop meanwhile

    await pool.execute("UPDATE cards SET change_started_at = now() - interval '1 hour'")  # its request died
    await worker.process_due()  # finishes the change, then closes
    assert [p.body for p in patches(fake_lithic)] == [{"state": "PAUSED"}, {"state": "CLOSED"}]
    (card,) = await cards(pool)
    assert (card["state"], card["change_id"], card["close_due_at"]) == ("CLOSED", None, None)


async def test_a_simulated_organizations_cards_are_closed_at_once(api: ApiClient, pool: asyncpg.Pool) -> None:
    """No Lithic key: the simulator keeps no card to ask, so the delete closes them itself."""
    await linked_customer(api, await account(api))
    await make_worker(pool).process_due()
    await api.http.post(CARDS, json={})  # a second card, still PENDING
    await api.http.delete("/accounts/acc-1")
    states = [(card["status"], card["state"], card["close_due_at"]) for card in await cards(pool)]
    assert states == [("ISSUED", "CLOSED", None), ("FAILED", "CLOSED", None)]
    assert await make_worker(pool).process_due() == 0


# --- PUT /accounts/{id}/status ----------------------------------------------------------------------------


async def test_status_changes_are_answered_and_kept(api: ApiClient) -> None:
    await account(api)
    suspended = await api.http.put(
        "/accounts/acc-1/status", json={"account_status": "SUSPENDED", "account_substatus": "DELINQUENT"}
    )
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["account_id"] == "acc-1"
    overview = {"account_status": "SUSPENDED", "account_substatus": "DELINQUENT"}
    assert suspended.json()["account_overview"] == overview
    assert (await api.http.get("/accounts/acc-1")).json()["account_overview"] == overview
    assert (await api.http.get("/accounts")).json()["results"][0]["account_overview"] == overview
    # The substatus belongs to the status it came with: a new status without one clears it.
    active = await api.http.put("/accounts/acc-1/status", json={"account_status": "ACTIVE"})
    assert active.json()["account_overview"] == {"account_status": "ACTIVE", "account_substatus": None}


async def test_suspending_leaves_the_cards_as_they_are(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await issued_card(api, pool, fake_lithic)
    await api.http.put("/accounts/acc-1/status", json={"account_status": "SUSPENDED"})
    assert await make_worker(pool).process_due() == 0
    assert patches(fake_lithic) == []
    assert (await cards(pool))[0]["close_due_at"] is None


async def test_closing_closes_the_cards_and_is_final(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    card = await issued_card(api, pool, fake_lithic)
    closed = await api.http.put("/accounts/acc-1/status", json={"account_status": "CLOSED"})
    assert closed.status_code == 200
    assert closed.json()["account_overview"]["account_status"] == "CLOSED"
    # While the close is pending, the card cannot be changed (a reopening PATCH would race the close).
    assert_error(await api.http.put(CARDS, json={"state": "OPEN"}), 409, "conflict")
    await make_worker(pool).process_due()
    assert fake_lithic.cards[card["token"]]["state"] == "CLOSED"
    shown = (await api.http.get("/accounts/acc-1")).json()["customers"][0]["card_details"][0]
    assert (shown["state"], shown["lithic"]["state"]) == ("CLOSED", "CLOSED")

    for status in ("ACTIVE", "SUSPENDED"):
        refused = assert_error(
            await api.http.put("/accounts/acc-1/status", json={"account_status": status}), 409, "conflict"
        )
        assert "cannot be reopened" in refused["message"]
    assert_error(await api.http.post(CARDS, json={}), 409, "conflict")  # no new card on a closed account
    again = await api.http.put(
        "/accounts/acc-1/status", json={"account_status": "CLOSED", "account_substatus": "PAID_OFF"}
    )
    assert again.status_code == 200
    assert again.json()["account_overview"] == {"account_status": "CLOSED", "account_substatus": "PAID_OFF"}
    assert len(patches(fake_lithic)) == 1  # closing again sends nothing
    assert (await api.http.delete("/accounts/acc-1")).status_code == 200  # a closed account can be deleted


async def test_a_closed_account_gets_no_new_customer_nor_card_from_either_side(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    """CLOSED is final for links too: a new customer is a 409 (by a create, an update, or the account
    side), a link's card request is a 409, and nothing of the refused request is written; the link
    that was there keeps taking changes of its own fields."""
    await issued_card(api, pool, fake_lithic)
    assert (await api.http.put("/accounts/acc-1/status", json={"account_status": "CLOSED"})).status_code == 200
    await make_worker(pool).process_due()
    await api.http.post("/customers", json=minimal_customer(customer_id="cust-2"))
    before = (
        await pool.fetchval("SELECT count(*) FROM customers"),
        await pool.fetchval("SELECT count(*) FROM customer_account_links"),
    )
    new_customer = minimal_customer(customer_id="cust-3", assign_to_accounts=[{"account_id": "acc-1"}])
    refusals = [
        await api.http.post("/customers", json=new_customer),
        await api.http.put("/customers/cust-2", json={"assign_to_accounts": [{"account_id": "acc-1"}]}),
        await api.http.patch(
            "/customers/cust-2", json={"name_first": "Bo", "assign_to_accounts": [{"account_id": "acc-1"}]}
        ),
    ]
    for refused in refusals:
        assert "is CLOSED; a closed account gets no new customers" in assert_error(refused, 409, "conflict")["message"]
    # The linked customer asks for another card through its link: refused as POST .../cards is.
    await pool.execute("UPDATE cards SET status = 'FAILED'")  # the only case in which a link asks again
    card_again = {"account_id": "acc-1", "customer_account_issuer_processor_config": {"lithic": {"type": "UNLOCKED"}}}
    refused = await api.http.put("/customers/cust-1", json={"assign_to_accounts": [card_again]})
    assert "gets no new cards" in assert_error(refused, 409, "conflict")["message"]
    after = (
        await pool.fetchval("SELECT count(*) FROM customers"),
        await pool.fetchval("SELECT count(*) FROM customer_account_links"),
    )
    assert after == before
    assert await pool.fetchval("SELECT count(*) FROM cards") == 1
    assert (await api.http.get("/customers/cust-2")).json()["name_first"] != "Bo"
    # The existing link's own fields still change.
    relabel = {"account_id": "acc-1", "customer_account_external_id": "kept-ref"}
    assert (await api.http.put("/customers/cust-1", json={"assign_to_accounts": [relabel]})).status_code == 200
    links = (await api.http.get("/customers/cust-1/accounts")).json()["results"]
    assert [a["account_id"] for a in links] == ["acc-1"]


async def test_a_status_update_with_an_idempotency_key_is_replayed(api: ApiClient) -> None:
    await account(api)
    headers = {"Idempotency-Key": "close-1"}
    body = {"account_status": "CLOSED"}
    first = await api.http.put("/accounts/acc-1/status", json=body, headers=headers)
    replay = await api.http.put("/accounts/acc-1/status", json=body, headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.json() == first.json()
    other = await api.http.put("/accounts/acc-1/status", json={"account_status": "ACTIVE"}, headers=headers)
    assert_error(other, 422, "idempotency_key_reused")


BAD_STATUS_BODIES: list[tuple[Any, str, str]] = [
    ({}, "", "required"),
    ({"account_substatus": "X"}, "", "required"),
    ({"account_status": None}, "/account_status", "type"),
    ({"account_status": 1}, "/account_status", "type"),
    ({"account_status": ["CLOSED"]}, "/account_status", "type"),
    ({"account_status": "closed"}, "/account_status", "enum"),
    ({"account_status": "DELETED"}, "/account_status", "enum"),
    ({"account_status": ""}, "/account_status", "enum"),
    ({"account_status": "CLOSED\x00"}, "/account_status", "enum"),
    ({"account_status": "CLOSED", "account_substatus": 7}, "/account_substatus", "type"),
    ({"account_status": "CLOSED", "account_substatus": {}}, "/account_substatus", "type"),
    ({"account_status": "CLOSED", "account_substatus": "x" * 256}, "/account_substatus", "maxLength"),
    ({"account_status": "CLOSED", "account_substatus": "a\x00b"}, "/account_substatus", "pattern"),
]


@pytest.mark.parametrize(("body", "path", "keyword"), BAD_STATUS_BODIES)
async def test_bad_status_bodies_are_422_and_change_nothing(
    api: ApiClient, pool: asyncpg.Pool, body: Any, path: str, keyword: str
) -> None:
    await account(api)
    problems = assert_invalid(await api.http.put("/accounts/acc-1/status", json=body))
    assert (path, keyword) in [(p["instancePath"], p["keyword"]) for p in problems], problems
    assert await pool.fetchval("SELECT account_status FROM accounts") == "ACTIVE"


@pytest.mark.parametrize("raw", [b"", b"[]", b'"CLOSED"', b"{", b"null"])
async def test_status_bodies_that_are_not_objects_are_400(api: ApiClient, raw: bytes) -> None:
    await account(api)
    answer = await api.http.put("/accounts/acc-1/status", content=raw, headers={"Content-Type": "application/json"})
    assert_error(answer, 400, "bad_request")


async def test_a_status_body_must_be_json(api: ApiClient) -> None:
    await account(api)
    answer = await api.http.put("/accounts/acc-1/status", content=b"account_status=CLOSED")
    assert_error(answer, 415, "unsupported_media_type")


async def test_unknown_accounts_are_404(api: ApiClient) -> None:
    assert_error(await api.http.delete("/accounts/never-made"), 404, "not_found")
    assert_error(await api.http.put("/accounts/never-made/status", json={"account_status": "CLOSED"}), 404, "not_found")


# --- isolation and scopes ---------------------------------------------------------------------------------


async def test_another_organization_cannot_delete_or_change_our_account(
    api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await issued_card(api, pool, fake_lithic)
    unknown = assert_error(await other_api.http.delete("/accounts/never-made"), 404, "not_found")
    hidden = assert_error(await other_api.http.delete("/accounts/acc-1"), 404, "not_found")
    assert hidden["message"] == unknown["message"].replace("never-made", "acc-1")  # nothing tells it exists
    assert_error(
        await other_api.http.put("/accounts/acc-1/status", json={"account_status": "CLOSED"}), 404, "not_found"
    )
    account_row = await pool.fetchrow("SELECT account_status, deleted_at FROM accounts")
    assert (account_row["account_status"], account_row["deleted_at"]) == ("ACTIVE", None)
    assert (await cards(pool))[0]["close_due_at"] is None
    assert await make_worker(pool).process_due() == 0 and patches(fake_lithic) == []
    assert (await api.http.get("/accounts/acc-1")).status_code == 200


async def test_an_account_id_another_organization_also_uses_is_its_own(
    api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool
) -> None:
    await account(api)
    await account(other_api)
    assert (await other_api.http.delete("/accounts/acc-1")).status_code == 200
    assert (await api.http.get("/accounts/acc-1")).status_code == 200
    assert await pool.fetchval("SELECT count(*) FROM accounts WHERE deleted_at IS NULL") == 1


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("DELETE", "/accounts/acc-1", None), ("PUT", "/accounts/acc-1/status", {"account_status": "CLOSED"})],
)
async def test_a_read_only_token_cannot_delete_or_close(
    api: ApiClient, pool: asyncpg.Pool, app: Any, method: str, path: str, body: Any
) -> None:
    await account(api)
    org_id, client_id, _ = await make_client(pool, "acme", scopes="read")
    token = app.resources.tokens.issue(client_id, org_id, "read")
    answer = await api.http.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})
    assert_error(answer, 403, "forbidden")
    assert await pool.fetchval("SELECT account_status FROM accounts WHERE deleted_at IS NULL") == "ACTIVE"
