"""The wire types: one msgspec Struct per request and response body.

They validate (with the annotations from fields.py), they encode, and they are the source of the
OpenAPI document, so what is documented is what is enforced.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import email_validator
import msgspec
import pycountry
from msgspec import UNSET, UnsetType

from canopy_svc.wire.fields import (
    BIGINT_MAX,
    COUNTRY_CODES_ALPHA3,
    CUSTOMER_ID_PATTERN,
    EARLIEST_BIRTH_DATE,
    NATIONAL_LENGTHS,
    NO_NUL,
    NON_BLANK,
    POSTAL_CODE,
    US_RULES_COUNTRIES,
    US_STATE_CODES,
    US_ZIP,
    Cents,
    CountryCode,
    CountryCodeAlpha3,
    CustomerAccountRole,
    CustomerId,
    Ein,
    Email,
    ExpMonth,
    ExpYear,
    IntegerId,
    LithicCardType,
    LithicCreateState,
    LithicProductId,
    PhoneNumber,
    RequiredText,
    ResourceId,
    ShippingMethod,
    SpendLimit,
    SpendLimitDuration,
    Ssn,
    Text255,
    Uuid,
)
from canopy_svc.wire.patterns import END, any_case, rfc3339_datetime

# --- what validation.py refuses beyond the fields' types, said for the OpenAPI document ------------
# msgspec does not enforce extra_json_schema; validation.py's meaning checks do, and
# tests/test_schemathesis.py holds the two to each other.


_SPECIAL_USE = "|".join(any_case(name) for name in sorted(email_validator.SPECIAL_USE_DOMAIN_NAMES))
EmailAddress = Annotated[
    Email,
    msgspec.Meta(
        description="A mailbox (not at a special-use domain such as .test or .localhost)",
        extra_json_schema={"format": "email", "not": {"pattern": f"[@.](?:{_SPECIAL_USE}){END}"}},
    ),
]


def _e164_pattern() -> str:
    """validation.is_possible_e164 as a regex: each country code with its national number lengths."""
    codes_by_lengths: dict[frozenset[int], list[str]] = {}
    for code, lengths in NATIONAL_LENGTHS.items():
        codes_by_lengths.setdefault(lengths, []).append(code)
    groups = []
    for lengths, codes in sorted(codes_by_lengths.items(), key=lambda group: sorted(group[1])):
        runs: list[list[int]] = []
        for n in sorted(lengths):
            if runs and runs[-1][-1] == n - 1:
                runs[-1].append(n)
            else:
                runs.append([n])
        counts = "|".join(f"[0-9]{{{r[0]}}}" if len(r) == 1 else f"[0-9]{{{r[0]},{r[-1]}}}" for r in runs)
        groups.append(f"(?:{'|'.join(sorted(codes))})(?:{counts})")
    return rf"^\+(?:{'|'.join(groups)}){END}"


PhoneE164 = Annotated[PhoneNumber, msgspec.Meta(extra_json_schema={"pattern": _e164_pattern()})]
SsnNumber = Annotated[
    Ssn,
    msgspec.Meta(
        description="123456789 or 123-45-6789, no all-zero group",
        extra_json_schema={"not": {"pattern": f"^000|^[0-9]{{3}}-?00|0000{END}"}},
    ),
]
# openapi.py turns the range into a pattern of the day the document is built.
BirthDate = Annotated[
    datetime.date,
    msgspec.Meta(
        description=f"From {EARLIEST_BIRTH_DATE} up to today (UTC)",
        extra_json_schema={"x-date-range": [EARLIEST_BIRTH_DATE.isoformat(), "today"]},
    ),
]
# accounts.py refuses other years (years 0001 and 9999 could leave datetime's range in UTC: a 500).
EFFECTIVE_YEARS = (1900, 9998)
EffectiveAt = Annotated[
    datetime.datetime,
    msgspec.Meta(
        description=f"RFC 3339, years {EFFECTIVE_YEARS[0]}-{EFFECTIVE_YEARS[1]}; without an offset it is UTC",
        extra_json_schema={"pattern": rfc3339_datetime(*EFFECTIVE_YEARS)},
    ),
]
# The zip and state rules follow the country; absent or null is the US.
_US_COUNTRY = {"enum": [None, *sorted(US_RULES_COUNTRIES)]}
_US_ADDRESS = {
    "properties": {
        "address_zip": {"pattern": US_ZIP.pattern.removesuffix("$") + END},
        "address_state": {"enum": sorted(US_STATE_CODES)},
    }
}
_OTHER_ADDRESS = {"properties": {"address_zip": {"pattern": POSTAL_CODE.pattern.removesuffix("$") + END}}}
ADDRESS_RULES: dict[str, Any] = {
    "if": {"properties": {"address_country_code": _US_COUNTRY}},
    "then": _US_ADDRESS,
    "else": _OTHER_ADDRESS,
}
# An update is checked against the stored customer merged with it (customers.update), so without the
# country in the body the stored one decides, and a new country is checked against the stored zip and
# state: no schema sees those. The document says what holds for every customer (a US ZIP is a postal
# code too); tests/schemathesis_hooks.py says the rest.
UPDATE_ADDRESS_RULES: dict[str, Any] = {
    "if": {"required": ["address_country_code"], "properties": {"address_country_code": _US_COUNTRY}},
    "then": _US_ADDRESS,
    "else": _OTHER_ADDRESS,
}


if TYPE_CHECKING:
    # What the code reads: the Structs' __post_init__ (_ids_as_text) makes every integer a string.
    IdRef = ResourceId
else:
    IdRef = ResourceId | IntegerId  # what the wire (and the OpenAPI document, as oneOf) accepts


def _ids_as_text(struct: msgspec.Struct, names: tuple[str, ...]) -> None:
    """An integer id is stored and answered as its decimal string, so 2300 and "2300" are one id."""
    for name in names:
        value = getattr(struct, name)
        if isinstance(value, int):
            setattr(struct, name, str(value))


# Lithic prints first_name and last_name on a PHYSICAL card: 25 characters at most together (each
# non-blank, so 24 at most alone); rules/card_requests.py checks the sum, which no JSON Schema can.
ShippingName = Annotated[str, msgspec.Meta(min_length=1, max_length=24, pattern=NON_BLANK)]
_US_ALPHA3 = sorted(
    c.alpha_3 for c in pycountry.countries if c.alpha_2 in US_RULES_COUNTRIES and c.alpha_3 in COUNTRY_CODES_ALPHA3
)
LITHIC_US_POSTAL_CODE = r"^[0-9]{5}(-[0-9]{4})?$"
LITHIC_TWO_LETTER_STATE = r"^[A-Z]{2}$"


class ShippingAddress(msgspec.Struct, kw_only=True):
    """Lithic's ShippingAddress (postCards): where a PHYSICAL card is sent and the name printed on it.

    country is ISO 3166-1 alpha-3; a US address has a USPS state and a ZIP (12345 or 12345-1234), a
    Canadian one a two-letter province. email and phone_number are required with shipping_method
    EXPEDITED (LithicCardConfig says so)."""

    json_schema_extra: ClassVar[dict[str, Any]] = {
        "allOf": [
            {
                "if": {"properties": {"country": {"enum": _US_ALPHA3}}},
                "then": {
                    "properties": {
                        "state": {"enum": sorted(US_STATE_CODES)},
                        "postal_code": {"pattern": LITHIC_US_POSTAL_CODE},
                    }
                },
            },
            {
                "if": {"properties": {"country": {"const": "CAN"}}},
                "then": {"properties": {"state": {"pattern": LITHIC_TWO_LETTER_STATE}}},
            },
        ]
    }

    first_name: ShippingName
    last_name: ShippingName
    address1: RequiredText
    address2: Text255 | None = None
    city: RequiredText
    state: Annotated[str, msgspec.Meta(min_length=1, max_length=24, pattern=NON_BLANK)]
    postal_code: Annotated[str, msgspec.Meta(pattern=POSTAL_CODE.pattern)]
    country: CountryCodeAlpha3
    email: EmailAddress | None = None
    phone_number: PhoneE164 | None = None


_PHYSICAL_ONLY = ("shipping_address", "product_id", "shipping_method")


class LithicCardConfig(msgspec.Struct, kw_only=True):
    """How a card is asked of Lithic (postCards). type defaults to VIRTUAL; UNLOCKED is sent as VIRTUAL.

    shipping_address, product_id and shipping_method are for PHYSICAL cards only; a PHYSICAL card with no
    shipping_address is sent to its customer's address. exp_month and exp_year go together (neither: Lithic
    picks the expiry)."""

    json_schema_extra: ClassVar[dict[str, Any]] = {
        "allOf": [
            # exp_month and exp_year: both or neither (null is neither)
            *(
                {
                    "if": {"required": [given], "properties": {given: {"type": "string"}}},
                    "then": {"required": [other], "properties": {other: {"type": "string"}}},
                }
                for given, other in (("exp_month", "exp_year"), ("exp_year", "exp_month"))
            ),
            {
                # a type given (not null) and not PHYSICAL; with none, the link's type decides
                "if": {"required": ["type"], "properties": {"type": {"not": {"enum": ["PHYSICAL", None]}}}},
                "then": {"not": {"anyOf": [{"required": [name]} for name in _PHYSICAL_ONLY]}},
            },
            {
                "if": {
                    "required": ["shipping_method", "shipping_address"],
                    "properties": {"shipping_method": {"const": "EXPEDITED"}},
                },
                "then": {
                    "properties": {
                        "shipping_address": {
                            "required": ["email", "phone_number"],
                            "properties": {"email": {"type": "string"}, "phone_number": {"type": "string"}},
                        }
                    }
                },
            },
        ],
    }

    memo: Text255 | None = None
    type: (
        Annotated[
            LithicCardType,
            msgspec.Meta(description="Default VIRTUAL. UNLOCKED, deprecated at Lithic, is sent to Lithic as VIRTUAL."),
        ]
        | None
    ) = None
    state: LithicCreateState | None = None
    card_program_token: Uuid | None = None
    spend_limit_duration: SpendLimitDuration | None = None
    exp_month: ExpMonth | None = None
    exp_year: ExpYear | None = None
    product_id: LithicProductId | None = None
    shipping_method: ShippingMethod | None = None
    shipping_address: ShippingAddress | None = None


_EXPIRY_TOGETHER = LithicCardConfig.json_schema_extra["allOf"][:2]
_EXPEDITED_CONTACTS = LithicCardConfig.json_schema_extra["allOf"][3]


class IssuerProcessorConfig(msgspec.Struct, kw_only=True):
    spend_limit: SpendLimit | None = None
    lithic: LithicCardConfig | None = None


class AccountAssignment(msgspec.Struct, kw_only=True):
    """One item of `assign_to_accounts`: a link from the customer to a credit account."""

    account_id: IdRef
    # PRIMARY on a new link; left as it is on an existing one when absent.
    customer_account_role: CustomerAccountRole | None = None
    customer_account_external_id: IdRef | None = None
    customer_account_issuer_processor_config: IssuerProcessorConfig | None = None

    def __post_init__(self) -> None:
        _ids_as_text(self, ("account_id", "customer_account_external_id"))


# No account twice (validation.duplicate_problems): uniqueItems is as near as JSON Schema can say it.
AssignToAccounts = Annotated[
    list[AccountAssignment],
    msgspec.Meta(
        max_length=100, extra_json_schema={"uniqueItems": True}, description="At most 100 items, no account_id twice"
    ),
]


class BusinessDetails(msgspec.Struct, kw_only=True):
    doing_business_as: RequiredText
    business_ein: Ein
    business_legal_name: Text255 | None = None
    business_type: BusinessType | None = None
    business_classification_id: ResourceId | None = None
    website: Website | None = None
    controller: BusinessController | None = None


# `ignore_warnings` is an alias of `__ignoreWarnings` (clients that snake-case their bodies cannot send
# the latter); sent both ways, the two must agree (validation.decode_customer refuses them otherwise).
IgnoreWarningsAlias = Annotated[bool, msgspec.Meta(description="Alias of __ignoreWarnings; if both are sent, equal")]
_ALIASES_AGREE: dict[str, Any] = {
    "anyOf": [
        {"not": {"required": ["__ignoreWarnings", "ignore_warnings"]}},
        {"properties": {"__ignoreWarnings": {"const": True}, "ignore_warnings": {"const": True}}},
        {"properties": {"__ignoreWarnings": {"const": False}, "ignore_warnings": {"const": False}}},
    ]
}


def _fold_alias(struct: CustomerCreate | CustomerUpdate) -> None:
    if isinstance(struct.ignore_warnings_alias, bool):
        struct.ignore_warnings = struct.ignore_warnings_alias


class CustomerCreate(msgspec.Struct, kw_only=True):
    """POST /customers."""

    json_schema_extra: ClassVar[dict[str, Any]] = ADDRESS_RULES | _ALIASES_AGREE

    name_first: RequiredText
    name_last: RequiredText
    phone_number: PhoneE164
    address_line_one: RequiredText
    address_city: RequiredText
    address_state: RequiredText
    address_zip: RequiredText
    email: EmailAddress
    date_of_birth: BirthDate
    customer_id: CustomerId | None = None
    name_prefix: Text255 | None = None
    name_middle: Text255 | None = None
    name_suffix: Text255 | None = None
    address_line_two: Text255 | None = None
    address_country_code: CountryCode | None = None
    ssn: SsnNumber | None = None
    international_customer_id: Text255 | None = None
    business_details: BusinessDetails | None = None
    # Absent: `business` when business_details is given, else `person` (models.default_customer_type).
    customer_type: CustomerTypeIn | UnsetType = UNSET
    verification_status: VerificationStatus = "unverified"
    title: Text255 | None = None
    passport: Passport | None = None
    customer_parent_id: IdRef | None = None
    assign_to_accounts: AssignToAccounts | None = None
    ignore_warnings: bool = msgspec.field(default=False, name="__ignoreWarnings")
    ignore_warnings_alias: IgnoreWarningsAlias | UnsetType = msgspec.field(default=UNSET, name="ignore_warnings")

    def __post_init__(self) -> None:
        _fold_alias(self)
        _ids_as_text(self, ("customer_parent_id",))
        if self.customer_type is UNSET:
            self.customer_type = "business" if self.business_details is not None else "person"


class CustomerUpdate(msgspec.Struct, kw_only=True):
    """PUT/PATCH /customers/{customer_id}: only the fields given change; null clears optional ones."""

    json_schema_extra: ClassVar[dict[str, Any]] = UPDATE_ADDRESS_RULES | _ALIASES_AGREE

    name_first: RequiredText | UnsetType = UNSET
    name_last: RequiredText | UnsetType = UNSET
    phone_number: PhoneE164 | UnsetType = UNSET
    address_line_one: RequiredText | UnsetType = UNSET
    address_city: RequiredText | UnsetType = UNSET
    address_state: RequiredText | UnsetType = UNSET
    address_zip: RequiredText | UnsetType = UNSET
    email: EmailAddress | UnsetType = UNSET
    date_of_birth: BirthDate | UnsetType = UNSET
    name_prefix: Text255 | UnsetType | None = UNSET
    name_middle: Text255 | UnsetType | None = UNSET
    name_suffix: Text255 | UnsetType | None = UNSET
    address_line_two: Text255 | UnsetType | None = UNSET
    address_country_code: CountryCode | UnsetType | None = UNSET
    ssn: SsnNumber | UnsetType | None = UNSET
    international_customer_id: Text255 | UnsetType | None = UNSET
    business_details: BusinessDetails | UnsetType | None = UNSET
    # An update never infers the type: giving business_details leaves customer_type as it is.
    customer_type: CustomerType | UnsetType = UNSET
    verification_status: VerificationStatus | UnsetType = UNSET
    title: Text255 | UnsetType | None = UNSET
    passport: Passport | UnsetType | None = UNSET
    customer_parent_id: IdRef | UnsetType | None = UNSET
    assign_to_accounts: AssignToAccounts | UnsetType | None = UNSET
    ignore_warnings: bool = msgspec.field(default=False, name="__ignoreWarnings")
    ignore_warnings_alias: IgnoreWarningsAlias | UnsetType = msgspec.field(default=UNSET, name="ignore_warnings")

    def __post_init__(self) -> None:
        _fold_alias(self)
        _ids_as_text(self, ("customer_parent_id",))


class BusinessDetailsOut(msgspec.Struct):
    doing_business_as: str
    business_ein: str
    business_legal_name: str | None = None
    business_type: str | None = None
    business_classification_id: str | None = None
    website: str | None = None
    controller: BusinessControllerOut | None = None


# --- issue 11's customer fields: passport, and the business's controller ---------------------------

CustomerType = Literal["person", "business"]
CustomerTypeIn = Annotated[
    CustomerType, msgspec.Meta(description="Default: business when business_details is given, else person")
]
# Canopy documents the field (default `unverified`) but not its values; its clients send `verified`. Its
# business customers (controller, beneficial owners, business_classification_id) follow Dwolla's, whose
# statuses are retry, document and suspended beside these: taken, so no such client is refused.
VerificationStatus = Literal["unverified", "pending", "retry", "document", "verified", "failed", "suspended"]
# Printable ASCII, not blank: what a passport's machine-readable zone can hold, with room for spacing.
PassportNumber = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[\x20-\x7e]*[\x21-\x7e][\x20-\x7e]*" + END,
        description="1-64 printable ASCII characters, not blank",
    ),
]
# Free text: Canopy types it as a string (its clients send `llc`; Dwolla's values are soleProprietorship,
# corporation, llc, partnership), so no list of ours would refuse a value Canopy takes.
BusinessType = Annotated[RequiredText, msgspec.Meta(description="e.g. llc, corporation, partnership")]
# A URL or a bare host (`www.example.com`, as forms take it): printable ASCII without spaces.
Website = Annotated[
    str,
    msgspec.Meta(
        min_length=1, max_length=2048, pattern=r"^[\x21-\x7e]+" + END, description="A URL, printable ASCII, no spaces"
    ),
]


class Passport(msgspec.Struct, kw_only=True):
    number: PassportNumber  # kept only encrypted (store/passport.py)
    country: CountryCode


class PassportOut(msgspec.Struct):
    number: str
    country: str


class BusinessController(msgspec.Struct, kw_only=True):
    """The person who controls the business (Canopy's `controller`: a person's name and address fields).
    Sent whole, so its own country decides its zip and state rules, on an update too."""

    json_schema_extra: ClassVar[dict[str, Any]] = ADDRESS_RULES

    name_prefix: Text255 | None = None
    name_first: RequiredText
    name_middle: Text255 | None = None
    name_last: RequiredText
    name_suffix: Text255 | None = None
    title: Text255 | None = None
    phone_number: PhoneE164 | None = None
    address_line_one: RequiredText
    address_line_two: Text255 | None = None
    address_city: RequiredText
    address_state: RequiredText
    address_zip: RequiredText
    address_country_code: CountryCode | None = None
    ssn: SsnNumber | None = None  # kept only encrypted, like the customer's
    passport: Passport | None = None


class BusinessControllerOut(msgspec.Struct):
    name_prefix: str | None
    name_first: str
    name_middle: str | None
    name_last: str
    name_suffix: str | None
    title: str | None
    phone_number: str | None
    address_line_one: str
    address_line_two: str | None
    address_city: str
    address_state: str
    address_zip: str
    address_country_code: str | None
    ssn: str | None
    passport: PassportOut | None


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
    customer_type: CustomerType
    verification_status: VerificationStatus
    title: str | None
    passport: PassportOut | None
    customer_parent_id: str | None
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


# --- products, accounts, links and cards ----------------------------------------------------------

ProductType = Literal[
    "REVOLVING", "INSTALLMENT", "MIXED_RATE_INSTALLMENT", "DEFERRED_INSTALLMENT",
    "FIXED_RATE_INSTALLMENT", "INVENTORY_FINANCING", "LOGISTICS_FINANCING",
]  # fmt: skip
AccountStatus = Literal["ACTIVE", "SUSPENDED", "CLOSED"]
CardStatus = Literal["PENDING", "ISSUED", "FAILED"]
# Lithic's card states: a PHYSICAL card starts PENDING_FULFILLMENT, then PENDING_ACTIVATION.
CardState = Literal["OPEN", "PAUSED", "CLOSED", "PENDING_FULFILLMENT", "PENDING_ACTIVATION"]
CardUpdateState = Literal["OPEN", "PAUSED", "CLOSED"]
# A card's Lithic token, as a body names it (Lithic's are uuids; the simulator's too).
CardToken = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


# Canopy's product colour: "#0000FF" or "#00F" (its schema's pattern, anchored).
ProductColor = Annotated[str, msgspec.Meta(pattern=r"^#[0-9A-Fa-f]{3}(?:[0-9A-Fa-f]{3})?" + END)]


class ProductOverview(msgspec.Struct, kw_only=True):
    product_name: RequiredText
    product_type: ProductType
    product_short_description: Text255 | None = None
    product_long_description: Annotated[str, msgspec.Meta(max_length=4096)] | None = None
    product_color: ProductColor | None = None


# --- a product's policies, as Canopy's CreateProduct schema has them ------------------------------
# Stored as JSONB encoded from these Structs (store/products.py): what is kept is what was validated.
# Unknown properties are ignored, as everywhere in this API (CONTRACT.md section 1), so they are not kept.

_UNITS = "(?:day|week|month|year)s?"
# Canopy writes an interval as a count and a unit: "1 month", "25 days" (its pattern, ^\d{1,3}\s(...)s?$,
# with one space and ASCII digits: \s and \d read more in Python than in Canopy's AJV).
Interval = Annotated[
    str, msgspec.Meta(pattern=rf"^[0-9]{{1,3}} {_UNITS}" + END, description='A count and a unit, e.g. "25 days"')
]
# A cycle lasts at least one unit.
CycleInterval = Annotated[
    str, msgspec.Meta(pattern=rf"^(?!0+ )[0-9]{{1,3}} {_UNITS}" + END, description='e.g. "1 month", "7 days"')
]
# The due interval has a sign: "-5 days" is five days before the next cycle's cut.
SignedInterval = Annotated[
    str,
    msgspec.Meta(pattern=rf"^-?[0-9]{{1,3}} {_UNITS}" + END, description='e.g. "25 days", or "-5 days" before the cut'),
]
# hh:mm:ss with an optional offset, Canopy's pattern for close_of_business_time and interest_calc_time.
TimeOfDay = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:[-+](?:[01][0-9]|2[0-3]):[0-5][0-9])?" + END,
        description='e.g. "17:00:00-05:00"',
    ),
]
# An Olson name's shape (America/New_York, Etc/GMT+5, UTC). Its shape only: the zones a server knows
# depend on its tzdata, and the document must say the same rule on every machine.
TimeZoneName = Annotated[
    str,
    msgspec.Meta(
        max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+){0,2}" + END, description="Olson name"
    ),
]
Count = Annotated[int, msgspec.Meta(ge=0, le=BIGINT_MAX, description="A number of billing cycles")]
LateFeeCount = Annotated[int, msgspec.Meta(ge=1, le=BIGINT_MAX)]
# Percentages are numbers: Canopy's 6.2 means 6.2%. A rate may pass 100%, so the upper bound is only
# there to make a number no ledger means (1e39) a 422, not a stored policy: 10,000% is past any APR a
# lender charges (payday loans are quoted near 700%).
Percent = Annotated[float, msgspec.Meta(ge=0, le=10_000)]
PromoMinPayType = Literal["AM", "NONE", "PERCENT_INTEREST", "PERCENT_PRINCIPAL"]


class BillingCyclePolicies(msgspec.Struct, kw_only=True):
    cycle_interval: CycleInterval
    cycle_due_interval: SignedInterval | None = None
    first_cycle_interval: Interval | None = None
    close_of_business_time: TimeOfDay | None = None
    product_time_zone: TimeZoneName | None = None


class DefaultAttributes(msgspec.Struct, kw_only=True):
    """What an account on the product takes when its own summary does not say (accounts.create_account)."""

    default_credit_limit_cents: Cents
    default_late_fee_cents: Cents | None = None
    default_payment_reversal_fee_cents: Cents | None = None


class SurchargeTier(msgspec.Struct, kw_only=True):
    percent_surcharge: Percent
    surcharge_start_inclusive_cents: Cents
    surcharge_end_exclusive_cents: Cents | None = None


class FeePolicies(msgspec.Struct, kw_only=True):
    late_fee_grace: Interval | None = None
    surcharge_fee_interval: Interval | None = None
    default_surcharge_fee_structure: Annotated[list[SurchargeTier], msgspec.Meta(max_length=100)] | None = None


class PaymentDuePolicies(msgspec.Struct, kw_only=True):
    delinquent_on_n_consecutive_late_fees: LateFeeCount | None = None
    charge_off_on_n_consecutive_late_fees: LateFeeCount | None = None


class InterestPolicies(msgspec.Struct, kw_only=True):
    interest_calc_time: TimeOfDay | None = None


class ProductLifecyclePolicies(msgspec.Struct, kw_only=True):
    billing_cycle_policies: BillingCyclePolicies | None = None
    default_attributes: DefaultAttributes | None = None
    fee_policies: FeePolicies | None = None
    interest_policies: InterestPolicies | None = None
    payment_due_policies: PaymentDuePolicies | None = None


class PromotionalPolicies(msgspec.Struct, kw_only=True):
    promo_len: Count | None = None
    promo_min_pay_type: PromoMinPayType | None = None
    promo_purchase_window_len: Count | None = None
    promo_interest_deferred: bool | None = None
    promo_default_interest_rate_percent: Percent | None = None
    promo_min_pay_percent: Percent | None = None
    promo_apr_range_inclusive_lower: Percent | None = None
    promo_apr_range_inclusive_upper: Percent | None = None


class PostPromotionalPolicies(msgspec.Struct, kw_only=True):
    post_promo_len: Count | None = None
    post_promo_am_len_range_inclusive_lower: Count | None = None
    post_promo_am_len_range_inclusive_upper: Count | None = None
    post_promo_min_pay_type: PromoMinPayType | None = None
    post_promo_default_interest_rate_percent: Percent | None = None
    post_promo_apr_range_inclusive_lower: Percent | None = None
    post_promo_apr_range_inclusive_upper: Percent | None = None


class ProductCreate(msgspec.Struct, kw_only=True):
    """POST /products. Canopy requires the three policy objects; this service keeps them optional
    (its products predate them), and answers an absent one as null."""

    product_overview: ProductOverview
    product_id: IdRef | None = None
    # Unique in the organization; POST /accounts may name the product by it.
    external_product_id: ResourceId | None = None
    effective_at: EffectiveAt | None = None
    product_lifecycle_policies: ProductLifecyclePolicies | None = None
    promotional_policies: PromotionalPolicies | None = None
    post_promotional_policies: PostPromotionalPolicies | None = None

    def __post_init__(self) -> None:
        _ids_as_text(self, ("product_id",))


class Product(msgspec.Struct):
    product_id: str
    product_overview: ProductOverview
    created_at: datetime.datetime
    external_product_id: str | None
    effective_at: datetime.datetime
    product_lifecycle_policies: ProductLifecyclePolicies | None
    promotional_policies: PromotionalPolicies | None
    post_promotional_policies: PostPromotionalPolicies | None


class ProductList(msgspec.Struct):
    results: list[Product]
    paging: Paging


class CustomerAssignment(msgspec.Struct, kw_only=True):
    """One item of `assign_customers` on POST /accounts."""

    customer_id: IdRef
    customer_account_role: CustomerAccountRole | None = None  # PRIMARY when absent
    customer_account_external_id: IdRef | None = None
    customer_account_issuer_processor_config: IssuerProcessorConfig | None = None

    def __post_init__(self) -> None:
        _ids_as_text(self, ("customer_id", "customer_account_external_id"))


class AccountSummaryIn(msgspec.Struct, kw_only=True):
    """The limits and fees Canopy's CreateAccount takes; absent ones come from the product's
    default_attributes where it has one (credit limit, late fee, payment reversal fee)."""

    credit_limit_cents: Cents | None = None
    max_approved_credit_limit_cents: Cents | None = None
    late_fee_cents: Cents | None = None
    payment_reversal_fee_cents: Cents | None = None
    initial_principal_cents: Cents | None = None
    origination_fee_cents: Cents | None = None
    monthly_fee_cents: Cents | None = None
    annual_fee_cents: Cents | None = None
    late_fee_cap_percent: Percent | None = None


class CycleType(msgspec.Struct, kw_only=True):
    """An account's own cycle settings (Canopy's `cycle_type`), over its product's billing cycle."""

    first_cycle_interval: Interval | None = None
    cycle_interval: CycleInterval | None = None
    cycle_due_interval: SignedInterval | None = None
    late_fee_grace: Interval | None = None


