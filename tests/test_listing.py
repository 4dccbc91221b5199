"""GET /customers: limit, keyset paging with opaque cursors, search, and the indexes that serve them."""

from __future__ import annotations

import base64
import datetime
import os
from typing import Any

import asyncpg
import httpx
import pytest

from canopy_svc.store import customers as customer_store
from tests.helpers import ApiClient, minimal_customer, seed_customer

MANY = 1050
OTHERS_PER_OURS = 10


COPY_COLUMNS = [
    "org_id",
    "customer_id",
    "name_first",
    "name_last",
    "phone_number",
    "address_line_one",
    "address_city",
    "address_state",
    "address_zip",
    "email",
    "date_of_birth",
]


def bulk_records(org_id: int, n: int, prefix: str) -> list[tuple[Any, ...]]:
    return [
        (
            org_id,
            f"{prefix}{i:05d}",
            f"First{i}",
            f"Last{i}",
            "+14155550123",
            f"{i} Main St",
            "Springfield",
            "IL",
            "62701",
            f"{prefix}{i:05d}@example.com",
            datetime.date(1990, 1, 1),
        )
        for i in range(n)
    ]


async def copy(pool: asyncpg.Pool, records: list[tuple[Any, ...]]) -> None:
    async with pool.acquire() as conn:
        await conn.copy_records_to_table("customers", records=records, columns=COPY_COLUMNS)


async def insert_many(pool: asyncpg.Pool, org_id: int, n: int, prefix: str = "bulk") -> list[str]:
    """n customers straight into the table (oldest first = customer_id order), fast."""
    records = bulk_records(org_id, n, prefix)
    await copy(pool, records)
    return [record[1] for record in records]


@pytest.fixture
async def many(api: ApiClient, pool: asyncpg.Pool) -> list[str]:
    return await insert_many(pool, api.org_id, MANY)


async def listing(api: ApiClient, **params: Any) -> dict[str, Any]:
    response = await api.http.get("/customers", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"results", "paging"}
    assert set(body["paging"]) == {"starting_after", "ending_before", "has_more"}
    return body


def ids_of(page: dict[str, Any]) -> list[str]:
    return [customer["customer_id"] for customer in page["results"]]


def assert_bad_request(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "bad_request"


# --- limit ---------------------------------------------------------------------------------------


async def test_empty_listing(api: ApiClient) -> None:
    page = await listing(api)
    assert page == {"results": [], "paging": {"starting_after": None, "ending_before": None, "has_more": False}}


async def test_default_limit_is_12_oldest_first(api: ApiClient, many: list[str]) -> None:
    page = await listing(api)
    assert ids_of(page) == many[:12]
    assert page["paging"]["has_more"] is True
    assert page["paging"]["ending_before"] is None
    assert page["paging"]["starting_after"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0", 1),
        ("-7", 1),
        ("1", 1),
        ("100", 100),
        ("1000", 1000),
        ("1001", 1000),
        ("5000", 1000),
        ("abc", 12),
        ("", 12),
        ("1.5", 12),
        ("99999999999999999999999", 1000),
    ],
)
async def test_limit_is_clamped_never_rejected(api: ApiClient, many: list[str], raw: str, expected: int) -> None:
    page = await listing(api, limit=raw)
    assert ids_of(page) == many[:expected]


async def test_listed_customers_are_whole(api: ApiClient) -> None:
    created = (await api.http.post("/customers", json=seed_customer())).json()
    page = await listing(api)
    assert page["results"] == [created]


async def test_exactly_limit_rows_has_no_more(api: ApiClient, pool: asyncpg.Pool) -> None:
    ids = await insert_many(pool, api.org_id, 12)
    page = await listing(api)
    assert ids_of(page) == ids
    assert page["paging"] == {"starting_after": None, "ending_before": None, "has_more": False}


# --- paging --------------------------------------------------------------------------------------


async def test_paging_forward_then_back_visits_everyone_exactly_once(api: ApiClient, many: list[str]) -> None:
    seen: list[str] = []
    page = await listing(api, limit=100)
    assert page["paging"]["ending_before"] is None
    pages = [page]
    while True:
        seen += ids_of(page)
        cursor = page["paging"]["starting_after"]
        if cursor is None:
            assert page["paging"]["has_more"] is False
            break
        assert page["paging"]["has_more"] is True
        assert len(pages) < 20, "paging does not end"
        page = await listing(api, limit=100, starting_after=cursor)
        assert page["paging"]["ending_before"] is not None
        pages.append(page)
    assert seen == many  # every customer once, oldest first
    assert [len(p["results"]) for p in pages] == [100] * 10 + [50]

    # and back from the last page, by ending_before
    back: list[str] = ids_of(page)
    steps = 0
    while page["paging"]["ending_before"] is not None:
        steps += 1
        assert steps < 20, "paging back does not end"
        page = await listing(api, limit=100, ending_before=page["paging"]["ending_before"])
        assert page["paging"]["starting_after"] is not None
        back = ids_of(page) + back
    assert back == many
    assert ids_of(page) == many[:100]
    assert page["paging"]["has_more"] is False


