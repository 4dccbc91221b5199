"""API clients' rate limits (columns of api_clients; the clients themselves are in organizations.py)."""

from __future__ import annotations

from canopy_svc.core.dbtypes import Queryable

# The columns' defaults in schema.sql; also what a request gets when its client's row cannot be read.
DEFAULT_RATE_PER_SECOND = 100.0
DEFAULT_BURST = 100


async def limits(conn: Queryable, client_id: str) -> tuple[float, int] | None:
    """The client's (rate per second, burst), or None when there is no such client."""
    row = await conn.fetchrow("SELECT rate_per_second, burst FROM api_clients WHERE client_id = $1", client_id)
    return None if row is None else (row["rate_per_second"], row["burst"])


async def set_limits(
    conn: Queryable, client_id: str, *, rate: float | None = None, burst: int | None = None
) -> tuple[float, int] | None:
    """Change the client's rate and/or burst (None keeps it); the new values, or None if no such client."""
    row = await conn.fetchrow(
        """UPDATE api_clients SET rate_per_second = coalesce($2, rate_per_second), burst = coalesce($3, burst)
           WHERE client_id = $1 RETURNING rate_per_second, burst""",
        client_id,
        rate,
        burst,
    )
    return None if row is None else (row["rate_per_second"], row["burst"])
