"""/products, /accounts, and the cards of an account's customers."""

from __future__ import annotations

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api.phased_writes import Phases, write_in_phases
from canopy_svc.api.requests import cipher, cursors, pool, principal
from canopy_svc.api.responses import JSONResponse
from canopy_svc.api.routing import by_method
from canopy_svc.api.writes import write
from canopy_svc.issuers.gateway import CardGateway
from canopy_svc.rules import accounts, cards, products
from canopy_svc.rules.models import Account, CardDetails, Product
from canopy_svc.rules.paging import PageRequest


async def create_product(request: Request) -> Response:
    org_id = principal(request).org_id

    async def work(conn: asyncpg.Connection, body: bytes) -> Product:
        return await products.create_product(conn, org_id, products.PRODUCT_DECODER.decode(body))

    return await write(request, work)


async def get_product(request: Request) -> Response:
    product = await products.get_product(pool(request), principal(request).org_id, request.path_params["product_id"])
    return JSONResponse(product)


async def list_products(request: Request) -> Response:
    page = await products.list_products(pool(request), principal(request).org_id, cursors(request),
                                        PageRequest.from_query(request.query_params, default_limit=12))
    return JSONResponse(page)


async def create_account(request: Request) -> Response:
    org_id, data_cipher = principal(request).org_id, cipher(request)

    async def work(conn: asyncpg.Connection, body: bytes) -> Account:
        return await accounts.create_account(conn, org_id, accounts.parse_account(body), data_cipher)

    return await write(request, work)


async def get_account(request: Request) -> Response:
    account = await accounts.get_account(pool(request), principal(request).org_id, request.path_params["account_id"],
                                         cipher(request))
    return JSONResponse(account)


async def list_accounts(request: Request) -> Response:
    page = await accounts.list_accounts(pool(request), principal(request).org_id, cursors(request),
                                        PageRequest.from_query(request.query_params, default_limit=12),
                                        cipher(request))
    return JSONResponse(page)


async def issue_card(request: Request) -> Response:
    org_id = principal(request).org_id
    account_id, customer_id = request.path_params["account_id"], request.path_params["customer_id"]

    async def work(conn: asyncpg.Connection, body: bytes) -> CardDetails:
        return await cards.issue_card(conn, org_id, account_id, customer_id, cards.CARD_CREATE_DECODER.decode(body))

    return await write(request, work)


async def update_card(request: Request) -> Response:
    """Changes the card at Lithic in phases (api/phased_writes.py): no lock is held across the call."""
    org_id = principal(request).org_id
    account_id, customer_id = request.path_params["account_id"], request.path_params["customer_id"]
    gateway: CardGateway = request.app.state.card_gateway
    lease_seconds: float = request.app.state.settings.card_lease_seconds

    async def begin(conn: asyncpg.Connection, body: bytes) -> cards.CardChange:
        change = cards.CARD_UPDATE_DECODER.decode(body)
        return await cards.begin_card_change(conn, org_id, account_id, customer_id, change, gateway,
                                             lease_seconds=lease_seconds)

    return await write_in_phases(request, Phases(
        begin=begin, done=lambda change: change.done, call=cards.send_card_change, finish=cards.finish_card_change,
        abandon=cards.abandon_card_change, lease_seconds=lease_seconds,
    ))


routes = [
    by_method("/products", GET=list_products, POST=create_product),
    by_method("/products/{product_id:id}", GET=get_product),
    by_method("/accounts", GET=list_accounts, POST=create_account),
    by_method("/accounts/{account_id:id}", GET=get_account),
    by_method("/accounts/{account_id:id}/customers/{customer_id:id}/cards", POST=issue_card, PUT=update_card),
]
