"""Writes that call the outside world (Lithic) between two transactions, with their Idempotency-Key.

`write` (api/writes.py) runs a request in one transaction. A request that must call Lithic cannot:
row locks and a pooled connection held across a call of up to the Lithic timeout let a slow Lithic
hold every connection. So it runs in phases, each short:

0. parse the body, with no connection held (a refused body takes none, as in `write`);
1. begin, in a transaction: check the request, lock and read the rows, record the intent, commit;
2. call, with no connection held;
3. finish (or abandon, when the call failed), in a transaction: record the result.

A crash between phases leaves the intent recorded, with the time it was recorded: the next attempt
(the client's retry, or the card worker's sweep) finishes it once that lease has run out.

With an Idempotency-Key, phase 1 also stores a placeholder answer (status 0) under the key, which
says "in progress" to a repeat (409) until phase 3 replaces it with the answer, or the lease runs
out and the repeat takes the request over. A 5xx or 429 answer is never kept: the placeholder goes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api.body import read_json_body
from canopy_svc.api.requests import pool
from canopy_svc.api.responses import JSONResponse, encode, error_response
from canopy_svc.api.writes import Parse, idempotency_key, parsed, replayed
from canopy_svc.core.dbtypes import Conn
from canopy_svc.rules.idempotency import IN_PROGRESS, keepable
from canopy_svc.wire.errors import ApiError

Payload = TypeVar("Payload")
Intent = TypeVar("Intent")
Outcome = TypeVar("Outcome")


@dataclass(frozen=True)
class Phases(Generic[Payload, Intent, Outcome]):
    parse: Parse[Payload]
    begin: Callable[[Conn, Payload], Awaitable[Intent]]
    # The answer when begin already did everything (nothing to call), else None.
    done: Callable[[Intent], Any | None]
    call: Callable[[Intent], Awaitable[Outcome]]  # raises ApiError when the call fails
    finish: Callable[[Conn, Intent, Outcome], Awaitable[Any]]
    # Given the call's error: a call whose outcome is unknown may keep its intent for a later sweep.
    abandon: Callable[[Conn, Intent, ApiError], Awaitable[None]]
    lease_seconds: float


async def write_in_phases(request: Request, phases: Phases[Payload, Intent, Outcome]) -> Response:
    body = await read_json_body(request)
    keyed = idempotency_key(request, body)
    payload, refusal = parsed(phases.parse, body, keyed)

    # Phase 1: check, lock, record the intent (and the placeholder), commit.
    async with pool(request).acquire() as conn, conn.transaction():
        if keyed is not None:
            replay = await keyed.claim(conn, lease_seconds=phases.lease_seconds)
            if replay is not None:
                return replayed(replay)
        try:
            if refusal is not None:
                raise refusal
            async with conn.transaction():  # a savepoint: a refused request keeps none of its work
                intent = await phases.begin(conn, payload)
        except ApiError as error:
            if keyed is None or not keepable(error):
                raise
            await keyed.remember(conn, error.status, error.body())
            return error_response(error)
        answer = phases.done(intent)
        if answer is not None:
            if keyed is None:
                return JSONResponse(answer)
            encoded = encode(answer)
            await keyed.remember(conn, 200, encoded)
            return Response(encoded, media_type="application/json")
        if keyed is not None:
            await keyed.remember(conn, IN_PROGRESS, b"")

    # Phase 2: the call, holding nothing.
    try:
        outcome = await phases.call(intent)
    except ApiError as error:
        async with pool(request).acquire() as conn, conn.transaction():
            await phases.abandon(conn, intent, error)
            if keyed is not None:
                if keepable(error):
                    await keyed.remember(conn, error.status, error.body())
                else:
                    await keyed.forget(conn)
        raise

    # Phase 3: record the result, and the answer under the key.
    async with pool(request).acquire() as conn, conn.transaction():
        result = encode(await phases.finish(conn, intent, outcome))
        if keyed is not None:
            await keyed.remember(conn, 200, result)
    return Response(result, media_type="application/json")
