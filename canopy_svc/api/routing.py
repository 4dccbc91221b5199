"""Endpoints and routing: each endpoint declared once (`Endpoint`), one Route per path built from them
(a wrong method is a 405 with the full Allow), and ids in paths.

Ids are the caller's own (Canopy allows any character in a customer_id but control characters),
so an id may hold '/' or '%', sent as %2F and %25. Starlette routes on the decoded path, where such
an id would split; so when the raw path has them, `keep_encoded_separators` decodes everything else
and the `id` convertor restores them inside the one path segment.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import Receive, Scope, Send

from canopy_svc.wire.errors import NotFound

Handler = Callable[[Request], Awaitable[Response]]
TokenScope = Literal["read", "write"]

_KEPT_ESCAPES = re.compile(r"%2[fF5]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PARAMETER = re.compile(r"\{(\w+)\}")
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def scope_for_method(method: str) -> TokenScope:
    """The scope a request needs by its method: reads need `read`, everything else `write`."""
    return "read" if method in _READ_METHODS else "write"


@dataclass(frozen=True)
class Endpoint:
    """One operation: its route, its entry in /openapi.json and what the authentication asks of it."""

    method: str
    path: str  # as documented: "/customers/{customer_id}"; every parameter is an id (IdConvertor)
    handler: Handler
    summary: str = ""
    response: Any = None
    request: Any = None
    query: dict[str, Any] | None = None  # the query parameters as one object schema (openapi.listing_query)
    public: bool = False  # no token needed
    # The token scope it needs; None: by its method (scope_for_method). A public endpoint needs none.
    scope: TokenScope | None = None
    errors: tuple[int, ...] = field(default=(401, 403, 429, 500, 503))
    example: Any = None  # a request body, shown by /docs and sent first by schemathesis
    status: int = 200  # of a success (Canopy answers 201 to a few of its routes)
    error_body: Any = None  # the type of its error bodies, when not the contract's (the LoanPro face)
    headers: tuple[str, ...] = ()  # request headers it requires beside the token (Autopal-Instance-ID)

    def __post_init__(self) -> None:
        if self.public and self.scope is not None:
            raise ValueError(f"{self.method} {self.path} is public: it needs no scope")
        if not self.public and self.scope is None:
            object.__setattr__(self, "scope", scope_for_method(self.method))

    @property
    def parameters(self) -> list[str]:
        return _PARAMETER.findall(self.path)


class IdConvertor(Convertor[str]):
    regex = "[^/]+"

    def convert(self, value: str) -> str:
        if "%2" in value:
            value = value.replace("%2F", "/").replace("%25", "%")
        return value

    def to_string(self, value: str) -> str:
        return value.replace("%", "%25").replace("/", "%2F")


register_url_convertor("id", IdConvertor())


def keep_encoded_separators(scope: Scope) -> None:
    """Re-decodes the path from raw_path, leaving %2F and %25 encoded (see the module docstring)."""
    raw: bytes | None = scope.get("raw_path")
    if raw is None or b"%2" not in raw:
        return
    text = raw.decode("latin-1").split("?", 1)[0]
    if not _KEPT_ESCAPES.search(text):
        return
    pieces = _KEPT_ESCAPES.split(text)
    escapes = [escape.upper() for escape in _KEPT_ESCAPES.findall(text)]
    decoded = [unquote(piece) for piece in pieces]
    scope["path"] = "".join(p + e for p, e in zip(decoded, [*escapes, ""], strict=True))


def by_method(path: str, handlers: dict[str, Handler]) -> Route:
    async def endpoint(request: Request) -> Response:
        for value in request.path_params.values():
            # No stored id has a control character: answer 404 without asking the database.
            if isinstance(value, str) and _CONTROL.search(value):
                raise NotFound("Not found")
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return Route(path, endpoint, methods=list(handlers))


def routes(endpoints: Iterable[Endpoint]) -> list[Route]:
    """One Route per path, its endpoints' methods on it. A literal segment is tried before a parameter
    in the same place ("/customers/accounts" before "/customers/{customer_id}"), whatever the order of
    the declarations."""
    by_path: dict[str, dict[str, Handler]] = {}
    for endpoint in endpoints:
        handlers = by_path.setdefault(endpoint.path, {})
        if endpoint.method in handlers:
            raise ValueError(f"{endpoint.method} {endpoint.path} is declared twice")
        handlers[endpoint.method] = endpoint.handler
    ordered = sorted(by_path, key=lambda path: [part.startswith("{") for part in path.split("/")])
    return [by_method(_PARAMETER.sub(r"{\1:id}", path), by_path[path]) for path in ordered]


def public_paths(endpoints: Iterable[Endpoint]) -> frozenset[str]:
    """The paths the authentication lets through without a token: every endpoint on them is public."""
    endpoints = list(endpoints)
    public = {e.path for e in endpoints if e.public}
    for endpoint in endpoints:
        if endpoint.path in public and not endpoint.public:
            raise ValueError(f"{endpoint.method} {endpoint.path} needs a token on a public path")
        if endpoint.public and endpoint.parameters:
            raise ValueError(f"{endpoint.path}: a public path is matched as it is, without parameters")
    return frozenset(public)


def scopes_by_method(endpoints: Iterable[Endpoint]) -> dict[str, TokenScope]:
    """The scope each method needs. The authentication decides before routing, by method alone: every
    endpoint of a method must need the same scope (per-path scopes would need it to match paths)."""
    scopes: dict[str, TokenScope] = {}
    for endpoint in endpoints:
        if endpoint.scope is None:
            continue
        methods = ("GET", "HEAD") if endpoint.method == "GET" else (endpoint.method,)
        for method in methods:
            if scopes.setdefault(method, endpoint.scope) != endpoint.scope:
                raise ValueError(
                    f"{endpoint.method} {endpoint.path} needs {endpoint.scope!r}, "
                    f"another {method} endpoint {scopes[method]!r}"
                )
    return scopes


_ANY_PARAMETER = re.compile(r"\{[^}]*\}")
_SEGMENT_PARAMETER = re.compile(r"\{\w+(?::(?:id|str))?\}")  # convertors that never match a "/"


def _route_key(route: BaseRoute) -> tuple[str | None, int] | None:
    """(its first segment, None when that holds a parameter; its number of segments), or None when
    the route could match paths of other shapes (a Mount, a `path` convertor): tried for every path."""
    if not isinstance(route, Route):
        return None
    if not all(_SEGMENT_PARAMETER.fullmatch(p) for p in _ANY_PARAMETER.findall(route.path)):
        return None
    segments = route.path.split("/")[1:]
    return (None if "{" in segments[0] else segments[0]), len(segments)


class SegmentRouter(Router):
    """Starlette's Router, trying only the routes that can match a path's first segment and length.

    Starlette tries every route's regex in turn: 33 of them cost ~23 us of a GET's ~160 us of CPU, and
    each new route adds to every request. A path's parameters never hold a "/" (IdConvertor), so a
    route can only match paths with its own number of segments and, when it is literal, its first one.
    The routes kept for a path are in the router's order, so the first full match is the one Starlette
    would choose; a path none of them matches (a 404, a slash to redirect) goes the whole way round.
    """

    def __init__(self, routes: Sequence[BaseRoute], **kwargs: Any) -> None:
        super().__init__(routes, **kwargs)
        keys = [_route_key(route) for route in self.routes]
        shapes = {key for key in keys if key is not None}
        self._anywhere = [route for route, key in zip(self.routes, keys, strict=True) if key is None]
        self._by_shape: dict[tuple[str | None, int], list[BaseRoute]] = {}
        for first, count in shapes:
            if first is None:
                continue
            self._by_shape[(first, count)] = [
                route
                for route, key in zip(self.routes, keys, strict=True)
                if key is None or (key[1] == count and key[0] in (first, None))
            ]
        self._by_count: dict[int, list[BaseRoute]] = {
            count: [route for route, key in zip(self.routes, keys, strict=True) if key is None or key == (None, count)]
            for count in {count for _, count in shapes}
        }

    def candidates(self, path: str) -> list[BaseRoute]:
        segments = path.split("/")[1:]
        shaped = self._by_shape.get((segments[0] if segments else "", len(segments)))
        if shaped is not None:
            return shaped
        return self._by_count.get(len(segments), self._anywhere)

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("root_path"):  # mounted under a prefix: Starlette's own way
            await super().app(scope, receive, send)
            return
        scope.setdefault("router", self)
        partial: tuple[BaseRoute, Scope] | None = None
        for route in self.candidates(scope["path"]):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                scope["route"] = route
                scope.update(child_scope)
                await route.handle(scope, receive, send)
                return
            if match is Match.PARTIAL and partial is None:
                partial = (route, child_scope)
        if partial is not None:  # the path is served, not with this method: 405 with the Allow
            scope["route"] = partial[0]
            scope.update(partial[1])
            await partial[0].handle(scope, receive, send)
            return
        await super().app(scope, receive, send)  # Starlette's own: its redirect of a slash, then 404
