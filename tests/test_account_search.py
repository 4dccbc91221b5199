"""Issue 11 item 5: GET /customers/accounts' search (`search_parameters`, and Canopy's clients'
`search_parameter`), and the `account_status` / `product_type` filters of GET /customers/accounts,
GET /accounts and GET /customers/{id}/accounts, alone, combined and paged, kept by the triggers when
names, statuses and products change, and never across organizations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from tests.helpers import ApiClient, assert_error, assert_invalid, minimal_customer

STATUSES = ["ACTIVE", "SUSPENDED", "CLOSED"]
PRODUCT_TYPES = [
    "REVOLVING", "INSTALLMENT", "MIXED_RATE_INSTALLMENT", "DEFERRED_INSTALLMENT",
    "FIXED_RATE_INSTALLMENT", "INVENTORY_FINANCING", "LOGISTICS_FINANCING",
]  # fmt: skip
LISTINGS = ["/customers/accounts", "/accounts", "/customers/maria/accounts"]


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def product(api: ApiClient, product_id: str, name: str, product_type: str) -> None:
    ok(
        await api.http.post(
            "/products",
            json={"product_id": product_id, "product_overview": {"product_name": name, "product_type": product_type}},
        )
    )


async def account(api: ApiClient, account_id: str, product_id: str, *customer_ids: str) -> None:
    ok(
        await api.http.post(
            "/accounts",
            json={
                "account_id": account_id,
                "product_id": product_id,
                "assign_customers": [{"customer_id": customer_id} for customer_id in customer_ids],
            },
        )
    )


async def customer(api: ApiClient, customer_id: str, first: str, last: str, business: str | None = None) -> None:
    details = {"doing_business_as": business, "business_ein": "12-3456789"} if business else ...
    ok(
        await api.http.post(
            "/customers",
            json=minimal_customer(customer_id=customer_id, name_first=first, name_last=last, business_details=details),
        )
    )


async def set_status(pool: asyncpg.Pool, api: ApiClient, account_id: str, status: str) -> None:
    """No route of this build changes a status (an account is created ACTIVE): as a later one would."""
    await pool.execute(
        "UPDATE accounts SET account_status = $3 WHERE org_id = $1 AND account_id = $2", api.org_id, account_id, status
    )


@dataclass
class Book:
    api: ApiClient


@pytest.fixture
async def book(api: ApiClient, pool: asyncpg.Pool) -> Book:
    """Maria Trevino on a gold card (ACTIVE) and a home loan (SUSPENDED); Umbrella Corporation's Jo
    Smith on a gold card (CLOSED) and a business line (ACTIVE); Trevor Umbers on the business line."""
    await product(api, "gold", "Gold Card", "REVOLVING")
    await product(api, "home", "Home Loan", "INSTALLMENT")
    await product(api, "line", "Business Line", "INVENTORY_FINANCING")
    await customer(api, "maria", "Maria", "Trevino")
    await customer(api, "jo", "Jo", "Smith", business="Umbrella Corporation")
    await customer(api, "trevor", "Trevor", "Umbers")
    await account(api, "acct-2300", "gold", "maria")
    await account(api, "zq7Loan", "home", "maria")
    await account(api, "acct-2301", "gold", "jo")
    await account(api, "biz-9", "line", "jo", "trevor")
    await set_status(pool, api, "zq7Loan", "SUSPENDED")
    await set_status(pool, api, "acct-2301", "CLOSED")
    return Book(api)


async def links(api: ApiClient, **params: Any) -> list[tuple[str, str]]:
    """(customer_id, account_id) of every row GET /customers/accounts answers, in order."""
    page = ok(await api.http.get("/customers/accounts", params={"limit": 1000, **params}))
    assert page["paging"]["has_more"] is False
    return [(row["customer_id"], row["account"]["account_id"]) for row in page["results"]]


async def accounts_of(api: ApiClient, path: str, **params: Any) -> list[str]:
    page = ok(await api.http.get(path, params={"limit": 1000, **params}))
    if path == "/customers/accounts":
        return [row["account"]["account_id"] for row in page["results"]]
    return [row["account_id"] for row in page["results"]]


ALL_LINKS = [
    ("maria", "acct-2300"),
    ("maria", "zq7Loan"),
    ("jo", "acct-2301"),
    ("jo", "biz-9"),
    ("trevor", "biz-9"),
]


# --- search ---------------------------------------------------------------------------------------


async def test_without_a_search_every_link_is_answered(book: Book) -> None:
    assert await links(book.api) == ALL_LINKS
    assert await links(book.api, search_parameters="") == ALL_LINKS
    assert await links(book.api, search_parameters="  , ") == ALL_LINKS  # no words: no search


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        # name_first, name_last, doing_business_as, account_id, the product's name
        ("maria", [("maria", "acct-2300"), ("maria", "zq7Loan")]),
        ("smith", [("jo", "acct-2301"), ("jo", "biz-9")]),
        ("umbrella", [("jo", "acct-2301"), ("jo", "biz-9")]),
        ("zq7loan", [("maria", "zq7Loan")]),
        ("biz", [("jo", "biz-9"), ("trevor", "biz-9")]),
        ("home", [("maria", "zq7Loan")]),
        ("business line", [("jo", "biz-9"), ("trevor", "biz-9")]),
        # an account id's parts, as its words: `acct-2300` is `acct` and `2300`
        ("acct", [("maria", "acct-2300"), ("jo", "acct-2301")]),
        ("acct 2300", [("maria", "acct-2300")]),
        ("acct-2300", [("maria", "acct-2300")]),
        ("230", [("maria", "acct-2300"), ("jo", "acct-2301")]),
    ],
)
async def test_each_searchable_field_is_searched(book: Book, search: str, expected: list[tuple[str, str]]) -> None:
    assert await links(book.api, search_parameters=search) == expected


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("tre", [("maria", "acct-2300"), ("maria", "zq7Loan"), ("trevor", "biz-9")]),  # Trevino, Trevor
        ("trevi", [("maria", "acct-2300"), ("maria", "zq7Loan")]),
        ("umb", [("jo", "acct-2301"), ("jo", "biz-9"), ("trevor", "biz-9")]),  # Umbrella, Umbers
        ("umbrella corp", [("jo", "acct-2301"), ("jo", "biz-9")]),
        ("g", [("maria", "acct-2300"), ("jo", "acct-2301")]),  # Gold
        ("revino", []),  # inside a word, not at its start
        ("mith", []),
        ("oan", []),
        ("trevinos", []),  # longer than the word
        ("nobody", []),
    ],
)
async def test_words_match_at_their_start(book: Book, search: str, expected: list[tuple[str, str]]) -> None:
    assert await links(book.api, search_parameters=search) == expected


@pytest.mark.parametrize("search", ["TREVINO", "Trevino", "tReViNo", "TREVI", "MARIA GOLD", "Maria Gold"])
async def test_case_does_not_matter(book: Book, search: str) -> None:
    assert await links(book.api, search_parameters=search) == await links(book.api, search_parameters=search.lower())
    assert await links(book.api, search_parameters=search)


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("maria gold", [("maria", "acct-2300")]),  # a name and a product
        ("trevino home loan", [("maria", "zq7Loan")]),
        ("jo biz", [("jo", "biz-9")]),
        ("umbrella acct 2301", [("jo", "acct-2301")]),
        ("maria umbrella", []),  # both exist, never on one link
        ("trevor gold", []),
        ("tre umb", [("trevor", "biz-9")]),  # Trevor Umbers (Trevino is on no Umbrella link)
        ("umbers umbers", [("trevor", "biz-9")]),  # a word twice is the word once
    ],
)
async def test_every_word_must_match(book: Book, search: str, expected: list[tuple[str, str]]) -> None:
    assert await links(book.api, search_parameters=search) == expected


async def test_search_parameter_is_an_alias_of_search_parameters(book: Book) -> None:
    for search in ("tre", "umbrella corp", "acct 2301", "nobody"):
        assert await links(book.api, search_parameter=search) == await links(book.api, search_parameters=search)
    # An empty one is none (as an empty cursor is): the other decides.
    assert await links(book.api, search_parameters="", search_parameter="home") == [("maria", "zq7Loan")]
    assert await links(book.api, search_parameters="home", search_parameter="") == [("maria", "zq7Loan")]


@pytest.mark.parametrize(("plural", "singular"), [("tre", "tre"), ("tre", "umb"), ("a", "b c")])
async def test_both_search_parameters_at_once_is_400(book: Book, plural: str, singular: str) -> None:
    response = await book.api.http.get(
        "/customers/accounts", params={"search_parameters": plural, "search_parameter": singular}
    )
    error = assert_error(response, 400, "bad_request")
    assert "search_parameters" in error["message"] and "search_parameter" in error["message"]


@pytest.mark.parametrize("name", ["search_parameters", "search_parameter"])
async def test_more_than_ten_words_is_400(book: Book, name: str) -> None:
    assert_error(await book.api.http.get("/customers/accounts", params={name: "a " * 11}), 400, "bad_request")
    assert await links(book.api, **{name: "maria " * 10}) == [("maria", "acct-2300"), ("maria", "zq7Loan")]


@pytest.mark.parametrize("search", ["\x00", "tre\x00", "%", "'", "tre:*", "tre & !maria", "(", "\\", "é" * 300])
async def test_search_syntax_is_words_only(book: Book, search: str) -> None:
    """Text search operators and quotes are not words: never a 500, never an injection."""
    response = await book.api.http.get("/customers/accounts", params={"search_parameters": search})
    assert response.status_code == 200, response.text
    found = {row["customer_id"] for row in response.json()["results"]}
    if search in ("tre\x00", "tre:*"):
        assert found == {"maria", "trevor"}
    if search == "tre & !maria":  # the words tre and maria, both to match: no operator
        assert found == {"maria"}


async def test_a_long_word_is_found_by_its_whole_length(api: ApiClient) -> None:
    """The terms keep a word's first 32 characters; a longer word is checked whole."""
    long_id = "a" * 40 + "b"
    await product(api, "p", "Card", "REVOLVING")
    await customer(api, "c", "Ada", "Lovelace")
    await account(api, long_id, "p", "c")
    await account(api, "a" * 40 + "c", "p", "c")
    assert await links(api, search_parameters=long_id) == [("c", long_id)]
    assert len(await links(api, search_parameters="a" * 35)) == 2


