"""What waits in the outboxes, for /metrics: one entry per outbox.

Another outbox is a function like `_cards` that reads its depth and oldest item's age in its store
module, added to `OUTBOXES`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from canopy_svc.core.dbtypes import Queryable
from canopy_svc.core.metrics import OutboxState
from canopy_svc.store import cards, webhooks


async def _cards(conn: Queryable) -> list[OutboxState]:
    row = await cards.outbox_state(conn)
    oldest = row["oldest_pending_seconds"]
    return [
        OutboxState("cards", row["pending"], None if oldest is None else float(oldest)),
        OutboxState("card_closes", row["closes"], None),
    ]


async def _deliveries(conn: Queryable) -> list[OutboxState]:
    row = await webhooks.outbox_state(conn)
    oldest = row["oldest_pending_seconds"]
    return [OutboxState("webhook_deliveries", row["pending"], None if oldest is None else float(oldest))]


OUTBOXES: tuple[Callable[[Queryable], Awaitable[list[OutboxState]]], ...] = (_cards, _deliveries)


async def states(conn: Queryable) -> list[OutboxState]:
    found: list[OutboxState] = []
    for read in OUTBOXES:
        found += await read(conn)
    return found
