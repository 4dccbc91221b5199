"""JSON responses encoded by msgspec (one shared Encoder)."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response
from starlette.types import Send

from canopy_svc.core.db import UNAVAILABLE_ERRORS
from canopy_svc.wire.errors import ApiError, ServerError, Unavailable

_encoder = msgspec.json.Encoder()


def encode(content: Any) -> bytes:
    return _encoder.encode(content)


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)


def error_response(error: ApiError) -> Response:
    return Response(error.body(), status_code=error.status, headers=error.headers, media_type="application/json")


def error_for(exc: Exception) -> ApiError:
    """The answer to an unexpected failure: the database not there is 503, anything else 500."""
    return Unavailable() if isinstance(exc, UNAVAILABLE_ERRORS) else ServerError()


async def send_error(send: Send, error: ApiError) -> None:
    """An error answered from pure ASGI middleware, in the contract's envelope."""
    headers = [(b"content-type", b"application/json")]
    headers += [(name.lower().encode(), value.encode()) for name, value in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": error.body()})
