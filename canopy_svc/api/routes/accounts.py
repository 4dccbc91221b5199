"""/accounts."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api import examples
from canopy_svc.api.openapi import comma_list, listing_query
from canopy_svc.api.requests import cipher, cursors, pool, principal
from canopy_svc.api.responses import JSONResponse
from canopy_svc.api.routing import Endpoint
from canopy_svc.api.writes import write
from canopy_svc.core.dbtypes import Conn
from canopy_svc.rules import accounts
from canopy_svc.rules.accounts import ACCOUNT_STATUSES, PRODUCT_TYPES, AccountFilter
from canopy_svc.rules.paging import PageRequest
from canopy_svc.wire import models
from canopy_svc.wire.models import Account, AccountCreate


async def create_account(request: Request) -> Response:
    org_id, data_cipher = principal(request).org_id, cipher(request)

    async def work(conn: Conn, payload: AccountCreate) -> Account:
        return await accounts.create_account(conn, org_id, payload, data_cipher)

    return await write(request, accounts.parse_account, work)


async def get_account(request: Request) -> Response:
    account = await accounts.get_account(
        pool(request), principal(request).org_id, request.path_params["account_id"], cipher(request)
    )
    return JSONResponse(account)


async def list_accounts(request: Request) -> Response:
    query = request.query_params
    filters = AccountFilter.from_query(query)
    page = await accounts.list_accounts(
        pool(request),
        principal(request).org_id,
        cursors(request),
        PageRequest.from_query(query, default_limit=12),
        cipher(request),
        filters,
    )
    return JSONResponse(page)


# The filters of the three account listings (here, GET /customers/accounts and /customers/{id}/accounts).
STATUS_FILTER = comma_list(ACCOUNT_STATUSES, "Only accounts of these statuses (a comma list)")
TYPE_FILTER = comma_list(PRODUCT_TYPES, "Only accounts of products of these types (a comma list)")
LISTING_ERRORS = (401, 403, 422, 429, 500, 503)  # 422: an unknown filter value


endpoints = [
    Endpoint(
        "POST",
        "/accounts",
        create_account,
        "Create an account, optionally with customers",
        models.Account,
        models.AccountCreate,
        errors=(401, 403, 404, 409, 429, 500, 503),
        example=examples.ACCOUNT,
    ),
    Endpoint(
        "GET",
        "/accounts",
        list_accounts,
        "List accounts, oldest first",
        models.AccountList,
        query=listing_query(account_status=STATUS_FILTER, product_type=TYPE_FILTER),
        errors=LISTING_ERRORS,
    ),
    Endpoint(
        "GET",
        "/accounts/{account_id}",
        get_account,
        "Get an account with its customers and cards",
        models.Account,
        errors=(401, 403, 404, 429, 500, 503),
    ),
]
