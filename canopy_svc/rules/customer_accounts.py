"""The customer-account links as listed from the customers' side: GET /customers/{customer_id}/accounts
(the accounts one customer is on) and GET /customers/accounts (every link, with its account).

Both page the links. They sit above accounts and links because each answer holds both: an account
answer carries its customers' link fields, a link answer carries its account's fields."""

from __future__ import annotations

from typing import Any

import asyncpg

from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.dbtypes import Queryable
from canopy_svc.rules import accounts, cards, links
from canopy_svc.rules.accounts import NO_FILTER, AccountFilter
from canopy_svc.rules.cursors import CursorCodec
from canopy_svc.rules.customers import customer_from_record, search_words
from canopy_svc.rules.paging import PageRequest, keyset_page
from canopy_svc.store import accounts as account_store
from canopy_svc.store import customers as customer_store
from canopy_svc.wire.errors import BadRequest, NotFound
from canopy_svc.wire.models import AccountCore, AccountList, CustomerAccountLink, CustomerAccountLinkList


def link_search(query: Any) -> list[str]:
    """GET /customers/accounts' search words: from `search_parameters`, as GET /customers takes them, or
    from `search_parameter`, which Canopy's own clients send here. Both at once is 400, as both cursors
    are: a client sending two searches has a bug to hear of, not one to have guessed away."""
    plural, singular = query.get("search_parameters"), query.get("search_parameter")
    if plural and singular:
        raise BadRequest("Send at most one of search_parameters and search_parameter")
    return search_words(plural or singular)


async def list_customer_accounts(
    conn: Queryable,
    org_id: int,
    cursors: CursorCodec,
    page: PageRequest,
    customer_id: str,
    cipher: DataCipher,
    filters: AccountFilter = NO_FILTER,
) -> AccountList:
    """GET /customers/{id}/accounts: the accounts the customer is on, in the order it joined them."""
    customer = await customer_store.fetch(conn, org_id, customer_id)
    if customer is None:
        raise NotFound(f"No customer found with the provided customer_id: {customer_id}")

    async def fetch(limit: int, after: int | None, before: int | None) -> list[asyncpg.Record]:
        return await account_store.page_links(
            conn, org_id, limit=limit, after=after, before=before, customer_row_id=customer["id"], pairs=filters.pairs()
        )

    link_records, paging = await keyset_page(
        cursors, org_id, f"customer-accounts:{customer['id']}", page, fetch, key="link_id"
    )
    records = await accounts.accounts_by_row_id(conn, org_id, link_records)
    return AccountList(
        results=await accounts.load_accounts(conn, [records[link["account_row_id"]] for link in link_records], cipher),
        paging=paging,
    )


async def list_links(
    conn: Queryable,
    org_id: int,
    cursors: CursorCodec,
    page: PageRequest,
    cipher: DataCipher,
    filters: AccountFilter = NO_FILTER,
    search: list[str] | None = None,
) -> CustomerAccountLinkList:
    """GET /customers/accounts: one row per customer-account link, optionally only those of accounts
    the filter admits and matching every word of `search` (link_search). A cursor is a position in
    link id order, valid across filters and searches."""

    async def fetch(limit: int, after: int | None, before: int | None) -> list[asyncpg.Record]:
        return await account_store.page_links(
            conn, org_id, limit=limit, after=after, before=before, pairs=filters.pairs(), search=search
        )

    link_records, paging = await keyset_page(cursors, org_id, "links", page, fetch, key="link_id")
    records = await accounts.accounts_by_row_id(conn, org_id, link_records)
    cards_by_link = await cards.cards_of_links(conn, [link["link_id"] for link in link_records])
    return CustomerAccountLinkList(
        results=[
            customer_from_record(
                link,
                cipher,
                CustomerAccountLink,
                **links.link_fields(link, cards_by_link),
                account=AccountCore(**accounts.account_fields(records[link["account_row_id"]])),
            )
            for link in link_records
        ],
        paging=paging,
    )
