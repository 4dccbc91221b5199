"""Cards that follow Lithic: its signed card webhooks (POST /webhooks/lithic) and the reconciler's
read-backs (workers/reconciler.py) both end in apply_observed, which records what differs and its
event in the caller's transaction.

Which organization a webhook is for: the card it names. Lithic signs each webhook with the secret of
its event subscription, which the organization sets with its Lithic config; the webhook is verified
with the secret of the organization whose card it names, so a webhook signed by anyone else (another
tenant included) verifies for no card and changes nothing.

What a payload cannot say: which of two changes is the newer (Lithic sends no version, and a retry
comes late). So a webhook applies what it tells (card.updated's state, card.renewed's expiry), under
the rules below, and queues the card for a read-back (GET /v1/cards/{token}) that sets what Lithic has
now, whatever the order the webhooks came in.
- CLOSED is final at Lithic: nothing reopens a closed card here either.
- An expiry only moves forward.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.dbtypes import Conn, Queryable
from canopy_svc.issuers import webhooks
from canopy_svc.issuers.card_issuer import IssuedCard
from canopy_svc.rules import events
from canopy_svc.rules.organization import webhook_secret_context
from canopy_svc.rules.validation import BodyDecoder
from canopy_svc.store import lithic_sync as store
from canopy_svc.wire.errors import BadRequest, Unauthorized
from canopy_svc.wire.models import Description, LithicWebhookEvent

log = logging.getLogger("canopy_svc.lithic_sync")

EVENT_DECODER = BodyDecoder(LithicWebhookEvent)
# Lithic's card states and types (its spec's enums) this service stores; anything else is not applied.
CARD_STATES = frozenset({"OPEN", "PAUSED", "CLOSED", "PENDING_FULFILLMENT", "PENDING_ACTIVATION"})
CARD_TYPES = frozenset({"VIRTUAL", "PHYSICAL", "SINGLE_USE", "MERCHANT_LOCKED", "UNLOCKED", "DIGITAL_WALLET"})
CARD_EVENTS = frozenset(
    {"card.created", "card.updated", "card.shipped", "card.renewed", "card.reissued", "card.converted"}
)
# How long applied webhook-ids are kept (Lithic retries a webhook for about three days).
WEBHOOK_IDS_KEPT_DAYS = 7

APPLIED = "Applied."
ALREADY_RECEIVED = "Already received."
NO_CARD = "Ignored: the webhook names no card of this service."


@dataclass(frozen=True)
class Observed:
    """What Lithic says of a card. None: not told. spend_limit 0 is Lithic's "no limit"."""

    state: str | None = None
    card_type: str | None = None
    memo: str | None = None
    spend_limit: int | None = None
    spend_limit_duration: str | None = None
    exp_month: str | None = None
    exp_year: str | None = None
    hostname: str | None = None


def observed_card(card: IssuedCard) -> Observed:
    """A whole card read back from Lithic (its memo told even when null: Lithic has none)."""
    return Observed(
        state=card.state,
        card_type=card.type,
        memo=card.memo if card.memo is not None else "",
        spend_limit=card.spend_limit,
        spend_limit_duration=card.spend_limit_duration,
        exp_month=card.exp_month,
        exp_year=card.exp_year,
        hostname=card.hostname,
    )


def _differences(card: Any, seen: Observed) -> dict[str, Any]:
    """The columns to set for what Lithic says, under the module's rules."""
    if card["state"] == "CLOSED":
        return {}  # final: nothing Lithic could say changes a closed card (and it says nothing new)
    wanted: dict[str, Any] = {}
    if seen.state in CARD_STATES:
        wanted["state"] = seen.state
    if seen.card_type in CARD_TYPES and not (card["card_type"] == "UNLOCKED" and seen.card_type == "VIRTUAL"):
        wanted["card_type"] = seen.card_type  # (UNLOCKED was asked and VIRTUAL sent: the same card)
    if seen.memo is not None:
        wanted["memo"] = seen.memo or None
    if seen.spend_limit is not None:
        wanted["spend_limit"] = seen.spend_limit or None
    if seen.spend_limit_duration is not None:
        wanted["spend_limit_duration"] = seen.spend_limit_duration
    if seen.hostname is not None:
        wanted["hostname"] = seen.hostname[:255]
    if seen.exp_month is not None and seen.exp_year is not None:
        newer = (seen.exp_year, seen.exp_month) > (card["exp_year"] or "", card["exp_month"] or "")
        if newer and len(seen.exp_year) == 4 and seen.exp_year.isdigit() and _is_month(seen.exp_month):
            wanted["exp_month"], wanted["exp_year"] = seen.exp_month, seen.exp_year
    return {name: value for name, value in wanted.items() if card[name] != value}


def _is_month(text: str) -> bool:
    return len(text) == 2 and text.isdigit() and 1 <= int(text) <= 12


