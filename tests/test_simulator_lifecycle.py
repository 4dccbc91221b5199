"""POST /simulator/authorize: with no Lithic account, a purchase closes a SINGLE_USE card through the
simulator's own signed webhook (verified and applied like Lithic's), with its event."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from tests.helpers import ApiClient, account, assert_error, linked_customer, make_worker

CARDS = "/accounts/acc-1/customers/cust-1/cards"
PATH = "/simulator/authorize"


async def simulated_card(api: ApiClient, pool: asyncpg.Pool, app: Any, card_type: str) -> str:
    """A card of `card_type` issued by the app's own simulator (the organization has no Lithic key)."""
    await linked_customer(api, await account(api))
    answer = await api.http.post(CARDS, json={"lithic": {"type": card_type}})
    assert answer.status_code == 200, answer.text
    worker = make_worker(pool)
    worker.gateway = app.resources.card_gateway  # the simulator the routes use
    while await worker.process_due():
        pass
    token: str = await pool.fetchval("SELECT token FROM cards WHERE card_type = $1 AND status = 'ISSUED'", card_type)
    return token


async def events_of(api: ApiClient, event_type: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = (await api.http.get("/events", params={"type": event_type})).json()["results"]
    return results


async def test_a_single_use_card_closes_after_its_first_purchase(api: ApiClient, pool: asyncpg.Pool, app: Any) -> None:
    token = await simulated_card(api, pool, app, "SINGLE_USE")
    body = {"card_token": token, "amount": 1250, "descriptor": "COFFEE SHOP"}
    first = await api.http.post(PATH, json=body)
    assert first.json() == {"result": "APPROVED", "card_state": "CLOSED"}, first.text
    (closed,) = await events_of(api, "card_closed")
    assert closed["data"]["token"] == token
    assert await pool.fetchval("SELECT count(*) FROM lithic_webhooks_received") == 1  # it came as a webhook
    second = await api.http.post(PATH, json=body)
    assert second.json() == {"result": "DECLINED", "card_state": "CLOSED"}
    assert len(await events_of(api, "card_closed")) == 1


async def test_a_merchant_locked_card_locks_to_its_first_merchant(api: ApiClient, pool: asyncpg.Pool, app: Any) -> None:
    token = await simulated_card(api, pool, app, "MERCHANT_LOCKED")
    answers = [
        (await api.http.post(PATH, json={"card_token": token, "amount": 100, "descriptor": shop})).json()["result"]
        for shop in ("BOOKS", "BOOKS", "GAMES")
    ]
    assert answers == ["APPROVED", "APPROVED", "DECLINED"]
    assert await events_of(api, "card_closed") == []


async def test_the_simulators_webhook_verifies_only_with_its_secret(
    api: ApiClient, pool: asyncpg.Pool, app: Any, anonymous: httpx.AsyncClient
) -> None:
    """From outside, a webhook for a simulator's card needs the simulator's secret, like any other."""
    token = await simulated_card(api, pool, app, "SINGLE_USE")
    simulator = app.resources.card_gateway.simulator
    body = b'{"event_type": "card.updated", "token": "' + token.encode() + b'", "state": "CLOSED"}'
    headers = {"content-type": "application/json", "webhook-id": "msg_x", "webhook-timestamp": "1"}
    assert_error(await anonymous.post("/webhooks/lithic", content=body, headers=headers), 401, "unauthorized")
    assert await pool.fetchval("SELECT state FROM cards WHERE token = $1", token) == "OPEN"
    outcome = simulator.authorize(token, 100, "SHOP")
    assert outcome is not None and outcome.webhook_body
    answer = await anonymous.post("/webhooks/lithic", content=outcome.webhook_body, headers=outcome.webhook_headers)
    assert answer.json() == {"description": "Applied."}, answer.text
    assert await pool.fetchval("SELECT state FROM cards WHERE token = $1", token) == "CLOSED"


async def test_another_organizations_card_is_not_found(
    api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool, app: Any
) -> None:
    token = await simulated_card(api, pool, app, "SINGLE_USE")
    body = {"card_token": token, "amount": 100, "descriptor": "SHOP"}
    assert_error(await other_api.http.post(PATH, json=body), 404, "not_found")
    assert await pool.fetchval("SELECT state FROM cards WHERE token = $1", token) == "OPEN"
    assert await events_of(other_api, "card_closed") == [] and await events_of(api, "card_closed") == []


async def test_bad_requests_are_4xx(api: ApiClient) -> None:
    for body in (
        {"card_token": "nope", "amount": 1, "descriptor": "SHOP"},
        {"card_token": "7ef7d65c-9023-4da3-b113-3b8583fd7951", "amount": 0, "descriptor": "SHOP"},
        {"card_token": "7ef7d65c-9023-4da3-b113-3b8583fd7951", "amount": 1, "descriptor": ""},
    ):
        assert_error(await api.http.post(PATH, json=body), 422, "invalid_input")
    unknown = {"card_token": "7ef7d65c-9023-4da3-b113-3b8583fd7951", "amount": 1, "descriptor": "SHOP"}
    assert_error(await api.http.post(PATH, json=unknown), 404, "not_found")


async def test_a_card_paused_through_the_api_is_declined_by_the_simulator(
    api: ApiClient, pool: asyncpg.Pool, app: Any
) -> None:
    """The simulator decides by its own copy of the card: a change through PUT reaches it too."""
    token = await simulated_card(api, pool, app, "VIRTUAL")
    body = {"card_token": token, "amount": 100, "descriptor": "BOOKS"}
    assert (await api.http.put(CARDS, json={"card_token": token, "state": "PAUSED"})).status_code == 200
    assert (await api.http.post(PATH, json=body)).json() == {"result": "DECLINED", "card_state": "PAUSED"}
    assert (
        await api.http.put(CARDS, json={"card_token": token, "state": "OPEN", "spend_limit": 50})
    ).status_code == 200
    assert (await api.http.post(PATH, json=body)).json()["result"] == "DECLINED"  # over its new limit
    assert (await api.http.post(PATH, json={**body, "amount": 50})).json()["result"] == "APPROVED"
