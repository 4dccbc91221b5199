"""Lithic account holders (issue 13 item 5): each customer enrolled once, its card issued under its account.

KYC from the customer's fields, KYB for a business with its beneficial owners; the result drives the
customer's verification_status; a rejected or pending enrollment never issues a card under another
account or none. Once per customer across racing workers and a SIGKILL mid-enrollment."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from canopy_svc.issuers.simulator import PENDING_TEST_SSN, REJECTED_TEST_SSN, CardSimulator
from tests.fake_lithic import FakeLithic
from tests.helpers import (
    CARD_CONFIG,
    LITHIC_KEY,
    ApiClient,
    account,
    assert_invalid,
    make_client,
    make_worker,
    minimal_customer,
)
from tests.processes import ServerProcess, token_for

SSN = "123-45-6789"
KYC = {"enabled": True, "workflow": "KYC_BASIC"}


async def enable(api: ApiClient, fake: FakeLithic, holders: dict[str, Any] | None = None) -> dict[str, Any]:
    config = {"api_key": LITHIC_KEY, "base_url": fake.base_url, "account_holders": holders or KYC}
    answer = await api.http.put("/organization/issuer_processors", json={"lithic_config": config})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def link(api: ApiClient, account_id: str, customer_id: str = "cust-1", **fields: Any) -> None:
    assignment = {"account_id": account_id, "customer_account_issuer_processor_config": CARD_CONFIG}
    existing = await api.http.get(f"/customers/{customer_id}")
    if existing.status_code == 200:
        answer = await api.http.put(f"/customers/{customer_id}", json={"assign_to_accounts": [assignment]})
    else:
        body = minimal_customer(customer_id=customer_id, assign_to_accounts=[assignment], **fields)
        answer = await api.http.post("/customers", json=body)
    assert answer.status_code == 200, answer.text


async def cards(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM cards ORDER BY id")


async def enrollments(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """In the order of their customers: the worker enrolls the customers of the cards it claimed
    concurrently, so which enrollment row is written first (its id) depends on the machine's load."""
    return await pool.fetch("SELECT * FROM lithic_account_holders ORDER BY customer_row_id")


async def make_due_now(pool: asyncpg.Pool) -> None:
    await pool.execute("UPDATE cards SET next_attempt_at = now() WHERE status = 'PENDING'")


def card_creates(fake: FakeLithic) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST" and r.path == "/v1/cards"]


async def verification(api: ApiClient, customer_id: str = "cust-1") -> str:
    status: str = (await api.http.get(f"/customers/{customer_id}")).json()["verification_status"]
    return status


# --- the setting --------------------------------------------------------------------------------


async def test_the_setting_is_kept_answered_and_replaced_with_the_config(
    api: ApiClient, fake_lithic: FakeLithic
) -> None:
    answer = await enable(api, fake_lithic, {"enabled": True, "workflow": "KYC_EXEMPT"})
    assert answer["lithic_config"]["account_holders"] == {
        "enabled": True,
        "workflow": "KYC_EXEMPT",
        "kyc_exemption_type": "PREPAID_CARD_USER",
        "kyb_workflow": "KYB_BASIC",
        "nature_of_business": None,
    }
    read = (await api.http.get("/organization/issuer_processors")).json()
    assert read["lithic_config"]["account_holders"]["workflow"] == "KYC_EXEMPT"
    again = await api.http.put("/organization/issuer_processors", json={"lithic_config": {"api_key": LITHIC_KEY}})
    assert again.json()["lithic_config"]["account_holders"] is None  # the config is replaced whole


