"""Duplicate customers (contract section 6): warn, block and off, answered from indexes."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import subprocess
import sys
from hashlib import sha256
from typing import Any

import asyncpg
import pytest

from canopy_svc.store.customers import _DUPLICATES, _INSERT_COMPARING_WITH_EVENT, WRITABLE
from canopy_svc.store.loanpro import _NESTED_MATCHES_SQL
from tests.helpers import ApiClient, minimal_customer

# A customer sharing nothing with minimal_customer().
STRANGER = {
    "email": "grace@example.org",
    "phone_number": "+14155550199",
    "address_line_one": "9 Elm St",
    "address_zip": "94105",
    "ssn": "321-54-9876",
}


async def set_policy(api: ApiClient, policy: str) -> None:
    answer = await api.http.put("/organization/settings", json={"duplicate_customer_policy": policy})
    assert answer.status_code == 200
    assert answer.json() == {"duplicate_customer_policy": policy}


async def create(api: ApiClient, **fields: Any) -> Any:
    return await api.http.post("/customers", json=minimal_customer(**fields))


async def test_default_policy_is_warn(api: ApiClient) -> None:
    assert (await api.http.get("/organization/settings")).json() == {"duplicate_customer_policy": "warn"}


async def test_no_duplicates_no_warnings(api: ApiClient) -> None:
    await create(api, customer_id="first", ssn="123-45-6789")
    answer = await create(api, customer_id="second", **STRANGER)
    assert answer.status_code == 200
    assert "warnings" not in answer.json()


async def test_the_country_is_part_of_the_address_match(api: ApiClient) -> None:
    """Line one, zip and country, normalized: no country means US (the contract's default)."""
    await create(api, customer_id="first")  # 1 Main St, 62701, no country
    same_line_abroad = {**STRANGER, "address_line_one": "1  MAIN st", "address_zip": "62701"}
    abroad = await create(
        api, customer_id="abroad", address_country_code="GB", address_state="Kent", **same_line_abroad
    )
    assert abroad.status_code == 200, abroad.text
    assert "warnings" not in abroad.json()
    at_home = await create(
        api,
        customer_id="at-home",
        address_country_code="US",
        **{**same_line_abroad, "email": "other@example.org", "phone_number": "+14155550188", "ssn": "555-44-3333"},
    )
    assert at_home.status_code == 200, at_home.text
    assert [w["code"] for w in at_home.json()["warnings"]] == ["duplicate_address"]


@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"ssn": "123456789"}, "duplicate_ssn", "ssn"),  # same SSN, other spelling
        ({"email": "ADA@Example.com"}, "duplicate_email", "email"),  # case-insensitive
        ({"phone_number": "+14155550123"}, "duplicate_phone_number", "phone_number"),
        ({"address_line_one": "1  MAIN st", "address_zip": "62701-1234"}, "duplicate_address", "address"),
    ],
)
async def test_warn_answers_each_kind_of_match(api: ApiClient, changes: dict[str, Any], code: str, field: str) -> None:
    await create(api, customer_id="first", ssn="123-45-6789")
    answer = await create(api, customer_id="second", **{**STRANGER, **changes})

    assert answer.status_code == 200
    (warning,) = answer.json()["warnings"]
    assert warning["code"] == code and warning["field"] == field and warning["customer_id"] == "first"
    assert warning["message"]


async def test_warn_lists_every_match(api: ApiClient) -> None:
    await create(api, customer_id="first", ssn="123-45-6789")
    answer = await create(api, customer_id="second", ssn="123-45-6789")
    codes = sorted(w["code"] for w in answer.json()["warnings"])
    assert codes == ["duplicate_address", "duplicate_email", "duplicate_phone_number", "duplicate_ssn"]


async def test_block_refuses_and_stores_nothing(api: ApiClient, pool: asyncpg.Pool) -> None:
    await set_policy(api, "block")
    await create(api, customer_id="first")
    answer = await create(api, customer_id="second", **{**STRANGER, "email": "ada@example.com"})

    assert answer.status_code == 409
    body = answer.json()
    assert body["error"]["code"] == "duplicate_customer"
    assert [w["code"] for w in body["warnings"]] == ["duplicate_email"]
    assert await pool.fetchval("SELECT count(*) FROM customers") == 1


