"""SQL for lithic_account_holders: one enrollment of a customer at Lithic per organization, and the
customer fields it is made from (the worker opens the SSNs, nobody else)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from canopy_svc.core.dbtypes import Conn, Queryable

COLUMNS = """id, org_id, customer_row_id, idempotency_key::text AS idempotency_key, workflow, status,
    status_reasons, token::text AS token, account_token::text AS account_token, attempts, created_at"""


async def card_context(conn: Queryable, card_id: int) -> asyncpg.Record | None:
    """The card's customer (row id) and its organization's enrollment settings (JSON text, or null): at
    Lithic, and at the simulator."""
    return await conn.fetchrow(
        """SELECT l.customer_row_id, c.sent_account_token, o.lithic_account_holders::text AS setting,
                  o.simulator_account_holders::text AS simulator_setting
           FROM cards c JOIN customer_account_links l ON l.id = c.link_id JOIN organizations o ON o.id = c.org_id
           WHERE c.id = $1""",
        card_id,
    )


async def ensure(conn: Queryable, org_id: int, customer_row_id: int, workflow: str) -> asyncpg.Record:
    """The customer's enrollment, made now (with its Idempotency-Key, before any call) if it has none."""
    record = await conn.fetchrow(
        f"""WITH made AS (
                INSERT INTO lithic_account_holders (org_id, customer_row_id, idempotency_key, workflow)
                VALUES ($1, $2, $3::uuid, $4)
                ON CONFLICT (org_id, customer_row_id) DO NOTHING
                RETURNING {COLUMNS})
            SELECT * FROM made
            UNION ALL
            SELECT {COLUMNS} FROM lithic_account_holders
            WHERE org_id = $1 AND customer_row_id = $2 AND NOT EXISTS (SELECT FROM made)""",
        org_id,
        customer_row_id,
        str(uuid.uuid4()),
        workflow,
    )
    if record is None:  # made by a racing worker after this statement's snapshot: read it now
        record = await conn.fetchrow(
            f"SELECT {COLUMNS} FROM lithic_account_holders WHERE org_id = $1 AND customer_row_id = $2",
            org_id,
            customer_row_id,
        )
    assert record is not None
    return record


async def decide_sent_account(conn: Queryable, card_id: int, account_token: str | None) -> str | None:
    """Records the account the card is sent under ('' for none) unless one was decided already; answers
    the one that holds (a racing worker's decision wins, and is what is sent)."""
    kept: str | None = await conn.fetchval(
        """UPDATE cards SET sent_account_token = coalesce(sent_account_token, $2) WHERE id = $1
           RETURNING sent_account_token""",
        card_id,
        account_token or "",
    )
    return kept or None


async def lease(conn: Queryable, enrollment_id: int, *, lease_seconds: float) -> bool:
    """Takes the right to call Lithic for this enrollment until the lease runs out; False when another
    worker holds it. A worker killed mid-call leaves it to expire, and the next one sends the same key."""
    taken: bool | None = await conn.fetchval(
        """UPDATE lithic_account_holders
           SET lease_until = clock_timestamp() + make_interval(secs => $2), attempts = attempts + 1
           WHERE id = $1 AND (lease_until IS NULL OR lease_until <= clock_timestamp())
           RETURNING true""",
        enrollment_id,
        lease_seconds,
    )
    return bool(taken)


async def release(conn: Queryable, enrollment_id: int) -> None:
    """The call failed in a way worth retrying: the next worker may try at once (with the same key)."""
    await conn.execute("UPDATE lithic_account_holders SET lease_until = NULL WHERE id = $1", enrollment_id)


async def renew_key(conn: Queryable, enrollment_id: int) -> None:
    """Lithic refused the request itself (a 4xx): no account holder exists, so the next attempt, with
    the customer's fields perhaps corrected, goes under a new key (an old key with a new body is refused)."""
    await conn.execute(
        """UPDATE lithic_account_holders SET idempotency_key = $2::uuid, lease_until = NULL, updated_at = now()
           WHERE id = $1 AND status IS NULL""",
        enrollment_id,
        str(uuid.uuid4()),
    )


async def record_answer(
    conn: Conn,
    enrollment_id: int,
    *,
    status: str,
    status_reasons: Sequence[str],
    token: str,
    account_token: str | None,
) -> asyncpg.Record:
    """Lithic's answer (to the enrollment or to a later read of it), and the lease given back."""
    record = await conn.fetchrow(
        f"""UPDATE lithic_account_holders SET status = $2, status_reasons = $3, token = $4::uuid,
                account_token = coalesce($5::uuid, account_token), lease_until = NULL, updated_at = now()
            WHERE id = $1 RETURNING {COLUMNS}""",
        enrollment_id,
        status,
        list(status_reasons),
        token,
        account_token,
    )
    assert record is not None
    return record


# The customer's fields an enrollment is made from. SSNs stay sealed here: the worker opens them.
_CUSTOMER = """SELECT id, customer_id, customer_type, name_first, name_last, phone_number, email, date_of_birth,
    address_line_one, address_line_two, address_city, address_state, address_zip, address_country_code,
    ssn_encrypted, business_legal_name, doing_business_as, business_ein, website, verification_status
    FROM customers WHERE id = $1 AND org_id = $2"""


async def customer(conn: Queryable, org_id: int, customer_row_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(_CUSTOMER, customer_row_id, org_id)


async def beneficial_owners(conn: Queryable, org_id: int, customer_row_id: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT beneficial_owner_id, name_first, name_last, phone_number, email, date_of_birth,
                  address_line_one, address_line_two, address_city, address_state, address_zip,
                  address_country_code, ssn_encrypted
           FROM beneficial_owners WHERE org_id = $1 AND customer_row_id = $2 ORDER BY id""",
        org_id,
        customer_row_id,
    )
    return rows


async def hold_card(conn: Queryable, card_id: int, *, delay_seconds: float, error: str) -> None:
    """Puts a leased card back unsent while its customer's enrollment is pending or in progress, with why in
    its `error`. Nothing was sent for the card, so its attempt is not counted (cards.defer_issue's rule)."""
    await conn.execute(
        """UPDATE cards SET next_attempt_at = now() + make_interval(secs => $2), attempts = attempts - 1,
               error = $3, updated_at = now()
           WHERE id = $1 AND status = 'PENDING'""",
        card_id,
        delay_seconds,
        error,
    )
