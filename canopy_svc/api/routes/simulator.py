"""POST /simulator/authorize: a purchase with a card of the built-in simulator (no Lithic account)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api.requests import cipher, principal, resources
from canopy_svc.api.routing import Endpoint
from canopy_svc.api.writes import write
from canopy_svc.core.dbtypes import Conn
from canopy_svc.rules import simulation
from canopy_svc.wire import models
from canopy_svc.wire.models import SimulatedAuthorization, SimulatedAuthorizationRequest

EXAMPLE = {"card_token": "7ef7d65c-9023-4da3-b113-3b8583fd7951", "amount": 1250, "descriptor": "COFFEE SHOP"}


async def authorize(request: Request) -> Response:
    org_id, data_cipher = principal(request).org_id, cipher(request)
    simulator = resources(request).card_gateway.simulator

    async def work(conn: Conn, payload: SimulatedAuthorizationRequest) -> SimulatedAuthorization:
        return await simulation.authorize(conn, org_id, payload, simulator, data_cipher)

    return await write(request, simulation.AUTHORIZATION_DECODER.decode, work)


endpoints = [
    Endpoint(
        "POST",
        "/simulator/authorize",
        authorize,
        "A purchase with a simulator's card: a SINGLE_USE card closes, as at Lithic, by the simulator's webhook",
        models.SimulatedAuthorization,
        models.SimulatedAuthorizationRequest,
        errors=(401, 403, 404, 409, 429, 500, 503),
        example=EXAMPLE,
    ),
]