class ExternalField(msgspec.Struct, kw_only=True):
    """A reference to the account in another system. Canopy marks both optional; a pair without its
    key or its value references nothing, so both are required here."""

    key: Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=NO_NUL)]
    value: Annotated[str, msgspec.Meta(max_length=255, pattern=NO_NUL)]


ExternalFields = Annotated[list[ExternalField], msgspec.Meta(max_length=10, description="At most 10 key/value pairs")]


class AccountCreate(msgspec.Struct, kw_only=True):
    """POST /accounts: the product by product_id or by external_product_id (Canopy: either)."""

    json_schema_extra: ClassVar[dict[str, Any]] = {
        # A null external_product_id names nothing: only a string stands in for product_id.
        "anyOf": [
            {"required": ["product_id"]},
            {"required": ["external_product_id"], "properties": {"external_product_id": {"type": "string"}}},
        ]
    }

    # Never null when sent (as when it was required); absent when the product is named by its external id.
    product_id: IdRef | UnsetType = UNSET
    external_product_id: ResourceId | None = None
    account_id: IdRef | None = None
    external_account_id: ResourceId | None = None
    effective_at: EffectiveAt | None = None
    summary: AccountSummaryIn | None = None
    assign_customers: (
        Annotated[
            list[CustomerAssignment],
            msgspec.Meta(
                max_length=100,
                extra_json_schema={"uniqueItems": True},
                description="At most 100 items, no customer_id twice",
            ),
        ]
        | None
    ) = None
    cycle_type: CycleType | None = None
    external_fields: ExternalFields | None = None

    def __post_init__(self) -> None:
        _ids_as_text(self, ("product_id", "account_id"))


