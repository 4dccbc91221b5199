"""The LoanPro face's vocabulary (LOANPRO.md): its enums beside Canopy's values, its dates, its error
bodies and the types /openapi.json shows for it. Only the face (canopy_svc/loanpro/) speaks it."""

from __future__ import annotations

import datetime
import re
from typing import Any

import msgspec

from canopy_svc.wire.errors import ApiError

PREFIX = "/api/public/api/1"
ODATA = f"{PREFIX}/odata.svc"
# LoanPro's own host in its uris (`http://`, as its answers spell them): a client parses the id out
# of them, and the face answers the same form whatever host it is reached on.
URI_BASE = "http://loanpro.simnang.com/api/public/api/1/odata.svc/"

CUSTOMER_TYPES = {"customer.type.individual": "person", "customer.type.company": "business"}
CUSTOMER_TYPE_OUT = {"person": "customer.type.individual", "business": "customer.type.company"}
# generationCode <-> Canopy's name_suffix: the suffix as a person writes it.
GENERATION_CODES = {
    "customer.generationCode.none": None, "customer.generationCode.jr": "Jr", "customer.generationCode.sr": "Sr",
    "customer.generationCode.ii": "II", "customer.generationCode.iii": "III", "customer.generationCode.iv": "IV",
    "customer.generationCode.v": "V", "customer.generationCode.vi": "VI", "customer.generationCode.vii": "VII",
    "customer.generationCode.viii": "VIII", "customer.generationCode.ix": "IX",
}  # fmt: skip
GENERATION_CODE_OUT = {suffix.lower(): code for code, suffix in GENERATION_CODES.items() if suffix is not None}
PHONE_TYPES = frozenset(
    f"customer.phoneType.{kind}" for kind in ("cell", "cellSmartPhone", "home", "office", "fax", "other")
)
# LoanPro names countries `company.country.<iso3>`; Canopy stores ISO 3166-1 alpha-2. The countries
# LoanPro's own examples use; another country is refused by name (a 409), not guessed.
COUNTRIES = {"usa": "US", "can": "CA", "mex": "MX", "gbr": "GB"}
COUNTRY_OUT = {alpha2: f"company.country.{iso3}" for iso3, alpha2 in COUNTRIES.items()}
STATE_PREFIX = "geo.state."
_DATE_IN = re.compile(r"^(\d{4}-\d{2}-\d{2})(?: \d{2}:\d{2}:\d{2})?$")


def date_out(value: datetime.date | datetime.datetime | None) -> str | None:
    """LoanPro's `/Date(<unix seconds>)/`; a date is its midnight UTC."""
    if value is None:
        return None
    if not isinstance(value, datetime.datetime):
        value = datetime.datetime(value.year, value.month, value.day, tzinfo=datetime.UTC)
    return f"/Date({int(value.timestamp())})/"


def date_in(value: object) -> str | None:
    """`YYYY-MM-DD` or `YYYY-MM-DD hh:mm:ss` as the ISO date Canopy takes; None if it is neither."""
    if not isinstance(value, str):
        return None
    match = _DATE_IN.match(value)
    return match.group(1) if match else None


def mask_ssn(ssn: str | None) -> str | None:
    """As seed 002 shows it: the last four digits after five X."""
    if not ssn:
        return None
    return "XXXXX" + ssn.replace("-", "")[-4:]


class LoanProError(ApiError):
    """An answer in LoanPro's error shape: `{"error": {"message", "type", "code"}}`, and for
    transaction warnings a `warnings` list beside `error`. An ApiError, so that api/writes.py keeps it
    under an Idempotency-Key as it keeps the Canopy face's refusals."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str,
        warnings: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, headers=headers)
        self.status = status
        self.kind = kind
        self.warnings = warnings

    def body(self) -> bytes:
        content: dict[str, Any] = {"error": {"message": self.message, "type": self.kind, "code": self.status}}
        if self.warnings is not None:
            content["warnings"] = self.warnings
        return msgspec.json.encode(content)


def reshaped(error: ApiError) -> LoanProError:
    """Any other error in LoanPro's shape: its status, message and headers (Retry-After, Allow)
    kept, its code as the exception's name (`rate_limited` -> RateLimitedException)."""
    if isinstance(error, LoanProError):
        return error
    kind = "".join(part.capitalize() for part in error.code.split("_")) + "Exception"
    return LoanProError(error.status, error.message, kind, headers=error.headers)


