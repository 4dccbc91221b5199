"""/customers."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api.body import read_json_body
from canopy_svc.api.requests import cursors, pool, principal
from canopy_svc.api.responses import JSONResponse
from canopy_svc.api.routing import by_method
from canopy_svc.rules import customers


async def create_customer(request: Request) -> Response:
    payload = customers.parse_create(await read_json_body(request))
    org_id = principal(request).org_id
    async with pool(request).acquire() as conn, conn.transaction():
        customer = await customers.create(conn, org_id, payload)
    return JSONResponse(customer)


async def get_customer(request: Request) -> Response:
    customer = await customers.get(pool(request), principal(request).org_id,
                                   request.path_params["customer_id"])
    return JSONResponse(customer)


async def update_customer(request: Request) -> Response:
    patch = customers.parse_update(await read_json_body(request))
    org_id = principal(request).org_id
    async with pool(request).acquire() as conn, conn.transaction():
        customer = await customers.update(conn, org_id, request.path_params["customer_id"], patch)
    return JSONResponse(customer)


async def list_customers(request: Request) -> Response:
    query = request.query_params
    page = await customers.list_page(
        pool(request), principal(request).org_id, cursors(request),
        limit=customers.clamp_limit(query.get("limit"), default=12),
        starting_after=query.get("starting_after"),
        ending_before=query.get("ending_before"),
        search=customers.search_words(query.get("search_parameters")),
    )
    return JSONResponse(page)


routes = [
    by_method("/customers", GET=list_customers, POST=create_customer),
    by_method("/customers/{customer_id}", GET=get_customer, PUT=update_customer, PATCH=update_customer),
]
