"""/customers/{customer_id}/beneficial_owners: the people who own or control a customer."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api import examples
from canopy_svc.api.openapi import listing_query
from canopy_svc.api.requests import cipher, cursors, pool, principal
from canopy_svc.api.responses import JSONResponse
from canopy_svc.api.routing import Endpoint
from canopy_svc.api.writes import write
from canopy_svc.core.dbtypes import Conn
from canopy_svc.rules import beneficial_owners
from canopy_svc.rules.paging import PageRequest
from canopy_svc.wire import models
from canopy_svc.wire.models import BeneficialOwner, BeneficialOwnerCreate

PATH = "/customers/{customer_id}/beneficial_owners"


async def create_beneficial_owner(request: Request) -> Response:
    org_id, customer_id = principal(request).org_id, request.path_params["customer_id"]
    data_cipher = cipher(request)

    async def work(conn: Conn, payload: BeneficialOwnerCreate) -> BeneficialOwner:
        return await beneficial_owners.create(conn, org_id, customer_id, payload, data_cipher)

    # One statement: it writes the owner only if the customer is there.
    return await write(request, beneficial_owners.parse_create, work, atomic=False)


async def get_beneficial_owner(request: Request) -> Response:
    owner = await beneficial_owners.get(
        pool(request),
        principal(request).org_id,
        request.path_params["customer_id"],
        request.path_params["beneficial_owner_id"],
        cipher(request),
    )
    return JSONResponse(owner)


async def list_beneficial_owners(request: Request) -> Response:
    page = await beneficial_owners.list_page(
        pool(request),
        principal(request).org_id,
        cursors(request),
        PageRequest.from_query(request.query_params, default_limit=12),
        request.path_params["customer_id"],
        cipher(request),
    )
    return JSONResponse(page)


_ONE = (401, 403, 404, 429, 500, 503)
_WRITE = (401, 403, 404, 409, 429, 500, 503)

endpoints = [
    Endpoint(
        "POST",
        PATH,
        create_beneficial_owner,
        "Add a beneficial owner to a customer (created unverified)",
        models.BeneficialOwner,
        models.BeneficialOwnerCreate,
        errors=_WRITE,
        example=examples.BENEFICIAL_OWNER,
    ),
    Endpoint(
        "GET",
        PATH,
        list_beneficial_owners,
        "A customer's beneficial owners, oldest first",
        models.BeneficialOwnerList,
        query=listing_query(),
        errors=_ONE,
    ),
    Endpoint(
        "GET",
        PATH + "/{beneficial_owner_id}",
        get_beneficial_owner,
        "Get a beneficial owner of a customer",
        models.BeneficialOwner,
        errors=_ONE,
    ),
]
