"""SQL for cards: the rows answered as card_details, and the issuing outbox the worker drains."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.dbtypes import Conn, Queryable
from canopy_svc.core.notify import CARD_SETTLED_CHANNEL
from canopy_svc.store.keyset import each_key

CARD_COLUMNS = """id, link_id, status, card_type, memo, state, spend_limit, token, last_four, error, close_due_at,
    spend_limit_duration, exp_month, exp_year, lithic_created, hostname"""


def _qualified(alias: str) -> str:
    """CARD_COLUMNS of the table named `alias` (in an UPDATE ... FROM, where `id` is ambiguous)."""
    return ", ".join(f"{alias}.{name.strip()}" for name in CARD_COLUMNS.split(","))


NOTIFY_CHANNEL = "canopy_card_outbox"


async def insert_pending(
    conn: Conn,
    org_id: int,
    link_id: int,
    *,
    idempotency_key: str,
    card_type: str,
    memo: str | None,
    state: str,
    spend_limit: int | None,
    card_program_token: str | None,
    spend_limit_duration: str | None = None,
    exp_month: str | None = None,
    exp_year: str | None = None,
    product_id: str | None = None,
    shipping_method: str | None = None,
    shipping_address_encrypted: bytes | None = None,
    replacement_for: str | None = None,
) -> asyncpg.Record:
    # The NOTIFY in the same statement (delivered at commit, so a worker never wakes for a card it
    # cannot see yet): one round trip.
    record = await conn.fetchrow(
        f"""WITH card AS (
                INSERT INTO cards (org_id, link_id, idempotency_key, card_type, memo, state, spend_limit,
                    card_program_token, spend_limit_duration, exp_month, exp_year, product_id, shipping_method,
                    shipping_address_encrypted, replacement_for)
                VALUES ($1, $2, $3::uuid, $4, $5, $6, $7, $8::uuid, $9, $10, $11, $12, $13, $14, $15)
                RETURNING {CARD_COLUMNS}
            ), woken AS (SELECT pg_notify('{NOTIFY_CHANNEL}', ''))
            SELECT card.*, (SELECT count(*) FROM woken) AS woken FROM card""",
        org_id,
        link_id,
        idempotency_key,
        card_type,
        memo,
        state,
        spend_limit,
        card_program_token,
        spend_limit_duration,
        exp_month,
        exp_year,
        product_id,
        shipping_method,
        shipping_address_encrypted,
        replacement_for,
    )
    assert record is not None
    return record


async def shipping_source(conn: Queryable, link_id: int) -> asyncpg.Record:
    """What a PHYSICAL card of the link is sent to when its request names no shipping address: its
    customer's name, address and contacts."""
    record = await conn.fetchrow(
        """SELECT c.name_first, c.name_last, c.address_line_one, c.address_line_two, c.address_city,
                  c.address_state, c.address_zip, c.address_country_code, c.email, c.phone_number
           FROM customer_account_links l JOIN customers c ON c.id = l.customer_row_id WHERE l.id = $1""",
        link_id,
    )
    assert record is not None
    return record


async def of_links(conn: Queryable, link_ids: Sequence[int]) -> list[asyncpg.Record]:
    return await conn.fetch(
        each_key("$1::bigint[]", f"SELECT {CARD_COLUMNS} FROM cards WHERE link_id = wanted.key", "matched.id"),
        list(link_ids),
    )


async def latest_of_link(conn: Conn, link_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {CARD_COLUMNS} FROM cards WHERE link_id = $1 ORDER BY id DESC LIMIT 1 FOR UPDATE", link_id
    )


async def of_link_newest_first(conn: Queryable, link_id: int) -> list[asyncpg.Record]:
    """The link's cards, newest first (cards_link_id serves the order)."""
    return await conn.fetch(f"SELECT {CARD_COLUMNS} FROM cards WHERE link_id = $1 ORDER BY id DESC", link_id)


async def card_of_link(conn: Queryable, link_id: int, token: str, *, for_update: bool = False) -> asyncpg.Record | None:
    """The link's card with this Lithic token; None when the link has none (another link's included)."""
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(
        f"SELECT {CARD_COLUMNS} FROM cards WHERE link_id = $1 AND token = $2{lock}", link_id, token
    )