class LithicCardDetails(msgspec.Struct):
    """A card as Canopy's 2021 spec nests it under `lithic`: the same values as the flat fields."""

    type: str
    state: CardState
    token: str | None
    last_four: str | None
    memo: str | None
    spend_limit: int | None
    spend_limit_duration: SpendLimitDuration | None
    exp_month: str | None
    exp_year: str | None
    created: datetime.datetime | None
    hostname: str | None


class CardDetails(msgspec.Struct):
    """A card item in both of Canopy's forms: the flat fields its later clients read, and `lithic`.

    Once ISSUED, type, state, memo, spend_limit (null: Lithic's 0, no limit), spend_limit_duration,
    exp_month, exp_year and created are what Lithic answered; hostname is the merchant a MERCHANT_LOCKED
    card is locked to (null until it is). Never the PAN or CVV."""

    status: CardStatus
    token: str | None
    last_four: str | None
    state: CardState
    type: str
    memo: str | None
    spend_limit: int | None
    error: str | None
    lithic: LithicCardDetails
    spend_limit_duration: SpendLimitDuration | None
    exp_month: str | None
    exp_year: str | None
    created: datetime.datetime | None
    hostname: str | None


class CardCreate(msgspec.Struct, kw_only=True):
    """POST /accounts/{account_id}/customers/{customer_id}/cards: defaults to the link's settings."""

    spend_limit: SpendLimit | None = None
    lithic: LithicCardConfig | None = None


