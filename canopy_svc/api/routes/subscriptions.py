"""/organization/subscribe and /organization/subscriptions: Canopy's webhook routes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api.openapi import listing_query
from canopy_svc.api.requests import cipher, cursors, pool, principal, resources
from canopy_svc.api.responses import JSONResponse
from canopy_svc.api.routing import Endpoint
from canopy_svc.api.writes import write
from canopy_svc.core.dbtypes import Conn
from canopy_svc.rules import webhooks
from canopy_svc.rules.paging import PageRequest
from canopy_svc.wire import models
from canopy_svc.wire.models import SubscriptionCreate, SubscriptionCreated

SUBSCRIPTION_EXAMPLE = {
    "webhook_url": "https://backend.example.com/canopy/webhooks",
    "filter_events": ["card_issued", "card_failed"],
    "failure_notification_endpoint": "https://backend.example.com/canopy/webhook-failures",
}


async def subscribe(request: Request) -> Response:
    org_id, data_cipher = principal(request).org_id, cipher(request)
    hosts = resources(request).webhooks.hosts

    async def work(conn: Conn, payload: SubscriptionCreate) -> SubscriptionCreated:
        return await webhooks.subscribe(conn, org_id, payload, data_cipher)

    return await write(request, lambda body: webhooks.parse_subscription(body, hosts), work, status_code=201)


async def list_subscriptions(request: Request) -> Response:
    page = await webhooks.list_subscriptions(
        pool(request),
        principal(request).org_id,
        cursors(request),
        PageRequest.from_query(request.query_params, default_limit=12),
    )
    return JSONResponse(page)


# The bodiless PUTs read no body (Canopy's clients send none) and are one statement each, the same
# answer however often repeated: an Idempotency-Key would add nothing.
async def unsubscribe(request: Request) -> Response:
    subscription_id = request.path_params["subscription_id"]
    return JSONResponse(await webhooks.set_active(pool(request), principal(request).org_id, subscription_id, False))


async def resubscribe(request: Request) -> Response:
    subscription_id = request.path_params["subscription_id"]
    return JSONResponse(await webhooks.set_active(pool(request), principal(request).org_id, subscription_id, True))


async def trigger_test(request: Request) -> Response:
    async with pool(request).acquire() as conn, conn.transaction():
        answer = await webhooks.trigger_test(conn, principal(request).org_id)
    return JSONResponse(answer, status_code=201)


async def replay_failed_events(request: Request) -> Response:
    return JSONResponse(await webhooks.replay_failed(pool(request), principal(request).org_id))


_ONE = (401, 403, 404, 429, 500, 503)

endpoints = [
    Endpoint(
        "PUT",
        "/organization/subscribe",
        subscribe,
        "Subscribe a URL to this organization's events; the signing secret is answered this once",
        models.SubscriptionCreated,
        models.SubscriptionCreate,
        example=SUBSCRIPTION_EXAMPLE,
        status=201,
    ),
    Endpoint(
        "GET",
        "/organization/subscriptions",
        list_subscriptions,
        "List this organization's webhook subscriptions (without their secrets)",
        models.SubscriptionList,
        query=listing_query(),
    ),
    Endpoint(
        "PUT",
        "/organization/subscriptions/{subscription_id}/unsubscribe",
        unsubscribe,
        "Stop a subscription's deliveries",
        models.Subscription,
        errors=_ONE,
    ),
    Endpoint(
        "PUT",
        "/organization/subscriptions/{subscription_id}/resubscribe",
        resubscribe,
        "Start a subscription's deliveries again",
        models.Subscription,
        errors=_ONE,
    ),
    Endpoint(
        "GET",
        "/organization/subscribe/test",
        trigger_test,
        "Send a test_event to this organization's subscriptions",
        models.Description,
        status=201,
    ),
    Endpoint(
        "PUT",
        "/organization/subscribe/replay_failed_events",
        replay_failed_events,
        "Requeue this organization's failed deliveries (up to 1000 a call)",
        models.ReplayedDeliveries,
    ),
]
