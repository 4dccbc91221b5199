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

# Token requests are limited far below API calls (CONTRACT section 3): each costs one scrypt (tens of
# milliseconds of CPU and 16 MiB), and secrets must not be guessable at speed. A well-behaved client
# needs one token per process per hour (expires_in 3600), so:
# - per client_id: burst 10, then one every 6 s (10 a minute). Room for a fleet of workers or hosts
#   restarting together; a guesser gets at most 14,400 tries a day at one client's 256-bit secret.
# - per source address: burst 30, then 1 per second. Several services behind one address can log in
#   at once, while spraying guesses over many client_ids from one address gets one scrypt a second.
# Both are checked before the secret is (the address even before the body is read), so a flood is
# answered 429 without burning CPU. The address is the TCP peer (uvicorn runs with proxy_headers off):
# behind a reverse proxy every caller shares the proxy's address and its 1/s.
TOKEN_CLIENT_RATE, TOKEN_CLIENT_BURST = 10 / 60, 10
TOKEN_ADDRESS_RATE, TOKEN_ADDRESS_BURST = 1.0, 30


async def issue_token(request: Request) -> Response:
    limiting = request.app.state.rate_limiting
    address = request.client.host if request.client is not None else "unknown"
    await limiting.enforce(f"token:addr:{address}", TOKEN_ADDRESS_RATE, TOKEN_ADDRESS_BURST)
    credentials = TOKEN_DECODER.decode(await read_json_body(request))
    await limiting.enforce(f"token:client:{credentials.client_id}", TOKEN_CLIENT_RATE, TOKEN_CLIENT_BURST)
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
