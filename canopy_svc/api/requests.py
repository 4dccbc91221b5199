"""What handlers read from a request: the caller's principal and the shared resources."""

from __future__ import annotations

import asyncpg
from starlette.requests import Request

from canopy_svc.crypto import DataCipher
from canopy_svc.rules.cursors import CursorCodec
from canopy_svc.rules.tokens import Principal, TokenAuthority


def principal(request: Request) -> Principal:
    found: Principal = request.scope["state"]["principal"]
    return found


def pool(request: Request) -> asyncpg.Pool:
    found: asyncpg.Pool = request.app.state.pool
    return found


def cursors(request: Request) -> CursorCodec:
    found: CursorCodec = request.app.state.cursors
    return found


def tokens(request: Request) -> TokenAuthority:
    found: TokenAuthority = request.app.state.tokens
    return found


def cipher(request: Request) -> DataCipher:
    found: DataCipher = request.app.state.cipher
    return found
