"""SSNs and Lithic keys encrypted at rest (contract section 8), the v1 -> v2 migration, and the data key."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from canopy_svc.core.crypto import DataCipher
from canopy_svc.store.migrations import SCHEMA_VERSION
from tests.helpers import (
    FIXTURES,
    SLOW_DDL_SECONDS,
    TEST_DATA_KEY,
    TEST_KEY_TEXT,
    ApiClient,
    minimal_customer,
    schema_of,
    seed_customer,
    with_database,
)


def cli(*args: str, database_url: str, data_dir: Path, data_key: str | None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "CANOPY_SVC_DATA_KEY"}
    env["DATABASE_URL"] = database_url
    if data_key is not None:
        env["CANOPY_SVC_DATA_KEY"] = data_key
    return subprocess.run(
        [sys.executable, "-m", "canopy_svc", *args, "--data-dir", str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_ssn_is_stored_only_encrypted_and_answered_in_clear(api: ApiClient, pool: asyncpg.Pool) -> None:
    created = await api.http.post("/customers", json=seed_customer(ssn="123-45-6789"))
    assert created.json()["ssn"] == "123-45-6789"
    assert (await api.http.get("/customers/0x1234")).json()["ssn"] == "123-45-6789"

    columns = {
        row["column_name"]
        for row in await pool.fetch("SELECT column_name FROM information_schema.columns WHERE table_name = 'customers'")
    }
    assert "ssn" not in columns
    row = await pool.fetchrow("SELECT * FROM customers")
    raw = b"|".join(
        bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode() for value in row.values()
    )
    assert b"123-45-6789" not in raw and b"123456789" not in raw
    assert DataCipher(TEST_DATA_KEY).decrypt(row["ssn_encrypted"], context=b"ssn") == "123-45-6789"


async def test_ssn_can_be_cleared_and_changed(api: ApiClient, pool: asyncpg.Pool) -> None:
    await api.http.post("/customers", json=minimal_customer(customer_id="c", ssn="123456789"))
    changed = await api.http.patch("/customers/c", json={"ssn": "987-65-4321"})
    assert changed.json()["ssn"] == "987-65-4321"
    cleared = await api.http.patch("/customers/c", json={"ssn": None})
    assert cleared.json()["ssn"] is None
    assert await pool.fetchval("SELECT ssn_encrypted IS NULL AND ssn_hash IS NULL FROM customers") is True


async def test_a_version_1_database_is_migrated(pool: asyncpg.Pool, database_url: str, tmp_path: Path) -> None:
    name = "canopy_v1_migration"
    await pool.execute(f"DROP DATABASE IF EXISTS {name}", timeout=SLOW_DDL_SECONDS)
    await pool.execute(f"CREATE DATABASE {name}", timeout=SLOW_DDL_SECONDS)
    old_url = with_database(database_url, name)
    old = await asyncpg.connect(old_url)
    try:
        await old.execute((FIXTURES / "schema_v1.sql").read_text())
        await old.execute("INSERT INTO schema_version (version) VALUES (1)")
        org_id = await old.fetchval("INSERT INTO organizations (name) VALUES ('acme') RETURNING id")
        for number, ssn in enumerate(["123-45-6789", "987654321", None]):
            await old.execute(
                """INSERT INTO customers (org_id, customer_id, name_first, name_last, phone_number,
                       address_line_one, address_city, address_state, address_zip, email, date_of_birth, ssn)
                   VALUES ($1, $2, 'A', 'B', '+14155550123', '1 Main St', 'X', 'CA', '94105', 'a@b.co',
                           '1990-01-01', $3)""",
                org_id,
                f"c{number}",
                ssn,
            )
    finally:
        await old.close()

    done = cli("migrate", database_url=old_url, data_dir=tmp_path, data_key=TEST_KEY_TEXT)
    assert done.returncode == 0, done.stderr
    assert f"version {SCHEMA_VERSION}" in done.stdout

    migrated = await asyncpg.connect(old_url)
    try:
        columns = {
            r["column_name"]
            for r in await migrated.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'customers'"
            )
        }
        assert "ssn" not in columns
        rows = await migrated.fetch("SELECT customer_id, ssn_encrypted, ssn_hash FROM customers ORDER BY id")
        cipher = DataCipher(TEST_DATA_KEY)
        ssns = [cipher.decrypt(r["ssn_encrypted"], context=b"ssn") if r["ssn_encrypted"] else None for r in rows]
        assert ssns == ["123-45-6789", "987654321", None]
        assert rows[0]["ssn_hash"] == cipher.lookup_hash("123456789", context=b"ssn")
        assert await migrated.fetchval("SELECT version FROM schema_version") == SCHEMA_VERSION
        assert await schema_of(migrated) == await schema_of(pool)  # as the tests' database, made fresh
    finally:
        await migrated.close()
    again = cli("migrate", database_url=old_url, data_dir=tmp_path, data_key=TEST_KEY_TEXT)
    assert again.returncode == 0, again.stderr  # idempotent
    await pool.execute(f"DROP DATABASE {name}", timeout=SLOW_DDL_SECONDS)


@pytest.mark.parametrize(
    ("data_key", "expected"),
    [
        (base64.urlsafe_b64encode(bytes(32)).decode(), "not the key this database"),  # another key
        (None, "not the key this database"),  # none given: a new one is made, which is not the database's
        ("not-a-key", "CANOPY_SVC_DATA_KEY"),  # malformed
    ],
)
async def test_a_wrong_or_missing_data_key_fails_at_start(
    api: ApiClient, pool: asyncpg.Pool, database_url: str, tmp_path: Path, data_key: str | None, expected: str
) -> None:
    # The database knows the tests' key once anything has run with it.
    assert (
        cli("migrate", database_url=database_url, data_dir=tmp_path / "right", data_key=TEST_KEY_TEXT).returncode == 0
    )
    for command in (["migrate"], ["serve", "--port", "1"]):
        done = cli(*command, database_url=database_url, data_dir=tmp_path / "wrong", data_key=data_key)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert expected in done.stderr
        assert TEST_KEY_TEXT not in done.stderr and "Traceback" not in done.stderr
