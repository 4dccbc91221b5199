"""What the LoanPro face adds to the customer rules: its integer ids, the organization's instance id,
and the nested entities the customers table does not hold, written in the customer's transaction.

The customer itself is created, read and updated by rules/customers.py (validation, duplicates,
events): the face only maps its fields (canopy_svc/loanpro/mapping.py).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from msgspec import UnsetType

from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.db import atomic
from canopy_svc.core.dbtypes import Conn, Queryable
from canopy_svc.rules import customers, duplicates
from canopy_svc.store import loanpro as store
from canopy_svc.wire.models import Customer, CustomerCreate, CustomerUpdate, DuplicateWarning

# Navigations kept in loanpro_entities: single-valued ones hold at most one item. "Customer",
# "PrimaryAddress" and "PrimaryPhone" hold LoanPro's fields of what the customers row holds too
# (status, gender; an address's geoLat; a phone's type), which the Canopy face has no place for.
SINGLE = frozenset({"Customer", "PrimaryAddress", "PrimaryPhone", "MailAddress", "Employer", "CreditScore"})
COLLECTIONS = frozenset({"Phones", "References", "PaymentAccounts"})
STORED = SINGLE | COLLECTIONS


class NestedRefused(Exception):
    """A nested write names an item the customer does not have (the face answers its 409)."""


async def instance_id(conn: Queryable, org_id: int) -> int:
    """Read per request (one primary-key lookup): a cache would outlive an organization made again."""
    return await store.instance_id(conn, org_id)


async def instance_id_by_name(conn: Queryable, organization: str) -> int | None:
    return await store.instance_id_by_name(conn, organization)


async def customer_id_of(conn: Queryable, org_id: int, loanpro_id: int) -> str | None:
    return await store.customer_id_of(conn, org_id, loanpro_id)


async def loanpro_ids(conn: Queryable, org_id: int, customer_ids: list[str]) -> dict[str, int]:
    return {cid: ids[0] for cid, ids in (await store.loanpro_ids(conn, org_id, customer_ids)).items()}


@dataclass(frozen=True)
class NestedWrite:
    nav: str
    op: Literal["add", "update", "destroy", "replace"]
    item_id: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoanProCustomer:
    """A customer with what the LoanPro face shows beside the Canopy fields."""

    customer: Customer
    loanpro_id: int
    entities: dict[str, list[tuple[int, dict[str, Any]]]]
    accounts: list[Account] = field(default_factory=list)


@dataclass(frozen=True)
class Account:
    """An account the customer is on, as the portal calls show it: no ledger figures (none are kept)."""

    loanpro_id: int
    account_id: str
    status: str
    role: str
    product_name: str
    product_type: str
    created_at: datetime.datetime


def _context(nav: str) -> bytes:
    return f"loanpro:{nav}".encode()


def _seal(cipher: DataCipher, nav: str, fields: dict[str, Any]) -> bytes:
    return cipher.encrypt_bytes(msgspec.json.encode(fields), context=_context(nav))


async def read(conn: Queryable, org_id: int, customer_id: str, cipher: DataCipher) -> LoanProCustomer:
    customer = await customers.get(conn, org_id, customer_id, cipher)
    loanpro_id, row_id = (await store.loanpro_ids(conn, org_id, [customer_id]))[customer_id]
    entities: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for row in await store.entities(conn, org_id, row_id):
        fields = msgspec.json.decode(cipher.decrypt_bytes(row["body_encrypted"], context=_context(row["nav"])))
        entities.setdefault(row["nav"], []).append((row["item_id"], fields))
    accounts = [
        Account(
            r["loanpro_id"], r["account_id"], r["account_status"], r["customer_account_role"], r["product_name"],
            r["product_type"], r["created_at"],
        )
        for r in await store.accounts_of(conn, org_id, row_id)
    ]  # fmt: skip
    return LoanProCustomer(customer, loanpro_id, entities, accounts)


async def create(
    conn: Conn,
    org_id: int,
    payload: CustomerCreate,
    nested: list[NestedWrite],
    cipher: DataCipher,
    *,
    waived: frozenset[str],
) -> LoanProCustomer:
    """The customer (rules/customers.py) and its nested entities, in one transaction."""
    async with atomic(conn):
        created = await customers.create(conn, org_id, payload, cipher, waived=waived)
        _, row_id = (await store.loanpro_ids(conn, org_id, [created.customer_id]))[created.customer_id]
        more = await _primary_phone_in_items(
            conn, org_id, row_id, created.phone_number, cipher, ignore_warnings=payload.ignore_warnings, waived=waived
        )
        more += await _write_nested(
            conn, org_id, row_id, nested, cipher, ignore_warnings=payload.ignore_warnings, waived=waived
        )
        answer = await read(conn, org_id, created.customer_id, cipher)
    _warn(answer, created.warnings, more)
    return answer


def _warn(answer: LoanProCustomer, found: list[DuplicateWarning] | UnsetType, more: list[DuplicateWarning]) -> None:
    warnings = [*(found or []), *more]
    if warnings:
        answer.customer.warnings = warnings


async def update(
    conn: Conn,
    org_id: int,
    customer_id: str,
    patch: CustomerUpdate,
    nested: list[NestedWrite],
    cipher: DataCipher,
    *,
    waived: frozenset[str],
) -> LoanProCustomer:
    """Runs in the caller's transaction (api/writes.py): a refused nested write keeps nothing."""
    updated = await customers.update(conn, org_id, customer_id, patch, cipher, waived=waived)
    _, row_id = (await store.loanpro_ids(conn, org_id, [customer_id]))[customer_id]
    more: list[DuplicateWarning] = []
    if isinstance(patch.phone_number, str):  # a new primary phone: is it another customer's other phone?
        more += await _primary_phone_in_items(
            conn, org_id, row_id, patch.phone_number, cipher, ignore_warnings=patch.ignore_warnings, waived=waived
        )
    more += await _write_nested(
        conn, org_id, row_id, nested, cipher, ignore_warnings=patch.ignore_warnings, waived=waived
    )
    answer = await read(conn, org_id, customer_id, cipher)
    _warn(answer, updated.warnings, more)
    return answer


