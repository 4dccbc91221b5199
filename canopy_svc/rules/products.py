"""Products: creating them, and answering them."""

from __future__ import annotations

import asyncpg

from canopy_svc.core.dbtypes import Conn, Queryable, Row
from canopy_svc.rules.cursors import CursorCodec
from canopy_svc.rules.ids import base62_id
from canopy_svc.rules.paging import PageRequest, keyset_page
from canopy_svc.rules.validation import BodyDecoder
from canopy_svc.store import products as product_store
from canopy_svc.wire.errors import NotFound
from canopy_svc.wire.models import Product, ProductCreate, ProductList, ProductOverview

PRODUCT_DECODER = BodyDecoder(ProductCreate)


def product_from_record(record: Row) -> Product:
    return Product(
        product_id=record["product_id"],
        product_overview=ProductOverview(
            product_name=record["product_name"],
            product_type=record["product_type"],
            product_short_description=record["product_short_description"],
            product_long_description=record["product_long_description"],
        ),
        created_at=record["created_at"],
    )


async def create_product(conn: Conn, org_id: int, payload: ProductCreate) -> Product:
    overview = payload.product_overview
    record = await product_store.insert(
        conn,
        org_id,
        payload.product_id or base62_id(24),
        overview.product_name,
        overview.product_type,
        overview.product_short_description,
        overview.product_long_description,
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
