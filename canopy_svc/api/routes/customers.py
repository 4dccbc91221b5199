"""/customers."""

from __future__ import annotations

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api.requests import cipher, cursors, pool, principal
from canopy_svc.api.responses import JSONResponse
from canopy_svc.api.routing import by_method
from canopy_svc.api.writes import write
from canopy_svc.rules import customer_accounts, customers
from canopy_svc.rules.models import Customer
from canopy_svc.rules.paging import PageRequest


async def create_customer(request: Request) -> Response:
    org_id, data_cipher = principal(request).org_id, cipher(request)

    async def work(conn: asyncpg.Connection, body: bytes) -> Customer:
        return await customers.create(conn, org_id, customers.parse_create(body), data_cipher)

    return await write(request, work, atomic=False)  # create() makes its own transaction when it needs one


async def update_customer(request: Request) -> Response:
    org_id, customer_id = principal(request).org_id, request.path_params["customer_id"]
    data_cipher = cipher(request)

    async def work(conn: asyncpg.Connection, body: bytes) -> Customer:
        return await customers.update(conn, org_id, customer_id, customers.parse_update(body), data_cipher)

    return await write(request, work)


async def get_customer(request: Request) -> Response:
    customer = await customers.get(pool(request), principal(request).org_id, request.path_params["customer_id"],
                                   cipher(request))
    return JSONResponse(customer)


async def list_customers(request: Request) -> Response:
    query = request.query_params
    page = await customers.list_page(
        pool(request), principal(request).org_id, cursors(request),
        PageRequest.from_query(query, default_limit=12),
        customers.search_words(query.get("search_parameters")), cipher(request),
    )
    return JSONResponse(page)


async def list_customer_accounts(request: Request) -> Response:
    page = await customer_accounts.list_customer_accounts(
        pool(request), principal(request).org_id, cursors(request),
        PageRequest.from_query(request.query_params, default_limit=12), request.path_params["customer_id"],
        cipher(request),
    )
    return JSONResponse(page)


async def list_links(request: Request) -> Response:
    page = await customer_accounts.list_links(
        pool(request), principal(request).org_id, cursors(request),
        PageRequest.from_query(request.query_params, default_limit=30), cipher(request),
    )
    return JSONResponse(page)


routes = [
    by_method("/customers", GET=list_customers, POST=create_customer),
    # Before /customers/{customer_id:id}: "accounts" is not a customer id here.
    by_method("/customers/accounts", GET=list_links),
    by_method("/customers/{customer_id:id}", GET=get_customer, PUT=update_customer, PATCH=update_customer),
    by_method("/customers/{customer_id:id}/accounts", GET=list_customer_accounts),
]