async def test_cursors_point_at_the_neighbouring_pages(api: ApiClient, many: list[str]) -> None:
    first = await listing(api, limit=5)
    second = await listing(api, limit=5, starting_after=first["paging"]["starting_after"])
    assert ids_of(second) == many[5:10]
    assert second["paging"]["has_more"] is True
    again = await listing(api, limit=5, ending_before=second["paging"]["ending_before"])
    assert ids_of(again) == many[:5]
    assert again["paging"]["ending_before"] is None
    assert again["paging"]["has_more"] is False
    # the cursor is a position, not a page number: a different limit still continues from it
    wider = await listing(api, limit=7, starting_after=first["paging"]["starting_after"])
    assert ids_of(wider) == many[5:12]


async def test_new_customers_do_not_shift_a_walk(api: ApiClient, pool: asyncpg.Pool) -> None:
    ids = await insert_many(pool, api.org_id, 10)
    first = await listing(api, limit=4)
    await insert_many(pool, api.org_id, 3, prefix="late")
    rest = await listing(api, limit=100, starting_after=first["paging"]["starting_after"])
    assert ids_of(rest) == [*ids[4:], "late00000", "late00001", "late00002"]


async def test_both_cursors_at_once_is_400(api: ApiClient, many: list[str]) -> None:
    page = await listing(api, limit=3)
    second = await listing(api, limit=3, starting_after=page["paging"]["starting_after"])
    response = await api.http.get(
        "/customers",
        params={
            "starting_after": second["paging"]["starting_after"],
            "ending_before": second["paging"]["ending_before"],
        },
    )
    assert_bad_request(response)
    # An empty cursor is none (a client templating a null): beside the other, it is no second cursor.
    cursor = second["paging"]["starting_after"]
    assert await listing(api, limit=3, starting_after=cursor, ending_before="") == await listing(
        api, limit=3, starting_after=cursor
    )
    cursor = second["paging"]["ending_before"]
    assert await listing(api, limit=3, starting_after="", ending_before=cursor) == await listing(
        api, limit=3, ending_before=cursor
    )


@pytest.mark.parametrize("parameter", ["starting_after", "ending_before"])
async def test_forged_and_truncated_cursors_are_400(api: ApiClient, many: list[str], parameter: str) -> None:
    cursor = (await listing(api, limit=3))["paging"]["starting_after"]
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    forged_position = (500).to_bytes(8, "big") + raw[8:]  # another position under the old MAC
    candidates = [
        cursor[:-3],
        cursor[:8],
        cursor + "AAAA",
        base64.urlsafe_b64encode(forged_position).decode().rstrip("="),
        base64.urlsafe_b64encode(os.urandom(len(raw))).decode().rstrip("="),
        "not a cursor!",
        "0",
        "%%%",
        # The real cursor with what base64's decoder would skip or pad: the cursor's pattern refuses it.
        cursor + "=",
        cursor + "\n",
        " " + cursor,
        cursor[:9] + "." + cursor[9:],
        cursor[:9] + "\n" + cursor[9:],
    ]
    for candidate in candidates:
        assert_bad_request(await api.http.get("/customers", params={parameter: candidate}))


async def test_cursor_of_another_organization_is_400(
    api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool, many: list[str]
) -> None:
    await insert_many(pool, other_api.org_id, 30, prefix="globex")
    theirs = await listing(other_api, limit=10)
    second = await listing(other_api, limit=10, starting_after=theirs["paging"]["starting_after"])
    assert ids_of(second)[0] == "globex00010"
    for parameter, cursor in (
        ("starting_after", theirs["paging"]["starting_after"]),
        ("ending_before", second["paging"]["ending_before"]),
    ):
        assert_bad_request(await api.http.get("/customers", params={parameter: cursor}))
    # and ours are refused to them
    ours = await listing(api, limit=10)
    assert_bad_request(
        await other_api.http.get("/customers", params={"starting_after": ours["paging"]["starting_after"]})
    )


async def test_each_org_lists_only_its_own(api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool) -> None:
    mine = await insert_many(pool, api.org_id, 20, prefix="acme")
    theirs = await insert_many(pool, other_api.org_id, 20, prefix="globex")
    assert ids_of(await listing(api, limit=1000)) == mine
    assert ids_of(await listing(other_api, limit=1000)) == theirs


# --- search --------------------------------------------------------------------------------------


