"""GET /openapi.json (OpenAPI 3.1, built from the very Structs that validate) and GET /docs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from canopy_svc import __version__
from canopy_svc.errors import ErrorEnvelope


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    response: Any
    request: Any = None
    query: tuple[tuple[str, str, str], ...] = ()  # (name, type, description)
    public: bool = False
    errors: tuple[int, ...] = field(default=(401, 403, 429, 500, 503))
    example: Any = None  # a request body, shown by /docs and sent first by schemathesis


# The ids of the README's examples: /docs shows them in the paths.
PATH_EXAMPLES = {"customer_id": "0x1234", "account_id": "acc-1", "product_id": "prod-1"}
PAGING_QUERY = (
    ("limit", "integer", "Page size, clamped to 1..1000"),
    ("starting_after", "string", "Cursor from paging.starting_after: the next page"),
    ("ending_before", "string", "Cursor from paging.ending_before: the previous page"),
)
_ERROR_DESCRIPTIONS = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 409: "Conflict",
    413: "Payload too large", 415: "Unsupported media type", 422: "Invalid input",
    429: "Too many requests", 500: "Unexpected error", 503: "Unavailable",
}  # fmt: skip


def build_document(operations: list[Operation]) -> dict[str, Any]:
    types = {op.response for op in operations} | {op.request for op in operations if op.request}
    types.add(ErrorEnvelope)
    schemas, components = msgspec.json.schema_components(
        sorted(types, key=lambda t: t.__name__), ref_template="#/components/schemas/{name}"
    )
    refs = {t: schema for t, schema in zip(sorted(types, key=lambda t: t.__name__), schemas, strict=True)}
    error_ref = {"application/json": {"schema": refs[ErrorEnvelope]}}
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        responses: dict[str, Any] = {
            "200": {"description": "OK", "content": {"application/json": {"schema": refs[op.response]}}}
        }
        # A bad query parameter (a limit that is not a number, a forged cursor) is a 400 too.
        extra = (*((400,) if op.query else ()), *((400, 413, 415, 422) if op.request else ()))
        for status in sorted({*op.errors, *extra}):
            responses[str(status)] = {"description": _ERROR_DESCRIPTIONS[status], "content": error_ref}
        operation: dict[str, Any] = {"summary": op.summary, "responses": responses}
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"},
             **({"example": PATH_EXAMPLES[name]} if name in PATH_EXAMPLES else {})}
            for name in _path_parameters(op.path)
        ] + [
            {"name": name, "in": "query", "required": False, "schema": {"type": kind},
             "description": description}
            for name, kind, description in op.query
        ]
        if parameters:
            operation["parameters"] = parameters
        if op.request is not None:
            body: dict[str, Any] = {"schema": refs[op.request]}
            if op.example is not None:
                body["example"] = op.example
            operation["requestBody"] = {"required": True, "content": {"application/json": body}}
        if not op.public:
            operation["security"] = [{"bearerAuth": []}]
        paths.setdefault(op.path, {})[op.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "canopy-svc", "version": __version__,
                 "description": "Canopy Servicing-compatible customer API."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def _path_parameters(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


_DOCS_HTML = (Path(__file__).parent.parent / "static" / "docs.html").read_text()


def routes(operations: list[Operation]) -> list[Route]:
    document = msgspec.json.encode(build_document(operations))

    async def openapi_json(request: Request) -> Response:
        return Response(document, media_type="application/json")

    async def docs(request: Request) -> Response:
        return HTMLResponse(_DOCS_HTML)

    return [Route("/openapi.json", openapi_json, methods=["GET"]), Route("/docs", docs, methods=["GET"])]

