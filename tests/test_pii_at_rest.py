"""No SSN nor passport number is readable at rest: not in any table or column, not in the tables'
files, not in the logs.

Idempotency-Key answers hold the SSN of the customer they answer (the API answers it in clear), so
they are kept only encrypted, bound to their row; version 2's clear answers are sealed by the v3
migration (issue 8, item 1).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import random
from pathlib import Path

import asyncpg
import pytest

from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.logs import JsonFormatter
from canopy_svc.store import idempotency
from canopy_svc.store.migrations import SCHEMA_VERSION, migrate
from tests.fake_lithic import FakeLithic
from tests.helpers import (
    TEST_DATA_KEY,
    ApiClient,
    account,
    assert_error,
    linked_customer,
    make_worker,
    minimal_customer,
    schema_of,
    seed_customer,
    use_lithic,
    with_database,
)

FIXTURES = Path(__file__).parent / "fixtures"

# CREATE/DROP DATABASE and CHECKPOINT write every dirty buffer: on a loaded machine that takes
# longer than the pool's 30 s command timeout, which is for requests, not for this.
SLOW_DDL_SECONDS = 300


def new_ssn() -> tuple[str, str]:
    """A valid SSN no other test uses, as (123-45-6789, 123456789)."""
    area, group, serial = random.randint(100, 665), random.randint(10, 99), random.randint(1000, 9999)
    return f"{area}-{group}-{serial}", f"{area}{group}{serial}"


def spellings(*ssns: str) -> list[bytes]:
    """Every way a clear SSN could show: as typed, its digits, and their hex (bytea cast to text)."""
    found: list[bytes] = []
    for ssn in ssns:
        for text in {ssn, ssn.replace("-", "")}:
            found += [text.encode(), text.encode().hex().encode()]
    return found


def new_passport_number() -> str:
    """A passport number no other test uses, and that no ciphertext or hash is likely to hold."""
    return f"PQ{random.randint(10**8, 10**9 - 1)}Z"


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


async def user_tables(conn: asyncpg.Connection | asyncpg.Pool) -> list[str]:
    rows = await conn.fetch(
        """SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) AS name FROM pg_tables
           WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"""
    )
    return [row["name"] for row in rows]


async def clear_text_in_tables(conn: asyncpg.Connection | asyncpg.Pool, needles: list[bytes]) -> list[str]:
    """Where a needle is found, reading every row of every table: each row cast to text, and each
    column's own value (bytea as raw bytes)."""
    hits: list[str] = []
    for table in await user_tables(conn):
        for row in await conn.fetch(f"SELECT t::text AS row_text, t.* FROM {table} t"):
            for column, value in row.items():
                if value is None:
                    continue
                raw = bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
                hits += [f"{table}.{column}" for needle in needles if needle in raw]
    return hits


async def clear_text_in_files(conn: asyncpg.Connection, needles: list[bytes], relations: str = "true") -> list[str]:
    """Where a needle is found in the files of the database's relations (tables, TOAST, indexes), dead
    rows and dropped columns included, once a checkpoint has written every page. Needs a superuser."""
    if not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
        pytest.skip("reading relation files needs a superuser (the embedded PostgreSQL is one)")
    await conn.execute("CHECKPOINT", timeout=SLOW_DDL_SECONDS)
    rows = await conn.fetch(
        f"""SELECT c.oid::regclass::text AS name, pg_relation_filepath(c.oid) AS path FROM pg_class c
            WHERE c.relkind IN ('r', 't', 'i', 'm') AND pg_relation_filepath(c.oid) IS NOT NULL
              AND ({relations})"""
    )
    hits: list[str] = []
    for row in rows:
        segment = 0
        while True:  # 1 GB segments: path, path.1, ...
            path = row["path"] if segment == 0 else f"{row['path']}.{segment}"
            try:
                data = await conn.fetchval("SELECT pg_read_binary_file($1)", path)
            except asyncpg.UndefinedFileError:
                break
            hits += [row["name"] for needle in needles if needle in data]
            segment += 1
    return hits


def clear_text_in_logs(records: list[logging.LogRecord], needles: list[bytes]) -> list[str]:
    formatter = JsonFormatter()
    hits: list[str] = []
    for record in records:
        text = (formatter.format(record) + repr(record.__dict__)).encode()
        if record.exc_info:
            text += formatter.formatException(record.exc_info).encode()
        hits += [record.name for needle in needles if needle in text]
    return hits


