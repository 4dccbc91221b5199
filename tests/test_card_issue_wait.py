"""Issued in the answer when it can be (issue 13 item 7): a write that queued a card waits, bounded,
for the card worker to issue it, woken by the worker's NOTIFY, and answers the card as it then stands."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from tests.fake_lithic import FakeLithic
from tests.helpers import CARD_CONFIG, ApiClient, eventually, make_worker, minimal_customer, use_lithic

BOUND_SECONDS = 60  # what a test waits at most for what the worker does on its own


@pytest.fixture
async def listening_app(app: Any, pool: asyncpg.Pool, database_url: str) -> AsyncIterator[Any]:
    """The app's settlement listener and a card worker woken by NOTIFY, as the lifespan runs them (an
    app given its pool runs no lifespan). The wait is long: it ends when the card is issued, so a
    loaded machine makes the test slower, never red."""
    app.resources.settings = dataclasses.replace(app.resources.settings, card_issue_wait_ms=BOUND_SECONDS * 1000)
    settlements = app.resources.card_settlements
    listener = asyncio.create_task(settlements.listen(database_url))
    worker = asyncio.create_task(make_worker(pool, dsn=database_url).run())
    try:

        async def listening() -> bool:
            return settlements.listening

        await eventually(listening, "the settlement listener")
        yield app
    finally:
        for task in (worker, listener):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def account_body(api: ApiClient) -> dict[str, Any]:
    """A customer and a product, and the body of POST /accounts that links the customer with a card."""
    customer = await api.http.post("/customers", json=minimal_customer(customer_id="cust-1"))
    assert customer.status_code == 200, customer.text
    product = await api.http.post(
        "/products", json={"product_overview": {"product_name": "Card", "product_type": "REVOLVING"}}
    )
    return {
        "account_id": "acc-1",
        "product_id": product.json()["product_id"],
        "assign_customers": [{"customer_id": "cust-1", "customer_account_issuer_processor_config": CARD_CONFIG}],
    }


async def create_account_with_card(api: ApiClient, headers: dict[str, str] | None = None) -> Any:
    return await api.http.post("/accounts", json=await account_body(api), headers=headers or {})


async def test_the_create_answers_the_card_issued_and_a_replay_the_answer_kept_at_commit(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic, listening_app: Any
) -> None:
    await use_lithic(api, fake_lithic)
    headers = {"Idempotency-Key": "create-1"}
    body = await account_body(api)
    created = await api.http.post("/accounts", json=body, headers=headers)
    assert created.status_code == 200, created.text
    (card,) = created.json()["customers"][0]["card_details"]
    assert card["status"] == "ISSUED"
    assert card["lithic"]["last_four"] and card["lithic"]["last_four"] == card["last_four"]
    assert card["token"] in fake_lithic.cards
    # The replay answers the stored answer, made at the commit (PENDING); GET shows the card as it is.
    replay = await api.http.post("/accounts", json=body, headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["customers"][0]["card_details"][0]["status"] == "PENDING"
    listed = await api.http.get("/accounts/acc-1/customers/cust-1/cards")
    assert listed.json() == [card]
    # POST .../cards waits the same way.
    another = await api.http.post("/accounts/acc-1/customers/cust-1/cards", json={})
    assert another.status_code == 200, another.text
    assert [(c["status"], len(c["last_four"])) for c in another.json()] == [("ISSUED", 4)]
    assert len([r for r in fake_lithic.requests if r.method == "POST" and r.path == "/v1/cards"]) == 2


async def test_a_stalled_lithic_answers_pending_after_the_wait_and_the_card_is_issued_once(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic, listening_app: Any
) -> None:
    listening_app.resources.settings = dataclasses.replace(listening_app.resources.settings, card_issue_wait_ms=200)
    await use_lithic(api, fake_lithic)
    fake_lithic.hold_next()
    try:
        created = await create_account_with_card(api)
        assert created.status_code == 200, created.text
        (card,) = created.json()["customers"][0]["card_details"]
        assert (card["status"], card["token"], card["last_four"]) == ("PENDING", None, None)
    finally:
        fake_lithic.release()

    async def issued() -> bool:
        return bool(await pool.fetchval("SELECT status FROM cards") == "ISSUED")

    await eventually(issued, "the card issued after the stall")
    assert len([r for r in fake_lithic.requests if r.method == "POST" and r.path == "/v1/cards"]) == 1
    assert len(fake_lithic.cards) == 1
    assert await pool.fetchval("SELECT count(*) FROM cards") == 1


async def test_no_listener_or_a_zero_wait_answers_at_once(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic, app: Any
) -> None:
    """Without a listener (no database URL, or the database away) waiting would only run out."""
    await use_lithic(api, fake_lithic)
    created = await create_account_with_card(api)
    assert created.json()["customers"][0]["card_details"][0]["status"] == "PENDING"
    assert not fake_lithic.requests or all(r.path != "/v1/cards" for r in fake_lithic.requests)
