"""A card change at Lithic runs in phases: no row lock and no pooled connection is held across the call,
and a change whose request died between the phases is finished by the next attempt."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import pytest

from canopy_svc.rules import cards as card_rules
from canopy_svc.wire.models import CardUpdate
from tests.fake_lithic import FakeLithic
from tests.helpers import ApiClient, account, assert_error, linked_customer, make_worker, use_lithic

PATH = "/accounts/acc-1/customers/cust-1/cards"


async def issued_card(api: ApiClient, pool: asyncpg.Pool, fake: FakeLithic) -> asyncpg.Record:
    await use_lithic(api, fake)
    await linked_customer(api, await account(api))
    await make_worker(pool).process_due()
    card = await pool.fetchrow("SELECT * FROM cards")
    assert card["status"] == "ISSUED"
    return card


async def held_at_lithic(fake: FakeLithic) -> None:
    """Waits (bounded) until the request the test started is inside Lithic."""
    assert await asyncio.to_thread(fake.holding.wait, 30), "the change never reached Lithic"


@pytest.mark.parametrize("body", [{"state": "PAUSED"}, {"spend_limit": 4321}, {"state": "CLOSED", "spend_limit": None}])
@pytest.mark.parametrize("idempotency_key", [None, "change-1"])
async def test_a_slow_lithic_holds_no_row_lock_and_no_open_transaction(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic, body: dict[str, Any], idempotency_key: str | None
) -> None:
    card = await issued_card(api, pool, fake_lithic)
    fake_lithic.hold_next()
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    change = asyncio.create_task(api.http.put(PATH, json=body, headers=headers))
    try:
        await held_at_lithic(fake_lithic)
        async with pool.acquire() as conn, conn.transaction():
            # NOWAIT: a lock still held by the request would raise LockNotAvailableError at once.
            await conn.execute("SELECT 1 FROM cards WHERE id = $1 FOR UPDATE NOWAIT", card["id"])
            await conn.execute("SELECT 1 FROM customer_account_links WHERE id = $1 FOR UPDATE NOWAIT", card["link_id"])
        open_transactions = await pool.fetchval(
            """SELECT count(*) FROM pg_stat_activity
               WHERE datname = current_database() AND state LIKE 'idle in transaction%'"""
        )
        assert open_transactions == 0
        # Work that locks the same link goes through meanwhile.
        another = await api.http.post(PATH, json={})
        assert another.status_code == 200, another.text
    finally:
        fake_lithic.release()
    answer = await change
    assert answer.status_code == 200, answer.text
    expected_state = body.get("state", "OPEN")
    assert answer.json()["state"] == expected_state
    stored = await pool.fetchrow(
        "SELECT state, spend_limit, change_id, change_fields FROM cards WHERE id = $1", card["id"]
    )
    assert stored["state"] == expected_state
    assert stored["spend_limit"] == body.get("spend_limit", card["spend_limit"])
    assert stored["change_id"] is None and stored["change_fields"] is None
    if idempotency_key:
        replay = await api.http.put(PATH, json=body, headers=headers)
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json() == answer.json()
        patches = [r for r in fake_lithic.requests if r.method == "PATCH"]
        assert len(patches) == 1


async def test_a_second_change_while_the_first_is_at_lithic_is_409(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await issued_card(api, pool, fake_lithic)
    fake_lithic.hold_next()
    first = asyncio.create_task(api.http.put(PATH, json={"state": "PAUSED"}))
    try:
        await held_at_lithic(fake_lithic)
        assert_error(await api.http.put(PATH, json={"state": "OPEN"}), 409, "conflict")
    finally:
        fake_lithic.release()
    assert (await first).json()["state"] == "PAUSED"
    assert (await pool.fetchrow("SELECT state FROM cards"))["state"] == "PAUSED"


async def test_a_repeat_under_the_key_while_at_lithic_is_409_in_progress(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await issued_card(api, pool, fake_lithic)
    fake_lithic.hold_next()
    headers = {"Idempotency-Key": "pause-1"}
    first = asyncio.create_task(api.http.put(PATH, json={"state": "PAUSED"}, headers=headers))
    try:
        await held_at_lithic(fake_lithic)
        assert_error(
            await api.http.put(PATH, json={"state": "PAUSED"}, headers=headers), 409, "idempotency_in_progress"
        )
    finally:
        fake_lithic.release()
    assert (await first).status_code == 200


async def test_a_refused_change_leaves_the_card_and_no_recorded_change(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    card = await issued_card(api, pool, fake_lithic)
    fake_lithic.fail_next(status=400, message="Nope")
    headers = {"Idempotency-Key": "refused-1"}
    refused = await api.http.put(PATH, json={"state": "PAUSED"}, headers=headers)
    assert refused.status_code == 422
    stored = await pool.fetchrow("SELECT state, change_id FROM cards WHERE id = $1", card["id"])
    assert (stored["state"], stored["change_id"]) == ("OPEN", None)
    # A refusal is an answer: kept under the key, replayed without asking Lithic again.
    replay = await api.http.put(PATH, json={"state": "PAUSED"}, headers=headers)
    assert replay.status_code == 422 and replay.headers["Idempotent-Replayed"] == "true"


async def crash_after_recording(pool: asyncpg.Pool, api: ApiClient, app: Any, change: CardUpdate) -> None:
    """Phase 1 committed, then the process died: the change is recorded, Lithic never called."""
    async with pool.acquire() as conn, conn.transaction():
        await card_rules.begin_card_change(
            conn, api.org_id, "acc-1", "cust-1", change, app.resources.card_gateway, lease_seconds=60
        )


async def age_recorded_changes(pool: asyncpg.Pool, seconds: float) -> None:
    await pool.execute("UPDATE cards SET change_started_at = change_started_at - make_interval(secs => $1)", seconds)
    await pool.execute("UPDATE idempotency_keys SET created_at = created_at - make_interval(secs => $1)", seconds)


async def test_the_worker_finishes_a_change_whose_request_died(
    api: ApiClient, pool: asyncpg.Pool, app: Any, fake_lithic: FakeLithic
) -> None:
    card = await issued_card(api, pool, fake_lithic)
    await crash_after_recording(pool, api, app, CardUpdate(state="PAUSED", spend_limit=777))
    worker = make_worker(pool)
    await worker.process_due()
    assert not [r for r in fake_lithic.requests if r.method == "PATCH"]  # the lease has not run out yet
    assert_error(await api.http.put(PATH, json={"state": "OPEN"}), 409, "conflict")

    await age_recorded_changes(pool, 120)
    await worker.process_due()
    (patch,) = [r for r in fake_lithic.requests if r.method == "PATCH"]
    assert (patch.path, patch.body) == (f"/v1/cards/{card['token']}", {"state": "PAUSED", "spend_limit": 777})
    stored = await pool.fetchrow("SELECT state, spend_limit, change_id FROM cards WHERE id = $1", card["id"])
    assert (stored["state"], stored["spend_limit"], stored["change_id"]) == ("PAUSED", 777, None)
    assert fake_lithic.cards[card["token"]]["state"] == "PAUSED"


async def test_a_retry_under_the_key_finishes_a_change_whose_request_died(
    api: ApiClient, pool: asyncpg.Pool, app: Any, fake_lithic: FakeLithic
) -> None:
    """The placeholder a dead request left under its key is taken over once the lease has run out."""
    await issued_card(api, pool, fake_lithic)
    headers = {"Idempotency-Key": "pause-after-crash"}
    body = {"state": "PAUSED"}
    fake_lithic.hold_next()
    first = asyncio.create_task(api.http.put(PATH, json=body, headers=headers))
    await held_at_lithic(fake_lithic)
    first.cancel()  # the client and its request die mid-call; phase 1 is committed
    with pytest.raises(asyncio.CancelledError):
        await first
    fake_lithic.release()
    assert await pool.fetchval("SELECT status FROM idempotency_keys") == 0
    assert_error(await api.http.put(PATH, json=body, headers=headers), 409, "idempotency_in_progress")

    await age_recorded_changes(pool, 120)
    retried = await api.http.put(PATH, json=body, headers=headers)
    assert retried.status_code == 200, retried.text
    assert retried.json()["state"] == "PAUSED"
    assert (await pool.fetchrow("SELECT state, change_id FROM cards"))["state"] == "PAUSED"
    assert await pool.fetchval("SELECT status FROM idempotency_keys") == 200


async def test_a_recorded_change_holds_only_what_the_caller_sent(
    api: ApiClient, pool: asyncpg.Pool, app: Any, fake_lithic: FakeLithic
) -> None:
    await issued_card(api, pool, fake_lithic)
    await crash_after_recording(pool, api, app, CardUpdate(spend_limit=None))
    recorded = await pool.fetchrow("SELECT change_id, change_fields FROM cards")
    uuid.UUID(str(recorded["change_id"]))
    assert json.loads(recorded["change_fields"]) == {"spend_limit": 0}  # Lithic's "no limit"