def in_face(path: str, error: ApiError) -> ApiError:
    """`error` as answered at `path`: in LoanPro's shape under its prefix."""
    return reshaped(error) if path.startswith(PREFIX + "/") else error


def invalid(message: str) -> LoanProError:
    """A validation failure: LoanPro answers those 409 (LOANPRO.md section 5)."""
    return LoanProError(409, message, "ValidationException")


def not_found(message: str = "Resource not found") -> LoanProError:
    return LoanProError(404, message, "ODataException")


def unauthorized() -> LoanProError:
    return LoanProError(401, "Unauthorized", "UnauthorizedException")


# --- the types /openapi.json shows (the answers are built as LoanPro orders its keys) -----------------


class ErrorOut(msgspec.Struct):
    message: str
    type: str
    code: int


class LoanProErrorBody(msgspec.Struct, omit_defaults=True):
    error: ErrorOut
    warnings: list[str] | None = None


class Metadata(msgspec.Struct):
    uri: str
    type: str


class CustomerOut(msgspec.Struct, rename={"metadata": "__metadata"}):
    """Entity.Customer: navigations are `{"__deferred": {"uri"}}` unless expanded ($expand)."""

    metadata: Metadata
    id: int
    customId: str | None
    customerType: str
    status: str
    firstName: str
    lastName: str
    middleName: str | None
    birthDate: str
    generationCode: str
    email: str
    ssn: str | None
    companyName: str | None
    created: str
    lastUpdate: str


class CustomerEnvelope(msgspec.Struct):
    d: CustomerOut


class Summary(msgspec.Struct):
    start: int
    pageSize: int
    total: int


class CustomerResults(msgspec.Struct):
    results: list[CustomerOut]
    summary: Summary


class CustomerListEnvelope(msgspec.Struct):
    d: CustomerResults


class NavigationEnvelope(msgspec.Struct):
    """`Customers(id)/Nav`: a single-valued navigation's entity, or a collection's `{"results": [...]}`."""

    d: dict[str, Any] | None


class SearchIn(msgspec.Struct):
    """An Elasticsearch-style body, e.g. `{"query": {"query_string": {"query": "john"}}}`: its texts'
    words are searched."""

    query: dict[str, Any] = {}


class SearchHit(msgspec.Struct):
    id: int
    customId: str | None
    customerType: str
    customerName: str
    firstName: str
    lastName: str
    companyName: str | None
    email: str
    primaryPhone: str
    ssn: str | None
    birthDate: str
    created: str


class SearchResults(msgspec.Struct):
    results: list[SearchHit]
    summary: Summary


class SearchEnvelope(msgspec.Struct):
    d: SearchResults


class Success(msgspec.Struct):
    success: bool


class SuccessEnvelope(msgspec.Struct):
    d: Success


class AddressIn(msgspec.Struct, kw_only=True, rename={"ignore_warnings": "__ignoreWarnings"}):
    address1: str
    address2: str | None = None
    city: str
    state: str
    zipcode: str
    country: str = "company.country.usa"
    ignore_warnings: bool = False


class PhoneIn(msgspec.Struct, kw_only=True):
    phone: str
    type: str = "customer.phoneType.cell"
    isPrimary: int | str | bool = 0


class PhonesIn(msgspec.Struct):
    results: list[PhoneIn]


class CustomerIn(msgspec.Struct, kw_only=True, rename={"ignore_warnings": "__ignoreWarnings"}):
    """POST odata.svc/Customers (PUT takes the same fields, each optional). Nested collections are
    `{"results": [...]}`; their items take `__id` with `__update` or `__destroy`."""

    customerType: str = "customer.type.individual"
    firstName: str
    lastName: str
    middleName: str | None = None
    birthDate: str
    generationCode: str = "customer.generationCode.none"
    email: str
    ssn: str | None = None
    customId: str | None = None
    companyName: str | None = None
    customerId: str | None = None
    PrimaryAddress: AddressIn
    MailAddress: AddressIn | None = None
    Phones: PhonesIn
    ignore_warnings: bool = False
