"""Issued in the answer when it can be (issue 13 item 7): a write that queued cards waits, after its
commit and a bounded time, for the card worker to issue them, then answers them as they then stand.

The outbox is untouched: the card is committed PENDING with the request, and only the worker (in any
process) calls Lithic, once per card. The wait holds no pooled connection (each re-read takes one for
a query) and is woken by the worker's NOTIFY (core/notify.py CardSettlements), not by polling. A
replay under the Idempotency-Key answers the stored response, the one made at the commit: its cards
as they stood then (PENDING); GET .../cards reads them as they stand now.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api.requests import pool, resources
from canopy_svc.api.responses import JSONResponse
from canopy_svc.core import notify
from canopy_svc.core.dbtypes import Conn
from canopy_svc.rules import cards
from canopy_svc.wire.errors import ApiError

Reread = Callable[[Conn, Sequence[int]], Awaitable[Any]]


async def answer_when_issued(request: Request, run: Callable[[], Awaitable[Response]], reread: Reread) -> Response:
    """`run()` (a write), then, when it succeeded and queued cards, the wait; `reread(conn, card_ids)`
    makes the answer again from the database. Without a wait, or if the re-read fails (the account
    deleted meanwhile), the write's own answer."""
    queued: list[int] = []
    token = notify.queued_cards.set(queued)
    try:
        response = await run()
    finally:
        notify.queued_cards.reset(token)
    shared = resources(request)
    timeout = shared.settings.card_issue_wait_ms / 1000
    if response.status_code != 200 or not queued or timeout <= 0 or "idempotent-replayed" in response.headers:
        return response
    connections = pool(request)

    async def pending(card_ids: Sequence[int]) -> Sequence[int]:
        async with connections.acquire() as conn:
            return await cards.cards_still_pending(conn, card_ids)

    await shared.card_settlements.wait(queued, pending, timeout)
    try:
        async with connections.acquire() as conn:
            return JSONResponse(await reread(conn, queued), status_code=response.status_code)
    except ApiError:
        return response
