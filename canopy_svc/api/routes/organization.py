"""/organization: the calling organization's own settings."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api import examples
from canopy_svc.api.requests import cipher, pool, principal, resources
from canopy_svc.api.responses import JSONResponse
from canopy_svc.api.routing import Endpoint
from canopy_svc.api.writes import write
from canopy_svc.core.dbtypes import Conn
from canopy_svc.rules import organization
from canopy_svc.wire import models
from canopy_svc.wire.models import (
    IssuerProcessors,
    IssuerProcessorsUpdate,
    OrganizationSettings,
    OrganizationSettingsUpdate,
)


async def put_issuer_processors(request: Request) -> Response:
    org_id, data_cipher = principal(request).org_id, cipher(request)
    hosts = resources(request).lithic_hosts

    async def work(conn: Conn, payload: IssuerProcessorsUpdate) -> IssuerProcessors:
        return await organization.set_issuer_processors(conn, org_id, payload, data_cipher)

    return await write(request, lambda body: organization.parse_issuer_processors(body, hosts), work)


async def get_issuer_processors(request: Request) -> Response:
    return JSONResponse(await organization.get_issuer_processors(pool(request), principal(request).org_id))


async def put_settings(request: Request) -> Response:
    org_id = principal(request).org_id

    async def work(conn: Conn, payload: OrganizationSettingsUpdate) -> OrganizationSettings:
        return await organization.update_settings(conn, org_id, payload)

    return await write(request, organization.SETTINGS_DECODER.decode, work)


async def get_settings(request: Request) -> Response:
    return JSONResponse(await organization.get_settings(pool(request), principal(request).org_id))


endpoints = [
    Endpoint(
        "GET",
        "/organization/issuer_processors",
        get_issuer_processors,
        "The organization's Lithic settings (key masked)",
        models.IssuerProcessors,
    ),
    Endpoint(
        "PUT",
        "/organization/issuer_processors",
        put_issuer_processors,
        "Set the organization's Lithic key",
        models.IssuerProcessors,
        models.IssuerProcessorsUpdate,
    ),
    Endpoint("GET", "/organization/settings", get_settings, "The organization's settings", models.OrganizationSettings),
    Endpoint(
        "PUT",
        "/organization/settings",
        put_settings,
        "Change the organization's duplicate-customer policy",
        models.OrganizationSettings,
        models.OrganizationSettingsUpdate,
        example=examples.ORGANIZATION_SETTINGS,
    ),
]