class CardUpdate(msgspec.Struct, kw_only=True):
    """PUT /accounts/{account_id}/customers/{customer_id}/cards: changes the card at Lithic."""

    # Struct-level keywords for its OpenAPI schema (api/openapi.py merges them): cards.py refuses a body
    # with neither field.
    json_schema_extra: ClassVar[dict[str, Any]] = {"anyOf": [{"required": ["state"]}, {"required": ["spend_limit"]}]}

    state: CardUpdateState | UnsetType = UNSET
    spend_limit: SpendLimit | UnsetType | None = UNSET
    # Which of the link's cards to change (its Lithic token); without it, the link's newest card.
    card_token: CardToken | UnsetType = UNSET


class CardRenewal(msgspec.Struct, kw_only=True):
    """POST .../cards/{card_token}/renew: a new expiry (and CVV) for the same card (Lithic's renew).

    exp_month and exp_year go together (neither: Lithic's default, six years on). shipping_address,
    shipping_method and product_id apply to PHYSICAL cards, sent to the customer's address unless given."""

    # LithicCardConfig's rules that apply here: the expiry's two fields together; EXPEDITED's contacts.
    json_schema_extra: ClassVar[dict[str, Any]] = {"allOf": [*_EXPIRY_TOGETHER, _EXPEDITED_CONTACTS]}

    exp_month: ExpMonth | None = None
    exp_year: ExpYear | None = None
    product_id: LithicProductId | None = None
    shipping_method: ShippingMethod | None = None
    shipping_address: ShippingAddress | None = None


