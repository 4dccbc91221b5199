"""Reusable field types: the msgspec annotations that carry the contract's per-field rules.

What a type cannot say (E.164, ISO 3166, calendar sanity, zip-by-country) lives in validation.py.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
import pycountry

# Non-blank: at least one character that is not white space.
NON_BLANK = r"\S"

Text255 = Annotated[str, msgspec.Meta(max_length=255)]
RequiredText = Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=NON_BLANK)]
# Canopy reserves the can_ prefix for its own ids; control characters never belong in an id.
CUSTOMER_ID_PATTERN = r"^(?!can_)[^\x00-\x1f\x7f]*$"
CustomerId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=255, pattern=CUSTOMER_ID_PATTERN,
                      description="Your id for the customer; generated when absent.")
]
ResourceId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]*$")
]
PhoneNumber = Annotated[str, msgspec.Meta(max_length=32, description="E.164, e.g. +14105556789")]
Email = Annotated[str, msgspec.Meta(max_length=254)]
# 9 digits, hyphens only as 123-45-6789; the all-zero groups are checked in validation.py.
SSN_PATTERN = r"^(\d{9}|\d{3}-\d{2}-\d{4})$"
Ssn = Annotated[str, msgspec.Meta(pattern=SSN_PATTERN)]
# 9 digits; hyphens allowed between digits (the seed's example is 888-88-8888).
EIN_PATTERN = r"^\d(-?\d){8}$"
Ein = Annotated[str, msgspec.Meta(pattern=EIN_PATTERN)]
Uuid = Annotated[
    str,
    msgspec.Meta(pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"),
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
LithicCardType = Literal["SINGLE_USE", "MERCHANT_LOCKED", "UNLOCKED"]
LithicCreateState = Literal["OPEN", "PAUSED"]
SpendLimit = Annotated[int, msgspec.Meta(ge=1, description="Cents")]
