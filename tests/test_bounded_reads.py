"""Issue 9: what a page, a search and an update read does not grow with the organization, nor with how
many customers share a name, an address, a phone or an SSN, under every plan (asyncpg prepares every
statement: custom plans, and generic ones after five runs), on tables never analyzed, analyzed, and
analyzed before the values became shared.

Counted, not timed, around one call on a connection of its own (its statistics flushed before each
read of the views): the index entries each index returned, the heap rows fetched through indexes, the
sequential scans (none allowed), and the blocks each index read, which show an index walked for a
qual it could not position on (entries it rejected inside the index are not counted as returned).
The data is laid out so that a plan reading more than a page reads thousands: our rows in two
blocks with another tenant's between, a small tenant after both (and for the listings 200 tenants
of one row, so that a generic plan prices a tenant as a small one), a last name, an address, a phone
and an SSN most of ours share, and a name only the last of our customers has.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import asyncpg
import pytest

from canopy_svc.core.crypto import DataCipher
from canopy_svc.rules import accounts as account_rules
from canopy_svc.rules import beneficial_owners as beneficial_owner_rules
from canopy_svc.rules import customer_accounts as customer_account_rules
from canopy_svc.rules import customers as customer_rules
from canopy_svc.rules import products as product_rules
from canopy_svc.rules.accounts import NO_FILTER, AccountFilter
from canopy_svc.rules.cursors import CursorCodec
from canopy_svc.rules.paging import PageRequest
from canopy_svc.wire.models import Customer
from tests.helpers import TEST_DATA_KEY, ApiClient, make_client

TABLES = [
    "customers",
    "customer_search_terms",
    "products",
    "accounts",
    "customer_account_links",
    "cards",
    "link_search_terms",
]
TABLES += ["beneficial_owners"]
PLAN_MODES = ["force_custom_plan", "force_generic_plan"]
BLOCK = 2000  # our customers before the other tenant's, and again after
CURSORS = CursorCodec(b"bounded-reads-test-cursor-key-00")
CIPHER = DataCipher(TEST_DATA_KEY)


# A page may read each index once per row it answers (and the one that says has_more), and once more
# where one row is looked up twice (a search checks a candidate, then answers it); a few more for
# what a page does once. A customer's page of accounts answers each account's customers too, two
# here (the customer itself, and the account's own): three reads a row.
def bound(limit: int, per_row: int = 2) -> int:
    return per_row * (limit + 1) + 5


Reads = dict[str, int]
T = TypeVar("T")


async def _counters(conn: asyncpg.Connection) -> Reads:
    # pg_stat_force_next_flush() takes effect once the backend is idle: at the end of that statement,
    # before the next one reads the views.
    await conn.execute("SELECT pg_stat_force_next_flush()")
    rows = await conn.fetch(
        """SELECT 'index ' || indexrelname AS name, idx_tup_read AS n FROM pg_stat_user_indexes
           WHERE relname = ANY($1::text[])
           UNION ALL SELECT 'scans ' || indexrelname, idx_scan FROM pg_stat_user_indexes
           WHERE relname = ANY($1::text[])
           UNION ALL SELECT 'blocks ' || relname || ' ' || indexrelname, idx_blks_hit + idx_blks_read
           FROM pg_statio_user_indexes WHERE relname = ANY($1::text[])
           UNION ALL SELECT 'writes ' || relname, n_tup_ins + n_tup_upd FROM pg_stat_user_tables
           WHERE relname = ANY($1::text[])
           UNION ALL SELECT 'heap ' || relname, coalesce(idx_tup_fetch, 0) FROM pg_stat_user_tables
           WHERE relname = ANY($1::text[])
           UNION ALL SELECT 'seq scans ' || relname, seq_scan FROM pg_stat_user_tables
           WHERE relname = ANY($1::text[])""",
        TABLES,
    )
    return {row["name"]: row["n"] for row in rows}


async def reads_of(conn: asyncpg.Connection, action: Callable[[], Awaitable[T]]) -> tuple[T, Reads]:
    """What `action` answers, and what it read (only the counters that changed)."""
    before = await _counters(conn)
    answer = await action()
    after = await _counters(conn)
    return answer, {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}


def walked_indexes(reads: Reads) -> Reads:
    """Indexes that read more blocks than their scans' descents, the leaves of the entries they
    returned and the rows written into them: an index qual checked on every entry of a range instead
    of positioning the scan (which idx_tup_read, counting only the entries returned, does not show)."""
    walked = {}
    for name, blocks in reads.items():
        if name.startswith("blocks "):
            table, index = name.removeprefix("blocks ").split(" ")
            # A descent is at most 3 blocks here (indexes of a few thousand rows), one more for a scan
            # that crosses into the next leaf, and a leaf holds well over 50 entries; a row written
            # descends to its leaf (twice for ON CONFLICT); planning reads a few metapages.
            allowed = (
                4 * reads.get(f"scans {index}", 0)
                + reads.get(f"index {index}", 0) // 50
                + 8 * reads.get(f"writes {table}", 0)
                + 4
            )
            if blocks > allowed:
                walked[index] = blocks
    return walked


def assert_bounded(reads: Reads, limit: int, what: str, per_row: int = 2) -> None:
    assert not [name for name in reads if name.startswith("seq scans")], (what, reads)
    assert reads, (what, "nothing counted: the statistics were not flushed")
    too_many = {
        name: n for name, n in reads.items() if name.startswith(("index ", "heap ")) and n > bound(limit, per_row)
    }
    assert not too_many, (what, f"more than {bound(limit, per_row)}", too_many, reads)
    assert not walked_indexes(reads), (what, walked_indexes(reads), reads)


@pytest.fixture
async def no_autovacuum(pool: asyncpg.Pool) -> AsyncIterator[None]:
    """A table never analyzed stays so for the test (autovacuum would analyze it after the load)."""
    for table in TABLES:
        await pool.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    try:
        yield
    finally:
        for table in TABLES:
            await pool.execute(f"ALTER TABLE {table} RESET (autovacuum_enabled)")


Crowd = Callable[[asyncpg.Pool, bool], Awaitable[None]]


async def flush_pool_statistics(pool: asyncpg.Pool) -> None:
    """Every pool connection's pending counters, flushed now. An idle backend flushes at most once a
    second and keeps what it cannot lock without waiting for a retry later: a fixture's seq scans could
    then land inside a measurement made on another connection (seen once on a loaded CI run). Holding
    every connection at once reaches each backend the pool has open."""
    async with contextlib.AsyncExitStack() as held:
        connections = [await held.enter_async_context(pool.acquire()) for _ in range(pool.get_max_size())]
        if connections[0].get_server_version().major < 15:
            return  # no pg_stat_force_next_flush(): plan_states skips
        for conn in connections:
            await conn.execute("SELECT pg_stat_force_next_flush()")


async def plan_states(
    pool: asyncpg.Pool, database_url: str, crowd: Crowd | None = None
) -> AsyncGenerator[tuple[str, str, asyncpg.Connection]]:
    """(statistics, plan mode, a connection) for tables with no statistics (a new server before
    autovacuum's first ANALYZE), then analyzed ones, then (given `crowd`, which disperses the customers
    sharing values and gathers them again) statistics taken while those values were rare; each with a
    connection whose prepared statements all run custom plans, and one whose statements all run
    generic ones. Use with contextlib.aclosing."""
    try:
        # The tables' and their expression indexes' (which TRUNCATE leaves, and an earlier test made).
        await pool.execute(
            """DELETE FROM pg_statistic WHERE starelid IN (
                   SELECT oid FROM pg_class WHERE relname = ANY($1::text[])
                   UNION SELECT indexrelid FROM pg_index WHERE indrelid IN (
                       SELECT oid FROM pg_class WHERE relname = ANY($1::text[])))""",
            TABLES,
        )
    except asyncpg.InsufficientPrivilegeError:
        pytest.skip("clearing a table's statistics needs a superuser (TEST_DATABASE_URL is not one)")
    for statistics in ("fresh", "analyzed", "stale") if crowd else ("fresh", "analyzed"):
        if statistics == "stale" and crowd:
            await crowd(pool, False)
        if statistics != "fresh":
            for table in TABLES:
                await pool.execute(f"ANALYZE {table}")
        if statistics == "stale" and crowd:
            await crowd(pool, True)
        await flush_pool_statistics(pool)
        for mode in PLAN_MODES:
            conn = await asyncpg.connect(database_url, server_settings={"plan_cache_mode": mode})
            try:
                if await conn.fetchval("SELECT current_setting('server_version_num')::int") < 150000:
                    pytest.skip("pg_stat_force_next_flush() needs PostgreSQL 15")
                yield statistics, mode, conn
            finally:
                await conn.close()


@dataclass
class Tenants:
    ours: int
    small: int
    # Row ids of ours where a deep page starts: the last of the first block, so the rows after it in
    # id order are the other tenant's.
    deep: dict[str, int]
    busy_customer: str  # on many of our accounts
    busy_customer_row_id: int


SHARED_SSN_HASH = CIPHER.lookup_hash("123456789", context=b"ssn")


async def _insert_customers(conn: asyncpg.Connection, org_id: int, prefix: str, count: int, last_name: str) -> None:
    """`count` customers (SQL: the triggers write their search terms): two of three named `last_name`,
    half at one address with one phone, a quarter with one SSN; the others' addresses and phones each
    a family's (eight, four), their names and SSNs their own. A generic plan prices a value as the
    average one: each shared one here looks like a family's."""
    await conn.execute(
        """INSERT INTO customers (org_id, customer_id, name_first, name_last, phone_number, address_line_one,
               address_city, address_state, address_zip, email, date_of_birth, ssn_hash)
           SELECT $1, $2 || n, 'First' || n, CASE WHEN n % 3 = 0 THEN 'Last' || n ELSE $4 END,
                  CASE WHEN n % 2 = 0 THEN '+14155550100'
                       ELSE '+1' || (2000000000 + 100000 * ascii($2) + n / 8) END,
                  CASE WHEN n % 2 = 0 THEN '100 Main St' ELSE n / 16 || ' ' || $2 || ' St' END, 'X', 'MD', '21201',
                  $2 || n || '@example.com', '1990-01-01',
                  CASE WHEN n % 4 = 0 THEN $5::bytea ELSE sha256(($2 || n)::bytea) END
           FROM generate_series(1, $3::int) n""",
        org_id,
        prefix,
        count,
        last_name,
        SHARED_SSN_HASH,
    )


