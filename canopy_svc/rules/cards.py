"""Cards of a customer-account link: answering them, issuing another, and changing one at the issuer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg
from msgspec import UNSET

from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.dbtypes import Conn, Queryable
from canopy_svc.issuers.card_issuer import IssuedCard, LithicRejected, LithicRetryable
from canopy_svc.issuers.gateway import CardGateway, Issuer
from canopy_svc.rules import card_requests, events, links
from canopy_svc.rules.card_items import card_from_record
from canopy_svc.rules.validation import BodyDecoder
from canopy_svc.store import accounts as account_store
from canopy_svc.store import cards as card_store
from canopy_svc.store import organizations as organization_store
from canopy_svc.wire.errors import ApiError, Conflict, InvalidInput, NotFound, Unavailable, detail
from canopy_svc.wire.models import CardCreate, CardDetails, CardReissue, CardRenewal, CardUpdate

CARD_CREATE_DECODER = BodyDecoder(CardCreate)
CARD_UPDATE_DECODER = BodyDecoder(CardUpdate)
CARD_RENEWAL_DECODER = BodyDecoder(CardRenewal)
CARD_REISSUE_DECODER = BodyDecoder(CardReissue)


def parse_card_create(body: bytes) -> CardCreate:
    """A card asked for: its fields' types, then the rules across them (card_requests.py)."""
    payload = CARD_CREATE_DECODER.decode(body)
    if payload.lithic is not None:
        card_requests.check_request(payload.lithic, "/lithic")
    return payload


async def cards_of_links(conn: Queryable, link_ids: Sequence[int]) -> dict[int, list[CardDetails]]:
    """The cards of each link, by link id (one query)."""
    by_link: dict[int, list[CardDetails]] = defaultdict(list)
    for card in await card_store.of_links(conn, link_ids):
        by_link[card["link_id"]].append(card_from_record(card))
    return by_link


def parse_card_update(body: bytes) -> CardUpdate:
    """A change of a card's state, spend limit or both: one of them at least."""
    change = CARD_UPDATE_DECODER.decode(body)
    if change.state is UNSET and change.spend_limit is UNSET:
        raise InvalidInput(
            [detail("", "required", {"missingProperty": "state"}, "must have property 'state' or 'spend_limit'")]
        )
    return change


def parse_card_renewal(body: bytes) -> CardRenewal:
    renewal = CARD_RENEWAL_DECODER.decode(body)
    card_requests.check_request(renewal, "")
    return renewal


def parse_card_reissue(body: bytes) -> CardReissue:
    reissue = CARD_REISSUE_DECODER.decode(body)
    card_requests.check_request(reissue, "")
    return reissue


async def _link(conn: Conn, org_id: int, account_id: str, customer_id: str) -> asyncpg.Record:
    link = await account_store.fetch_link(conn, org_id, account_id, customer_id, for_update=True)
    if link is None:
        raise NotFound(f"No customer {customer_id} found on account {account_id}")
    return link


async def issue_card(
    conn: Conn, org_id: int, account_id: str, customer_id: str, payload: CardCreate, cipher: DataCipher
) -> CardDetails:
    """A new PENDING card for the link; what the body leaves out comes from the link's settings."""
    link = await _link(conn, org_id, account_id, customer_id)
    if link["account_status"] == "CLOSED":
        raise Conflict(f"Account {account_id} is CLOSED; a closed account gets no new cards")
    lithic = payload.lithic
    settings = {
        "type": (lithic.type if lithic else None) or link["lithic_type"],
        "memo": (lithic.memo if lithic else None) or link["lithic_memo"],
        "state": (lithic.state if lithic else None) or link["lithic_state"],
        "card_program_token": (lithic.card_program_token if lithic else None)
        or (str(link["lithic_card_program_token"]) if link["lithic_card_program_token"] else None),
    }
    spend_limit = payload.spend_limit if payload.spend_limit is not None else link["spend_limit"]
    card = await links.queue_card(
        conn, org_id, link["link_id"], spend_limit=spend_limit, lithic=settings, cipher=cipher, request=lithic
    )
    return card_from_record(card)


