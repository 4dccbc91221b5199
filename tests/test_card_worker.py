"""Exactly one card per link, whatever Lithic, the network or our own processes do in between."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from canopy_svc.core.crypto import DataCipher
from canopy_svc.issuers.gateway import CardGateway
from canopy_svc.workers.cards import CardWorker
from tests.fake_lithic import FakeLithic
from tests.helpers import (
    CARD_CONFIG,
    LITHIC_KEY,
    PROGRAM,
    TEST_DATA_KEY,
    ApiClient,
    account,
    assert_invalid,
    linked_customer,
    make_client,
    make_worker,
    minimal_customer,
    use_lithic,
)
from tests.processes import ServerProcess, poll, token_for


async def cards(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM cards ORDER BY id")


async def make_due_now(pool: asyncpg.Pool) -> None:
    """Skips the backoff wait (its length is checked separately)."""
    await pool.execute("UPDATE cards SET next_attempt_at = now() WHERE status = 'PENDING'")


def creates(fake: FakeLithic) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST" and r.path == "/v1/cards"]


async def test_card_request_matches_lithic_spec(api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic) -> None:
    await use_lithic(api, fake_lithic)
    await linked_customer(api, await account(api))
    assert await make_worker(pool).process_due() == 1

    (card,) = await cards(pool)
    assert card["status"] == "ISSUED"
    (request,) = creates(fake_lithic)
    assert request.headers["Authorization"] == LITHIC_KEY  # the raw key: Lithic's scheme, no "Bearer"
    assert request.headers["Idempotency-Key"] == str(card["idempotency_key"])
    assert request.body == {
        "type": "MERCHANT_LOCKED",
        "memo": "Primary College Card",
        "state": "OPEN",
        "spend_limit": 8000000,
        "card_program_token": PROGRAM,
    }
    lithic_card = fake_lithic.cards[card["token"]]
    assert card["last_four"] == lithic_card["last_four"]
    assert fake_lithic.spec_violations == []


async def test_two_failures_then_success_make_one_card(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await use_lithic(api, fake_lithic)
    await linked_customer(api, await account(api))
    worker = make_worker(pool)
    fake_lithic.fail_next(status=500)
    fake_lithic.fail_next(status=429, retry_after="7")

    await worker.process_due()
    assert (await cards(pool))[0]["status"] == "PENDING"
    await make_due_now(pool)
    await worker.process_due()
    (card,) = await cards(pool)
    assert card["status"] == "PENDING"
    # Retry-After is honoured: the next attempt is about 7 s away, not the 10 ms base backoff.
    wait = await pool.fetchval("SELECT extract(epoch FROM next_attempt_at - now()) FROM cards")
    assert 5 < wait <= 7.5
    await make_due_now(pool)
    await worker.process_due()

    (card,) = await cards(pool)
    assert card["status"] == "ISSUED" and card["attempts"] == 3
    assert len(fake_lithic.cards) == 1
    assert {r.headers["Idempotency-Key"] for r in creates(fake_lithic)} == {str(card["idempotency_key"])}
    assert len(creates(fake_lithic)) == 3
    assert fake_lithic.spec_violations == []


async def test_lost_answer_is_retried_with_the_same_key_and_gets_the_same_card(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await use_lithic(api, fake_lithic)
    await linked_customer(api, await account(api))
    worker = make_worker(pool)
    fake_lithic.lose_answer_next()  # Lithic makes the card, we never hear of it

    await worker.process_due()
    assert len(fake_lithic.cards) == 1 and (await cards(pool))[0]["status"] == "PENDING"
    await make_due_now(pool)
    await worker.process_due()

    (card,) = await cards(pool)
    assert card["status"] == "ISSUED"
    assert list(fake_lithic.cards) == [card["token"]]
    assert len({r.headers["Idempotency-Key"] for r in creates(fake_lithic)}) == 1


async def test_timeout_is_retried(api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic) -> None:
    await use_lithic(api, fake_lithic)
    await linked_customer(api, await account(api))
    # A timeout far below the delay, yet long enough for the retry's answer on a loaded machine.
    worker = make_worker(pool, timeout=1.5)
    fake_lithic.delay_next(30.0)

    await worker.process_due()
    assert (await cards(pool))[0]["status"] == "PENDING"
    await make_due_now(pool)
    await worker.process_due()
    (card,) = await cards(pool)
    assert card["status"] == "ISSUED"
    assert len({r.headers["Idempotency-Key"] for r in creates(fake_lithic)}) == 1


async def test_lithic_422_marks_the_card_failed_with_its_message(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await use_lithic(api, fake_lithic)
    await linked_customer(api, await account(api))
    fake_lithic.fail_next(status=422, message="Invalid card_program_token")

    await make_worker(pool).process_due()

    (card,) = await cards(pool)
    assert card["status"] == "FAILED"
    assert card["error"] == "Invalid card_program_token"
    shown = (await api.http.get("/accounts/acc-1")).json()["customers"][0]["card_details"][0]
    assert shown["status"] == "FAILED" and shown["error"] == "Invalid card_program_token"
    assert await make_worker(pool).process_due() == 0  # a FAILED card is never retried


async def test_lithic_down_keeps_the_card_pending_until_it_returns(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await use_lithic(api, fake_lithic)
    fake_lithic.go_down()
    await linked_customer(api, await account(api))  # the customer does not wait for Lithic
    worker = make_worker(pool)

    for _ in range(3):
        await worker.process_due()
        await make_due_now(pool)
    assert (await cards(pool))[0]["status"] == "PENDING"
    assert await pool.fetchval("SELECT count(*) FROM customers") == 1

    fake_lithic.come_back()
    await worker.process_due()
    (card,) = await cards(pool)
    assert card["status"] == "ISSUED" and len(fake_lithic.cards) == 1


async def test_two_workers_racing_issue_each_card_once(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await use_lithic(api, fake_lithic)
    account_id = await account(api)
    for number in range(20):
        await linked_customer(api, account_id, f"cust-{number}")
    first, second = make_worker(pool), make_worker(pool)
    first.batch_size = second.batch_size = 3

    while True:
        handled = await asyncio.gather(first.process_due(), second.process_due())
        if sum(handled) == 0:
            break

    assert [card["status"] for card in await cards(pool)] == ["ISSUED"] * 20
    assert len(creates(fake_lithic)) == 20
    assert len(fake_lithic.cards) == 20
    assert fake_lithic.spec_violations == []


async def test_worker_wakes_on_commit_not_by_polling(api: ApiClient, pool: asyncpg.Pool, database_url: str) -> None:
    gateway = CardGateway(DataCipher(TEST_DATA_KEY))
    # idle_seconds=60: only a NOTIFY can make it issue the card within the bound below.
    worker = CardWorker(pool, database_url, gateway, idle_seconds=60)
    task = asyncio.create_task(worker.run())
    try:
        account_id = await account(api)
        await asyncio.sleep(0.2)  # let it drain the (empty) outbox and start idling
        started = time.monotonic()
        await linked_customer(api, account_id)
        for _ in range(200):
            if (await cards(pool))[0]["status"] == "ISSUED":
                break
            await asyncio.sleep(0.025)
        assert (await cards(pool))[0]["status"] == "ISSUED"
        assert time.monotonic() - started < 5
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_killed_between_lithic_answer_and_commit_then_restarted_makes_one_card(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path, fake_lithic: FakeLithic
) -> None:
    _, client_id, secret = await make_client(pool, "acme")
    env = {"CANOPY_SVC_CARD_LEASE_SECONDS": "1", "CANOPY_SVC_CARD_RETRY_BASE_SECONDS": "0.05"}
    first = ServerProcess(database_url, tmp_path / "first", **env).start()
    try:
        headers = {"Authorization": f"Bearer {token_for(first, client_id, secret)}"}
        async with httpx.AsyncClient(base_url=first.base_url, headers=headers, timeout=10) as http:
            configured = await http.put(
                "/organization/issuer_processors",
                json={"lithic_config": {"api_key": LITHIC_KEY, "base_url": fake_lithic.base_url}},
            )
            assert configured.status_code == 200
            product = await http.post(
                "/products", json={"product_overview": {"product_name": "Card", "product_type": "REVOLVING"}}
            )
            assert (
                await http.post("/accounts", json={"account_id": "acc-1", "product_id": product.json()["product_id"]})
            ).status_code == 200
            fake_lithic.stall_after_work_next(30)  # the card exists at Lithic; the answer never leaves
            created = await http.post(
                "/customers",
                json=minimal_customer(
                    assign_to_accounts=[
                        {"account_id": "acc-1", "customer_account_issuer_processor_config": CARD_CONFIG}
                    ]
                ),
            )
            assert created.status_code == 200
        assert fake_lithic.work_done.wait(15), "the worker never called Lithic"
        first.kill()  # SIGKILL: no commit of the answer, no cleanup
    finally:
        first.kill()
    assert len(fake_lithic.cards) == 1
    assert (await cards(pool))[0]["status"] == "PENDING"

    with ServerProcess(database_url, tmp_path / "second", **env):

        async def issued() -> bool:
            return (await cards(pool))[0]["status"] == "ISSUED"

        for _ in range(300):
            if await issued():
                break
            await asyncio.sleep(0.05)
        (card,) = await cards(pool)
    assert card["status"] == "ISSUED"
    assert list(fake_lithic.cards) == [card["token"]]
    keys = {r.headers["Idempotency-Key"] for r in creates(fake_lithic)}
    assert keys == {str(card["idempotency_key"])} and len(creates(fake_lithic)) == 2
    assert fake_lithic.spec_violations == []


def test_simulator_issues_cards_in_a_real_server(pool: asyncpg.Pool, database_url: str, tmp_path: Path) -> None:
    """`make run` plus curl: with no Lithic key a card still reaches ISSUED, by the built-in simulator."""
    _, client_id, secret = asyncio.run(make_client_in_new_loop(database_url))
    with ServerProcess(database_url, tmp_path) as server:
        headers = {"Authorization": f"Bearer {token_for(server, client_id, secret)}"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=10) as http:
            product = http.post(
                "/products", json={"product_overview": {"product_name": "Card", "product_type": "REVOLVING"}}
            ).json()
            http.post("/accounts", json={"account_id": "acc-1", "product_id": product["product_id"]})
            http.post(
                "/customers",
                json=minimal_customer(
                    assign_to_accounts=[
                        {"account_id": "acc-1", "customer_account_issuer_processor_config": CARD_CONFIG}
                    ]
                ),
            )

            def issued_card() -> dict[str, Any] | None:
                card = http.get("/accounts/acc-1").json()["customers"][0]["card_details"][0]
                return card if card["status"] == "ISSUED" else None

            card = poll(issued_card, timeout=10)
    assert len(card["last_four"]) == 4 and card["last_four"].isdigit()
    assert card["token"]


async def make_client_in_new_loop(database_url: str) -> tuple[int, str, str]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        return await make_client(pool, "acme")
    finally:
        await pool.close()


async def test_an_issuer_refusal_of_a_card_change_is_422_naming_the_field(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await use_lithic(api, fake_lithic)
    await linked_customer(api, await account(api))
    await make_worker(pool).process_due()
    (token,) = [r["token"] for r in await pool.fetch("SELECT token FROM cards")]
    fake_lithic.fail_next(status=400, message="Spend limit too high for this program")

    refused = await api.http.put("/accounts/acc-1/customers/cust-1/cards", json={"spend_limit": 5})
    (problem,) = assert_invalid(refused)
    assert (problem["instancePath"], problem["keyword"]) == ("/spend_limit", "format")
    assert "Spend limit too high" in problem["message"]
    patch = fake_lithic.requests[-1]
    assert (patch.method, patch.path, patch.body) == ("PATCH", f"/v1/cards/{token}", {"spend_limit": 5})
    assert patch.headers["Authorization"] == LITHIC_KEY  # Lithic's scheme: the raw key
    (stored,) = await pool.fetch("SELECT spend_limit FROM cards")
    assert stored["spend_limit"] != 5  # the refused change is not recorded


async def test_a_503_is_not_kept_under_an_idempotency_key(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    """Contract section 7: the stored answer is never a 5xx; a retry with the key does the work."""
    await use_lithic(api, fake_lithic)
    await linked_customer(api, await account(api))
    await make_worker(pool).process_due()
    fake_lithic.go_down(status=503)
    headers = {"Idempotency-Key": "pause-1"}

    down = await api.http.put("/accounts/acc-1/customers/cust-1/cards", json={"state": "PAUSED"}, headers=headers)
    assert down.status_code == 503 and down.json()["error"]["code"] == "unavailable"
    assert int(down.headers["retry-after"]) >= 1
    assert await pool.fetchval("SELECT count(*) FROM idempotency_keys") == 0

    fake_lithic.come_back()
    again = await api.http.put("/accounts/acc-1/customers/cust-1/cards", json={"state": "PAUSED"}, headers=headers)
    assert again.status_code == 200 and "Idempotent-Replayed" not in again.headers
    assert again.json()["state"] == "PAUSED"
    replay = await api.http.put("/accounts/acc-1/customers/cust-1/cards", json={"state": "PAUSED"}, headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true"
