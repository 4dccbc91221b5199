"""POST /webhooks/lithic: Lithic's card events, signed (Standard Webhooks), without a bearer token.

One path for every organization: the card an event names says whose it is, and that organization's
webhook secret must verify it (rules/lithic_sync.py). A public path is matched as written, with no
parameter in it (api/routing.py public_paths), and a path naming the organization would tell the
world its id for no gain: the secret is what authenticates."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api.body import read_json_body
from canopy_svc.api.requests import cipher, pool, resources
from canopy_svc.api.responses import JSONResponse
from canopy_svc.api.routing import Endpoint
from canopy_svc.rules import lithic_sync
from canopy_svc.wire import models

# An example body, as Lithic sends a card.updated event (its spec's CardUpdatedWebhookEvent).
EXAMPLE = {
    "event_type": "card.updated",
    "token": "7ef7d65c-9023-4da3-b113-3b8583fd7951",
    "state": "CLOSED",
    "previous_fields": {"state": "OPEN"},
}


def _header(request: Request, name: str) -> str | None:
    """A Standard Webhooks header, by its name or Svix's (svix-id, svix-timestamp, svix-signature)."""
    return request.headers.get(f"webhook-{name}") or request.headers.get(f"svix-{name}")


async def receive(request: Request) -> Response:
    body = await read_json_body(request)  # the raw bytes: the signature is over them
    signed = lithic_sync.Signed(_header(request, "id"), _header(request, "timestamp"), _header(request, "signature"))
    async with pool(request).acquire() as conn, conn.transaction():  # the change, its event, the webhook-id
        simulator_secret = resources(request).card_gateway.simulator.webhook_secret
        answer = await lithic_sync.receive_webhook(
            conn, body, signed, cipher(request), simulator_secret=simulator_secret
        )
    return JSONResponse(answer)


endpoints = [
    Endpoint(
        "POST",
        "/webhooks/lithic",
        receive,
        "Lithic's card events (card.updated, card.created, card.shipped, card.renewed, card.reissued, "
        "card.converted), signed with the organization's Lithic webhook secret",
        models.Description,
        models.LithicWebhookEvent,
        public=True,
        errors=(400, 401, 413, 415, 422, 500, 503),
        example=EXAMPLE,
    ),
]
