"""How long events and deliveries are kept: the maintenance loop's purge (api/app.py runs it hourly)."""

from __future__ import annotations

from canopy_svc.core.dbtypes import Queryable
from canopy_svc.store import events as event_store
from canopy_svc.store import webhooks as webhook_store


async def purge_expired(conn: Queryable, *, event_days: float, delivery_days: float) -> int:
    """One batch of each: events past their retention (their deliveries with them), then delivered and
    failed deliveries past theirs; the count, for run_every to go on while there is more."""
    events = await event_store.purge_expired(conn, retention_days=event_days)
    deliveries = await webhook_store.purge_finished(conn, keep_days=delivery_days)
    return events + deliveries
