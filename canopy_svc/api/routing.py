"""Routing: one Route per path (a wrong method is a 405 with the full Allow), and ids in paths.

Ids are the caller's own (Canopy allows any character in a customer_id but control characters),
so an id may hold '/' or '%', sent as %2F and %25. Starlette routes on the decoded path, where such
an id would split; so when the raw path has them, `keep_encoded_separators` decodes everything else
and the `id` convertor restores them inside the one path segment.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from canopy_svc.errors import NotFound

Handler = Callable[[Request], Awaitable[Response]]

_KEPT_ESCAPES = re.compile(r"%2[fF5]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class IdConvertor(Convertor[str]):
    regex = "[^/]+"

    def convert(self, value: str) -> str:
        if "%2" in value:
            value = value.replace("%2F", "/").replace("%25", "%")
        return value

    def to_string(self, value: str) -> str:
        return value.replace("%", "%25").replace("/", "%2F")


register_url_convertor("id", IdConvertor())


def keep_encoded_separators(scope: dict[str, Any]) -> None:
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


def by_method(path: str, **handlers: Handler) -> Route:
    async def endpoint(request: Request) -> Response:
        for value in request.path_params.values():
            # No stored id has a control character: answer 404 without asking the database.
            if isinstance(value, str) and _CONTROL.search(value):
                raise NotFound("Not found")
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return Route(path, endpoint, methods=list(handlers))
