"""POST /auth/token: client credentials for a bearer token."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from canopy_svc.api.body import read_json_body
from canopy_svc.api.requests import pool, tokens
from canopy_svc.api.responses import JSONResponse
from canopy_svc.errors import Unauthorized
from canopy_svc.rules.models import TokenRequest, TokenResponse
from canopy_svc.rules.passwords import DUMMY_HASH, verify_secret
from canopy_svc.rules.validation import BodyDecoder
from canopy_svc.store import organizations

TOKEN_DECODER = BodyDecoder(TokenRequest)


async def issue_token(request: Request) -> Response:
    credentials = TOKEN_DECODER.decode(await read_json_body(request))
    client = await organizations.find_client(pool(request), credentials.client_id)
    # One scrypt either way, so a missing client and a wrong secret look and take the same.
    stored_hash = client["secret_hash"] if client is not None else DUMMY_HASH
    valid = await asyncio.to_thread(verify_secret, credentials.client_secret, stored_hash)
    if client is None or not valid:
        raise Unauthorized("Invalid client credentials")
    authority = tokens(request)
    token = authority.issue(client["client_id"], client["org_id"], client["scopes"])
    return JSONResponse(TokenResponse(access_token=token, expires_in=authority.ttl_seconds))


routes = [Route("/auth/token", issue_token, methods=["POST"])]
