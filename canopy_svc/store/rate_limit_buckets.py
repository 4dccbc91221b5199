"""SQL for rate_limit_buckets: the GCRA's TATs shared by every process (canopy_svc/rules/ratelimit.py)."""

from __future__ import annotations

import asyncpg

# One round trip, atomic per key: ON CONFLICT locks the row, and the SET sees the latest committed
# TAT even under READ COMMITTED. It first gives back `returned` tokens taken earlier and not spent
# (each moves the TAT back by T, never before now: a full bucket stays full), then takes up to
# `wanted` at once: GCRA with a cost, each token moving the TAT by T, as many granted as fit under
# the bound. With wanted = 1 and nothing returned it is the plain GCRA step. Every SET expression
# reads the old row, so `granted` and `tat` agree; `granted` is stored because RETURNING only sees
# the new row. The clock is the database's, read once in a materialised CTE, so hosts with skewed
# clocks agree. $1 key, $2 emission interval T, $3 burst*T + slack, $4 wanted (1..burst), $5 returned.
_TAKE_SQL = """\
WITH c AS (
    SELECT extract(epoch FROM clock_timestamp())::double precision AS now, $2::double precision AS t,
           $3::double precision AS bound, $4::double precision AS wanted, $5::double precision AS returned
)
INSERT INTO rate_limit_buckets AS b (key, tat, allowed, granted)
SELECT $1, c.now + c.t * least(c.wanted, floor(c.bound / c.t)), true,
       least(c.wanted, floor(c.bound / c.t))::integer FROM c
ON CONFLICT (key) DO UPDATE SET (granted, tat, allowed) = (
    SELECT g.n, x.base + c.t * g.n, g.n > 0
    FROM c,
         LATERAL (SELECT greatest(b.tat - c.returned * c.t, c.now) AS base) x,
         LATERAL (SELECT greatest(0, least(c.wanted, floor((c.bound - (x.base - c.now)) / c.t)))::integer AS n) g
)
RETURNING b.granted, b.tat, (SELECT now FROM c) AS now"""

_PURGE_SQL = """\
DELETE FROM rate_limit_buckets WHERE tat < extract(epoch FROM clock_timestamp())::double precision"""


async def take(
    pool: asyncpg.Pool, key: str, *, interval: float, bound: float, wanted: int, returned: int
) -> tuple[int, float, float]:
    """One atomic decision on the key's bucket: (tokens granted, the TAT after it, the database's now)."""
    row = await pool.fetchrow(_TAKE_SQL, key, interval, bound, wanted, returned)
    assert row is not None  # INSERT ... ON CONFLICT DO UPDATE always returns the row
    return row["granted"], row["tat"], row["now"]


async def purge_expired(pool: asyncpg.Pool) -> int:
    """Deletes the full buckets (the same as absent ones); how many."""
    status = await pool.execute(_PURGE_SQL)
    return int(status.split()[-1])
