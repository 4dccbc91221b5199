"""The keyset part of every listing's SQL: one place says how a page starts and how far it reads.

A page must read its limit+1 index entries from the cursor on, under every plan: custom or generic
(asyncpg prepares every statement), on a table never analyzed as on an analyzed one. Two ways the
planner otherwise reads a whole organization for one page, both seen in EXPLAIN:

- `WHERE org_id = $1 AND id > $2 ORDER BY id` is also answered by walking the primary key (id alone)
  and filtering on org_id: the planner takes a tenant's rows to be spread evenly over the table, so
  for a small tenant, or a page whose next rows are another tenant's, it reads every row between.
  Here the group is compared with `= ANY(ARRAY[...])`, which PostgreSQL does not turn into a constant
  of the query, so `ORDER BY group, key` stays an order that only the (group, key) index gives.
- Told the page size, and guessing few matches (no statistics yet, or 1/n of a column's distinct
  values in a generic plan), the planner collects every match with a bitmap scan and sorts them.
  The limit is given as `(SELECT $n)`, a value the planner cannot see, for which it plans to read
  the first rows of an ordered index walk and stop.
"""

from __future__ import annotations

from typing import Any


def page_bounds(
    group: str, key: str, args: list[Any], *, group_value: int, limit: int, after: int | None, before: int | None
) -> tuple[str, str]:
    """Appends the group's value, the position and limit+1 (the extra row says has_more) to `args`;
    returns the condition (`group` equal to the value, `key` past the position) and the
    `ORDER BY group, key LIMIT ...` tail. An index on (group, key) must exist. Going backwards
    (`before`) reads in descending order; the caller reverses."""
    args.append(group_value)
    group_condition = f"{group} = ANY(ARRAY[${len(args)}::bigint])"
    args.append(before if before is not None else after or 0)
    condition = f"{group_condition} AND {key} {'<' if before is not None else '>'} ${len(args)}"
    args.append(limit + 1)
    direction = "DESC" if before is not None else "ASC"
    return condition, f"ORDER BY {group} {direction}, {key} {direction} LIMIT (SELECT ${len(args)}::int)"


def each_key(keys: str, rows: str, order: str) -> str:
    """`rows` (a SELECT comparing its key with `wanted.key`) for each of the keys in the array
    parameter `keys` (distinct: a key given twice is answered twice), ordered by `order` (a column of
    `rows`, as `matched.<name>`): what a page's rows need beside them (their accounts, links, cards),
    looked up key by key through the index on that key.

    Written as a join (`key = ANY(keys)`, or against unnest), it is planned from estimates: with no
    statistics a table is taken to hold thousands of rows per key, and the planner reads all of it
    with a sequential scan and a hash join; with statistics it has walked a primary key to merge.
    Here each key is a LATERAL subquery of its own (OFFSET 0 keeps it from being merged into the
    join), which the planner can only answer by a lookup of that key.
    """
    return (
        f"SELECT matched.* FROM unnest({keys}) AS wanted(key) "
        f"CROSS JOIN LATERAL ({rows} OFFSET 0) matched ORDER BY {order}"
    )