async def _insert_accounts(conn: asyncpg.Connection, org_id: int, prefix: str, count: int) -> None:
    """`count` products, and as many accounts on the organization's first product, each with one of its
    customers (the customer of the same rank) and a card."""
    await conn.execute(
        """INSERT INTO products (org_id, product_id, product_name, product_type)
           SELECT $1, $2 || n, 'P', 'REVOLVING' FROM generate_series(1, $3::int) n""",
        org_id,
        prefix,
        count,
    )
    await conn.execute(
        """INSERT INTO accounts (org_id, account_id, product_row_id)
           SELECT $1, $2 || n, (SELECT min(id) FROM products WHERE org_id = $1)
           FROM generate_series(1, $3::int) n""",
        org_id,
        prefix,
        count,
    )
    await conn.execute(
        """INSERT INTO customer_account_links (org_id, account_row_id, customer_row_id, customer_account_role,
               customer_account_external_id)
           SELECT $1, a.id, c.id, 'PRIMARY', 'x' FROM accounts a
           JOIN customers c ON c.org_id = $1 AND c.customer_id = $2 || substr(a.account_id, length($2) + 1)
           WHERE a.org_id = $1 AND a.account_id LIKE $2 || '%'""",
        org_id,
        prefix,
    )
    await conn.execute(
        """INSERT INTO cards (org_id, link_id, idempotency_key, card_type, state)
           SELECT $1, l.id, gen_random_uuid(), 'UNLOCKED', 'OPEN' FROM customer_account_links l
           JOIN accounts a ON a.id = l.account_row_id WHERE a.org_id = $1 AND a.account_id LIKE $2 || '%'""",
        org_id,
        prefix,
    )


