"""SQL for the customers table. Every statement is scoped by org_id."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from canopy_svc.errors import Conflict

# Columns answered for a customer (with "id", the internal row id and paging key).
COLUMN_NAMES = (
    "id", "customer_id", "name_prefix", "name_first", "name_middle", "name_last", "name_suffix",
    "phone_number", "address_line_one", "address_line_two", "address_city", "address_state",
    "address_zip", "address_country_code", "ssn", "international_customer_id", "email",
    "date_of_birth", "business_legal_name", "doing_business_as", "business_ein", "created_at",
    "updated_at",
)  # fmt: skip
COLUMNS = ", ".join(COLUMN_NAMES)


def qualified_columns(alias: str) -> str:
    """The customer's columns (without its row id) for a join, e.g. `c.customer_id, c.name_first`."""
    return ", ".join(f"{alias}.{name}" for name in COLUMN_NAMES if name != "id")

# Columns a request may write (all but ids and timestamps).
WRITABLE = (
    "name_prefix", "name_first", "name_middle", "name_last", "name_suffix", "phone_number",
    "address_line_one", "address_line_two", "address_city", "address_state", "address_zip",
    "address_country_code", "ssn", "international_customer_id", "email", "date_of_birth",
    "business_legal_name", "doing_business_as", "business_ein",
)  # fmt: skip

_INSERT = f"""INSERT INTO customers (org_id, customer_id, {", ".join(WRITABLE)})
    VALUES ({", ".join(f"${i}" for i in range(1, len(WRITABLE) + 3))})
    RETURNING {COLUMNS}"""


async def insert(conn: asyncpg.Connection, org_id: int, customer_id: str,
                 row: Mapping[str, Any]) -> asyncpg.Record:
    try:
        record = await conn.fetchrow(_INSERT, org_id, customer_id, *(row.get(c) for c in WRITABLE))
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "customers_org_customer_id_key":
            raise Conflict(f"A customer with customer_id '{customer_id}' already exists") from None
        raise
    assert record is not None
    return record


async def fetch(conn: asyncpg.Connection | asyncpg.Pool, org_id: int, customer_id: str,
                *, for_update: bool = False) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM customers WHERE org_id = $1 AND customer_id = $2{lock}", org_id, customer_id
    )


async def update(conn: asyncpg.Connection, row_id: int, changes: Mapping[str, Any]) -> asyncpg.Record:
    names = [name for name in changes if name in WRITABLE]
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=2))
    record = await conn.fetchrow(
        f"UPDATE customers SET {assignments}{', ' if names else ''}updated_at = now() "
        f"WHERE id = $1 RETURNING {COLUMNS}",
        row_id, *(changes[name] for name in names),
    )
    assert record is not None
    return record


def prefix_query(words: list[str]) -> str:
    """`umbrella corp` -> 'umbrella':* & 'corp':* (every word must match some name at its start)."""
    return " & ".join(f"'{word}':*" for word in words)


async def page(conn: asyncpg.Connection | asyncpg.Pool, org_id: int, *, limit: int,
               after: int | None = None, before: int | None = None,
               search: list[str] | None = None) -> list[asyncpg.Record]:
    """Up to limit+1 rows in id order from the keyset position (the extra row says has_more).

    Going backwards (`before`) reads in descending order; the caller reverses.
    """
    conditions = ["org_id = $1"]
    args: list[Any] = [org_id]
    if after is not None:
        args.append(after)
        conditions.append(f"id > ${len(args)}")
    if before is not None:
        args.append(before)
        conditions.append(f"id < ${len(args)}")
    if search:
        args.append(prefix_query(search))
        conditions.append(f"search_vector @@ to_tsquery('simple', ${len(args)})")
    args.append(limit + 1)
    order = "DESC" if before is not None else "ASC"
    return await conn.fetch(
        f"SELECT {COLUMNS} FROM customers WHERE {' AND '.join(conditions)} "
        f"ORDER BY id {order} LIMIT ${len(args)}",
        *args,
    )


async def find_row_ids(conn: asyncpg.Connection, org_id: int, customer_ids: list[str]) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT customer_id, id FROM customers WHERE org_id = $1 AND customer_id = ANY($2::text[])",
        org_id, customer_ids,
    )
    return {row["customer_id"]: row["id"] for row in rows}
