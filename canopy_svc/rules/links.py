"""Links between customers and accounts: made from either side, the cards they ask for, and what a link
adds to its customer in an answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from canopy_svc.core import notify
from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.dbtypes import Conn, Row
from canopy_svc.rules import card_requests, events
from canopy_svc.rules.ids import base62_id, new_idempotency_uuid
from canopy_svc.store import accounts as account_store
from canopy_svc.store import cards as card_store
from canopy_svc.store import customers as customer_store
from canopy_svc.wire.errors import Conflict, NotFound
from canopy_svc.wire.models import (
    AccountAssignment,
    CardDetails,
    CustomerAssignment,
    IssuerProcessorConfig,
    LithicCardConfig,
)

# Lithic requires a card type; a link that names none gets a general-purpose card, Lithic's default.
DEFAULT_CARD_TYPE = "VIRTUAL"
DEFAULT_CARD_STATE = "OPEN"


def card_config(config: IssuerProcessorConfig | None) -> dict[str, Any] | None:
    """The link columns for an issuer-processor config (None: leave the link's config as it is)."""
    if config is None:
        return None
    lithic = config.lithic
    return {
        "spend_limit": config.spend_limit,
        "memo": lithic.memo if lithic else None,
        "type": lithic.type if lithic else None,
        "state": lithic.state if lithic else None,
        "card_program_token": lithic.card_program_token if lithic else None,
        "has_lithic": lithic is not None,
    }


def link_fields(link: Row, cards_by_link: Mapping[int, list[CardDetails]]) -> dict[str, Any]:
    """What a link adds to its customer's fields (AccountCustomer, CustomerAccountLink)."""
    return {
        "customer_account_role": link["customer_account_role"],
        "customer_account_external_id": link["customer_account_external_id"],
        "card_details": cards_by_link.get(link["link_id"], []),
    }


async def queue_card(
    conn: Conn,
    org_id: int,
    link_id: int,
    *,
    spend_limit: int | None,
    lithic: LithicCardConfig | dict[str, Any],
    cipher: DataCipher,
    request: LithicCardConfig | None = None,
    pointer: str = "/lithic",
    replacement_for: str | None = None,
    link: Row | None = None,
) -> asyncpg.Record:
    """A PENDING card, committed with the caller's transaction; the worker issues it.

    `lithic` holds type, memo, state and card_program_token (the link's config, or a body's merged
    with it); `request` the rest of what the body asked (default: `lithic` itself, when it is one):
    spend_limit_duration, expiry, and a PHYSICAL card's product, shipping method and address, which is
    sealed until sent. `pointer` is where a 422 points to in the body; `link` the link's summary, when
    the caller has it (its event's)."""
    get = lithic.get if isinstance(lithic, dict) else lambda name: getattr(lithic, name)
    if request is None and isinstance(lithic, LithicCardConfig):
        request = lithic
    card_type = get("type") or DEFAULT_CARD_TYPE
    if request is not None:
        card_requests.check_request(request, pointer)
    address = await card_requests.shipping_address(conn, link_id, request, card_type, pointer)
    idempotency_key = new_idempotency_uuid()
    card = await card_store.insert_pending(
        conn,
        org_id,
        link_id,
        idempotency_key=idempotency_key,
        card_type=card_type,
        memo=get("memo"),
        state=get("state") or DEFAULT_CARD_STATE,
        spend_limit=spend_limit,
        card_program_token=get("card_program_token"),
        spend_limit_duration=request.spend_limit_duration if request else None,
        exp_month=request.exp_month if request else None,
        exp_year=request.exp_year if request else None,
        product_id=request.product_id if request else None,
        shipping_method=request.shipping_method if request else None,
        shipping_address_encrypted=(
            card_store.seal_shipping_address(cipher, idempotency_key, address) if address is not None else None
        ),
        replacement_for=replacement_for,
    )
    await events.record_card_event(conn, "card_pending", card, link=link)
    notify.note_queued_card(card["id"])  # the request may wait for the worker to issue it (item 7)
    return card


async def _link(
    conn: Conn,
    org_id: int,
    account_row_id: int,
    customer_row_id: int,
    assignment: AccountAssignment | CustomerAssignment,
    cipher: DataCipher,
    pointer: str,
    *,
    closed_account: str | None = None,
) -> None:
    """`closed_account`: the account's id when it is CLOSED, which is final: no new customer on it, and no new card (as
    POST .../cards answers); an existing link's role and external id may still be changed."""
    config = assignment.customer_account_issuer_processor_config
    link_id, created = await account_store.upsert_link(
        conn,
        org_id,
        account_row_id,
        customer_row_id,
        role=assignment.customer_account_role,
        external_id=assignment.customer_account_external_id,
        new_external_id=base62_id(24),
        card_config=card_config(config),
    )
    if closed_account is not None and created:
        raise Conflict(f"Account {closed_account} is CLOSED; a closed account gets no new customers")
    summary = await events.record_link_event(conn, org_id, link_id) if created else None
    if config is None or config.lithic is None:
        return
    # A new link gets its card; an existing one only if it has none that is pending or issued.
    if created or all(card["status"] == "FAILED" for card in await card_store.of_links(conn, [link_id])):
        if closed_account is not None:
            raise Conflict(f"Account {closed_account} is CLOSED; a closed account gets no new cards")
        await queue_card(
            conn,
            org_id,
            link_id,
            spend_limit=config.spend_limit,
            lithic=config.lithic,
            cipher=cipher,
            pointer=f"{pointer}/customer_account_issuer_processor_config/lithic",
            link=summary,
        )


def _row_id(found: dict[str, int], wanted: str, kind: str) -> int:
    row_id = found.get(wanted)
    if row_id is None:
        raise NotFound(f"No {kind} found with the provided {kind}_id: {wanted}")
    return row_id


async def assign_accounts(
    conn: Conn, org_id: int, customer_row_id: int, assignments: list[AccountAssignment], cipher: DataCipher
) -> None:
    """`assign_to_accounts` of a customer: every account must be this organization's."""
    found = await account_store.find_live(conn, org_id, [a.account_id for a in assignments])
    row_ids = {account_id: row_id for account_id, (row_id, _) in found.items()}
    for index, assignment in enumerate(assignments):
        account_row_id = _row_id(row_ids, assignment.account_id, "account")
        closed = found[assignment.account_id][1] == "CLOSED"
        await _link(
            conn,
            org_id,
            account_row_id,
            customer_row_id,
            assignment,
            cipher,
            f"/assign_to_accounts/{index}",
            closed_account=assignment.account_id if closed else None,
        )


async def assign_customers(
    conn: Conn, org_id: int, account_row_id: int, assignments: list[CustomerAssignment], cipher: DataCipher
) -> None:
    """`assign_customers` of an account: every customer must be this organization's."""
    found = await customer_store.find_row_ids(conn, org_id, [a.customer_id for a in assignments])
    for index, assignment in enumerate(assignments):
        customer_row_id = _row_id(found, assignment.customer_id, "customer")
        await _link(conn, org_id, account_row_id, customer_row_id, assignment, cipher, f"/assign_customers/{index}")
