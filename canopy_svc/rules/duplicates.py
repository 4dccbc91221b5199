"""Duplicate customers (LoanPro's transaction warnings): same SSN, email, phone or primary address.

Policies per organization: `warn` answers the warnings beside the customer, `block` refuses with 409
unless `__ignoreWarnings` (never for a same-SSN-and-date-of-birth match), `off` checks nothing.
"""

from __future__ import annotations

import datetime
from typing import Any

from canopy_svc.core.dbtypes import Conn
from canopy_svc.store import customers as store
from canopy_svc.store import loanpro as loanpro_store
from canopy_svc.wire.errors import DuplicateCustomer
from canopy_svc.wire.models import DuplicateWarning

# The customer fields whose change calls for a new check.
CHECKED_FIELDS = frozenset({"ssn", "email", "phone_number", "address_line_one", "address_zip", "address_country_code"})
_MESSAGES = {
    "ssn": "Another customer has the same SSN",
    "email": "Another customer has the same email address",
    "phone_number": "Another customer has the same phone number",
    "address": "Another customer has the same primary address",
    "mail_address": "Another customer has the same mail address",
}


async def check(
    conn: Conn,
    org_id: int,
    values: dict[str, Any],
    ssn_hash: bytes | None,
    *,
    ignore_warnings: bool,
    exclude_row_id: int = 0,
    waived: frozenset[str] = frozenset(),
) -> list[DuplicateWarning]:
    """The warnings for a customer with these (merged) values; raises DuplicateCustomer under `block`.
    `waived`: the fields ("address", "phone_number", ...) whose warnings are ignored as `ignore_warnings`
    ignores them all (LoanPro's `__ignoreWarnings` on the nested object that caused them)."""
    arguments = {
        "ssn_hash": ssn_hash,
        "email": values["email"],
        "phone_number": values["phone_number"],
        "address_line_one": values["address_line_one"],
        "address_zip": values["address_zip"],
        "address_country_code": values.get("address_country_code"),
        "exclude_row_id": exclude_row_id,
    }
    policy, matches = await store.duplicates(conn, org_id, **arguments)
    if policy == "block":
        # Check again under locks on the values: a concurrent twin now waits for our commit and sees us.
        await store.lock_values(conn, org_id, **arguments)
        policy, matches = await store.duplicates(conn, org_id, **arguments)
    found = [(match["code"], match["customer_id"], match["date_of_birth"]) for match in matches]
    return decide(policy, found, values["date_of_birth"], ignore_warnings=ignore_warnings, waived=waived)


def decide(
    policy: str,
    matches: list[tuple[str, str, datetime.date]],
    date_of_birth: datetime.date,
    *,
    ignore_warnings: bool,
    waived: frozenset[str] = frozenset(),
) -> list[DuplicateWarning]:
    """The warnings for these matches [(field, customer_id, their date of birth)]; under `block`,
    DuplicateCustomer instead (always for the same SSN and date of birth), unless ignored: all of them
    (`ignore_warnings`) or each one's field (`waived`). The API's check, the LoanPro face's and the
    bulk import's (rules/customer_import.py) all decide here."""
    warnings = warnings_for([(code, customer_id) for code, customer_id, _ in matches])
    if policy == "block" and warnings:
        same_person = any(code == "ssn" and born == date_of_birth for code, _, born in matches)
        ignored = ignore_warnings or all(warning.field in waived for warning in warnings)
        if not ignored or same_person:
            message = (
                "A customer with the same SSN and date of birth already exists"
                if same_person
                else "A customer with the same details already exists"
            )
            raise DuplicateCustomer(warnings, message)
    return warnings


def warnings_for(matches: list[tuple[str, str]]) -> list[DuplicateWarning]:
    """[(field, matching customer_id)] as the answer's `warnings`."""
    return [
        DuplicateWarning(code=f"duplicate_{field}", field=field, customer_id=customer_id, message=_MESSAGES[field])
        for field, customer_id in matches
    ]


async def check_nested(
    conn: Conn, org_id: int, field: str, nav: str, match_hash: bytes, *, ignore_warnings: bool, exclude_row_id: int
) -> list[DuplicateWarning]:
    """The same policy for a value kept beside the customers row (the LoanPro face's MailAddress):
    found by its keyed hash; under `block` refused unless `ignore_warnings`."""
    policy, customer_ids, _ = await loanpro_store.matching_entities(conn, org_id, nav, match_hash, exclude_row_id)
    return _decided(policy, field, customer_ids, ignore_warnings=ignore_warnings)


def _decided(policy: str, field: str, customer_ids: list[str], *, ignore_warnings: bool) -> list[DuplicateWarning]:
    """A nested value's matches as warnings: none under `off`, refused under `block` unless ignored."""
    if policy == "off":
        return []
    warnings = warnings_for([(field, customer_id) for customer_id in customer_ids])
    if policy == "block" and warnings and not ignore_warnings:
        raise DuplicateCustomer(warnings)
    return warnings


async def check_phone_item(
    conn: Conn, org_id: int, phone: str, match_hash: bytes, *, ignore_warnings: bool, exclude_row_id: int
) -> list[DuplicateWarning]:
    """A phone that is not the customer's primary (the LoanPro face's other Phones, kept encrypted):
    compared with every other customer's primary phone and with their other phones (by keyed hash)."""
    policy, in_items, as_primary = await loanpro_store.matching_entities(
        conn, org_id, "Phones", match_hash, exclude_row_id, phone=phone
    )
    customer_ids = list(dict.fromkeys([*as_primary, *in_items]))[:5]
    return _decided(policy, "phone_number", customer_ids, ignore_warnings=ignore_warnings)
