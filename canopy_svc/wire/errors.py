"""Every error the contract names, one class each.

The tree (status, code):

    ApiError
    ├── BadRequest ..................... 400 bad_request
    ├── Unauthorized ................... 401 unauthorized (WWW-Authenticate: Bearer)
    ├── NotAuthorized .................. 403 not_authorized
    ├── Forbidden ...................... 403 forbidden
    ├── NotFound ....................... 404 not_found
    ├── MethodNotAllowed ............... 405 method_not_allowed
    ├── Conflict ....................... 409 conflict
    │   ├── DuplicateCustomer .......... 409 duplicate_customer (carries `warnings`)
    │   └── IdempotencyInProgress ...... 409 idempotency_in_progress
    ├── PayloadTooLarge ................ 413 payload_too_large
    ├── UnsupportedMediaType ........... 415 unsupported_media_type
    ├── InvalidInput ................... 422 invalid_input (carries AJV-shaped `details`)
    ├── IdempotencyKeyReused ........... 422 idempotency_key_reused
    ├── RateLimited .................... 429 rate_limited (Retry-After)
    ├── ServerError .................... 500 server_error
    └── Unavailable .................... 503 unavailable (Retry-After)

These are the contract's words, shared by every layer: the rules raise them, the HTTP layer renders
them. Messages are fixed text or name ids the caller sent; never SQL, values of personal data or
internals.
"""

from __future__ import annotations

from typing import Any

import msgspec


class ErrorDetail(msgspec.Struct, omit_defaults=False):
    """One AJV-shaped validation problem."""

    instancePath: str  # AJV's wire name
    keyword: str
    params: dict[str, Any]
    message: str


class ErrorBody(msgspec.Struct):
    code: str
    message: str
    details: list[Any] = []


class ErrorEnvelope(msgspec.Struct, omit_defaults=True):
    error: ErrorBody
    warnings: list[Any] | None = None


_envelope_encoder = msgspec.json.Encoder()


class ApiError(Exception):
    """Base of every error answered to a client."""

    status: int = 500
    code: str = "server_error"
    message: str = "Internal server error"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or type(self).message
        self.details = details or []
        self.headers = headers or {}
        super().__init__(self.message)

    def envelope(self) -> ErrorEnvelope:
        return ErrorEnvelope(error=ErrorBody(code=self.code, message=self.message, details=self.details))

    def body(self) -> bytes:
        return _envelope_encoder.encode(self.envelope())


class BadRequest(ApiError):
    """Malformed JSON, a body that is not an object, or a bad query parameter."""

    status, code, message = 400, "bad_request", "Bad request"


class Unauthorized(ApiError):
    """No token, a malformed one, a bad signature, or the wrong issuer or audience."""

    status, code, message = 401, "unauthorized", "Unauthorized"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class NotAuthorized(ApiError):
    """An expired token; Canopy's clients re-authenticate on this code."""

    status, code, message = 403, "not_authorized", "Forbidden"


class Forbidden(ApiError):
    """A valid token lacking the scope the route needs: a code of its own, so that a client does not
    re-authenticate in a loop for a scope a new token will not have either."""

    status, code, message = 403, "forbidden", "Forbidden"


class NotFound(ApiError):
    """An unknown resource, or one that belongs to another organization."""

    status, code, message = 404, "not_found", "Not found"


class MethodNotAllowed(ApiError):
    """The path exists but not with this method."""

    status, code, message = 405, "method_not_allowed", "Method not allowed"


class Conflict(ApiError):
    """An id that already exists."""

    status, code, message = 409, "conflict", "Conflict"


class DuplicateCustomer(Conflict):
    """Duplicate-customer warnings under the organization's `block` policy."""

    code, message = "duplicate_customer", "A customer with the same details already exists"

    def __init__(self, warnings: list[Any], message: str | None = None) -> None:
        super().__init__(message)
        self.warnings = warnings

    def envelope(self) -> ErrorEnvelope:
        envelope = super().envelope()
        envelope.warnings = self.warnings
        return envelope


class IdempotencyInProgress(Conflict):
    """The same Idempotency-Key while the first request still runs."""

    code, message = "idempotency_in_progress", "A request with this Idempotency-Key is in progress"


class PayloadTooLarge(ApiError):
    status, code, message = 413, "payload_too_large", "Request body exceeds 1 MiB"


class UnsupportedMediaType(ApiError):
    status, code, message = 415, "unsupported_media_type", "Content-Type must be application/json"


class InvalidInput(ApiError):
    """Validation failed; `details` lists every problem found."""

    status, code, message = 422, "invalid_input", "Invalid input"

    def __init__(self, details: list[ErrorDetail], message: str | None = None) -> None:
        super().__init__(message, details=list(details))


class IdempotencyKeyReused(ApiError):
    """The same Idempotency-Key with a different request."""

    status, code, message = 422, "idempotency_key_reused", "Idempotency-Key was used for a different request"


class RateLimited(ApiError):
    status, code, message = 429, "rate_limited", "Too many requests"

    def __init__(self, retry_after: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(headers={**(headers or {}), "Retry-After": str(max(1, retry_after))})


class ServerError(ApiError):
    """Anything unexpected; the body never carries internals."""

    status, code, message = 500, "server_error", "Internal server error"


class Unavailable(ApiError):
    """The database cannot be reached."""

    status, code, message = 503, "unavailable", "Service temporarily unavailable"

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__(headers={"Retry-After": str(max(1, retry_after))})


def detail(instance_path: str, keyword: str, params: dict[str, Any], message: str) -> ErrorDetail:
    return ErrorDetail(instancePath=instance_path, keyword=keyword, params=params, message=message)
