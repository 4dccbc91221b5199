"""SQL for accounts, the customer-account links, and what hangs off them."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
import msgspec

from canopy_svc.core.dbtypes import Conn, Queryable
from canopy_svc.store.conflicts import conflict_for
from canopy_svc.store.customers import qualified_columns
from canopy_svc.store.keyset import each_key, page_bounds
from canopy_svc.wire.models import AccountSummaryIn

CUSTOMER_COLUMNS = qualified_columns("c")

# The summary's columns are named as its fields (credit_limit_cents, late_fee_cents, ...).
SUMMARY_COLUMNS = tuple(field.name for field in msgspec.structs.fields(AccountSummaryIn))
# The account's own columns, then its product's (account_product); JSON as text, decoded by the rules.
ACCOUNT_COLUMNS = f"""a.id, a.account_id, p.product_id, a.external_account_id, a.account_status, a.account_substatus,
    {", ".join(f"a.{name}" for name in SUMMARY_COLUMNS)}, a.effective_at, a.created_at, a.updated_at,
    a.cycle_type::text AS cycle_type, a.external_fields::text AS external_fields, a.lithic_account_token,
    p.external_product_id, p.product_name, p.product_type, p.product_short_description,
    p.product_long_description, p.product_color, p.product_lifecycle_policies::text AS product_lifecycle_policies,
    p.promotional_policies::text AS promotional_policies,
    p.post_promotional_policies::text AS post_promotional_policies"""
_ACCOUNT_FROM = "accounts a JOIN products p ON p.id = a.product_row_id"

# A link's customer, by its primary key, as a LATERAL subquery (see keyset.each_key): joined, the
# planner has merged links with customers by walking the customers' primary key down to a customer's
# row (8,000 rows read for one customer's page of accounts).
_CUSTOMER_OF_LINK = f"SELECT {CUSTOMER_COLUMNS} FROM customers c WHERE c.id = l.customer_row_id"

LINK_COLUMNS = """l.id AS link_id, l.account_row_id, l.customer_row_id, l.customer_account_role,
    l.customer_account_external_id, l.spend_limit, l.lithic_memo, l.lithic_type, l.lithic_state,
    l.lithic_card_program_token, l.has_lithic_config"""


async def insert(
    conn: Conn,
    org_id: int,
    account_id: str,
    product_row_id: int,
    *,
    external_account_id: str | None,
    effective_at: datetime.datetime | None,
    summary: Mapping[str, Any],
    cycle_type: str,
    external_fields: str,
) -> int:
    """`summary`: a value for each of SUMMARY_COLUMNS; `cycle_type` and `external_fields`: JSON text."""
    values = [summary[name] for name in SUMMARY_COLUMNS]
    placeholders = ", ".join(f"${n}" for n in range(8, 8 + len(values)))
    try:
        row_id: int = await conn.fetchval(
            f"""INSERT INTO accounts (org_id, account_id, product_row_id, external_account_id, effective_at,
                   cycle_type, external_fields, {", ".join(SUMMARY_COLUMNS)})
               VALUES ($1, $2, $3, $4, coalesce($5, now()), $6::jsonb, $7::jsonb, {placeholders}) RETURNING id""",
            org_id,
            account_id,
            product_row_id,
            external_account_id,
            effective_at,
            cycle_type,
            external_fields,
            *values,
        )
    except asyncpg.UniqueViolationError as exc:
        raise conflict_for(exc, account_id=account_id, external_account_id=external_account_id) from None
    return row_id


async def find_row_ids(conn: Conn, org_id: int, account_ids: Sequence[str]) -> dict[str, int]:
    rows = await conn.fetch(
        # FOR SHARE: a delete or a close waits for the links (and cards) this request adds, and closes them.
        """SELECT account_id, id FROM accounts WHERE org_id = $1 AND account_id = ANY($2::text[])
               AND deleted_at IS NULL FOR SHARE""",
        org_id,
        list(account_ids),
    )
    return {row["account_id"]: row["id"] for row in rows}


async def fetch_accounts(conn: Queryable, org_id: int, row_ids: Sequence[int]) -> list[asyncpg.Record]:
    return await conn.fetch(
        each_key(
            "$2::bigint[]",
            f"SELECT {ACCOUNT_COLUMNS} FROM {_ACCOUNT_FROM} WHERE a.org_id = $1 AND a.id = wanted.key",
            "matched.id",
        ),
        org_id,
        list(row_ids),
    )


async def fetch_account_by_id(conn: Queryable, org_id: int, account_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""SELECT {ACCOUNT_COLUMNS} FROM {_ACCOUNT_FROM}
            WHERE a.org_id = $1 AND a.account_id = $2 AND a.deleted_at IS NULL""",
        org_id,
        account_id,
    )


