"""SQL for webhook subscriptions and their deliveries: the outbox workers/deliveries.py drains."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from canopy_svc.core.dbtypes import Conn, Queryable
from canopy_svc.store.events import NOTIFY_CHANNEL
from canopy_svc.store.keyset import page_bounds

SUBSCRIPTION_COLUMNS = """s.id, s.subscription_id, s.webhook_url, s.filter_events, s.failure_notification_endpoint,
    s.active, s.created_at, s.updated_at"""


# --- subscriptions --------------------------------------------------------------------------------


async def insert_subscription(
    conn: Conn,
    org_id: int,
    subscription_id: str,
    *,
    webhook_url: str,
    filter_events: Sequence[str] | None,
    failure_notification_endpoint: str | None,
    secret_encrypted: bytes,
) -> asyncpg.Record:
    record = await conn.fetchrow(
        f"""INSERT INTO webhook_subscriptions AS s (org_id, subscription_id, webhook_url, filter_events,
                failure_notification_endpoint, secret_encrypted)
            VALUES ($1, $2, $3, $4, $5, $6) RETURNING {SUBSCRIPTION_COLUMNS}""",
        org_id,
        subscription_id,
        webhook_url,
        list(filter_events) if filter_events is not None else None,
        failure_notification_endpoint,
        secret_encrypted,
    )
    assert record is not None
    return record


async def set_active(conn: Queryable, org_id: int, subscription_id: str, active: bool) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""UPDATE webhook_subscriptions s SET active = $3,
                updated_at = CASE WHEN s.active = $3 THEN s.updated_at ELSE now() END
            WHERE s.org_id = $1 AND s.subscription_id = $2 RETURNING {SUBSCRIPTION_COLUMNS}""",
        org_id,
        subscription_id,
        active,
    )


async def page_subscriptions(
    conn: Queryable, org_id: int, *, limit: int, after: int | None, before: int | None
) -> list[asyncpg.Record]:
    args: list[Any] = []
    bound, tail = page_bounds("s.org_id", "s.id", args, group_value=org_id, limit=limit, after=after, before=before)
    return await conn.fetch(f"SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions s WHERE {bound} {tail}", *args)


# --- deliveries -----------------------------------------------------------------------------------


async def replay_failed(conn: Queryable, org_id: int, *, batch: int = 1000) -> int:
    """Puts up to `batch` of the organization's failed deliveries (of active subscriptions) back in the
    queue, due now, with their attempts counted afresh."""
    count: int = await conn.fetchval(
        f"""WITH requeued AS (
                UPDATE webhook_deliveries d SET state = 'pending', attempts = 0, next_attempt_at = now(),
                    finished_at = NULL, failure_notified = false
                FROM (SELECT d.id FROM webhook_deliveries d
                      JOIN webhook_subscriptions s ON s.id = d.subscription_row_id AND s.active
                      WHERE d.org_id = $1 AND d.state = 'failed' ORDER BY d.id LIMIT $2
                      FOR UPDATE OF d SKIP LOCKED) failed
                WHERE d.id = failed.id RETURNING 1
            ), woken AS (SELECT pg_notify('{NOTIFY_CHANNEL}', '') WHERE EXISTS (SELECT FROM requeued))
            SELECT (SELECT count(*) FROM requeued) + 0 * (SELECT count(*) FROM woken)""",
        org_id,
        batch,
    )
    return count


async def claim_due(
    conn: Queryable, *, limit: int, per_subscription: int, in_flight: Mapping[int, int], lease_seconds: float
) -> list[asyncpg.Record]:
    """Leases due pending deliveries: SKIP LOCKED so two workers never take the same one, next_attempt_at
    pushed past the lease so one whose worker died is tried again. Of one subscription, no more than
    `per_subscription` minus what this process already has `in_flight` of it (by subscription row id),
    so a burst for one slow receiver cannot fill every slot, nor go past its own."""
    subscriptions = list(in_flight)
    return await conn.fetch(
        """WITH candidates AS (
               SELECT d.id, d.subscription_row_id FROM webhook_deliveries d
               WHERE d.state = 'pending' AND d.next_attempt_at <= now()
                 AND d.subscription_row_id <> ALL(
                     SELECT f.sub FROM unnest($4::bigint[], $5::int[]) AS f(sub, n) WHERE f.n >= $2)
               ORDER BY d.next_attempt_at LIMIT $1 * 4 FOR UPDATE SKIP LOCKED
           ), ranked AS (
               SELECT c.id, row_number() OVER (PARTITION BY c.subscription_row_id ORDER BY c.id)
                          + coalesce(f.n, 0) AS n
               FROM candidates c LEFT JOIN unnest($4::bigint[], $5::int[]) AS f(sub, n) ON f.sub = c.subscription_row_id
           ), chosen AS (
               SELECT id FROM ranked WHERE n <= $2 ORDER BY id LIMIT $1
           )
           UPDATE webhook_deliveries d SET attempts = d.attempts + 1,
                                           next_attempt_at = now() + make_interval(secs => $3)
           FROM chosen, webhook_subscriptions s, events e
           WHERE d.id = chosen.id AND s.id = d.subscription_row_id AND e.id = d.event_row_id
           RETURNING d.id, d.org_id, d.attempts, d.created_at, d.subscription_row_id, s.subscription_id,
                     s.webhook_url, s.failure_notification_endpoint, s.secret_encrypted, s.active,
                     e.event_id, e.type, e.data::text AS data""",
        limit,
        per_subscription,
        lease_seconds,
        subscriptions,
        [in_flight[sub] for sub in subscriptions],
    )


