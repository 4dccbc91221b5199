"""SQL of the bulk import (rules/customer_import.py): a batch is COPied into a temporary staging table,
compared there (with the table and within itself) by the same SQL as POST /customers, and moved into
customers with INSERT ... SELECT, so the table's triggers (search terms) and constraints apply as to
any insert. The progress of an import is one row of customer_imports, written in each batch's
transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from canopy_svc.core.dbtypes import Conn
from canopy_svc.store.customers import COLUMNS, LOCK_SQL, WRITABLE, duplicate_matches, lock_keys

STAGE = "customer_import_stage"
# The staged row: its line in the file, then the columns POST /customers inserts, in that order.
STAGE_COLUMNS = ("line", "customer_id", *WRITABLE)

# Typed as the customers table's columns (CREATE ... AS over it), so COPY checks types as an insert
# would; ON COMMIT DELETE ROWS: each batch starts empty, a rolled-back one leaves nothing.
_CREATE_STAGE = f"""CREATE TEMPORARY TABLE IF NOT EXISTS {STAGE} ON COMMIT DELETE ROWS AS
    SELECT 0 AS line, customer_id, {", ".join(WRITABLE)} FROM customers WITH NO DATA"""


async def create_stage(conn: Conn) -> None:
    """The session's staging table (temporary: no other session sees it, it goes with the connection)."""
    await conn.execute(_CREATE_STAGE)


async def stage(conn: Conn, rows: Sequence[tuple[Any, ...]]) -> None:
    """Rows of STAGE_COLUMNS, through COPY (binary): one round trip for the batch."""
    await conn.copy_records_to_table(STAGE, records=rows, columns=STAGE_COLUMNS)


_TAKEN = f"""SELECT s.line,
        EXISTS (SELECT 1 FROM customers c WHERE c.org_id = $1 AND c.customer_id = s.customer_id) AS id_taken,
        s.customer_parent_id IS NULL OR EXISTS (
            SELECT 1 FROM customers c WHERE c.org_id = $1 AND c.customer_id = s.customer_parent_id) AS parent_known
    FROM {STAGE} s"""


async def taken_ids(conn: Conn, org_id: int) -> list[asyncpg.Record]:
    """Per staged line: whether its customer_id is already the organization's, and whether its
    customer_parent_id (if any) is an existing customer of it."""
    return await conn.fetch(_TAKEN, org_id)


_POLICY = "SELECT duplicate_customer_policy FROM organizations WHERE id = $1"


async def duplicate_policy(conn: Conn, org_id: int) -> str:
    policy: str = await conn.fetchval(_POLICY, org_id)
    return policy


# The staged rows' compared values as lock keys, taken in order (as lock_values does for one
# customer): under `block`, a concurrent POST with one of them waits for the batch's commit.
_LOCK_STAGE = f"""SELECT coalesce(array_agg(DISTINCT k ORDER BY k), '{{}}') FROM {STAGE} s, unnest({
    lock_keys(
        email="s.email",
        phone="s.phone_number",
        line_one="s.address_line_one",
        zip_code="s.address_zip",
        country="s.address_country_code",
        ssn_hash="s.ssn_hash",
    )
}) k WHERE k IS NOT NULL"""


async def lock_staged_values(conn: Conn, org_id: int) -> None:
    keys: list[str] = await conn.fetchval(_LOCK_STAGE)
    await conn.execute(LOCK_SQL, str(org_id), keys)


# The customers each staged row matches, as POST /customers compares one (five of each kind).
_TABLE_MATCHES = f"""SELECT s.line, m.code, m.customer_id, m.date_of_birth FROM {STAGE} s, LATERAL ({
    duplicate_matches(
        org="$1",
        ssn_hash="s.ssn_hash",
        email="s.email",
        phone="s.phone_number",
        line_one="s.address_line_one",
        zip_code="s.address_zip",
        country="s.address_country_code",
        exclude="0",
    )
}) m"""


async def table_matches(conn: Conn, org_id: int) -> list[asyncpg.Record]:
    return await conn.fetch(_TABLE_MATCHES, org_id)


# Staged rows sharing a compared value with another staged row, by group (one per kind and value),
# the values as the comparisons see them (lower(email), canopy_address_key): the rules decide in
# line order which earlier rows of a group a row is a duplicate of.
_BATCH_GROUPS = f"""
    WITH keyed AS (
        SELECT line, 'ssn' AS code, encode(ssn_hash, 'hex') AS value FROM {STAGE} WHERE ssn_hash IS NOT NULL
        UNION ALL SELECT line, 'email', lower(email) FROM {STAGE}
        UNION ALL SELECT line, 'phone_number', phone_number FROM {STAGE}
        UNION ALL SELECT line, 'address', canopy_address_key(address_line_one, address_zip, address_country_code)
                  FROM {STAGE}
    ), counted AS (
        SELECT line, code, value, count(*) OVER (PARTITION BY code, value) AS members FROM keyed
    )
    SELECT line, code, dense_rank() OVER (ORDER BY code, value) AS grp FROM counted WHERE members > 1
    ORDER BY line"""


async def batch_groups(conn: Conn) -> list[asyncpg.Record]:
    return await conn.fetch(_BATCH_GROUPS)


_INSERT = f"""INSERT INTO customers (org_id, customer_id, {", ".join(WRITABLE)})
    SELECT $1, customer_id, {", ".join(WRITABLE)} FROM {STAGE} WHERE line = ANY($2::int[]) ORDER BY line
    RETURNING {COLUMNS}"""


async def insert_staged(conn: Conn, org_id: int, lines: list[int]) -> list[asyncpg.Record]:
    """Inserts the staged rows of these lines, in line order; the customers as inserted."""
    if not lines:
        return []
    return await conn.fetch(_INSERT, org_id, lines)


async def progress(conn: Conn, org_id: int, file_sha256: bytes) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT lines_done, created, rejected, warned, finished_at FROM customer_imports
           WHERE org_id = $1 AND file_sha256 = $2""",
        org_id,
        file_sha256,
    )


async def record_progress(
    conn: Conn,
    org_id: int,
    file_sha256: bytes,
    *,
    lines_done: int,
    created: int,
    rejected: int,
    warned: int,
    finished: bool,
) -> None:
    """The import's position and counts so far (in the batch's transaction: they commit with it)."""
    await conn.execute(
        """INSERT INTO customer_imports AS i (org_id, file_sha256, lines_done, created, rejected, warned, finished_at)
           VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $7 THEN now() END)
           ON CONFLICT (org_id, file_sha256) DO UPDATE SET
               lines_done = EXCLUDED.lines_done, created = EXCLUDED.created, rejected = EXCLUDED.rejected,
               warned = EXCLUDED.warned, finished_at = EXCLUDED.finished_at, updated_at = now()""",
        org_id,
        file_sha256,
        lines_done,
        created,
        rejected,
        warned,
        finished,
    )