# --- the search follows what it searches -----------------------------------------------------------


async def test_a_renamed_customer_is_found_by_the_new_name_only(book: Book) -> None:
    ok(await book.api.http.patch("/customers/maria", json={"name_last": "Quintana"}))
    assert await links(book.api, search_parameters="trevino") == []
    assert await links(book.api, search_parameters="quint") == [("maria", "acct-2300"), ("maria", "zq7Loan")]
    assert await links(book.api, search_parameters="maria quintana gold") == [("maria", "acct-2300")]
    ok(
        await book.api.http.patch(
            "/customers/jo", json={"business_details": {"doing_business_as": "Acme", "business_ein": "12-3456789"}}
        )
    )
    assert await links(book.api, search_parameters="umbrella") == []
    assert await links(book.api, search_parameters="acme") == [("jo", "acct-2301"), ("jo", "biz-9")]


async def test_a_link_added_later_is_found(book: Book) -> None:
    ok(await book.api.http.patch("/customers/trevor", json={"assign_to_accounts": [{"account_id": "zq7Loan"}]}))
    assert await links(book.api, search_parameters="trevor home") == [("trevor", "zq7Loan")]
    assert await links(book.api, search_parameters="trevor", account_status="SUSPENDED") == [("trevor", "zq7Loan")]


