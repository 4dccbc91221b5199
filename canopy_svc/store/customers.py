"""SQL for the customers table. Every statement is scoped by org_id."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from canopy_svc.core.dbtypes import Conn, Queryable
from canopy_svc.store.conflicts import conflict_for
from canopy_svc.store.customer_columns import STORAGE
from canopy_svc.store.events import event_ctes
from canopy_svc.store.keyset import page_bounds

# How many characters of a word's start customer_search_terms keeps, as schema.sql's canopy_search_terms.
SEARCH_TERM_LENGTH = 32

# Columns answered for a customer (with "id", the internal row id and paging key), and those a
# request may write (all but ids and timestamps): both derived from the wire types (customer_columns.py).
COLUMN_NAMES = ("id", *STORAGE.read)
COLUMNS = ", ".join(COLUMN_NAMES)
WRITABLE = STORAGE.writable


def qualified_columns(alias: str) -> str:
    """The customer's columns (without its row id) for a join, e.g. `c.customer_id, c.name_first`."""
    return ", ".join(f"{alias}.{name}" for name in COLUMN_NAMES if name != "id")


_INSERT = f"""INSERT INTO customers (org_id, customer_id, {", ".join(WRITABLE)})
    VALUES ({", ".join(f"${i}" for i in range(1, len(WRITABLE) + 3))})
    RETURNING {COLUMNS}"""


async def _insert_row(
    conn: Conn, sql: str, org_id: int, customer_id: str, row: Mapping[str, Any], *more: Any
) -> asyncpg.Record:
    """Runs an INSERT taking (org_id, customer_id, *WRITABLE, *more); a taken customer_id is 409."""
    try:
        record = await conn.fetchrow(sql, org_id, customer_id, *(row.get(c) for c in WRITABLE), *more)
    except asyncpg.UniqueViolationError as exc:
        raise conflict_for(exc, customer_id=customer_id) from None
    assert record is not None
    return record


async def insert(conn: Conn, org_id: int, customer_id: str, row: Mapping[str, Any]) -> asyncpg.Record:
    return await _insert_row(conn, _INSERT, org_id, customer_id, row)


_FETCH = f"SELECT {COLUMNS} FROM customers WHERE org_id = $1 AND customer_id = $2"
_FETCH_FOR_UPDATE = _FETCH + " FOR UPDATE"


async def fetch(conn: Queryable, org_id: int, customer_id: str, *, for_update: bool = False) -> asyncpg.Record | None:
    return await conn.fetchrow(_FETCH_FOR_UPDATE if for_update else _FETCH, org_id, customer_id)


async def exists(conn: Queryable, org_id: int, customer_id: str) -> bool:
    """Whether the organization has this customer (customers_org_customer_id_key: one index entry)."""
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM customers WHERE org_id = $1 AND customer_id = $2)", org_id, customer_id
    )
    return found