async def test_no_ssn_in_clear_anywhere_after_keyed_creates_and_updates(
    api: ApiClient, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    (first, _), (second, second_digits), (third, third_digits), (fourth, _) = (new_ssn() for _ in range(4))
    business = {
        "business_legal_name": "Umbrella Corporation",
        "doing_business_as": "Umbrella",
        "business_ein": "98-7654321",
    }
    product = await api.http.post(
        "/products",
        headers=keyed("p-1"),
        json={"product_id": "prod-1", "product_overview": {"product_name": "Card", "product_type": "REVOLVING"}},
    )
    assert product.status_code == 200, product.text
    writes = [
        ("POST", "/customers", seed_customer(customer_id="c-1", ssn=first, business_details=business)),
        (
            "POST",
            "/customers",
            minimal_customer(
                customer_id="c-2",
                ssn=second_digits,
                email="two@example.com",
                phone_number="+14155550124",
                address_line_one="2 Main St",
            ),
        ),
        ("PUT", "/customers/c-1", {"ssn": third, "business_details": business}),
        ("PATCH", "/customers/c-2", {"ssn": fourth}),
        (
            "POST",
            "/accounts",
            {
                "account_id": "acc-1",
                "product_id": "prod-1",
                "assign_customers": [{"customer_id": "c-1", "customer_account_role": "PRIMARY"}],
            },
        ),
        # An error is an answer too, and is stored: a customer_id taken already.
        ("POST", "/customers", minimal_customer(customer_id="c-1", ssn=third_digits)),
    ]
    answers = []
    for number, (method, path, body) in enumerate(writes):
        answer = await api.http.request(method, path, json=body, headers=keyed(f"k-{number}"))
        assert answer.status_code in (200, 409), answer.text
        replay = await api.http.request(method, path, json=body, headers=keyed(f"k-{number}"))
        assert replay.headers["Idempotent-Replayed"] == "true" and replay.content == answer.content
        answers.append(answer)
    # The stored answers did hold SSNs: the replays gave them back.
    assert first in answers[0].text and second_digits in answers[1].text
    assert third in answers[2].text and fourth in answers[3].text
    assert third in answers[4].text  # the account answers its customers with their SSNs
    assert await pool.fetchval("SELECT count(*) FROM idempotency_keys") == len(writes) + 1

    needles = spellings(first, second, third, fourth, third_digits)
    assert await clear_text_in_tables(pool, needles) == []
    async with pool.acquire() as conn:
        assert await clear_text_in_files(conn, needles) == []
    assert clear_text_in_logs(caplog.records, needles) == []


async def test_no_passport_number_nor_controller_ssn_in_clear_anywhere(
    api: ApiClient, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11's PII: the customer's passport number and the business controller's SSN and passport
    number, through keyed creates, updates and an account answering its customers."""
    caplog.set_level(logging.DEBUG)
    passports = [new_passport_number() for _ in range(5)]
    (controller_ssn, controller_digits), (second_controller_ssn, _) = new_ssn(), new_ssn()

    def business(ssn: str, passport: str) -> dict[str, object]:
        controller = {
            "name_first": "Grace", "name_last": "Hopper", "address_line_one": "1 Navy Way",
            "address_city": "Arlington", "address_state": "VA", "address_zip": "22202", "ssn": ssn,
            "passport": {"number": passport, "country": "US"},
        }  # fmt: skip
        return {"doing_business_as": "Umbrella", "business_ein": "98-7654321", "controller": controller}

    product = {"product_id": "prod-1", "product_overview": {"product_name": "Card", "product_type": "REVOLVING"}}
    assert (await api.http.post("/products", json=product)).status_code == 200
    writes = [
        (
            "POST",
            "/customers",
            minimal_customer(
                customer_id="c-1",
                passport={"number": passports[0], "country": "GB"},
                business_details=business(controller_ssn, passports[1]),
            ),
        ),
        ("PUT", "/customers/c-1", {"passport": {"number": passports[2], "country": "FR"}}),
        ("PATCH", "/customers/c-1", {"business_details": business(second_controller_ssn, passports[3])}),
        (
            "POST",
            "/accounts",
            {"account_id": "acc-1", "product_id": "prod-1", "assign_customers": [{"customer_id": "c-1"}]},
        ),
        # Refused (the parent is unknown): an error is stored too, and must hold nothing either.
        (
            "POST",
            "/customers",
            minimal_customer(passport={"number": passports[4], "country": "DE"}, customer_parent_id="x"),
        ),
    ]
    answers = []
    for number, (method, path, body) in enumerate(writes):
        answer = await api.http.request(method, path, json=body, headers=keyed(f"pp-{number}"))
        assert answer.status_code in (200, 404), answer.text
        answers.append(answer)
    # The answers do carry them in clear (as Canopy answers them), so the checks below are not vacuous.
    assert passports[0] in answers[0].text and controller_ssn in answers[0].text and passports[1] in answers[0].text
    assert passports[2] in answers[1].text
    assert passports[3] in answers[3].text and second_controller_ssn in answers[3].text
    got = (await api.http.get("/customers/c-1")).json()
    assert got["business_details"]["controller"]["passport"]["number"] == passports[3]

    needles = [*spellings(controller_ssn, controller_digits, second_controller_ssn)]
    needles += [text for number in passports for text in (number.encode(), number.encode().hex().encode())]
    assert await clear_text_in_tables(pool, needles) == []
    async with pool.acquire() as conn:
        assert await clear_text_in_files(conn, needles) == []
    assert clear_text_in_logs(caplog.records, needles) == []


async def test_no_beneficial_owner_ssn_in_clear_anywhere(
    api: ApiClient, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11, item 3: an owner's SSN is sealed as a customer's is: in its table, in the answers kept
    under an Idempotency-Key (which hold it: the API answers it), in the files and in the logs."""
    caplog.set_level(logging.DEBUG)
    (first, _), (_, second_digits), (third, _) = (new_ssn() for _ in range(3))
    business = minimal_customer(
        customer_id="biz-1", business_details={"doing_business_as": "Acme", "business_ein": "12-3456789"}
    )
    assert (await api.http.post("/customers", json=business)).status_code == 200
    path = "/customers/biz-1/beneficial_owners"
    owner = minimal_customer(name_first="Grace")
    writes = [
        ({**owner, "beneficial_owner_id": "bo-1", "ssn": first}, "k-bo-1"),
        ({**owner, "beneficial_owner_id": "bo-2", "ssn": second_digits}, "k-bo-2"),
        ({**owner, "beneficial_owner_id": "bo-1", "ssn": third}, "k-bo-3"),  # taken: a 409, its body kept too
        ({**owner, "ssn": third}, None),
    ]
    for body, key in writes:
        answer = await api.http.post(path, json=body, headers=keyed(key) if key else {})
        assert answer.status_code in (200, 409), answer.text
        assert (body["ssn"] in answer.text) == (answer.status_code == 200)
        if key:
            replay = await api.http.post(path, json=body, headers=keyed(key))
            assert replay.headers["Idempotent-Replayed"] == "true" and replay.content == answer.content
    listed = (await api.http.get(path)).json()["results"]
    assert [o["ssn"] for o in listed] == [first, second_digits, third]  # answered as sent, read back sealed
    assert await pool.fetchval("SELECT count(*) FROM beneficial_owners WHERE ssn_encrypted IS NOT NULL") == 3

    needles = spellings(first, second_digits, third)
    assert await clear_text_in_tables(pool, needles) == []
    async with pool.acquire() as conn:
        assert await clear_text_in_files(conn, needles) == []
    assert clear_text_in_logs(caplog.records, needles) == []


async def test_a_stored_answer_does_not_decrypt_in_another_row(
    api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """Sealed with its organization, key, status and request: copied into another row (another
    organization's, or another key's), it is refused (a 500), never answered to someone else."""
    ssn, _ = new_ssn()
    body = minimal_customer(customer_id="same", ssn=ssn)
    for client in (api, other_api):
        assert (await client.http.post("/customers", json=body, headers=keyed("k"))).status_code == 200
    assert (
        await api.http.post("/customers", json=minimal_customer(customer_id="other"), headers=keyed("k2"))
    ).status_code == 200
    mine = await pool.fetchrow(
        "SELECT request_hash, body_encrypted FROM idempotency_keys WHERE org_id = $1 AND key = 'k'", api.org_id
    )

    # Into the other organization's row for the same key and the same request: refused.
    await pool.execute(
        "UPDATE idempotency_keys SET body_encrypted = $2 WHERE org_id = $1 AND key = 'k'",
        other_api.org_id,
        mine["body_encrypted"],
    )
    moved = await other_api.http.post("/customers", json=body, headers=keyed("k"))
    assert_error(moved, 500, "server_error")
    # Into another key's row of the same organization, request fingerprint and all: refused.
    await pool.execute(
        "UPDATE idempotency_keys SET body_encrypted = $2, request_hash = $3 WHERE org_id = $1 AND key = 'k2'",
        api.org_id,
        mine["body_encrypted"],
        mine["request_hash"],
    )
    assert_error(await api.http.post("/customers", json=body, headers=keyed("k2")), 500, "server_error")
    # Its own row still answers.
    assert ssn in (await api.http.post("/customers", json=body, headers=keyed("k"))).text
    assert clear_text_in_logs(caplog.records, spellings(ssn)) == []


def v2_fingerprint(method: str, path: str, body: bytes) -> bytes:
    return hashlib.sha256(b"\0".join((method.encode(), path.encode(), body))).digest()


async def test_version_2_answers_in_clear_are_sealed_by_the_migration(pool: asyncpg.Pool, database_url: str) -> None:
    """On a whole version-2 database: what schema.sql and the v3 step make of it is a fresh database."""
    ssn, digits = new_ssn()
    name = "canopy_v2_migration"
    await pool.execute(f"DROP DATABASE IF EXISTS {name}", timeout=SLOW_DDL_SECONDS)
    await pool.execute(f"CREATE DATABASE {name}", timeout=SLOW_DDL_SECONDS)
    conn = await asyncpg.connect(with_database(database_url, name))
    cipher = DataCipher(TEST_DATA_KEY)
    try:
        await conn.execute((FIXTURES / "schema_v2.sql").read_text())
        await conn.execute("INSERT INTO schema_version (version) VALUES (2)")
        await conn.execute("INSERT INTO data_key_check (key_check) VALUES ($1)", cipher.key_check())
        org_id = await conn.fetchval("INSERT INTO organizations (name) VALUES ('acme') RETURNING id")
        request = b'{"name_first":"Ada","ssn":"%s"}' % ssn.encode()
        live_answer = b'{"customer_id":"c-1","ssn":"%s","name_first":"Ada"}' % ssn.encode()
        big_answer = b'{"ssn":"%s","pad":"%s"}' % (digits.encode(), b"x" * 20_000)  # kept in TOAST
        for key, answer, age in (
            ("live", live_answer, "1 hour"),
            ("big", big_answer, "2 hours"),
            ("expired", live_answer, "25 hours"),
        ):
            await conn.execute(
                """INSERT INTO idempotency_keys (org_id, key, request_hash, status, body, created_at)
                   VALUES ($1, $2, $3, 200, $4, now() - $5::text::interval)""",
                org_id,
                key,
                v2_fingerprint("POST", "/customers", request),
                answer,
                age,
            )
        table = (
            "c.oid IN (SELECT oid FROM pg_class WHERE relname = 'idempotency_keys' UNION "
            "SELECT reltoastrelid FROM pg_class WHERE relname = 'idempotency_keys')"
        )
        # The check sees clear answers where they are (else its clean result below would prove nothing).
        assert await clear_text_in_files(conn, spellings(ssn), table) != []

        assert await migrate(conn, cipher) == SCHEMA_VERSION >= 3

        columns = {
            row["column_name"]: row["is_nullable"]
            for row in await conn.fetch(
                "SELECT column_name, is_nullable FROM information_schema.columns WHERE table_name = 'idempotency_keys'"
            )
        }
        assert "body" not in columns and columns["body_encrypted"] == "NO"
        assert await schema_of(conn) == await schema_of(pool)  # as the tests' database, made fresh
        assert sorted(row["key"] for row in await conn.fetch("SELECT key FROM idempotency_keys")) == ["big", "live"]
        # A retry of the same request after the upgrade gets its answer back, as before it.
        async with conn.transaction():
            live = await idempotency.fetch(conn, org_id, "live", cipher=cipher)
            big = await idempotency.fetch(conn, org_id, "big", cipher=cipher)
        assert live is not None and big is not None
        assert live["body"] == live_answer and big["body"] == big_answer and live["status"] == 200
        assert live["request_hash"] == idempotency.fingerprint(cipher, "POST", "/customers", request)
        assert await clear_text_in_tables(conn, spellings(ssn)) == []
        assert await clear_text_in_files(conn, spellings(ssn), table) == []
        assert await migrate(conn, cipher) == SCHEMA_VERSION  # idempotent
    finally:
        await conn.close()
    await pool.execute(f"DROP DATABASE {name}", timeout=SLOW_DDL_SECONDS)


async def test_no_pan_or_cvv_and_no_sent_shipping_address_at_rest(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 13, item 2: Lithic answers a card with its PAN and CVV (PCI-enabled programs); neither is
    kept anywhere. A PHYSICAL card's own shipping address is only sealed until Lithic has it."""
    caplog.set_level(logging.DEBUG)
    await use_lithic(api, fake_lithic)
    await linked_customer(api, await account(api))
    address = {
        "first_name": "Homer", "last_name": "Simpson", "address1": "742 Evergreen Terrace", "city": "Springfield",
        "state": "OR", "postal_code": "97403", "country": "USA",
    }  # fmt: skip
    ordered = await api.http.post(
        "/accounts/acc-1/customers/cust-1/cards", json={"lithic": {"type": "PHYSICAL", "shipping_address": address}}
    )
    assert ordered.status_code == 200, ordered.text
    shipping = [b"Evergreen", b"Simpson", b"Evergreen".hex().encode()]
    assert await clear_text_in_tables(pool, shipping) == []  # pending: sealed

    worker = make_worker(pool)
    while await worker.process_due():
        pass

    assert await pool.fetchval("SELECT count(*) FROM cards WHERE status = 'ISSUED'") == 2
    assert [r.body["shipping_address"] for r in fake_lithic.requests if r.body and "shipping_address" in r.body] == [
        address
    ]
    pans = [card["pan"].encode() for card in fake_lithic.cards.values()]
    # A CVV is three digits, found by chance in any table: what would hold one is a column or key of that name.
    needles = [*pans, *(pan.hex().encode() for pan in pans), b'"cvv"', b'"pan"', *shipping]
    assert await clear_text_in_tables(pool, needles) == []
    assert clear_text_in_logs(caplog.records, needles) == []
    named = await pool.fetch(
        "SELECT table_name, column_name FROM information_schema.columns WHERE column_name IN ('pan', 'cvv')"
    )
    assert named == []
    async with pool.acquire() as conn:
        assert await clear_text_in_files(conn, [*pans, *shipping]) == []


async def test_events_hold_no_ssn_and_webhook_secrets_are_kept_only_encrypted(
    api: ApiClient, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12: an event's data is the answer without its SSN (events are sent and kept in clear), and
    a subscription's signing secret is shown once and stored only AES-GCM encrypted."""
    caplog.set_level(logging.DEBUG)
    ssn, digits = new_ssn()
    subscribed = await api.http.put("/organization/subscribe", json={"webhook_url": "https://hooks.example.com/x"})
    assert subscribed.status_code == 201, subscribed.text
    secret = subscribed.json()["signing_secret"]
    created = await api.http.post("/customers", json=minimal_customer(customer_id="c-1", ssn=ssn))
    assert created.status_code == 200 and created.json()["ssn"] == ssn
    updated = await api.http.patch("/customers/c-1", json={"ssn": digits, "name_first": "Grace"})
    assert updated.status_code == 200
    # The check looks where the values would be: events with their customers, a delivery, a subscription.
    assert await pool.fetchval("SELECT count(*) FROM events") == 2
    assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries") == 2
    assert await pool.fetchval("SELECT count(*) FROM webhook_subscriptions WHERE secret_encrypted IS NOT NULL") == 1
    key = base64.b64decode(secret.removeprefix("whsec_"))
    needles = [*spellings(ssn), secret.encode(), secret.removeprefix("whsec_").encode(), key, key.hex().encode()]
    assert await clear_text_in_tables(pool, needles) == []
    async with pool.acquire() as conn:
        assert await clear_text_in_files(conn, needles) == []
    assert clear_text_in_logs(caplog.records, needles) == []
    listed = await api.http.get("/organization/subscriptions")
    assert secret not in listed.text
