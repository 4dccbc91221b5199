"""Events: each change of a customer, an account, a link or a card is recorded in the transaction
of the change (record_event), with a delivery per matching subscription, and read back as the feed."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from canopy_svc.core.dbtypes import Conn, Queryable, Row
from canopy_svc.rules.card_items import card_from_record
from canopy_svc.rules.cursors import CursorCodec
from canopy_svc.rules.ids import base62_id
from canopy_svc.rules.paging import PageRequest, keyset_page
from canopy_svc.store import events as store
from canopy_svc.wire.errors import BadRequest, NotFound
from canopy_svc.wire.models import (
    EVENT_TYPES,
    CardEvent,
    CustomerAccountLinkEvent,
    Event,
    EventList,
)

CURSOR_KIND = "events"
# Never in an event, wherever they sit in the object (customers under an account included): an
# event's data is stored and sent in clear.
PII_FIELDS = frozenset({"ssn", "passport", "passport_number"})
# Only on the answer to a write, about other customers: not part of the object.
ANSWER_ONLY_FIELDS = frozenset({"warnings"})

_encoder = msgspec.json.Encoder()
_data_decoder = msgspec.json.Decoder(dict[str, Any])


def new_event_id() -> str:
    return "evt_" + base62_id(24)


def without_pii(value: Any, *, top: bool = True) -> Any:
    if isinstance(value, dict):
        dropped = PII_FIELDS | (ANSWER_ONLY_FIELDS if top else frozenset())
        return {key: without_pii(item, top=False) for key, item in value.items() if key not in dropped}
    if isinstance(value, list):
        return [without_pii(item, top=False) for item in value]
    return value


def encoded_data(data: Any, *, leave_out: tuple[str, ...] = ()) -> str:
    """An event's data as stored: the object as answered, without its PII (and the fields left out)."""
    fields = without_pii(msgspec.to_builtins(data))
    for name in leave_out:
        fields.pop(name, None)
    return _encoder.encode(fields).decode()


async def record_event(conn: Conn, org_id: int, event_type: str, data: Any) -> Event:
    """Writes the event and one pending delivery per active subscription that wants its type, in the
    caller's transaction (the caller must be in one, with the change): rolled back, nothing is told."""
    assert event_type in EVENT_TYPES, event_type
    record = await store.insert(conn, org_id, new_event_id(), event_type, encoded_data(data))
    return event_from_record(record)


async def record_events(conn: Conn, org_id: int, event_type: str, items: list[Any]) -> None:
    """record_event for many objects of one type (the bulk import's batch), in one statement."""
    assert event_type in EVENT_TYPES, event_type
    if not items:
        return
    data = [_encoder.encode(without_pii(msgspec.to_builtins(item))).decode() for item in items]
    await store.insert_many(conn, org_id, event_type, [new_event_id() for _ in items], data)


async def record_card_event(conn: Conn, event_type: str, card: Row | None, *, link: Row | None = None) -> None:
    """A card_* event for a card row as the store returns it (None: the row did not change, no event),
    in the organization of the card's link. `link`: its summary, when the caller has it already."""
    if card is None:
        return
    if link is None:
        link = await store.link_summary(conn, card["link_id"])
    item = msgspec.structs.asdict(card_from_record(card))
    await record_event(
        conn,
        link["org_id"],
        event_type,
        CardEvent(**item, account_id=link["account_id"], customer_id=link["customer_id"]),
    )


def card_change_type(state: str) -> str:
    """A change of state or spend limit: card_closed when it closed the card (CLOSED is final)."""
    return "card_closed" if state == "CLOSED" else "card_updated"


async def record_link_event(conn: Conn, org_id: int, link_id: int) -> Row:
    """The customer_account_linked event; returns the link's summary (for its card's event)."""
    link = await store.link_summary(conn, link_id)
    fields = {name: link[name] for name in CustomerAccountLinkEvent.__struct_fields__}
    await record_event(conn, org_id, "customer_account_linked", CustomerAccountLinkEvent(**fields))
    return link


def event_from_record(record: Row) -> Event:
    return Event(
        id=record["event_id"],
        type=record["type"],
        created_at=record["created_at"],
        data=_data_decoder.decode(record["data"]),
    )


async def get_event(conn: Queryable, org_id: int, event_id: str) -> Event:
    record = await store.fetch(conn, org_id, event_id)
    if record is None:
        raise NotFound(f"No event found with the provided event_id: {event_id}")
    return event_from_record(record)


def event_type_filter(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    if raw not in EVENT_TYPES:
        raise BadRequest(f"type must be one of {', '.join(EVENT_TYPES)}")
    return raw


async def list_events(
    conn: Queryable, org_id: int, cursors: CursorCodec, page: PageRequest, event_type: str | None
) -> EventList:
    async def fetch(limit: int, after: int | None, before: int | None) -> list[asyncpg.Record]:
        return await store.page(conn, org_id, limit=limit, after=after, before=before, event_type=event_type)

    # The cursor is the same for a filtered and an unfiltered feed: a position in the event order.
    records, paging = await keyset_page(cursors, org_id, CURSOR_KIND, page, fetch)
    return EventList(results=[event_from_record(r) for r in records], paging=paging)
