"""What handlers read from a request: the caller's principal and the shared resources (api/state.py)."""

from __future__ import annotations

import asyncpg
from starlette.requests import Request

from canopy_svc.api.state import Resources, state_of
from canopy_svc.core.crypto import DataCipher
from canopy_svc.rules.cursors import CursorCodec
from canopy_svc.rules.tokens import Principal, TokenAuthority


def principal(request: Request) -> Principal:
    found: Principal = request.scope["state"]["principal"]
    return found


def resources(request: Request) -> Resources:
    return state_of(request.scope).resources


def pool(request: Request) -> asyncpg.Pool:
    return state_of(request.scope).pool


def cursors(request: Request) -> CursorCodec:
    return resources(request).cursors


def tokens(request: Request) -> TokenAuthority:
    return resources(request).tokens


def cipher(request: Request) -> DataCipher:
    return resources(request).cipher
