"""Lithic's account holders: what enrolling a customer answers (postAccountHolders, getAccountHolder).

From Lithic's spec (lithic-com/lithic-openapi, components/schemas AccountHolder, Kyc, Kyb, KycExempt;
the SDK's types/account_holder_create_response.py): the answer carries `token` (the account holder),
`account_token` (its account, which cards are created under: postCards' `account_token`), `status`
(ACCEPTED, PENDING_REVIEW, PENDING_DOCUMENT, PENDING_RESUBMIT, REJECTED; deprecated on the object in
favour of `verification_application.status`, which is read when `status` is absent) and
`status_reasons` (e.g. ID_VERIFICATION_FAILURE)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

ACCOUNT_HOLDER_STATUSES = frozenset({"ACCEPTED", "PENDING_REVIEW", "PENDING_DOCUMENT", "PENDING_RESUBMIT", "REJECTED"})
PENDING_STATUSES = frozenset({"PENDING_REVIEW", "PENDING_DOCUMENT", "PENDING_RESUBMIT"})
_REASON = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
MAX_REASONS = 20


@dataclass(frozen=True)
class EnrolledHolder:
    """Lithic's account holder, as far as we keep it: tokens and the KYC/KYB result, no personal data."""

    token: str
    account_token: str | None
    status: str
    status_reasons: tuple[str, ...] = ()


def _uuid_or_none(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def enrolled_holder(data: object) -> EnrolledHolder:
    """Lithic's AccountHolder answer; ValueError when it is not one this service can record."""
    if not isinstance(data, dict):
        raise ValueError("account holder is not an object")
    token = _uuid_or_none(data.get("token"))
    application = data.get("verification_application")
    status = data.get("status")
    reasons = data.get("status_reasons")
    if status is None and isinstance(application, dict):
        status, reasons = application.get("status"), application.get("status_reasons")
    if token is None or not isinstance(status, str) or status not in ACCOUNT_HOLDER_STATUSES:
        raise ValueError("account holder lacks a token or a known status")
    kept = tuple(r for r in reasons if isinstance(r, str) and _REASON.fullmatch(r)) if isinstance(reasons, list) else ()
    return EnrolledHolder(
        token=token,
        # "" on a REJECTED answer in Lithic's own examples: no account.
        account_token=_uuid_or_none(data.get("account_token")),
        status=status,
        status_reasons=kept[:MAX_REASONS],
    )


# What a message from Lithic about an enrollment may quote back of what was sent: kept on a card and
# shown to its organization, so an SSN- or email-shaped run is taken out first.
_SSN_SHAPED = re.compile(r"\b\d{3}-?\d{2}-?\d{4}\b")
_EMAIL_SHAPED = re.compile(r"[^\s@]+@[^\s@]+")


def without_personal_data(message: str) -> str:
    return _EMAIL_SHAPED.sub("[redacted]", _SSN_SHAPED.sub("[redacted]", message))
