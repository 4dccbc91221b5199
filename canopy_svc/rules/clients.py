"""Organizations' API clients: making one, finding one by its id, and its rate limits (CONTRACT section 3)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from canopy_svc.core.dbtypes import Conn, Queryable
from canopy_svc.rules.ids import new_client_id, new_client_secret
from canopy_svc.rules.passwords import hash_secret
from canopy_svc.store import api_clients, organizations

Limits = tuple[float, int]  # (requests per second, burst)

# The columns' defaults; also what a request gets when its client's row cannot be read.
DEFAULT_LIMITS: Limits = (api_clients.DEFAULT_RATE_PER_SECOND, api_clients.DEFAULT_BURST)


@dataclass(frozen=True)
class NewClient:
    """A client just made; its secret is known only now (stored as a hash)."""

    org: str
    client_id: str
    client_secret: str
    limits: Limits


async def create_client(
    conn: Conn, org: str, scopes: str, *, rate: float | None = None, burst: int | None = None
) -> NewClient:
    """A client of `org` (made if new), in the caller's transaction."""
    org_id = await organizations.get_or_create_organization(conn, org)
    client_id, secret = new_client_id(), new_client_secret()
    await organizations.insert_client(conn, org_id, client_id, hash_secret(secret), scopes)
    limits = await api_clients.set_limits(conn, client_id, rate=rate, burst=burst)
    assert limits is not None  # inserted just above
    return NewClient(org, client_id, secret, limits)


async def find_client(conn: Queryable, client_id: str) -> asyncpg.Record | None:
    """The client's client_id, org_id, secret_hash and scopes, or None."""
    return await organizations.find_client(conn, client_id)


async def limits(conn: Queryable, client_id: str) -> Limits | None:
    """The client's (rate, burst), or None when there is no such client."""
    return await api_clients.limits(conn, client_id)


async def set_limits(
    conn: Queryable, client_id: str, *, rate: float | None = None, burst: int | None = None
) -> Limits | None:
    """Changes the client's rate and/or burst (None keeps it); the new ones, or None if no such client."""
    return await api_clients.set_limits(conn, client_id, rate=rate, burst=burst)
