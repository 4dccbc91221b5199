"""SQL for keeping cards as Lithic has them: the cards a webhook names, the webhook-ids applied, the
reconciler's queue of read-backs, and the update of a card to what Lithic says."""

from __future__ import annotations

from typing import Any

import asyncpg

from canopy_svc.core.dbtypes import Conn, Queryable
from canopy_svc.store.cards import CARD_COLUMNS

# The cards whose state can change at Lithic on its own, without a call of ours: a SINGLE_USE card
# closes after its first authorization, a MERCHANT_LOCKED one locks to its first merchant, a PHYSICAL
# one leaves fulfillment when it is shipped and activated. schema.sql's cards_reconcilable index has
# the same predicate: change both together.
RECONCILABLE = """status = 'ISSUED' AND ((card_type = 'SINGLE_USE' AND state = 'OPEN')
    OR (card_type = 'MERCHANT_LOCKED' AND state = 'OPEN' AND coalesce(hostname, '') = '')
    OR state IN ('PENDING_FULFILLMENT', 'PENDING_ACTIVATION'))"""
_LAST_READ = "coalesce(reconciled_at, '-infinity'::timestamptz)"


async def cards_with_token(conn: Queryable, token: str) -> list[asyncpg.Record]:
    """The issued cards Lithic knows by `token` (one, unless two organizations share a Lithic account),
    each with its organization's sealed webhook secret."""
    return await conn.fetch(
        """SELECT c.id, c.org_id, o.lithic_webhook_secret_encrypted, o.lithic_api_key_encrypted
           FROM cards c JOIN organizations o ON o.id = c.org_id
           WHERE c.token = $1 AND c.status = 'ISSUED' ORDER BY c.id""",
        token,
    )


async def issued_card_of(conn: Queryable, org_id: int, token: str) -> asyncpg.Record | None:
    """The organization's issued card Lithic (or the simulator) knows by `token`."""
    return await conn.fetchrow(
        "SELECT id, state FROM cards WHERE org_id = $1 AND token = $2 AND status = 'ISSUED'", org_id, token
    )


async def record_webhook(conn: Conn, org_id: int, webhook_id: str) -> bool:
    """Notes a webhook as applied, in the caller's transaction; False when it was already."""
    inserted: Any = await conn.fetchval(
        """INSERT INTO lithic_webhooks_received (org_id, webhook_id) VALUES ($1, $2)
           ON CONFLICT DO NOTHING RETURNING true""",
        org_id,
        webhook_id,
    )
    return inserted is not None


async def purge_webhooks(conn: Queryable, *, older_than_days: float, limit: int = 10_000) -> int:
    status: str = await conn.execute(
        """DELETE FROM lithic_webhooks_received WHERE ctid = ANY(ARRAY(
               SELECT ctid FROM lithic_webhooks_received
               WHERE received_at < now() - make_interval(days => $1::int) LIMIT $2))""",
        int(older_than_days),
        limit,
    )
    return int(status.split()[-1])


async def lock_card(conn: Conn, card_id: int) -> asyncpg.Record | None:
    """The card, row-locked for the caller's transaction; `row_version` is its xmin: any update of the
    row since changes it."""
    return await conn.fetchrow(
        f"SELECT {CARD_COLUMNS}, org_id, change_id, xmin::text AS row_version FROM cards WHERE id = $1 FOR UPDATE",
        card_id,
    )


async def update_card(conn: Conn, card_id: int, values: dict[str, Any]) -> asyncpg.Record:
    """Sets `values` (columns of cards among those update_card is given) and returns the card."""
    allowed = ("state", "card_type", "memo", "spend_limit", "spend_limit_duration", "exp_month", "exp_year", "hostname")
    names = [name for name in allowed if name in values]
    assignments = [f"{name} = ${index}" for index, name in enumerate(names, start=2)]
    if values.get("state") == "CLOSED":
        assignments.append("close_due_at = NULL")  # closed at Lithic: a pending close has nothing to send
    record = await conn.fetchrow(
        f"""UPDATE cards SET {", ".join(assignments)}, updated_at = now()
            WHERE id = $1 RETURNING {CARD_COLUMNS}""",
        card_id,
        *(values[name] for name in names),
    )
    assert record is not None
    return record


async def read_back_soon(conn: Queryable, card_id: int, *, delay_seconds: float = 0.0) -> None:
    """Queues the card for the reconciler's next pass (or after `delay_seconds`)."""
    await conn.execute(
        """UPDATE cards SET reconcile_due_at = least(coalesce(reconcile_due_at, 'infinity'::timestamptz),
               now() + make_interval(secs => $2))
           WHERE id = $1 AND state <> 'CLOSED'""",
        card_id,
        delay_seconds,
    )


async def claim_read_backs(conn: Queryable, *, limit: int, min_age_seconds: float) -> list[asyncpg.Record]:
    """Leases the cards to read back now: those a webhook named, then the reconcilable ones read back
    longest ago (at most once per `min_age_seconds`). SKIP LOCKED, and the claim moves the card to the
    back of the queue, so processes never read the same card at once; a change of ours in flight is
    waited for (its answer is recorded by whoever sent it)."""
    due = f"""token IS NOT NULL AND change_id IS NULL AND (reconcile_due_at <= now()
              OR ({RECONCILABLE} AND {_LAST_READ} <= now() - make_interval(secs => $2)))"""
    return await conn.fetch(
        f"""UPDATE cards c SET reconciled_at = now(), reconcile_due_at = NULL
            FROM (SELECT id FROM cards
                  WHERE id = ANY(ARRAY(SELECT id FROM cards WHERE reconcile_due_at <= now()
                                       ORDER BY reconcile_due_at LIMIT $1)
                                 || ARRAY(SELECT id FROM cards WHERE {RECONCILABLE}
                                              AND {_LAST_READ} <= now() - make_interval(secs => $2)
                                          ORDER BY {_LAST_READ} LIMIT $1))
                        AND {due}
                  LIMIT $1 FOR UPDATE SKIP LOCKED) claimed,
                 organizations o
            WHERE c.id = claimed.id AND o.id = c.org_id
            RETURNING c.id, c.org_id, c.token, c.xmin::text AS row_version,
                      o.lithic_api_key_encrypted, o.lithic_base_url""",
        limit,
        min_age_seconds,
    )


async def seconds_until_next_read(conn: Queryable, *, min_age_seconds: float) -> float | None:
    """Seconds until a card is due a read-back (0 if one is now); None when none ever will be, so an
    idle reconciler sleeps instead of polling (each minimum reads an index: cards_reconcile_due,
    cards_reconcilable)."""
    value: Any = await conn.fetchval(
        f"""SELECT extract(epoch FROM least(
                (SELECT min(reconcile_due_at) FROM cards WHERE reconcile_due_at IS NOT NULL),
                (SELECT CASE WHEN oldest = '-infinity' THEN now() ELSE oldest + make_interval(secs => $1) END
                 FROM (SELECT min({_LAST_READ}) AS oldest FROM cards WHERE {RECONCILABLE}) read)) - now())""",
        min_age_seconds,
    )
    return max(float(value), 0.0) if value is not None else None
