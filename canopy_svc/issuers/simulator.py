"""A Lithic stand-in with no network, for organizations without Lithic credentials."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from canopy_svc.issuers.account_holders import EnrolledHolder
from canopy_svc.issuers.card_issuer import CardRequest, IssuedCard, LithicRejected
from canopy_svc.issuers.webhooks import new_secret, signature


@dataclass(frozen=True)
class SimulatedAuthorization:
    """CardSimulator.authorize's result: the decision, and the webhook (its body and Standard Webhooks
    headers) it sends about the card, if the card changed."""

    result: str  # APPROVED or DECLINED
    webhook_body: bytes = b""
    webhook_headers: dict[str, str] = field(default_factory=dict)


# Test SSNs (README, "Lithic account holders"): an enrollment naming one, as the person's or as a business's
# control person's or owner's government_id, is REJECTED, or pending where the workflow can be
# (PENDING_DOCUMENT under KYC_ADVANCED, PENDING_REVIEW under KYB_BASIC). tests/fake_lithic.py decides alike.
REJECTED_TEST_SSN = "666-66-6666"
# Lithic: "A card can be reissued or renewed a total of 8 times."
MAX_REISSUES_AND_RENEWALS = 8
PENDING_TEST_SSN = "555-55-5555"


class CardSimulator:
    """Lithic stand-in for organizations without Lithic credentials (demos, development): no network.

    Behaves like Lithic where the worker can tell: the same Idempotency-Key returns the same card, CLOSED is
    final, an unknown token is a 404, out-of-spec values are a 400.
    """

    # Bounded: a long-running sandbox issues cards forever; old ones are never asked for again.
    MAX_REMEMBERED = 10_000

    def __init__(self) -> None:
        self._by_idempotency_key: dict[str, str] = {}
        self._cards: dict[str, IssuedCard] = {}
        self._replacements: dict[str, int] = {}  # card token -> reissues and renewals so far
        # Signs the simulator's own webhooks (authorize()): made per process, as its cards are.
        self.webhook_secret = new_secret()
        self._holders_by_key: dict[str, EnrolledHolder] = {}
        self._holders: dict[str, EnrolledHolder] = {}

    async def create_card(self, base_url: str, api_key: str, idempotency_key: str, card: CardRequest) -> IssuedCard:
        existing = self._by_idempotency_key.get(idempotency_key)
        if existing is not None:
            return self._cards[existing]
        if card.type not in _CARD_TYPES:
            raise LithicRejected(400, f"Invalid type: {card.type}")
        if card.state is not None and card.state not in _CREATE_STATES:
            raise LithicRejected(400, f"Invalid state: {card.state}")
        _check_spend_limit(card.spend_limit)
        if card.type == "PHYSICAL" and card.shipping_address is None:
            raise LithicRejected(400, "shipping_address is required for PHYSICAL cards")
        if (card.exp_month is None) != (card.exp_year is None):
            raise LithicRejected(400, "exp_month and exp_year go together")
        replaced = self._cards.get(card.replacement_for) if card.replacement_for else None
        if replaced is not None and replaced.type != card.type:  # one it forgot is taken on trust
            raise LithicRejected(400, f"A {replaced.type} card is replaced by a {replaced.type} card")
        now = datetime.now(UTC).replace(microsecond=0)
        issued = IssuedCard(
            token=str(uuid.uuid4()),
            last_four=f"{secrets.randbelow(10_000):04d}",
            # As at Lithic: a PHYSICAL card waits to be made and sent before it can be OPEN.
            state="PENDING_FULFILLMENT" if card.type == "PHYSICAL" else card.state or "OPEN",
            type=card.type,
            memo=card.memo,
            spend_limit=card.spend_limit if card.spend_limit is not None else 0,
            spend_limit_duration=card.spend_limit_duration or "TRANSACTION",
            exp_month=card.exp_month or f"{now.month:02d}",
            exp_year=card.exp_year or str(now.year + 5),
            created=now,
            hostname=None,
        )
        self._cards[issued.token] = issued
        self._by_idempotency_key[idempotency_key] = issued.token
        if len(self._cards) > self.MAX_REMEMBERED:  # dicts keep insertion order: drop the oldest
            oldest = next(iter(self._by_idempotency_key))
            forgotten = self._by_idempotency_key.pop(oldest)
            self._cards.pop(forgotten, None)
            self._replacements.pop(forgotten, None)
        return issued

    async def update_card(
        self,
        base_url: str,
        api_key: str,
        card_token: str,
        *,
        state: str | None = None,
        spend_limit: int | None = None,
    ) -> IssuedCard:
        current = self._cards.get(card_token)
        if current is None:
            raise LithicRejected(404, "Card not found")
        if current.state == "CLOSED":
            raise LithicRejected(400, "Card is closed and cannot be updated")
        if state is not None and state not in _UPDATE_STATES:
            raise LithicRejected(400, f"Invalid state: {state}")
        _check_spend_limit(spend_limit)
        updated = replace(
            current,
            state=state if state is not None else current.state,
            spend_limit=spend_limit if spend_limit is not None else current.spend_limit,
        )
        self._cards[card_token] = updated
        return updated

    async def get_card(self, base_url: str, api_key: str, card_token: str) -> IssuedCard:
        current = self._cards.get(card_token)
        if current is None:  # made by another process, or forgotten (MAX_REMEMBERED)
            raise LithicRejected(404, "Card not found")
        return current

    async def renew_card(self, base_url: str, api_key: str, card_token: str, body: dict[str, Any]) -> IssuedCard:
        """As Lithic: a PHYSICAL or VIRTUAL card gets a new expiry (the one given, else six years on)."""
        current = self._replaceable(card_token, ("PHYSICAL", "VIRTUAL"), "renewed")
        if "shipping_address" not in body:
            raise LithicRejected(400, "shipping_address is required")
        if ("exp_month" in body) != ("exp_year" in body):
            raise LithicRejected(400, "exp_month and exp_year go together")
        now = datetime.now(UTC)
        renewed = replace(
            current,
            exp_month=body.get("exp_month", f"{now.month:02d}"),
            exp_year=body.get("exp_year", str(now.year + 6)),
        )
        self._cards[card_token] = renewed
        return renewed

    async def reissue_card(self, base_url: str, api_key: str, card_token: str, body: dict[str, Any]) -> IssuedCard:
        """As Lithic: a duplicate of a PHYSICAL card is made and sent; number and expiry stay."""
        return self._replaceable(card_token, ("PHYSICAL",), "reissued")

    def _replaceable(self, card_token: str, types: tuple[str, ...], done: str) -> IssuedCard:
        """The card, counted against Lithic's limit of 8 reissues and renewals; a 400 or 404 as Lithic's."""
        current = self._cards.get(card_token)
        if current is None:
            raise LithicRejected(404, "Card not found")
        if current.type not in types:
            raise LithicRejected(400, f"A {current.type} card cannot be {done}")
        if current.state == "CLOSED":
            raise LithicRejected(400, f"A closed card cannot be {done}")
        if self._replacements.get(card_token, 0) >= MAX_REISSUES_AND_RENEWALS:
            raise LithicRejected(400, f"A card is reissued or renewed {MAX_REISSUES_AND_RENEWALS} times at most")
        self._replacements[card_token] = self._replacements.get(card_token, 0) + 1
        return current

    def authorize(self, card_token: str, amount: int, merchant: str) -> SimulatedAuthorization | None:
        """A purchase with the card, as Lithic's POST /v1/simulate/authorize: approved or declined, and
        the signed card.updated webhook Lithic would then send when the card's state changed (a
        SINGLE_USE card closes after its first authorization; a MERCHANT_LOCKED card locks to its first
        merchant, which a read-back shows). None for a card it does not know."""
        current = self._cards.get(card_token)
        if current is None:
            return None
        limit = current.spend_limit or 0
        if current.state != "OPEN" or current.hostname not in (None, merchant) or (limit and amount > limit):
            return SimulatedAuthorization("DECLINED")
        changed = current
        if current.type == "MERCHANT_LOCKED" and current.hostname is None:
            changed = replace(changed, hostname=merchant)
        if current.type == "SINGLE_USE":
            changed = replace(changed, state="CLOSED")
        self._cards[card_token] = changed
        if changed.state == current.state:
            return SimulatedAuthorization("APPROVED")
        event: dict[str, Any] = {
            "event_type": "card.updated",
            "token": card_token,
            "state": changed.state,
            "previous_fields": {"state": current.state},
        }
        body = json.dumps(event).encode()
        webhook_id = "msg_" + secrets.token_hex(12)
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(self.webhook_secret, webhook_id, timestamp, body),
        }
        return SimulatedAuthorization("APPROVED", body, headers)

    async def create_account_holder(
        self, base_url: str, api_key: str, idempotency_key: str, body: dict[str, Any]
    ) -> EnrolledHolder:
        """Decides by the test SSNs above; everything else is ACCEPTED. The same key answers the same holder."""
        existing = self._holders_by_key.get(idempotency_key)
        if existing is not None:
            return existing
        workflow = body.get("workflow")
        if workflow not in {"KYC_BASIC", "KYC_ADVANCED", "KYC_EXEMPT", "KYB_BASIC"}:
            raise LithicRejected(400, f"Invalid workflow: {workflow}")
        status, reasons = simulated_evaluation(body)
        holder = EnrolledHolder(
            token=str(uuid.uuid4()),
            account_token=str(uuid.uuid4()) if status != "REJECTED" else None,
            status=status,
            status_reasons=reasons,
        )
        self._holders_by_key[idempotency_key] = holder
        self._holders[holder.token] = holder
        if len(self._holders) > self.MAX_REMEMBERED:
            oldest = next(iter(self._holders_by_key))
            self._holders.pop(self._holders_by_key.pop(oldest).token, None)
        return holder

    async def get_account_holder(self, base_url: str, api_key: str, account_holder_token: str) -> EnrolledHolder:
        holder = self._holders.get(account_holder_token)
        if holder is None:
            raise LithicRejected(404, "Account holder not found")
        return holder

    async def aclose(self) -> None:
        return None


def _government_ids(body: dict[str, Any]) -> list[str]:
    people = [body.get("individual"), body.get("control_person"), *(body.get("beneficial_owner_individuals") or [])]
    return [str(person.get("government_id", "")).replace("-", "") for person in people if isinstance(person, dict)]


def simulated_evaluation(body: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """Lithic's evaluation as the simulator plays it: (status, status_reasons)."""
    if body.get("workflow") == "KYC_EXEMPT":
        return "ACCEPTED", ()
    ids = _government_ids(body)
    if REJECTED_TEST_SSN.replace("-", "") in ids:
        return "REJECTED", ("ID_VERIFICATION_FAILURE",)
    if PENDING_TEST_SSN.replace("-", "") in ids:
        if body.get("workflow") == "KYC_ADVANCED":
            return "PENDING_DOCUMENT", ("DOB_VERIFICATION_FAILURE",)
        if body.get("workflow") == "KYB_BASIC":
            return "PENDING_REVIEW", ("PRIMARY_BUSINESS_ENTITY_ADDRESS_VERIFICATION_FAILURE",)
    return "ACCEPTED", ()


# The spec's enums (type includes the deprecated values Lithic still accepts).
_CARD_TYPES = frozenset({"MERCHANT_LOCKED", "PHYSICAL", "SINGLE_USE", "VIRTUAL", "UNLOCKED", "DIGITAL_WALLET"})
_CREATE_STATES = frozenset({"OPEN", "PAUSED"})
_UPDATE_STATES = frozenset({"OPEN", "PAUSED", "CLOSED"})


def _check_spend_limit(spend_limit: int | None) -> None:
    if spend_limit is not None and (isinstance(spend_limit, bool) or spend_limit < 0):
        raise LithicRejected(400, "spend_limit must be a non-negative integer")
