"""POST /auth/token: client credentials for a bearer token."""

from __future__ import annotations

import asyncio
import ipaddress

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api.body import read_json_body
from canopy_svc.api.ratelimiting import RateLimiting, denied
from canopy_svc.api.requests import pool, resources, tokens
from canopy_svc.api.responses import JSONResponse
from canopy_svc.api.routing import Endpoint
from canopy_svc.api.state import state_of
from canopy_svc.core import metrics
from canopy_svc.rules import clients
from canopy_svc.rules.passwords import DUMMY_HASH, verify_secret
from canopy_svc.rules.validation import BodyDecoder
from canopy_svc.wire.errors import Unauthorized
from canopy_svc.wire.models import TokenRequest, TokenResponse

TOKEN_DECODER = BodyDecoder(TokenRequest)

# Failed attempts are limited (CONTRACT section 3), successes are not: each check of a secret not
# verified lately costs one scrypt (about 100 ms of CPU, 16 MiB), and secrets must not be guessable at
# speed, but whoever has the right secret must get a token however hard someone else is guessing.
#
# - A secret verified lately (RecentSecrets: 10 minutes, per process) is checked by an HMAC against
#   the client's current row: no scrypt and no budget, so a client fetching a token per job (tens a
#   second) is served, and an attacker's failures cannot lock it out.
# - Any other attempt pays a scrypt, so it is admitted only within failure budgets, all checked
#   before the database or the scrypt (a refused flood costs neither); a success gives its tokens back:
#   - per source address (IPv6: per /64, what one host is given): burst 30, then 1 per second, over
#     all client_ids. Spraying guesses from one address gets one scrypt a second.
#   - per client_id and source: one failure a minute free, so the owner, from any address that has
#     not itself failed lately, is always let try, whoever else drains the budget below.
#   - per client_id, over all sources, for every attempt beyond that: burst 10, then one every 6 s.
#     One address gets 11 quick guesses, then 10 a minute; many addresses together get one each a
#     minute plus those 10.
# The address is the TCP peer (uvicorn runs with proxy_headers off): behind a reverse proxy every
# caller shares the proxy's address, and so its per-address and free budgets.
TOKEN_ADDRESS_RATE, TOKEN_ADDRESS_BURST = 1.0, 30
TOKEN_SOURCE_FREE_RATE = 1 / 60  # burst 1
TOKEN_CLIENT_RATE, TOKEN_CLIENT_BURST = 10 / 60, 10

Budget = tuple[str, float, int]  # (key, rate, burst)


async def issue_token(request: Request) -> Response:
    credentials = TOKEN_DECODER.decode(await read_json_body(request))
    recent = resources(request).recent_secrets
    key = recent.key(credentials.client_id, credentials.client_secret)
    client = None
    if recent.known(key):
        client = await clients.find_client(pool(request), credentials.client_id)
        if client is not None and recent.matches(key, client["secret_hash"]):
            return _token_for(request, client)
    limiting = state_of(request.scope).rate_limiting
    taken = await _take_failure_budget(limiting, credentials.client_id, source_of(request))
    if client is None:
        client = await clients.find_client(pool(request), credentials.client_id)
    # One scrypt either way, so a missing client and a wrong secret look and take the same.
    stored_hash = client["secret_hash"] if client is not None else DUMMY_HASH
    valid = await asyncio.to_thread(verify_secret, credentials.client_secret, stored_hash)
    if client is None or not valid:
        metrics.token_failed("credentials")
        raise Unauthorized("Invalid client credentials")
    await _give_back(limiting, taken)  # a success is not a failure
    recent.remember(key, stored_hash)
    return _token_for(request, client)


async def _take_failure_budget(limiting: RateLimiting, client_id: str, source: str) -> list[Budget]:
    """Room for one failed attempt, or 429; the budgets taken, to give back if it succeeds."""
    address: Budget = (f"token:addr:{source}", TOKEN_ADDRESS_RATE, TOKEN_ADDRESS_BURST)
    decision = await limiting.hit(*address)
    if not decision.allowed:
        raise denied(decision, "token_address")
    # Length-prefixed: a client_id with a ":" in it must not name another client's bucket.
    free: Budget = (f"token:free:{len(client_id)}:{client_id}:{source}", TOKEN_SOURCE_FREE_RATE, 1)
    if (await limiting.hit(*free)).allowed:
        return [address, free]
    shared: Budget = (f"token:client:{client_id}", TOKEN_CLIENT_RATE, TOKEN_CLIENT_BURST)
    decision = await limiting.hit(*shared)
    if decision.allowed:
        return [address, shared]
    await limiting.give_back(*address)  # refused unchecked: not a failure either
    raise denied(decision, "token_client")


async def _give_back(limiting: RateLimiting, taken: list[Budget]) -> None:
    for budget in taken:
        await limiting.give_back(*budget)


def _token_for(request: Request, client: asyncpg.Record) -> Response:
    authority = tokens(request)
    token = authority.issue(client["client_id"], client["org_id"], client["scopes"])
    return JSONResponse(TokenResponse(access_token=token, expires_in=authority.ttl_seconds))


def source_of(request: Request) -> str:
    """The caller's address for the budgets: the TCP peer, an IPv6 one as its /64."""
    host = request.client.host if request.client is not None else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


endpoints = [
    Endpoint(
        "POST",
        "/auth/token",
        issue_token,
        "Exchange client credentials for a bearer token",
        TokenResponse,
        TokenRequest,
        public=True,
        errors=(401, 429, 500, 503),
    ),
]