async def test_block_lets_one_of_concurrent_twins_through(api: ApiClient, pool: asyncpg.Pool) -> None:
    """Ten creates at once of one address, spelled ten ways (the check's normalization): one is made.
    The check runs again under locks keyed as the comparison normalizes, so the others see it."""
    await set_policy(api, "block")
    spellings = [("1 Main St", "62701"), ("1  MAIN st", "62701-1234"), (" 1 main ST ", "627011234")]
    bodies = [
        {
            **STRANGER,
            "customer_id": f"twin-{i}",
            "email": f"twin{i}@example.org",
            "phone_number": f"+1415555{1000 + i}",
            "ssn": f"{100 + i}-45-6789",
            "address_line_one": spellings[i % 3][0],
            "address_zip": spellings[i % 3][1],
        }
        for i in range(10)
    ]
    answers = await asyncio.gather(*(api.http.post("/customers", json=minimal_customer(**body)) for body in bodies))
    assert sorted(a.status_code for a in answers) == [200] + [409] * 9, [a.text for a in answers]
    assert await pool.fetchval("SELECT count(*) FROM customers") == 1


async def test_block_yields_to_ignore_warnings(api: ApiClient) -> None:
    await set_policy(api, "block")
    await create(api, customer_id="first")
    answer = await create(api, customer_id="second", __ignoreWarnings=True, **{**STRANGER, "email": "ada@example.com"})
    assert answer.status_code == 200
    assert [w["code"] for w in answer.json()["warnings"]] == ["duplicate_email"]


async def test_same_ssn_and_birth_date_is_never_waived_under_block(api: ApiClient, pool: asyncpg.Pool) -> None:
    await set_policy(api, "block")
    await create(api, customer_id="first", ssn="123-45-6789", date_of_birth="1980-01-02")

    same_person = await create(
        api,
        customer_id="second",
        __ignoreWarnings=True,
        **{**STRANGER, "ssn": "123456789", "date_of_birth": "1980-01-02"},
    )
    assert same_person.status_code == 409
    assert same_person.json()["error"]["code"] == "duplicate_customer"

    # The same SSN with another date of birth is a warning that may be waived.
    other_birth_date = await create(
        api,
        customer_id="third",
        __ignoreWarnings=True,
        **{**STRANGER, "ssn": "123456789", "date_of_birth": "1981-01-02"},
    )
    assert other_birth_date.status_code == 200
    assert await pool.fetchval("SELECT count(*) FROM customers") == 2


async def test_off_checks_nothing(api: ApiClient) -> None:
    await set_policy(api, "off")
    await create(api, customer_id="first", ssn="123-45-6789")
    answer = await create(api, customer_id="second", ssn="123-45-6789")
    assert answer.status_code == 200 and "warnings" not in answer.json()


async def test_update_that_changes_a_checked_field_is_checked(api: ApiClient) -> None:
    await create(api, customer_id="first")
    await create(api, customer_id="second", **STRANGER)

    renamed = await api.http.patch("/customers/second", json={"name_first": "Grace"})
    assert "warnings" not in renamed.json()  # no checked field changed

    warned = await api.http.patch("/customers/second", json={"email": "ada@example.com"})
    assert warned.status_code == 200
    assert [(w["code"], w["customer_id"]) for w in warned.json()["warnings"]] == [("duplicate_email", "first")]

    await set_policy(api, "block")
    blocked = await api.http.patch("/customers/second", json={"phone_number": "+14155550123"})
    assert blocked.status_code == 409 and blocked.json()["error"]["code"] == "duplicate_customer"
    assert (await api.http.get("/customers/second")).json()["phone_number"] == STRANGER["phone_number"]