async def test_a_product_changed_by_hand_reaches_its_links(book: Book, pool: asyncpg.Pool) -> None:
    await pool.execute(
        "UPDATE products SET product_name = 'Platinum', product_type = 'MIXED_RATE_INSTALLMENT'"
        " WHERE org_id = $1 AND product_id = 'gold'",
        book.api.org_id,
    )
    assert await links(book.api, search_parameters="gold") == []
    assert await links(book.api, search_parameters="plat") == [("maria", "acct-2300"), ("jo", "acct-2301")]
    assert await accounts_of(book.api, "/accounts", product_type="MIXED_RATE_INSTALLMENT") == ["acct-2300", "acct-2301"]
    assert await links(
        book.api, search_parameters="plat", product_type="MIXED_RATE_INSTALLMENT", account_status="CLOSED"
    ) == [("jo", "acct-2301")]


async def test_a_status_change_reaches_the_filters_and_the_filtered_search(book: Book, pool: asyncpg.Pool) -> None:
    await set_status(pool, book.api, "biz-9", "SUSPENDED")
    assert await accounts_of(book.api, "/accounts", account_status="SUSPENDED") == ["zq7Loan", "biz-9"]
    assert await links(book.api, account_status="SUSPENDED") == [
        ("maria", "zq7Loan"),
        ("jo", "biz-9"),
        ("trevor", "biz-9"),
    ]
    assert await links(book.api, search_parameters="umb", account_status="SUSPENDED") == [
        ("jo", "biz-9"),
        ("trevor", "biz-9"),
    ]
    assert await links(book.api, search_parameters="umb", account_status="ACTIVE") == []


