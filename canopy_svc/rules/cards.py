"""Cards of a customer-account link: issuing another, and changing one at the issuer."""

from __future__ import annotations

import asyncpg
from msgspec import UNSET

from canopy_svc.card_worker import CardGateway
from canopy_svc.errors import Conflict, InvalidInput, NotFound, Unavailable, detail
from canopy_svc.lithic import CardSimulator, LithicRejected, LithicRetryable
from canopy_svc.rules import links
from canopy_svc.rules.accounts import card_from_record
from canopy_svc.rules.models import CardCreate, CardDetails, CardUpdate
from canopy_svc.rules.validation import BodyDecoder
from canopy_svc.store import accounts as account_store
from canopy_svc.store import cards as card_store
from canopy_svc.store import organizations as organization_store

CARD_CREATE_DECODER = BodyDecoder(CardCreate)
CARD_UPDATE_DECODER = BodyDecoder(CardUpdate)


async def _link(conn: asyncpg.Connection, org_id: int, account_id: str, customer_id: str) -> asyncpg.Record:
    link = await account_store.fetch_link(conn, org_id, account_id, customer_id, for_update=True)
    if link is None:
        raise NotFound(f"No customer {customer_id} found on account {account_id}")
    return link


async def issue_card(conn: asyncpg.Connection, org_id: int, account_id: str, customer_id: str,
                     payload: CardCreate) -> CardDetails:
    """A new PENDING card for the link; what the body leaves out comes from the link's settings."""
    link = await _link(conn, org_id, account_id, customer_id)
    lithic = payload.lithic
    settings = {
        "type": (lithic.type if lithic else None) or link["lithic_type"],
        "memo": (lithic.memo if lithic else None) or link["lithic_memo"],
        "state": (lithic.state if lithic else None) or link["lithic_state"],
        "card_program_token": (lithic.card_program_token if lithic else None)
        or (str(link["lithic_card_program_token"]) if link["lithic_card_program_token"] else None),
    }
    spend_limit = payload.spend_limit if payload.spend_limit is not None else link["spend_limit"]
    card = await links.queue_card(conn, org_id, link["link_id"], spend_limit=spend_limit, lithic=settings)
    return card_from_record(card)


async def update_card(conn: asyncpg.Connection, org_id: int, account_id: str, customer_id: str,
                      change: CardUpdate, gateway: CardGateway) -> CardDetails:
    """Changes the link's newest card at the issuer (Lithic's PATCH /v1/cards/{token}), then here."""
    if change.state is UNSET and change.spend_limit is UNSET:
        raise InvalidInput([detail("", "required", {"missingProperty": "state"},
                                   "must have property 'state' or 'spend_limit'")])
    link = await _link(conn, org_id, account_id, customer_id)
    card = await card_store.latest_of_link(conn, link["link_id"])
    if card is None:
        raise NotFound(f"Customer {customer_id} has no card on account {account_id}")
    if card["status"] != "ISSUED":
        raise Conflict(f"The card is {card['status']}; only an issued card can be changed")
    if card["state"] == "CLOSED":
        raise Conflict("The card is CLOSED; a closed card cannot be changed")
    state_given, limit_given = change.state is not UNSET, change.spend_limit is not UNSET
    state = change.state if state_given else card["state"]
    spend_limit = change.spend_limit if limit_given else card["spend_limit"]
    config = await organization_store.lithic_config(conn, org_id)
    issuer = gateway.issuer(config["lithic_api_key_encrypted"], config["lithic_base_url"])
    if not isinstance(issuer.client, CardSimulator):  # the simulator keeps no cards worth asking about
        try:
            issued = await issuer.client.update_card(
                issuer.base_url, issuer.api_key, card["token"],
                state=state if state_given else None,
                # Lithic reads 0 as "no limit": how a cleared spend_limit is said there.
                spend_limit=(spend_limit or 0) if limit_given else None,
            )
        except LithicRejected as rejected:
            # The contract's 422 lists every problem: here, each field sent, refused by the issuer.
            message = f"The issuer refused the change: {rejected.message}"
            refused = [name for name, given in (("state", state_given), ("spend_limit", limit_given)) if given]
            raise InvalidInput([detail(f"/{name}", "format", {"format": "issuer"}, message)
                                for name in refused], message) from None
        except LithicRetryable as retryable:
            raise Unavailable(int(retryable.retry_after or 1)) from None
        state = issued.state
    updated = await card_store.set_state(conn, card["id"], state=state, spend_limit=spend_limit)
    return card_from_record(updated)
