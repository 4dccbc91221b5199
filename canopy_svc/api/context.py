"""The outermost middleware: request id, the access log line, and the last word on any failure."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
import traceback

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from canopy_svc.api.metrics import RouteTemplates
from canopy_svc.api.responses import error_for, send_error
from canopy_svc.api.routing import keep_encoded_separators
from canopy_svc.core import metrics
from canopy_svc.core.db import UNAVAILABLE_ERRORS, DatabaseUnavailable
from canopy_svc.wire.errors import Unavailable

access_log = logging.getLogger("canopy_svc.access")
error_log = logging.getLogger("canopy_svc.wire.errors")

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, templates: RouteTemplates | None = None) -> None:
        self.app = app
        self.templates = templates  # None: requests are logged, not counted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        keep_encoded_separators(scope)
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        response_started = False
        request_id_header = (b"x-request-id", request_id.encode())

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", []), request_id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        except ClientDisconnect:
            status = 499  # the client went away mid-request: nothing to answer, nothing wrong here
        except Exception as exc:
            error = error_for(exc)
            _log_failure(scope, request_id, exc)
            if not response_started:
                await send_error(send_with_request_id, error)
        except asyncio.CancelledError:
            # uvicorn cancels the requests still running when --graceful-timeout ends; its own answer
            # would be a text/plain 500. Ours is the contract's: 503 `unavailable`, try again (elsewhere).
            # Their transactions roll back with the cancellation.
            if not response_started:
                with contextlib.suppress(Exception):
                    await send_error(send_with_request_id, Unavailable())
            raise
        finally:
            seconds = time.perf_counter() - started
            if self.templates is not None:
                metrics.observe_request(self.templates.of(scope), scope["method"], status, seconds)
            principal = scope["state"].get("principal")
            access_log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "client_id": principal.client_id if principal is not None else None,
                    "method": scope["method"],
                    "path": scope["path"],  # never the query string: search terms are personal data
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                },
            )


# Per error type: when one was last logged, and how many have not been since.
_unavailable_logged: dict[str, tuple[float, int]] = {}
UNAVAILABLE_LOG_SECONDS = 10.0


def _log_failure(scope: Scope, request_id: str, exc: Exception) -> None:
    if isinstance(exc, UNAVAILABLE_ERRORS):
        # The database not there is an outage, not this request's fault: the gate logs it once as it
        # closes and once as it reopens (canopy_svc/core/db.py), and the requests it fails log their access
        # line only. While the gate is still open (the moment before its probe notices, or no gate):
        # one line per error type every few seconds, with no stack (it shows only where the request was).
        shared = scope["state"].get("canopy")  # api/state.py
        gate = shared.gate if shared is not None else None
        if isinstance(exc, DatabaseUnavailable) or (gate is not None and not gate.is_open):
            return
        name = type(exc).__name__
        now = time.monotonic()
        last, suppressed = _unavailable_logged.get(name, (-UNAVAILABLE_LOG_SECONDS, 0))
        if now - last < UNAVAILABLE_LOG_SECONDS:
            _unavailable_logged[name] = (last, suppressed + 1)
            return
        _unavailable_logged[name] = (now, 0)
        error_log.warning(
            "database error, answered 503",
            extra={"request_id": request_id, "error_type": name, "unlogged_since_last": suppressed},
        )
        return
    # Type and stack only: exception text can carry row values (an SSN in a CHECK failure).
    stack = [f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(exc.__traceback__)]
    error_log.error(
        "request failed",
        extra={
            "request_id": request_id,
            "error_type": type(exc).__name__,
            "stack": stack[-8:],
        },
    )


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _SANE_REQUEST_ID.match(candidate):
                return candidate
            break
    # Unique, not secret: the Mersenne Twister (no syscall, unlike uuid4's urandom).
    return f"{random.getrandbits(128):032x}"
