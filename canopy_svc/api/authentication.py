"""Bearer-token authentication as pure ASGI middleware."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from canopy_svc.api.responses import send_error
from canopy_svc.errors import ApiError, Unauthorized
from canopy_svc.rules.tokens import TokenAuthority, require_scope

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs", "/auth/token"})
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class AuthenticationMiddleware:
    def __init__(self, app: ASGIApp, tokens: TokenAuthority) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        try:
            principal = self.tokens.verify(_bearer_token(scope))
            require_scope(principal, "read" if scope["method"] in _READ_METHODS else "write")
        except ApiError as error:
            await send_error(send, error)
            return
        scope["state"]["principal"] = principal
        await self.app(scope, receive, send)


def _bearer_token(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            break
    raise Unauthorized("Missing or malformed bearer token")
