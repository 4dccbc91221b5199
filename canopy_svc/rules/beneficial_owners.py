"""Beneficial owners of a customer: creating one, reading one, and a customer's list of them."""

from __future__ import annotations

import asyncpg
import msgspec

from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.dbtypes import Conn, Queryable
from canopy_svc.rules.cursors import CursorCodec
from canopy_svc.rules.ids import new_customer_id
from canopy_svc.rules.paging import PageRequest, keyset_page
from canopy_svc.rules.validation import BodyDecoder, decode_customer
from canopy_svc.store import beneficial_owners as store
from canopy_svc.wire.errors import NotFound
from canopy_svc.wire.models import BeneficialOwner, BeneficialOwnerCreate, BeneficialOwnerList

CREATE_DECODER = BodyDecoder(BeneficialOwnerCreate)
beneficial_owner_from_record = store.STORAGE.customer


def parse_create(body: bytes) -> BeneficialOwnerCreate:
    """A person's fields, checked as a customer's are (shape, then E.164, email, dates, zip and state
    by country, SSN groups), every problem in one 422."""
    return decode_customer(body, CREATE_DECODER, with_meaning=True)


def _no_customer(customer_id: str) -> NotFound:
    return NotFound(f"No customer found with the provided customer_id: {customer_id}")


def cursor_kind(customer_row_id: int) -> str:
    """One customer's listing: a cursor from another customer's (or any other listing) is refused."""
    return f"beneficial-owners:{customer_row_id}"


async def create(
    conn: Conn, org_id: int, customer_id: str, payload: BeneficialOwnerCreate, cipher: DataCipher
) -> BeneficialOwner:
    fields = msgspec.structs.asdict(payload)
    # Generated as a customer_id is: 24 characters of base62, never `can_`-prefixed.
    fields["beneficial_owner_id"] = payload.beneficial_owner_id or new_customer_id()
    record = await store.insert(conn, org_id, customer_id, store.STORAGE.row(fields, cipher))
    if record is None:
        raise _no_customer(customer_id)
    return beneficial_owner_from_record(record, cipher, BeneficialOwner)


async def get(
    conn: Queryable, org_id: int, customer_id: str, beneficial_owner_id: str, cipher: DataCipher
) -> BeneficialOwner:
    record = await store.fetch(conn, org_id, customer_id, beneficial_owner_id)
    if record is None:
        raise _no_customer(customer_id)
    if record["id"] is None:
        raise NotFound(f"No beneficial owner found with the provided beneficial_owner_id: {beneficial_owner_id}")
    return beneficial_owner_from_record(record, cipher, BeneficialOwner)


async def list_page(
    conn: Queryable, org_id: int, cursors: CursorCodec, page: PageRequest, customer_id: str, cipher: DataCipher
) -> BeneficialOwnerList:
    """GET /customers/{customer_id}/beneficial_owners: oldest first, paged like every listing."""
    row_id = await store.customer_row_id(conn, org_id, customer_id)
    if row_id is None:
        raise _no_customer(customer_id)

    async def fetch(limit: int, after: int | None, before: int | None) -> list[asyncpg.Record]:
        return await store.page(conn, org_id, row_id, customer_id, limit=limit, after=after, before=before)

    records, paging = await keyset_page(cursors, org_id, cursor_kind(row_id), page, fetch)
    return BeneficialOwnerList(
        results=[beneficial_owner_from_record(r, cipher, BeneficialOwner) for r in records], paging=paging
    )
