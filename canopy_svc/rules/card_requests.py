"""What a card is asked of Lithic as (postCards): the rules across its fields that its types cannot
state, and a PHYSICAL card's shipping address (given, or its customer's).

Lithic's ShippingAddress: first_name and last_name (printed on the card: 25 characters together),
address1, address2?, city, state, postal_code, country (ISO 3166-1 alpha-3), and email and phone_number,
which shipping_method EXPEDITED requires."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pycountry

from canopy_svc.core.dbtypes import Queryable
from canopy_svc.rules.validation import _email_problem, _phone_problem
from canopy_svc.store import cards as card_store
from canopy_svc.wire.errors import ErrorDetail, InvalidInput, detail
from canopy_svc.wire.fields import US_RULES_COUNTRIES, US_STATE_CODES
from canopy_svc.wire.models import (
    LITHIC_TWO_LETTER_STATE,
    LITHIC_US_POSTAL_CODE,
    CardReissue,
    CardRenewal,
    LithicCardConfig,
    ShippingAddress,
)

PRINTED_NAME_LIMIT = 25  # Lithic: first_name and last_name together, as printed on the card
PHYSICAL_ONLY = ("shipping_address", "product_id", "shipping_method")
_US_ALPHA3 = frozenset(country.alpha_3 for country in pycountry.countries if country.alpha_2 in US_RULES_COUNTRIES)
_US_POSTAL = re.compile(LITHIC_US_POSTAL_CODE)
_TWO_LETTERS = re.compile(LITHIC_TWO_LETTER_STATE)
_US_ZIP_DIGITS = re.compile(r"([0-9]{5})-?([0-9]{4})?")


# A card asked of Lithic (postCards), renewed (renew) or reissued (reissue): each has the fields a card
# is shipped with; the first two have an expiry.
CardAsked = LithicCardConfig | CardRenewal | CardReissue


def request_problems(config: CardAsked, pointer: str) -> list[ErrorDetail]:
    """The rules a `lithic` object (or a renewal's or reissue's body) breaks by itself (the document
    states each; see models.py)."""
    problems: list[ErrorDetail] = []
    if not isinstance(config, CardReissue) and (config.exp_month is None) != (config.exp_year is None):
        missing = "exp_year" if config.exp_year is None else "exp_month"
        problems.append(detail(pointer, "required", {"missingProperty": missing}, "exp_month and exp_year go together"))
    if isinstance(config, LithicCardConfig) and config.type is not None and config.type != "PHYSICAL":
        problems += physical_only(config, pointer, config.type)
    address = config.shipping_address
    if address is not None:
        problems += _address_problems(address, f"{pointer}/shipping_address")
        if config.shipping_method == "EXPEDITED":
            problems += [
                detail(
                    f"{pointer}/shipping_address",
                    "required",
                    {"missingProperty": name},
                    f"must have property '{name}' with shipping_method EXPEDITED",
                )
                for name in ("email", "phone_number")
                if getattr(address, name) is None
            ]
    return problems


def check_request(config: CardAsked, pointer: str) -> None:
    if problems := request_problems(config, pointer):
        raise InvalidInput(problems)


def physical_only(config: CardAsked, pointer: str, card_type: str) -> list[ErrorDetail]:
    return [
        detail(f"{pointer}/{name}", "not", {}, f"applies to PHYSICAL cards only; this card is {card_type}")
        for name in PHYSICAL_ONLY
        if getattr(config, name) is not None
    ]


def _address_problems(address: ShippingAddress, pointer: str) -> list[ErrorDetail]:
    problems: list[ErrorDetail] = []
    if len(address.first_name) + len(address.last_name) > PRINTED_NAME_LIMIT:
        problems.append(
            detail(
                f"{pointer}/last_name",
                "maxLength",
                {"limit": PRINTED_NAME_LIMIT, "combinedWith": "first_name"},
                f"first_name and last_name together must be at most {PRINTED_NAME_LIMIT} characters "
                "(Lithic prints them on the card)",
            )
        )
    if address.country in _US_ALPHA3:
        if address.state not in US_STATE_CODES:
            problems.append(
                detail(
                    f"{pointer}/state",
                    "enum",
                    {"allowedValues": sorted(US_STATE_CODES)},
                    "must be a USPS state or territory code",
                )
            )
        if not _US_POSTAL.fullmatch(address.postal_code):
            problems.append(
                detail(
                    f"{pointer}/postal_code",
                    "pattern",
                    {"pattern": LITHIC_US_POSTAL_CODE},
                    "must be a ZIP code: 12345 or 12345-1234",
                )
            )
    elif address.country == "CAN" and not _TWO_LETTERS.fullmatch(address.state):
        problems.append(
            detail(
                f"{pointer}/state",
                "pattern",
                {"pattern": LITHIC_TWO_LETTER_STATE},
                "must be the province's two-letter code",
            )
        )
    if address.email is not None and (problem := _email_problem(address.email)):
        problems.append(detail(f"{pointer}/email", "format", {"format": "email"}, problem))
    if address.phone_number is not None and (problem := _phone_problem(address.phone_number, None)):
        problems.append(detail(f"{pointer}/phone_number", "format", {"format": "e164"}, problem))
    return problems


async def shipping_address(
    conn: Queryable, link_id: int, config: LithicCardConfig | None, card_type: str, pointer: str
) -> dict[str, str] | None:
    """Lithic's ShippingAddress for a card of this type: the one given, else (PHYSICAL) the customer's.
    A 422 when the card's fields do not fit its type, or the customer's address does not fit Lithic's."""
    if card_type != "PHYSICAL":
        if config is not None and (problems := physical_only(config, pointer, card_type)):
            raise InvalidInput(problems)  # the type came from the link's config, not the body
        return None
    method = config.shipping_method if config is not None else None
    if config is not None and config.shipping_address is not None:
        given: dict[str, str] = msgspec.to_builtins(config.shipping_address)
        return {name: value for name, value in given.items() if value is not None}
    customer = await card_store.shipping_source(conn, link_id)
    return _customer_address(customer, method, f"{pointer}/shipping_address")


