"""GET /openapi.json (OpenAPI 3.1, built from the very Structs that validate); GET /docs is docs_ui's."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from canopy_svc import __version__
from canopy_svc.api import docs_ui
from canopy_svc.api.examples import PATH_IDS
from canopy_svc.api.routing import Endpoint
from canopy_svc.issuers.hosts import LITHIC_HOSTS, LITHIC_ONLY, LithicHosts
from canopy_svc.issuers.webhooks import WebhookHosts
from canopy_svc.rules import paging
from canopy_svc.wire.errors import ErrorEnvelope
from canopy_svc.wire.fields import NO_NUL
from canopy_svc.wire.patterns import END, any_case, dates_from


def listing_query(default_limit: int = 12, **extra: dict[str, Any]) -> dict[str, Any]:
    """A listing's query parameters as one form-exploded object (`?limit=5&starting_after=...` on the
    wire, as separate parameters would be): the only way OpenAPI can say the two cursors exclude each
    other. Unknown parameters are ignored, so the object is open."""
    cursor = {"type": "string", "pattern": paging.CURSOR_PATTERN}
    return {
        "type": "object",
        "properties": {
            # Never rejected (the contract): what int() does not read means the default, so any string
            # is valid; the integers are clamped.
            "limit": {
                "type": "string",
                "default": str(default_limit),
                "examples": ["1", str(paging.MAX_LIMIT)],
                "description": f"Page size, default {default_limit}: an integer, clamped to "
                f"1..{paging.MAX_LIMIT}; anything else means the default",
            },
            "starting_after": {**cursor, "description": "Cursor from paging.starting_after: the next page"},
            "ending_before": {**cursor, "description": "Cursor from paging.ending_before: the previous page"},
            **extra,
        },
        # At most one cursor; an empty one is none.
        "not": {
            "required": ["starting_after", "ending_before"],
            "properties": {"starting_after": {"minLength": 1}, "ending_before": {"minLength": 1}},
        },
    }


def comma_list(values: Sequence[str], description: str) -> dict[str, Any]:
    """A query parameter holding a comma list of these values (`ACTIVE,SUSPENDED`), or empty (none)."""
    item = "(?:" + "|".join(values) + ")"
    return {"type": "string", "pattern": f"^(?:{item}(?:,{item})*)?" + END, "description": description}


def excluding(query: dict[str, Any], first: str, second: str) -> dict[str, Any]:
    """`query` (a listing_query) where at most one of two parameters is given (an empty one is none)."""
    both = {"required": [first, second], "properties": {first: {"minLength": 1}, second: {"minLength": 1}}}
    exclusion = {"not": both}
    return {**query, "allOf": [*query.get("allOf", ()), exclusion]}


_ERROR_DESCRIPTIONS = {
    400: "Bad request", 401: "Unauthorized", 403: "not_authorized: the token expired; forbidden: it lacks the scope",
    404: "Not found", 409: "Conflict",
    413: "Payload too large", 415: "Unsupported media type", 422: "Invalid input",
    429: "Too many requests", 500: "Unexpected error", 503: "Unavailable",
}  # fmt: skip


def build_document(
    operations: Sequence[Endpoint],
    today: datetime.date | None = None,
    lithic_hosts: LithicHosts = LITHIC_ONLY,
    webhook_hosts: WebhookHosts = WebhookHosts(),  # noqa: B008 (frozen: one shared default is safe)
) -> dict[str, Any]:
    """The document as of `today` (UTC; default now), for a server allowing these Lithic and webhook
    hosts: what depends on the day or the operator's settings is stated as it is."""
    types = {op.response for op in operations} | {op.request for op in operations if op.request}
    types |= {ErrorEnvelope} | {op.error_body for op in operations if op.error_body is not None}
    schemas, components = msgspec.json.schema_components(
        sorted(types, key=lambda t: t.__name__), ref_template="#/components/schemas/{name}"
    )
    refs = {t: schema for t, schema in zip(sorted(types, key=lambda t: t.__name__), schemas, strict=True)}
    for struct in _structs(types):
        # A rule across a Struct's fields (msgspec's Meta annotates fields only), as the Struct states it.
        components[struct.__name__].update(getattr(struct, "json_schema_extra", {}))
    for struct in _structs({op.request for op in operations if op.request}):
        _refuse_nul(components[struct.__name__])
    _ids_as_one_of(components)
    _state_settings(components, today or utc_today(), lithic_hosts, webhook_hosts)
    error_ref = {"application/json": {"schema": refs[ErrorEnvelope]}}
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        responses: dict[str, Any] = {
            str(op.status): {
                "description": "Created" if op.status == 201 else "OK",
                "content": {"application/json": {"schema": refs[op.response]}},
            }
        }
        # A bad query parameter (a limit that is not a number, a forged cursor) is a 400 too.
        extra = (*((400,) if op.query else ()), *((400, 413, 415, 422) if op.request else ()))
        errors = error_ref if op.error_body is None else {"application/json": {"schema": refs[op.error_body]}}
        for status in sorted({*op.errors, *extra}):
            responses[str(status)] = {"description": _ERROR_DESCRIPTIONS[status], "content": errors}
        operation: dict[str, Any] = {"summary": op.summary, "responses": responses}
        parameters = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                **({"example": PATH_IDS[name]} if name in PATH_IDS else {}),
            }
            for name in op.parameters
        ]
        parameters += [
            {"name": name, "in": "header", "required": True, "schema": {"type": "string"}} for name in op.headers
        ]
        if op.query is not None:
            described = "; ".join(
                f"`{name}`: {schema.get('description', '')}" for name, schema in op.query["properties"].items()
            )
            parameters.append(
                {
                    "name": "listing",
                    "in": "query",
                    "required": False,
                    "style": "form",
                    "explode": True,
                    "schema": op.query,
                    "description": f"{described}."
                    + (" At most one of the two cursors." if "starting_after" in op.query["properties"] else ""),
                }
            )
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
        "info": {
            "title": "canopy-svc",
            "version": __version__,
            "description": "Canopy Servicing-compatible customer API.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def _refuse_nul(schema: Any) -> None:
    """validation.py refuses NUL in every string of a body (PostgreSQL text cannot hold it): a string
    schema with no pattern of its own says so with NO_NUL. (Every pattern of ours excludes NUL.)"""
    if isinstance(schema, dict):
        if schema.get("type") == "string" and not {"pattern", "enum", "format"} & set(schema):
            schema["pattern"] = NO_NUL
        for value in schema.values():
            _refuse_nul(value)
    elif isinstance(schema, list):
        for item in schema:
            _refuse_nul(item)


def _ids_as_one_of(schema: Any) -> None:
    """models.IdRef, a string or an integer, as the contract and Canopy state it: oneOf (msgspec writes
    anyOf; the two types are disjoint, so only the wording changes)."""
    if isinstance(schema, dict):
        members = schema.get("anyOf")
        if isinstance(members, list) and {"string", "integer"} <= {m.get("type") for m in members}:
            schema["oneOf"] = schema.pop("anyOf")
        for value in schema.values():
            _ids_as_one_of(value)
    elif isinstance(schema, list):
        for item in schema:
            _ids_as_one_of(item)


def _state_settings(schema: Any, today: datetime.date, lithic_hosts: LithicHosts, webhook_hosts: WebhookHosts) -> None:
    """Replaces the markers models.py leaves for rules that depend on the day or on settings, in place:
    `x-date-range` (models.BirthDate), `x-lithic-base-url` and `x-webhook-url` become patterns."""
    if isinstance(schema, dict):
        if "x-date-range" in schema:
            first, last = (
                today if day == "today" else datetime.date.fromisoformat(day) for day in schema.pop("x-date-range")
            )
            schema["pattern"] = dates_from(first, last)
        if schema.pop("x-lithic-base-url", False):
            schema["pattern"] = lithic_base_url_pattern(lithic_hosts)
        if schema.pop("x-webhook-url", False):
            schema["pattern"] = webhook_hosts.url_pattern()
        for value in schema.values():
            _state_settings(value, today, lithic_hosts, webhook_hosts)
    elif isinstance(schema, list):
        for item in schema:
            _state_settings(item, today, lithic_hosts, webhook_hosts)


def lithic_base_url_pattern(hosts: LithicHosts) -> str:
    """What LithicHosts.problem accepts: lithic._BASE_URL's grammar (host and path in any case; a port of
    up to five digits, leading zeros allowed; a path of plain segments), to Lithic's hosts over https on
    443 or to the operator's hosts, over http too when loopback. An operator's IPv6 host is spelled in
    its canonical form only (the server takes every spelling of the address)."""

    def port(allowed: int | None, default: int) -> str:
        if allowed is None:
            return "(?::[0-9]{1,5})?"
        spelled = f":0{{0,{5 - len(str(allowed))}}}{allowed}"
        return f"(?:{spelled})?" if allowed == default else spelled

    lithic = "(?:" + "|".join(any_case(host) for host in LITHIC_HOSTS) + ")"
    # The scheme in lowercase: models.LithicConfigIn's own pattern (^https?://) says so first.
    origins = [f"https://{lithic}{port(443, 443)}"]
    for host, allowed in sorted(hosts.operator, key=lambda entry: (entry[0], entry[1] or 0)):
        spelled = rf"\[{host}\]" if ":" in host else any_case(host)
        origins.append(f"https://{spelled}{port(allowed, 443)}")
        if _is_loopback(host):  # plain http only to this machine
            origins.append(f"http://{spelled}{port(allowed, 80)}")
    path = "(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*/?"
    return f"^(?:{'|'.join(origins)}){path}{END}"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _structs(types: set[Any]) -> set[type[msgspec.Struct]]:
    """Every Struct class in the types and in their fields, nested ones too."""
    found: set[type[msgspec.Struct]] = set()

    def visit(info: msgspec.inspect.Type) -> None:
        if isinstance(info, msgspec.inspect.StructType):
            if info.cls in found:
                return
            found.add(info.cls)
            for field_ in info.fields:
                visit(field_.type)
        elif isinstance(info, msgspec.inspect.UnionType):
            for member in info.types:
                visit(member)
        elif isinstance(info, msgspec.inspect.Metadata):
            visit(info.type)
        elif isinstance(info, msgspec.inspect.ListType | msgspec.inspect.DictType):
            for child in (getattr(info, "item_type", None), getattr(info, "value_type", None)):
                if child is not None:
                    visit(child)

    for info in msgspec.inspect.multi_type_info(list(types)):
        visit(info)
    return found


def utc_today() -> datetime.date:
    return datetime.datetime.now(datetime.UTC).date()


def endpoints(
    documented: Sequence[Endpoint],
    today: Callable[[], datetime.date] = utc_today,
    lithic_hosts: LithicHosts = LITHIC_ONLY,
    webhook_hosts: WebhookHosts = WebhookHosts(),  # noqa: B008 (frozen: one shared default is safe)
) -> list[Endpoint]:
    """GET /openapi.json (the document of `documented`, for a server allowing `lithic_hosts` and
    `webhook_hosts`) and GET
    /docs with what it loads (docs_ui): public, and not in the document themselves. `today` is the clock
    the document's day is read from (a test turns it)."""
    day_built: list[datetime.date] = []
    built: dict[str, bytes] = {}  # "3.1": /openapi.json; "3.0": Swagger UI's rendition of it

    def encoded(version: str) -> bytes:
        # Built again when the UTC day changes ("up to today" moves with it); once a day for both.
        day = today()
        if day_built != [day]:
            document = build_document(documented, day, lithic_hosts, webhook_hosts)
            built.clear()
            built["3.1"] = msgspec.json.encode(document)
            built["3.0"] = msgspec.json.encode(docs_ui.as_openapi_30(document))
            day_built[:] = [day]
        return built[version]

    async def openapi_json(request: Request) -> Response:
        return Response(encoded("3.1"), media_type="application/json")

    return [
        Endpoint("GET", "/openapi.json", openapi_json, public=True),
        *docs_ui.endpoints(lambda: encoded("3.0")),
    ]
