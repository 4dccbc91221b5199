"""Reusable field types: the msgspec annotations that carry the contract's per-field rules.

What a type cannot say (E.164, ISO 3166, calendar sanity, zip-by-country) lives in validation.py.
"""

from __future__ import annotations

import datetime
import re
from typing import Annotated, Literal

import msgspec
import phonenumbers
import pycountry

from canopy_svc.wire.patterns import END

# PostgreSQL text cannot hold NUL: refused here (422), not left to the INSERT (500).
NO_NUL = r"^[^\x00]*$"
# Non-blank: at least one character that is not white space (nor NUL), and no NUL anywhere. White space
# spelled out as Python's \s has it: ECMA's \s (OpenAPI readers) lacks \x1c-\x1f and \x85 and adds \ufeff.
_SPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NON_BLANK = rf"^[^\x00]*[^{_SPACE}\x00][^\x00]*$"

Text255 = Annotated[str, msgspec.Meta(max_length=255, pattern=NO_NUL)]
RequiredText = Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=NON_BLANK)]
# Canopy reserves the can_ prefix for its own ids; control characters never belong in an id.
CUSTOMER_ID_PATTERN = r"^(?!can_)[^\x00-\x1f\x7f]*" + END
CustomerId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=255,
        pattern=CUSTOMER_ID_PATTERN,
        description="Your id for the customer; generated when absent.",
    ),
]
ResourceId = Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]*" + END)]
PhoneNumber = Annotated[str, msgspec.Meta(max_length=32, description="E.164, e.g. +14105556789")]
Email = Annotated[str, msgspec.Meta(max_length=254)]
# 9 digits, hyphens only as 123-45-6789; the all-zero groups are checked in validation.py.
# [0-9], not \d: Python's \d also matches other scripts' digits (Arabic-Indic, Devanagari...).
SSN_PATTERN = r"^([0-9]{9}|[0-9]{3}-[0-9]{2}-[0-9]{4})" + END
Ssn = Annotated[str, msgspec.Meta(pattern=SSN_PATTERN)]
# 9 digits; hyphens allowed between digits (the seed's example is 888-88-8888).
EIN_PATTERN = r"^[0-9](-?[0-9]){8}" + END
Ein = Annotated[str, msgspec.Meta(pattern=EIN_PATTERN)]
Uuid = Annotated[
    str,
    msgspec.Meta(pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}" + END),
]

COUNTRY_CODES: tuple[str, ...] = tuple(sorted({c.alpha_2 for c in pycountry.countries} | {"AN"}))
# Built from pycountry at import so the OpenAPI document lists exactly what is accepted.
CountryCode = Literal[COUNTRY_CODES]  # type: ignore[valid-type]

# USPS codes: states, DC, territories, and the military "states".
US_STATE_CODES = frozenset(
    """AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY
    NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC AS GU MP PR VI UM FM MH PW AA AE AP""".split()
)
# Countries whose addresses follow US rules (ZIP codes, USPS states). Absent country means US.
US_RULES_COUNTRIES = frozenset({"US", "PR", "GU", "VI", "AS", "MP", "UM"})

CustomerAccountRole = Literal["PRIMARY", "SECONDARY"]
# What a card may be asked as. UNLOCKED is deprecated at Lithic ("please use VIRTUAL instead"): kept for
# Canopy's clients and sent to Lithic as VIRTUAL (issuers/card_issuer.py, lithic_type).
LithicCardType = Literal["VIRTUAL", "PHYSICAL", "SINGLE_USE", "MERCHANT_LOCKED", "UNLOCKED"]
LithicCreateState = Literal["OPEN", "PAUSED"]
# Lithic's spend_limit_duration and shipping_method enums (postCards). BULK is left out: it needs a
# bulk order this service does not make.
SpendLimitDuration = Literal["TRANSACTION", "MONTHLY", "ANNUALLY", "FOREVER"]
ShippingMethod = Literal["STANDARD", "STANDARD_WITH_TRACKING", "PRIORITY", "EXPRESS", "2_DAY", "EXPEDITED"]
# Lithic's exp_month is two digits (MM), exp_year four (yyyy); a month is 01..12.
ExpMonth = Annotated[str, msgspec.Meta(pattern=r"^(0[1-9]|1[0-2])" + END, description="Two digits, MM")]
ExpYear = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{4}" + END, description="Four digits, yyyy")]
# Lithic's physical card configuration id (e.g. "783991122"): printable, no control characters.
LithicProductId = Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]*" + END)]
# ISO 3166-1 alpha-3, uppercase: what Lithic's ShippingAddress.country takes.
COUNTRY_CODES_ALPHA3: tuple[str, ...] = tuple(sorted(c.alpha_3 for c in pycountry.countries))
CountryCodeAlpha3 = Literal[COUNTRY_CODES_ALPHA3]  # type: ignore[valid-type]
BIGINT_MAX = 2**63 - 1  # the columns are bigint
SpendLimit = Annotated[int, msgspec.Meta(ge=1, le=BIGINT_MAX, description="Cents")]
Cents = Annotated[int, msgspec.Meta(ge=0, le=BIGINT_MAX)]
# Canopy takes account, product and customer ids in bodies as strings or integers (its clients send
# 2300); models.py keeps an integer as its decimal string. Non-negative: no id of ours is "-5" by
# accident of a client's arithmetic; int64, as every integer a JSON client can be trusted to round-trip.
IntegerId = Annotated[
    int, msgspec.Meta(ge=0, le=BIGINT_MAX, description='An integer id, taken as its decimal string (2300 is "2300")')
]


EARLIEST_BIRTH_DATE = datetime.date(1900, 1, 1)


def _national_lengths() -> dict[str, frozenset[int]]:
    """Country calling code -> the lengths a full national number there may have, by phonenumbers'
    metadata: its is_possible_number (the contract's rule), less the local-only lengths (E.164 is the
    whole number) and the parser's national-prefix guesses, so a regex can say it (models.py does)."""
    lengths: dict[str, frozenset[int]] = {}
    for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
        region = phonenumbers.region_code_for_country_code(code)
        metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(code, region)
        possible = metadata.general_desc.possible_length if metadata and metadata.general_desc else ()
        fitting = frozenset(n for n in possible if n > 0 and len(str(code)) + n <= 15)
        if fitting:
            lengths[str(code)] = fitting
    return lengths


NATIONAL_LENGTHS = _national_lengths()

# A US ZIP or ZIP+4; elsewhere a postal code of letters, digits, spaces and hyphens.
US_ZIP = re.compile(r"^[0-9]{5}(-?[0-9]{4})?$")
POSTAL_CODE = re.compile(r"^[A-Za-z0-9 -]{1,16}$")