async def apply_observed(conn: Conn, card_id: int, seen: Observed, *, row_version: str | None = None) -> str:
    """Records what differs between the card and what Lithic says, with its event, in the caller's
    transaction. `row_version` (a read-back's): applied only if the row is as it was when the read was
    claimed, else queued to be read again (a change of ours landed meanwhile; the read may predate it).
    Returns "changed", "unchanged" or "stale"."""
    card = await store.lock_card(conn, card_id)
    if card is None:
        return "unchanged"
    if row_version is not None and card["row_version"] != row_version:
        await store.read_back_soon(conn, card_id, delay_seconds=1.0)
        return "stale"
    changes = _differences(card, seen)
    if not changes:
        return "unchanged"
    updated = await store.update_card(conn, card_id, changes)
    event_type = events.card_change_type(updated["state"]) if "state" in changes else "card_updated"
    await events.record_card_event(conn, event_type, updated)
    return "changed"


# --- webhooks ---------------------------------------------------------------------------------------


def parse_webhook(body: bytes) -> LithicWebhookEvent:
    """Lithic's event body: a JSON object (400 otherwise), the members we read of the types its spec
    gives (422 at the member otherwise), the rest ignored."""
    return EVENT_DECODER.decode(body)


def named_card(event: LithicWebhookEvent) -> str | None:
    """The card token the event names (a UUID), or None."""
    token = event.token if event.event_type == "card.updated" else event.card_token
    if token is None:
        return None
    try:
        return str(uuid.UUID(token)) if len(token) == 36 else None
    except ValueError:
        return None


def _told(event: LithicWebhookEvent) -> Observed:
    """What the payload itself says of the card (the rest comes with the read-back)."""
    if event.event_type == "card.updated":
        return Observed(state=event.state)
    if event.event_type == "card.renewed":
        return Observed(exp_month=event.exp_month, exp_year=event.exp_year)
    return Observed()


@dataclass(frozen=True)
class Signed:
    """The Standard Webhooks headers of a received webhook (webhook-* or Svix's svix-* names)."""

    webhook_id: str | None
    timestamp: str | None
    signature: str | None


async def receive_webhook(
    conn: Conn,
    body: bytes,
    signed: Signed,
    cipher: DataCipher,
    *,
    simulator_secret: str | None = None,
    now: float | None = None,
) -> Description:
    """Verifies and applies one Lithic webhook, in the caller's transaction. 401 (Unauthorized) when no
    organization holding the card it names has a secret that verifies it: nothing changes. The cards
    of an organization without a Lithic key are the simulator's: `simulator_secret` (this process's
    simulator's) verifies theirs."""
    event = parse_webhook(body)
    token = named_card(event)
    if token is None:
        return Description(description=NO_CARD)
    cards = await store.cards_with_token(conn, token)
    if not cards:
        return Description(description=NO_CARD)
    card = _verified(cards, body, signed, cipher, simulator_secret, now)
    if card is None:
        raise Unauthorized("The webhook's signature does not verify")
    assert signed.webhook_id is not None
    if len(signed.webhook_id) > 255:
        raise BadRequest("webhook-id is longer than 255 characters")
    if not await store.record_webhook(conn, card["org_id"], signed.webhook_id):
        return Description(description=ALREADY_RECEIVED)
    if event.event_type in CARD_EVENTS:
        await apply_observed(conn, card["id"], _told(event))
    # Any verified event naming the card (a transaction's too: a SINGLE_USE card closes after one) has
    # it read back soon, which sets what Lithic has now whatever the order webhooks arrive in.
    await store.read_back_soon(conn, card["id"])
    return Description(description=APPLIED)


def _verified(
    cards: list[Any], body: bytes, signed: Signed, cipher: DataCipher, simulator_secret: str | None, now: float | None
) -> Any:
    """The card whose organization's secret verifies the webhook, or None."""
    reasons = set()
    for card in cards:
        sealed = card["lithic_webhook_secret_encrypted"]
        if card["lithic_api_key_encrypted"] is None and simulator_secret is not None:
            secret = simulator_secret  # the simulator's card, and its own webhook
        elif sealed is None:
            reasons.add("no webhook secret set")
            continue
        else:
            secret = cipher.decrypt(bytes(sealed), context=webhook_secret_context(card["org_id"]))
        try:
            webhooks.verify(secret, signed.webhook_id, signed.timestamp, signed.signature, body, now=now)
        except webhooks.SignatureRefused as refused:
            reasons.add(str(refused))
            continue
        return card
    log.warning("lithic webhook refused", extra={"reasons": sorted(reasons)})  # no token, no secret, no body
    return None


async def purge_webhook_ids(conn: Queryable) -> int:
    return await store.purge_webhooks(conn, older_than_days=WEBHOOK_IDS_KEPT_DAYS)