async def test_the_terms_of_a_deleted_link_go_with_it(book: Book, pool: asyncpg.Pool) -> None:
    await pool.execute("DELETE FROM customer_account_links WHERE org_id = $1", book.api.org_id)
    assert await pool.fetchval("SELECT count(*) FROM link_search_terms WHERE org_id = $1", book.api.org_id) == 0
    assert await links(book.api, search_parameters="tre") == []


async def test_the_backfill_gives_old_rows_their_copies(book: Book, pool: asyncpg.Pool) -> None:
    """Rows written before the schema's section (copies and terms absent) get them from its backfill."""
    from canopy_svc.store import migrations

    async with pool.acquire() as conn:
        before = await conn.fetch("SELECT org_id, term, link_id FROM link_search_terms ORDER BY 1, 2, 3")
        await conn.execute("ALTER TABLE customer_account_links DISABLE TRIGGER USER")
        await conn.execute("ALTER TABLE accounts DISABLE TRIGGER USER")
        try:
            await conn.execute("UPDATE accounts SET product_type = NULL")
            await conn.execute(
                "UPDATE customer_account_links SET account_status = NULL, product_type = NULL, search_vector = NULL"
            )
            await conn.execute("TRUNCATE link_search_terms")
        finally:
            await conn.execute("ALTER TABLE accounts ENABLE TRIGGER USER")
            await conn.execute("ALTER TABLE customer_account_links ENABLE TRIGGER USER")
        await conn.execute(migrations.schema_path().read_text())
        assert await conn.fetch("SELECT org_id, term, link_id FROM link_search_terms ORDER BY 1, 2, 3") == before
        await conn.execute(migrations.schema_path().read_text())  # again: nothing changes
        assert await conn.fetch("SELECT org_id, term, link_id FROM link_search_terms ORDER BY 1, 2, 3") == before
    assert await links(book.api, search_parameters="tre", account_status="SUSPENDED") == [("maria", "zq7Loan")]