async def _card_of_link(
    conn: Queryable, link: asyncpg.Record, token: str, account_id: str, customer_id: str, *, for_update: bool = False
) -> asyncpg.Record:
    """The link's card with this token: a 404 for a token of another link or organization, as for none."""
    card = await card_store.card_of_link(conn, link["link_id"], token, for_update=for_update)
    if card is None:
        raise NotFound(f"No card {token} found for customer {customer_id} on account {account_id}")
    return card


async def _readable_link(conn: Queryable, org_id: int, account_id: str, customer_id: str) -> asyncpg.Record:
    link = await account_store.fetch_link(conn, org_id, account_id, customer_id)
    if link is None:
        raise NotFound(f"No customer {customer_id} found on account {account_id}")
    return link


async def list_cards(conn: Queryable, org_id: int, account_id: str, customer_id: str) -> list[CardDetails]:
    """The link's cards, newest first, as the card items every route answers."""
    link = await _readable_link(conn, org_id, account_id, customer_id)
    return [card_from_record(card) for card in await card_store.of_link_newest_first(conn, link["link_id"])]


async def get_card(conn: Queryable, org_id: int, account_id: str, customer_id: str, token: str) -> CardDetails:
    link = await _readable_link(conn, org_id, account_id, customer_id)
    return card_from_record(await _card_of_link(conn, link, token, account_id, customer_id))


async def cards_still_pending(conn: Queryable, card_ids: Sequence[int]) -> list[int]:
    """Which of these cards (row ids) the worker has not issued nor failed yet."""
    return await card_store.still_pending(conn, card_ids)


async def cards_by_ids(conn: Queryable, card_ids: Sequence[int]) -> list[CardDetails]:
    """These cards (row ids) as they now stand, in the order given."""
    return [card_from_record(await card_store.fetch_card(conn, card_id)) for card_id in card_ids]


# Lithic's replacement_for: a PHYSICAL card is replaced by a PHYSICAL one, a VIRTUAL by a VIRTUAL one.
REPLACEABLE_TYPES = ("PHYSICAL", "VIRTUAL")


async def replace_card(
    conn: Conn,
    org_id: int,
    account_id: str,
    customer_id: str,
    token: str,
    payload: CardCreate,
    cipher: DataCipher,
) -> CardDetails:
    """A new PENDING card that replaces a lost or stolen card of the link (Lithic's postCards with
    replacement_for), through the card outbox as any new card: one card per request, its Idempotency-Key
    kept with the row. Its type is the replaced card's; what the body leaves out comes from that card."""
    link = await _link(conn, org_id, account_id, customer_id)
    if link["account_status"] == "CLOSED":
        raise Conflict(f"Account {account_id} is CLOSED; a closed account gets no new cards")
    old = await _card_of_link(conn, link, token, account_id, customer_id, for_update=True)
    if old["status"] != "ISSUED":
        raise Conflict(f"The card is {old['status']}; only an issued card can be replaced")
    if old["state"] == "CLOSED":
        raise Conflict("The card is CLOSED; a closed card cannot be replaced")
    if old["card_type"] not in REPLACEABLE_TYPES:
        raise Conflict(f"The card is {old['card_type']}; Lithic replaces PHYSICAL and VIRTUAL cards only")
    lithic = payload.lithic
    if lithic is not None and lithic.type is not None and lithic.type != old["card_type"]:
        message = f"A replacement has the replaced card's type, {old['card_type']}"
        raise InvalidInput([detail("/lithic/type", "const", {"allowedValue": old["card_type"]}, message)], message)
    settings = {
        "type": old["card_type"],
        "memo": (lithic.memo if lithic else None) or old["memo"],
        "state": (lithic.state if lithic else None) or link["lithic_state"],
        "card_program_token": (lithic.card_program_token if lithic else None)
        or (str(link["lithic_card_program_token"]) if link["lithic_card_program_token"] else None),
    }
    spend_limit = payload.spend_limit if payload.spend_limit is not None else old["spend_limit"]
    card = await links.queue_card(
        conn,
        org_id,
        link["link_id"],
        spend_limit=spend_limit,
        lithic=settings,
        cipher=cipher,
        request=lithic,
        replacement_for=token,
    )
    return card_from_record(card)


