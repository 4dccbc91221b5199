"""POST /webhooks/lithic: Lithic's signed card events change the card they name, once, and only with the
secret of the card's organization; everything else changes nothing."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import httpx
import pytest

from canopy_svc.issuers.webhooks import new_secret
from canopy_svc.rules import lithic_sync
from tests.fake_lithic import FakeLithic
from tests.helpers import (
    ApiClient,
    account,
    assert_error,
    linked_customer,
    make_reconciler,
    make_worker,
    use_lithic,
    use_lithic_webhooks,
)

PATH = "/webhooks/lithic"


async def issued(api: ApiClient, pool: asyncpg.Pool, fake: FakeLithic, secret: str | None = None) -> asyncpg.Record:
    """The organization's first card, issued at the fake, its webhooks signed with `secret`."""
    await use_lithic_webhooks(api, fake, secret)
    await linked_customer(api, await account(api))
    await make_worker(pool).process_due()
    card = await pool.fetchrow("SELECT * FROM cards WHERE org_id = $1 ORDER BY id DESC LIMIT 1", api.org_id)
    assert card is not None and card["status"] == "ISSUED"
    return card


async def post(anonymous: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await anonymous.post(PATH, content=body, headers=headers)


async def card_events(api: ApiClient, event_type: str) -> list[dict[str, Any]]:
    answer = await api.http.get("/events", params={"type": event_type})
    assert answer.status_code == 200, answer.text
    results: list[dict[str, Any]] = answer.json()["results"]
    return results


async def state_of(pool: asyncpg.Pool, card_id: int) -> str:
    state: str = await pool.fetchval("SELECT state FROM cards WHERE id = $1", card_id)
    return state


async def test_a_signed_card_updated_closes_the_card_once_with_one_event(
    api: ApiClient, pool: asyncpg.Pool, anonymous: httpx.AsyncClient, fake_lithic: FakeLithic
) -> None:
    card = await issued(api, pool, fake_lithic)
    body, headers = fake_lithic.signed_webhook(fake_lithic.change_card(card["token"], state="CLOSED"))

    first = await post(anonymous, body, headers)
    assert (first.status_code, first.json()) == (200, {"description": "Applied."})
    assert await state_of(pool, card["id"]) == "CLOSED"
    (closed,) = await card_events(api, "card_closed")
    assert (closed["data"]["state"], closed["data"]["token"]) == ("CLOSED", card["token"])

    again = await post(anonymous, body, headers)  # Lithic's retry: the same webhook-id
    assert (again.status_code, again.json()) == (200, {"description": "Already received."})
    assert len(await card_events(api, "card_closed")) == 1
    assert fake_lithic.spec_violations == []


async def test_svix_header_names_are_read_too(
    api: ApiClient, pool: asyncpg.Pool, anonymous: httpx.AsyncClient, fake_lithic: FakeLithic
) -> None:
    card = await issued(api, pool, fake_lithic)
    body, headers = fake_lithic.signed_webhook(fake_lithic.change_card(card["token"], state="PAUSED"))
    svix = {name.replace("webhook-", "svix-"): value for name, value in headers.items()}
    answer = await post(anonymous, body, svix)
    assert answer.status_code == 200, answer.text
    assert await state_of(pool, card["id"]) == "PAUSED"
    (updated,) = await card_events(api, "card_updated")
    assert updated["data"]["state"] == "PAUSED"


@pytest.mark.parametrize(
    "spoil",
    [
        "other secret",
        "old timestamp",
        "future timestamp",
        "tampered body",
        "no signature",
        "no id",
        "no timestamp",
        "v2 scheme",
        "malformed timestamp",
    ],
)
async def test_a_webhook_that_does_not_verify_is_401_and_changes_nothing(
    api: ApiClient, pool: asyncpg.Pool, anonymous: httpx.AsyncClient, fake_lithic: FakeLithic, spoil: str
) -> None:
    card = await issued(api, pool, fake_lithic)
    event = {"event_type": "card.updated", "token": card["token"], "state": "CLOSED", "previous_fields": {}}
    now = int(time.time())
    if spoil == "other secret":
        body, headers = fake_lithic.signed_webhook(event, secret=new_secret())
    elif spoil in ("old timestamp", "future timestamp"):
        body, headers = fake_lithic.signed_webhook(
            event, timestamp=now - 301 if spoil == "old timestamp" else now + 301
        )
    else:
        body, headers = fake_lithic.signed_webhook(event)
    if spoil == "tampered body":
        body = body.replace(b'"CLOSED"', b'"PAUSED"')
    removed = {"no signature": "webhook-signature", "no id": "webhook-id", "no timestamp": "webhook-timestamp"}
    if spoil in removed:
        del headers[removed[spoil]]
    if spoil == "v2 scheme":
        headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v2,")
    if spoil == "malformed timestamp":
        headers["webhook-timestamp"] = headers["webhook-timestamp"] + ".5"

    answer = await post(anonymous, body, headers)
    body_text = assert_error(answer, 401, "unauthorized")
    assert fake_lithic.webhook_secret not in str(body_text)
    assert await state_of(pool, card["id"]) == "OPEN"
    assert await card_events(api, "card_closed") == []
    assert await pool.fetchval("SELECT count(*) FROM lithic_webhooks_received") == 0
    # Refused, its id is not spent: the genuine webhook under the same id still applies.
    genuine, signed = fake_lithic.signed_webhook(event, webhook_id=headers.get("webhook-id", "msg_1"))
    assert (await post(anonymous, genuine, signed)).status_code == 200
    assert await state_of(pool, card["id"]) == "CLOSED"


async def test_one_of_several_signatures_verifies_as_during_a_secret_rotation(
    api: ApiClient, pool: asyncpg.Pool, anonymous: httpx.AsyncClient, fake_lithic: FakeLithic
) -> None:
    card = await issued(api, pool, fake_lithic)
    event = {"event_type": "card.updated", "token": card["token"], "state": "PAUSED"}
    body, headers = fake_lithic.signed_webhook(event, webhook_id="msg_rotation")
    _, old = fake_lithic.signed_webhook(event, secret=new_secret(), webhook_id="msg_rotation")
    headers["webhook-signature"] = old["webhook-signature"] + " " + headers["webhook-signature"]
    assert (await post(anonymous, body, headers)).status_code == 200
    assert await state_of(pool, card["id"]) == "PAUSED"


async def test_an_organization_without_a_webhook_secret_gets_none_applied(
    api: ApiClient, pool: asyncpg.Pool, anonymous: httpx.AsyncClient, fake_lithic: FakeLithic
) -> None:
    card = await issued(api, pool, fake_lithic)
    await use_lithic(api, fake_lithic)  # a config without webhook_secret keeps the one set before
    config = (await api.http.get("/organization/issuer_processors")).json()["lithic_config"]
    assert config["webhook_secret"] == "whsec_****" + fake_lithic.webhook_secret[-4:]
    removed = {"api_key": "test-key", "base_url": fake_lithic.base_url, "webhook_secret": None}
    answer = await api.http.put("/organization/issuer_processors", json={"lithic_config": removed})
    assert answer.json()["lithic_config"]["webhook_secret"] is None
    body, headers = fake_lithic.signed_webhook(fake_lithic.change_card(card["token"], state="CLOSED"))
    assert_error(await post(anonymous, body, headers), 401, "unauthorized")
    assert await state_of(pool, card["id"]) == "OPEN"


async def test_a_webhook_for_another_organizations_card_changes_nothing(
    api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool, anonymous: httpx.AsyncClient, fake_lithic: FakeLithic
) -> None:
    """globex knows its own secret; signed with it, a webhook naming acme's card verifies for no card."""
    acme_card = await issued(api, pool, fake_lithic)
    globex_secret = new_secret()
    globex_card = await issued(other_api, pool, fake_lithic, globex_secret)
    for card, secret in ((acme_card, globex_secret), (globex_card, fake_lithic.webhook_secret)):
        event = {"event_type": "card.updated", "token": card["token"], "state": "CLOSED"}
        body, headers = fake_lithic.signed_webhook(event, secret=secret)
        assert_error(await post(anonymous, body, headers), 401, "unauthorized")
        assert await state_of(pool, card["id"]) == "OPEN"
    assert await card_events(api, "card_closed") == []
    assert await card_events(other_api, "card_closed") == []
    # Each organization's own secret works for its own card only.
    event = {"event_type": "card.updated", "token": globex_card["token"], "state": "PAUSED"}
    body, headers = fake_lithic.signed_webhook(event, secret=globex_secret)
    assert (await post(anonymous, body, headers)).status_code == 200
    assert (await state_of(pool, globex_card["id"]), await state_of(pool, acme_card["id"])) == ("PAUSED", "OPEN")
    assert await card_events(api, "card_updated") == []


async def test_the_same_webhook_id_in_two_organizations_is_two_webhooks(
    api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool, anonymous: httpx.AsyncClient, fake_lithic: FakeLithic
) -> None:
    acme_card = await issued(api, pool, fake_lithic)
    globex_secret = new_secret()
    globex_card = await issued(other_api, pool, fake_lithic, globex_secret)
    for card, secret in ((acme_card, fake_lithic.webhook_secret), (globex_card, globex_secret)):
        event = {"event_type": "card.updated", "token": card["token"], "state": "PAUSED"}
        body, headers = fake_lithic.signed_webhook(event, secret=secret, webhook_id="msg_same")
        assert (await post(anonymous, body, headers)).json() == {"description": "Applied."}
        assert await state_of(pool, card["id"]) == "PAUSED"


async def test_a_closed_card_is_never_reopened_by_a_late_webhook(
    api: ApiClient, pool: asyncpg.Pool, anonymous: httpx.AsyncClient, fake_lithic: FakeLithic
) -> None:
    card = await issued(api, pool, fake_lithic)
    closed, late = (
        {"event_type": "card.updated", "token": card["token"], "state": state} for state in ("CLOSED", "OPEN")
    )
    for event in (closed, late):
        body, headers = fake_lithic.signed_webhook(event)
        assert (await post(anonymous, body, headers)).status_code == 200
    assert await state_of(pool, card["id"]) == "CLOSED"
    assert len(await card_events(api, "card_closed")) == 1
    assert await card_events(api, "card_updated") == []


async def test_a_renewal_moves_the_expiry_forward_only(
    api: ApiClient, pool: asyncpg.Pool, anonymous: httpx.AsyncClient, fake_lithic: FakeLithic
) -> None:
    card = await issued(api, pool, fake_lithic)
    later = str(int(card["exp_year"]) + 3)
    for year, month in ((later, "09"), (card["exp_year"], "01")):  # the second is older: not applied
        event = {"event_type": "card.renewed", "card_token": card["token"], "exp_month": month, "exp_year": year}
        body, headers = fake_lithic.signed_webhook(event)
        assert (await post(anonymous, body, headers)).status_code == 200
    row = await pool.fetchrow("SELECT exp_month, exp_year FROM cards WHERE id = $1", card["id"])
    assert (row["exp_month"], row["exp_year"]) == ("09", later)
    (updated,) = await card_events(api, "card_updated")
    assert (updated["data"]["exp_month"], updated["data"]["exp_year"]) == ("09", later)


@pytest.mark.parametrize("event_type", ["card.created", "card.shipped", "card.reissued", "card.converted"])
async def test_an_event_that_carries_no_state_has_the_card_read_back(
    api: ApiClient, pool: asyncpg.Pool, anonymous: httpx.AsyncClient, fake_lithic: FakeLithic, event_type: str
) -> None:
    """Only card_token is in these payloads: the reconciler reads the card and records what Lithic has."""
    card = await issued(api, pool, fake_lithic)
    fake_lithic.change_card(card["token"], spend_limit=1234, memo="changed at Lithic")
    body, headers = fake_lithic.signed_webhook({"event_type": event_type, "card_token": card["token"]})
    assert (await post(anonymous, body, headers)).status_code == 200
    assert await pool.fetchval("SELECT reconcile_due_at IS NOT NULL FROM cards WHERE id = $1", card["id"])
    # A VIRTUAL card would not be read back on its own: the webhook queued it (min age: a day).
    assert await make_reconciler(pool, min_age_seconds=86400).process_due() == 1
    row = await pool.fetchrow("SELECT spend_limit, memo, reconcile_due_at FROM cards WHERE id = $1", card["id"])
    assert (row["spend_limit"], row["memo"], row["reconcile_due_at"]) == (1234, "changed at Lithic", None)
    assert len(await card_events(api, "card_updated")) == 1
    assert [r.method for r in fake_lithic.requests if r.method == "GET"] == ["GET"]
    assert fake_lithic.spec_violations == []


async def test_the_secret_is_checked_stored_encrypted_and_answered_masked(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    for bad in ("whsec_", "whsec_!!!!notbase64!!!!!!!!!!!!", "sk_" + fake_lithic.webhook_secret, "whsec_YWJj" * 1):
        config = {"api_key": "test-key", "base_url": fake_lithic.base_url, "webhook_secret": bad}
        answer = await api.http.put("/organization/issuer_processors", json={"lithic_config": config})
        assert answer.status_code in (400, 422), (bad, answer.text)
        assert bad not in answer.text or bad == "whsec_"
    assert await pool.fetchval("SELECT count(*) FROM organizations WHERE lithic_api_key_encrypted IS NOT NULL") == 0
    await use_lithic_webhooks(api, fake_lithic)
    shown = (await api.http.get("/organization/issuer_processors")).json()["lithic_config"]
    assert shown["webhook_secret"] == "whsec_****" + fake_lithic.webhook_secret[-4:]
    sealed = await pool.fetchval("SELECT lithic_webhook_secret_encrypted FROM organizations WHERE id = $1", api.org_id)
    assert fake_lithic.webhook_secret.encode() not in bytes(sealed)
    assert fake_lithic.webhook_secret.removeprefix("whsec_").encode() not in bytes(sealed)
    await api.http.put("/organization/issuer_processors", json={"lithic_config": None})
    assert await pool.fetchval("SELECT lithic_webhook_secret_encrypted FROM organizations") is None


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "bad_request"),
        (b"[1, 2]", 400, "bad_request"),
        (b'{"event_type": "card.updated", "token": 7}', 422, "invalid_input"),
        (b'{"event_type": "card.updated", "token": "' + b"a" * 300 + b'"}', 422, "invalid_input"),
    ],
)
async def test_a_body_that_is_no_lithic_event_is_a_4xx(
    anonymous: httpx.AsyncClient, body: bytes, status: int, code: str
) -> None:
    answer = await anonymous.post(PATH, content=body, headers={"content-type": "application/json"})
    assert_error(answer, status, code)


