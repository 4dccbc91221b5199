"""A customer's enrollment at Lithic (issue 13 item 5): what its result means for the customer.

Lithic's KYC/KYB status drives Canopy's `verification_status` (README, "Lithic account holders"):

    ACCEPTED -> verified, PENDING_REVIEW -> pending, PENDING_DOCUMENT -> document,
    PENDING_RESUBMIT -> retry, REJECTED -> failed

A KYC_EXEMPT enrollment verifies no one (Lithic runs no identity check), so it leaves the field as it is.
A change is a `customer_updated` event, in the transaction that records Lithic's answer."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pycountry

from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.dbtypes import Conn
from canopy_svc.issuers.account_holders import EnrolledHolder
from canopy_svc.rules import events
from canopy_svc.rules.customers import customer_from_record
from canopy_svc.store import account_holders as store
from canopy_svc.store import customers as customer_store
from canopy_svc.wire.fields import US_RULES_COUNTRIES
from canopy_svc.wire.models import AccountHoldersConfig

VERIFICATION_STATUS = {
    "ACCEPTED": "verified",
    "PENDING_REVIEW": "pending",
    "PENDING_DOCUMENT": "document",
    "PENDING_RESUBMIT": "retry",
    "REJECTED": "failed",
}


async def record_result(conn: Conn, enrollment: asyncpg.Record, holder: EnrolledHolder, cipher: DataCipher) -> None:
    """Records Lithic's answer on the enrollment and, when it verifies, on the customer (with its event):
    the caller's transaction holds both."""
    await store.record_answer(
        conn,
        enrollment["id"],
        status=holder.status,
        status_reasons=holder.status_reasons,
        token=holder.token,
        account_token=holder.account_token,
    )
    if enrollment["workflow"] == "KYC_EXEMPT":
        return
    wanted = VERIFICATION_STATUS[holder.status]
    customer_id: str | None = await conn.fetchval(
        "SELECT customer_id FROM customers WHERE id = $1 AND org_id = $2",
        enrollment["customer_row_id"],
        enrollment["org_id"],
    )
    if customer_id is None:
        return
    record = await customer_store.fetch(conn, enrollment["org_id"], customer_id, for_update=True)
    if record is None or record["verification_status"] == wanted:
        return
    updated = await customer_store.update(conn, record["id"], {"verification_status": wanted})
    await events.record_event(conn, enrollment["org_id"], "customer_updated", customer_from_record(updated, cipher))


def result_error(holder: EnrolledHolder) -> str:
    """What a card that waits for, or was refused by, this result says in its `error`."""
    reasons = f": {', '.join(holder.status_reasons)}" if holder.status_reasons else ""
    if holder.status == "REJECTED":
        return f"account holder REJECTED{reasons}"
    return f"account holder {holder.status}{reasons}; the card is issued once Lithic accepts it"


class CannotEnroll(Exception):
    """The customer lacks what the workflow needs: no call is made, and the card fails with this."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


_US_ZIP_DIGITS = re.compile(r"([0-9]{5})-?([0-9]{4})?")


def _address(row: Any) -> dict[str, str]:
    """Lithic's Address: alpha-3 country, ZIP+4 as 12345-1234 (an absent country is the US)."""
    alpha2 = row["address_country_code"] or "US"
    country = pycountry.countries.get(alpha_2=alpha2)
    postal = row["address_zip"]
    if alpha2 in US_RULES_COUNTRIES and (digits := _US_ZIP_DIGITS.fullmatch(postal)):
        postal = digits[1] + (f"-{digits[2]}" if digits[2] else "")
    address = {
        "address1": row["address_line_one"],
        "city": row["address_city"],
        "state": row["address_state"],
        "postal_code": postal,
        "country": country.alpha_3 if country is not None else alpha2,
    }
    if row["address_line_two"]:
        address["address2"] = row["address_line_two"]
    return address


def _person(row: Any, ssn: str | None, who: str) -> dict[str, Any]:
    """Lithic's Individual (KYC's individual, KYB's control person and owners): government_id is required."""
    if ssn is None:
        raise CannotEnroll(f"account holder enrollment needs an ssn for {who}")
    return {
        "first_name": row["name_first"],
        "last_name": row["name_last"],
        "email": row["email"],
        "phone_number": row["phone_number"],
        "dob": row["date_of_birth"].isoformat(),
        "government_id": ssn,
        "address": _address(row),
    }


def _timestamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def enrollment_request(
    setting: AccountHoldersConfig,
    enrollment: asyncpg.Record,
    customer: Any,
    owners: list[Any],
    open_ssn: Callable[[bytes | None], str | None],
) -> dict[str, Any]:
    """The body of POST /v1/account_holders for this customer (Lithic's Kyc, Kyb or KycExempt).

    tos_timestamp is when the enrollment was first made: an organization turns enrollment on for customers
    who accepted its cardholder terms. A business's control person is the customer's own person fields (the
    representative Canopy's customer names; its `controller` has no date of birth or email), its owners
    the customer's beneficial owners. `open_ssn` opens a sealed SSN (the worker's cipher)."""
    workflow = enrollment["workflow"]
    external_id = customer["customer_id"]
    if workflow == "KYC_EXEMPT":
        return {
            "workflow": workflow,
            "kyc_exemption_type": setting.kyc_exemption_type,
            "first_name": customer["name_first"],
            "last_name": customer["name_last"],
            "email": customer["email"],
            "phone_number": customer["phone_number"],
            "address": _address(customer),
            "external_id": external_id,
        }
    tos_timestamp = _timestamp(enrollment["created_at"])
    if workflow.startswith("KYC_"):
        return {
            "workflow": workflow,
            "individual": _person(customer, open_ssn(customer["ssn_encrypted"]), "the customer"),
            "tos_timestamp": tos_timestamp,
            "external_id": external_id,
        }
    if customer["business_ein"] is None or customer["doing_business_as"] is None:
        raise CannotEnroll("account holder enrollment (KYB) needs the customer's business_details")
    if setting.nature_of_business is None:
        raise CannotEnroll("account holder enrollment (KYB) needs lithic_config.account_holders.nature_of_business")
    if not owners:
        raise CannotEnroll("account holder enrollment (KYB) needs the customer's beneficial owners")
    business: dict[str, Any] = {
        "legal_business_name": customer["business_legal_name"] or customer["doing_business_as"],
        "dba_business_name": customer["doing_business_as"],
        "government_id": customer["business_ein"],
        "phone_numbers": [customer["phone_number"]],
        "address": _address(customer),
    }
    body: dict[str, Any] = {
        "workflow": workflow,
        "business_entity": business,
        "control_person": _person(customer, open_ssn(customer["ssn_encrypted"]), "the customer (control person)"),
        "beneficial_owner_individuals": [
            _person(owner, open_ssn(owner["ssn_encrypted"]), f"beneficial owner {owner['beneficial_owner_id']}")
            for owner in owners
        ],
        "beneficial_owner_entities": [],
        "nature_of_business": setting.nature_of_business,
        "tos_timestamp": tos_timestamp,
        "external_id": external_id,
    }
    if customer["website"]:
        body["website_url"] = customer["website"]
    return body