class CardReissue(msgspec.Struct, kw_only=True):
    """POST .../cards/{card_token}/reissue: a duplicate of a damaged PHYSICAL card, same number and
    expiry (Lithic's reissue); without a shipping_address Lithic sends it where it sent the card."""

    json_schema_extra: ClassVar[dict[str, Any]] = {"allOf": [_EXPEDITED_CONTACTS]}

    product_id: LithicProductId | None = None
    shipping_method: ShippingMethod | None = None
    shipping_address: ShippingAddress | None = None


class AccountOverview(msgspec.Struct):
    account_status: AccountStatus
    account_substatus: str | None = None


class AccountSummary(msgspec.Struct):
    """Canopy's limit and fee fields (null when neither the account nor its product set one). Its
    balances need a ledger this service does not keep, so they are not answered."""

    credit_limit_cents: int | None
    max_approved_credit_limit_cents: int | None
    late_fee_cents: int | None
    payment_reversal_fee_cents: int | None
    initial_principal_cents: int | None
    origination_fee_cents: int | None
    monthly_fee_cents: int | None
    annual_fee_cents: int | None
    late_fee_cap_percent: float | None


class AccountProductOverview(msgspec.Struct):
    product_name: str
    product_type: str
    product_short_description: str | None
    product_long_description: str | None
    product_color: str | None
    product_time_zone: str | None  # the product's billing_cycle_policies.product_time_zone