async def is_ancestor_or_self(conn: Conn, org_id: int, customer_id: str, of_customer_id: str) -> bool:
    """Whether customer_id is of_customer_id or one of its parents, grandparents, ...: setting the
    former's parent to the latter would make a loop. Parent changes of an organization are serialized
    by a transaction lock taken here, so two updates that each look safe (A under B, B under A) cannot
    both commit. Each step is one lookup of customers_org_customer_id_key; CYCLE stops at a loop an
    older database may already hold."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('customer_parent_id:' || $1::bigint::text, 0))", org_id
    )
    found: bool = await conn.fetchval(
        """WITH RECURSIVE chain (customer_id, parent_id) AS (
               SELECT customer_id, customer_parent_id FROM customers WHERE org_id = $1 AND customer_id = $3
               UNION ALL
               SELECT c.customer_id, c.customer_parent_id FROM chain
               JOIN customers c ON c.org_id = $1 AND c.customer_id = chain.parent_id
           ) CYCLE customer_id SET looped USING path
           SELECT EXISTS (SELECT 1 FROM chain WHERE customer_id = $2)""",
        org_id,
        customer_id,
        of_customer_id,
    )
    return found


async def update(conn: Conn, row_id: int, changes: Mapping[str, Any]) -> asyncpg.Record:
    names = [name for name in changes if name in WRITABLE]
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=2))
    record = await conn.fetchrow(
        f"UPDATE customers SET {assignments}{', ' if names else ''}updated_at = now() "
        f"WHERE id = $1 RETURNING {COLUMNS}",
        row_id,
        *(changes[name] for name in names),
    )
    assert record is not None
    return record


def prefix_query(words: list[str]) -> str:
    """`umbrella corp` -> 'umbrella':* & 'corp':* (every word must match some name at its start)."""
    return " & ".join(f"'{word}':*" for word in words)


# A search walks the customer_search_terms rows of one term in row id order (their primary key, see
# schema.sql) and checks each customer against the whole query: every match of a one-word search is
# a row of the page, so a page costs its limit+1 entries whether the word is shared by thousands or
# by one. The term is the query's longest word as the column's text search config makes it (what the
# terms were made from), cut to the stored prefix length; the check on search_vector is the exact
# match, for a longer word and for the other words. (The GIN index over search_vector gave matches
# without their order: a shared name sorted all its matches for each page, a rare one was found by
# walking the primary key.)
_SEARCH_TERM = f"""(SELECT left(word.lexeme, {SEARCH_TERM_LENGTH}) FROM unnest(to_tsvector('simple', $2)) word
                    ORDER BY length(word.lexeme) DESC, word.lexeme LIMIT 1)"""


async def page(
    conn: Queryable,
    org_id: int,
    *,
    limit: int,
    after: int | None = None,
    before: int | None = None,
    search: list[str] | None = None,
) -> list[asyncpg.Record]:
    """A page of customers in id order (see keyset.page_bounds), optionally only those matching `search`."""
    if not search:
        args: list[Any] = []
        bound, tail = page_bounds("org_id", "id", args, group_value=org_id, limit=limit, after=after, before=before)
        rows: list[asyncpg.Record] = await conn.fetch(f"SELECT {COLUMNS} FROM customers WHERE {bound} {tail}", *args)
        return rows
    args = [org_id, " ".join(search), prefix_query(search)]
    bound, tail = page_bounds(
        "t.org_id", "t.customer_row_id", args, group_value=org_id, limit=limit, after=after, before=before
    )
    return await conn.fetch(
        f"""SELECT {COLUMNS} FROM customers WHERE id = ANY(ARRAY(
                SELECT t.customer_row_id FROM customer_search_terms t
                JOIN customers candidate ON candidate.id = t.customer_row_id
                WHERE {bound} AND t.term = {_SEARCH_TERM}
                  AND candidate.org_id = $1 AND candidate.search_vector @@ to_tsquery('simple', $3)
                {tail}))
            ORDER BY id {"DESC" if before is not None else "ASC"}""",
        *args,
    )


async def find_row_ids(conn: Conn, org_id: int, customer_ids: list[str]) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT customer_id, id FROM customers WHERE org_id = $1 AND customer_id = ANY($2::text[])",
        org_id,
        customer_ids,
    )
    return {row["customer_id"]: row["id"] for row in rows}


# Five matches of each kind are shown, the limit hidden from the planner as a page's is (keyset.py):
# told LIMIT 5 and pricing a shared address at five rows (a generic plan, with statistics of the index
# expression and none of the table's), it chose a bitmap scan of everyone at the address and a sort,
# 4,000 entries read for five, where the index gives the five in order.
MATCHES_SHOWN = "(SELECT 5)"


def duplicate_matches(
    *, org: str, ssn_hash: str, email: str, phone: str, line_one: str, zip_code: str, country: str, exclude: str
) -> str:
    """The four comparisons, as SQL over the given parameter references. Each branch reads five
    entries (six when one is the customer compared) of its own index (customers_dup_*_at), whatever
    the table's size or statistics: the index is ordered by created_at within a value, so
    `ORDER BY created_at LIMIT 5` stops there."""
    return f"""
        (SELECT 'ssn' AS code, customer_id, date_of_birth FROM customers
         WHERE org_id = {org} AND ssn_hash = {ssn_hash} AND id <> {exclude}
         ORDER BY created_at LIMIT {MATCHES_SHOWN})
        UNION ALL
        (SELECT 'email', customer_id, date_of_birth FROM customers
         WHERE org_id = {org} AND lower(email) = lower({email}) AND id <> {exclude}
         ORDER BY created_at LIMIT {MATCHES_SHOWN})
        UNION ALL
        (SELECT 'phone_number', customer_id, date_of_birth FROM customers
         WHERE org_id = {org} AND phone_number = {phone} AND id <> {exclude}
         ORDER BY created_at LIMIT {MATCHES_SHOWN})
        UNION ALL
        (SELECT 'address', customer_id, date_of_birth FROM customers
         WHERE org_id = {org} AND canopy_address_key(address_line_one, address_zip, address_country_code)
                                  = canopy_address_key({line_one}, {zip_code}, {country}) AND id <> {exclude}
         ORDER BY created_at LIMIT {MATCHES_SHOWN})"""


_POLICY = "SELECT duplicate_customer_policy AS policy FROM organizations WHERE id = $1"

_DUPLICATES = f"""
    WITH policy AS ({_POLICY})
    SELECT policy.policy, match.code, match.customer_id, match.date_of_birth
    FROM policy LEFT JOIN LATERAL ({
    duplicate_matches(
        org="$1", ssn_hash="$2", email="$3", phone="$4", line_one="$5", zip_code="$6", country="$8", exclude="$7"
    )
}
    ) match ON policy.policy <> 'off'