@dataclass(frozen=True)
class CardChange:
    """A change of an issued card, recorded and committed, to be sent to Lithic outside any transaction.

    `done` is the answer when nothing needs sending (the simulator keeps no cards worth asking)."""

    card_id: int
    change_id: str
    token: str
    issuer: Issuer | None
    fields: dict[str, Any]
    state: str
    spend_limit: int | None
    done: CardDetails | None = None
    org_id: int | None = None  # whose Lithic key the call uses (its calls are paced together)
    # "update" (PATCH), "renew" or "reissue"; `body` is what renew and reissue send, a shipping address
    # among it: held in memory for the call, never stored (change_fields keeps the operation only).
    operation: str = "update"
    body: dict[str, Any] | None = field(default=None, repr=False)


def _change_fields(change: CardUpdate) -> dict[str, Any]:
    """What the caller sent, as Lithic's PATCH takes it (Lithic reads a spend_limit of 0 as "no limit")."""
    fields: dict[str, Any] = {}
    if change.state is not UNSET:
        fields["state"] = change.state
    if change.spend_limit is not UNSET:
        fields["spend_limit"] = change.spend_limit or 0
    return fields


async def begin_card_change(
    conn: Conn,
    org_id: int,
    account_id: str,
    customer_id: str,
    change: CardUpdate,
    gateway: CardGateway,
    *,
    lease_seconds: float,
) -> CardChange:
    """Phase 1, in the caller's transaction: records the change (from parse_card_update) on the card
    the body names by `card_token` (else the link's newest), if that card can take it.

    The row locks taken here go with the transaction, before Lithic is called: a slow Lithic holds
    no lock and no pooled connection. A change another request is still sending is a 409."""
    link = await _link(conn, org_id, account_id, customer_id)
    if change.card_token is UNSET:
        card = await card_store.latest_of_link(conn, link["link_id"])
        if card is None:
            raise NotFound(f"Customer {customer_id} has no card on account {account_id}")
    else:
        card = await _card_of_link(conn, link, change.card_token, account_id, customer_id, for_update=True)
    await _check_changeable(conn, card, lease_seconds, "changed")
    fields = _change_fields(change)
    state = change.state if change.state is not UNSET else card["state"]
    spend_limit = change.spend_limit if change.spend_limit is not UNSET else card["spend_limit"]
    config = await organization_store.lithic_config(conn, org_id)
    issuer = gateway.issuer(config["lithic_api_key_encrypted"], config["lithic_base_url"])
    change_id = str(uuid.uuid4())
    if issuer.simulated:
        # The simulator decides authorizations by its own copy; one it forgot has nothing to tell.
        with contextlib.suppress(LithicRejected):
            await issuer.client.update_card(issuer.base_url, issuer.api_key, card["token"], **fields)
        updated = await card_store.set_state(conn, card["id"], state=state, spend_limit=spend_limit)
        await events.record_card_event(conn, events.card_change_type(state), updated)
        return CardChange(
            card["id"], change_id, card["token"], None, fields, state, spend_limit, done=card_from_record(updated)
        )
    await card_store.begin_change(conn, card["id"], change_id, json.dumps(fields))
    return CardChange(card["id"], change_id, card["token"], issuer, fields, state, spend_limit, org_id=org_id)


async def _check_changeable(conn: Conn, card: asyncpg.Record, lease_seconds: float, verb: str) -> None:
    """A 409 unless the card is issued, not closed (nor being closed) and free of another change."""
    if card["status"] != "ISSUED":
        raise Conflict(f"The card is {card['status']}; only an issued card can be {verb}")
    if card["state"] == "CLOSED":
        raise Conflict(f"The card is CLOSED; a closed card cannot be {verb}")
    if card["close_due_at"] is not None:
        raise Conflict(f"The card is being closed with its account; it cannot be {verb}")
    if await card_store.change_in_progress(conn, card["id"], lease_seconds):
        raise Conflict("Another change of this card is in progress; retry shortly")


# Lithic renews PHYSICAL and VIRTUAL cards, and reissues PHYSICAL ones.
RENEWABLE_TYPES = ("PHYSICAL", "VIRTUAL")
REISSUABLE_TYPES = ("PHYSICAL",)


