"""Organizations and their API clients."""

from __future__ import annotations

import asyncpg


async def get_or_create_organization(conn: asyncpg.Connection, name: str) -> int:
    org_id: int | None = await conn.fetchval(
        """INSERT INTO organizations (name) VALUES ($1)
           ON CONFLICT (name) DO NOTHING RETURNING id""",
        name,
    )
    if org_id is None:
        org_id = await conn.fetchval("SELECT id FROM organizations WHERE name = $1", name)
    assert org_id is not None
    return org_id


async def insert_client(
    conn: asyncpg.Connection, org_id: int, client_id: str, secret_hash: str, scopes: str
) -> None:
    await conn.execute(
        "INSERT INTO api_clients (client_id, org_id, secret_hash, scopes) VALUES ($1, $2, $3, $4)",
        client_id, org_id, secret_hash, scopes,
    )


async def find_client(conn: asyncpg.Connection | asyncpg.Pool, client_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT client_id, org_id, secret_hash, scopes FROM api_clients WHERE client_id = $1", client_id
    )