@pytest.mark.parametrize(
    ("holders", "pointer", "keyword"),
    [
        ({"workflow": "KYC_BASIC"}, "/lithic_config/account_holders", "required"),
        ({"enabled": "yes"}, "/lithic_config/account_holders/enabled", "type"),
        ({"enabled": True, "workflow": "KYC_BYO"}, "/lithic_config/account_holders/workflow", "enum"),
        ({"enabled": True, "kyb_workflow": "KYC_BASIC"}, "/lithic_config/account_holders/kyb_workflow", "enum"),
        ({"enabled": True, "kyc_exemption_type": "X"}, "/lithic_config/account_holders/kyc_exemption_type", "enum"),
        ({"enabled": True, "nature_of_business": " "}, "/lithic_config/account_holders/nature_of_business", "pattern"),
        ("on", "/lithic_config/account_holders", "type"),
    ],
)
async def test_a_bad_setting_is_422_and_changes_nothing(
    api: ApiClient, fake_lithic: FakeLithic, holders: Any, pointer: str, keyword: str
) -> None:
    config = {"api_key": LITHIC_KEY, "base_url": fake_lithic.base_url, "account_holders": holders}
    details = assert_invalid(await api.http.put("/organization/issuer_processors", json={"lithic_config": config}))
    assert any(d["instancePath"] == pointer and d["keyword"] == keyword for d in details), details
    assert (await api.http.get("/organization/issuer_processors")).json() == {"lithic_config": None}


# --- KYC ----------------------------------------------------------------------------------------


