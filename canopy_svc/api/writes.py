"""Every POST, PUT and PATCH runs here: one request, one transaction, and its Idempotency-Key.

With an Idempotency-Key (scoped to the organization) the transaction first takes a transaction-level
advisory lock on the key: held, it means the first request still runs (409); it goes away with that
transaction however it ends, crash included, so a key is never stuck "in progress". The answer, errors
included but not a 5xx or 429, is stored (encrypted: it may hold an SSN) in the same transaction as
the work: a crash leaves both or neither. A repeat with the same method, path and body gets the stored answer back.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api.body import read_json_body
from canopy_svc.api.requests import cipher, pool, principal
from canopy_svc.api.responses import JSONResponse, encode
from canopy_svc.errors import ApiError, BadRequest, IdempotencyInProgress, IdempotencyKeyReused
from canopy_svc.store import idempotency

Work = Callable[[asyncpg.Connection, bytes], Awaitable[Any]]

_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")  # 1-255 printable ASCII characters


def check_idempotency_key(key: str) -> None:
    if not _KEY.match(key):
        raise BadRequest("Idempotency-Key must be 1-255 printable characters")


async def write(request: Request, work: Work, *, atomic: bool = True) -> Response:
    """Runs `work(conn, body)` in one transaction and answers its result as JSON: on any error
    nothing it wrote is kept. `atomic=False` is for work that is atomic by itself (one statement, or
    its own transaction when it needs more): it saves the BEGIN and COMMIT round trips."""
    body = await read_json_body(request)
    key = request.headers.get("idempotency-key")
    if key is None:
        async with pool(request).acquire() as conn:
            if not atomic:
                return JSONResponse(await work(conn, body))
            async with conn.transaction():
                result = await work(conn, body)
        return JSONResponse(result)
    check_idempotency_key(key)
    org_id, data_cipher = principal(request).org_id, cipher(request)
    fingerprint = idempotency.fingerprint(data_cipher, request.method, request.url.path, body)
    async with pool(request).acquire() as conn, conn.transaction():
        if not await idempotency.try_lock(conn, org_id, key):
            raise IdempotencyInProgress()
        stored = await idempotency.fetch(conn, org_id, key, cipher=data_cipher)
        if stored is not None:
            if stored["request_hash"] != fingerprint:
                raise IdempotencyKeyReused()
            return Response(stored["body"], status_code=stored["status"], media_type="application/json",
                            headers={"Idempotent-Replayed": "true"})
        try:
            async with conn.transaction():  # a savepoint: a refused request keeps none of its work
                status, answer = 200, encode(await work(conn, body))
        except ApiError as error:
            if error.status >= 500 or error.status == 429:
                raise  # not an answer to remember: the client should try again
            status, answer = error.status, error.body()
        await idempotency.store(conn, org_id, key, fingerprint, status, answer, cipher=data_cipher)
    return Response(answer, status_code=status, media_type="application/json")
