"""Every card of a link is addressable (issue 13 item 3): read one or all, and change the one a body
names by `card_token`, the newest staying the default."""

from __future__ import annotations

import asyncpg

from tests.fake_lithic import FakeLithic
from tests.helpers import ApiClient, account, assert_error, linked_customer, make_worker, use_lithic

PATH = "/accounts/acc-1/customers/cust-1/cards"


async def two_issued_cards(api: ApiClient, pool: asyncpg.Pool, fake: FakeLithic) -> tuple[str, str]:
    """The link's first card and a second one, both issued: (older token, newer token)."""
    await use_lithic(api, fake)
    await linked_customer(api, await account(api))
    second = await api.http.post(PATH, json={})
    assert second.status_code == 200, second.text
    worker = make_worker(pool)
    while await worker.process_due():
        pass
    tokens = [row["token"] for row in await pool.fetch("SELECT token FROM cards WHERE status = 'ISSUED' ORDER BY id")]
    assert len(tokens) == 2
    return tokens[0], tokens[1]


async def test_the_list_is_the_links_cards_newest_first_and_one_reads_by_token(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    older, newer = await two_issued_cards(api, pool, fake_lithic)
    listed = await api.http.get(PATH)
    assert listed.status_code == 200, listed.text
    assert [card["token"] for card in listed.json()] == [newer, older]
    one = await api.http.get(f"{PATH}/{older}")
    assert one.status_code == 200, one.text
    assert one.json() == listed.json()[1]
    assert one.json()["lithic"]["token"] == older and one.json()["status"] == "ISSUED"


async def test_a_body_naming_an_older_card_changes_that_card_and_no_other(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    older, newer = await two_issued_cards(api, pool, fake_lithic)
    changed = await api.http.put(PATH, json={"card_token": older, "state": "PAUSED"})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["token"], changed.json()["state"]) == (older, "PAUSED")
    states = {row["token"]: row["state"] for row in await pool.fetch("SELECT token, state FROM cards")}
    assert states == {older: "PAUSED", newer: "OPEN"}
    patches = [r for r in fake_lithic.requests if r.method == "PATCH"]
    assert [r.path for r in patches] == [f"/v1/cards/{older}"]
    # Without card_token, the newest card is the one changed (the behaviour before card_token).
    default = await api.http.put(PATH, json={"state": "PAUSED"})
    assert default.json()["token"] == newer
    # Once closed, the older card refuses further changes (it is still addressable to be read).
    assert (await api.http.put(PATH, json={"card_token": older, "state": "CLOSED"})).status_code == 200
    assert_error(await api.http.put(PATH, json={"card_token": older, "state": "OPEN"}), 409, "conflict")


async def test_an_unknown_token_or_one_of_another_link_is_404_and_changes_nothing(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    older, _ = await two_issued_cards(api, pool, fake_lithic)
    await linked_customer(api, "acc-1", customer_id="cust-2")
    await make_worker(pool).process_due()
    other_link_token = await pool.fetchval(
        "SELECT token FROM cards WHERE token IS NOT NULL AND token <> ALL($1::text[]) ORDER BY id DESC LIMIT 1",
        [older],
    )
    before = await pool.fetch("SELECT id, state, spend_limit FROM cards ORDER BY id")
    for token in ("no-such-card", other_link_token):
        assert_error(await api.http.put(PATH, json={"card_token": token, "state": "PAUSED"}), 404, "not_found")
        assert_error(await api.http.get(f"{PATH}/{token}"), 404, "not_found")
    assert await pool.fetch("SELECT id, state, spend_limit FROM cards ORDER BY id") == before
    assert not [r for r in fake_lithic.requests if r.method == "PATCH"]


async def test_another_organization_reads_and_changes_none_of_the_cards(
    api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    older, newer = await two_issued_cards(api, pool, fake_lithic)
    # The same ids in the other organization: its own account and customer, so only the card differs.
    await use_lithic(other_api, fake_lithic)
    await linked_customer(other_api, await account(other_api))
    assert (await other_api.http.get(PATH)).json() != (await api.http.get(PATH)).json()
    for token in (older, newer):
        assert_error(await other_api.http.get(f"{PATH}/{token}"), 404, "not_found")
        answer = await other_api.http.put(PATH, json={"card_token": token, "state": "CLOSED"})
        assert_error(answer, 404, "not_found")
    assert {
        row["state"] for row in await pool.fetch("SELECT state FROM cards WHERE token = ANY($1)", [older, newer])
    } == {"OPEN"}
    # Without the other organization's account, its list is a 404 too.
    assert_error(await other_api.http.get("/accounts/acc-9/customers/cust-1/cards"), 404, "not_found")


async def test_a_bad_card_token_is_a_422(api: ApiClient) -> None:
    for token in ("", 7, "x" * 65):
        answer = await api.http.put(PATH, json={"card_token": token, "state": "PAUSED"})
        assert answer.status_code in (400, 422), answer.text
        assert "card_token" in answer.text
