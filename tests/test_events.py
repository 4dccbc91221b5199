"""Events are facts committed with their change (issue 12, item 1): each change writes exactly one
event of its type whose data is the object as the API answered it (SSN out), a change that fails
writes none, and GET /events is one organization's feed, paged like every list."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from tests.fake_lithic import FakeLithic
from tests.helpers import (
    CARD_CONFIG,
    NEW_FIELDS,
    ApiClient,
    account,
    assert_error,
    linked_customer,
    make_worker,
    minimal_customer,
    seed_customer,
    use_lithic,
)

CARDS = "/accounts/acc-1/customers/cust-1/cards"


async def all_events(api: ApiClient, **query: str) -> list[dict[str, Any]]:
    answer = await api.http.get("/events", params={"limit": "1000", **query})
    assert answer.status_code == 200, answer.text
    results: list[dict[str, Any]] = answer.json()["results"]
    return results


async def types(api: ApiClient) -> list[str]:
    return [event["type"] for event in await all_events(api)]


def without_ssn(body: dict[str, Any]) -> dict[str, Any]:
    # The SSN and passport numbers (issue 11's fields) are never in an event.
    return {key: value for key, value in body.items() if key not in ("ssn", "passport", "warnings")}


async def test_a_customer_create_and_update_each_write_one_event_with_the_answer_as_data(api: ApiClient) -> None:
    created = await api.http.post("/customers", json=seed_customer())
    assert created.status_code == 200, created.text
    updated = await api.http.patch("/customers/0x1234", json={"email": "miriam@example.com"})
    assert updated.status_code == 200, updated.text
    events = await all_events(api)
    assert [e["type"] for e in events] == ["customer_created", "customer_updated"]
    assert events[0]["data"] == without_ssn(created.json())
    assert events[1]["data"] == without_ssn(updated.json())
    assert "ssn" not in events[0]["data"] and created.json()["ssn"] == "888888888"
    assert all(e["id"].startswith("evt_") and e["created_at"].endswith("Z") for e in events)


async def test_an_account_with_a_customer_writes_the_link_and_the_account(api: ApiClient) -> None:
    customer = await api.http.post("/customers", json=seed_customer())
    assert customer.status_code == 200
    product = await api.http.post(
        "/products", json={"product_overview": {"product_name": "C", "product_type": "REVOLVING"}}
    )
    created = await api.http.post(
        "/accounts",
        json={"account_id": "acc-1", "product_id": product.json()["product_id"], "assign_customers": [
            {"customer_id": "0x1234", "customer_account_role": "SECONDARY", "customer_account_external_id": "ext-1"}
        ]},
    )  # fmt: skip
    assert created.status_code == 200, created.text
    events = await all_events(api)
    assert [e["type"] for e in events] == ["customer_created", "customer_account_linked", "account_created"]
    assert events[1]["data"] == {
        "customer_id": "0x1234",
        "account_id": "acc-1",
        "customer_account_role": "SECONDARY",
        "customer_account_external_id": "ext-1",
    }
    account_data = created.json()
    for customer_data in account_data["customers"]:
        customer_data.pop("ssn")
        customer_data.pop("passport")
    assert events[2]["data"] == account_data
    assert "ssn" not in str(events) and "passport" not in str(events)


async def test_a_link_from_the_customer_side_is_an_event_and_relinking_is_not(api: ApiClient) -> None:
    await account(api)
    created = await api.http.post(
        "/customers", json=minimal_customer(customer_id="c-1", assign_to_accounts=[{"account_id": "acc-1"}])
    )
    assert created.status_code == 200, created.text
    # The same link again (a role change) is an update of the customer, not a new link.
    again = await api.http.put(
        "/customers/c-1", json={"assign_to_accounts": [{"account_id": "acc-1", "customer_account_role": "SECONDARY"}]}
    )
    assert again.status_code == 200, again.text
    assert await types(api) == ["account_created", "customer_created", "customer_account_linked", "customer_updated"]


async def test_every_card_transition_is_an_event_with_the_card_item(api: ApiClient, pool: asyncpg.Pool) -> None:
    await account(api)
    await linked_customer(api, "acc-1")
    pending = [e for e in await all_events(api) if e["type"] == "card_pending"]
    assert len(pending) == 1 and pending[0]["data"]["status"] == "PENDING"
    assert pending[0]["data"]["account_id"] == "acc-1" and pending[0]["data"]["customer_id"] == "cust-1"

    await make_worker(pool).process_due()  # the simulator issues it
    issued = [e for e in await all_events(api) if e["type"] == "card_issued"]
    assert len(issued) == 1
    account_answer = (await api.http.get("/accounts/acc-1")).json()
    (card,) = account_answer["customers"][0]["card_details"]
    assert issued[0]["data"] == {**card, "account_id": "acc-1", "customer_id": "cust-1"}

    paused = await api.http.put(CARDS, json={"state": "PAUSED", "spend_limit": 500})
    assert paused.status_code == 200, paused.text
    closed = await api.http.put(CARDS, json={"state": "CLOSED"})
    assert closed.status_code == 200, closed.text
    events = await all_events(api)
    assert [e["type"] for e in events if e["type"] in ("card_updated", "card_closed")] == [
        "card_updated",
        "card_closed",
    ]
    assert events[-2]["data"] == {**paused.json(), "account_id": "acc-1", "customer_id": "cust-1"}
    assert events[-1]["data"]["state"] == "CLOSED"

    # A refused change (the card is closed) writes nothing.
    refused = await api.http.put(CARDS, json={"state": "OPEN"})
    assert_error(refused, 409, "conflict")
    assert len(await all_events(api)) == len(events)


async def test_a_card_the_issuer_refuses_is_card_failed_and_a_change_at_lithic_is_card_updated(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await use_lithic(api, fake_lithic)
    await account(api)
    fake_lithic.fail_next(status=400, message="bad program")
    await linked_customer(api, "acc-1")
    await make_worker(pool).process_due()
    failed = [e for e in await all_events(api) if e["type"] == "card_failed"]
    assert len(failed) == 1 and failed[0]["data"]["status"] == "FAILED"

    issued = await api.http.post(CARDS, json={})  # another card, which Lithic now issues
    assert issued.status_code == 200, issued.text
    await make_worker(pool).process_due()
    changed = await api.http.put(CARDS, json={"spend_limit": 1234})
    assert changed.status_code == 200, changed.text
    kinds = await types(api)
    assert kinds.count("card_pending") == 2 and kinds.count("card_issued") == 1
    assert kinds[-1] == "card_updated"
    assert (await all_events(api, type="card_updated"))[0]["data"]["spend_limit"] == 1234


async def test_a_change_that_fails_writes_no_event(api: ApiClient) -> None:
    await account(api)
    # A link to an account that is not there: 404, and nothing stored, events included.
    missing = await api.http.post(
        "/customers", json=minimal_customer(customer_id="c-1", assign_to_accounts=[{"account_id": "nope"}])
    )
    assert_error(missing, 404, "not_found")
    assert await types(api) == ["account_created"]
    created = await api.http.post("/customers", json=minimal_customer(customer_id="c-1"))
    assert created.status_code == 200
    for refused in (
        await api.http.post("/customers", json=minimal_customer(customer_id="c-1")),  # 409
        await api.http.patch("/customers/c-1", json={"email": "not an email"}),  # 422
        await api.http.patch("/customers/c-1", json={"assign_to_accounts": [{"account_id": "nope"}]}),  # 404
        await api.http.post("/accounts", json={"product_id": "nope"}),  # 404
    ):
        assert refused.status_code in (404, 409, 422), refused.text
    assert await types(api) == ["account_created", "customer_created"]


async def test_an_idempotent_replay_writes_no_second_event(api: ApiClient) -> None:
    headers = {"Idempotency-Key": "k-1"}
    for _ in range(2):
        answer = await api.http.post("/customers", json=minimal_customer(customer_id="c-1"), headers=headers)
        assert answer.status_code == 200
    assert await types(api) == ["customer_created"]


async def test_the_feed_pages_filters_and_reads_one(api: ApiClient) -> None:
    for n in range(5):
        assert (await api.http.post("/customers", json=minimal_customer(customer_id=f"c-{n}"))).status_code == 200
    assert (await api.http.patch("/customers/c-0", json={"name_first": "Grace"})).status_code == 200
    first = (await api.http.get("/events", params={"limit": "2"})).json()
    assert [e["data"]["customer_id"] for e in first["results"]] == ["c-0", "c-1"]
    assert first["paging"]["has_more"] is True and first["paging"]["ending_before"] is None
    second = (
        await api.http.get("/events", params={"limit": "2", "starting_after": first["paging"]["starting_after"]})
    ).json()
    assert [e["data"]["customer_id"] for e in second["results"]] == ["c-2", "c-3"]
    back = (
        await api.http.get("/events", params={"limit": "2", "ending_before": second["paging"]["ending_before"]})
    ).json()
    assert back["results"] == first["results"]

    updates = await all_events(api, type="customer_updated")
    assert [e["data"]["name_first"] for e in updates] == ["Grace"]
    one = await api.http.get(f"/events/{updates[0]['id']}")
    assert one.status_code == 200 and one.json() == updates[0]
    assert len(await all_events(api, type="")) == 6  # an empty filter is none


@pytest.mark.parametrize("bad", ["customer", "CUSTOMER_CREATED", "customer_created ", "x" * 300, "\x00"])
async def test_an_unknown_type_filter_is_a_400(api: ApiClient, bad: str) -> None:
    assert_error(await api.http.get("/events", params={"type": bad}), 400, "bad_request")


@pytest.mark.parametrize("cursor", ["forged", "A" * 27])
async def test_a_forged_cursor_is_a_400(api: ApiClient, cursor: str) -> None:
    assert_error(await api.http.get("/events", params={"starting_after": cursor}), 400, "bad_request")


async def test_an_unknown_event_is_a_404(api: ApiClient) -> None:
    for event_id in ("evt_nope", "x" * 300, "%00"):
        assert_error(await api.http.get(f"/events/{event_id}"), 404, "not_found")


async def test_one_organization_never_sees_anothers_events(api: ApiClient, other_api: ApiClient) -> None:
    assert (await api.http.post("/customers", json=minimal_customer(customer_id="c-1"))).status_code == 200
    (event,) = await all_events(api)
    assert await all_events(other_api) == []
    assert_error(await other_api.http.get(f"/events/{event['id']}"), 404, "not_found")
    cursor = (await api.http.get("/events", params={"limit": "1"})).json()["paging"]
    assert cursor["starting_after"] is None  # one event: no next page, so make one to carry over
    assert (await api.http.post("/customers", json=minimal_customer(customer_id="c-2"))).status_code == 200
    carried = (await api.http.get("/events", params={"limit": "1"})).json()["paging"]["starting_after"]
    assert_error(await other_api.http.get("/events", params={"starting_after": carried}), 400, "bad_request")


async def test_a_card_config_on_the_customer_side_writes_pending_card_events(api: ApiClient) -> None:
    await account(api)
    created = await api.http.post(
        "/customers",
        json=minimal_customer(
            customer_id="c-1",
            assign_to_accounts=[{"account_id": "acc-1", "customer_account_issuer_processor_config": CARD_CONFIG}],
        ),
    )
    assert created.status_code == 200
    assert await types(api) == ["account_created", "customer_created", "customer_account_linked", "card_pending"]


async def test_closing_and_deleting_an_account_are_events_and_so_is_each_card_they_close(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    """Issue 11's lifecycle under issue 12's rule: the status change, the delete, and every card
    transition they cause (a close the worker sends, a card never sent failed at once) are events."""
    await use_lithic(api, fake_lithic)
    await account(api)
    await linked_customer(api, "acc-1")
    await make_worker(pool).process_due()  # issued at the fake Lithic

    closed = await api.http.put("/accounts/acc-1/status", json={"account_status": "CLOSED"})
    assert closed.status_code == 200, closed.text
    (updated,) = await all_events(api, type="account_updated")
    assert updated["data"]["account_overview"]["account_status"] == "CLOSED"
    assert await all_events(api, type="card_closed") == []  # not yet: the worker sends it after the commit
    await make_worker(pool).process_due()
    (card_closed,) = await all_events(api, type="card_closed")
    assert (card_closed["data"]["state"], card_closed["data"]["account_id"]) == ("CLOSED", "acc-1")
    await make_worker(pool).process_due()
    assert len(await all_events(api, type="card_closed")) == 1  # recorded once

    await account(api, "acc-2")
    await linked_customer(api, "acc-2", "cust-2")  # pending, never sent: failed by the delete
    before = await types(api)
    assert (await api.http.delete("/accounts/acc-2")).status_code == 200
    after = await types(api)
    assert after[len(before) :] == ["card_failed", "account_deleted"]
    (deleted,) = await all_events(api, type="account_deleted")
    assert deleted["data"]["account_id"] == "acc-2"
    # A refused change writes nothing: the account is gone, and CLOSED cannot be reopened.
    assert_error(await api.http.delete("/accounts/acc-2"), 404, "not_found")
    assert_error(await api.http.put("/accounts/acc-1/status", json={"account_status": "ACTIVE"}), 409, "conflict")
    assert await types(api) == after


def without_pii_anywhere(value: Any) -> Any:
    """The answer as an event holds it: no SSN or passport at any depth (the controller's included)."""
    if isinstance(value, dict):
        return {k: without_pii_anywhere(v) for k, v in value.items() if k not in ("ssn", "passport", "warnings")}
    if isinstance(value, list):
        return [without_pii_anywhere(item) for item in value]
    return value


@pytest.mark.parametrize("policy", ["off", "warn", "block"])
async def test_a_created_customers_event_is_its_answer_with_every_field(api: ApiClient, policy: str) -> None:
    """The event of a create without links is written in the create's one statement, from what the row
    holds (its timestamps from the row): the same object as the answer, whatever fields it has."""
    settings = await api.http.put("/organization/settings", json={"duplicate_customer_policy": policy})
    assert settings.status_code == 200, settings.text
    parent = await api.http.post("/customers", json=seed_customer(customer_id="parent-1"))
    assert parent.status_code == 200, parent.text
    body = seed_customer(customer_id="child-1", customer_parent_id="parent-1", **NEW_FIELDS)
    if policy == "block":  # created through the transaction that compares first: nothing shared
        body |= {"email": "other@example.com", "phone_number": "+14155550177", "ssn": "123-45-6780"}
        body |= {"address_line_one": "2 Other Rd"}
    created = await api.http.post("/customers", json=body)
    assert created.status_code == 200, created.text
    assert bool(created.json().get("warnings")) == (policy == "warn")
    event = (await all_events(api))[-1]
    assert event["type"] == "customer_created"
    assert event["data"] == without_pii_anywhere(created.json())
    assert (
        event["data"]["created_at"]
        == created.json()["created_at"]
        == (await api.http.get("/customers/child-1")).json()["created_at"]
    )
    assert "ssn" not in event["data"]["business_details"]["controller"]


def count_statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, every statement any connection sends to PostgreSQL (a round trip each), listed."""
    import asyncpg.connection

    sent: list[str] = []
    execute, do_execute = asyncpg.connection.Connection.execute, asyncpg.connection.Connection._do_execute

    async def counted_execute(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        if not args:  # with arguments, execute goes through _do_execute, counted there
            sent.append(query)
        return await execute(self, query, *args, **kwargs)

    async def counted_do_execute(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(query)
        return await do_execute(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.connection.Connection, "execute", counted_execute)
    monkeypatch.setattr(asyncpg.connection.Connection, "_do_execute", counted_do_execute)
    return sent


async def test_a_create_with_a_link_and_its_card_takes_nine_round_trips(
    api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BEGIN; the customer with its comparisons and event; the account; the link; the link's summary;
    its event; the card with its NOTIFY; the card's event; COMMIT. (Before: thirteen, the comparisons,
    the customer's event, the NOTIFY and a second read of the link's summary apart.)"""
    await account(api)
    assignment = {"account_id": "acc-1", "customer_account_issuer_processor_config": CARD_CONFIG}
    warm = minimal_customer(customer_id="warm-up", assign_to_accounts=[assignment])
    assert (await api.http.post("/customers", json=warm)).status_code == 200
    sent = count_statements(monkeypatch)
    body = minimal_customer(
        customer_id="linked", email="l@example.com", phone_number="+14155550188", assign_to_accounts=[assignment]
    )
    assert (await api.http.post("/customers", json=body)).status_code == 200
    assert len(sent) == 9, sent
    assert not [query for query in sent if query.strip().startswith("NOTIFY")]
    assert await types(api) == ["account_created", *["customer_created", "customer_account_linked", "card_pending"] * 2]


async def test_a_create_without_links_is_one_statement(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The customer, its comparisons and its event in one round trip: no BEGIN, no COMMIT, no second
    statement (each costs a round trip to PostgreSQL and the server's time in asyncpg)."""
    assert (await api.http.post("/customers", json=minimal_customer(customer_id="warm-up"))).status_code == 200
    sent = count_statements(monkeypatch)
    created = await api.http.post(
        "/customers",
        json=minimal_customer(customer_id="one-trip", email="one@example.com", phone_number="+14155550199"),
    )
    assert created.status_code == 200, created.text
    assert len(sent) == 1, sent
    assert (await all_events(api))[-1]["data"]["customer_id"] == "one-trip"
