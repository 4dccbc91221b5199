"""/products."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api import examples
from canopy_svc.api.openapi import listing_query
from canopy_svc.api.requests import cursors, pool, principal
from canopy_svc.api.responses import JSONResponse
from canopy_svc.api.routing import Endpoint
from canopy_svc.api.writes import write
from canopy_svc.core.dbtypes import Conn
from canopy_svc.rules import products
from canopy_svc.rules.paging import PageRequest
from canopy_svc.wire import models
from canopy_svc.wire.models import Product, ProductCreate


async def create_product(request: Request) -> Response:
    org_id = principal(request).org_id

    async def work(conn: Conn, payload: ProductCreate) -> Product:
        return await products.create_product(conn, org_id, payload)

    return await write(request, products.parse_product, work)


async def get_product(request: Request) -> Response:
    product = await products.get_product(pool(request), principal(request).org_id, request.path_params["product_id"])
    return JSONResponse(product)


async def list_products(request: Request) -> Response:
    page = await products.list_products(
        pool(request),
        principal(request).org_id,
        cursors(request),
        PageRequest.from_query(request.query_params, default_limit=12),
    )
    return JSONResponse(page)


endpoints = [
    Endpoint(
        "POST",
        "/products",
        create_product,
        "Create a product",
        models.Product,
        models.ProductCreate,
        errors=(401, 403, 409, 429, 500, 503),
        example=examples.PRODUCT,
    ),
    Endpoint("GET", "/products", list_products, "List products", models.ProductList, query=listing_query()),
    Endpoint(
        "GET",
        "/products/{product_id}",
        get_product,
        "Get a product",
        models.Product,
        errors=(401, 403, 404, 429, 500, 503),
    ),
]