async def begin_card_renewal(
    conn: Conn,
    org_id: int,
    account_id: str,
    customer_id: str,
    token: str,
    request: CardRenewal | CardReissue,
    gateway: CardGateway,
    *,
    lease_seconds: float,
) -> CardChange:
    """Phase 1 of a renewal (Lithic's renew: a new expiry and CVV, same number) or a reissue (a duplicate
    PHYSICAL card, same number and expiry) of the link's card `token`, as begin_card_change records a
    change. Lithic counts each (8 at most) and takes no Idempotency-Key for them, so an interrupted one is
    never sent again: the card worker reads the card back instead (workers/cards.py)."""
    operation, types = ("renew", RENEWABLE_TYPES) if isinstance(request, CardRenewal) else ("reissue", REISSUABLE_TYPES)
    verb = "renewed" if operation == "renew" else "reissued"
    link = await _link(conn, org_id, account_id, customer_id)
    card = await _card_of_link(conn, link, token, account_id, customer_id, for_update=True)
    await _check_changeable(conn, card, lease_seconds, verb)
    if card["card_type"] not in types:
        raise Conflict(f"The card is {card['card_type']}; Lithic {operation}s {' and '.join(types)} cards only")
    body: dict[str, Any] = {
        name: value
        for name in ("exp_month", "exp_year", "product_id", "shipping_method")
        if (value := getattr(request, name, None)) is not None
    }
    address = await card_requests.renewal_shipping_address(
        conn, link["link_id"], request, card["card_type"], required=operation == "renew"
    )
    if address is not None:
        body["shipping_address"] = address
    config = await organization_store.lithic_config(conn, org_id)
    issuer = gateway.issuer(config["lithic_api_key_encrypted"], config["lithic_base_url"])
    change_id = str(uuid.uuid4())
    change = CardChange(
        card["id"], change_id, card["token"], issuer, {}, card["state"], card["spend_limit"],
        org_id=org_id, operation=operation, body=body,
    )  # fmt: skip
    if issuer.simulated:  # in memory, no network: done in this transaction
        try:
            issued = await _call_issuer(change)
        except LithicRejected as rejected:
            if rejected.status == 404:
                message = "The simulator no longer holds this card (it keeps its cards in its process's memory)"
                raise Conflict(message) from None
            raise _refusal(change, rejected) from None
        await card_store.begin_change(conn, card["id"], change_id, json.dumps({"operation": operation}))
        return replace(change, issuer=None, done=await finish_card_change(conn, change, issued))
    await card_store.begin_change(conn, card["id"], change_id, json.dumps({"operation": operation}))
    return change


class OutcomeUnknown(Unavailable):
    """Lithic may have done what was sent (a timeout, a lost answer, a 5xx): a 503, and the change stays
    recorded for the card worker to settle by reading the card back, after the lease."""


# How long a request waits for its organization's next Lithic slot; a later one is a 503 to retry.
PACED_WAIT_LIMIT_SECONDS = 1.0


async def pace_card_change(conn: Queryable, change: CardChange, *, interval_seconds: float) -> None:
    """Spaces the request's Lithic call with the card worker's, on the organization's one schedule
    (CANOPY_SVC_LITHIC_MIN_INTERVAL_MS, every process): a slot within PACED_WAIT_LIMIT_SECONDS is
    waited for, a later one answers 503 with its Retry-After (the change is abandoned, nothing sent)."""
    if interval_seconds <= 0 or change.issuer is None or change.org_id is None:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PACED_WAIT_LIMIT_SECONDS
    while (wait := await card_store.claim_lithic_call(conn, change.org_id, interval_seconds=interval_seconds)) > 0:
        if loop.time() + wait > deadline:
            raise Unavailable(math.ceil(wait))
        await asyncio.sleep(wait)