# --- filters --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"account_status": "ACTIVE"}, ["acct-2300", "biz-9"]),
        ({"account_status": "SUSPENDED"}, ["zq7Loan"]),
        ({"account_status": "CLOSED"}, ["acct-2301"]),
        ({"account_status": "SUSPENDED,CLOSED"}, ["zq7Loan", "acct-2301"]),
        ({"account_status": "CLOSED,SUSPENDED,CLOSED"}, ["zq7Loan", "acct-2301"]),
        ({"account_status": "ACTIVE,SUSPENDED,CLOSED"}, ["acct-2300", "zq7Loan", "acct-2301", "biz-9"]),
        ({"account_status": ["SUSPENDED", "CLOSED"]}, ["zq7Loan", "acct-2301"]),  # repeated: the union
        ({"account_status": ""}, ["acct-2300", "zq7Loan", "acct-2301", "biz-9"]),  # empty: no filter
        ({"product_type": "REVOLVING"}, ["acct-2300", "acct-2301"]),
        ({"product_type": "INSTALLMENT,INVENTORY_FINANCING"}, ["zq7Loan", "biz-9"]),
        ({"product_type": "LOGISTICS_FINANCING"}, []),
        ({"account_status": "ACTIVE", "product_type": "REVOLVING"}, ["acct-2300"]),
        ({"account_status": "ACTIVE,CLOSED", "product_type": "REVOLVING"}, ["acct-2300", "acct-2301"]),
        ({"account_status": "SUSPENDED", "product_type": "REVOLVING"}, []),
    ],
)
async def test_get_accounts_filters(book: Book, params: dict[str, Any], expected: list[str]) -> None:
    assert await accounts_of(book.api, "/accounts", **params) == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"account_status": "ACTIVE"}, [("maria", "acct-2300"), ("jo", "biz-9"), ("trevor", "biz-9")]),
        ({"account_status": "SUSPENDED,CLOSED"}, [("maria", "zq7Loan"), ("jo", "acct-2301")]),
        ({"product_type": "INVENTORY_FINANCING"}, [("jo", "biz-9"), ("trevor", "biz-9")]),
        ({"account_status": "ACTIVE", "product_type": "REVOLVING"}, [("maria", "acct-2300")]),
        # with a search
        ({"search_parameters": "maria", "account_status": "ACTIVE"}, [("maria", "acct-2300")]),
        ({"search_parameter": "tre", "product_type": "INVENTORY_FINANCING"}, [("trevor", "biz-9")]),
        (
            {"search_parameters": "umb", "account_status": "CLOSED,ACTIVE", "product_type": "REVOLVING"},
            [("jo", "acct-2301")],
        ),
        ({"search_parameters": "acct", "account_status": "SUSPENDED"}, []),
    ],
)
async def test_get_customers_accounts_filters(
    book: Book, params: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert await links(book.api, **params) == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["acct-2300", "zq7Loan"]),
        ({"account_status": "ACTIVE"}, ["acct-2300"]),
        ({"account_status": "SUSPENDED"}, ["zq7Loan"]),
        ({"account_status": "CLOSED"}, []),
        ({"product_type": "INSTALLMENT"}, ["zq7Loan"]),
        ({"account_status": "SUSPENDED", "product_type": "REVOLVING"}, []),
    ],
)
async def test_get_customer_accounts_filters(book: Book, params: dict[str, Any], expected: list[str]) -> None:
    assert await accounts_of(book.api, "/customers/maria/accounts", **params) == expected


BAD_VALUES = [
    "active",  # the contract's values are in capitals
    "ACTIVE,",  # an empty item
    ",ACTIVE",
    "ACTIVE,,CLOSED",
    "ACTIVE ",
    " ACTIVE",
    "ACTIVE, CLOSED",
    "OPEN",
    "REVOLVING",  # another filter's value
    "ACTIVE\x00",
    "\x00",
    "ACTIVE;CLOSED",
    "A" * 10_000,
    "ÄCTIVE",
]


@pytest.mark.parametrize("path", LISTINGS)
@pytest.mark.parametrize("name", ["account_status", "product_type"])
@pytest.mark.parametrize("value", BAD_VALUES)
async def test_an_unknown_filter_value_is_422(book: Book, path: str, name: str, value: str) -> None:
    if name == "product_type" and value == "REVOLVING":
        value = "ACTIVE"
    details = assert_invalid(await book.api.http.get(path, params={name: value}))
    allowed = STATUSES if name == "account_status" else PRODUCT_TYPES
    assert details == [
        {
            "instancePath": f"/{name}",
            "keyword": "enum",
            "params": {"allowedValues": allowed},
            "message": "must be equal to one of the allowed values",
        }
    ]


@pytest.mark.parametrize("path", LISTINGS)
async def test_every_bad_filter_is_in_one_answer(book: Book, path: str) -> None:
    details = assert_invalid(
        await book.api.http.get(path, params={"account_status": "ACTIVE,NOPE", "product_type": "CARD"})
    )
    assert [item["instancePath"] for item in details] == ["/account_status", "/product_type"]
    # a good value repeated beside a bad one is still a 422
    assert_invalid(await book.api.http.get(path, params=[("account_status", "ACTIVE"), ("account_status", "x")]))