async def test_a_body_that_is_not_json_or_too_large_is_refused(anonymous: httpx.AsyncClient) -> None:
    answer = await anonymous.post(PATH, content=b"{}", headers={"content-type": "text/plain"})
    assert answer.status_code == 415
    huge = b'{"x": "' + b"a" * (1024 * 1024) + b'"}'
    answer = await anonymous.post(PATH, content=huge, headers={"content-type": "application/json"})
    assert answer.status_code == 413


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"event_type": "account_holder.created", "token": "7ef7d65c-9023-4da3-b113-3b8583fd7951"},
        {"event_type": "card.updated", "token": "7ef7d65c-9023-4da3-b113-3b8583fd7951", "state": "CLOSED"},
        {"event_type": "card.shipped", "card_token": "not-a-uuid"},
    ],
)
async def test_a_webhook_naming_no_card_of_the_service_is_acknowledged_and_ignored(
    anonymous: httpx.AsyncClient, pool: asyncpg.Pool, fake_lithic: FakeLithic, event: dict[str, Any]
) -> None:
    """Lithic would retry anything else for days; nothing is verified, nor changed."""
    body, headers = fake_lithic.signed_webhook(event)
    answer = await post(anonymous, body, headers)
    assert answer.json() == {"description": "Ignored: the webhook names no card of this service."}
    assert await pool.fetchval("SELECT count(*) FROM lithic_webhooks_received") == 0


async def test_applied_webhook_ids_are_kept_a_week(api: ApiClient, pool: asyncpg.Pool) -> None:
    await pool.execute(
        """INSERT INTO lithic_webhooks_received (org_id, webhook_id, received_at)
           VALUES ($1, 'msg_old', now() - interval '8 days'), ($1, 'msg_recent', now() - interval '6 days')""",
        api.org_id,
    )
    assert await lithic_sync.purge_webhook_ids(pool) == 1
    assert await pool.fetchval("SELECT array_agg(webhook_id) FROM lithic_webhooks_received") == ["msg_recent"]
