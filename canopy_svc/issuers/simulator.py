"""A Lithic stand-in with no network, for organizations without Lithic credentials."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import replace
from datetime import UTC, datetime

from canopy_svc.issuers.card_issuer import CardRequest, IssuedCard, LithicRejected


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
            self._cards.pop(self._by_idempotency_key.pop(oldest), None)
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

    async def aclose(self) -> None:
        return None


# The spec's enums (type includes the deprecated values Lithic still accepts).
_CARD_TYPES = frozenset({"MERCHANT_LOCKED", "PHYSICAL", "SINGLE_USE", "VIRTUAL", "UNLOCKED", "DIGITAL_WALLET"})
_CREATE_STATES = frozenset({"OPEN", "PAUSED"})
_UPDATE_STATES = frozenset({"OPEN", "PAUSED", "CLOSED"})


def _check_spend_limit(spend_limit: int | None) -> None:
    if spend_limit is not None and (isinstance(spend_limit, bool) or spend_limit < 0):
        raise LithicRejected(400, "spend_limit must be a non-negative integer")
