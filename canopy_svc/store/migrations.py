"""Applies schema.sql and the data migrations that DDL alone cannot express.

schema.sql is idempotent and always describes the newest schema. A step here moves data already
stored by an older version (and may drop what schema.sql no longer declares). The recorded version
says which steps a database has had; every process runs this under one advisory lock, so workers
starting together migrate once.

A database already at this build's version and schema.sql (by digest) is left alone: re-running the
DDL takes table locks (CREATE INDEX IF NOT EXISTS locks its table before it finds the index exists),
which would stall live traffic, and can deadlock with it, each time a worker or host starts.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.dbtypes import Conn
from canopy_svc.store import idempotency
from canopy_svc.store.data_key import ensure_key_check
from canopy_svc.store.ssn import ssn_columns

log = logging.getLogger("canopy_svc.store.migrations")

_MIGRATION_LOCK_ID = 0x43616E6F7079  # "Canopy"

Step = Callable[[Conn, DataCipher], Awaitable[None]]


async def _v1_initial(conn: Conn, cipher: DataCipher) -> None:
    """The first schema: nothing to move."""


async def _v2_encrypt_ssn(conn: Conn, cipher: DataCipher) -> None:
    """Version 1 kept SSNs in clear in `customers.ssn`: encrypt them, then drop the column."""
    has_clear_column = await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM information_schema.columns
                          WHERE table_name = 'customers' AND column_name = 'ssn')"""
    )
    if not has_clear_column:
        return
    moved = 0
    while True:
        rows = await conn.fetch(
            "SELECT id, ssn FROM customers WHERE ssn IS NOT NULL AND ssn_encrypted IS NULL ORDER BY id LIMIT 1000"
        )
        if not rows:
            break
        await conn.executemany(
            "UPDATE customers SET ssn_encrypted = $2, ssn_hash = $3 WHERE id = $1",
            [(row["id"], *ssn_columns(row["ssn"], cipher)) for row in rows],
        )
        moved += len(rows)
    await conn.execute("ALTER TABLE customers DROP COLUMN ssn")
    log.info("encrypted stored SSNs", extra={"customers": moved})