async def set_state(conn: Conn, card_id: int, *, state: str, spend_limit: int | None) -> asyncpg.Record:
    record = await conn.fetchrow(
        f"""UPDATE cards SET state = $2, spend_limit = $3, updated_at = now() WHERE id = $1
            RETURNING {CARD_COLUMNS}""",
        card_id,
        state,
        spend_limit,
    )
    assert record is not None
    return record


# --- changes at Lithic, in phases (see schema.sql) ------------------------------------------------


async def change_in_progress(conn: Conn, card_id: int, lease_seconds: float) -> bool:
    """Whether another request is between recording a change of this card and recording its result."""
    busy: bool = await conn.fetchval(
        """SELECT change_id IS NOT NULL AND change_started_at > now() - make_interval(secs => $2)
           FROM cards WHERE id = $1""",
        card_id,
        lease_seconds,
    )
    return busy


async def begin_change(conn: Conn, card_id: int, change_id: str, fields: str) -> None:
    """Records the change about to be sent (`fields` is its JSON); a stale one is taken over."""
    await conn.execute(
        """UPDATE cards SET change_id = $2::uuid, change_fields = $3::jsonb, change_started_at = now()
           WHERE id = $1""",
        card_id,
        change_id,
        fields,
    )


async def finish_change(
    conn: Queryable,
    card_id: int,
    change_id: str,
    *,
    state: str,
    spend_limit: int | None,
    memo: str | None = None,
    spend_limit_duration: str | None = None,
    exp_month: str | None = None,
    exp_year: str | None = None,
) -> asyncpg.Record | None:
    """Records Lithic's answer to our change; None when another request took the change over. A memo,
    duration or expiry Lithic did not answer stays as it was (a renewal answers a new expiry)."""
    return await conn.fetchrow(
        f"""UPDATE cards SET state = $3, spend_limit = $4, memo = coalesce($5, memo),
                spend_limit_duration = coalesce($6, spend_limit_duration),
                exp_month = coalesce($7, exp_month), exp_year = coalesce($8, exp_year), change_id = NULL,
                change_fields = NULL, change_started_at = NULL, updated_at = now(),
                -- closed by this change: the pending close (if any) has nothing left to send
                close_due_at = CASE WHEN $3 = 'CLOSED' THEN NULL ELSE close_due_at END
            WHERE id = $1 AND change_id = $2::uuid RETURNING {CARD_COLUMNS}""",
        card_id,
        change_id,
        state,
        spend_limit,
        memo,
        spend_limit_duration,
        exp_month,
        exp_year,
    )


async def abandon_change(conn: Queryable, card_id: int, change_id: str) -> None:
    """Forgets a change Lithic refused or that could not be sent: nothing about the card changed."""
    await conn.execute(
        """UPDATE cards SET change_id = NULL, change_fields = NULL, change_started_at = NULL
           WHERE id = $1 AND change_id = $2::uuid""",
        card_id,
        change_id,
    )


async def fetch_card(conn: Queryable, card_id: int) -> asyncpg.Record:
    record = await conn.fetchrow(f"SELECT {CARD_COLUMNS} FROM cards WHERE id = $1", card_id)
    assert record is not None
    return record


async def claim_stale_changes(
    conn: Queryable, *, limit: int, lease_seconds: float, change_id: str
) -> list[asyncpg.Record]:
    """Changes whose request died mid-call (older than the lease), taken over under a new change_id."""
    return await conn.fetch(
        """UPDATE cards c SET change_id = $3::uuid, change_started_at = now()
           FROM (SELECT id FROM cards WHERE change_id IS NOT NULL
                     AND change_started_at <= now() - make_interval(secs => $2)
                 ORDER BY change_started_at LIMIT $1 FOR UPDATE SKIP LOCKED) stale,
                organizations o
           WHERE c.id = stale.id AND o.id = c.org_id
           RETURNING c.id, c.org_id, c.token, c.state, c.spend_limit, c.change_id::text AS change_id,
                     c.change_fields::text AS change_fields,
                     o.lithic_api_key_encrypted, o.lithic_base_url""",
        limit,
        lease_seconds,
        change_id,
    )


# --- the outbox ----------------------------------------------------------------------------------


