"""SQL for Idempotency-Key answers."""

from __future__ import annotations

import hashlib

import asyncpg

RETENTION = "24 hours"


def _lock_id(org_id: int, key: str) -> int:
    digest = hashlib.sha256(f"idempotency:{org_id}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def try_lock(conn: asyncpg.Connection, org_id: int, key: str) -> bool:
    """The key's transaction lock: False while another transaction (the first request) holds it."""
    locked: bool = await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _lock_id(org_id, key))
    return locked


async def fetch(conn: asyncpg.Connection, org_id: int, key: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""SELECT request_hash, status, body FROM idempotency_keys
            WHERE org_id = $1 AND key = $2 AND created_at > now() - interval '{RETENTION}'""",
        org_id, key,
    )


async def store(conn: asyncpg.Connection, org_id: int, key: str, request_hash: bytes, status: int,
                body: bytes) -> None:
    # An expired answer still in the table (not yet purged) is replaced: the key is free again.
    await conn.execute(
        """INSERT INTO idempotency_keys (org_id, key, request_hash, status, body) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (org_id, key) DO UPDATE SET request_hash = excluded.request_hash,
               status = excluded.status, body = excluded.body, created_at = now()""",
        org_id, key, request_hash, status, body,
    )


async def purge_expired(conn: asyncpg.Connection | asyncpg.Pool, batch: int = 1000) -> int:
    """Deletes up to `batch` expired answers, oldest first (small batches: no long locks)."""
    result: str = await conn.execute(
        f"""DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM idempotency_keys WHERE created_at < now() - interval '{RETENTION}'
                ORDER BY created_at LIMIT $1))""",
        batch,
    )
    return int(result.split()[-1])


async def age_seconds(conn: asyncpg.Connection, org_id: int, key: str) -> float:
    """How long ago the key's answer (or its in-progress placeholder) was stored."""
    age: float = await conn.fetchval(
        "SELECT extract(epoch FROM now() - created_at)::float8 FROM idempotency_keys WHERE org_id = $1 AND key = $2",
        org_id, key,
    )
    return age


async def forget(conn: asyncpg.Connection, org_id: int, key: str) -> None:
    """Frees the key: its request ended with nothing worth remembering (a 5xx or 429)."""
    await conn.execute("DELETE FROM idempotency_keys WHERE org_id = $1 AND key = $2", org_id, key)
