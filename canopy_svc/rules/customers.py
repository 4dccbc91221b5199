"""The customer rules: what a create, an update and a listing do, over the store's SQL."""

from __future__ import annotations

import contextlib
import datetime
import re

import asyncpg
import msgspec

from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.db import atomic
from canopy_svc.core.dbtypes import Conn, Queryable, Row
from canopy_svc.rules import duplicates, events, links
from canopy_svc.rules.cursors import CursorCodec
from canopy_svc.rules.ids import new_customer_id
from canopy_svc.rules.paging import PageRequest, keyset_page
from canopy_svc.rules.validation import BodyDecoder, decode_customer, meaning_problems, parent_problems
from canopy_svc.store import customers as store
from canopy_svc.store.customer_columns import STORAGE
from canopy_svc.wire.errors import BadRequest, InvalidInput, NotFound, detail
from canopy_svc.wire.models import (
    Customer,
    CustomerCreate,
    CustomerList,
    CustomerUpdate,
    DuplicateWarning,
)

CREATE_DECODER = BodyDecoder(CustomerCreate)
UPDATE_DECODER = BodyDecoder(CustomerUpdate)
CURSOR_KIND = "customers"
_SEARCH_WORD = re.compile(r"[^\W_]+")
MAX_SEARCH_WORDS = 10


def parse_create(body: bytes) -> CustomerCreate:
    return decode_customer(body, CREATE_DECODER, with_meaning=True)


def parse_update(body: bytes) -> CustomerUpdate:
    return decode_customer(body, UPDATE_DECODER, with_meaning=False)


# customer_from_record(record, cipher) is the Customer of a row; (record, cipher, Model, **extra) is a
# subclass of it given its own fields (AccountCustomer and its link). Generated from the types.
customer_from_record = STORAGE.customer


async def create(
    conn: Conn, org_id: int, payload: CustomerCreate, cipher: DataCipher, *, waived: frozenset[str] = frozenset()
) -> Customer:
    """Creates the customer. Unless the policy is `block` (which must compare first, under locks), in
    one statement that also compares it with the others and writes its event (without links, the
    whole request: one round trip); its links after it, in the same transaction. `waived`: the fields
    duplicates.check waives (under `block` only: the other policies answer every warning)."""
    customer_id = payload.customer_id or new_customer_id()
    await _check_parent(conn, org_id, payload.customer_parent_id)
    fields = msgspec.structs.asdict(payload)
    columns = STORAGE.row(fields, cipher)
    # No BEGIN or COMMIT to wait for without links: the statement is atomic by itself.
    async with atomic(conn) if payload.assign_to_accounts else contextlib.nullcontext():
        # The event's data is the answer, made from what the row will hold; the database adds its
        # timestamps.
        created = customer_from_record(store.stored_row(customer_id, columns, _NO_TIME_YET), cipher)
        event = (events.new_event_id(), events.encoded_data(created, leave_out=("created_at", "updated_at")))
        _, record, matches = await store.insert_comparing(conn, org_id, customer_id, columns, event=event)
        if record is not None:
            if payload.assign_to_accounts:
                await links.assign_accounts(conn, org_id, record["id"], payload.assign_to_accounts, cipher)
            return _answer(record, cipher, duplicates.warnings_for(matches))
    async with atomic(conn):
        warnings = await duplicates.check(
            conn, org_id, fields, columns["ssn_hash"], ignore_warnings=payload.ignore_warnings, waived=waived
        )
        record = await store.insert(conn, org_id, customer_id, columns)
        await events.record_event(conn, org_id, "customer_created", customer_from_record(record, cipher))
        if payload.assign_to_accounts:
            await links.assign_accounts(conn, org_id, record["id"], payload.assign_to_accounts, cipher)
    return _answer(record, cipher, warnings)


# The timestamps of an answer made before its row exists; never shown (the event's come from the row).
_NO_TIME_YET = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


