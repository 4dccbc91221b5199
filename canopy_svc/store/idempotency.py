"""SQL for Idempotency-Key answers.

An answer may hold an SSN (a created customer is answered with it), so it is kept only AES-GCM
encrypted, bound to its row (organization, key, status, request fingerprint): a blob moved to another
row does not decrypt. The fingerprint is keyed too: a plain hash of a request would let anyone who
reads the table try every SSN against it.
"""

from __future__ import annotations

import hashlib
from typing import TypedDict

from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.dbtypes import Conn, Queryable

RETENTION = "24 hours"
_FINGERPRINT_CONTEXT = b"idempotency request"


class StoredAnswer(TypedDict):
    request_hash: bytes
    status: int
    body: bytes
    age_seconds: float  # since it was stored: how long an in-progress placeholder has been waiting


def fingerprint(cipher: DataCipher, method: str, path: str, body: bytes) -> bytes:
    """What tells a repeat from another request under the same key."""
    # A keyed hash of the digest earlier versions stored, so the v3 migration converts their rows.
    return keyed_fingerprint(cipher, hashlib.sha256(b"\0".join((method.encode(), path.encode(), body))).digest())


def keyed_fingerprint(cipher: DataCipher, digest: bytes) -> bytes:
    return cipher.keyed_hash(digest, context=_FINGERPRINT_CONTEXT)


def answer_context(org_id: int, key: str, status: int, request_hash: bytes) -> bytes:
    # The key is printable ASCII (checked before it gets here) and comes last: no two rows share a context.
    return b"idempotency answer\0%d\0%d\0%s\0%s" % (org_id, status, request_hash.hex().encode(), key.encode())


def _lock_id(org_id: int, key: str) -> int:
    digest = hashlib.sha256(f"idempotency:{org_id}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def try_lock(conn: Conn, org_id: int, key: str) -> bool:
    """The key's transaction lock: False while another transaction (the first request) holds it."""
    locked: bool = await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _lock_id(org_id, key))
    return locked


async def fetch(conn: Conn, org_id: int, key: str, *, cipher: DataCipher) -> StoredAnswer | None:
    row = await conn.fetchrow(
        f"""SELECT request_hash, status, body_encrypted, extract(epoch FROM now() - created_at)::float8 AS age
            FROM idempotency_keys WHERE org_id = $1 AND key = $2 AND created_at > now() - interval '{RETENTION}'""",
        org_id,
        key,
    )
    if row is None:
        return None
    request_hash, status = bytes(row["request_hash"]), row["status"]
    # A blob that does not decrypt raises (a 500): answering as if the key were new could redo the work.
    body = cipher.decrypt_bytes(row["body_encrypted"], context=answer_context(org_id, key, status, request_hash))
    return StoredAnswer(request_hash=request_hash, status=status, body=body, age_seconds=row["age"])


async def store(
    conn: Conn, org_id: int, key: str, request_hash: bytes, status: int, body: bytes, *, cipher: DataCipher
) -> None:
    sealed = cipher.encrypt_bytes(body, context=answer_context(org_id, key, status, request_hash))
    # An expired answer still in the table (not yet purged) is replaced: the key is free again.
    await conn.execute(
        """INSERT INTO idempotency_keys (org_id, key, request_hash, status, body_encrypted)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (org_id, key) DO UPDATE SET request_hash = excluded.request_hash,
               status = excluded.status, body_encrypted = excluded.body_encrypted, created_at = now()""",
        org_id,
        key,
        request_hash,
        status,
        sealed,
    )


async def purge_expired(conn: Queryable, batch: int = 1000) -> int:
    """Deletes up to `batch` expired answers, oldest first (small batches: no long locks)."""
    result: str = await conn.execute(
        f"""DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
                SELECT ctid FROM idempotency_keys WHERE created_at < now() - interval '{RETENTION}'
                ORDER BY created_at LIMIT $1))""",
        batch,
    )
    return int(result.split()[-1])


async def forget(conn: Conn, org_id: int, key: str) -> None:
    """Frees the key: its request ended with nothing worth remembering (a 5xx or 429)."""
    await conn.execute("DELETE FROM idempotency_keys WHERE org_id = $1 AND key = $2", org_id, key)