# --- paging through filtered and searched results ----------------------------------------------------


async def walk(api: ApiClient, path: str, key: Any, **params: Any) -> list[Any]:
    """Every row, four a page, forwards; checks the walk back from the end gives them again."""
    forwards: list[Any] = []
    cursor: str | None = None
    pages = []
    while True:
        page = ok(
            await api.http.get(path, params={"limit": 4, **params, **({"starting_after": cursor} if cursor else {})})
        )
        pages.append(page)
        forwards.extend(key(row) for row in page["results"])
        assert page["paging"]["has_more"] is (page["paging"]["starting_after"] is not None)
        cursor = page["paging"]["starting_after"]
        if cursor is None:
            break
        assert len(forwards) < 1000
    backwards: list[Any] = []
    cursor = pages[-1]["paging"]["ending_before"]
    while cursor:
        page = ok(await api.http.get(path, params={"limit": 4, **params, "ending_before": cursor}))
        backwards[:0] = [key(row) for row in page["results"]]
        cursor = page["paging"]["ending_before"]
    if len(pages) > 1:
        assert backwards + [key(row) for row in pages[-1]["results"]] == forwards
    return forwards


@pytest.fixture
async def crowd(api: ApiClient, pool: asyncpg.Pool) -> list[tuple[str, str, str]]:
    """30 accounts, statuses and products in turn, each with a Lee or a Park: (account_id, status, type)."""
    await product(api, "rev", "Everyday Card", "REVOLVING")
    await product(api, "inst", "Car Loan", "INSTALLMENT")
    await customer(api, "lee", "Sam", "Lee")
    await customer(api, "park", "Sam", "Park")
    made = []
    for n in range(30):
        product_id, product_type = ("rev", "REVOLVING") if n % 2 else ("inst", "INSTALLMENT")
        status = STATUSES[n % 3]
        await account(api, f"acc{n:02d}", product_id, "lee" if n % 5 else "park")
        if status != "ACTIVE":
            await set_status(pool, api, f"acc{n:02d}", status)
        made.append((f"acc{n:02d}", status, product_type))
    return made


def account_id_of(row: dict[str, Any]) -> str:
    return str(row["account"]["account_id"] if "account" in row else row["account_id"])


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"account_status": "SUSPENDED"},
        {"account_status": "ACTIVE,CLOSED"},
        {"product_type": "REVOLVING"},
        {"account_status": "CLOSED", "product_type": "INSTALLMENT"},
        {"account_status": "CLOSED", "product_type": "LOGISTICS_FINANCING"},
    ],
)
@pytest.mark.parametrize("path", ["/accounts", "/customers/accounts", "/customers/lee/accounts"])
async def test_paging_through_filtered_results(
    api: ApiClient, crowd: list[tuple[str, str, str]], path: str, params: dict[str, str]
) -> None:
    statuses = params.get("account_status", "ACTIVE,SUSPENDED,CLOSED").split(",")
    types = params.get("product_type", ",".join(PRODUCT_TYPES)).split(",")
    expected = [
        account_id
        for n, (account_id, status, product_type) in enumerate(crowd)
        if status in statuses and product_type in types and (path != "/customers/lee/accounts" or n % 5)
    ]
    assert await walk(api, path, account_id_of, **params) == expected


@pytest.mark.parametrize(
    "params",
    [
        {"search_parameters": "sam"},
        {"search_parameters": "lee"},
        {"search_parameter": "sam car"},
        {"search_parameters": "acc1"},
        {"search_parameters": "sam", "account_status": "SUSPENDED,CLOSED"},
        {"search_parameters": "lee everyday", "account_status": "ACTIVE"},
    ],
)
async def test_paging_through_searched_results(
    api: ApiClient, crowd: list[tuple[str, str, str]], params: dict[str, str]
) -> None:
    search = (params.get("search_parameters") or params["search_parameter"]).split()
    statuses = params.get("account_status", "ACTIVE,SUSPENDED,CLOSED").split(",")
    words = {
        account_id: {"sam", "lee" if n % 5 else "park", account_id}
        | ({"everyday", "card"} if product_type == "REVOLVING" else {"car", "loan"})
        for n, (account_id, _, product_type) in enumerate(crowd)
    }
    expected = [
        account_id
        for account_id, status, _ in crowd
        if status in statuses and all(any(word.startswith(w) for word in words[account_id]) for w in search)
    ]
    assert expected
    assert await walk(api, "/customers/accounts", account_id_of, **params) == expected


