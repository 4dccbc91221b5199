"""SQL for the LoanPro face: its integer ids beside the Canopy ones, and the nested entities the
customers table does not hold (loanpro_entities). Every statement is scoped by org_id."""

from __future__ import annotations

import asyncpg

from canopy_svc.core.dbtypes import Conn, Queryable
from canopy_svc.store.customers import _SEARCH_TERM, COLUMN_NAMES, COLUMNS, MATCHES_SHOWN, prefix_query


async def instance_id(conn: Queryable, org_id: int) -> int:
    value: int | None = await conn.fetchval("SELECT loanpro_instance_id FROM organizations WHERE id = $1", org_id)
    assert value is not None
    return value


async def instance_id_by_name(conn: Queryable, name: str) -> int | None:
    value: int | None = await conn.fetchval("SELECT loanpro_instance_id FROM organizations WHERE name = $1", name)
    return value


async def customer_id_of(conn: Queryable, org_id: int, loanpro_id: int) -> str | None:
    """The Canopy customer_id of the organization's customer with this LoanPro id."""
    value: str | None = await conn.fetchval(
        "SELECT customer_id FROM customers WHERE org_id = $1 AND loanpro_id = $2 AND loanpro_deleted_at IS NULL",
        org_id,
        loanpro_id,
    )
    return value


async def loanpro_ids(conn: Queryable, org_id: int, customer_ids: list[str]) -> dict[str, tuple[int, int]]:
    """customer_id -> (LoanPro id, row id), for the organization's customers among `customer_ids`."""
    rows = await conn.fetch(
        "SELECT customer_id, loanpro_id, id FROM customers WHERE org_id = $1 AND customer_id = ANY($2::text[])",
        org_id,
        customer_ids,
    )
    return {row["customer_id"]: (row["loanpro_id"], row["id"]) for row in rows}


async def page(conn: Queryable, org_id: int, *, offset: int, limit: int | None) -> tuple[list[asyncpg.Record], int]:
    """LoanPro's offset paging ($skip, $top), oldest first, and the total. The LoanPro id is added to
    the Canopy columns as `loanpro_id`."""
    rows = await conn.fetch(
        f"""SELECT {COLUMNS}, loanpro_id FROM customers WHERE org_id = $1 AND loanpro_deleted_at IS NULL
            ORDER BY id OFFSET $2 LIMIT $3""",
        org_id,
        offset,
        limit,
    )
    total: int = await conn.fetchval(
        "SELECT count(*) FROM customers WHERE org_id = $1 AND loanpro_deleted_at IS NULL", org_id
    )
    return list(rows), total


