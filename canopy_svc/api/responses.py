"""JSON responses encoded by msgspec (one shared Encoder)."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response

from canopy_svc.errors import ApiError

_encoder = msgspec.json.Encoder()


def encode(content: Any) -> bytes:
    return _encoder.encode(content)


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)


def error_response(error: ApiError) -> Response:
    return Response(error.body(), status_code=error.status, headers=error.headers,
                    media_type="application/json")
