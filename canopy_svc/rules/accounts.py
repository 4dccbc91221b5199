"""Accounts: creating them, and answering them with their customers and cards."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, get_args

import asyncpg
import msgspec
from msgspec import UNSET

from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.dbtypes import Conn, Queryable, Row
from canopy_svc.rules import cards, events, links, products
from canopy_svc.rules.cursors import CursorCodec
from canopy_svc.rules.customers import customer_from_record
from canopy_svc.rules.ids import base62_id
from canopy_svc.rules.paging import PageRequest, keyset_page
from canopy_svc.rules.validation import BodyDecoder, duplicate_problems
from canopy_svc.store import accounts as account_store
from canopy_svc.store import products as product_store
from canopy_svc.wire.errors import InvalidInput, NotFound, detail
from canopy_svc.wire.models import (
    Account,
    AccountCreate,
    AccountCustomer,
    AccountList,
    AccountOverview,
    AccountProduct,
    AccountProductLifecycle,
    AccountProductOverview,
    AccountStatus,
    AccountSummary,
    AccountSummaryIn,
    CycleType,
    ExternalField,
    IssuerProcessorDetails,
    LithicAccountDetails,
    PostPromoOverview,
    PostPromotionalPolicies,
    ProductDurationInformation,
    ProductLifecyclePolicies,
    ProductType,
    PromoOverview,
    PromotionalPolicies,
)

ACCOUNT_DECODER = BodyDecoder(AccountCreate)
_cycle_type_decoder = msgspec.json.Decoder(CycleType)
_external_fields_decoder = msgspec.json.Decoder(list[ExternalField])
_encoder = msgspec.json.Encoder()
# Said where only product_id can name the product (the contract's text), and where either may.
NO_PRODUCT = "No product found with the provided product_id"
NO_PRODUCT_BY_EITHER = "No product found with the provided product_id or external_product_id."
ACCOUNT_STATUSES: tuple[str, ...] = get_args(AccountStatus)
PRODUCT_TYPES: tuple[str, ...] = get_args(ProductType)
FILTERS = {"account_status": ACCOUNT_STATUSES, "product_type": PRODUCT_TYPES}


@dataclass(frozen=True)
class AccountFilter:
    """The account listings' `account_status` and `product_type` filters: the values asked for, or
    None for either not given (every value)."""

    account_status: tuple[str, ...] | None = None
    product_type: tuple[str, ...] | None = None

    @classmethod
    def from_query(cls, query: Any) -> AccountFilter:
        """Each a comma list of the contract's values (`ACTIVE,SUSPENDED`), given once or repeated (the
        union); empty means not given, as an empty cursor does. An unknown value is 422, every
        parameter's in one answer, as a body's problems are."""
        chosen: dict[str, tuple[str, ...] | None] = {}
        problems = []
        for name, allowed in FILTERS.items():
            values = [value for raw in query.getlist(name) if raw for value in raw.split(",")]
            if any(value not in allowed for value in values):
                message = "must be equal to one of the allowed values"
                problems.append(detail(f"/{name}", "enum", {"allowedValues": list(allowed)}, message))
            # In the contract's order, each once: the same filter always makes the same statement.
            chosen[name] = tuple(value for value in allowed if value in values) if values else None
        if problems:
            raise InvalidInput(problems)
        return cls(**chosen)

    def pairs(self) -> list[tuple[str, str]] | None:
        """The (status, type) pairs the filter admits (every value of one not given), or None."""
        if self.account_status is None and self.product_type is None:
            return None
        return [
            (status, kind)
            for status in self.account_status or ACCOUNT_STATUSES
            for kind in self.product_type or PRODUCT_TYPES
        ]


NO_FILTER = AccountFilter()


def parse_account(body: bytes) -> AccountCreate:
    payload = ACCOUNT_DECODER.decode(body)
    problems = duplicate_problems(payload.assign_customers, "customer_id", "/assign_customers")
    if payload.product_id is UNSET and payload.external_product_id is None:
        # Canopy: "Either this, or the external_product_id must be passed".
        problems.insert(
            0, detail("", "required", {"missingProperty": "product_id"}, "must have required property product_id")
        )
    problems += products.effective_year_problems(payload.effective_at)
    if problems:
        raise InvalidInput(problems)
    return payload


def with_product_defaults(
    summary: AccountSummaryIn | None, lifecycle: ProductLifecyclePolicies | None
) -> dict[str, Any]:
    """The account's summary columns: what the body gave, else the product's default_attributes
    (credit limit, late fee, payment reversal fee), else null."""
    given = msgspec.structs.asdict(summary or AccountSummaryIn())
    defaults = lifecycle.default_attributes if lifecycle else None
    if defaults is not None:
        for name, default in (
            ("credit_limit_cents", defaults.default_credit_limit_cents),
            ("late_fee_cents", defaults.default_late_fee_cents),
            ("payment_reversal_fee_cents", defaults.default_payment_reversal_fee_cents),
        ):
            if given[name] is None:
                given[name] = default
    return given


def with_product_cycle(cycle_type: CycleType | None, lifecycle: ProductLifecyclePolicies | None) -> CycleType:
    """The account's cycle settings: what the body gave, else its product's billing cycle and late
    fee grace (Canopy's account cycle_type overrides the product's), else null."""
    own = cycle_type or CycleType()
    billing = lifecycle.billing_cycle_policies if lifecycle else None
    fees = lifecycle.fee_policies if lifecycle else None
    return CycleType(
        first_cycle_interval=own.first_cycle_interval or (billing.first_cycle_interval if billing else None),
        cycle_interval=own.cycle_interval or (billing.cycle_interval if billing else None),
        cycle_due_interval=own.cycle_due_interval or (billing.cycle_due_interval if billing else None),
        late_fee_grace=own.late_fee_grace or (fees.late_fee_grace if fees else None),
    )


def account_product(record: Row) -> AccountProduct:
    """The account's product as Canopy embeds it: its overview, the fees as this account has them,
    and its promotional settings."""
    policies = products.policies_of(record)
    lifecycle: ProductLifecyclePolicies | None = policies["product_lifecycle_policies"]
    promo: PromotionalPolicies = policies["promotional_policies"] or PromotionalPolicies()
    post_promo: PostPromotionalPolicies = policies["post_promotional_policies"] or PostPromotionalPolicies()
    billing = lifecycle.billing_cycle_policies if lifecycle else None
    return AccountProduct(
        product_id=record["product_id"],
        external_product_id=record["external_product_id"],
        product_overview=AccountProductOverview(
            product_name=record["product_name"],
            product_type=record["product_type"],
            product_short_description=record["product_short_description"],
            product_long_description=record["product_long_description"],
            product_color=record["product_color"],
            product_time_zone=billing.product_time_zone if billing else None,
        ),
        product_lifecycle=AccountProductLifecycle(
            late_fee_impl_cents=record["late_fee_cents"],
            payment_reversal_fee_impl_cents=record["payment_reversal_fee_cents"],
            origination_fee_impl_cents=record["origination_fee_cents"],
            monthly_fee_impl_cents=record["monthly_fee_cents"],
            annual_fee_impl_cents=record["annual_fee_cents"],
        ),
        product_duration_information=ProductDurationInformation(
            promo_len=promo.promo_len, promo_purchase_window_len=promo.promo_purchase_window_len
        ),
        promo_overview=PromoOverview(promo_impl_interest_rate_percent=promo.promo_default_interest_rate_percent),
        post_promo_overview=PostPromoOverview(
            post_promo_impl_interest_rate_percent=post_promo.post_promo_default_interest_rate_percent,
            post_promo_len=post_promo.post_promo_len,
        ),
    )


def account_fields(record: Row) -> dict[str, Any]:
    """An account's own fields (AccountCore), without its customers."""
    return {
        "account_id": record["account_id"],
        "product_id": record["product_id"],
        "external_account_id": record["external_account_id"],
        "effective_at": record["effective_at"],
        "created_at": record["created_at"],
        "updated_at": record["updated_at"],
        "account_overview": AccountOverview(
            account_status=record["account_status"], account_substatus=record["account_substatus"]
        ),
        "summary": AccountSummary(**{name: record[name] for name in account_store.SUMMARY_COLUMNS}),
        "account_product": account_product(record),
        # Null on accounts made before cycle_type was kept: all its settings unknown.
        "cycle_type": CycleType() if record["cycle_type"] is None else _cycle_type_decoder.decode(record["cycle_type"]),
        "external_fields": _external_fields_decoder.decode(record["external_fields"]),
        "issuer_processor_details": IssuerProcessorDetails(
            lithic=LithicAccountDetails(account_token=record["lithic_account_token"])
        ),
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
    product_id = payload.product_id if isinstance(payload.product_id, str) else None
    product = await product_store.fetch_by_reference(conn, org_id, product_id, payload.external_product_id)
    if product is None:
        raise NotFound(NO_PRODUCT if payload.external_product_id is None else NO_PRODUCT_BY_EITHER)
    lifecycle: ProductLifecyclePolicies | None = products.policies_of(product)["product_lifecycle_policies"]
    account_row_id = await account_store.insert(
        conn,
        org_id,
        payload.account_id or base62_id(24),
        product["id"],
        external_account_id=payload.external_account_id,
        effective_at=payload.effective_at,
        summary=with_product_defaults(payload.summary, lifecycle),
        cycle_type=_encoder.encode(with_product_cycle(payload.cycle_type, lifecycle)).decode(),
        external_fields=_encoder.encode(payload.external_fields or []).decode(),
    )
    if payload.assign_customers:
        await links.assign_customers(conn, org_id, account_row_id, payload.assign_customers, cipher)
    (record,) = await account_store.fetch_accounts(conn, org_id, [account_row_id])
    (account,) = await load_accounts(conn, [record], cipher)
    await events.record_event(conn, org_id, "account_created", account)
    return account


async def get_account(
    conn: Queryable, org_id: int, account_id: str, cipher: DataCipher, *, external: bool = False
) -> Account:
    """By account_id, or with `external` by external_account_id (GET /accounts/{id}?external=true)."""
    if external:
        record = await account_store.fetch_account_by_external_id(conn, org_id, account_id)
        if record is None:
            raise NotFound(f"No account found with the provided external_account_id: {account_id}")
    else:
        record = await account_store.fetch_account_by_id(conn, org_id, account_id)
        if record is None:
            raise NotFound(f"No account found with the provided account_id: {account_id}")
    (account,) = await load_accounts(conn, [record], cipher)
    return account


async def list_accounts(
    conn: Queryable,
    org_id: int,
    cursors: CursorCodec,
    page: PageRequest,
    cipher: DataCipher,
    filters: AccountFilter = NO_FILTER,
) -> AccountList:
    # A cursor is a position in id order, the same with or without a filter: it stays valid when the
    # filter changes (the next page starts after that account, among what the new filter admits).
    async def fetch(limit: int, after: int | None, before: int | None) -> list[asyncpg.Record]:
        return await account_store.page_accounts(
            conn, org_id, limit=limit, after=after, before=before, pairs=filters.pairs()
        )

    records, paging = await keyset_page(cursors, org_id, "accounts", page, fetch)
    return AccountList(results=await load_accounts(conn, records, cipher), paging=paging)
