"""Identifiers the service makes: customer ids, client ids, external ids, secrets."""

from __future__ import annotations

import secrets
import uuid

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def base62_id(length: int = 24) -> str:
    """Like Canopy's `31mNprzLd2bKl6koVna68ARM`: 24 chars of base62 (~143 bits) from a CSPRNG."""
    return "".join(secrets.choice(BASE62) for _ in range(length))


def new_customer_id() -> str:
    return base62_id(24)


def new_client_id() -> str:
    return "cli_" + base62_id(20)


def new_client_secret() -> str:
    return secrets.token_urlsafe(32)


def new_idempotency_uuid() -> str:
    return str(uuid.uuid4())