async def _check_parent(conn: Queryable, org_id: int, parent_id: str | None) -> None:
    """customer_parent_id names a customer of the caller's organization: else the contract's 404 for a
    referenced id, so another organization's customer is as unknown as one that never existed. (A
    customer is never deleted but with its organization, so what is checked here stays true.)"""
    if parent_id is not None and not await store.exists(conn, org_id, parent_id):
        raise NotFound(f"No customer found with the provided customer_parent_id: {parent_id}")


def _answer(record: Row, cipher: DataCipher, warnings: list[DuplicateWarning]) -> Customer:
    customer = customer_from_record(record, cipher)
    if warnings:
        customer.warnings = warnings
    return customer


async def get(conn: Queryable, org_id: int, customer_id: str, cipher: DataCipher) -> Customer:
    record = await store.fetch(conn, org_id, customer_id)
    if record is None:
        raise NotFound(f"No customer found with the provided customer_id: {customer_id}")
    return customer_from_record(record, cipher)


async def update(
    conn: Conn,
    org_id: int,
    customer_id: str,
    patch: CustomerUpdate,
    cipher: DataCipher,
    *,
    waived: frozenset[str] = frozenset(),
) -> Customer:
    parent_id = patch.customer_parent_id if isinstance(patch.customer_parent_id, str) else None
    record = await store.fetch(conn, org_id, customer_id, for_update=True)
    if record is None:
        raise NotFound(f"No customer found with the provided customer_id: {customer_id}")
    if problems := parent_problems(customer_id, parent_id):
        raise InvalidInput(problems)
    await _check_parent(conn, org_id, parent_id)
    if parent_id is not None and await store.is_ancestor_or_self(conn, org_id, customer_id, parent_id):
        message = "must not be the customer's own descendant: parents would form a loop"
        raise InvalidInput([detail("/customer_parent_id", "format", {"format": "another_customer"}, message)])
    given = {
        name: getattr(patch, name)
        for name in patch.__struct_fields__
        if name in STORAGE.writable_fields and getattr(patch, name) is not msgspec.UNSET
    }
    merged = msgspec.structs.asdict(customer_from_record(record, cipher)) | given
    checked = set(given)
    if "address_country_code" in given:  # the zip and state rules follow the country
        checked |= {"address_zip", "address_state"}
    problems = meaning_problems(merged, checked)
    if problems:
        raise InvalidInput(problems)
    columns = STORAGE.row(given, cipher)
    warnings: list[DuplicateWarning] = []
    if duplicates.CHECKED_FIELDS & given.keys():
        ssn_hash = columns["ssn_hash"] if "ssn" in given else record["ssn_hash"]
        warnings = await duplicates.check(
            conn,
            org_id,
            merged,
            ssn_hash,
            ignore_warnings=patch.ignore_warnings,
            exclude_row_id=record["id"],
            waived=waived,
        )
    updated = await store.update(conn, record["id"], columns)
    await events.record_event(conn, org_id, "customer_updated", customer_from_record(updated, cipher))
    if patch.assign_to_accounts:
        await links.assign_accounts(conn, org_id, record["id"], patch.assign_to_accounts, cipher)
    return _answer(updated, cipher, warnings)


def search_words(raw: str | None) -> list[str]:
    if raw is None:
        return []
    words = _SEARCH_WORD.findall(raw.lower())
    if len(words) > MAX_SEARCH_WORDS:
        raise BadRequest(f"search_parameters may have at most {MAX_SEARCH_WORDS} words")
    return words


async def list_page(
    conn: Queryable, org_id: int, cursors: CursorCodec, page: PageRequest, search: list[str], cipher: DataCipher
) -> CustomerList:
    async def fetch(limit: int, after: int | None, before: int | None) -> list[asyncpg.Record]:
        return await store.page(conn, org_id, limit=limit, after=after, before=before, search=search)

    records, paging = await keyset_page(cursors, org_id, CURSOR_KIND, page, fetch)
    return CustomerList(results=[customer_from_record(r, cipher) for r in records], paging=paging)