@pytest.fixture
async def people(api: ApiClient) -> dict[str, str]:
    bodies = {
        "trevino": seed_customer(),
        "lovelace": minimal_customer(customer_id="lovelace"),
        "hopper": minimal_customer(
            customer_id="hopper",
            name_first="Grace",
            name_last="Hopper",
            business_details={
                "doing_business_as": "Cobol Works",
                "business_ein": "123456789",
                "business_legal_name": "Umbrella Holdings",
            },
        ),
        "trevor": minimal_customer(customer_id="trevor", name_first="Treasure", name_last="Island"),
        "obrien": minimal_customer(customer_id="obrien", name_first="Seán", name_last="O'Brien-Smith"),
    }
    for body in bodies.values():
        response = await api.http.post("/customers", json=body)
        assert response.status_code == 200, response.text
    return {name: str(body.get("customer_id", "0x1234")) for name, body in bodies.items()}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("tre", ["0x1234", "trevor"]),
        ("trev", ["0x1234"]),
        ("Trevino", ["0x1234"]),
        ("TREVINO", ["0x1234"]),
        ("umbrella corp", ["0x1234"]),
        ("corp umbrella", ["0x1234"]),
        ("Umbrella", ["0x1234", "hopper"]),
        ("umb", ["0x1234", "hopper"]),
        ("umbrella holdings", ["hopper"]),
        ("cobol", ["hopper"]),
        ("miriam trevino", ["0x1234"]),
        ("miriam lovelace", []),
        ("evino", []),
        ("rella", []),
        ("ada", ["lovelace"]),
        ("brien", ["obrien"]),
        ("smith", ["obrien"]),
        ("seán", ["obrien"]),
        ("  tre   ", ["0x1234", "trevor"]),
        ("tre,", ["0x1234", "trevor"]),
        # customer_id, email, city are not searched
        ("0x1234", []),
        ("marissa", []),
        ("atlanta", []),
    ],
)
async def test_search(api: ApiClient, people: dict[str, str], query: str, expected: list[str]) -> None:
    page = await listing(api, search_parameters=query)
    assert ids_of(page) == expected


@pytest.mark.parametrize(
    "query", ["'", "tre' | 'a", "a:*", "!", "&", "tre & | !", "(", "\\", "' OR 1=1 --", "日本", "x" * 300]
)
async def test_search_with_odd_characters_never_fails(api: ApiClient, people: dict[str, str], query: str) -> None:
    response = await api.http.get("/customers", params={"search_parameters": query})
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        found = set(ids_of(response.json()))
        assert found <= set(people.values())


async def test_search_pages_with_cursors(api: ApiClient, pool: asyncpg.Pool) -> None:
    await insert_many(pool, api.org_id, 40)  # First0.. First39: "first1" matches First1, First10..19
    expected = ["bulk00001"] + [f"bulk{i:05d}" for i in range(10, 20)]
    first = await listing(api, search_parameters="first1", limit=4)
    assert ids_of(first) == expected[:4] and first["paging"]["has_more"] is True
    rest = await listing(api, search_parameters="first1", limit=100, starting_after=first["paging"]["starting_after"])
    assert ids_of(rest) == expected[4:]
    assert rest["paging"]["has_more"] is False and rest["paging"]["starting_after"] is None


async def test_search_is_scoped_to_the_organization(
    api: ApiClient, other_api: ApiClient, people: dict[str, str]
) -> None:
    assert ids_of(await listing(other_api, search_parameters="trevino")) == []
    await other_api.http.post("/customers", json=seed_customer(customer_id="theirs"))
    assert ids_of(await listing(api, search_parameters="trevino")) == ["0x1234"]
    assert ids_of(await listing(other_api, search_parameters="trevino")) == ["theirs"]


async def test_updates_are_searchable(api: ApiClient, people: dict[str, str]) -> None:
    response = await api.http.patch("/customers/lovelace", json={"name_last": "Byron"})
    assert response.status_code == 200, response.text
    assert ids_of(await listing(api, search_parameters="byr")) == ["lovelace"]
    assert ids_of(await listing(api, search_parameters="lovelace")) == []


# --- served by indexes ---------------------------------------------------------------------------