async def claim_due(conn: Queryable, *, limit: int, lease_seconds: float) -> list[asyncpg.Record]:
    """Leases due PENDING cards to this worker: SKIP LOCKED so workers never take the same row, and
    next_attempt_at pushed past the lease so a worker that dies leaves the card to be retried."""
    return await conn.fetch(
        """UPDATE cards c SET attempts = c.attempts + 1,
                              next_attempt_at = now() + make_interval(secs => $2)
           FROM (SELECT id FROM cards WHERE status = 'PENDING' AND next_attempt_at <= now()
                 ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) due,
                organizations o
           WHERE c.id = due.id AND o.id = c.org_id
           RETURNING c.id, c.org_id, c.idempotency_key::text AS idempotency_key, c.card_type, c.memo,
                     c.state, c.spend_limit, c.card_program_token::text AS card_program_token, c.attempts,
                     c.spend_limit_duration, c.exp_month, c.exp_year, c.product_id, c.shipping_method,
                     c.shipping_address_encrypted, c.replacement_for, o.lithic_api_key_encrypted,
                     o.lithic_base_url""",
        limit,
        lease_seconds,
    )


async def _notify_settled(conn: Queryable, card: asyncpg.Record | None) -> asyncpg.Record | None:
    """Wakes the requests waiting for this card (core/notify.py), in every process; at commit when in
    a transaction."""
    if card is not None:
        await conn.execute("SELECT pg_notify($1, $2)", CARD_SETTLED_CHANNEL, str(card["id"]))
    return card


async def still_pending(conn: Queryable, card_ids: Sequence[int]) -> list[int]:
    """Which of these cards the worker has not settled yet."""
    rows = await conn.fetch("SELECT id FROM cards WHERE id = ANY($1::bigint[]) AND status = 'PENDING'", list(card_ids))
    return [row["id"] for row in rows]


async def mark_issued(conn: Queryable, card_id: int, issued: Mapping[str, Any]) -> asyncpg.Record | None:
    """Records the card Lithic made: its answer's values (`issued`: token, last_four, state, type, memo,
    spend_limit, spend_limit_duration, exp_month, exp_year, created, hostname) replace what was asked;
    the shipping address has been sent and is erased. None when it was not PENDING any more (another
    worker recorded it)."""
    record = await conn.fetchrow(
        f"""UPDATE cards SET status = 'ISSUED', token = $2, last_four = $3, state = $4, card_type = $5,
               memo = $6, spend_limit = $7, spend_limit_duration = $8, exp_month = $9, exp_year = $10,
               lithic_created = $11, hostname = $12, shipping_address_encrypted = NULL, error = NULL,
               updated_at = now()
           WHERE id = $1 AND status = 'PENDING' RETURNING {CARD_COLUMNS}""",
        card_id,
        issued["token"],
        issued["last_four"],
        issued["state"],
        issued["type"],
        issued["memo"],
        issued["spend_limit"],
        issued["spend_limit_duration"],
        issued["exp_month"],
        issued["exp_year"],
        issued["created"],
        issued["hostname"],
    )
    return await _notify_settled(conn, record)


async def mark_failed(conn: Queryable, card_id: int, error: str) -> asyncpg.Record | None:
    record = await conn.fetchrow(
        # A card Lithic never made has no close to send either, nor an address to ship to.
        f"""UPDATE cards SET status = 'FAILED', error = $2, close_due_at = NULL, shipping_address_encrypted = NULL,
                updated_at = now()
            WHERE id = $1 AND status = 'PENDING'
            RETURNING {CARD_COLUMNS}""",
        card_id,
        error,
    )
    return await _notify_settled(conn, record)


async def defer_issue(conn: Queryable, card_id: int, *, delay_seconds: float) -> None:
    """Puts a leased card back unsent (the organization's Lithic pace is full): its attempt is not
    counted, since nothing was sent (attempts = 0 still means "never sent" to close_cards_of_account)."""
    await conn.execute(
        """UPDATE cards SET next_attempt_at = now() + make_interval(secs => $2), attempts = attempts - 1
           WHERE id = $1 AND status = 'PENDING'""",
        card_id,
        delay_seconds,
    )


async def retry_later(conn: Queryable, card_id: int, *, delay_seconds: float, error: str) -> None:
    await conn.execute(
        """UPDATE cards SET next_attempt_at = now() + make_interval(secs => $2), error = $3,
               updated_at = now()
           WHERE id = $1 AND status = 'PENDING'""",
        card_id,
        delay_seconds,
        error,
    )