async def entities(conn: Queryable, org_id: int, customer_row_id: int) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT nav, item_id, body_encrypted FROM loanpro_entities
               WHERE org_id = $1 AND customer_row_id = $2 ORDER BY id""",
            org_id,
            customer_row_id,
        )
    )


async def insert_entity(
    conn: Conn, org_id: int, customer_row_id: int, nav: str, body: bytes, match_hash: bytes | None = None
) -> int:
    item_id: int = await conn.fetchval(
        """INSERT INTO loanpro_entities (org_id, customer_row_id, nav, body_encrypted, match_hash)
           VALUES ($1, $2, $3, $4, $5) RETURNING item_id""",
        org_id,
        customer_row_id,
        nav,
        body,
        match_hash,
    )
    return item_id


async def update_entity(
    conn: Conn,
    org_id: int,
    customer_row_id: int,
    nav: str,
    item_id: int,
    body: bytes,
    match_hash: bytes | None = None,
) -> bool:
    status: str = await conn.execute(
        """UPDATE loanpro_entities SET body_encrypted = $5, match_hash = $6
           WHERE org_id = $1 AND customer_row_id = $2 AND nav = $3 AND item_id = $4""",
        org_id,
        customer_row_id,
        nav,
        item_id,
        body,
        match_hash,
    )
    return status == "UPDATE 1"


# The organization's policy and the (live) customers with an item of a hash, in one statement; no
# matches are read under `off`. $5, a phone (E.164) or null: also the customers whose primary phone
# it is, by customers_dup_phone_at, the limit hidden from the planner as store/customers.py hides its.
_NESTED_MATCHES_SQL = f"""\
WITH policy AS (SELECT duplicate_customer_policy AS value FROM organizations WHERE id = $1)
SELECT (SELECT value FROM policy) AS policy,
       ARRAY(SELECT c.customer_id FROM loanpro_entities e JOIN customers c ON c.id = e.customer_row_id
             WHERE e.org_id = $1 AND e.nav = $2 AND e.match_hash = $3 AND e.customer_row_id <> $4
               AND c.loanpro_deleted_at IS NULL AND (SELECT value FROM policy) <> 'off'
             ORDER BY e.created_at, e.id LIMIT {MATCHES_SHOWN}) AS in_items,
       ARRAY(SELECT customer_id FROM customers
             WHERE org_id = $1 AND phone_number = $5::text AND id <> $4 AND loanpro_deleted_at IS NULL
               AND (SELECT value FROM policy) <> 'off'
             ORDER BY created_at LIMIT {MATCHES_SHOWN}) AS as_primary"""


async def matching_entities(
    conn: Queryable, org_id: int, nav: str, match_hash: bytes, exclude_row_id: int, *, phone: str | None = None
) -> tuple[str, list[str], list[str]]:
    """The organization's duplicate policy; the (live) customers with an item of this hash; and, for a
    `phone`, those whose primary phone it is. One round trip; no customers under `off`."""
    row = await conn.fetchrow(_NESTED_MATCHES_SQL, org_id, nav, match_hash, exclude_row_id, phone)
    assert row is not None  # one row, whatever matched
    return row["policy"], list(row["in_items"]), list(row["as_primary"])


async def delete_entity(conn: Conn, org_id: int, customer_row_id: int, nav: str, item_id: int) -> bool:
    status: str = await conn.execute(
        "DELETE FROM loanpro_entities WHERE org_id = $1 AND customer_row_id = $2 AND nav = $3 AND item_id = $4",
        org_id,
        customer_row_id,
        nav,
        item_id,
    )
    return status == "DELETE 1"


async def soft_delete(conn: Conn, org_id: int, loanpro_id: int) -> str:
    """ "deleted", "missing" (none, or deleted already) or "linked" (on a live account: kept)."""
    row = await conn.fetchrow(
        """SELECT c.id, EXISTS (SELECT 1 FROM customer_account_links l
                                WHERE l.customer_row_id = c.id AND l.deleted_at IS NULL) AS linked
           FROM customers c WHERE c.org_id = $1 AND c.loanpro_id = $2 AND c.loanpro_deleted_at IS NULL
           FOR UPDATE OF c""",
        org_id,
        loanpro_id,
    )
    if row is None:
        return "missing"
    if row["linked"]:
        return "linked"
    await conn.execute("UPDATE customers SET loanpro_deleted_at = now(), updated_at = now() WHERE id = $1", row["id"])
    return "deleted"


async def accounts_of(conn: Queryable, org_id: int, customer_row_id: int) -> list[asyncpg.Record]:
    """The live accounts the customer is on, with their product, in the order it was put on them."""
    return list(
        await conn.fetch(
            """SELECT a.loanpro_id, a.account_id, a.account_status, a.created_at, l.customer_account_role,
                      p.product_name, p.product_type
               FROM customer_account_links l
               JOIN accounts a ON a.id = l.account_row_id
               JOIN products p ON p.id = a.product_row_id
               WHERE l.org_id = $1 AND l.customer_row_id = $2 AND l.deleted_at IS NULL AND a.deleted_at IS NULL
               ORDER BY l.id""",
            org_id,
            customer_row_id,
        )
    )


# Elasticsearch's default count (track_total_hits): LoanPro's search answers its totals up to it.
SEARCH_COUNT_CAP = 10_000
_MATCHES = f"""FROM customer_search_terms t JOIN customers c ON c.id = t.customer_row_id
    WHERE t.org_id = $1 AND t.term = {_SEARCH_TERM} AND c.org_id = $1
      AND c.search_vector @@ to_tsquery('simple', $3) AND c.loanpro_deleted_at IS NULL"""


async def search(
    conn: Queryable, org_id: int, words: list[str], *, offset: int, limit: int
) -> tuple[list[asyncpg.Record], int]:
    """The customers whose names start with every word, over the index the Canopy search walks
    (customer_search_terms, store/customers.py), oldest first; and their count, up to the cap."""
    if not words:
        return await page(conn, org_id, offset=offset, limit=limit)
    args = [org_id, " ".join(words), prefix_query(words)]
    rows = await conn.fetch(
        f"""SELECT {", ".join(f"c.{name}" for name in COLUMN_NAMES)}, c.loanpro_id {_MATCHES}
            ORDER BY t.customer_row_id OFFSET $4 LIMIT $5""",
        *args,
        offset,
        limit,
    )
    total: int = await conn.fetchval(f"SELECT count(*) FROM (SELECT 1 {_MATCHES} LIMIT {SEARCH_COUNT_CAP}) m", *args)
    return list(rows), total
