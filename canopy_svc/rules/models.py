"""The wire types: one msgspec Struct per request and response body.

They validate (with the annotations from fields.py), they encode, and they are the source of the
OpenAPI document, so what is documented is what is enforced.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

from canopy_svc.rules.fields import (
    CountryCode,
    CustomerAccountRole,
    CustomerId,
    Ein,
    Email,
    LithicCardType,
    LithicCreateState,
    PhoneNumber,
    RequiredText,
    ResourceId,
    SpendLimit,
    Ssn,
    Text255,
    Uuid,
)


class LithicCardConfig(msgspec.Struct, kw_only=True):
    memo: Text255 | None = None
    type: LithicCardType | None = None
    state: LithicCreateState | None = None
    card_program_token: Uuid | None = None


class IssuerProcessorConfig(msgspec.Struct, kw_only=True):
    spend_limit: SpendLimit | None = None
    lithic: LithicCardConfig | None = None


class AccountAssignment(msgspec.Struct, kw_only=True):
    """One item of `assign_to_accounts`: a link from the customer to a credit account."""

    account_id: ResourceId
    customer_account_role: CustomerAccountRole = "PRIMARY"
    customer_account_external_id: Text255 | None = None
    customer_account_issuer_processor_config: IssuerProcessorConfig | None = None


AssignToAccounts = Annotated[list[AccountAssignment], msgspec.Meta(max_length=100)]


class BusinessDetails(msgspec.Struct, kw_only=True):
    doing_business_as: RequiredText
    business_ein: Ein
    business_legal_name: Text255 | None = None


class CustomerCreate(msgspec.Struct, kw_only=True):
    """POST /customers."""

    name_first: RequiredText
    name_last: RequiredText
    phone_number: PhoneNumber
    address_line_one: RequiredText
    address_city: RequiredText
    address_state: RequiredText
    address_zip: RequiredText
    email: Email
    date_of_birth: datetime.date
    customer_id: CustomerId | None = None
    name_prefix: Text255 | None = None
    name_middle: Text255 | None = None
    name_suffix: Text255 | None = None
    address_line_two: Text255 | None = None
    address_country_code: CountryCode | None = None
    ssn: Ssn | None = None
    international_customer_id: Text255 | None = None
    business_details: BusinessDetails | None = None
    assign_to_accounts: AssignToAccounts | None = None
    ignore_warnings: bool = msgspec.field(default=False, name="__ignoreWarnings")


class CustomerUpdate(msgspec.Struct, kw_only=True):
    """PUT/PATCH /customers/{customer_id}: only the fields given change; null clears optional ones."""

    name_first: RequiredText | UnsetType = UNSET
    name_last: RequiredText | UnsetType = UNSET
    phone_number: PhoneNumber | UnsetType = UNSET
    address_line_one: RequiredText | UnsetType = UNSET
    address_city: RequiredText | UnsetType = UNSET
    address_state: RequiredText | UnsetType = UNSET
    address_zip: RequiredText | UnsetType = UNSET
    email: Email | UnsetType = UNSET
    date_of_birth: datetime.date | UnsetType = UNSET
    name_prefix: Text255 | UnsetType | None = UNSET
    name_middle: Text255 | UnsetType | None = UNSET
    name_suffix: Text255 | UnsetType | None = UNSET
    address_line_two: Text255 | UnsetType | None = UNSET
    address_country_code: CountryCode | UnsetType | None = UNSET
    ssn: Ssn | UnsetType | None = UNSET
    international_customer_id: Text255 | UnsetType | None = UNSET
    business_details: BusinessDetails | UnsetType | None = UNSET
    assign_to_accounts: AssignToAccounts | UnsetType | None = UNSET
    ignore_warnings: bool = msgspec.field(default=False, name="__ignoreWarnings")


# The customer's own fields, in answer order; the names are also the table's columns.
CUSTOMER_FIELDS: tuple[str, ...] = (
    "customer_id", "name_prefix", "name_first", "name_middle", "name_last", "name_suffix",
    "phone_number", "address_line_one", "address_line_two", "address_city", "address_state",
    "address_zip", "address_country_code", "ssn", "international_customer_id", "email",
    "date_of_birth", "business_details",
)  # fmt: skip


class BusinessDetailsOut(msgspec.Struct):
    doing_business_as: str
    business_ein: str
    business_legal_name: str | None = None


class DuplicateWarning(msgspec.Struct):
    code: str
    field: str
    customer_id: str
    message: str


class Customer(msgspec.Struct, omit_defaults=True):
    """A customer as answered: every field, unset optional ones as null."""

    customer_id: str
    name_prefix: str | None
    name_first: str
    name_middle: str | None
    name_last: str
    name_suffix: str | None
    phone_number: str
    address_line_one: str
    address_line_two: str | None
    address_city: str
    address_state: str
    address_zip: str
    address_country_code: str | None
    ssn: str | None
    international_customer_id: str | None
    email: str
    date_of_birth: datetime.date
    business_details: BusinessDetailsOut | None
    created_at: datetime.datetime
    updated_at: datetime.datetime
    # Only on create/update answers, and only when the duplicate check found something.
    warnings: list[DuplicateWarning] | UnsetType = UNSET


class Paging(msgspec.Struct):
    starting_after: str | None
    ending_before: str | None
    has_more: bool


class CustomerList(msgspec.Struct):
    results: list[Customer]
    paging: Paging


class TokenRequest(msgspec.Struct):
    client_id: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    client_secret: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class TokenResponse(msgspec.Struct):
    access_token: str
    expires_in: int
    token_type: str = "Bearer"  # noqa: S105 - a scheme name, not a secret


class Health(msgspec.Struct):
    status: str


JsonObject = dict[str, Any]