async def seconds_until_next_due(conn: Queryable, *, lease_seconds: float) -> float | None:
    """Seconds until a PENDING card is due or a recorded change's lease runs out (0 if one is now);
    None when there is neither, so an idle worker sleeps instead of polling. (`greatest(0, NULL)` is
    0, not NULL: clamping in SQL made an empty outbox look due at once, a query loop every 10 ms.)"""
    value: Any = await conn.fetchval(
        f"""SELECT extract(epoch FROM least(
                      (SELECT min(next_attempt_at) FROM cards WHERE status = 'PENDING'),
                      (SELECT min(change_started_at) FROM cards WHERE change_id IS NOT NULL)
                          + make_interval(secs => $1),
                      (SELECT min(close_due_at) FROM cards WHERE {_CLOSE_SENDABLE})) - now())""",
        lease_seconds,
    )
    return max(float(value), 0.0) if value is not None else None


# --- the outbox's closes (cards of a deleted or CLOSED account) ---------------------------------

# A close waits for its card to be issued (a PENDING card may exist at Lithic already) and for a
# change in flight to finish (sent after the close, a change to OPEN would reopen nothing, Lithic's
# CLOSED being final, but its answer would be recorded over ours).
_CLOSE_SENDABLE = "close_due_at IS NOT NULL AND status = 'ISSUED' AND change_id IS NULL"


async def close_cards_of_account(
    conn: Conn, account_row_id: int, *, simulated: bool, never_sent_error: str
) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    """Every card of the account that is not CLOSED gets closed, in the caller's transaction.

    A PENDING card never sent to the issuer (attempts = 0: the worker counts an attempt in the
    statement that leases the card, before it calls) is not issued at all: FAILED, CLOSED, with
    `never_sent_error`. One the worker has already sent may exist at Lithic, so it is issued under its
    Idempotency-Key and then closed: no card is left open there. The simulator keeps no card worth
    asking: its cards are closed here. With Lithic, each card gets a pending close for the worker.
    Returns the cards failed here and the cards closed here (their events' rows)."""
    # The card rows are locked here (UPDATE): a worker holding one (SKIP LOCKED) is waited for, and
    # the row re-read as it committed it.
    failed = await conn.fetch(
        f"""UPDATE cards c SET status = 'FAILED', state = 'CLOSED', error = $2, shipping_address_encrypted = NULL,
                updated_at = now()
            FROM customer_account_links l
            WHERE l.account_row_id = $1 AND c.link_id = l.id AND c.status = 'PENDING'
                  AND {"true" if simulated else "c.attempts = 0"}
            RETURNING {_qualified("c")}""",
        account_row_id,
        never_sent_error,
    )
    if simulated:
        closed = await conn.fetch(
            f"""UPDATE cards c SET state = 'CLOSED', updated_at = now() FROM customer_account_links l
                WHERE l.account_row_id = $1 AND c.link_id = l.id AND c.status = 'ISSUED' AND c.state <> 'CLOSED'
                RETURNING {_qualified("c")}""",
            account_row_id,
        )
        return failed, closed
    queued = await conn.execute(
        """UPDATE cards c SET close_due_at = now(), close_attempts = 0 FROM customer_account_links l
           WHERE l.account_row_id = $1 AND c.link_id = l.id AND c.status IN ('PENDING', 'ISSUED')
                 AND c.state <> 'CLOSED' AND c.close_due_at IS NULL""",
        account_row_id,
    )
    if queued != "UPDATE 0":
        await conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")  # delivered at commit
    return failed, []


async def claim_due_closes(conn: Queryable, *, limit: int, lease_seconds: float) -> list[asyncpg.Record]:
    """Leases due closes to this worker (SKIP LOCKED, the lease in close_due_at), as claim_due does."""
    return await conn.fetch(
        f"""UPDATE cards c SET close_attempts = c.close_attempts + 1,
                              close_due_at = now() + make_interval(secs => $2)
            FROM (SELECT id FROM cards WHERE {_CLOSE_SENDABLE} AND close_due_at <= now()
                  ORDER BY close_due_at LIMIT $1 FOR UPDATE SKIP LOCKED) due,
                 organizations o
            WHERE c.id = due.id AND o.id = c.org_id
            RETURNING c.id, c.org_id, c.token, c.close_attempts, o.lithic_api_key_encrypted, o.lithic_base_url""",
        limit,
        lease_seconds,
    )


async def mark_closed(conn: Queryable, card_id: int, *, state: str) -> asyncpg.Record | None:
    """Lithic's answer to the close: its state is the truth. The card as it now is (None: no close
    was pending, another worker recorded it)."""
    return await conn.fetchrow(
        f"""UPDATE cards SET state = $2, close_due_at = NULL, error = NULL, updated_at = now()
            WHERE id = $1 AND close_due_at IS NOT NULL RETURNING {CARD_COLUMNS}""",
        card_id,
        state,
    )


