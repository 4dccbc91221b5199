"""/organization: the calling organization's own settings."""

from __future__ import annotations

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api.requests import cipher, pool, principal
from canopy_svc.api.responses import JSONResponse
from canopy_svc.api.routing import by_method
from canopy_svc.api.writes import write
from canopy_svc.issuers.hosts import LithicHosts
from canopy_svc.rules import organization
from canopy_svc.rules.models import IssuerProcessors, OrganizationSettings


async def put_issuer_processors(request: Request) -> Response:
    org_id, data_cipher = principal(request).org_id, cipher(request)
    hosts: LithicHosts = request.app.state.lithic_hosts

    async def work(conn: asyncpg.Connection, body: bytes) -> IssuerProcessors:
        payload = organization.ISSUER_PROCESSORS_DECODER.decode(body)
        return await organization.set_issuer_processors(conn, org_id, payload, data_cipher, hosts)

    return await write(request, work)


async def get_issuer_processors(request: Request) -> Response:
    return JSONResponse(await organization.get_issuer_processors(pool(request), principal(request).org_id))


async def put_settings(request: Request) -> Response:
    org_id = principal(request).org_id

    async def work(conn: asyncpg.Connection, body: bytes) -> OrganizationSettings:
        return await organization.update_settings(conn, org_id, organization.SETTINGS_DECODER.decode(body))

    return await write(request, work)


async def get_settings(request: Request) -> Response:
    return JSONResponse(await organization.get_settings(pool(request), principal(request).org_id))


routes = [
    by_method("/organization/settings", GET=get_settings, PUT=put_settings),
    by_method("/organization/issuer_processors", GET=get_issuer_processors, PUT=put_issuer_processors),
]