async def test_a_cursor_is_a_position_valid_across_filters(api: ApiClient, crowd: list[tuple[str, str, str]]) -> None:
    """A cursor from an unfiltered page continues a filtered listing after the same account."""
    first = ok(await api.http.get("/accounts", params={"limit": 10}))
    assert first["results"][-1]["account_id"] == "acc09"
    after = ok(
        await api.http.get(
            "/accounts",
            params={"limit": 3, "account_status": "CLOSED", "starting_after": first["paging"]["starting_after"]},
        )
    )
    assert [row["account_id"] for row in after["results"]] == ["acc11", "acc14", "acc17"]
    # The same for the links: an unfiltered page's cursor continues a search (the links are made in
    # account order here, one each).
    first = ok(await api.http.get("/customers/accounts", params={"limit": 12}))
    assert account_id_of(first["results"][-1]) == "acc11"
    searched = ok(
        await api.http.get(
            "/customers/accounts",
            params={"search_parameters": "park", "starting_after": first["paging"]["starting_after"]},
        )
    )
    assert [account_id_of(row) for row in searched["results"]] == ["acc15", "acc20", "acc25"]
    # A cursor of one listing is not one of another (rules/cursors.py).
    response = await api.http.get("/customers/accounts", params={"starting_after": after["paging"]["starting_after"]})
    assert_error(response, 400, "bad_request")


# --- organizations --------------------------------------------------------------------------------


async def test_another_organizations_rows_never_appear(book: Book, other_api: ApiClient, pool: asyncpg.Pool) -> None:
    """The other organization has the same names, ids, products and statuses: each sees its own only."""
    await product(other_api, "gold", "Gold Card", "REVOLVING")
    await customer(other_api, "maria", "Maria", "Trevino")
    await account(other_api, "acct-2300", "gold", "maria")
    await account(other_api, "acct-other", "gold", "maria")
    await set_status(pool, other_api, "acct-other", "SUSPENDED")
    for params in (
        {"search_parameters": "maria"},
        {"search_parameter": "acct"},
        {"search_parameters": "tre gold"},
        {"account_status": "SUSPENDED"},
        {"product_type": "REVOLVING"},
        {"search_parameters": "maria", "account_status": "SUSPENDED"},
    ):
        ours = await links(book.api, **params)
        theirs = await links(other_api, **params)
        assert ("maria", "acct-other") not in ours, params
        assert not {account_id for _, account_id in theirs} - {"acct-2300", "acct-other"}, params
    assert await links(other_api, search_parameters="umbrella") == []
    assert await links(other_api, search_parameters="maria", account_status="SUSPENDED") == [("maria", "acct-other")]
    assert await links(book.api, search_parameters="maria", account_status="SUSPENDED") == [("maria", "zq7Loan")]
    assert await accounts_of(other_api, "/accounts", account_status="SUSPENDED") == ["acct-other"]
    assert await accounts_of(book.api, "/accounts", account_status="SUSPENDED") == ["zq7Loan"]
    assert await accounts_of(other_api, "/customers/maria/accounts", account_status="ACTIVE") == ["acct-2300"]
    assert_error(
        await other_api.http.get("/customers/jo/accounts", params={"account_status": "ACTIVE"}), 404, "not_found"
    )


async def test_another_organizations_cursor_is_400_with_a_filter(book: Book, other_api: ApiClient) -> None:
    page = ok(await book.api.http.get("/customers/accounts", params={"limit": 1, "search_parameters": "tre"}))
    cursor = page["paging"]["starting_after"]
    response = await other_api.http.get(
        "/customers/accounts", params={"search_parameters": "tre", "account_status": "ACTIVE", "starting_after": cursor}
    )
    assert_error(response, 400, "bad_request")