async def test_kyc_enrolls_once_and_issues_every_card_under_the_account(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await enable(api, fake_lithic)
    await link(api, await account(api, "acc-1"), ssn=SSN)
    await link(api, await account(api, "acc-2"))  # a second link of the same customer
    worker = make_worker(pool)
    while await worker.process_due():
        pass

    (holder,) = fake_lithic.account_holders.values()
    (enroll,) = fake_lithic.account_holder_creates()
    assert enroll.body == {
        "workflow": "KYC_BASIC",
        "individual": {
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": "ada@example.com",
            "phone_number": "+14155550123",
            "dob": "1990-12-10",
            "government_id": SSN,
            "address": {
                "address1": "1 Main St",
                "city": "Springfield",
                "state": "IL",
                "postal_code": "62701",
                "country": "USA",
            },
        },
        "tos_timestamp": enroll.body["tos_timestamp"],
        "external_id": "cust-1",
    }
    (row,) = await enrollments(pool)
    assert enroll.headers["Idempotency-Key"] == str(row["idempotency_key"])
    assert row["status"] == "ACCEPTED" and str(row["account_token"]) == holder["account_token"]
    issued = await cards(pool)
    assert [c["status"] for c in issued] == ["ISSUED", "ISSUED"]
    assert [r.body["account_token"] for r in card_creates(fake_lithic)] == [holder["account_token"]] * 2
    assert all(fake_lithic.cards[c["token"]]["account_token"] == holder["account_token"] for c in issued)
    assert await verification(api) == "verified"
    updated = (await api.http.get("/events", params={"type": "customer_updated"})).json()["results"]
    # The second link's PUT is one (unverified); the enrollment's result is the other.
    assert [e["data"]["verification_status"] for e in updated] == ["unverified", "verified"]
    assert "ssn" not in updated[1]["data"]
    assert fake_lithic.spec_violations == [] and fake_lithic.errors == []


async def test_a_rejected_customer_gets_no_card_and_a_clear_error(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await enable(api, fake_lithic)
    await link(api, await account(api), ssn=REJECTED_TEST_SSN)
    await make_worker(pool).process_due()

    (card,) = await cards(pool)
    assert card["status"] == "FAILED"
    assert card["error"] == "account holder REJECTED: ID_VERIFICATION_FAILURE"
    assert card_creates(fake_lithic) == []
    assert await verification(api) == "failed"
    shown = (await api.http.get("/accounts/acc-1")).json()["customers"][0]["card_details"][0]
    assert shown["status"] == "FAILED" and shown["error"] == card["error"]
    failed = (await api.http.get("/events", params={"type": "card_failed"})).json()["results"]
    assert len(failed) == 1
    assert fake_lithic.spec_violations == []


async def test_a_pending_review_keeps_the_card_pending_until_lithic_accepts(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await enable(api, fake_lithic, {"enabled": True, "workflow": "KYC_ADVANCED"})
    await link(api, await account(api), ssn=PENDING_TEST_SSN)
    worker = make_worker(pool)
    await worker.process_due()

    (card,) = await cards(pool)
    assert card["status"] == "PENDING" and card["attempts"] == 0  # never sent
    assert card["error"].startswith("account holder PENDING_DOCUMENT: DOB_VERIFICATION_FAILURE")
    assert card_creates(fake_lithic) == [] and await verification(api) == "document"

    await make_due_now(pool)
    await worker.process_due()  # still pending: read again, not enrolled again
    assert (await cards(pool))[0]["status"] == "PENDING"
    (token,) = fake_lithic.account_holders
    fake_lithic.set_account_holder_status(token, "ACCEPTED")
    await make_due_now(pool)
    await worker.process_due()

    (card,) = await cards(pool)
    assert card["status"] == "ISSUED" and card["error"] is None
    assert len(fake_lithic.account_holder_creates()) == 1
    reads = [r for r in fake_lithic.requests if r.method == "GET" and r.path == f"/v1/account_holders/{token}"]
    assert len(reads) == 2
    assert await verification(api) == "verified"
    assert fake_lithic.spec_violations == []


async def test_kyc_without_an_ssn_fails_the_card_without_calling_lithic(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await enable(api, fake_lithic)
    await link(api, await account(api))
    await make_worker(pool).process_due()

    (card,) = await cards(pool)
    assert card["status"] == "FAILED" and card["error"] == "account holder enrollment needs an ssn for the customer"
    assert fake_lithic.requests == []
    assert await verification(api) == "unverified"


async def test_kyc_exempt_sends_no_ssn_and_verifies_no_one(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await enable(api, fake_lithic, {"enabled": True, "workflow": "KYC_EXEMPT", "kyc_exemption_type": "AUTHORIZED_USER"})
    await link(api, await account(api), ssn=SSN)
    await make_worker(pool).process_due()

    (enroll,) = fake_lithic.account_holder_creates()
    assert enroll.body["workflow"] == "KYC_EXEMPT" and enroll.body["kyc_exemption_type"] == "AUTHORIZED_USER"
    assert SSN not in json.dumps(enroll.body)
    assert (await cards(pool))[0]["status"] == "ISSUED"
    assert await verification(api) == "unverified"
    assert fake_lithic.spec_violations == []


async def test_lithic_refusing_the_request_fails_the_card_and_a_later_card_tries_again_with_a_new_key(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await enable(api, fake_lithic)
    await link(api, await account(api, "acc-1"), ssn=SSN)
    fake_lithic.fail_next(400, message="Invalid government_id 123-45-6789 for ada@example.com")
    worker = make_worker(pool)
    await worker.process_due()

    (card,) = await cards(pool)
    assert card["status"] == "FAILED"
    # What Lithic quoted back of the customer is not kept on the card.
    assert card["error"] == "account holder enrollment refused: Invalid government_id [redacted] for [redacted]"
    first_key = fake_lithic.account_holder_creates()[0].headers["Idempotency-Key"]
    await link(api, await account(api, "acc-2"))
    await worker.process_due()
    second = fake_lithic.account_holder_creates()[1]
    assert second.headers["Idempotency-Key"] != first_key
    assert [c["status"] for c in await cards(pool)] == ["FAILED", "ISSUED"]


async def test_a_retryable_failure_retries_the_enrollment_with_the_same_key(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await enable(api, fake_lithic)
    await link(api, await account(api), ssn=SSN)
    fake_lithic.lose_answer_next()  # Lithic enrolls the customer; the answer is lost
    worker = make_worker(pool)
    await worker.process_due()
    assert (await cards(pool))[0]["status"] == "PENDING"
    await make_due_now(pool)
    await worker.process_due()

    assert (await cards(pool))[0]["status"] == "ISSUED"
    assert len(fake_lithic.account_holders) == 1
    assert len({r.headers["Idempotency-Key"] for r in fake_lithic.account_holder_creates()}) == 1
    assert len(fake_lithic.account_holder_creates()) == 2


async def test_a_card_sent_before_enrollment_was_on_is_sent_again_as_it_was(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    """Its retry must be the same request under the same Idempotency-Key: no account appears in it."""
    await api.http.put(
        "/organization/issuer_processors",
        json={"lithic_config": {"api_key": LITHIC_KEY, "base_url": fake_lithic.base_url}},
    )
    await link(api, await account(api), ssn=SSN)
    fake_lithic.fail_next(status=503)
    worker = make_worker(pool)
    await worker.process_due()
    await enable(api, fake_lithic)
    await make_due_now(pool)
    await worker.process_due()

    assert (await cards(pool))[0]["status"] == "ISSUED"
    first, second = card_creates(fake_lithic)
    assert first.body == second.body and "account_token" not in second.body
    assert fake_lithic.account_holder_creates() == []


# --- KYB ----------------------------------------------------------------------------------------

BUSINESS = {
    "doing_business_as": "Umbrella",
    "business_ein": "12-3456789",
    "business_legal_name": "Umbrella Corporation",
    "website": "https://umbrella.example.com",
}
OWNER = {
    "beneficial_owner_id": "bo-1",
    "name_first": "Alice",
    "name_last": "Trevino",
    "phone_number": "+14105556790",
    "address_line_one": "14 Strawberry Road",
    "address_city": "Atlanta",
    "address_state": "GA",
    "address_zip": "303031000",
    "email": "alice@example.com",
    "date_of_birth": "1960-03-01",
    "ssn": "777-77-7777",
}
KYB = {"enabled": True, "kyb_workflow": "KYB_BASIC", "nature_of_business": "Software for restaurants"}


async def business_customer(api: ApiClient, *, owner_ssn: str = "777-77-7777") -> None:
    body = minimal_customer(customer_id="biz-1", ssn=SSN, business_details=BUSINESS)
    assert (await api.http.post("/customers", json=body)).status_code == 200
    owner = await api.http.post("/customers/biz-1/beneficial_owners", json=OWNER | {"ssn": owner_ssn})
    assert owner.status_code == 200, owner.text
    await link(api, await account(api), "biz-1")


async def test_a_business_customer_is_enrolled_by_kyb_with_its_owners(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await enable(api, fake_lithic, KYB)
    await business_customer(api)
    await make_worker(pool).process_due()

    (enroll,) = fake_lithic.account_holder_creates()
    body = enroll.body
    assert body["workflow"] == "KYB_BASIC" and body["nature_of_business"] == "Software for restaurants"
    assert body["business_entity"] == {
        "legal_business_name": "Umbrella Corporation",
        "dba_business_name": "Umbrella",
        "government_id": "12-3456789",
        "phone_numbers": ["+14155550123"],
        "address": {"address1": "1 Main St", "city": "Springfield", "state": "IL", "postal_code": "62701",
                    "country": "USA"},
    }  # fmt: skip
    assert body["control_person"]["government_id"] == SSN
    (owner,) = body["beneficial_owner_individuals"]
    assert owner["first_name"] == "Alice" and owner["government_id"] == "777-77-7777"
    assert owner["address"]["postal_code"] == "30303-1000"  # Lithic's ZIP+4
    assert body["beneficial_owner_entities"] == [] and body["website_url"] == "https://umbrella.example.com"
    (card,) = await cards(pool)
    assert card["status"] == "ISSUED"
    (holder,) = fake_lithic.account_holders.values()
    assert card_creates(fake_lithic)[0].body["account_token"] == holder["account_token"]
    assert await verification(api, "biz-1") == "verified"
    assert fake_lithic.spec_violations == []


async def test_kyb_pending_review_and_a_rejected_owner(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await enable(api, fake_lithic, KYB)
    await business_customer(api, owner_ssn=PENDING_TEST_SSN)
    await make_worker(pool).process_due()
    (card,) = await cards(pool)
    assert card["status"] == "PENDING" and card["error"].startswith("account holder PENDING_REVIEW")
    assert await verification(api, "biz-1") == "pending"
    assert card_creates(fake_lithic) == [] and fake_lithic.spec_violations == []


async def test_kyb_needs_the_nature_of_business(api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic) -> None:
    await enable(api, fake_lithic, {"enabled": True})
    await business_customer(api)
    await make_worker(pool).process_due()
    (card,) = await cards(pool)
    assert card["status"] == "FAILED" and "nature_of_business" in card["error"]
    assert fake_lithic.requests == []


# --- once per customer --------------------------------------------------------------------------


async def test_two_racing_workers_enroll_the_customer_once(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await enable(api, fake_lithic)
    await link(api, await account(api, "acc-1"), ssn=SSN)
    await link(api, await account(api, "acc-2"))
    first, second = make_worker(pool), make_worker(pool)
    first.batch_size = second.batch_size = 1  # one card each
    fake_lithic.hold_next()  # the first enrollment call stays at Lithic until released
    holding = asyncio.create_task(first.process_due())
    assert await asyncio.to_thread(fake_lithic.holding.wait, 15), "the first worker never called Lithic"
    await second.process_due()  # takes the other card while the first is mid-enrollment
    assert len(fake_lithic.account_holder_creates()) == 1
    waiting = [c for c in await cards(pool) if c["error"] is not None]
    assert [c["status"] for c in waiting] == ["PENDING"]
    assert waiting[0]["error"] == "Enrolling the account holder at Lithic"
    fake_lithic.release()
    await holding
    await make_due_now(pool)
    await second.process_due()

    assert [c["status"] for c in await cards(pool)] == ["ISSUED", "ISSUED"]
    (holder,) = fake_lithic.account_holders.values()
    assert len(fake_lithic.account_holder_creates()) == 1
    assert {r.body["account_token"] for r in card_creates(fake_lithic)} == {holder["account_token"]}
    assert len(await enrollments(pool)) == 1


async def test_killed_mid_enrollment_then_restarted_enrolls_once(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path, fake_lithic: FakeLithic
) -> None:
    _, client_id, secret = await make_client(pool, "acme")
    env = {"CANOPY_SVC_CARD_LEASE_SECONDS": "1", "CANOPY_SVC_CARD_RETRY_BASE_SECONDS": "0.05"}
    config = {"api_key": LITHIC_KEY, "base_url": fake_lithic.base_url, "account_holders": KYC}
    first = ServerProcess(database_url, tmp_path / "first", **env).start()
    try:
        headers = {"Authorization": f"Bearer {token_for(first, client_id, secret)}"}
        async with httpx.AsyncClient(base_url=first.base_url, headers=headers, timeout=10) as http:
            assert (
                await http.put("/organization/issuer_processors", json={"lithic_config": config})
            ).status_code == 200
            product = await http.post(
                "/products", json={"product_overview": {"product_name": "Card", "product_type": "REVOLVING"}}
            )
            made = await http.post(
                "/accounts", json={"account_id": "acc-1", "product_id": product.json()["product_id"]}
            )
            assert made.status_code == 200
            fake_lithic.stall_after_work_next(30)  # the account holder exists at Lithic; the answer never leaves
            assignment = {"account_id": "acc-1", "customer_account_issuer_processor_config": CARD_CONFIG}
            created = await http.post("/customers", json=minimal_customer(ssn=SSN, assign_to_accounts=[assignment]))
            assert created.status_code == 200
        assert await asyncio.to_thread(fake_lithic.work_done.wait, 15), "the worker never called Lithic"
        first.kill()  # SIGKILL mid-enrollment: no answer recorded, the lease left to expire
    finally:
        first.kill()
    assert len(fake_lithic.account_holders) == 1 and card_creates(fake_lithic) == []
    assert (await enrollments(pool))[0]["status"] is None

    with ServerProcess(database_url, tmp_path / "second", **env):
        for _ in range(400):  # bounded: about 20 s
            if (await cards(pool))[0]["status"] != "PENDING":
                break
            await asyncio.sleep(0.05)
    (card,) = await cards(pool)
    assert card["status"] == "ISSUED", card["error"]
    (row,) = await enrollments(pool)
    creates = fake_lithic.account_holder_creates()
    assert len(fake_lithic.account_holders) == 1 and len(creates) == 2
    assert {r.headers["Idempotency-Key"] for r in creates} == {str(row["idempotency_key"])}
    (holder,) = fake_lithic.account_holders.values()
    assert row["status"] == "ACCEPTED" and str(row["account_token"]) == holder["account_token"]
    assert fake_lithic.cards[card["token"]]["account_token"] == holder["account_token"]
    assert fake_lithic.spec_violations == []


# --- isolation ----------------------------------------------------------------------------------


async def test_an_organizations_setting_and_enrollments_are_its_own(
    api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await enable(api, fake_lithic)
    other = await other_api.http.put(
        "/organization/issuer_processors",
        json={"lithic_config": {"api_key": LITHIC_KEY, "base_url": fake_lithic.base_url}},
    )
    assert other.json()["lithic_config"]["account_holders"] is None
    await link(api, await account(api), ssn=SSN)
    await link(other_api, await account(other_api), ssn=SSN)  # the same ids in another organization
    worker = make_worker(pool)
    while await worker.process_due():
        pass

    assert len(fake_lithic.account_holder_creates()) == 1
    (row,) = await enrollments(pool)
    assert row["org_id"] == await pool.fetchval("SELECT id FROM organizations WHERE name = 'acme'")
    bodies = [r.body for r in card_creates(fake_lithic)]
    assert sorted("account_token" in body for body in bodies) == [False, True]
    assert await verification(api) == "verified" and await verification(other_api) == "unverified"
    assert (await other_api.http.get("/events", params={"type": "customer_updated"})).json()["results"] == []


# --- the simulator ------------------------------------------------------------------------------


async def test_the_simulator_enrolls_by_the_documented_test_ssns() -> None:
    simulator = CardSimulator()

    def kyc(ssn: str, workflow: str = "KYC_BASIC") -> dict[str, Any]:
        return {"workflow": workflow, "individual": {"government_id": ssn}, "tos_timestamp": "2026-12-02T00:00:00Z"}

    accepted = await simulator.create_account_holder("simulator", "simulator", "k1", kyc(SSN))
    assert accepted.status == "ACCEPTED" and accepted.account_token is not None
    assert await simulator.create_account_holder("simulator", "simulator", "k1", kyc(SSN)) == accepted
    rejected = await simulator.create_account_holder("simulator", "simulator", "k2", kyc(REJECTED_TEST_SSN))
    assert (rejected.status, rejected.status_reasons, rejected.account_token) == (
        "REJECTED",
        ("ID_VERIFICATION_FAILURE",),
        None,
    )
    pending = await simulator.create_account_holder(
        "simulator", "simulator", "k3", kyc(PENDING_TEST_SSN, "KYC_ADVANCED")
    )
    assert pending.status == "PENDING_DOCUMENT"
    assert await simulator.get_account_holder("simulator", "simulator", pending.token) == pending
    exempt = {"workflow": "KYC_EXEMPT", "kyc_exemption_type": "PREPAID_CARD_USER"}
    assert (await simulator.create_account_holder("simulator", "simulator", "k4", exempt)).status == "ACCEPTED"


async def test_the_simulator_enrolls_an_organization_without_a_lithic_key(api: ApiClient, pool: asyncpg.Pool) -> None:
    """`make run` with no Lithic account: simulator_config turns enrollment on, the test SSNs decide."""
    setting = {"enabled": True, "workflow": "KYC_BASIC"}
    answer = await api.http.put(
        "/organization/issuer_processors", json={"simulator_config": {"account_holders": setting}}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["lithic_config"] is None
    assert answer.json()["simulator_config"]["account_holders"]["workflow"] == "KYC_BASIC"
    await link(api, await account(api, "acc-1"), "ok-1", ssn=SSN)
    await link(api, await account(api, "acc-2"), "no-1", ssn=REJECTED_TEST_SSN, email="no@example.com")
    worker = make_worker(pool)
    while await worker.process_due():
        pass

    assert [(c["status"], c["error"]) for c in await cards(pool)] == [
        ("ISSUED", None),
        ("FAILED", "account holder REJECTED: ID_VERIFICATION_FAILURE"),
    ]
    assert await verification(api, "ok-1") == "verified" and await verification(api, "no-1") == "failed"
    assert [row["status"] for row in await enrollments(pool)] == ["ACCEPTED", "REJECTED"]
    off = await api.http.put("/organization/issuer_processors", json={"simulator_config": None})
    assert off.json() == {"lithic_config": None}
