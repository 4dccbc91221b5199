"""Products: creating them, and answering them."""

from __future__ import annotations

import datetime
from typing import Any

import asyncpg
import msgspec

from canopy_svc.core.dbtypes import Conn, Queryable, Row
from canopy_svc.rules.cursors import CursorCodec
from canopy_svc.rules.ids import base62_id
from canopy_svc.rules.paging import PageRequest, keyset_page
from canopy_svc.rules.validation import BodyDecoder
from canopy_svc.store import products as product_store
from canopy_svc.wire.errors import ErrorDetail, InvalidInput, NotFound, detail
from canopy_svc.wire.models import (
    EFFECTIVE_YEARS,
    PostPromotionalPolicies,
    Product,
    ProductCreate,
    ProductLifecyclePolicies,
    ProductList,
    ProductOverview,
    PromotionalPolicies,
)

PRODUCT_DECODER = BodyDecoder(ProductCreate)
# Each policy column and the Struct its JSON holds.
POLICY_TYPES: dict[str, type[msgspec.Struct]] = {
    "product_lifecycle_policies": ProductLifecyclePolicies,
    "promotional_policies": PromotionalPolicies,
    "post_promotional_policies": PostPromotionalPolicies,
}
_POLICY_DECODERS = {column: msgspec.json.Decoder(model) for column, model in POLICY_TYPES.items()}
_encoder = msgspec.json.Encoder()


def parse_product(body: bytes) -> ProductCreate:
    payload = PRODUCT_DECODER.decode(body)
    if problems := effective_year_problems(payload.effective_at):
        raise InvalidInput(problems)
    return payload


def effective_year_problems(effective_at: datetime.datetime | None) -> list[ErrorDetail]:
    """effective_at outside EFFECTIVE_YEARS: year 1 or 9999 with an offset is outside datetime's range
    in UTC, so stored, it could not be read back."""
    first, last = EFFECTIVE_YEARS
    if effective_at is None or first <= effective_at.year <= last:
        return []
    message = f"must be a date-time in the years {first} to {last}"
    return [detail("/effective_at", "format", {"format": "date-time"}, message)]


def policy_json(policy: msgspec.Struct | None) -> str | None:
    return None if policy is None else _encoder.encode(policy).decode()


def policies_of(record: Row) -> dict[str, Any]:
    """The policy columns of a product row as their Structs (None where the product has none)."""
    return {
        column: None if record[column] is None else _POLICY_DECODERS[column].decode(record[column])
        for column in POLICY_TYPES
    }


def product_from_record(record: Row) -> Product:
    return Product(
        product_id=record["product_id"],
        product_overview=ProductOverview(
            product_name=record["product_name"],
            product_type=record["product_type"],
            product_short_description=record["product_short_description"],
            product_long_description=record["product_long_description"],
            product_color=record["product_color"],
        ),
        created_at=record["created_at"],
        external_product_id=record["external_product_id"],
        effective_at=record["effective_at"],
        **policies_of(record),
    )


async def create_product(conn: Conn, org_id: int, payload: ProductCreate) -> Product:
    overview = payload.product_overview
    record = await product_store.insert(
        conn,
        org_id,
        payload.product_id or base62_id(24),
        name=overview.product_name,
        product_type=overview.product_type,
        short_description=overview.product_short_description,
        long_description=overview.product_long_description,
        color=overview.product_color,
        external_product_id=payload.external_product_id,
        effective_at=payload.effective_at,
        policies={column: policy_json(getattr(payload, column)) for column in POLICY_TYPES},
    )
    return product_from_record(record)


async def get_product(conn: Queryable, org_id: int, product_id: str) -> Product:
    record = await product_store.fetch(conn, org_id, product_id)
    if record is None:
        raise NotFound(f"No product found with the provided product_id: {product_id}")
    return product_from_record(record)


async def list_products(conn: Queryable, org_id: int, cursors: CursorCodec, page: PageRequest) -> ProductList:
    async def fetch(limit: int, after: int | None, before: int | None) -> list[asyncpg.Record]:
        return await product_store.page(conn, org_id, limit=limit, after=after, before=before)

    records, paging = await keyset_page(cursors, org_id, "products", page, fetch)
    return ProductList(results=[product_from_record(r) for r in records], paging=paging)
