"""Duplicate customers (contract section 6): warn, block and off, answered from indexes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import asyncpg
import pytest
from conftest import ApiClient, minimal_customer

from canopy_svc.store.customers import _DUPLICATES

# A customer sharing nothing with minimal_customer().
STRANGER = {"email": "grace@example.org", "phone_number": "+14155550199", "address_line_one": "9 Elm St",
            "address_zip": "94105", "ssn": "321-54-9876"}


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
    abroad = await create(api, customer_id="abroad", address_country_code="GB", address_state="Kent",
                          **same_line_abroad)
    assert abroad.status_code == 200, abroad.text
    assert "warnings" not in abroad.json()
    at_home = await create(api, customer_id="at-home", address_country_code="US",
                           **{**same_line_abroad, "email": "other@example.org", "phone_number": "+14155550188",
                              "ssn": "555-44-3333"})
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
async def test_warn_answers_each_kind_of_match(api: ApiClient, changes: dict[str, Any], code: str,
                                               field: str) -> None:
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
    bodies = [{**STRANGER, "customer_id": f"twin-{i}", "email": f"twin{i}@example.org",
               "phone_number": f"+1415555{1000 + i}", "ssn": f"{100 + i}-45-6789",
               "address_line_one": spellings[i % 3][0], "address_zip": spellings[i % 3][1]} for i in range(10)]
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

    same_person = await create(api, customer_id="second", __ignoreWarnings=True,
                               **{**STRANGER, "ssn": "123456789", "date_of_birth": "1980-01-02"})
    assert same_person.status_code == 409
    assert same_person.json()["error"]["code"] == "duplicate_customer"

    # The same SSN with another date of birth is a warning that may be waived.
    other_birth_date = await create(api, customer_id="third", __ignoreWarnings=True,
                                    **{**STRANGER, "ssn": "123456789", "date_of_birth": "1981-01-02"})
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
    done = subprocess.run([sys.executable, "-m", "canopy_svc", "orgs", "set-duplicate-policy", "--org", "acme",
                           "block"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    unknown = subprocess.run([sys.executable, "-m", "canopy_svc", "orgs", "set-duplicate-policy", "--org", "nobody",
                              "off"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert unknown.returncode == 1 and "nobody" in unknown.stderr

    import asyncio

    async def policy() -> str:
        connection = await asyncpg.connect(database_url)
        try:
            return str(await connection.fetchval("SELECT duplicate_customer_policy FROM organizations "
                                                 "WHERE name = 'acme'"))
        finally:
            await connection.close()

    assert asyncio.run(policy()) == "block"


def _test_key() -> str:
    import base64

    from conftest import TEST_DATA_KEY

    return base64.urlsafe_b64encode(TEST_DATA_KEY).decode()


async def test_the_check_reads_indexes_never_a_scan(api: ApiClient, pool: asyncpg.Pool) -> None:
    await pool.execute(
        """INSERT INTO customers (org_id, customer_id, name_first, name_last, phone_number, address_line_one,
               address_city, address_state, address_zip, email, date_of_birth, ssn_hash)
           SELECT $1, 'c' || n, 'N', 'L', '+1415555' || lpad(n::text, 4, '0'), n || ' Main St', 'X', 'CA',
                  '94105', 'p' || n || '@example.com', '1990-01-01', sha256(n::text::bytea)
           FROM generate_series(1, 3000) n""",
        api.org_id,
    )
    await pool.execute("ANALYZE customers")
    async with pool.acquire() as connection:
        plan = "\n".join(row[0] for row in await connection.fetch(
            "EXPLAIN " + _DUPLICATES, api.org_id, b"x" * 32, "a@b.c", "+14155550123", "1 Main St", "62701", 0, None))
    assert "Seq Scan on customers" not in plan
    for index in ("customers_dup_ssn", "customers_dup_email", "customers_dup_phone", "customers_dup_address"):
        assert index in plan, plan
