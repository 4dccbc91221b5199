"""Accounts: creating them, and answering them with their customers and cards."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import asyncpg

from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.dbtypes import Conn, Queryable, Row
from canopy_svc.rules import cards, events, links
from canopy_svc.rules.cursors import CursorCodec
from canopy_svc.rules.customers import customer_from_record
from canopy_svc.rules.ids import base62_id
from canopy_svc.rules.paging import PageRequest, keyset_page
from canopy_svc.rules.validation import BodyDecoder, duplicate_problems
from canopy_svc.store import accounts as account_store
from canopy_svc.store import products as product_store
from canopy_svc.wire.errors import InvalidInput, NotFound, detail
from canopy_svc.wire.models import (
    EFFECTIVE_YEARS,
    Account,
    AccountCreate,
    AccountCustomer,
    AccountList,
    AccountOverview,
    AccountSummary,
)

ACCOUNT_DECODER = BodyDecoder(AccountCreate)


def parse_account(body: bytes) -> AccountCreate:
    payload = ACCOUNT_DECODER.decode(body)
    problems = duplicate_problems(payload.assign_customers, "customer_id", "/assign_customers")
    first, last = EFFECTIVE_YEARS
    if payload.effective_at is not None and not first <= payload.effective_at.year <= last:
        # Year 1 or 9999 with an offset is outside datetime's range in UTC: stored, it could not be read back.
        problems.append(
            detail(
                "/effective_at",
                "format",
                {"format": "date-time"},
                f"must be a date-time in the years {first} to {last}",
            )
        )
    if problems:
        raise InvalidInput(problems)
    return payload


def account_fields(record: Row) -> dict[str, Any]:
    """An account's own fields (AccountCore), without its customers."""
    return {
        "account_id": record["account_id"],
        "product_id": record["product_id"],
        "external_account_id": record["external_account_id"],
        "effective_at": record["effective_at"],
        "created_at": record["created_at"],
        "updated_at": record["updated_at"],
        "account_overview": AccountOverview(account_status=record["account_status"]),
        "summary": AccountSummary(credit_limit_cents=record["credit_limit_cents"]),
    }


async def load_accounts(conn: Queryable, account_records: Sequence[Row], cipher: DataCipher) -> list[Account]:
    """Accounts with their customers and cards: three queries however many accounts."""
    account_ids = [record["id"] for record in account_records]
    link_records = await account_store.links_of_accounts(conn, account_ids)
    cards_by_link = await cards.cards_of_links(conn, [link["link_id"] for link in link_records])
    customers_by_account: dict[int, list[AccountCustomer]] = defaultdict(list)
    for link in link_records:
        customers_by_account[link["account_row_id"]].append(
            customer_from_record(link, cipher, AccountCustomer, **links.link_fields(link, cards_by_link))
        )
    return [
        Account(**account_fields(record), customers=customers_by_account.get(record["id"], []))
        for record in account_records
    ]


async def accounts_by_row_id(conn: Queryable, org_id: int, link_records: Sequence[Row]) -> dict[int, asyncpg.Record]:
    """The accounts of these links, by their row id."""
    row_ids = sorted({link["account_row_id"] for link in link_records})
    return {record["id"]: record for record in await account_store.fetch_accounts(conn, org_id, row_ids)}


async def create_account(conn: Conn, org_id: int, payload: AccountCreate, cipher: DataCipher) -> Account:
    product = await product_store.fetch(conn, org_id, payload.product_id)
    if product is None:
        raise NotFound("No product found with the provided product_id")
    account_row_id = await account_store.insert(
        conn,
        org_id,
        payload.account_id or base62_id(24),
        product["id"],
        payload.external_account_id,
        payload.summary.credit_limit_cents if payload.summary else None,
        payload.effective_at,
    )
    if payload.assign_customers:
        await links.assign_customers(conn, org_id, account_row_id, payload.assign_customers)
    (record,) = await account_store.fetch_accounts(conn, org_id, [account_row_id])
    (account,) = await load_accounts(conn, [record], cipher)
    await events.record_event(conn, org_id, "account_created", account)
    return account


async def get_account(conn: Queryable, org_id: int, account_id: str, cipher: DataCipher) -> Account:
    record = await account_store.fetch_account_by_id(conn, org_id, account_id)
    if record is None:
        raise NotFound(f"No account found with the provided account_id: {account_id}")
    (account,) = await load_accounts(conn, [record], cipher)
    return account


async def list_accounts(
    conn: Queryable, org_id: int, cursors: CursorCodec, page: PageRequest, cipher: DataCipher
) -> AccountList:
    async def fetch(limit: int, after: int | None, before: int | None) -> list[asyncpg.Record]:
        return await account_store.page_accounts(conn, org_id, limit=limit, after=after, before=before)

    records, paging = await keyset_page(cursors, org_id, "accounts", page, fetch)
    return AccountList(results=await load_accounts(conn, records, cipher), paging=paging)