async def mark_delivered(conn: Queryable, delivery_id: int, attempts: int, status: int, answer: str) -> None:
    """Only the attempt that holds the lease records (`attempts` is its number)."""
    await conn.execute(
        """UPDATE webhook_deliveries SET state = 'delivered', last_status = $3, last_response = $4,
               last_error = NULL, finished_at = now()
           WHERE id = $1 AND attempts = $2 AND state = 'pending'""",
        delivery_id,
        attempts,
        status,
        answer,
    )


async def retry_later(
    conn: Queryable,
    delivery_id: int,
    attempts: int,
    *,
    delay_seconds: float,
    status: int | None,
    answer: str,
    error: str | None,
) -> None:
    await conn.execute(
        """UPDATE webhook_deliveries SET next_attempt_at = now() + make_interval(secs => $3), last_status = $4,
               last_response = $5, last_error = $6
           WHERE id = $1 AND attempts = $2 AND state = 'pending'""",
        delivery_id,
        attempts,
        delay_seconds,
        status,
        answer,
        error,
    )


async def mark_failed(
    conn: Queryable, delivery_id: int, attempts: int, *, status: int | None, answer: str, error: str | None
) -> bool:
    """True when this attempt made it failed (the one to tell the failure endpoint)."""
    done: str = await conn.execute(
        """UPDATE webhook_deliveries SET state = 'failed', last_status = $3, last_response = $4, last_error = $5,
               finished_at = now()
           WHERE id = $1 AND attempts = $2 AND state = 'pending'""",
        delivery_id,
        attempts,
        status,
        answer,
        error,
    )
    return done.endswith(" 1")


async def mark_failure_notified(conn: Queryable, delivery_id: int) -> None:
    await conn.execute("UPDATE webhook_deliveries SET failure_notified = true WHERE id = $1", delivery_id)


async def seconds_until_next_due(conn: Queryable) -> float | None:
    """Seconds until a pending delivery is due (0 if one is), None when there is none: an idle worker
    sleeps instead of polling (`greatest(0, NULL)` would be 0: clamped here, not in SQL)."""
    value: Any = await conn.fetchval(
        """SELECT extract(epoch FROM (SELECT min(next_attempt_at) FROM webhook_deliveries
                                      WHERE state = 'pending') - now())"""
    )
    return max(float(value), 0.0) if value is not None else None


async def purge_finished(conn: Queryable, *, keep_days: float, batch: int = 1000) -> int:
    """Deletes up to `batch` deliveries delivered or failed more than `keep_days` ago."""
    deleted: str = await conn.execute(
        """DELETE FROM webhook_deliveries WHERE id IN (
               SELECT id FROM webhook_deliveries
               WHERE state <> 'pending' AND finished_at < now() - make_interval(secs => $1)
               ORDER BY finished_at LIMIT $2)""",
        keep_days * 86400,
        batch,
    )
    return int(deleted.split()[-1])


async def outbox_state(conn: Queryable) -> asyncpg.Record:
    """Deliveries waiting (first tries and retries) and the age of the oldest, for /metrics: both read
    the partial index of pending deliveries (webhook_deliveries_due) and their rows."""
    row: asyncpg.Record | None = await conn.fetchrow(
        """SELECT count(*) AS pending, extract(epoch FROM now() - min(created_at)) AS oldest_pending_seconds
           FROM webhook_deliveries WHERE state = 'pending'"""
    )
    assert row is not None
    return row