async def fetch_account_by_external_id(conn: Queryable, org_id: int, external_account_id: str) -> asyncpg.Record | None:
    """By the organization's unique index on external_account_id (accounts_org_external_account_id_key)."""
    return await conn.fetchrow(
        f"""SELECT {ACCOUNT_COLUMNS} FROM {_ACCOUNT_FROM}
            WHERE a.org_id = $1 AND a.external_account_id = $2 AND a.deleted_at IS NULL""",
        org_id,
        external_account_id,
    )


async def page_accounts(
    conn: Queryable, org_id: int, *, limit: int, after: int | None, before: int | None
) -> list[asyncpg.Record]:
    args: list[Any] = []
    bound, tail = page_bounds(
        live("a", "org_id"), "a.id", args, group_value=org_id, limit=limit, after=after, before=before
    )
    # Grouped by live(...) and `deleted_at IS NULL`: only accounts_live_org_id_id answers, and it holds
    # no deleted account.
    return await conn.fetch(
        f"SELECT {ACCOUNT_COLUMNS} FROM {_ACCOUNT_FROM} WHERE {bound} AND a.deleted_at IS NULL {tail}", *args
    )


def live(alias: str, group: str) -> str:
    """A list's group column, NULL for a deleted row: the expression of the *_live_* indexes (schema.sql)."""
    return f"(CASE WHEN {alias}.deleted_at IS NULL THEN {alias}.{group} END)"


# --- links ---------------------------------------------------------------------------------------


async def upsert_link(
    conn: Conn,
    org_id: int,
    account_row_id: int,
    customer_row_id: int,
    *,
    role: str | None,
    external_id: str | None,
    new_external_id: str,
    card_config: dict[str, Any] | None,
) -> tuple[int, bool]:
    """Creates the link, or changes the given parts of an existing one; returns (link id, created)."""
    config = card_config or {}
    try:
        row = await conn.fetchrow(
            """INSERT INTO customer_account_links AS l (org_id, account_row_id, customer_row_id,
                   customer_account_role, customer_account_external_id, spend_limit, lithic_memo,
                   lithic_type, lithic_state, lithic_card_program_token, has_lithic_config)
               VALUES ($1, $2, $3, coalesce($4, 'PRIMARY'), coalesce($5, $6), $7, $8, $9, $10, $11::uuid, $12)
               ON CONFLICT (account_row_id, customer_row_id) DO UPDATE SET
                   customer_account_role = coalesce($4, l.customer_account_role),
                   customer_account_external_id = coalesce($5, l.customer_account_external_id),
                   spend_limit = CASE WHEN $13 THEN excluded.spend_limit ELSE l.spend_limit END,
                   lithic_memo = CASE WHEN $13 THEN excluded.lithic_memo ELSE l.lithic_memo END,
                   lithic_type = CASE WHEN $13 THEN excluded.lithic_type ELSE l.lithic_type END,
                   lithic_state = CASE WHEN $13 THEN excluded.lithic_state ELSE l.lithic_state END,
                   lithic_card_program_token = CASE WHEN $13 THEN excluded.lithic_card_program_token
                                                    ELSE l.lithic_card_program_token END,
                   has_lithic_config = CASE WHEN $13 THEN excluded.has_lithic_config
                                            ELSE l.has_lithic_config END,
                   updated_at = now()
               RETURNING id, (xmax = 0) AS created""",
            org_id,
            account_row_id,
            customer_row_id,
            role,
            external_id,
            new_external_id,
            config.get("spend_limit"),
            config.get("memo"),
            config.get("type"),
            config.get("state"),
            config.get("card_program_token"),
            bool(config.get("has_lithic")),
            card_config is not None,
        )
    except asyncpg.UniqueViolationError as exc:
        raise conflict_for(exc, customer_account_external_id=external_id) from None
    assert row is not None
    return row["id"], row["created"]