async def test_a_customer_is_not_its_own_duplicate(api: ApiClient) -> None:
    await create(api, customer_id="first")
    answer = await api.http.put("/customers/first", json={"email": "ada@example.com"})
    assert answer.status_code == 200 and "warnings" not in answer.json()


async def test_other_organizations_are_never_matched(api: ApiClient, other_api: ApiClient) -> None:
    await create(api, customer_id="first", ssn="123-45-6789")
    answer = await create(other_api, customer_id="second", ssn="123-45-6789")
    assert answer.status_code == 200 and "warnings" not in answer.json()


async def test_policy_route_rejects_unknown_policies(api: ApiClient) -> None:
    answer = await api.http.put("/organization/settings", json={"duplicate_customer_policy": "maybe"})
    assert answer.status_code == 422
    assert answer.json()["error"]["details"][0]["keyword"] == "enum"


async def test_policy_is_per_organization(api: ApiClient, other_api: ApiClient) -> None:
    await set_policy(api, "block")
    assert (await other_api.http.get("/organization/settings")).json() == {"duplicate_customer_policy": "warn"}


def test_policy_set_from_the_cli(api: ApiClient, database_url: str, pool: asyncpg.Pool) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "CANOPY_SVC_DATA_KEY": _test_key()}
    done = subprocess.run(
        [sys.executable, "-m", "canopy_svc", "orgs", "set-duplicate-policy", "--org", "acme", "block"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    unknown = subprocess.run(
        [sys.executable, "-m", "canopy_svc", "orgs", "set-duplicate-policy", "--org", "nobody", "off"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert unknown.returncode == 1 and "nobody" in unknown.stderr

    import asyncio

    async def policy() -> str:
        connection = await asyncpg.connect(database_url)
        try:
            return str(
                await connection.fetchval("SELECT duplicate_customer_policy FROM organizations WHERE name = 'acme'")
            )
        finally:
            await connection.close()

    assert asyncio.run(policy()) == "block"


def _test_key() -> str:
    import base64

    from tests.helpers import TEST_DATA_KEY

    return base64.urlsafe_b64encode(TEST_DATA_KEY).decode()


SHARED_ADDRESS, SHARED_PHONE, SHARED_ZIP = "100 Main St", "+14155550100", "21201"


async def _crowd(pool: asyncpg.Pool, org_id: int, count: int = 3000) -> None:
    """`count` customers of one family: one last name, and each sharing the address, the phone or both,
    with a few unique values among them, as an apartment block or a company's office looks."""
    await pool.execute(
        """INSERT INTO customers (org_id, customer_id, name_first, name_last, phone_number, address_line_one,
               address_city, address_state, address_zip, email, date_of_birth, ssn_hash)
           SELECT $1, 'crowd-' || n, 'N', 'Smith',
                  CASE WHEN n % 4 = 0 THEN '+1415555' || lpad(n::text, 4, '0') ELSE $3 END,
                  CASE WHEN n % 5 = 0 THEN n || ' Elm St' ELSE $2 END, 'X', 'MD', $4,
                  'p' || n || '@example.com', '1990-01-01', CASE WHEN n % 2 = 0 THEN sha256('shared'::bytea) END
           FROM generate_series(1, $5::int) n""",
        org_id,
        SHARED_ADDRESS,
        SHARED_PHONE,
        SHARED_ZIP,
        count,
    )


_WRITABLE_TYPES = {"date_of_birth": "date"}


def _column_type(column: str) -> str:
    """The SQL type of a writable column: ciphertexts and hashes (ssn_*, passport_*, ...) are bytea."""
    return "bytea" if column.endswith(("_encrypted", "_hash")) else _WRITABLE_TYPES.get(column, "text")


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime.date):
        return f"'{value.isoformat()}'"
    if isinstance(value, bytes):
        return f"'\\x{value.hex()}'::bytea"
    return "'" + str(value).replace("'", "''") + "'"


def _table_scans(plan: dict[str, Any], relations: tuple[str, ...] = ("customers",)) -> list[dict[str, Any]]:
    found = [plan] if plan.get("Relation Name") in relations and "Scan" in plan["Node Type"] else []
    for child in plan.get("Plans", []):
        found.extend(_table_scans(child, relations))
    return found


async def _planning_connection(
    database_url: str, plan_mode: str, statistics: str, tables: tuple[str, ...]
) -> asyncpg.Connection:
    """A connection planning as `plan_mode`, the tables analyzed or (`fresh`) without statistics."""
    connection = await asyncpg.connect(
        database_url, statement_cache_size=0, server_settings={"plan_cache_mode": plan_mode}
    )
    try:
        if statistics == "analyzed":
            await connection.execute("; ".join(f"ANALYZE {table}" for table in tables))
            return connection
        # a new server's tables, before autovacuum's first ANALYZE
        await connection.execute("DELETE FROM pg_statistic WHERE starelid = ANY($1::regclass[])", list(tables))
        return connection
    except asyncpg.InsufficientPrivilegeError:
        await connection.close()
        pytest.skip("clearing a table's statistics needs a superuser (TEST_DATABASE_URL is not one)")
    except BaseException:
        await connection.close()
        raise


async def _explain(connection: asyncpg.Connection, sql: str, types: str, args: tuple[Any, ...]) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of a prepared statement, as the pool runs it (custom or generic plan)."""
    await connection.execute("DEALLOCATE PREPARE ALL")
    await connection.execute(f"PREPARE duplicate_check({types}) AS {sql}")
    rows = await connection.fetch(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE duplicate_check("
        + ", ".join(_literal(arg) for arg in args)
        + ")"
    )
    plan: dict[str, Any] = json.loads(rows[0][0])[0]["Plan"]
    return plan


@pytest.mark.parametrize("statistics", ["fresh", "analyzed"])
@pytest.mark.parametrize("plan_mode", ["force_custom_plan", "force_generic_plan"])
async def test_a_check_reads_a_bounded_number_of_index_entries_however_many_share_a_value(
    api: ApiClient, pool: asyncpg.Pool, database_url: str, statistics: str, plan_mode: str
) -> None:
    """Issue 9: after thousands of customers sharing an address, a phone, an SSN and a last name, the
    duplicate check of a create (and of an update) reads at most five entries of each index, under
    custom and generic plans, on a table never analyzed as on an analyzed one, for a shared value and a
    rare one. Counted from EXPLAIN (ANALYZE, BUFFERS): deterministic, unlike a timing."""
    await _crowd(pool, api.org_id)
    connection = await _planning_connection(database_url, plan_mode, statistics, ("customers",))
    try:
        shared = (sha256(b"shared").digest(), "new@example.com", SHARED_PHONE, SHARED_ADDRESS, SHARED_ZIP, "US")
        rare = (b"r" * 32, "rare@example.com", "+19995550123", "1 Rare Rd", "99999", "US")
        for ssn_hash, email, phone, line_one, zip_code, country in (shared, rare):
            update_check = await _explain(
                connection,
                _DUPLICATES,
                "bigint, bytea, text, text, text, text, bigint, text",
                (api.org_id, ssn_hash, email, phone, line_one, zip_code, 7, country),
            )
            row = {
                "name_first": "N",
                "name_last": "Smith",
                "phone_number": phone,
                "address_line_one": line_one,
                "address_city": "X",
                "address_state": "MD",
                "address_zip": zip_code,
                "address_country_code": country,
                "ssn_hash": ssn_hash,
                "email": email,
                "date_of_birth": datetime.date(1990, 1, 1),
                "customer_type": "person",
                "verification_status": "unverified",
            }
            rollback = connection.transaction()
            await rollback.start()  # EXPLAIN ANALYZE inserts for real: nothing of it is kept
            try:
                # The statement a create runs: the customer, its comparisons and its event.
                create_check = await _explain(
                    connection,
                    _INSERT_COMPARING_WITH_EVENT,
                    ", ".join(["bigint", "text", *(_column_type(c) for c in WRITABLE), "text", "text"]),
                    (api.org_id, f"new-{phone}", *(row.get(c) for c in WRITABLE), f"evt_{phone}", "{}"),
                )
            finally:
                await rollback.rollback()
            for statement, plan in (("update", update_check), ("create", create_check)):
                scans = _table_scans(plan)
                assert {scan["Index Name"] for scan in scans} >= {
                    "customers_dup_email_at",
                    "customers_dup_phone_at",
                    "customers_dup_address_at",
                }, scans
                for scan in scans:
                    assert scan["Node Type"] == "Index Scan", (statement, scan["Node Type"])
                    assert scan["Actual Rows"] <= 5, (statement, scan["Index Name"], scan["Actual Rows"])
                    assert scan.get("Rows Removed by Filter", 0) <= 1, (statement, scan["Index Name"])
                    blocks = scan["Shared Hit Blocks"] + scan["Shared Read Blocks"]
                    assert blocks <= 8, (statement, scan["Index Name"], blocks)
    finally:
        await connection.close()


@pytest.mark.parametrize("statistics", ["fresh", "analyzed"])
@pytest.mark.parametrize("plan_mode", ["force_custom_plan", "force_generic_plan"])
async def test_the_loanpro_nested_check_reads_a_bounded_number_of_entries_however_many_share_a_value(
    api: ApiClient, pool: asyncpg.Pool, database_url: str, statistics: str, plan_mode: str
) -> None:
    """The LoanPro face's check of a MailAddress or an other phone (store/loanpro.py): after thousands
    of customers with the same mail address and other phone, and the same primary phone, it reads at
    most five entries of each index, as the Canopy checks do."""
    await _crowd(pool, api.org_id)
    shared_hash = sha256(b"shared item").digest()
    await pool.execute(
        """INSERT INTO loanpro_entities (org_id, customer_row_id, nav, body_encrypted, match_hash)
           SELECT c.org_id, c.id, nav, '\\x00', $2 FROM customers c, unnest(ARRAY['MailAddress', 'Phones']) nav
           WHERE c.org_id = $1""",
        api.org_id,
        shared_hash,
    )
    connection = await _planning_connection(database_url, plan_mode, statistics, ("customers", "loanpro_entities"))
    try:
        for nav, match_hash, phone in (
            ("MailAddress", shared_hash, None),
            ("Phones", shared_hash, SHARED_PHONE),
            ("Phones", b"r" * 32, "+19995550123"),
        ):
            plan = await _explain(
                connection,
                _NESTED_MATCHES_SQL,
                "bigint, text, bytea, bigint, text",
                (api.org_id, nav, match_hash, 0, phone),
            )
            scans = _table_scans(plan, ("customers", "loanpro_entities"))
            assert {scan["Index Name"] for scan in scans} >= {"loanpro_entities_match_at"}, scans
            for scan in scans:  # the customers looked up by id: one loop per entity found, five at most
                loops = scan["Actual Loops"]
                assert scan["Node Type"] == "Index Scan", (nav, scan["Node Type"])
                assert loops <= 5 and scan["Actual Rows"] * loops <= 5, (nav, scan["Index Name"], loops)
                assert scan.get("Rows Removed by Filter", 0) <= 1, (nav, scan["Index Name"])
                blocks = scan["Shared Hit Blocks"] + scan["Shared Read Blocks"]
                assert blocks <= 8 * max(loops, 1), (nav, scan["Index Name"], blocks)
        # Under `off` nothing is looked for: no scan of either table runs at all.
        await pool.execute("UPDATE organizations SET duplicate_customer_policy = 'off' WHERE id = $1", api.org_id)
        plan = await _explain(
            connection,
            _NESTED_MATCHES_SQL,
            "bigint, text, bytea, bigint, text",
            (api.org_id, "Phones", shared_hash, 0, SHARED_PHONE),
        )
        scans = _table_scans(plan, ("customers", "loanpro_entities"))
        assert scans and all(scan["Actual Loops"] == 0 for scan in scans), scans
    finally:
        await connection.close()
