"""GET /docs: Swagger UI, from the swagger-ui-bundle package's files (no CDN: a sandbox has no internet),
on this server's own document, with "Authorize" for the bearer token and "Try it out" on this origin.

The bundle is Swagger UI 4, which renders OpenAPI 3.0 only ("openapi": "3.0.n"). Its document is
therefore /openapi.json said in 3.0's words (`as_openapi_30`): the same paths, bodies and examples;
nullable for a null member, enum for const, no if/then/else. /openapi.json itself stays 3.1.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from importlib.resources.abc import Traversable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from swagger_ui_bundle import swagger_ui_path

from canopy_svc.api.routing import Endpoint

_BUNDLE: Traversable = swagger_ui_path  # the folder of one Swagger UI release inside the package

PREFIX = "/docs"
DOCUMENT_PATH = f"{PREFIX}/openapi-3.0.json"

# Everything the page loads comes from this server: no inline script (the options are in init.js),
# data: images for the icons swagger-ui.css embeds, fetches (the document, "Try it out") to this origin only.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>canopy-svc API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{PREFIX}/swagger-ui.css">
<link rel="icon" type="image/png" href="{PREFIX}/favicon-32x32.png" sizes="32x32">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{PREFIX}/swagger-ui-bundle.js"></script>
<script src="{PREFIX}/init.js"></script>
</body>
</html>
"""

# The token stays in the page's memory only (persistAuthorization would keep it in localStorage).
_INIT_JS = f"""window.ui = SwaggerUIBundle({{
  url: "{DOCUMENT_PATH}",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  defaultModelsExpandDepth: 0,
  tryItOutEnabled: false,
  persistAuthorization: false
}});
"""

# (file in the bundle, content type): what the page loads. The source maps (1.5 MB) are left out.
_BUNDLE_FILES = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}


def _headers(cache: bool) -> dict[str, str]:
    # The bundle's files change only with the package: a day of caching. The page and its document: never.
    return {
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "public, max-age=86400" if cache else "no-cache",
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "Referrer-Policy": "no-referrer",
    }


@functools.cache
def _bundle_file(name: str) -> bytes:
    """Read on first use, then kept: 1.2 MB a worker only once someone opens the page."""
    data: bytes = (_BUNDLE / name).read_bytes()
    return data


def endpoints(document_30: Callable[[], bytes]) -> list[Endpoint]:
    """GET /docs and the files it loads, all public. `document_30()` is the current document, encoded,
    as `as_openapi_30` says it."""

    async def page(request: Request) -> Response:
        return Response(_PAGE, media_type="text/html", headers=_headers(cache=False))

    async def init_js(request: Request) -> Response:
        return Response(_INIT_JS, media_type="text/javascript", headers=_headers(cache=False))

    async def openapi_30(request: Request) -> Response:
        return Response(document_30(), media_type="application/json", headers=_headers(cache=False))

    def asset(name: str, content_type: str) -> Endpoint:
        async def serve(request: Request) -> Response:
            return Response(_bundle_file(name), headers={**_headers(cache=True), "Content-Type": content_type})

        return Endpoint("GET", f"{PREFIX}/{name}", serve, public=True)

    return [
        Endpoint("GET", PREFIX, page, public=True),
        Endpoint("GET", f"{PREFIX}/init.js", init_js, public=True),
        Endpoint("GET", DOCUMENT_PATH, openapi_30, public=True),
        *(asset(name, content_type) for name, content_type in _BUNDLE_FILES.items()),
    ]


def as_openapi_30(document: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI 3.1 document in OpenAPI 3.0.3's terms, for a reader of 3.0 only (Swagger UI 4). What
    3.0 cannot say is left out (if/then/else: the server still applies it, and answers 422 with why)."""
    converted = copy.deepcopy(document)
    converted["openapi"] = "3.0.3"
    converted["info"]["description"] = (
        f"{document['info'].get('description', '')} Shown in OpenAPI 3.0 terms; the document is /openapi.json "
        "(OpenAPI 3.1)."
    ).strip()
    for path in converted["paths"].values():
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                _schema_30(parameter["schema"])
            for content in [
                *operation.get("requestBody", {}).get("content", {}).values(),
                *(c for r in operation["responses"].values() for c in r.get("content", {}).values()),
            ]:
                _schema_30(content["schema"])
    for schema in converted["components"]["schemas"].values():
        _schema_30(schema)
    return converted


_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf")
_SUBSCHEMAS = ("not", "items", "additionalProperties")


def _schema_30(schema: Any) -> None:
    """One JSON Schema (2020-12, as OpenAPI 3.1 has it) rewritten in place as an OpenAPI 3.0 Schema Object."""
    if not isinstance(schema, dict):
        return
    for key in ("if", "then", "else"):
        schema.pop(key, None)
    if schema.get("required") == []:  # 3.0 wants at least one name, or no list
        del schema["required"]
    if "const" in schema:
        schema["enum"] = [schema.pop("const")]
    if isinstance(schema.get("examples"), list):
        examples = schema.pop("examples")
        if examples:
            schema.setdefault("example", examples[0])
    if isinstance(schema.get("type"), list):
        types = [t for t in schema["type"] if t != "null"]
        if len(types) < len(schema["type"]):
            schema["nullable"] = True
        if len(types) == 1:
            schema["type"] = types[0]
        else:
            schema.pop("type")
            schema["anyOf"] = [{"type": t} for t in types]
    for key in _SUBSCHEMA_LISTS:
        members = schema.get(key)
        if not isinstance(members, list):
            continue
        kept = [m for m in members if m != {"type": "null"}]
        if len(kept) < len(members):
            schema["nullable"] = True
        if len(kept) == 1 and key != "allOf":
            del schema[key]
            (only,) = kept
            if "$ref" in only:
                schema["allOf"] = [only]  # 3.0 ignores a $ref's siblings, nullable among them
            else:
                _schema_30(only)
                for name, value in only.items():
                    schema.setdefault(name, value)
                continue
        else:
            schema[key] = kept
    for key in _SUBSCHEMA_LISTS:
        for member in schema.get(key, []):
            _schema_30(member)
    for key in _SUBSCHEMAS:
        _schema_30(schema.get(key))
    for value in schema.get("properties", {}).values():
        _schema_30(value)