def _e164(phone: str) -> str:
    """A Phones item's number as the customers table keeps phones: LoanPro's 10 digits are a +1 number."""
    return phone if phone.startswith("+") else "+1" + phone


def _phone_hash(cipher: DataCipher, e164: str) -> bytes:
    return cipher.lookup_hash(e164, context=b"loanpro:Phones")


async def _primary_phone_in_items(
    conn: Conn,
    org_id: int,
    row_id: int,
    phone: str,
    cipher: DataCipher,
    *,
    ignore_warnings: bool | UnsetType,
    waived: frozenset[str],
) -> list[DuplicateWarning]:
    """The customer's primary phone against the other customers' other Phones (the Canopy check saw
    their primary phones only): waived as the primary phone's own warnings are."""
    ignore = ignore_warnings is True or "phone_number" in waived
    return await duplicates.check_nested(
        conn, org_id, "phone_number", "Phones", _phone_hash(cipher, phone), ignore_warnings=ignore,
        exclude_row_id=row_id,
    )  # fmt: skip


def _match_hash(cipher: DataCipher, nav: str, fields: dict[str, Any]) -> bytes | None:
    """A MailAddress's keyed hash, compared as the primary address is (first line, zip, country); an
    other phone's, compared as the primary phone is (E.164)."""
    if nav == "Phones":
        phone = fields.get("phone")
        return _phone_hash(cipher, _e164(phone)) if isinstance(phone, str) and phone else None
    if nav != "MailAddress":
        return None
    key = "\x00".join(
        " ".join(str(fields.get(name) or "").lower().split()) for name in ("address1", "zipcode", "country")
    )
    return cipher.lookup_hash(key, context=b"loanpro:MailAddress")


