"""SQL for the beneficial_owners table. Every statement is scoped by org_id, and reaches an owner only
through its customer, found by (org_id, customer_id).

The columns follow from the wire types as the customer's do (customer_columns.derive): each field of
`BeneficialOwner` is the column of its name, the SSN is kept as a customer's is, and a request writes
the fields `BeneficialOwnerCreate` has too. `customer_id` is the customer's, answered from the path's
id (every statement matched it exactly), not stored twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from canopy_svc.core.dbtypes import Conn, Queryable
from canopy_svc.store.conflicts import conflict_for
from canopy_svc.store.customer_columns import EncryptedSsn, derive
from canopy_svc.store.keyset import page_bounds
from canopy_svc.wire.models import BeneficialOwner, BeneficialOwnerCreate

STORAGE = derive(
    BeneficialOwner,
    BeneficialOwnerCreate,
    {"ssn": EncryptedSsn(encrypted="ssn_encrypted", lookup_hash="ssn_hash")},
)
WRITABLE = STORAGE.writable
# Answered, but no column of the table.
_FROM_THE_CUSTOMER = "customer_id"


def _answer_columns(alias: str, customer_id: str) -> str:
    """The answer's columns over `alias`, with `customer_id` (a parameter reference) as the customer's id."""
    return ", ".join(
        f"{customer_id}::text AS customer_id" if name == _FROM_THE_CUSTOMER else f"{alias}.{name}"
        for name in ("id", *STORAGE.read)
    )


_CUSTOMER_ROW = "SELECT c.id, c.org_id FROM customers c WHERE c.org_id = $1 AND c.customer_id = $2"

# One statement: the owner is written only if the customer is this organization's (no row otherwise).
_INSERT = f"""
    WITH inserted AS (
        INSERT INTO beneficial_owners (org_id, customer_row_id, {", ".join(WRITABLE)})
        SELECT c.org_id, c.id, {", ".join(f"${i}" for i in range(3, len(WRITABLE) + 3))} FROM ({_CUSTOMER_ROW}) c
        RETURNING *
    )
    SELECT {_answer_columns("inserted", "$2")} FROM inserted"""


async def insert(conn: Conn, org_id: int, customer_id: str, row: Mapping[str, Any]) -> asyncpg.Record | None:
    """The new owner, or None when the organization has no such customer; a taken id is 409."""
    try:
        return await conn.fetchrow(_INSERT, org_id, customer_id, *(row.get(c) for c in WRITABLE))
    except asyncpg.UniqueViolationError as exc:
        raise conflict_for(exc, beneficial_owner_id=row.get("beneficial_owner_id")) from None


# The customer's row id (null: no such customer), and the owner's columns (null: no such owner).
_FETCH = f"""
    SELECT c.id AS customer_row_id, {_answer_columns("b", "$2")}
    FROM ({_CUSTOMER_ROW}) c
    LEFT JOIN beneficial_owners b
           ON b.org_id = c.org_id AND b.customer_row_id = c.id AND b.beneficial_owner_id = $3"""


async def fetch(conn: Queryable, org_id: int, customer_id: str, beneficial_owner_id: str) -> asyncpg.Record | None:
    """None when the customer is not the organization's; else a row whose `id` is null when the owner
    is not the customer's."""
    return await conn.fetchrow(_FETCH, org_id, customer_id, beneficial_owner_id)


async def customer_row_id(conn: Queryable, org_id: int, customer_id: str) -> int | None:
    row_id: int | None = await conn.fetchval(
        "SELECT id FROM customers WHERE org_id = $1 AND customer_id = $2", org_id, customer_id
    )
    return row_id


async def page(
    conn: Queryable,
    org_id: int,
    customer_row_id: int,
    customer_id: str,
    *,
    limit: int,
    after: int | None,
    before: int | None,
) -> list[asyncpg.Record]:
    """A customer's owners in id order (see keyset.page_bounds), from beneficial_owners_org_customer_id:
    the customer is compared as a plain equality, so the index's order within it is (org_id, id)."""
    args: list[Any] = [customer_row_id, customer_id]
    bound, tail = page_bounds("b.org_id", "b.id", args, group_value=org_id, limit=limit, after=after, before=before)
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {_answer_columns('b', '$2')} FROM beneficial_owners b WHERE b.customer_row_id = $1 AND {bound} {tail}",
        *args,
    )
    return rows