async def renewal_shipping_address(
    conn: Queryable, link_id: int, body: CardRenewal | CardReissue, card_type: str, *, required: bool
) -> dict[str, str] | None:
    """The ShippingAddress a renewal or reissue sends: the body's, else (when Lithic requires one, as
    renew does of every card) the customer's. product_id and shipping_method are a PHYSICAL card's."""
    if card_type != "PHYSICAL":
        # Lithic's renew takes (requires) a shipping_address for every card type.
        problems = [found for found in physical_only(body, "", card_type) if found.instancePath != "/shipping_address"]
        if problems:
            raise InvalidInput(problems)
    if body.shipping_address is not None:
        given: dict[str, str] = msgspec.to_builtins(body.shipping_address)
        return {name: value for name, value in given.items() if value is not None}
    if not required:
        return None
    customer = await card_store.shipping_source(conn, link_id)
    return _customer_address(customer, body.shipping_method, "/shipping_address", needs="Lithic's renew")


def _customer_address(
    customer: Any, method: str | None, pointer: str, *, needs: str = "A PHYSICAL card"
) -> dict[str, str]:
    """The customer's address in Lithic's shape, or a 422 asking for a shipping_address."""

    def refuse(reason: str) -> InvalidInput:
        message = f"{needs} needs a shipping_address: {reason}"
        return InvalidInput([detail(pointer, "required", {"missingProperty": "shipping_address"}, message)], message)

    first, last = customer["name_first"], customer["name_last"]
    if len(first) + len(last) > PRINTED_NAME_LIMIT:
        raise refuse(f"the customer's name is longer than the {PRINTED_NAME_LIMIT} characters Lithic prints")
    alpha2 = customer["address_country_code"] or "US"  # an absent country is the US (the contract's rule)
    country = pycountry.countries.get(alpha_2=alpha2)
    if country is None:
        raise refuse(f"the customer's country {alpha2} has no ISO 3166-1 alpha-3 code")
    postal = customer["address_zip"]
    if alpha2 in US_RULES_COUNTRIES and (zip_digits := _US_ZIP_DIGITS.fullmatch(postal)):
        postal = zip_digits[1] + (f"-{zip_digits[2]}" if zip_digits[2] else "")  # Lithic's 12345-1234
    state = customer["address_state"]
    if len(state) > 24:
        raise refuse("the customer's address_state is longer than the 24 characters Lithic takes")
    address = {
        "first_name": first,
        "last_name": last,
        "address1": customer["address_line_one"],
        "city": customer["address_city"],
        "state": state,
        "postal_code": postal,
        "country": country.alpha_3,
    }
    if customer["address_line_two"]:
        address["address2"] = customer["address_line_two"]
    if method == "EXPEDITED":  # Lithic's courier calls or writes about an expedited card
        address["email"] = customer["email"]
        address["phone_number"] = customer["phone_number"]
    return address