"""

# Create and compare in one statement, one round trip: the insert happens unless the policy is
# `block` (whose check must come first, under locks); the comparisons cannot see the new row (a
# statement's CTEs share one snapshot), so it is never its own duplicate.
_PARAM = {name: f"${i}" for i, name in enumerate(WRITABLE, start=3)}
_INSERT_COMPARING = f"""
    WITH policy AS ({_POLICY}),
    inserted AS (
        INSERT INTO customers (org_id, customer_id, {", ".join(WRITABLE)})
        SELECT $1, $2, {", ".join(_PARAM[c] for c in WRITABLE)} FROM policy WHERE policy.policy <> 'block'
        RETURNING {COLUMNS}
    ),
    matches AS (
        SELECT match.* FROM policy, LATERAL ({
    duplicate_matches(
        org="$1",
        ssn_hash=_PARAM["ssn_hash"],
        email=_PARAM["email"],
        phone=_PARAM["phone_number"],
        line_one=_PARAM["address_line_one"],
        zip_code=_PARAM["address_zip"],
        country=_PARAM["address_country_code"],
        exclude="0",
    )
}
        ) match WHERE policy.policy = 'warn'
    )
    SELECT policy.policy, (SELECT array_agg(code) FROM matches) AS match_codes,
           (SELECT array_agg(customer_id) FROM matches) AS match_customer_ids, inserted.*
    FROM policy LEFT JOIN inserted ON true