async def _v3_seal_idempotency_answers(conn: Conn, cipher: DataCipher) -> None:
    """Version 2 kept Idempotency-Key answers (a created customer's SSN included) in clear in
    `idempotency_keys.body`, under a plain SHA-256 of the request: seal each live answer and key its
    fingerprint, as version 3 stores them, so a client's retry across the upgrade still gets its answer.

    The rows go out and back in through a TRUNCATE: an UPDATE, a DELETE or DROP COLUMN would leave the
    clear bytes in the table's files (dead rows, dropped columns are not rewritten) until a VACUUM FULL,
    while TRUNCATE gives the table new files and removes the old ones at commit.
    """
    has_clear_column = await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM information_schema.columns
                          WHERE table_name = 'idempotency_keys' AND column_name = 'body')"""
    )
    if not has_clear_column:
        return
    # Only ciphertext is ever written here; the table is gone at commit.
    await conn.execute(
        """CREATE TEMPORARY TABLE idempotency_sealed (org_id bigint, key text, request_hash bytea,
               status smallint, body_encrypted bytea, created_at timestamptz) ON COMMIT DROP"""
    )
    last: tuple[int, str] = (0, "")
    sealed = 0
    while True:
        rows = await conn.fetch(
            """SELECT org_id, key, request_hash, status, body, created_at FROM idempotency_keys
               WHERE (org_id, key) > ($1, $2) AND created_at > now() - $3::text::interval
               ORDER BY org_id, key LIMIT 1000""",
            *last,
            idempotency.RETENTION,
        )
        if not rows:
            break
        converted = []
        for row in rows:
            request_hash = idempotency.keyed_fingerprint(cipher, bytes(row["request_hash"]))
            context = idempotency.answer_context(row["org_id"], row["key"], row["status"], request_hash)
            converted.append(
                (
                    row["org_id"],
                    row["key"],
                    request_hash,
                    row["status"],
                    cipher.encrypt_bytes(bytes(row["body"]), context=context),
                    row["created_at"],
                )
            )
        await conn.executemany("INSERT INTO idempotency_sealed VALUES ($1, $2, $3, $4, $5, $6)", converted)
        sealed += len(rows)
        last = (rows[-1]["org_id"], rows[-1]["key"])
    await conn.execute("TRUNCATE idempotency_keys")
    await conn.execute("ALTER TABLE idempotency_keys DROP COLUMN body")
    await conn.execute(
        """INSERT INTO idempotency_keys (org_id, key, request_hash, status, body_encrypted, created_at)
           SELECT org_id, key, request_hash, status, body_encrypted, created_at FROM idempotency_sealed"""
    )
    await conn.execute("ALTER TABLE idempotency_keys ALTER COLUMN body_encrypted SET NOT NULL")
    log.info("sealed stored idempotency answers", extra={"answers": sealed})


_SEARCH_TERMS_BATCH = 1000
_SEARCH_TERMS_BACKFILL = """
    WITH batch AS (SELECT id, org_id, search_vector FROM customers WHERE id > $1 ORDER BY id LIMIT $2),
    written AS (
        INSERT INTO customer_search_terms (org_id, term, customer_row_id)
        SELECT batch.org_id, term, batch.id FROM batch, unnest(canopy_search_terms(batch.search_vector)) term
        ON CONFLICT DO NOTHING
    )
    SELECT max(id) FROM batch"""


async def _v4_search_terms(conn: Conn, cipher: DataCipher) -> None:
    """Version 3 searched customers with a GIN index over search_vector: write the customer_search_terms
    rows of the customers already stored, then drop that index.

    Online: schema.sql's triggers are committed first, so what live traffic (old processes included)
    writes meanwhile gets its terms from them, and each batch is its own short transaction. A customer
    renamed while its batch runs may keep terms of its old name beside the new one's (the trigger
    removes only the terms it finds): a search checks search_vector itself, so such a term costs one
    read, never a wrong answer. The index goes last and CONCURRENTLY, which waits for the queries using
    it instead of stopping every query on customers, so older processes still running search with it
    until then.
    """
    last = 0
    batches = 0
    while (batch_end := await conn.fetchval(_SEARCH_TERMS_BACKFILL, last, _SEARCH_TERMS_BATCH)) is not None:
        last = batch_end
        batches += 1
    await conn.execute("DROP INDEX CONCURRENTLY IF EXISTS customers_search_vector")
    log.info("wrote customer search terms", extra={"batches": batches})


# Steps run in the transaction that applies schema.sql.
STEPS: dict[int, Step] = {
    1: _v1_initial,
    2: _v2_encrypt_ssn,
    3: _v3_seal_idempotency_answers,
}
# Steps too long to hold schema.sql's locks through (they would stop writes to a table): run after
# that transaction commits, each managing its own short transactions, before the version is recorded,
# so a process that stops in one runs it again at the next start. Each must be safe to run again.
ONLINE_STEPS: dict[int, Step] = {
    4: _v4_search_terms,
}
SCHEMA_VERSION = max(STEPS.keys() | ONLINE_STEPS.keys())


def schema_path() -> Path:
    """schema.sql ships inside the package, beside this module (the repository's top-level schema.sql is
    a link to it), so a plain install and the container image carry it."""
    return Path(__file__).resolve().with_name("schema.sql")


async def migrate(conn: Conn, cipher: DataCipher) -> int:
    """Brings the database to SCHEMA_VERSION; returns the version it is at.

    The data key is checked first: data encrypted under two keys could never be read back whole.
    """
    sql = schema_path().read_text()
    digest = hashlib.sha256(sql.encode()).hexdigest()
    if await _is_current(conn, digest):
        await ensure_key_check(conn, cipher.key_check(), cipher.fingerprint())
        return SCHEMA_VERSION
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
    try:
        async with conn.transaction():
            await conn.execute(sql)
            await ensure_key_check(conn, cipher.key_check(), cipher.fingerprint())
            current = await conn.fetchval("SELECT version FROM schema_version") or 0
            if current > SCHEMA_VERSION:
                raise RuntimeError(f"database schema version {current} is newer than this build ({SCHEMA_VERSION})")
            pending = range(current + 1, SCHEMA_VERSION + 1)
            for version in pending:
                if version in STEPS:
                    log.info("applying schema step %d", version)
                    await STEPS[version](conn, cipher)
            online = [version for version in pending if version in ONLINE_STEPS]
            if not online:
                await _record_version(conn, digest)
        if online:
            for version in online:
                log.info("applying online schema step %d", version)
                await ONLINE_STEPS[version](conn, cipher)
            await _record_version(conn, digest)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)
    return SCHEMA_VERSION


async def _record_version(conn: Conn, digest: str) -> None:
    await conn.execute(
        """INSERT INTO schema_version (version, schema_sha256) VALUES ($1, $2)
           ON CONFLICT (singleton) DO UPDATE SET version = $1, schema_sha256 = $2, applied_at = now()""",
        SCHEMA_VERSION,
        digest,
    )


async def _is_current(conn: Conn, digest: str) -> bool:
    """Whether this exact schema.sql has been applied at this version (reads only, takes no lock that
    live traffic conflicts with). A fresh or older database has no such row, or not the column."""
    try:
        row = await conn.fetchrow("SELECT version, schema_sha256 FROM schema_version")
    except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
        return False
    return row is not None and row["version"] == SCHEMA_VERSION and row["schema_sha256"] == digest


async def migrate_database(dsn: str, cipher: DataCipher) -> int:
    """Migrates over a connection of its own (before any pool is made)."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await migrate(conn, cipher)
    finally:
        await conn.close()
