"""Reading a request body: JSON only, at most 1 MiB."""

from __future__ import annotations

from starlette.requests import Request

from canopy_svc.wire.errors import PayloadTooLarge, UnsupportedMediaType

MAX_BODY_BYTES = 1024 * 1024


async def read_json_body(request: Request) -> bytes:
    """The raw body, once its media type and size are acceptable; parsing is the decoder's job."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType()
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():  # a lying or absent Content-Length is caught here
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)