class AccountProductLifecycle(msgspec.Struct):
    """The fees as implemented on this account (Canopy's `*_impl_cents`): the summary's values."""

    late_fee_impl_cents: int | None
    payment_reversal_fee_impl_cents: int | None
    origination_fee_impl_cents: int | None
    monthly_fee_impl_cents: int | None
    annual_fee_impl_cents: int | None


class ProductDurationInformation(msgspec.Struct):
    promo_len: int | None
    promo_purchase_window_len: int | None


class PromoOverview(msgspec.Struct):
    promo_impl_interest_rate_percent: float | None  # the product's promo_default_interest_rate_percent


class PostPromoOverview(msgspec.Struct):
    post_promo_impl_interest_rate_percent: float | None  # the product's post_promo_default_interest_rate_percent
    post_promo_len: int | None


class AccountProduct(msgspec.Struct):
    """The account's product as Canopy embeds it in an account."""

    product_id: str
    external_product_id: str | None
    product_overview: AccountProductOverview
    product_lifecycle: AccountProductLifecycle
    product_duration_information: ProductDurationInformation
    promo_overview: PromoOverview
    post_promo_overview: PostPromoOverview


class LithicAccountDetails(msgspec.Struct):
    # Lithic's account token for the account; null until one is recorded (nothing records one yet).
    account_token: str | None


