"""Organizations and their API clients."""

from __future__ import annotations

import asyncpg

from canopy_svc.core.dbtypes import Conn, Queryable


async def get_or_create_organization(conn: Conn, name: str) -> int:
    org_id: int | None = await conn.fetchval(
        """INSERT INTO organizations (name) VALUES ($1)
           ON CONFLICT (name) DO NOTHING RETURNING id""",
        name,
    )
    if org_id is None:
        org_id = await find_organization(conn, name)
    assert org_id is not None
    return org_id


async def insert_client(conn: Conn, org_id: int, client_id: str, secret_hash: str, scopes: str) -> None:
    await conn.execute(
        "INSERT INTO api_clients (client_id, org_id, secret_hash, scopes) VALUES ($1, $2, $3, $4)",
        client_id,
        org_id,
        secret_hash,
        scopes,
    )


async def find_client(conn: Queryable, client_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT client_id, org_id, secret_hash, scopes FROM api_clients WHERE client_id = $1", client_id
    )


async def set_lithic_config(
    conn: Conn, org_id: int, encrypted_key: bytes | None, last_four: str | None, base_url: str | None
) -> None:
    await conn.execute(
        """UPDATE organizations SET lithic_api_key_encrypted = $2, lithic_api_key_last_four = $3,
               lithic_base_url = $4 WHERE id = $1""",
        org_id,
        encrypted_key,
        last_four,
        base_url,
    )


async def set_lithic_account_holders(conn: Queryable, org_id: int, config_json: str | None) -> None:
    """The account holder setting of the Lithic config (its JSON; None: off)."""
    await conn.execute("UPDATE organizations SET lithic_account_holders = $2::jsonb WHERE id = $1", org_id, config_json)


async def set_simulator_account_holders(conn: Queryable, org_id: int, config_json: str | None) -> None:
    """The simulator's account holder setting (its JSON; None: off)."""
    await conn.execute(
        "UPDATE organizations SET simulator_account_holders = $2::jsonb WHERE id = $1", org_id, config_json
    )


async def lithic_config(conn: Queryable, org_id: int) -> asyncpg.Record:
    record = await conn.fetchrow(
        """SELECT lithic_api_key_encrypted, lithic_api_key_last_four, lithic_base_url,
                  lithic_account_holders::text AS lithic_account_holders,
                  simulator_account_holders::text AS simulator_account_holders
           FROM organizations WHERE id = $1""",
        org_id,
    )
    assert record is not None
    return record


async def set_lithic_webhook_secret(
    conn: Queryable, org_id: int, encrypted: bytes | None, last_four: str | None
) -> None:
    await conn.execute(
        """UPDATE organizations SET lithic_webhook_secret_encrypted = $2, lithic_webhook_secret_last_four = $3
           WHERE id = $1""",
        org_id,
        encrypted,
        last_four,
    )


async def lithic_webhook_secret_last_four(conn: Queryable, org_id: int) -> str | None:
    """The last four characters of the organization's Lithic webhook secret (None: none set)."""
    last_four: str | None = await conn.fetchval(
        """SELECT lithic_webhook_secret_last_four FROM organizations
           WHERE id = $1 AND lithic_webhook_secret_encrypted IS NOT NULL""",
        org_id,
    )
    return last_four


async def duplicate_policy(conn: Queryable, org_id: int) -> str:
    policy: str = await conn.fetchval("SELECT duplicate_customer_policy FROM organizations WHERE id = $1", org_id)
    return policy


async def set_duplicate_policy(conn: Queryable, org_id: int, policy: str) -> None:
    await conn.execute("UPDATE organizations SET duplicate_customer_policy = $2 WHERE id = $1", org_id, policy)


async def find_organization(conn: Conn, name: str) -> int | None:
    org_id: int | None = await conn.fetchval("SELECT id FROM organizations WHERE name = $1", name)
    return org_id
