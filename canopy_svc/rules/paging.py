"""Keyset paging shared by every listing: cursors in, a page and its Paging out."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from canopy_svc.rules.cursors import CursorCodec
from canopy_svc.wire.errors import BadRequest
from canopy_svc.wire.models import Paging
from canopy_svc.wire.patterns import END

MAX_LIMIT = 1000
# What cursors.py issues, 20 bytes in unpadded base64url, or empty (no cursor). Checked before the MAC,
# with this very pattern, the document's (base64's decoder would otherwise skip stray characters).
CURSOR_PATTERN = r"^(?:[A-Za-z0-9_-]{27})?" + END
_CURSOR = re.compile(CURSOR_PATTERN)


def clamp_limit(raw: str | None, default: int) -> int:
    """`limit` is clamped to 1..1000 and never rejected; garbage means the default."""
    try:
        value = int(raw) if raw is not None else default
    except ValueError:
        return default
    return min(max(value, 1), MAX_LIMIT)


@dataclass(frozen=True)
class PageRequest:
    limit: int
    starting_after: str | None
    ending_before: str | None

    @classmethod
    def from_query(cls, query: Any, default_limit: int) -> PageRequest:
        return cls(
            clamp_limit(query.get("limit"), default_limit), query.get("starting_after"), query.get("ending_before")
        )


def _decode(cursors: CursorCodec, org_id: int, kind: str, cursor: str | None, parameter: str) -> int | None:
    if not cursor:
        return None
    if _CURSOR.search(cursor) is None:
        raise BadRequest(f"Invalid {parameter} cursor")
    return cursors.decode(org_id, kind, cursor, parameter)


Fetch = Callable[[int, int | None, int | None], Awaitable[Sequence[Any]]]


async def keyset_page(
    cursors: CursorCodec,
    org_id: int,
    kind: str,
    request: PageRequest,
    fetch: Fetch,
    key: str = "id",
) -> tuple[list[Any], Paging]:
    """Runs `fetch(limit, after, before)` (which returns up to limit+1 rows, descending when
    `before` is set) and turns the rows into one page in ascending order with its cursors."""
    # An empty cursor is no cursor (`?starting_after=` from a client templating a null), for both rules.
    if request.starting_after and request.ending_before:
        raise BadRequest("Send at most one of starting_after and ending_before")
    after = _decode(cursors, org_id, kind, request.starting_after, "starting_after")
    before = _decode(cursors, org_id, kind, request.ending_before, "ending_before")
    rows = list(await fetch(request.limit, after, before))
    has_more = len(rows) > request.limit
    rows = rows[: request.limit]
    if before is not None:
        rows.reverse()
        has_previous, has_next = has_more, True
    else:
        has_previous, has_next = after is not None, has_more
    paging = Paging(
        starting_after=cursors.encode(org_id, kind, rows[-1][key]) if has_next and rows else None,
        ending_before=cursors.encode(org_id, kind, rows[0][key]) if has_previous and rows else None,
        has_more=has_more,
    )
    return rows, paging