class IssuerProcessorDetails(msgspec.Struct):
    lithic: LithicAccountDetails


class AccountCustomer(Customer, kw_only=True):
    """A customer as seen from an account: its fields, its role, and its cards."""

    customer_account_role: str
    customer_account_external_id: str
    card_details: list[CardDetails]


class AccountCore(msgspec.Struct):
    account_id: str
    product_id: str
    external_account_id: str | None
    effective_at: datetime.datetime
    created_at: datetime.datetime
    updated_at: datetime.datetime
    account_overview: AccountOverview
    summary: AccountSummary
    account_product: AccountProduct
    cycle_type: CycleType
    external_fields: list[ExternalField]
    issuer_processor_details: IssuerProcessorDetails


class Account(AccountCore, kw_only=True):
    customers: list[AccountCustomer]


class AccountList(msgspec.Struct):
    results: list[Account]
    paging: Paging


class AccountStatusUpdate(msgspec.Struct, kw_only=True):
    """PUT /accounts/{account_id}/status. CLOSED is final and closes the account's cards at Lithic."""

    account_status: AccountStatus
    # A subtype of the status it is sent with: absent or null clears the one of the previous status.
    account_substatus: Text255 | None = None


class AccountDeleted(msgspec.Struct):
    """DELETE /accounts/{account_id}: Canopy's answer, `{"description": "Account deleted successfully."}`."""

    description: str


class CustomerAccountLink(AccountCustomer, kw_only=True):
    """A row of GET /customers/accounts: the customer's fields, the link, and the account."""

    account: AccountCore


class CustomerAccountLinkList(msgspec.Struct):
    results: list[CustomerAccountLink]
    paging: Paging


# Lithic's account holder workflows (postAccountHolders): KYC for a person, KYB for a business. The BYO
# workflows ("bring your own" KYC, with a kyc_passed_timestamp) are not offered: nothing here records when
# an organization's own check passed.
KycWorkflow = Literal["KYC_BASIC", "KYC_ADVANCED", "KYC_EXEMPT"]
KybWorkflow = Literal["KYB_BASIC"]
KycExemptionType = Literal["AUTHORIZED_USER", "PREPAID_CARD_USER"]


class AccountHoldersConfig(msgspec.Struct, kw_only=True):
    """Enrolling each customer at Lithic (POST /v1/account_holders) before its first card, which is then
    issued under the customer's Lithic account (account_token)."""

    enabled: bool
    workflow: Annotated[KycWorkflow, msgspec.Meta(description="For a person customer. Default KYC_BASIC")] = "KYC_BASIC"
    kyc_exemption_type: Annotated[KycExemptionType, msgspec.Meta(description="Sent with KYC_EXEMPT")] = (
        "PREPAID_CARD_USER"
    )
    kyb_workflow: Annotated[KybWorkflow, msgspec.Meta(description="For a business customer")] = "KYB_BASIC"
    # KYB's required nature_of_business (Canopy's business_details has no such field).
    nature_of_business: RequiredText | None = None


class LithicConfigIn(msgspec.Struct, kw_only=True):
    # Printable ASCII to the very end (END: a bare `$` let "key\n" through, into the Authorization header).
    api_key: Annotated[str, msgspec.Meta(min_length=1, max_length=512, pattern=r"^[\x21-\x7e]+" + END)]
    # openapi.py states the whole rule (LithicHosts.problem: Lithic's hosts and the operator's) as a pattern.
    base_url: (
        Annotated[
            str, msgspec.Meta(max_length=2048, pattern=r"^https?://", extra_json_schema={"x-lithic-base-url": True})
        ]
        | None
    ) = None
    # Lithic's webhook signing secret (whsec_ and base64), for POST /webhooks/lithic; absent keeps the
    # one set before, null removes it. Stored encrypted, answered masked.
    webhook_secret: (
        Annotated[str, msgspec.Meta(min_length=28, max_length=256, pattern=r"^whsec_[A-Za-z0-9+/]+={0,2}" + END)]
        | UnsetType
        | None
    ) = UNSET
    # Absent or null: no enrollment (cards are issued under the program's default account).
    account_holders: AccountHoldersConfig | None = None


class SimulatorConfig(msgspec.Struct, kw_only=True):
    """The built-in simulator's settings, which make an organization's cards while it has no Lithic key."""

    # Enrolls customers at the simulator as lithic_config.account_holders does at Lithic (test SSNs).
    account_holders: AccountHoldersConfig | None = None


class IssuerProcessorsUpdate(msgspec.Struct, kw_only=True):
    """PUT /organization/issuer_processors."""

    # null removes the key (cards go back to the simulator); absent changes nothing.
    lithic_config: LithicConfigIn | UnsetType | None = UNSET
    # null or absent account_holders: the simulator enrolls no one; absent: unchanged.
    simulator_config: SimulatorConfig | UnsetType | None = UNSET


class LithicConfigOut(msgspec.Struct):
    api_key: str  # masked: "****" and its last four characters
    base_url: str
    webhook_secret: str | None = None  # masked: "whsec_****" and its last four characters; null: none set
    account_holders: AccountHoldersConfig | None = None


class IssuerProcessors(msgspec.Struct):
    lithic_config: LithicConfigOut | None
    # Answered only when it holds a setting.
    simulator_config: SimulatorConfig | UnsetType = UNSET


DuplicatePolicy = Literal["warn", "block", "off"]


class OrganizationSettingsUpdate(msgspec.Struct, kw_only=True):
    """PUT /organization/settings."""

    duplicate_customer_policy: DuplicatePolicy | UnsetType = UNSET


class OrganizationSettings(msgspec.Struct):
    duplicate_customer_policy: DuplicatePolicy


