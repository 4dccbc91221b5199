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
from dataclasses import dataclass
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api.body import read_json_body
from canopy_svc.api.requests import cipher, pool, principal
from canopy_svc.api.responses import JSONResponse, encode
from canopy_svc.crypto import DataCipher
from canopy_svc.errors import ApiError, BadRequest, IdempotencyInProgress, IdempotencyKeyReused
from canopy_svc.store import idempotency

Work = Callable[[asyncpg.Connection, bytes], Awaitable[Any]]

_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")  # 1-255 printable ASCII characters

IN_PROGRESS = 0  # the status of a placeholder answer (api/phased_writes.py): the request is still running


def keepable(error: ApiError) -> bool:
    """Whether an error is an answer to remember under the key: a 5xx or 429 says "try again"."""
    return error.status < 500 and error.status != 429


@dataclass(frozen=True)
class KeyedRequest:
    """A write sent with an Idempotency-Key: claimed, then answered, in the caller's transactions."""

    org_id: int
    key: str
    fingerprint: bytes
    cipher: DataCipher

    @classmethod
    def of(cls, request: Request, body: bytes) -> KeyedRequest | None:
        """None without the header; a malformed key is a 400."""
        key = request.headers.get("idempotency-key")
        if key is None:
            return None
        if not _KEY.match(key):
            raise BadRequest("Idempotency-Key must be 1-255 printable characters")
        data_cipher = cipher(request)
        return cls(principal(request).org_id, key,
                   idempotency.fingerprint(data_cipher, request.method, request.url.path, body), data_cipher)

    async def claim(self, conn: asyncpg.Connection, *, lease_seconds: float | None = None) -> Response | None:
        """Takes the key for this transaction: the stored answer to replay, or None to do the work.

        A request still running under the key is a 409; so is an in-progress placeholder younger than
        `lease_seconds` (older, its request died between phases and this one takes it over)."""
        if not await idempotency.try_lock(conn, self.org_id, self.key):
            raise IdempotencyInProgress()
        stored = await idempotency.fetch(conn, self.org_id, self.key, cipher=self.cipher)
        if stored is None:
            return None
        if stored["request_hash"] != self.fingerprint:
            raise IdempotencyKeyReused()
        if stored["status"] == IN_PROGRESS:
            if lease_seconds is None or stored["age_seconds"] < lease_seconds:
                raise IdempotencyInProgress()
            return None
        return Response(stored["body"], status_code=stored["status"], media_type="application/json",
                        headers={"Idempotent-Replayed": "true"})

    async def remember(self, conn: asyncpg.Connection, status: int, answer: bytes) -> None:
        await idempotency.store(conn, self.org_id, self.key, self.fingerprint, status, answer, cipher=self.cipher)

    async def forget(self, conn: asyncpg.Connection) -> None:
        await idempotency.forget(conn, self.org_id, self.key)


async def write(request: Request, work: Work, *, atomic: bool = True) -> Response:
    """Runs `work(conn, body)` in one transaction and answers its result as JSON: on any error
    nothing it wrote is kept. `atomic=False` is for work that is atomic by itself (one statement, or
    its own transaction when it needs more): it saves the BEGIN and COMMIT round trips."""
    body = await read_json_body(request)
    keyed = KeyedRequest.of(request, body)
    if keyed is None:
        async with pool(request).acquire() as conn:
            if not atomic:
                return JSONResponse(await work(conn, body))
            async with conn.transaction():
                result = await work(conn, body)
        return JSONResponse(result)
    async with pool(request).acquire() as conn, conn.transaction():
        replay = await keyed.claim(conn)
        if replay is not None:
            return replay
        try:
            async with conn.transaction():  # a savepoint: a refused request keeps none of its work
                status, answer = 200, encode(await work(conn, body))
        except ApiError as error:
            if not keepable(error):
                raise  # not an answer to remember: the client should try again
            status, answer = error.status, error.body()
        await keyed.remember(conn, status, answer)
    return Response(answer, status_code=status, media_type="application/json")