async def _call_issuer(change: CardChange) -> IssuedCard:
    assert change.issuer is not None
    issuer = change.issuer
    if change.operation == "renew":
        return await issuer.client.renew_card(issuer.base_url, issuer.api_key, change.token, change.body or {})
    if change.operation == "reissue":
        return await issuer.client.reissue_card(issuer.base_url, issuer.api_key, change.token, change.body or {})
    return await issuer.client.update_card(
        issuer.base_url,
        issuer.api_key,
        change.token,
        state=change.fields.get("state"),
        spend_limit=change.fields.get("spend_limit"),
    )


def _refusal(change: CardChange, rejected: LithicRejected) -> InvalidInput:
    """The contract's 422 for Lithic's refusal: on each field a change sent, else on the body."""
    what = {"update": "change", "renew": "renewal", "reissue": "reissue"}[change.operation]
    message = f"The issuer refused the {what}: {rejected.message}"
    issuer_format = {"format": "issuer"}
    problems = [detail(f"/{name}", "format", issuer_format, message) for name in change.fields]
    return InvalidInput(problems or [detail("", "format", issuer_format, message)], message)


async def send_card_change(change: CardChange) -> IssuedCard:
    """Phase 2, with no connection held: Lithic's PATCH /v1/cards/{token} (or its renew or reissue).

    A refusal is the contract's 422 naming each field sent; an unreachable issuer is a 503."""
    try:
        return await _call_issuer(change)
    except LithicRejected as rejected:
        raise _refusal(change, rejected) from None
    except LithicRetryable as retryable:
        retry_after = int(retryable.retry_after or 1)
        # A PATCH sets absolute values (resending is harmless); a renewal or reissue is not resent.
        if change.operation != "update" and retryable.status != 429:
            raise OutcomeUnknown(retry_after) from None
        raise Unavailable(retry_after) from None


async def record_issuer_answer(conn: Conn, card_id: int, change_id: str, issued: IssuedCard) -> asyncpg.Record | None:
    """Records what Lithic answered to a change, the truth (its spend_limit 0, "no limit", as null), and
    its event, in the caller's transaction; None when another request or the worker took the change over."""
    updated = await card_store.finish_change(
        conn,
        card_id,
        change_id,
        state=issued.state,
        spend_limit=issued.spend_limit or None,
        memo=issued.memo,
        spend_limit_duration=issued.spend_limit_duration,
        exp_month=issued.exp_month,
        exp_year=issued.exp_year,
    )
    await events.record_card_event(conn, events.card_change_type(issued.state), updated)
    return updated


async def finish_card_change(conn: Conn, change: CardChange, issued: IssuedCard) -> CardDetails:
    """Phase 3: records what Lithic answered."""
    updated = await record_issuer_answer(conn, change.card_id, change.change_id, issued)
    # None: our lease ran out and another request or the worker took the change over; it records it.
    return card_from_record(updated if updated is not None else await card_store.fetch_card(conn, change.card_id))


async def abandon_card_change(conn: Queryable, change: CardChange, error: ApiError) -> None:
    """Phase 3 when Lithic refused the change or could not be reached: the card is as it was. A renewal
    or reissue Lithic may have made stays recorded: the card worker reads the card back after the lease."""
    if isinstance(error, OutcomeUnknown):
        return
    await card_store.abandon_change(conn, change.card_id, change.change_id)


# What a card of a closed or deleted account that was never sent to the issuer answers as its error.
NEVER_ISSUED = "Not issued: its account was closed first"


async def close_account_cards(conn: Conn, org_id: int, account_row_id: int, gateway: CardGateway) -> None:
    """Closes every card of the account through the card outbox, in the caller's transaction: the
    worker sends Lithic each close after the commit (retried with backoff), so a request never waits
    for Lithic and a crash after the commit loses none (store/cards.py says what becomes of each card)."""
    config = await organization_store.lithic_config(conn, org_id)
    simulated = gateway.issuer(config["lithic_api_key_encrypted"], config["lithic_base_url"]).simulated
    failed, closed = await card_store.close_cards_of_account(
        conn, account_row_id, simulated=simulated, never_sent_error=NEVER_ISSUED
    )
    # Each card transition is an event, in this transaction; a close sent by the worker is its own.
    for card in failed:
        await events.record_card_event(conn, "card_failed", card)
    for card in closed:
        await events.record_card_event(conn, "card_closed", card)