async def defer_close(conn: Queryable, card_id: int, *, delay_seconds: float) -> None:
    """Puts a leased close back unsent (the organization's Lithic pace is full), its attempt not counted."""
    await conn.execute(
        """UPDATE cards SET close_due_at = now() + make_interval(secs => $2), close_attempts = close_attempts - 1
           WHERE id = $1 AND close_due_at IS NOT NULL""",
        card_id,
        delay_seconds,
    )


async def close_later(conn: Queryable, card_id: int, *, delay_seconds: float, error: str) -> None:
    await conn.execute(
        """UPDATE cards SET close_due_at = now() + make_interval(secs => $2), error = $3, updated_at = now()
           WHERE id = $1 AND close_due_at IS NOT NULL""",
        card_id,
        delay_seconds,
        error,
    )


async def close_refused(conn: Queryable, card_id: int, error: str) -> None:
    """Lithic refused the close for good: no more tries; the card shows the refusal in `error`."""
    await conn.execute(
        """UPDATE cards SET close_due_at = NULL, error = $2, updated_at = now()
           WHERE id = $1 AND close_due_at IS NOT NULL""",
        card_id,
        error,
    )


# --- what /metrics shows of the outbox -----------------------------------------------------------


async def outbox_state(conn: Queryable) -> asyncpg.Record:
    """Cards waiting to be issued (and the age of the oldest), and closes waiting to be sent; each count
    reads a partial index (cards_pending_due, cards_close_due). A close keeps no time it was queued at
    (close_due_at moves with its retries), so closes have a depth only."""
    row: asyncpg.Record | None = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM cards WHERE status = 'PENDING') AS pending,
                  (SELECT extract(epoch FROM now() - min(created_at)) FROM cards WHERE status = 'PENDING')
                      AS oldest_pending_seconds,
                  (SELECT count(*) FROM cards WHERE close_due_at IS NOT NULL) AS closes"""
    )
    assert row is not None
    return row


# --- pacing Lithic calls per organization ---------------------------------------------------------


async def claim_lithic_call(conn: Queryable, org_id: int, *, interval_seconds: float) -> float:
    """0 when the organization may call Lithic now (and no other call may for `interval_seconds`), else
    the seconds until it may: every worker in every process shares one schedule, in the row."""
    wait: Any = await conn.fetchval(
        """WITH claimed AS (
               UPDATE organizations SET lithic_next_call_at = clock_timestamp() + make_interval(secs => $2)
               WHERE id = $1 AND (lithic_next_call_at IS NULL OR lithic_next_call_at <= clock_timestamp())
               RETURNING 0.0::float8 AS wait)
           SELECT wait FROM claimed
           UNION ALL
           SELECT greatest(extract(epoch FROM lithic_next_call_at - clock_timestamp())::float8, 0.001)
           FROM organizations WHERE id = $1 AND NOT EXISTS (SELECT FROM claimed)""",
        org_id,
        interval_seconds,
    )
    return float(wait) if wait is not None else 0.0


async def hold_lithic_calls(conn: Queryable, org_id: int, *, seconds: float) -> None:
    """Lithic answered 429 with Retry-After: no call for this organization goes out before then."""
    await conn.execute(
        """UPDATE organizations SET lithic_next_call_at =
               greatest(lithic_next_call_at, clock_timestamp() + make_interval(secs => $2))
           WHERE id = $1""",
        org_id,
        seconds,
    )


# --- a PHYSICAL card's shipping address, sealed until it is sent --------------------------------

_SHIPPING_ADDRESS_CONTEXT = b"card_shipping_address:"


def seal_shipping_address(cipher: DataCipher, idempotency_key: str, address: Mapping[str, str]) -> bytes:
    """AES-GCM, bound to the card's idempotency key: a sealed address copied to another card won't open."""
    plain = json.dumps(dict(address), separators=(",", ":"))
    return cipher.encrypt(plain, context=_SHIPPING_ADDRESS_CONTEXT + idempotency_key.encode())


def open_shipping_address(cipher: DataCipher, idempotency_key: str, sealed: bytes) -> dict[str, str]:
    opened: dict[str, str] = json.loads(
        cipher.decrypt(bytes(sealed), context=_SHIPPING_ADDRESS_CONTEXT + idempotency_key.encode())
    )
    return opened
