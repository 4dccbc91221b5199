"""SQL for products."""

from __future__ import annotations

import datetime
from typing import Any

import asyncpg

from canopy_svc.core.dbtypes import Conn, Queryable
from canopy_svc.store.conflicts import conflict_for
from canopy_svc.store.keyset import page_bounds

# The policies as text: rules/products.py decodes them into their Structs.
COLUMNS = """id, product_id, product_name, product_type, product_short_description,
    product_long_description, product_color, external_product_id, coalesce(effective_at, created_at) AS effective_at,
    product_lifecycle_policies::text AS product_lifecycle_policies, promotional_policies::text AS promotional_policies,
    post_promotional_policies::text AS post_promotional_policies, created_at"""


async def insert(
    conn: Conn,
    org_id: int,
    product_id: str,
    *,
    name: str,
    product_type: str,
    short_description: str | None,
    long_description: str | None,
    color: str | None,
    external_product_id: str | None,
    effective_at: datetime.datetime | None,
    policies: dict[str, str | None],
) -> asyncpg.Record:
    """`policies`: each policy column's JSON text (or None), by column name."""
    try:
        record = await conn.fetchrow(
            f"""INSERT INTO products (org_id, product_id, product_name, product_type,
                    product_short_description, product_long_description, product_color, external_product_id,
                    effective_at, product_lifecycle_policies, promotional_policies, post_promotional_policies)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, coalesce($9, now()), $10::jsonb, $11::jsonb, $12::jsonb)
                RETURNING {COLUMNS}""",
            org_id,
            product_id,
            name,
            product_type,
            short_description,
            long_description,
            color,
            external_product_id,
            effective_at,
            policies["product_lifecycle_policies"],
            policies["promotional_policies"],
            policies["post_promotional_policies"],
        )
    except asyncpg.UniqueViolationError as exc:
        raise conflict_for(exc, product_id=product_id, external_product_id=external_product_id) from None
    assert record is not None
    return record


async def fetch(conn: Queryable, org_id: int, product_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM products WHERE org_id = $1 AND product_id = $2", org_id, product_id
    )


async def fetch_by_reference(
    conn: Queryable, org_id: int, product_id: str | None, external_product_id: str | None
) -> asyncpg.Record | None:
    """The product named by its id, its external id, or both (then both must name it). One statement
    per case: `$2 IS NULL OR ...` in a generic plan could use neither unique index."""
    if external_product_id is None:
        return None if product_id is None else await fetch(conn, org_id, product_id)
    record = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM products WHERE org_id = $1 AND external_product_id = $2", org_id, external_product_id
    )
    if record is not None and product_id is not None and record["product_id"] != product_id:
        return None
    return record


async def page(
    conn: Queryable, org_id: int, *, limit: int, after: int | None, before: int | None
) -> list[asyncpg.Record]:
    args: list[Any] = []
    bound, tail = page_bounds("org_id", "id", args, group_value=org_id, limit=limit, after=after, before=before)
    return await conn.fetch(f"SELECT {COLUMNS} FROM products WHERE {bound} {tail}", *args)