"""


# And its customer_created event in the same statement: one round trip, atomic by itself. The event's
# data is the answer as the caller computed it from stored_row (the row's values are the statement's
# parameters), but its timestamps, which the database gives: set here, as msgspec writes a UTC time
# with whole seconds (the columns are timestamptz(0)).
_UTC_SECONDS = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
_EVENT_ID, _EVENT_DATA = f"${len(WRITABLE) + 3}", f"${len(WRITABLE) + 4}"
_CREATED_EVENT_DATA = (
    f"{_EVENT_DATA}::jsonb || jsonb_build_object("
    f"'created_at', {_UTC_SECONDS.format('inserted.created_at')}, "
    f"'updated_at', {_UTC_SECONDS.format('inserted.updated_at')})"
)
_CREATED_EVENT = event_ctes(
    org="$1",
    event_id=_EVENT_ID,
    event_type="'customer_created'::text",
    data=_CREATED_EVENT_DATA,
    source="FROM inserted",
)
_INSERT_COMPARING_WITH_EVENT = _INSERT_COMPARING.replace(
    "\n    SELECT policy.policy,",
    f",\n    {_CREATED_EVENT}\n    SELECT (SELECT count(*) FROM woken) AS woken, policy.policy,",
    1,
)
assert _INSERT_COMPARING_WITH_EVENT != _INSERT_COMPARING


def stored_row(customer_id: str, row: Mapping[str, Any], at: datetime) -> dict[str, Any]:
    """The columns an insert of `row` stores and answers (a row is stored as given), with `at` as its
    timestamps: what the answer and the event are made from before the row exists."""
    return {
        **{name: row.get(name) for name in WRITABLE},
        "customer_id": customer_id,
        "created_at": at,
        "updated_at": at,
    }


async def insert_comparing(
    conn: Conn,
    org_id: int,
    customer_id: str,
    row: Mapping[str, Any],
    *,
    event: tuple[str, str],
) -> tuple[str, asyncpg.Record | None, list[tuple[str, str]]]:
    """(policy, the new customer or None under `block`, [(field, matching customer_id)] under `warn`).
    `event`: (event_id, its data as JSON without created_at and updated_at) of the customer_created
    event written with the customer, in this statement."""
    record = await _insert_row(conn, _INSERT_COMPARING_WITH_EVENT, org_id, customer_id, row, *event)
    matches = list(zip(record["match_codes"] or (), record["match_customer_ids"] or (), strict=True))
    return record["policy"], (record if record["id"] is not None else None), matches


async def duplicates(
    conn: Conn,
    org_id: int,
    *,
    ssn_hash: bytes | None,
    email: str,
    phone_number: str,
    address_line_one: str,
    address_zip: str,
    address_country_code: str | None,
    exclude_row_id: int = 0,
) -> tuple[str, list[asyncpg.Record]]:
    """The organization's duplicate policy, and (unless it is `off`) the customers matching any field."""
    rows = await conn.fetch(
        _DUPLICATES,
        org_id,
        ssn_hash,
        email,
        phone_number,
        address_line_one,
        address_zip,
        exclude_row_id,
        address_country_code,
    )
    return rows[0]["policy"], [row for row in rows if row["code"] is not None]


# The compared values as the comparisons see them (lower(email), canopy_address_key), so equal
# values always make equal lock keys; computed by the database, never re-implemented here.
def lock_keys(*, email: str, phone: str, line_one: str, zip_code: str, country: str, ssn_hash: str) -> str:
    """The lock keys of one customer's compared values, as SQL over the given references (also the
    bulk import's, over its staged rows: store/customer_import.py)."""
    return f"""ARRAY['email:' || lower({email}::text), 'phone:' || {phone}::text,
                     'address:' || canopy_address_key({line_one}::text, {zip_code}::text, {country}::text),
                     'ssn:' || encode({ssn_hash}::bytea, 'hex')]"""


LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended($1::text || ':' || v, 0)) FROM unnest($2::text[]) v"
_LOCK_KEYS = "SELECT " + lock_keys(email="$1", phone="$2", line_one="$3", zip_code="$4", country="$5", ssn_hash="$6")


async def lock_values(
    conn: Conn,
    org_id: int,
    *,
    ssn_hash: bytes | None,
    email: str,
    phone_number: str,
    address_line_one: str,
    address_zip: str,
    address_country_code: str | None,
    **_: Any,
) -> None:
    """Transaction locks on the compared values, so two requests with one email cannot both pass a
    `block` check before either commits. Sorted, so two such requests never deadlock."""
    keys: list[str | None] = await conn.fetchval(
        _LOCK_KEYS, email, phone_number, address_line_one, address_zip, address_country_code, ssn_hash
    )
    await conn.execute(
        LOCK_SQL,
        str(org_id),
        sorted({key for key in keys if key is not None}),
    )
