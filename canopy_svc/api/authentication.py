"""Bearer-token authentication as pure ASGI middleware."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from canopy_svc.api.responses import send_error
from canopy_svc.api.routing import TokenScope, scope_for_method
from canopy_svc.core import metrics
from canopy_svc.rules.tokens import TokenAuthority, require_scope
from canopy_svc.wire import loanpro as lp
from canopy_svc.wire.errors import ApiError, Unauthorized


class AuthenticationMiddleware:
    """`public_paths` and `scopes` come from the endpoints (routing.public_paths, routing.scopes_by_method);
    a method no endpoint has (a 405 or 404 to come) needs the scope its kind does."""

    def __init__(
        self, app: ASGIApp, tokens: TokenAuthority, public_paths: frozenset[str], scopes: Mapping[str, TokenScope]
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.public_paths = public_paths
        self.scopes = dict(scopes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.public_paths:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        # The LoanPro face answers its own shape: any failed credential is its 401 (LOANPRO.md section 1).
        loanpro = scope["path"].startswith(lp.PREFIX + "/")
        try:
            principal = self.tokens.verify(_bearer_token(scope))
        except ApiError as error:
            metrics.token_failed("bearer")
            await send_error(send, lp.unauthorized() if loanpro else error)
            return
        try:
            require_scope(principal, self.scopes.get(method) or scope_for_method(method))
        except ApiError as error:
            metrics.token_failed("scope")
            await send_error(send, lp.LoanProError(403, "Forbidden", "ForbiddenException") if loanpro else error)
            return
        scope["state"]["principal"] = principal
        await self.app(scope, receive, send)


def _bearer_token(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization":
            header: str = value.decode("latin-1")
            scheme, _, token = header.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            break
    raise Unauthorized("Missing or malformed bearer token")
