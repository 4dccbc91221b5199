"""/accounts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api import examples
from canopy_svc.api.card_waits import answer_when_issued
from canopy_svc.api.openapi import comma_list, listing_query
from canopy_svc.api.requests import cipher, cursors, pool, principal, resources
from canopy_svc.api.responses import JSONResponse
from canopy_svc.api.routing import Endpoint
from canopy_svc.api.writes import write
from canopy_svc.core.dbtypes import Conn
from canopy_svc.rules import account_lifecycle, accounts
from canopy_svc.rules.accounts import ACCOUNT_STATUSES, PRODUCT_TYPES, AccountFilter
from canopy_svc.rules.paging import PageRequest
from canopy_svc.wire import models
from canopy_svc.wire.errors import BadRequest
from canopy_svc.wire.models import Account, AccountCreate, AccountDeleted, AccountStatusUpdate


async def create_account(request: Request) -> Response:
    org_id, data_cipher = principal(request).org_id, cipher(request)

    created: list[str] = []  # the account's id, for the answer made again after the card wait

    async def work(conn: Conn, payload: AccountCreate) -> Account:
        account = await accounts.create_account(conn, org_id, payload, data_cipher)
        created.append(account.account_id)
        return account

    async def reread(conn: Conn, _card_ids: Sequence[int]) -> Account:
        return await accounts.get_account(conn, org_id, created[0], data_cipher)

    # Its customers' new cards answered ISSUED when the worker issues them in time (api/card_waits.py).
    return await answer_when_issued(request, lambda: write(request, accounts.parse_account, work), reread)


# Canopy's `?external=true`: the path's id is the account's external_account_id.
EXTERNAL_QUERY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "external": {
            "type": "string",
            "enum": ["true", "false"],
            "default": "false",
            "description": "true: the path's account_id is the account's external_account_id",
        }
    },
}


async def get_account(request: Request) -> Response:
    external = request.query_params.get("external", "false")
    if external not in ("true", "false"):
        raise BadRequest("external must be true or false")
    account = await accounts.get_account(
        pool(request),
        principal(request).org_id,
        request.path_params["account_id"],
        cipher(request),
        external=external == "true",
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


async def delete_account(request: Request) -> Response:
    """Soft-deletes the account; its cards are closed at Lithic by the card worker after the commit."""
    org_id, account_id, data_cipher = principal(request).org_id, request.path_params["account_id"], cipher(request)
    gateway = resources(request).card_gateway

    async def work(conn: Conn, _: None) -> AccountDeleted:
        return await account_lifecycle.delete_account(conn, org_id, account_id, gateway, data_cipher)

    return await write(request, lambda _: None, work, bodyless=True)


async def update_account_status(request: Request) -> Response:
    org_id, account_id, data_cipher = principal(request).org_id, request.path_params["account_id"], cipher(request)
    gateway = resources(request).card_gateway

    async def work(conn: Conn, change: AccountStatusUpdate) -> Account:
        return await account_lifecycle.update_status(conn, org_id, account_id, change, gateway, data_cipher)

    return await write(request, account_lifecycle.parse_status_update, work)


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
        query=EXTERNAL_QUERY,
        errors=(401, 403, 404, 429, 500, 503),
    ),
    Endpoint(
        "DELETE",
        "/accounts/{account_id}",
        delete_account,
        "Delete an account (it then answers 404); its cards are closed at Lithic",
        models.AccountDeleted,
        errors=(401, 403, 404, 429, 500, 503),
    ),
    Endpoint(
        "PUT",
        "/accounts/{account_id}/status",
        update_account_status,
        "Set an account's status; CLOSED is final and closes its cards at Lithic",
        models.Account,
        models.AccountStatusUpdate,
        errors=(401, 403, 404, 409, 429, 500, 503),
        example=examples.ACCOUNT_STATUS,
    ),
]
