"""The keyset part of every listing's SQL: one place says how a page starts and how far it reads."""

from __future__ import annotations

from typing import Any


def page_bounds(column: str, args: list[Any], *, limit: int, after: int | None,
                before: int | None) -> tuple[str, str]:
    """Appends the position and limit+1 (the extra row says has_more) to `args`; returns the
    condition and the `ORDER BY ... LIMIT ...` tail. Going backwards (`before`) reads in
    descending order; the caller reverses."""
    args.append(before if before is not None else after or 0)
    condition = f"{column} {'<' if before is not None else '>'} ${len(args)}"
    args.append(limit + 1)
    return condition, f"ORDER BY {column} {'DESC' if before is not None else 'ASC'} LIMIT ${len(args)}"
