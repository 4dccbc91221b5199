"""Liveness and readiness, without authentication."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api.requests import pool
from canopy_svc.api.responses import JSONResponse
from canopy_svc.api.routing import Endpoint
from canopy_svc.api.state import state_of
from canopy_svc.wire.errors import Unavailable
from canopy_svc.wire.models import Health


async def healthz(request: Request) -> Response:
    return JSONResponse(Health(status="ok"))


class TasksNotRunning(Unavailable):
    """The database answers, but a background task of this process is down, waiting to be restarted."""

    message = "A background task is not running"

    def __init__(self, tasks: list[str]) -> None:
        super().__init__()
        self.details = [{"task": name} for name in tasks]  # names only: the logs have the errors


async def readyz(request: Request) -> Response:
    try:
        async with pool(request).acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1", timeout=2)
    except Exception:
        raise Unavailable() from None
    background = state_of(request.scope).background  # None: no lifespan (an app given its pool)
    if background is not None and (down := background.not_running()):
        raise TasksNotRunning(down)
    return JSONResponse(Health(status="ready"))


endpoints = [
    Endpoint("GET", "/healthz", healthz, "Process is up", Health, public=True, errors=()),
    Endpoint("GET", "/readyz", readyz, "Database is reachable", Health, public=True, errors=(503,)),
]
