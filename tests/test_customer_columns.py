"""The customer is described once: the table, the wire types and the store's SQL agree.

A new customer field is a column in schema.sql plus the field in the types; each test here fails,
naming what is missing, when one of the two is left out or a hand-kept list creeps back.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

import asyncpg
import msgspec
import pytest

from canopy_svc.core.crypto import DataCipher
from canopy_svc.store import customers as store
from canopy_svc.store.customer_columns import (
    INTERNAL_COLUMNS,
    NOT_STORED,
    STORAGE,
    STORED_DIFFERENTLY,
    EncryptedSsn,
    Flattened,
    derive,
)
from canopy_svc.wire import models
from tests.helpers import TEST_DATA_KEY

CIPHER = DataCipher(TEST_DATA_KEY)
# What a request may send that is no field of the customer, and the answer's fields the database sets.
REQUEST_ONLY = {"assign_to_accounts", "ignore_warnings", "ignore_warnings_alias"}
SET_BY_THE_SERVICE = {"customer_id", "created_at", "updated_at", "warnings"}


def _names(model: type[msgspec.Struct]) -> set[str]:
    return {info.name for info in msgspec.structs.fields(model)}


async def _table_columns(pool: asyncpg.Pool) -> dict[str, asyncpg.Record]:
    rows = await pool.fetch(
        """SELECT column_name, column_default, is_identity, is_generated FROM information_schema.columns
           WHERE table_schema = current_schema() AND table_name = 'customers'"""
    )
    return {row["column_name"]: row for row in rows}


async def test_every_column_of_the_table_is_a_field_of_the_types_and_every_field_a_column(pool: asyncpg.Pool) -> None:
    table = set(await _table_columns(pool))
    derived = set(STORAGE.read)
    assert len(derived) == len(STORAGE.read)
    assert table - derived - set(INTERNAL_COLUMNS) == set(), "columns no field of models.Customer accounts for"
    assert derived - table == set(), "fields of models.Customer with no column in schema.sql"
    assert set(INTERNAL_COLUMNS) <= table


async def test_every_column_a_create_does_not_write_has_a_default(pool: asyncpg.Pool) -> None:
    """The INSERT names org_id, customer_id and the writable columns; the database fills the rest."""
    unwritten = {
        name: row
        for name, row in (await _table_columns(pool)).items()
        if name not in {"org_id", "customer_id", *store.WRITABLE}
    }
    assert set(unwritten) == {"id", "created_at", "updated_at", "search_vector", "loanpro_id", "loanpro_deleted_at"}
    unwritten.pop("loanpro_deleted_at")  # a mark set by the LoanPro face's DELETE: null when made
    for name, row in unwritten.items():
        assert row["column_default"] is not None or row["is_identity"] == "YES" or row["is_generated"] == "ALWAYS", name


def _listed(pattern: str, sql: str) -> list[list[str]]:
    return [[name.strip() for name in found.split(",")] for found in re.findall(pattern, sql, re.DOTALL)]


def test_the_store_sql_lists_are_the_derived_columns() -> None:
    answered = ["id", *STORAGE.read]
    assert list(store.COLUMN_NAMES) == answered
    assert list(store.WRITABLE) == list(STORAGE.writable)
    assert store.qualified_columns("c").split(", ") == [f"c.{name}" for name in STORAGE.read]
    for sql in (store._INSERT, store._INSERT_COMPARING):
        assert _listed(r"INSERT INTO customers \(([^)]*)\)", sql) == [["org_id", "customer_id", *STORAGE.writable]]
        assert _listed(r"RETURNING ([\w, \n]*?)\s*(?:\)|$)", sql) == [answered]
    parameters = _listed(r"VALUES \(([^)]*)\)", store._INSERT)[0]
    assert parameters == [f"${i}" for i in range(1, len(STORAGE.writable) + 3)]


def test_the_types_agree_on_the_customer_fields() -> None:
    stored = {name for name, _ in STORAGE.fields}
    assert stored == _names(models.Customer) - {"warnings"}
    assert _names(models.CustomerUpdate) - REQUEST_ONLY == _names(models.Customer) - SET_BY_THE_SERVICE
    assert _names(models.CustomerCreate) == _names(models.CustomerUpdate) | {"customer_id"}
    assert STORAGE.writable_fields == _names(models.CustomerUpdate) - REQUEST_ONLY
    assert _names(models.BusinessDetails) == _names(models.BusinessDetailsOut)
    assert _names(models.BusinessController) == _names(models.BusinessControllerOut)
    assert _names(models.Passport) == _names(models.PassportOut)


def test_a_stored_customer_reads_back_as_written() -> None:
    created = models.CustomerCreate(
        name_first="Ada", name_last="Lovelace", phone_number="+14155550123", address_line_one="1 Main St",
        address_city="Baltimore", address_state="MD", address_zip="21201", email="ada@example.com",
        date_of_birth=datetime.date(1990, 12, 10), ssn="123-45-6789",
        business_details=models.BusinessDetails(doing_business_as="Umbrella", business_ein="12-3456789"),
    )  # fmt: skip
    fields = {name: getattr(created, name) for name in created.__struct_fields__}
    row = STORAGE.row(fields, CIPHER)
    assert set(row) == set(STORAGE.writable)
    assert "ssn" not in row and row["ssn_encrypted"] != b"123-45-6789" and row["ssn_hash"]
    now = datetime.datetime.now(datetime.UTC)
    customer = STORAGE.customer(row | {"customer_id": "c1", "created_at": now, "updated_at": now}, CIPHER)
    assert customer.ssn == "123-45-6789"
    assert customer.business_details == models.BusinessDetailsOut(
        doing_business_as="Umbrella", business_ein="12-3456789"
    )
    answered = msgspec.structs.asdict(customer)
    for name in STORAGE.writable_fields - {"business_details"}:
        assert answered[name] == fields[name], name
    cleared = STORAGE.row({"ssn": None, "business_details": None, "assign_to_accounts": []}, CIPHER)
    business_columns = dict(STORAGE.fields)["business_details"].columns  # its controller's too
    assert {"doing_business_as", "website", "controller_name_first", "controller_ssn_encrypted"} <= set(
        business_columns
    )
    assert cleared == dict.fromkeys(("ssn_encrypted", "ssn_hash", *business_columns))


# --- the derivation itself, on types of the shape of issue 11's fields ------------------------------

# The mapping without issue 11's entries (they name fields these test types do not all have).
BASE_MAPPING: dict[str, Any] = {key: STORED_DIFFERENTLY[key] for key in ("ssn", "business_details", "warnings")}


class Passport(msgspec.Struct, kw_only=True):
    number: str
    country: str


class Controller(msgspec.Struct, kw_only=True):
    name_first: str
    name_last: str | None = None


class Business(msgspec.Struct, kw_only=True):
    doing_business_as: str
    website: str | None = None
    controller: Controller | None = None


class Answer(msgspec.Struct, kw_only=True):
    customer_id: str
    title: str | None
    ssn: str | None
    passport: Passport | None
    business_details: Business | None
    created_at: datetime.datetime
    warnings: list[str] | msgspec.UnsetType = msgspec.UNSET


class Update(msgspec.Struct, kw_only=True):
    title: str | None = None
    ssn: str | None = None
    passport: Passport | None = None
    business_details: Business | None = None
    ignore_warnings: bool = False


def test_a_new_field_is_its_column_and_a_nested_one_a_column_per_field() -> None:
    columns = derive(Answer, Update, BASE_MAPPING)
    assert columns.read == (
        "customer_id", "title", "ssn_encrypted", "ssn_hash", "passport_number", "passport_country",
        "doing_business_as", "website", "controller_name_first", "controller_name_last", "created_at",
    )  # fmt: skip
    assert columns.writable == columns.read[1:-1]
    assert columns.writable_fields == {"title", "ssn", "passport", "business_details"}

    written = Update(
        title="Dr.",
        passport=Passport(number="X1", country="GB"),
        business_details=Business(doing_business_as="U", controller=Controller(name_first="Ann")),
    )
    row = columns.row(msgspec.structs.asdict(written), CIPHER)
    assert row["passport_number"] == "X1" and row["controller_name_first"] == "Ann" and row["website"] is None
    now = datetime.datetime.now(datetime.UTC)
    read: Any = columns.customer(row | {"customer_id": "c1", "created_at": now}, CIPHER)
    assert isinstance(read, Answer)
    assert (read.title, read.passport, read.business_details) == (
        written.title,
        written.passport,
        written.business_details,
    )

    # A nested value is null when its required fields' columns are, whatever its optional ones hold.
    empty = dict.fromkeys(columns.read) | {"customer_id": "c2", "created_at": now, "controller_name_last": "Orphan"}
    read = columns.customer(empty, CIPHER)
    assert (read.ssn, read.passport, read.business_details) == (None, None, None)


def test_the_mapping_decides_over_the_type_and_names_only_real_fields() -> None:
    mapping: dict[str, Any] = {
        **BASE_MAPPING,
        "passport": Flattened(prefix="pp_"),
        "title": NOT_STORED,
        "business_details.controller": Flattened(prefix="ctl_"),
        "ssn": EncryptedSsn(encrypted="ssn_sealed", lookup_hash="ssn_lookup"),
    }
    columns = derive(Answer, Update, mapping)
    assert columns.read == (
        "customer_id",
        "ssn_sealed",
        "ssn_lookup",
        "pp_number",
        "pp_country",
        "doing_business_as",
        "website",
        "ctl_name_first",
        "ctl_name_last",
        "created_at",
    )
    assert "title" not in columns.writable_fields
    with pytest.raises(LookupError, match="name_frist"):
        derive(Answer, Update, {**mapping, "name_frist": NOT_STORED})
    with pytest.raises(TypeError, match="title"):
        derive(Answer, Update, {**mapping, "title": Flattened(prefix="")})


def test_issue_11s_pii_is_kept_only_encrypted_and_reads_back() -> None:
    """The passport numbers and the controller's SSN: a bytea column each, sealed under their own
    context (a passport's ciphertext does not open as an SSN's), and read back as written."""
    passport = models.Passport(number="X1234567", country="GB")
    controller = models.BusinessController(
        name_first="Ann", name_last="Lee", address_line_one="1 Main St", address_city="Baltimore",
        address_state="MD", address_zip="21201", ssn="123-45-6789",
        passport=models.Passport(number="P99", country="US"),
    )  # fmt: skip
    business = models.BusinessDetails(doing_business_as="Umbrella", business_ein="12-3456789", controller=controller)
    row = STORAGE.row({"passport": passport, "business_details": business}, CIPHER)
    for column, clear in (
        ("passport_number_encrypted", "X1234567"),
        ("controller_ssn_encrypted", "123-45-6789"),
        ("controller_passport_number_encrypted", "P99"),
    ):
        assert isinstance(row[column], bytes) and clear.encode() not in row[column], column
    assert {"passport_number", "controller_ssn", "controller_passport_number"}.isdisjoint(STORAGE.read)
    assert CIPHER.decrypt(row["passport_number_encrypted"], context=b"passport") == "X1234567"
    with pytest.raises(Exception):  # noqa: B017 - whatever the AEAD raises: it does not open
        CIPHER.decrypt(row["passport_number_encrypted"], context=b"ssn")
    now = datetime.datetime.now(datetime.UTC)
    record = dict.fromkeys(STORAGE.read) | row | {"customer_id": "c1", "created_at": now, "updated_at": now}
    customer = STORAGE.customer(record, CIPHER)
    assert customer.passport == models.PassportOut(number="X1234567", country="GB")
    assert customer.business_details is not None and customer.business_details.controller is not None
    read_controller = customer.business_details.controller
    assert (read_controller.ssn, read_controller.passport) == ("123-45-6789", models.PassportOut("P99", "US"))
    assert msgspec.structs.asdict(read_controller).keys() == msgspec.structs.asdict(controller).keys()
