"""Liveness and readiness, without authentication."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from canopy_svc.api.requests import pool
from canopy_svc.api.responses import JSONResponse
from canopy_svc.errors import Unavailable
from canopy_svc.rules.models import Health


async def healthz(request: Request) -> Response:
    return JSONResponse(Health(status="ok"))


async def readyz(request: Request) -> Response:
    try:
        async with pool(request).acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1", timeout=2)
    except Exception:
        raise Unavailable() from None
    return JSONResponse(Health(status="ready"))


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]