# --- beneficial owners ----------------------------------------------------------------------------
# Canopy's published client types a beneficial owner as its customer (BeneficialOwner extends Customer)
# plus `beneficial_owner_id`: here, a person's fields of the customer, with the customer's field rules.

BeneficialOwnerId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=255,
        pattern=CUSTOMER_ID_PATTERN,
        description="Your id for the beneficial owner (unique per customer); generated when absent.",
    ),
]
if TYPE_CHECKING:
    BeneficialOwnerIdRef = BeneficialOwnerId
else:
    BeneficialOwnerIdRef = BeneficialOwnerId | IntegerId  # 2300 is "2300", as every id in a body


class BeneficialOwnerCreate(msgspec.Struct, kw_only=True):
    """POST /customers/{customer_id}/beneficial_owners."""

    json_schema_extra: ClassVar[dict[str, Any]] = ADDRESS_RULES

    name_first: RequiredText
    name_last: RequiredText
    phone_number: PhoneE164
    address_line_one: RequiredText
    address_city: RequiredText
    address_state: RequiredText
    address_zip: RequiredText
    email: EmailAddress
    date_of_birth: BirthDate
    beneficial_owner_id: BeneficialOwnerIdRef | None = None
    name_prefix: Text255 | None = None
    name_middle: Text255 | None = None
    name_suffix: Text255 | None = None
    address_line_two: Text255 | None = None
    address_country_code: CountryCode | None = None
    ssn: SsnNumber | None = None

    def __post_init__(self) -> None:
        _ids_as_text(self, ("beneficial_owner_id",))


class BeneficialOwner(msgspec.Struct):
    """A beneficial owner as answered: every field, unset optional ones as null."""

    beneficial_owner_id: str
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
    ssn: str | None  # as stored, as a customer's is answered
    email: str
    date_of_birth: datetime.date
    verification_status: str  # `unverified` on create
    created_at: datetime.datetime
    updated_at: datetime.datetime


class BeneficialOwnerList(msgspec.Struct):
    results: list[BeneficialOwner]
    paging: Paging


# --- Issue 12: events and webhooks ------------------------------------------------------------------

# Every event type, Canopy-style snake_case (README "Events and webhooks" lists them).
EventType = Literal[
    "customer_created",
    "customer_updated",
    "account_created",
    "account_updated",
    "account_deleted",
    "customer_account_linked",
    "card_pending",
    "card_issued",
    "card_failed",
    "card_updated",
    "card_closed",
    "test_event",
]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]

# rules/webhooks.py checks the whole rule (WebhookHosts.problem: https, a named host, the operator's
# hosts); openapi.py states it as the document's pattern (WebhookHosts.url_pattern), settings included.
WebhookUrl = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=2048,
        pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[^\x00-\x20\x7f]+" + END,
        extra_json_schema={"x-webhook-url": True},
    ),
]


class Event(msgspec.Struct):
    """GET /events/{event_id}; `data` is the object as the API answered it after the change, SSNs out."""

    id: str
    type: EventType
    created_at: datetime.datetime
    data: dict[str, Any]


class EventList(msgspec.Struct):
    results: list[Event]
    paging: Paging


class CustomerAccountLinkEvent(msgspec.Struct):
    """The data of customer_account_linked: the link as made."""

    customer_id: str
    account_id: str
    customer_account_role: str
    customer_account_external_id: str


class CardEvent(CardDetails, kw_only=True):
    """The data of a card_* event: the card item, and the link it belongs to (a pending card has no
    token yet: these say which card it is)."""

    account_id: str
    customer_id: str


class SubscriptionCreate(msgspec.Struct, kw_only=True):
    """PUT /organization/subscribe."""

    webhook_url: WebhookUrl
    filter_events: Annotated[list[EventType], msgspec.Meta(min_length=1, max_length=len(EVENT_TYPES))] | None = None
    failure_notification_endpoint: WebhookUrl | None = None


class Subscription(msgspec.Struct):
    subscription_id: str
    webhook_url: str
    filter_events: list[str] | None
    failure_notification_endpoint: str | None
    active: bool
    created_at: datetime.datetime
    updated_at: datetime.datetime


class SubscriptionCreated(Subscription, kw_only=True):
    """201: Canopy's description, the subscription, and its signing secret, shown this once."""

    description: str
    signing_secret: str


class SubscriptionList(msgspec.Struct):
    results: list[Subscription]
    paging: Paging


class Description(msgspec.Struct):
    """Canopy's bare acknowledgements: {"description": "Event triggered."}."""

    description: str


class SimulatedAuthorizationRequest(msgspec.Struct, kw_only=True):
    """POST /simulator/authorize: a purchase with a simulator's card (Lithic's POST /v1/simulate/authorize)."""

    card_token: Annotated[
        str, msgspec.Meta(pattern="^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}" + END)
    ]
    amount: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)]  # cents
    descriptor: Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=r"^[\x20-\x7e]+" + END)]


class SimulatedAuthorization(msgspec.Struct):
    result: Literal["APPROVED", "DECLINED"]
    card_state: str  # the card's state here after the purchase (its webhook applied)


class LithicWebhookEvent(msgspec.Struct, kw_only=True):
    """What POST /webhooks/lithic reads of Lithic's event bodies (its spec's card.* webhook schemas); every
    other member is ignored. card.updated names its card `token`, the others `card_token` (a transaction's
    `token` is the transaction's)."""

    event_type: Annotated[str, msgspec.Meta(max_length=255)] | None = None
    token: Annotated[str, msgspec.Meta(max_length=255)] | None = None
    card_token: Annotated[str, msgspec.Meta(max_length=255)] | None = None
    state: Annotated[str, msgspec.Meta(max_length=255)] | None = None  # card.updated: the state now
    exp_month: Annotated[str, msgspec.Meta(max_length=255)] | None = None  # card.renewed: the new expiry
    exp_year: Annotated[str, msgspec.Meta(max_length=255)] | None = None


class ReplayedDeliveries(msgspec.Struct):
    description: str
    requeued: int
