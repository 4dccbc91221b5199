"""SQL for accounts, the customer-account links, and what hangs off them."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
import msgspec

from canopy_svc.core.dbtypes import Conn, Queryable
from canopy_svc.store.conflicts import conflict_for
from canopy_svc.store.customers import SEARCH_TERM_LENGTH, prefix_query, qualified_columns
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


async def find_live(conn: Conn, org_id: int, account_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
    """The live accounts among `account_ids`: account_id -> (row id, account_status)."""
    rows = await conn.fetch(
        # FOR SHARE: a delete or a close waits for the links (and cards) this request adds, and closes them.
        """SELECT account_id, id, account_status FROM accounts WHERE org_id = $1 AND account_id = ANY($2::text[])
               AND deleted_at IS NULL FOR SHARE""",
        org_id,
        list(account_ids),
    )
    return {row["account_id"]: (row["id"], row["account_status"]) for row in rows}


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


# (account_status, product_type) pairs a listing is filtered to; None: not filtered.
Pairs = Sequence[tuple[str, str]] | None


def _by_pairs(
    select: str,
    alias: str,
    owner: str,
    key: str,
    args: list[Any],
    pairs: Sequence[tuple[str, str]],
    *,
    owner_value: int,
    limit: int,
    after: int | None,
    before: int | None,
) -> str:
    """`select` (FROM the table as `alias`) filtered to the pairs: one walk of the index on
    (canopy_listing_key(owner, status, type), id) per pair, from the position on, each of at most
    limit+1 rows (the limit hidden from the planner, the key compared through an array: see
    keyset.page_bounds and schema.sql), merged into the limit+1 first in id order. A page reads at most
    limit+1 entries per pair asked for, one descent for a pair with no rows, however many rows the
    organization has."""
    args.extend(
        [owner_value, [status for status, _ in pairs], [kind for _, kind in pairs], before or after or 0, limit + 1]
    )
    owner_n, statuses_n, types_n, position_n, limit_n = range(len(args) - 4, len(args) + 1)
    direction, beyond = ("DESC", "<") if before is not None else ("ASC", ">")
    listing_key = f"canopy_listing_key({owner}, {alias}.account_status, {alias}.product_type)"
    return f"""SELECT matched.* FROM unnest(${statuses_n}::text[], ${types_n}::text[]) AS wanted(status, kind)
        CROSS JOIN LATERAL ({select}
            WHERE {listing_key} = ANY(ARRAY[canopy_listing_key(${owner_n}::bigint, wanted.status, wanted.kind)])
              AND {alias}.id {beyond} ${position_n} AND {alias}.deleted_at IS NULL
            ORDER BY {listing_key} {direction}, {alias}.id {direction}
            LIMIT (SELECT ${limit_n}::int) OFFSET 0) matched
        ORDER BY matched.{key} {direction} LIMIT (SELECT ${limit_n}::int)"""


async def page_accounts(
    conn: Queryable, org_id: int, *, limit: int, after: int | None, before: int | None, pairs: Pairs = None
) -> list[asyncpg.Record]:
    args: list[Any] = []
    if pairs is not None:
        sql = _by_pairs(
            f"SELECT {ACCOUNT_COLUMNS} FROM {_ACCOUNT_FROM}", "a", "a.org_id", "id", args, pairs,
            owner_value=org_id, limit=limit, after=after, before=before,
        )  # fmt: skip
        return await conn.fetch(sql, *args)
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


# The search term walked, as store/customers.py picks it: the query's longest word as the text search
# config makes it, cut to the stored prefix length (link_search_terms holds what canopy_search_terms
# makes of a link's search_vector), behind the pair's 'STATUS/TYPE/' when filtered.
_SEARCH_TERM = f"""(SELECT left(word.lexeme, {SEARCH_TERM_LENGTH}) FROM unnest(to_tsvector('simple', $2)) word
                    ORDER BY length(word.lexeme) DESC, word.lexeme LIMIT 1)"""


# A candidate checked by a subquery of its own, not a join: planning a join of the terms with the links,
# the planner reads the links' primary key at both ends (to price a merge join), twice a branch.
_CANDIDATE_MATCHES = """(SELECT candidate.search_vector @@ to_tsquery('simple', $3)
                         FROM customer_account_links candidate
                         WHERE candidate.id = t.link_id AND candidate.org_id = $1)"""


def _searched(
    args: list[Any],
    search: list[str],
    pairs: Pairs,
    *,
    org_id: int,
    limit: int,
    after: int | None,
    before: int | None,
) -> str:
    """The ids of a page of links matching every word of `search`: for each pair (or once, unfiltered)
    the rows of one term in link id order from the position on, each candidate checked against the
    whole query (its search_vector), merged into the limit+1 first. Every match of a one-word search
    is a row of the page, so a page reads its limit+1 entries (per pair) whether the word is shared by
    thousands of links or by one. One branch per pair, each as store/customers.py's search is written:
    as a LATERAL subquery over the pairs, the term (a pair's prefix and the word) was priced as rare and
    its every match sorted."""
    prefixes = [f"{status}/{kind}/" for status, kind in pairs] if pairs is not None else [""]
    args.extend([org_id, " ".join(search), prefix_query(search), before or after or 0, limit + 1, *prefixes])
    direction, beyond = ("DESC", "<") if before is not None else ("ASC", ">")
    branches = [
        f"""(SELECT t.link_id FROM link_search_terms t
             WHERE t.org_id = ANY(ARRAY[$1::bigint]) AND t.term = ${n}::text || {_SEARCH_TERM}
               AND t.link_id {beyond} $4
               AND {_CANDIDATE_MATCHES}
             ORDER BY t.org_id {direction}, t.link_id {direction} LIMIT (SELECT $5::int))"""
        for n in range(6, 6 + len(prefixes))
    ]
    if len(branches) == 1:
        return branches[0]
    return f"""SELECT link_id FROM ({" UNION ALL ".join(branches)}) matched
        ORDER BY link_id {direction} LIMIT (SELECT $5::int)"""


async def page_links(
    conn: Queryable,
    org_id: int,
    *,
    limit: int,
    after: int | None,
    before: int | None,
    customer_row_id: int | None = None,
    pairs: Pairs = None,
    search: list[str] | None = None,
) -> list[asyncpg.Record]:
    """Links in id order (both GET /customers/accounts and GET /customers/{id}/accounts): an
    organization's from links_org_id_id, a customer's from links_customer_row_id; filtered to
    (status, type) pairs from links_*_listing_key_id; searched (an organization's) from
    link_search_terms."""
    # Nothing else is compared (see keyset.py): `l.org_id = $1` beside a customer's group would let the
    # planner read the organization's links by links_org_id_id and sort them, and the customer's row id
    # was found within the organization (rules/accounts.py).
    args: list[Any] = []
    direction = "DESC" if before is not None else "ASC"
    group, group_value = ("l.org_id", org_id) if customer_row_id is None else ("l.customer_row_id", customer_row_id)
    if search:
        assert customer_row_id is None, "only an organization's links are searched"
        # A deleted link has no search terms (schema.sql), so none is found. Not `deleted_at IS NULL`
        # here: the planner then walked a partial index of live links instead of the primary key.
        page = f"""SELECT {LINK_COLUMNS} FROM customer_account_links l WHERE l.id = ANY(ARRAY(
            {_searched(args, search, pairs, org_id=org_id, limit=limit, after=after, before=before)}))"""
    elif pairs is not None:
        page = _by_pairs(
            f"SELECT {LINK_COLUMNS} FROM customer_account_links l", "l", group, "link_id", args, pairs,
            owner_value=group_value, limit=limit, after=after, before=before,
        )  # fmt: skip
    else:
        live_group = live("l", "org_id" if customer_row_id is None else "customer_row_id")
        bound, tail = page_bounds(
            live_group, "l.id", args, group_value=group_value, limit=limit, after=after, before=before
        )
        # Grouped by live(...) and `deleted_at IS NULL`: only the links_live_* indexes answer, and they
        # hold no link of a deleted account.
        page = f"SELECT {LINK_COLUMNS} FROM customer_account_links l WHERE {bound} AND l.deleted_at IS NULL {tail}"
    return await conn.fetch(
        f"""SELECT l.*, customer.* FROM ({page}) l
            CROSS JOIN LATERAL ({_CUSTOMER_OF_LINK} OFFSET 0) customer
            ORDER BY l.link_id {direction}""",
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
