"""Enrolls a card's customer at Lithic before the card is issued (issue 13 item 5), for the card worker.

Once per customer and organization, whatever the workers and processes do:
- the enrollment row (with its Idempotency-Key) is made before any call, one per customer (a unique key);
- a worker calls Lithic only under the row's lease, so two workers never enroll the same customer at once
  (the other puts its card back for a moment);
- a worker killed mid-call leaves the lease to expire, and the next sends the same key: Lithic answers the
  account holder it made, never a second.
The SSNs are opened here, put in the request to Lithic, and nowhere else (not logged, not stored)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import asyncpg

from canopy_svc.core.crypto import DataCipher
from canopy_svc.issuers.account_holders import PENDING_STATUSES, EnrolledHolder
from canopy_svc.issuers.card_issuer import LithicRejected, LithicRetryable
from canopy_svc.issuers.gateway import Issuer
from canopy_svc.rules import account_holders as rules
from canopy_svc.rules.organization import account_holders_config
from canopy_svc.store import account_holders as store
from canopy_svc.store.ssn import SSN_CONTEXT

log = logging.getLogger("canopy_svc.account_holders")


@dataclass(frozen=True)
class Proceed:
    """Issue the card, under `account_token` (None: enrollment is off). `called_lithic`: a call went out."""

    account_token: str | None
    called_lithic: bool = False


@dataclass(frozen=True)
class Wait:
    """Keep the card PENDING with `error`. `soon`: another worker is mid-enrollment (retry shortly), else
    Lithic's review is pending (retry with a backoff by the enrollment's `attempts`, reading it again)."""

    error: str
    soon: bool = False
    attempts: int = 1
    retryable: LithicRetryable | None = None  # Lithic (or the network) failed the call: its Retry-After


@dataclass(frozen=True)
class Refuse:
    """The card fails with `error`: the enrollment was rejected, or cannot be made from what we hold."""

    error: str


Outcome = Proceed | Wait | Refuse
_NOT_ENROLLED = Proceed(None)
_IN_PROGRESS = Wait("Enrolling the account holder at Lithic", soon=True)


class Enroller:
    def __init__(self, pool: asyncpg.Pool, cipher: DataCipher, *, lease_seconds: float) -> None:
        self.pool = pool
        self.cipher = cipher
        self.lease_seconds = lease_seconds

    async def account_for(self, card: Any, issuer: Issuer) -> Outcome:
        """What the card is issued under. Raises LithicRejected (Lithic refused the enrollment request: the
        card fails) as a card call does. Every other failure is a Wait: the card was not sent, and its
        attempt must not count. The account decided is committed on the card before it is sent
        (cards.sent_account_token), so a card sent before keeps the account it was sent under."""
        try:
            outcome = await self._account_for(card, issuer)
            if isinstance(outcome, Proceed):  # committed before the send: every retry sends the same
                account_token = await store.decide_sent_account(self.pool, card["id"], outcome.account_token)
                return Proceed(account_token, called_lithic=outcome.called_lithic)
            return outcome
        except LithicRejected:
            raise
        except LithicRetryable as retryable:
            return Wait("Enrolling the account holder: issuer unavailable; retrying", retryable=retryable)
        except Exception as exc:  # a bug must not issue the card under no account; the lease retries later
            log.error("account holder enrollment failed unexpectedly", extra={"error_type": type(exc).__name__})
            return Wait("Enrolling the account holder failed; retrying")

    async def _account_for(self, card: Any, issuer: Issuer) -> Outcome:
        context = await store.card_context(self.pool, card["id"])
        which = "simulator_setting" if issuer.simulated else "setting"
        setting = account_holders_config(context[which]) if context is not None else None
        if context is not None and context["sent_account_token"] is not None:
            return Proceed(context["sent_account_token"] or None)  # sent before: the same request again
        if context is None or setting is None or not setting.enabled:
            return _NOT_ENROLLED
        customer = await store.customer(self.pool, card["org_id"], context["customer_row_id"])
        if customer is None:
            return _NOT_ENROLLED
        workflow = setting.kyb_workflow if customer["customer_type"] == "business" else setting.workflow
        enrollment = await store.ensure(self.pool, card["org_id"], context["customer_row_id"], workflow)
        status = enrollment["status"]
        body: dict[str, Any] = {}
        if status is not None and status not in PENDING_STATUSES:
            return _outcome(_holder(enrollment), called_lithic=False, attempts=enrollment["attempts"])
        if status is None:
            owners = await store.beneficial_owners(self.pool, card["org_id"], context["customer_row_id"])
            try:
                body = rules.enrollment_request(setting, enrollment, customer, owners, self._open_ssn)
            except rules.CannotEnroll as cannot:
                return Refuse(cannot.message)
        if not await store.lease(self.pool, enrollment["id"], lease_seconds=self.lease_seconds):
            return _IN_PROGRESS
        try:
            if status is None:
                holder = await issuer.client.create_account_holder(
                    issuer.base_url, issuer.api_key, enrollment["idempotency_key"], body
                )
            else:  # pending at Lithic: read how its review stands
                holder = await issuer.client.get_account_holder(issuer.base_url, issuer.api_key, enrollment["token"])
        except LithicRejected as rejected:
            if status is None:
                await store.renew_key(self.pool, enrollment["id"])
                refused = {"card_id": card["id"], "status": rejected.status}
                log.warning("account holder enrollment refused", extra=refused)
                raise LithicRejected(
                    rejected.status, f"account holder enrollment refused: {rejected.message}"
                ) from rejected
            await store.release(self.pool, enrollment["id"])
            error = f"account holder {status}; reading it again failed: {rejected.message}"
            return Wait(error, attempts=enrollment["attempts"] + 1)
        except LithicRetryable as retryable:  # the next worker may try at once, with the same key
            await store.release(self.pool, enrollment["id"])
            error = "Enrolling the account holder: issuer unavailable; retrying"
            return Wait(error, attempts=enrollment["attempts"] + 1, retryable=retryable)
        except BaseException:  # cancelled or a bug: the next worker may try at once, with the same key
            await store.release(self.pool, enrollment["id"])
            raise
        async with self.pool.acquire() as conn, conn.transaction():  # the result, the customer, its event
            await rules.record_result(conn, enrollment, holder, self.cipher)
        log.info("account holder evaluated", extra={"card_id": card["id"], "holder_status": holder.status})
        return _outcome(holder, called_lithic=True, attempts=enrollment["attempts"] + 1)

    def _open_ssn(self, sealed: bytes | None) -> str | None:
        return self.cipher.decrypt(bytes(sealed), context=SSN_CONTEXT) if sealed is not None else None


def _holder(enrollment: Any) -> EnrolledHolder:
    return EnrolledHolder(
        token=enrollment["token"],
        account_token=enrollment["account_token"],
        status=enrollment["status"],
        status_reasons=tuple(enrollment["status_reasons"]),
    )


def _outcome(holder: EnrolledHolder, *, called_lithic: bool, attempts: int) -> Outcome:
    if holder.status == "ACCEPTED":
        if holder.account_token is None:
            return Refuse("account holder ACCEPTED without an account_token")
        return Proceed(holder.account_token, called_lithic=called_lithic)
    if holder.status == "REJECTED":
        return Refuse(rules.result_error(holder))
    return Wait(rules.result_error(holder), attempts=attempts)
