"""Every POST, PUT and PATCH runs here: the body checked first, then one request, one transaction, and
its Idempotency-Key (the rules of keys: rules/idempotency.py).

The body is decoded and checked before a pooled connection is taken: a refused body, however large,
holds none. With a key, a refused body is still an answer under the key, as a refusal by the work is:
a repeat gets it back (`Idempotent-Replayed`), another request under the key is refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api.body import read_json_body
from canopy_svc.api.requests import cipher, pool, principal
from canopy_svc.api.responses import JSONResponse, encode
from canopy_svc.core.dbtypes import Conn
from canopy_svc.rules.idempotency import Answer, IdempotencyKey, keepable
from canopy_svc.wire.errors import ApiError

Payload = TypeVar("Payload")
Parse = Callable[[bytes], Payload]  # decodes and checks a body: raises ApiError (400, 422) to refuse it


def idempotency_key(request: Request, body: bytes) -> IdempotencyKey | None:
    """None without the header; a malformed key is a 400."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    return IdempotencyKey.of(principal(request).org_id, key, request.method, request.url.path, body, cipher(request))


def parsed(parse: Parse[Payload], body: bytes, keyed: IdempotencyKey | None) -> tuple[Payload, ApiError | None]:
    """`parse(body)`, with no connection taken. Refused: raised without a key; with one, the refusal is
    given back to be answered under the key, after the claim (a repeat is replayed, another body under
    the key refused), as a refusal by the work would be."""
    try:
        return parse(body), None
    except ApiError as refusal:
        if keyed is None:
            raise
        return cast(Payload, None), refusal


def replayed(answer: Answer) -> Response:
    return Response(
        answer.body, status_code=answer.status, media_type="application/json", headers={"Idempotent-Replayed": "true"}
    )


async def write(
    request: Request,
    parse: Parse[Payload],
    work: Callable[[Conn, Payload], Awaitable[Any]],
    *,
    atomic: bool = True,
    bodyless: bool = False,
    status_code: int = 200,
) -> Response:
    """Runs `work(conn, parse(body))` in one transaction and answers its result as JSON: on any error
    nothing it wrote is kept. `atomic=False` is for work that is atomic by itself (one statement, or
    its own transaction when it needs more): it saves the BEGIN and COMMIT round trips. `bodyless` is
    for a DELETE: no body is read (nor its media type asked), `parse` gets b"", and an Idempotency-Key
    still makes a retried delete get its first answer back instead of a 404. `status_code` is a
    success's (a replay answers it too)."""
    body = b"" if bodyless else await read_json_body(request)
    keyed = idempotency_key(request, body)
    payload, refusal = parsed(parse, body, keyed)
    if keyed is None:
        async with pool(request).acquire() as conn:
            if not atomic:
                return JSONResponse(await work(conn, payload), status_code=status_code)
            async with conn.transaction():
                result = await work(conn, payload)
        return JSONResponse(result, status_code=status_code)
    async with pool(request).acquire() as conn, conn.transaction():
        replay = await keyed.claim(conn)
        if replay is not None:
            return replayed(replay)
        try:
            if refusal is not None:
                raise refusal
            async with conn.transaction():  # a savepoint: a refused request keeps none of its work
                status, answer = status_code, encode(await work(conn, payload))
        except ApiError as error:
            if not keepable(error):
                raise  # not an answer to remember: the client should try again
            status, answer = error.status, error.body()
        await keyed.remember(conn, status, answer)
    return Response(answer, status_code=status, media_type="application/json")