async def fetch_link(
    conn: Queryable, org_id: int, account_id: str, customer_id: str, *, for_update: bool = False
) -> asyncpg.Record | None:
    # FOR SHARE OF a: a delete or a close of the account waits for this request's card, and closes it.
    lock = " FOR UPDATE OF l FOR SHARE OF a" if for_update else ""
    return await conn.fetchrow(
        f"""SELECT {LINK_COLUMNS}, a.account_status FROM customer_account_links l
            JOIN accounts a ON a.id = l.account_row_id
            JOIN customers c ON c.id = l.customer_row_id
            WHERE l.org_id = $1 AND a.account_id = $2 AND c.customer_id = $3 AND a.deleted_at IS NULL{lock}""",
        org_id,
        account_id,
        customer_id,
    )


async def links_of_accounts(conn: Queryable, account_row_ids: Sequence[int]) -> list[asyncpg.Record]:
    return await conn.fetch(
        each_key(
            "$1::bigint[]",
            f"""SELECT {LINK_COLUMNS}, customer.* FROM customer_account_links l
                     CROSS JOIN LATERAL ({_CUSTOMER_OF_LINK} OFFSET 0) customer
                     WHERE l.account_row_id = wanted.key""",
            "matched.link_id",
        ),
        list(account_row_ids),
    )


async def page_links(
    conn: Queryable,
    org_id: int,
    *,
    limit: int,
    after: int | None,
    before: int | None,
    customer_row_id: int | None = None,
) -> list[asyncpg.Record]:
    """Links in id order (both GET /customers/accounts and GET /customers/{id}/accounts): an
    organization's from links_org_id_id, a customer's from links_customer_row_id."""
    # Nothing else is compared (see keyset.py): `l.org_id = $1` beside a customer's group would let the
    # planner read the organization's links by links_org_id_id and sort them, and the customer's row id
    # was found within the organization (rules/accounts.py).
    args: list[Any] = []
    if customer_row_id is None:
        bound, tail = page_bounds(
            live("l", "org_id"), "l.id", args, group_value=org_id, limit=limit, after=after, before=before
        )
    else:
        bound, tail = page_bounds(
            live("l", "customer_row_id"),
            "l.id",
            args,
            group_value=customer_row_id,
            limit=limit,
            after=after,
            before=before,
        )
    # Grouped by live(...) and `deleted_at IS NULL`: only the links_live_* indexes answer, and they hold
    # no link of a deleted account.
    return await conn.fetch(
        f"""SELECT {LINK_COLUMNS}, customer.* FROM customer_account_links l
            CROSS JOIN LATERAL ({_CUSTOMER_OF_LINK} OFFSET 0) customer
            WHERE {bound} AND l.deleted_at IS NULL {tail}""",
        *args,
    )


# --- lifecycle: DELETE /accounts/{id}, PUT /accounts/{id}/status -----------------------------------


async def lock_live(conn: Conn, org_id: int, account_id: str) -> asyncpg.Record | None:
    """The account's row id and status, locked until the caller's transaction ends; None if deleted."""
    return await conn.fetchrow(
        """SELECT id, account_status FROM accounts
           WHERE org_id = $1 AND account_id = $2 AND deleted_at IS NULL FOR UPDATE""",
        org_id,
        account_id,
    )


async def mark_deleted(conn: Conn, account_row_id: int) -> None:
    """The account and its links, hidden from every route from now on; the rows stay."""
    await conn.execute("UPDATE accounts SET deleted_at = now(), updated_at = now() WHERE id = $1", account_row_id)
    await conn.execute(
        "UPDATE customer_account_links SET deleted_at = now() WHERE account_row_id = $1 AND deleted_at IS NULL",
        account_row_id,
    )


async def set_status(conn: Conn, account_row_id: int, status: str, substatus: str | None) -> None:
    await conn.execute(
        "UPDATE accounts SET account_status = $2, account_substatus = $3, updated_at = now() WHERE id = $1",
        account_row_id,
        status,
        substatus,
    )
