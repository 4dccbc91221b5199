"""Pins what canopy_svc.wire.errors exports: every layer raises these, so a rename or a changed status/code is
a contract change and must be made here on purpose."""

from __future__ import annotations

import inspect
import json

import msgspec
import pytest

from canopy_svc.wire import errors

EXPORTED = {
    "ApiError", "BadRequest", "Unauthorized", "NotAuthorized", "Forbidden", "NotFound", "MethodNotAllowed", "Conflict",
    "DuplicateCustomer", "IdempotencyInProgress", "PayloadTooLarge", "UnsupportedMediaType", "InvalidInput",
    "IdempotencyKeyReused", "RateLimited", "ServerError", "Unavailable",
    "ErrorDetail", "ErrorBody", "ErrorEnvelope", "detail",
}  # fmt: skip

# (class, status, code, parent) as CONTRACT section 1 names them.
ERRORS = [
    ("BadRequest", 400, "bad_request", "ApiError"),
    ("Unauthorized", 401, "unauthorized", "ApiError"),
    ("NotAuthorized", 403, "not_authorized", "ApiError"),
    ("Forbidden", 403, "forbidden", "ApiError"),
    ("NotFound", 404, "not_found", "ApiError"),
    ("MethodNotAllowed", 405, "method_not_allowed", "ApiError"),
    ("Conflict", 409, "conflict", "ApiError"),
    ("DuplicateCustomer", 409, "duplicate_customer", "Conflict"),
    ("IdempotencyInProgress", 409, "idempotency_in_progress", "Conflict"),
    ("PayloadTooLarge", 413, "payload_too_large", "ApiError"),
    ("UnsupportedMediaType", 415, "unsupported_media_type", "ApiError"),
    ("InvalidInput", 422, "invalid_input", "ApiError"),
    ("IdempotencyKeyReused", 422, "idempotency_key_reused", "ApiError"),
    ("RateLimited", 429, "rate_limited", "ApiError"),
    ("ServerError", 500, "server_error", "ApiError"),
    ("Unavailable", 503, "unavailable", "ApiError"),
]


def public_names() -> set[str]:
    """Names defined by canopy_svc.wire.errors itself (not imported into it), without a leading underscore."""
    names = set()
    for name, value in vars(errors).items():
        if name.startswith("_"):
            continue
        if (inspect.isclass(value) or inspect.isfunction(value)) and value.__module__ == errors.__name__:
            names.add(name)
    return names


def test_exported_names_are_pinned() -> None:
    assert public_names() == EXPORTED
    if hasattr(errors, "__all__"):
        assert set(errors.__all__) == EXPORTED


def test_api_error_defaults() -> None:
    assert issubclass(errors.ApiError, Exception)
    assert (errors.ApiError.status, errors.ApiError.code) == (500, "server_error")
    error = errors.ApiError()
    assert error.message and error.details == [] and error.headers == {}


@pytest.mark.parametrize(("name", "status", "code", "parent"), ERRORS)
def test_each_error_has_its_status_code_and_parent(name: str, status: int, code: str, parent: str) -> None:
    cls = getattr(errors, name)
    assert cls.status == status
    assert cls.code == code
    assert cls.__bases__ == (getattr(errors, parent),)
    assert isinstance(cls.message, str) and cls.message


def make(name: str) -> errors.ApiError:
    cls = getattr(errors, name)
    if name == "InvalidInput":
        return cls([errors.detail("", "required", {"missingProperty": "x"}, "must have required property x")])
    if name == "DuplicateCustomer":
        return cls([{"code": "duplicate_email", "field": "email", "customer_id": "c1", "message": "m"}])
    if name == "RateLimited":
        return cls(3)
    instance: errors.ApiError = cls()
    return instance


@pytest.mark.parametrize("name", [e[0] for e in ERRORS])
def test_each_error_renders_the_envelope(name: str) -> None:
    error = make(name)
    body = json.loads(error.body())
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == error.code
    assert body["error"]["message"] == error.message
    if name == "DuplicateCustomer":
        assert set(body) == {"error", "warnings"}
        assert body["warnings"][0]["code"] == "duplicate_email"
    else:
        assert set(body) == {"error"}


def test_custom_message_is_kept() -> None:
    assert errors.NotFound("No customer found").message == "No customer found"
    assert json.loads(errors.NotFound("No customer found").body())["error"]["message"] == "No customer found"


def test_headers_of_errors() -> None:
    assert errors.Unauthorized().headers == {"WWW-Authenticate": "Bearer"}
    assert errors.RateLimited(7).headers["Retry-After"] == "7"
    assert errors.RateLimited(0).headers["Retry-After"] == "1"  # whole seconds, >= 1
    assert errors.RateLimited(2, headers={"RateLimit-Limit": "100"}).headers["RateLimit-Limit"] == "100"
    assert int(errors.Unavailable().headers["Retry-After"]) >= 1
    assert errors.Unavailable(0).headers["Retry-After"] == "1"


def test_invalid_input_details_are_ajv_shaped() -> None:
    item = errors.detail("/a/0/b", "enum", {"allowedValues": ["X"]}, "must be equal to one of the allowed values")
    assert msgspec.to_builtins(item) == {
        "instancePath": "/a/0/b",
        "keyword": "enum",
        "params": {"allowedValues": ["X"]},
        "message": "must be equal to one of the allowed values",
    }
    body = json.loads(errors.InvalidInput([item]).body())
    assert body["error"]["details"] == [msgspec.to_builtins(item)]
    assert body["error"]["code"] == "invalid_input"
