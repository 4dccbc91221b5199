"""/customers, and the customer-account links listed under it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api import examples
from canopy_svc.api.openapi import excluding, listing_query
from canopy_svc.api.requests import cipher, cursors, pool, principal
from canopy_svc.api.responses import JSONResponse
from canopy_svc.api.routes.accounts import LISTING_ERRORS, STATUS_FILTER, TYPE_FILTER
from canopy_svc.api.routing import Endpoint
from canopy_svc.api.writes import write
from canopy_svc.core.dbtypes import Conn
from canopy_svc.rules import customer_accounts, customers
from canopy_svc.rules.accounts import AccountFilter
from canopy_svc.rules.customers import MAX_SEARCH_WORDS
from canopy_svc.rules.paging import PageRequest
from canopy_svc.wire import models
from canopy_svc.wire.models import Customer, CustomerCreate, CustomerUpdate

LINKS_DEFAULT_LIMIT = 30


async def create_customer(request: Request) -> Response:
    org_id, data_cipher = principal(request).org_id, cipher(request)

    async def work(conn: Conn, payload: CustomerCreate) -> Customer:
        return await customers.create(conn, org_id, payload, data_cipher)

    # create() makes its own transaction when it needs one
    return await write(request, customers.parse_create, work, atomic=False)


async def update_customer(request: Request) -> Response:
    org_id, customer_id = principal(request).org_id, request.path_params["customer_id"]
    data_cipher = cipher(request)

    async def work(conn: Conn, patch: CustomerUpdate) -> Customer:
        return await customers.update(conn, org_id, customer_id, patch, data_cipher)

    return await write(request, customers.parse_update, work)


async def get_customer(request: Request) -> Response:
    customer = await customers.get(
        pool(request), principal(request).org_id, request.path_params["customer_id"], cipher(request)
    )
    return JSONResponse(customer)


async def list_customers(request: Request) -> Response:
    query = request.query_params
    page = await customers.list_page(
        pool(request),
        principal(request).org_id,
        cursors(request),
        PageRequest.from_query(query, default_limit=12),
        customers.search_words(query.get("search_parameters")),
        cipher(request),
    )
    return JSONResponse(page)


async def list_customer_accounts(request: Request) -> Response:
    query = request.query_params
    filters = AccountFilter.from_query(query)
    page = await customer_accounts.list_customer_accounts(
        pool(request),
        principal(request).org_id,
        cursors(request),
        PageRequest.from_query(query, default_limit=12),
        request.path_params["customer_id"],
        cipher(request),
        filters,
    )
    return JSONResponse(page)


async def list_links(request: Request) -> Response:
    query = request.query_params
    filters, search = AccountFilter.from_query(query), customer_accounts.link_search(query)
    page = await customer_accounts.list_links(
        pool(request),
        principal(request).org_id,
        cursors(request),
        PageRequest.from_query(query, default_limit=LINKS_DEFAULT_LIMIT),
        cipher(request),
        filters,
        search,
    )
    return JSONResponse(page)


_ONE = (401, 403, 404, 429, 500, 503)  # the errors of an operation on one customer
_LINK_SEARCH_WORDS = (
    f"At most {MAX_SEARCH_WORDS} words (runs of letters and digits), each matched at the start of the "
    "customer's names or business name, the account's id or the product's name"
)
_WRITE = (401, 403, 404, 409, 429, 500, 503)

endpoints = [
    Endpoint(
        "POST",
        "/customers",
        create_customer,
        "Create a customer",
        models.Customer,
        models.CustomerCreate,
        errors=_WRITE,
        example=examples.CUSTOMER,
    ),
    Endpoint(
        "GET",
        "/customers",
        list_customers,
        "List customers, oldest first",
        models.CustomerList,
        query=listing_query(
            search_parameters={
                "type": "string",
                "description": (
                    f"At most {MAX_SEARCH_WORDS} words (runs of letters and digits), "
                    "each matched at the start of names and business names"
                ),
            }
        ),
    ),
    Endpoint("GET", "/customers/{customer_id}", get_customer, "Get a customer", models.Customer, errors=_ONE),
    Endpoint(
        "PUT",
        "/customers/{customer_id}",
        update_customer,
        "Update a customer",
        models.Customer,
        models.CustomerUpdate,
        errors=_WRITE,
        example=examples.CUSTOMER_UPDATE,
    ),
    Endpoint(
        "PATCH",
        "/customers/{customer_id}",
        update_customer,
        "Update a customer (same as PUT)",
        models.Customer,
        models.CustomerUpdate,
        errors=_WRITE,
        example=examples.CUSTOMER_UPDATE,
    ),
    Endpoint(
        "GET",
        "/customers/{customer_id}/accounts",
        list_customer_accounts,
        "The accounts a customer is on",
        models.AccountList,
        query=listing_query(account_status=STATUS_FILTER, product_type=TYPE_FILTER),
        errors=(*_ONE, 422),
    ),
    Endpoint(
        "GET",
        "/customers/accounts",
        list_links,
        f"Every customer-account link (default limit {LINKS_DEFAULT_LIMIT})",
        models.CustomerAccountLinkList,
        query=excluding(
            listing_query(
                default_limit=LINKS_DEFAULT_LIMIT,
                search_parameters={"type": "string", "description": _LINK_SEARCH_WORDS},
                search_parameter={"type": "string", "description": "The same as search_parameters (Canopy's clients)"},
                account_status=STATUS_FILTER,
                product_type=TYPE_FILTER,
            ),
            "search_parameters",
            "search_parameter",
        ),
        errors=LISTING_ERRORS,
    ),
]