async def _write_nested(
    conn: Conn,
    org_id: int,
    row_id: int,
    writes: list[NestedWrite],
    cipher: DataCipher,
    *,
    ignore_warnings: bool | UnsetType,
    waived: frozenset[str],
) -> list[DuplicateWarning]:
    """The writes, in order; the duplicate warnings a MailAddress or an other phone raised (refused under
    `block` unless waived at the root or on the object: "mail_address", "phones")."""
    warnings: list[DuplicateWarning] = []
    ignore_all = ignore_warnings is True

    async def hashed(nav: str, fields: dict[str, Any]) -> bytes | None:
        match_hash = _match_hash(cipher, nav, fields)
        if match_hash is not None and nav == "Phones":
            warnings.extend(
                await duplicates.check_phone_item(
                    conn,
                    org_id,
                    _e164(str(fields["phone"])),
                    match_hash,
                    ignore_warnings=ignore_all or "phones" in waived,
                    exclude_row_id=row_id,
                )
            )
        elif match_hash is not None:
            warnings.extend(
                await duplicates.check_nested(
                    conn,
                    org_id,
                    "mail_address",
                    nav,
                    match_hash,
                    ignore_warnings=ignore_all or "mail_address" in waived,
                    exclude_row_id=row_id,
                )
            )
        return match_hash

    existing: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    if any(w.op in ("update", "replace") for w in writes):
        for row in await store.entities(conn, org_id, row_id):
            fields = msgspec.json.decode(cipher.decrypt_bytes(row["body_encrypted"], context=_context(row["nav"])))
            existing.setdefault(row["nav"], []).append((row["item_id"], fields))
    for write in writes:
        if write.op == "add":
            sealed = _seal(cipher, write.nav, write.fields)
            await store.insert_entity(conn, org_id, row_id, write.nav, sealed, await hashed(write.nav, write.fields))
        elif write.op == "replace":  # a single-valued navigation: edited in place, keeping its id
            current = existing.get(write.nav)
            if current:
                item_id, fields = current[0]
                merged = fields | write.fields
                sealed, match_hash = _seal(cipher, write.nav, merged), await hashed(write.nav, merged)
                await store.update_entity(conn, org_id, row_id, write.nav, item_id, sealed, match_hash)
            else:
                sealed = _seal(cipher, write.nav, write.fields)
                match_hash = await hashed(write.nav, write.fields)
                await store.insert_entity(conn, org_id, row_id, write.nav, sealed, match_hash)
        elif write.op == "update":
            found = dict(existing.get(write.nav, []))
            if write.item_id not in found:
                raise NestedRefused(f"({write.nav}) No item with __id {write.item_id}")
            assert write.item_id is not None
            merged = found[write.item_id] | write.fields
            sealed, match_hash = _seal(cipher, write.nav, merged), await hashed(write.nav, merged)
            await store.update_entity(conn, org_id, row_id, write.nav, write.item_id, sealed, match_hash)
        else:
            if write.item_id is None and write.nav in SINGLE:
                for item_id, _ in existing.get(write.nav, []) or await _items(conn, org_id, row_id, write.nav):
                    await store.delete_entity(conn, org_id, row_id, write.nav, item_id)
                continue
            assert write.item_id is not None
            if not await store.delete_entity(conn, org_id, row_id, write.nav, write.item_id):
                raise NestedRefused(f"({write.nav}) No item with __id {write.item_id}")
    return warnings


async def _items(conn: Conn, org_id: int, row_id: int, nav: str) -> list[tuple[int, dict[str, Any]]]:
    return [(row["item_id"], {}) for row in await store.entities(conn, org_id, row_id) if row["nav"] == nav]


async def page(
    conn: Queryable, org_id: int, *, offset: int, limit: int | None, cipher: DataCipher
) -> tuple[list[tuple[Customer, int]], int]:
    """LoanPro's offset paging, oldest first: (customer, LoanPro id) and the total."""
    records, total = await store.page(conn, org_id, offset=offset, limit=limit)
    return [(customers.customer_from_record(r, cipher), r["loanpro_id"]) for r in records], total


async def soft_delete(conn: Conn, org_id: int, loanpro_id: int) -> Literal["deleted", "missing", "linked"]:
    """LoanPro's DELETE: refused while the customer is on an account."""
    outcome = await store.soft_delete(conn, org_id, loanpro_id)
    assert outcome in ("deleted", "missing", "linked")
    return outcome  # type: ignore[return-value]


async def search(
    conn: Queryable, org_id: int, words: list[str], *, offset: int, limit: int, cipher: DataCipher
) -> tuple[list[tuple[Customer, int]], int]:
    """The Canopy search's matching (every word at the start of a name), paged by offset."""
    records, total = await store.search(conn, org_id, words, offset=offset, limit=limit)
    return [(customers.customer_from_record(r, cipher), r["loanpro_id"]) for r in records], total