class RecordingConnection:
    """Stands in for a connection to capture the exact SQL and arguments the store sends."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        self.calls.append((sql, args))
        return []


async def plan_of(pool: asyncpg.Pool, org_id: int, **page_args: Any) -> str:
    recorder = RecordingConnection()
    await customer_store.page(recorder, org_id, **page_args)  # type: ignore[arg-type]
    ((sql, args),) = recorder.calls
    async with pool.acquire() as conn:
        rows = await conn.fetch(f"EXPLAIN {sql}", *args)
    return "\n".join(row[0] for row in rows)


@pytest.fixture
async def analyzed(api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool) -> list[int]:
    """MANY customers of ours interleaved with ten times as many of a bigger tenant's, as in production;
    answers our row ids."""
    ours = bulk_records(api.org_id, MANY, "bulk")
    theirs = bulk_records(other_api.org_id, OTHERS_PER_OURS * MANY, "globex")
    step = OTHERS_PER_OURS
    await copy(pool, [row for i, mine in enumerate(ours) for row in (mine, *theirs[step * i : step * (i + 1)])])
    await pool.execute("ANALYZE customers")
    return [r["id"] for r in await pool.fetch("SELECT id FROM customers WHERE org_id = $1 ORDER BY id", api.org_id)]


async def test_search_walks_one_terms_rows_from_the_cursor(
    api: ApiClient, pool: asyncpg.Pool, analyzed: list[int]
) -> None:
    """A search reads customer_search_terms' primary key for one term, from the cursor on (test_bounded_reads
    counts what that costs); the longest word leads, the others are checked on the customer."""
    for search, after in ((["last1049"], None), (["first10", "last10"], analyzed[5])):
        plan = await plan_of(pool, api.org_id, limit=12, search=search, after=after)
        conditions = [line for line in plan.splitlines() if "customer_search_terms_pkey" in line]
        assert conditions, plan
        index_cond = plan.split(conditions[0])[1].splitlines()[1]
        assert "term = " in index_cond and "customer_row_id >" in index_cond, plan
        assert "customers_search_vector" not in plan, plan


async def test_search_checks_words_longer_than_the_stored_start(api: ApiClient) -> None:
    """Terms keep a word's first 32 characters: a longer search word is matched whole on search_vector."""
    long_name = "Wolfeschlegelsteinhausenbergerdorffwelchevoralternwarengewissenhaft"
    for customer_id, name_last in (("long", long_name), ("longer", long_name + "s"), ("other", long_name[:40] + "x")):
        response = await api.http.post(
            "/customers",
            json=minimal_customer(customer_id=customer_id, name_last=name_last, email=f"{customer_id}@example.org"),
        )
        assert response.status_code == 200, response.text
    assert ids_of(await listing(api, search_parameters=long_name[:32])) == ["long", "longer", "other"]
    assert ids_of(await listing(api, search_parameters=long_name[:45])) == ["long", "longer"]
    assert ids_of(await listing(api, search_parameters=long_name + "s")) == ["longer"]
    assert ids_of(await listing(api, search_parameters=long_name[:40] + "y")) == []


async def test_search_words_are_read_as_the_names_were(api: ApiClient, people: dict[str, str]) -> None:
    """The term searched is the word as PostgreSQL's text search makes it, as the stored names were made:
    a character the parser drops (½) is dropped from the search too, and a word of none finds nobody."""
    assert ids_of(await listing(api, search_parameters="tre½")) == ["0x1234", "trevor"]
    assert ids_of(await listing(api, search_parameters="½")) == []


async def test_keyset_paging_reads_from_the_cursor_never_a_scan(
    api: ApiClient, pool: asyncpg.Pool, analyzed: list[int]
) -> None:
    """Whatever index the planner picks for a big tenant, a page starts at its cursor: no Seq Scan, no
    OFFSET, and the cursor's id bound is an index condition (so page 1,000,000 reads what page 1 does)."""
    for page_args, bound in (
        ({"limit": 12}, None),
        ({"limit": 100, "after": analyzed[900]}, "id >"),
        ({"limit": 100, "before": analyzed[300]}, "id <"),
    ):
        plan = await plan_of(pool, api.org_id, **page_args)
        assert "Seq Scan" not in plan, plan
        assert "OFFSET" not in plan.upper(), plan
        if bound is not None:
            cond = "\n".join(line for line in plan.splitlines() if "Index Cond" in line)
            assert bound in cond, plan


@pytest.fixture
async def small_tenant(api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool) -> list[int]:
    """60 customers of ours spread among 12,000 of a big tenant's; answers our row ids."""
    ours = bulk_records(api.org_id, 60, "bulk")
    theirs = bulk_records(other_api.org_id, 12_000, "globex")
    await copy(pool, [row for i, mine in enumerate(ours) for row in (mine, *theirs[200 * i : 200 * (i + 1)])])
    await pool.execute("ANALYZE customers")
    return [r["id"] for r in await pool.fetch("SELECT id FROM customers WHERE org_id = $1 ORDER BY id", api.org_id)]


async def test_keyset_paging_uses_the_org_id_index(api: ApiClient, pool: asyncpg.Pool, small_tenant: list[int]) -> None:
    for page_args in (
        {"limit": 12},
        {"limit": 10, "after": small_tenant[30]},
        {"limit": 10, "before": small_tenant[40]},
    ):
        plan = await plan_of(pool, api.org_id, **page_args)
        assert "customers_org_id_id" in plan, (page_args, plan)
        assert "Seq Scan" not in plan and "Sort" not in plan, plan
    page = await listing(api, limit=10)
    assert ids_of(page) == [f"bulk{i:05d}" for i in range(10)]
