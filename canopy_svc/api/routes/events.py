"""/events: the feed a backend catches up from (kept CANOPY_SVC_EVENT_RETENTION_DAYS, 30 by default)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api.openapi import listing_query
from canopy_svc.api.requests import cursors, pool, principal
from canopy_svc.api.responses import JSONResponse
from canopy_svc.api.routing import Endpoint
from canopy_svc.rules import events
from canopy_svc.rules.paging import PageRequest
from canopy_svc.wire import models


async def list_events(request: Request) -> Response:
    page = await events.list_events(
        pool(request),
        principal(request).org_id,
        cursors(request),
        PageRequest.from_query(request.query_params, default_limit=12),
        events.event_type_filter(request.query_params.get("type")),
    )
    return JSONResponse(page)


async def get_event(request: Request) -> Response:
    event = await events.get_event(pool(request), principal(request).org_id, request.path_params["event_id"])
    return JSONResponse(event)


_TYPE = {"type": "string", "enum": ["", *models.EVENT_TYPES], "description": "Only the events of this type"}

endpoints = [
    Endpoint(
        "GET", "/events", list_events, "List events, oldest first", models.EventList, query=listing_query(type=_TYPE)
    ),
    Endpoint(
        "GET", "/events/{event_id}", get_event, "Get an event", models.Event, errors=(401, 403, 404, 429, 500, 503)
    ),
]
