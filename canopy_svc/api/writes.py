"""Every POST, PUT and PATCH runs here: one request, one transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api.body import read_json_body
from canopy_svc.api.requests import pool
from canopy_svc.api.responses import JSONResponse

Work = Callable[[asyncpg.Connection, bytes], Awaitable[Any]]


async def write(request: Request, work: Work) -> Response:
    """Runs `work(conn, body)` in one transaction and answers its result as JSON: on any error
    nothing it wrote is kept."""
    body = await read_json_body(request)
    async with pool(request).acquire() as conn, conn.transaction():
        result = await work(conn, body)
    return JSONResponse(result)