@pytest.fixture
async def tenants(api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool, no_autovacuum: None) -> Tenants:
    small, _, _ = await make_client(pool, "small tenant")
    async with pool.acquire() as conn, conn.transaction():
        await _insert_customers(conn, api.org_id, "a", BLOCK, "Smith")
        await _insert_accounts(conn, api.org_id, "a", BLOCK // 2)
        await _insert_customers(conn, other_api.org_id, "o", 2 * BLOCK, "Smith")
        await _insert_accounts(conn, other_api.org_id, "o", BLOCK)
        await _insert_customers(conn, api.org_id, "b", BLOCK, "Smith")
        await _insert_accounts(conn, api.org_id, "b", BLOCK // 2)
        await _insert_customers(conn, small, "s", 30, "Smith")
        await _insert_accounts(conn, small, "s", 30)
        # One of ours, last of all, is the only Zyxwv; another is on 1,500 of our accounts.
        await conn.execute(
            "UPDATE customers SET name_last = 'Zyxwv' WHERE org_id = $1 AND customer_id = 'b1999'", api.org_id
        )
        busy = await conn.fetchval("SELECT id FROM customers WHERE org_id = $1 AND customer_id = 'a3'", api.org_id)
        await conn.execute(
            """INSERT INTO customer_account_links (org_id, account_row_id, customer_row_id, customer_account_role,
                   customer_account_external_id)
               SELECT $1, id, $2, 'SECONDARY', 'busy' FROM accounts WHERE org_id = $1 AND id % 4 <> 3
               ON CONFLICT DO NOTHING""",
            api.org_id,
            busy,
        )
        # The busy customer's beneficial owners: 700 between another customer's of ours, another tenant's 800, 800 more.
        await conn.execute(
            """INSERT INTO beneficial_owners (org_id, customer_row_id, beneficial_owner_id, name_first, name_last,
                   phone_number, address_line_one, address_city, address_state, address_zip, email, date_of_birth)
               SELECT c.org_id, c.id, 'bo' || n, 'F', 'L', '+14155550100', '1 St', 'X', 'MD', '21201', 'b@x.com',
                      '1990-01-01'
               FROM generate_series(1, 3000) n JOIN customers c ON (c.org_id, c.customer_id) = (
                   CASE WHEN n BETWEEN 1401 AND 2200 THEN $2::bigint ELSE $1::bigint END,
                   CASE WHEN n BETWEEN 1401 AND 2200 THEN 'o3' WHEN n <= 1400 AND n % 2 = 0 THEN 'a4' ELSE 'a3' END)
               ORDER BY n""",
            api.org_id,
            other_api.org_id,
        )
        deep = {
            "beneficial-owners": await conn.fetchval(
                "SELECT id FROM beneficial_owners WHERE beneficial_owner_id = 'bo1399'"
            ),
            "customers": await conn.fetchval(
                "SELECT id FROM customers WHERE org_id = $1 AND customer_id = $2", api.org_id, f"a{BLOCK}"
            ),
            "search": await conn.fetchval(
                "SELECT id FROM customers WHERE org_id = $1 AND customer_id = $2", api.org_id, f"a{BLOCK - 1}"
            ),
            "products": await conn.fetchval(
                "SELECT id FROM products WHERE org_id = $1 AND product_id = $2", api.org_id, f"a{BLOCK // 2}"
            ),
            "accounts": await conn.fetchval(
                "SELECT id FROM accounts WHERE org_id = $1 AND account_id = $2", api.org_id, f"a{BLOCK // 2}"
            ),
            "links": await conn.fetchval(
                "SELECT max(id) FROM customer_account_links WHERE org_id = $1 AND customer_account_external_id = 'x'"
                " AND id < (SELECT min(id) FROM customer_account_links WHERE org_id = $2)",
                api.org_id,
                other_api.org_id,
            ),
            "customer-accounts": await conn.fetchval(
                "SELECT id FROM customer_account_links WHERE customer_row_id = $1 ORDER BY id OFFSET 700 LIMIT 1", busy
            ),
        }
    return Tenants(ours=api.org_id, small=small, deep=deep, busy_customer="a3", busy_customer_row_id=busy)


async def crowd(pool: asyncpg.Pool, gathered: bool) -> None:
    """Our customers who share a name, an address, a phone or an SSN (see _insert_customers) move to
    values ten of them share (gathered=False), or back: statistics taken in between see each shared
    value as a family's, as when a block of flats fills up after the last ANALYZE."""
    async with pool.acquire() as conn:
        org_id = await conn.fetchval("SELECT org_id FROM customers WHERE customer_id = 'a1'")
        await conn.execute(
            """UPDATE customers SET
                   name_last = CASE WHEN n % 3 = 0 THEN name_last WHEN $2 THEN 'Smith' ELSE 'Family' || id / 10 END,
                   phone_number = CASE WHEN n % 2 = 1 THEN phone_number WHEN $2 THEN '+14155550100'
                                       ELSE '+1' || (3000000000 + id / 10) END,
                   address_line_one = CASE WHEN n % 2 = 1 THEN address_line_one WHEN $2 THEN '100 Main St'
                                           ELSE id / 10 || ' Gone St' END,
                   ssn_hash = CASE WHEN n % 4 <> 0 THEN ssn_hash WHEN $2 THEN $3::bytea
                                   ELSE sha256((id / 10)::text::bytea) END
               FROM (SELECT id AS row_id, substr(customer_id, 2)::int AS n FROM customers
                     WHERE org_id = $1 AND customer_id <> 'b1999') numbered
               WHERE id = numbered.row_id""",
            org_id,
            gathered,
            SHARED_SSN_HASH,
        )
        # Without the dead row versions this leaves, which index scans would count (VACUUM keeps the
        # statistics as they were).
        await conn.execute("VACUUM customers, customer_search_terms")


@pytest.fixture
async def tiny_tenants(tenants: Tenants, pool: asyncpg.Pool) -> None:
    """200 more tenants of one customer, product and account: a generic plan prices an organization as
    the average one, here a small one (the duplicate check's test goes without them: there, few
    tenants make a shared value look like a family's, not rarer)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO organizations (name) SELECT 'tiny ' || n FROM generate_series(1, 200) n")
        for tiny in await conn.fetch("SELECT id FROM organizations WHERE name LIKE 'tiny %'"):
            await _insert_customers(conn, tiny["id"], "t", 1, "Smith")
            await _insert_accounts(conn, tiny["id"], "t", 1)


Listing = Callable[[asyncpg.Connection, int, PageRequest], Awaitable[Any]]


def _listings(tenants: Tenants) -> dict[str, tuple[str, str, Listing]]:
    """name -> (the deep position's key in Tenants.deep, the cursor's kind, a call of the route's rule)."""

    def customers(search: str | None) -> Listing:
        async def call(conn: asyncpg.Connection, org_id: int, page: PageRequest) -> Any:
            return await customer_rules.list_page(
                conn, org_id, CURSORS, page, customer_rules.search_words(search), CIPHER
            )

        return call

    async def products(conn: asyncpg.Connection, org_id: int, page: PageRequest) -> Any:
        return await product_rules.list_products(conn, org_id, CURSORS, page)

    def accounts(filters: AccountFilter = NO_FILTER) -> Listing:
        async def call(conn: asyncpg.Connection, org_id: int, page: PageRequest) -> Any:
            return await account_rules.list_accounts(conn, org_id, CURSORS, page, CIPHER, filters)

        return call

    def links(filters: AccountFilter = NO_FILTER, search: str | None = None) -> Listing:
        async def call(conn: asyncpg.Connection, org_id: int, page: PageRequest) -> Any:
            return await customer_account_rules.list_links(
                conn, org_id, CURSORS, page, CIPHER, filters, customer_rules.search_words(search)
            )

        return call

    def customer_accounts(filters: AccountFilter = NO_FILTER) -> Listing:
        async def call(conn: asyncpg.Connection, org_id: int, page: PageRequest) -> Any:
            return await customer_account_rules.list_customer_accounts(
                conn, org_id, CURSORS, page, tenants.busy_customer, CIPHER, filters
            )

        return call

    active, revolving = AccountFilter(account_status=("ACTIVE",)), AccountFilter(product_type=("REVOLVING",))

    async def beneficial_owners(conn: asyncpg.Connection, org_id: int, page: PageRequest) -> Any:
        return await beneficial_owner_rules.list_page(conn, org_id, CURSORS, page, tenants.busy_customer, CIPHER)

    return {
        "GET /customers": ("customers", "customers", customers(None)),
        "GET /customers?search_parameters=smith": ("search", "customers", customers("smith")),
        "GET /products": ("products", "products", products),
        "GET /accounts": ("accounts", "accounts", accounts()),
        "GET /customers/accounts": ("links", "links", links()),
        "GET /customers/{id}/accounts": (
            "customer-accounts",
            f"customer-accounts:{tenants.busy_customer_row_id}",
            customer_accounts(),
        ),
        # Issue 11: the filters (one index range per status and type pair) and the links' search.
        "GET /accounts?account_status=ACTIVE": ("accounts", "accounts", accounts(active)),
        "GET /customers/accounts?product_type=REVOLVING": ("links", "links", links(revolving)),
        "GET /customers/accounts?search_parameters=p": ("links", "links", links(search="p")),
        "GET /customers/accounts?search_parameters=smith&account_status=ACTIVE": (
            "links",
            "links",
            links(active, "smith"),
        ),
        "GET /customers/{id}/accounts?account_status=ACTIVE&product_type=REVOLVING": (
            "customer-accounts",
            f"customer-accounts:{tenants.busy_customer_row_id}",
            customer_accounts(AccountFilter(account_status=("ACTIVE",), product_type=("REVOLVING",))),
        ),
        "GET /customers/{id}/beneficial_owners": (
            "beneficial-owners",
            f"beneficial-owners:{tenants.busy_customer_row_id}",
            beneficial_owners,
        ),
    }


async def test_flush_pool_statistics_makes_a_pool_connections_scans_visible_at_once(
    pool: asyncpg.Pool, database_url: str
) -> None:
    """Two scans back to back on a pool connection: the second is within the backend's one-second
    flush interval, so without the forced flush it would still be pending when another connection reads."""
    watcher = await asyncpg.connect(database_url)
    try:
        if watcher.get_server_version().major < 15:
            pytest.skip("pg_stat_force_next_flush() needs PostgreSQL 15")
        await flush_pool_statistics(pool)
        query = "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'products'"
        before = await watcher.fetchval(query)
        async with pool.acquire() as conn:
            for _ in range(2):
                await conn.fetchval("SELECT count(*) FROM products")  # a seq scan: no predicate
        await flush_pool_statistics(pool)
        await watcher.execute("SELECT pg_stat_clear_snapshot()")
        assert await watcher.fetchval(query) == before + 2
    finally:
        await watcher.close()


async def test_a_page_deep_in_an_organization_reads_what_the_first_page_reads(
    pool: asyncpg.Pool, database_url: str, tenants: Tenants, tiny_tenants: None
) -> None:
    """Every list route: the first page, a page from deep in our rows (the other tenant's rows after it
    in id order), back from there, the largest page, and a small tenant's page after everyone's rows."""
    listings = _listings(tenants)
    async with contextlib.aclosing(plan_states(pool, database_url)) as states:
        async for statistics, mode, conn in states:
            for name, (deep_key, kind, call) in listings.items():
                deep = CURSORS.encode(tenants.ours, kind, tenants.deep[deep_key])
                pages = [
                    (tenants.ours, PageRequest(100, None, None), 100),
                    (tenants.ours, PageRequest(100, deep, None), 100),
                    (tenants.ours, PageRequest(100, None, deep), 100),
                    (tenants.ours, PageRequest(1000, None, None), 1000),
                ]
                if not name.startswith("GET /customers/{id}/"):  # one customer's: the small tenant has none
                    pages.append((tenants.small, PageRequest(12, None, None), 12))
                for org_id, page, limit in pages:
                    answer, reads = await reads_of(conn, partial(call, conn, org_id, page))
                    what = (name, statistics, mode, org_id, page)
                    assert answer.results, what  # a page of something, read within the bound
                    assert_bounded(reads, limit, str(what), 3 if name.startswith("GET /customers/{id}/accounts") else 2)


async def test_a_search_reads_a_page_whether_one_customer_or_thousands_match(
    pool: asyncpg.Pool, database_url: str, tenants: Tenants, tiny_tenants: None
) -> None:
    """A last name two thirds of ours share, one only the last of them has, the start of each, two
    words; first pages and one from deep among the Smiths."""
    deep = CURSORS.encode(tenants.ours, "customers", tenants.deep["search"])
    searches = [
        ("smith", None, 12),
        ("smi", None, 12),
        ("smith", deep, 12),
        ("smith", None, 1000),
        ("zyxwv", None, 12),
        ("zyx", None, 1000),
        ("first1999 zyxwv", None, 12),
        ("nobody", None, 12),
    ]
    async with contextlib.aclosing(plan_states(pool, database_url, crowd)) as states:
        async for statistics, mode, conn in states:
            for search, after, limit in searches:
                answer, reads = await reads_of(
                    conn,
                    partial(
                        customer_rules.list_page,
                        conn,
                        tenants.ours,
                        CURSORS,
                        PageRequest(limit, after, None),
                        customer_rules.search_words(search),
                        CIPHER,
                    ),
                )
                what = (search, after is not None, limit, statistics, mode)
                expected = {"zyxwv": 1, "zyx": 1, "first1999 zyxwv": 1, "nobody": 0}.get(search, limit)
                assert len(answer.results) == expected, what
                if expected:
                    assert_bounded(reads, limit, str(what))
                else:
                    assert not [name for name in reads if name.startswith("seq scans")], (what, reads)
                    assert sum(n for name, n in reads.items() if name.startswith(("index ", "heap "))) <= 5, (
                        what,
                        reads,
                    )


async def test_an_account_filter_or_link_search_reads_a_page_whether_one_row_or_thousands_match(
    pool: asyncpg.Pool, database_url: str, tenants: Tenants, tiny_tenants: None
) -> None:
    """Issue 11: the filters of the three account listings and GET /customers/accounts' search, for a
    status thousands of our accounts have, one only the last two have (SUSPENDED), one none has, a word
    on every link (the product's name), one on a single account (its id), and the two together."""
    await pool.execute(
        "UPDATE accounts SET account_status = 'SUSPENDED' WHERE org_id = $1 AND account_id IN ('b999', 'b1000')",
        tenants.ours,
    )
    await pool.execute("VACUUM accounts, customer_account_links, link_search_terms")
    busy_links = await pool.fetchval(
        """SELECT count(*) FROM customer_account_links l JOIN accounts a ON a.id = l.account_row_id
           WHERE l.customer_row_id = $1 AND a.account_id IN ('b999', 'b1000')""",
        tenants.busy_customer_row_id,
    )
    b1000_links = await pool.fetchval(
        """SELECT count(*) FROM customer_account_links l JOIN accounts a ON a.id = l.account_row_id
           WHERE a.org_id = $1 AND a.account_id = 'b1000'""",
        tenants.ours,
    )
    suspended, closed = AccountFilter(account_status=("SUSPENDED",)), AccountFilter(account_status=("CLOSED",))
    both = AccountFilter(account_status=("ACTIVE", "SUSPENDED"), product_type=("REVOLVING", "INSTALLMENT"))

    def accounts(filters: AccountFilter) -> Listing:
        async def call(conn: asyncpg.Connection, org_id: int, page: PageRequest) -> Any:
            return await account_rules.list_accounts(conn, org_id, CURSORS, page, CIPHER, filters)

        return call

    def links(filters: AccountFilter, search: str | None = None) -> Listing:
        async def call(conn: asyncpg.Connection, org_id: int, page: PageRequest) -> Any:
            return await customer_account_rules.list_links(
                conn, org_id, CURSORS, page, CIPHER, filters, customer_rules.search_words(search)
            )

        return call

    def customer_accounts(filters: AccountFilter) -> Listing:
        async def call(conn: asyncpg.Connection, org_id: int, page: PageRequest) -> Any:
            return await customer_account_rules.list_customer_accounts(
                conn, org_id, CURSORS, page, tenants.busy_customer, CIPHER, filters
            )

        return call

    # (what, call, limit, rows expected: None for a full page; the reads allowed per row)
    cases: list[tuple[str, Listing, int, int | None, int]] = []
    for limit in (12, 1000):
        cases += [
            ("accounts SUSPENDED", accounts(suspended), limit, 2, 2),
            ("accounts CLOSED", accounts(closed), limit, 0, 2),
            ("accounts ACTIVE,SUSPENDED x REVOLVING,INSTALLMENT", accounts(both), limit, None, 2),
            ("links SUSPENDED", links(suspended), limit, 3 if busy_links else 2, 2),
            ("links CLOSED", links(closed), limit, 0, 2),
            ("customer's accounts SUSPENDED", customer_accounts(suspended), limit, busy_links, 3),
            ("customer's accounts CLOSED", customer_accounts(closed), limit, 0, 3),
            ("links p", links(NO_FILTER, "p"), limit, None, 2),
            ("links p SUSPENDED", links(suspended, "p"), limit, 2 + busy_links, 2),
            ("links p CLOSED", links(closed, "p"), limit, 0, 2),
            ("links b1000", links(NO_FILTER, "b1000"), limit, b1000_links, 2),
            ("links first1000 b1000 SUSPENDED", links(suspended, "first1000 b1000"), limit, 1, 2),
            ("links nobody", links(NO_FILTER, "nobody"), limit, 0, 2),
        ]
    async with contextlib.aclosing(plan_states(pool, database_url)) as states:
        async for statistics, mode, conn in states:
            for what, call, limit, expected, per_row in cases:
                answer, reads = await reads_of(conn, partial(call, conn, tenants.ours, PageRequest(limit, None, None)))
                described = (what, limit, statistics, mode)
                assert len(answer.results) == (limit if expected is None else expected), described
                if answer.results:
                    assert_bounded(reads, limit, str(described), per_row)
                else:
                    assert not [name for name in reads if name.startswith("seq scans")], (described, reads)
                    # One descent of each index range asked for, no entry of them read; the customer
                    # looked up, and the few entries a custom plan reads at an index's ends to price a join.
                    assert sum(n for name, n in reads.items() if name.startswith(("index ", "heap "))) <= 10, (
                        described,
                        reads,
                    )
                    assert not walked_indexes(reads), (described, walked_indexes(reads), reads)


def test_the_search_bound_is_per_page_not_per_match() -> None:
    """The bound above is a page's, far below the thousands of Smiths (else it would prove nothing)."""
    assert bound(12) * 10 < BLOCK and bound(100) * 5 < BLOCK * 2


SHARED = {
    "name_last": "Smith",
    "address_line_one": "100 Main St",
    "address_zip": "21201",
    "phone_number": "+14155550100",
    "email": "a1@example.com",
    "ssn": "123-45-6789",
    "date_of_birth": "1985-05-05",
}  # another birth date: under `block`, a match that may be waived


@pytest.mark.parametrize("policy", ["warn", "block"])
async def test_an_update_to_values_thousands_share_reads_a_few_entries_of_each_index(
    pool: asyncpg.Pool, database_url: str, tenants: Tenants, policy: str
) -> None:
    """PATCH /customers/{id}: the customer last in the table takes the name, address, phone, SSN and
    email thousands of ours share (and back): the duplicate check reads five entries of each of its
    indexes (twice under `block`, which checks again under locks), the row and its search terms are
    changed by their keys."""
    await pool.execute("UPDATE organizations SET duplicate_customer_policy = $2 WHERE id = $1", tenants.ours, policy)
    rare = {
        "name_last": "Zyxwv",
        "address_line_one": "9 Elm St",
        "address_zip": "94105",
        "phone_number": "+14155550199",
        "email": "zyxwv@example.org",
        "ssn": "987-65-4320",
    }
    changes = itertools.cycle([SHARED, rare])
    async with contextlib.aclosing(plan_states(pool, database_url, crowd)) as states:
        async for statistics, mode, conn in states:
            for _ in range(6):  # past asyncpg's five custom plans, in each mode
                body = dict(next(changes), **({"__ignoreWarnings": True} if policy == "block" else {}))
                answer, reads = await reads_of(conn, partial(_update, conn, tenants.ours, "b1999", body))
                what = (policy, statistics, mode, body["name_last"])
                warned = {warning.code for warning in answer.warnings or ()}
                if body["name_last"] == "Smith":
                    assert warned == {
                        "duplicate_ssn",
                        "duplicate_email",
                        "duplicate_phone_number",
                        "duplicate_address",
                    }, what
                assert not [name for name in reads if name.startswith("seq scans")], (what, reads)
                # Each check reads at most six entries of each of its indexes (five matches, and the
                # customer itself, which it skips), and their rows; the update reads its row by its keys.
                checks = 2 if policy == "block" else 1
                # The search terms change by their keys: the old name's five are found and deleted,
                # the new one's five checked for and written, whoever else has either name.
                limits = {
                    "heap customers": checks * 4 * 6 + 2,
                    "index customer_search_terms_pkey": 2 * 5,
                    "heap customer_search_terms": 5,
                }
                too_many = {
                    name: n
                    for name, n in reads.items()
                    if name.startswith(("index ", "heap ")) and n > limits.get(name, checks * 6 + 2)
                }
                assert not too_many, (what, too_many)
                assert not walked_indexes(reads), (what, walked_indexes(reads), reads)
    found = await pool.fetch(
        "SELECT customer_row_id FROM customer_search_terms WHERE org_id = $1 AND term = 'zyxwv'", tenants.ours
    )
    assert len(found) == 1  # the search terms followed the name each time


async def _update(conn: asyncpg.Connection, org_id: int, customer_id: str, body: dict[str, Any]) -> Customer:
    """PATCH /customers/{customer_id}'s work, in its transaction, as the route runs it."""
    async with conn.transaction():
        return await customer_rules.update(
            conn, org_id, customer_id, customer_rules.parse_update(json.dumps(body).encode()), CIPHER
        )


async def test_a_page_reads_no_deleted_accounts_however_many(
    api: ApiClient, pool: asyncpg.Pool, database_url: str, no_autovacuum: None
) -> None:
    """Issue 11: a tenant that deleted all but its last five of thousands of accounts (DELETE
    /accounts/{id}, a soft delete): each list reads what a page of its live rows reads, from the
    partial indexes on the live rows, never the deleted ones (all before the live in id order)."""
    async with pool.acquire() as conn, conn.transaction():
        await _insert_customers(conn, api.org_id, "d", BLOCK, "Smith")
        await _insert_accounts(conn, api.org_id, "d", BLOCK)
        busy = await conn.fetchval("SELECT id FROM customers WHERE org_id = $1 AND customer_id = 'd3'", api.org_id)
        await conn.execute(
            """INSERT INTO customer_account_links (org_id, account_row_id, customer_row_id, customer_account_role,
                   customer_account_external_id)
               SELECT $1, id, $2, 'SECONDARY', 'busy' FROM accounts WHERE org_id = $1 ON CONFLICT DO NOTHING""",
            api.org_id,
            busy,
        )
        live_from = await conn.fetchval("SELECT max(id) - 4 FROM accounts WHERE org_id = $1", api.org_id)
        await conn.execute(
            "UPDATE accounts SET deleted_at = now() WHERE org_id = $1 AND id < $2", api.org_id, live_from
        )
        await conn.execute(
            """UPDATE customer_account_links SET deleted_at = now()
               WHERE org_id = $1 AND account_row_id < $2""",
            api.org_id,
            live_from,
        )
    # Deleted one by one over time, their old row versions would be gone by autovacuum's next pass;
    # deleted all at once here, a first scan would count each dead version's index entry once.
    await pool.execute("VACUUM accounts, customer_account_links, link_search_terms")
    page = PageRequest(12, None, None)

    def accounts(filters: AccountFilter) -> Callable[[asyncpg.Connection], Awaitable[Any]]:
        async def call(conn: asyncpg.Connection) -> Any:
            return await account_rules.list_accounts(conn, api.org_id, CURSORS, page, CIPHER, filters)

        return call

    def links(filters: AccountFilter, search: str | None = None) -> Callable[[asyncpg.Connection], Awaitable[Any]]:
        async def call(conn: asyncpg.Connection) -> Any:
            words = customer_rules.search_words(search)
            return await customer_account_rules.list_links(conn, api.org_id, CURSORS, page, CIPHER, filters, words)

        return call

    def customer_accounts(filters: AccountFilter) -> Callable[[asyncpg.Connection], Awaitable[Any]]:
        async def call(conn: asyncpg.Connection) -> Any:
            return await customer_account_rules.list_customer_accounts(
                conn, api.org_id, CURSORS, page, "d3", CIPHER, filters
            )

        return call

    # Unfiltered, filtered (the listing-key indexes) and searched (link_search_terms): a deleted row is
    # in none of them, and none reads it. Every customer is a Smith or a Last<n>; d3 is on every account.
    active = AccountFilter(account_status=("ACTIVE",), product_type=("REVOLVING",))
    listings = {"GET /accounts": (accounts(NO_FILTER), 5, 2), "GET /customers/accounts": (links(NO_FILTER), 10, 2)}
    listings["GET /customers/{id}/accounts"] = (customer_accounts(NO_FILTER), 5, 3)
    listings["GET /accounts?account_status=ACTIVE"] = (accounts(active), 5, 2)
    listings["GET /customers/accounts?account_status=ACTIVE"] = (links(active), 10, 2)
    listings["GET /customers/{id}/accounts?account_status=ACTIVE"] = (customer_accounts(active), 5, 3)
    listings["GET /customers/accounts?search_parameters=last3"] = (links(NO_FILTER, "last3"), 5, 3)
    listings["GET /customers/accounts?search_parameters=last3&account_status=ACTIVE"] = (
        links(active, "last3"),
        5,
        3,
    )
    async with contextlib.aclosing(plan_states(pool, database_url)) as states:
        async for statistics, mode, conn in states:
            for name, (call, live, per_row) in listings.items():
                for _ in range(6):  # past asyncpg's five custom plans
                    answer, reads = await reads_of(conn, partial(call, conn))
                    what = (name, statistics, mode)
                    assert len(answer.results) == live and not answer.paging.has_more, what
                    assert_bounded(reads, 12, str(what), per_row)
