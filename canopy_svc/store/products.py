"""SQL for products."""

from __future__ import annotations

from typing import Any

import asyncpg

from canopy_svc.core.dbtypes import Conn, Queryable
from canopy_svc.store.conflicts import conflict_for
from canopy_svc.store.keyset import page_bounds

COLUMNS = """id, product_id, product_name, product_type, product_short_description,
    product_long_description, created_at"""


async def insert(
    conn: Conn,
    org_id: int,
    product_id: str,
    name: str,
    product_type: str,
    short_description: str | None,
    long_description: str | None,
) -> asyncpg.Record:
    try:
        record = await conn.fetchrow(
            f"""INSERT INTO products (org_id, product_id, product_name, product_type,
                    product_short_description, product_long_description)
                VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}""",
            org_id,
            product_id,
            name,
            product_type,
            short_description,
            long_description,
        )
    except asyncpg.UniqueViolationError as exc:
        raise conflict_for(exc, product_id=product_id) from None
    assert record is not None
    return record


async def fetch(conn: Queryable, org_id: int, product_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM products WHERE org_id = $1 AND product_id = $2", org_id, product_id
    )


async def page(
    conn: Queryable, org_id: int, *, limit: int, after: int | None, before: int | None
) -> list[asyncpg.Record]:
    args: list[Any] = []
    bound, tail = page_bounds("org_id", "id", args, group_value=org_id, limit=limit, after=after, before=before)
    return await conn.fetch(f"SELECT {COLUMNS} FROM products WHERE {bound} {tail}", *args)
