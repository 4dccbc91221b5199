"""SQL for accounts, the customer-account links, and what hangs off them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from canopy_svc.core.dbtypes import Conn, Queryable
from canopy_svc.store.conflicts import conflict_for
from canopy_svc.store.customers import SEARCH_TERM_LENGTH, prefix_query, qualified_columns
from canopy_svc.store.keyset import each_key, page_bounds

CUSTOMER_COLUMNS = qualified_columns("c")

ACCOUNT_COLUMNS = """a.id, a.account_id, p.product_id, a.external_account_id, a.account_status,
    a.credit_limit_cents, a.effective_at, a.created_at, a.updated_at"""
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
    external_account_id: str | None,
    credit_limit_cents: int | None,
    effective_at: Any,
) -> int:
    try:
        row_id: int = await conn.fetchval(
            """INSERT INTO accounts (org_id, account_id, product_row_id, external_account_id,
                   credit_limit_cents, effective_at)
               VALUES ($1, $2, $3, $4, $5, coalesce($6, now())) RETURNING id""",
            org_id,
            account_id,
            product_row_id,
            external_account_id,
            credit_limit_cents,
            effective_at,
        )
    except asyncpg.UniqueViolationError as exc:
        raise conflict_for(exc, account_id=account_id, external_account_id=external_account_id) from None
    return row_id


async def find_row_ids(conn: Conn, org_id: int, account_ids: Sequence[str]) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT account_id, id FROM accounts WHERE org_id = $1 AND account_id = ANY($2::text[])",
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
        f"SELECT {ACCOUNT_COLUMNS} FROM {_ACCOUNT_FROM} WHERE a.org_id = $1 AND a.account_id = $2",
        org_id,
        account_id,
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
              AND {alias}.id {beyond} ${position_n}
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
    bound, tail = page_bounds("a.org_id", "a.id", args, group_value=org_id, limit=limit, after=after, before=before)
    return await conn.fetch(f"SELECT {ACCOUNT_COLUMNS} FROM {_ACCOUNT_FROM} WHERE {bound} {tail}", *args)


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
    lock = " FOR UPDATE OF l" if for_update else ""
    return await conn.fetchrow(
        f"""SELECT {LINK_COLUMNS} FROM customer_account_links l
            JOIN accounts a ON a.id = l.account_row_id
            JOIN customers c ON c.id = l.customer_row_id
            WHERE l.org_id = $1 AND a.account_id = $2 AND c.customer_id = $3{lock}""",
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
        page = f"""SELECT {LINK_COLUMNS} FROM customer_account_links l WHERE l.id = ANY(ARRAY(
            {_searched(args, search, pairs, org_id=org_id, limit=limit, after=after, before=before)}))"""
    elif pairs is not None:
        page = _by_pairs(
            f"SELECT {LINK_COLUMNS} FROM customer_account_links l", "l", group, "link_id", args, pairs,
            owner_value=group_value, limit=limit, after=after, before=before,
        )  # fmt: skip
    else:
        bound, tail = page_bounds(group, "l.id", args, group_value=group_value, limit=limit, after=after, before=before)
        page = f"SELECT {LINK_COLUMNS} FROM customer_account_links l WHERE {bound} {tail}"
    return await conn.fetch(
        f"""SELECT l.*, customer.* FROM ({page}) l
            CROSS JOIN LATERAL ({_CUSTOMER_OF_LINK} OFFSET 0) customer
            ORDER BY l.link_id {direction}""",
        *args,
    )
