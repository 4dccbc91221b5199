"""SQL for events: written with the change they tell, with one pending delivery per matching
subscription, and read back as the feed."""

from __future__ import annotations

from typing import Any

import asyncpg

from canopy_svc.core.dbtypes import Conn, Queryable
from canopy_svc.store.keyset import page_bounds

NOTIFY_CHANNEL = "canopy_webhook_deliveries"
EVENT_COLUMNS = "e.id, e.event_id, e.type, e.data::text AS data, e.created_at"


def event_ctes(*, org: str, event_id: str, event_type: str, data: str, source: str = "") -> str:
    """The CTEs `event`, `deliveries` and `woken` of a statement that writes one event: the event, its
    deliveries, and a NOTIFY (delivered at commit, so a worker never wakes for a delivery it cannot see
    yet, and a rolled-back change wakes nobody) only when there is a delivery to make. The arguments
    are SQL: `data` the event's jsonb, `source` a FROM clause the event is written for each row of
    (the change it tells). The statement must read `woken` for the NOTIFY to happen."""
    return f"""event AS (
    INSERT INTO events (org_id, event_id, type, data) SELECT {org}, {event_id}, {event_type}, {data} {source}
    RETURNING id, event_id, type, data, created_at
), deliveries AS (
    INSERT INTO webhook_deliveries (org_id, subscription_row_id, event_row_id)
    SELECT {org}, s.id, event.id FROM webhook_subscriptions s, event
    WHERE s.org_id = {org} AND s.active AND (s.filter_events IS NULL OR {event_type} = ANY(s.filter_events))
    RETURNING 1
), woken AS (
    SELECT pg_notify('{NOTIFY_CHANNEL}', '') WHERE EXISTS (SELECT FROM deliveries)
)"""


_INSERT = f"""
WITH {event_ctes(org="$1", event_id="$2", event_type="$3::text", data="$4::jsonb")}
SELECT event.id, event.event_id, event.type, event.data::text AS data, event.created_at,
       (SELECT count(*) FROM woken) AS woken
FROM event"""


async def insert(conn: Conn, org_id: int, event_id: str, event_type: str, data: str) -> asyncpg.Record:
    record = await conn.fetchrow(_INSERT, org_id, event_id, event_type, data)
    assert record is not None
    return record


# insert() for many events of one type at once (the bulk import's batches): the same deliveries and
# NOTIFY, one statement for the batch. unnest WITH ORDINALITY keeps the given order in the feed.
_INSERT_MANY = f"""
WITH event AS (
    INSERT INTO events (org_id, event_id, type, data)
    SELECT $1, e.event_id, $2, e.data::jsonb
    FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS e(event_id, data, position) ORDER BY e.position
    RETURNING id
), deliveries AS (
    INSERT INTO webhook_deliveries (org_id, subscription_row_id, event_row_id)
    SELECT $1, s.id, event.id FROM webhook_subscriptions s, event
    WHERE s.org_id = $1 AND s.active AND (s.filter_events IS NULL OR $2 = ANY(s.filter_events))
    RETURNING 1
), woken AS (
    SELECT pg_notify('{NOTIFY_CHANNEL}', '') WHERE EXISTS (SELECT FROM deliveries)
)
SELECT (SELECT count(*) FROM event) AS events, (SELECT count(*) FROM woken) AS woken"""


async def insert_many(conn: Conn, org_id: int, event_type: str, event_ids: list[str], data: list[str]) -> int:
    """Events of one type, in the given order; how many were written."""
    written: int = await conn.fetchval(_INSERT_MANY, org_id, event_type, event_ids, data)
    return written


async def fetch(conn: Queryable, org_id: int, event_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {EVENT_COLUMNS} FROM events e WHERE e.org_id = $1 AND e.event_id = $2", org_id, event_id
    )


async def page(
    conn: Queryable,
    org_id: int,
    *,
    limit: int,
    after: int | None,
    before: int | None,
    event_type: str | None,
) -> list[asyncpg.Record]:
    """An organization's events in id order (events_org_id_id), or those of one type (events_org_type_id)."""
    args: list[Any] = []
    bound, tail = page_bounds("e.org_id", "e.id", args, group_value=org_id, limit=limit, after=after, before=before)
    if event_type is not None:
        # The type compared as the group is (see keyset.py), and ordered by, so only the
        # (org_id, type, id) index gives the order.
        args.append(event_type)
        bound += f" AND e.type = ANY(ARRAY[${len(args)}::text])"
        direction = "DESC" if before is not None else "ASC"
        tail = tail.replace(f"ORDER BY e.org_id {direction},", f"ORDER BY e.org_id {direction}, e.type {direction},")
    return await conn.fetch(f"SELECT {EVENT_COLUMNS} FROM events e WHERE {bound} {tail}", *args)


async def link_summary(conn: Queryable, link_id: int) -> asyncpg.Record:
    """A link as its event tells it, and the ids a card event names."""
    record = await conn.fetchrow(
        """SELECT l.org_id, a.account_id, c.customer_id, l.customer_account_role, l.customer_account_external_id
           FROM customer_account_links l
           JOIN accounts a ON a.id = l.account_row_id
           JOIN customers c ON c.id = l.customer_row_id
           WHERE l.id = $1""",
        link_id,
    )
    assert record is not None
    return record


async def purge_expired(conn: Queryable, *, retention_days: float, batch: int = 1000) -> int:
    """Deletes up to `batch` events older than the retention, oldest first (their deliveries go with them)."""
    deleted: str = await conn.execute(
        """DELETE FROM events WHERE id IN (
               SELECT id FROM events WHERE created_at < now() - make_interval(secs => $1)
               ORDER BY created_at LIMIT $2)""",
        retention_days * 86400,
        batch,
    )
    return int(deleted.split()[-1])
