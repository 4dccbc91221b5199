"""GET /metrics (Prometheus' text format) and the route template each request is counted under.

Who may read it: with CANOPY_SVC_METRICS_TOKEN set, whoever sends it as a bearer token (from anywhere,
loopback included: a reverse proxy on the same host makes every caller loopback); unset, callers on
loopback only. Anyone else gets 404 (unset: the route is not there for them) or 401 (a wrong token),
in the contract's envelope. The metrics carry no tenant's data, but they show the service's traffic.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from canopy_svc.api.requests import pool, resources
from canopy_svc.api.routing import Endpoint
from canopy_svc.core import metrics
from canopy_svc.core.metrics import OutboxState
from canopy_svc.rules import outboxes
from canopy_svc.wire.errors import NotFound, Unauthorized

log = logging.getLogger("canopy_svc.metrics")

_CONVERTOR = re.compile(r"\{(\w+):\w+\}")
OUTBOX_TIMEOUT_SECONDS = 2.0


class RouteTemplates:
    """The documented template of a request's route: the route the router chose, or, for a request
    answered before routing (401, 429), the route that would have matched; "unmatched" when none does."""

    def __init__(self, routes: list[BaseRoute]) -> None:
        self.routes = [route for route in routes if isinstance(route, Route)]
        self._templates = {route.path: _CONVERTOR.sub(r"{\1}", route.path) for route in self.routes}

    def of(self, scope: Scope) -> str:
        route = scope.get("route")
        if not isinstance(route, Route):
            route = next((r for r in self.routes if r.matches(scope)[0] is not Match.NONE), None)
        if route is None:
            return metrics.UNMATCHED
        return self._templates.get(route.path, metrics.UNMATCHED)


def _is_loopback(request: Request) -> bool:
    if request.client is None:
        return False
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def check_access(request: Request) -> None:
    expected = resources(request).settings.metrics_token
    if expected:
        given = _bearer(request)
        if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
            metrics.token_failed("metrics")
            raise Unauthorized("Missing or wrong metrics token")
        return
    if not _is_loopback(request):
        raise NotFound("No route matches this path")  # as for a path that is not there


_outboxes_failing = False  # logged once per failure, not once per scrape (a scrape every few seconds)


async def _outboxes(request: Request) -> list[OutboxState]:
    """The outboxes' state, or none while the database does not answer (the gate's gauge says so)."""
    global _outboxes_failing
    try:
        async with asyncio.timeout(OUTBOX_TIMEOUT_SECONDS), pool(request).acquire() as conn:
            found = await outboxes.states(conn)
    except Exception as exc:  # a scrape must answer whatever the database does; CancelledError propagates
        if not _outboxes_failing:
            # The type only: the text of a connection error can carry the DSN.
            log.warning("outbox depths unavailable for /metrics", extra={"error_type": type(exc).__name__})
        _outboxes_failing = True
        return []
    _outboxes_failing = False
    return found


async def metrics_page(request: Request) -> Response:
    check_access(request)
    return Response(metrics.render(await _outboxes(request)), media_type=metrics.CONTENT_TYPE)


def endpoints() -> list[Endpoint]:
    """Public to the token middleware (its access is `check_access`'s), and not in /openapi.json: it is
    the operator's, not part of the Canopy contract."""
    return [Endpoint("GET", "/metrics", metrics_page, public=True, errors=(401, 404))]
