"""What every card issuer takes and answers, in Lithic's shapes: the request, the card, the errors, and
the protocol the card worker and the card rules call (LithicClient and CardSimulator provide it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from canopy_svc.issuers.account_holders import EnrolledHolder


class LithicError(Exception):
    """Anything the client raises. `debugging_request_id` is Lithic's id for support, when it sent one."""

    def __init__(self, message: str, *, debugging_request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.debugging_request_id = debugging_request_id


class LithicRetryable(LithicError):
    """Try again later with the same Idempotency-Key: 408/409/429/5xx, timeouts, connection failures.

    `retry_after` is Lithic's Retry-After in seconds when it sent one; `status` is None when no HTTP answer
    came back at all.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        debugging_request_id: str | None = None,
    ) -> None:
        super().__init__(message, debugging_request_id=debugging_request_id)
        self.status = status
        self.retry_after = retry_after


class LithicRejected(LithicError):
    """Final: retrying the same request cannot succeed. The card becomes FAILED with `message`.

    `status` is Lithic's HTTP status, or 0 when the request could not be sent at all because of our own
    configuration (base_url or API key unusable), which no retry fixes either.
    """

    def __init__(self, status: int, message: str, *, debugging_request_id: str | None = None) -> None:
        super().__init__(message, debugging_request_id=debugging_request_id)
        self.status = status

    def __str__(self) -> str:
        return f"Lithic rejected the request ({self.status}): {self.message}"


# Lithic deprecates UNLOCKED ("please use VIRTUAL instead"): Canopy's clients may still ask for it, and
# Lithic is sent VIRTUAL, which behaves the same.
_SENT_AS = {"UNLOCKED": "VIRTUAL"}


def lithic_type(requested: str) -> str:
    """The card type sent to Lithic for the type a card was asked as."""
    return _SENT_AS.get(requested, requested)


@dataclass(frozen=True)
class CardRequest:
    """What to ask Lithic for. None means "let Lithic decide" and is left out of the body.

    `shipping_address` is Lithic's ShippingAddress object (PHYSICAL cards only)."""

    type: str
    memo: str | None = None
    state: str | None = None
    spend_limit: int | None = None
    card_program_token: str | None = None
    spend_limit_duration: str | None = None
    exp_month: str | None = None
    exp_year: str | None = None
    product_id: str | None = None
    shipping_method: str | None = None
    shipping_address: dict[str, str] | None = field(default=None, repr=False)  # a name and a home address
    # The customer's Lithic account (its account holder's, issue 13 item 5); None: the program's default.
    account_token: str | None = None
    replacement_for: str | None = None  # the token of the card this one replaces (same type: PHYSICAL, VIRTUAL)

    def to_json(self) -> dict[str, Any]:
        fields = {
            "type": self.type,
            "memo": self.memo,
            "state": self.state,
            "spend_limit": self.spend_limit,
            "card_program_token": self.card_program_token,
            "spend_limit_duration": self.spend_limit_duration,
            "exp_month": self.exp_month,
            "exp_year": self.exp_year,
            "product_id": self.product_id,
            "shipping_method": self.shipping_method,
            "shipping_address": self.shipping_address,
            "account_token": self.account_token,
            "replacement_for": self.replacement_for,
        }
        return {key: value for key, value in fields.items() if value is not None}


@dataclass(frozen=True)
class IssuedCard:
    """The part of Lithic's card object we keep (never the PAN or CVV).

    `hostname` is the merchant a MERCHANT_LOCKED card is locked to (Lithic answers "" until it is)."""

    token: str
    last_four: str
    state: str
    type: str
    memo: str | None
    spend_limit: int | None
    spend_limit_duration: str | None = None
    exp_month: str | None = None
    exp_year: str | None = None
    created: datetime | None = None
    hostname: str | None = None


class CardIssuer(Protocol):
    """What the card worker needs; both LithicClient and CardSimulator provide it."""

    async def create_card(self, base_url: str, api_key: str, idempotency_key: str, card: CardRequest) -> IssuedCard: ...

    async def update_card(
        self,
        base_url: str,
        api_key: str,
        card_token: str,
        *,
        state: str | None = None,
        spend_limit: int | None = None,
    ) -> IssuedCard: ...

    async def get_card(self, base_url: str, api_key: str, card_token: str) -> IssuedCard: ...

    async def renew_card(self, base_url: str, api_key: str, card_token: str, body: dict[str, Any]) -> IssuedCard:
        """POST /v1/cards/{card_token}/renew: `body` has a shipping_address and may have exp_month and
        exp_year, product_id and shipping_method."""
        ...

    async def reissue_card(self, base_url: str, api_key: str, card_token: str, body: dict[str, Any]) -> IssuedCard:
        """POST /v1/cards/{card_token}/reissue (PHYSICAL): `body` may have product_id, shipping_method and
        shipping_address."""
        ...

    async def create_account_holder(
        self, base_url: str, api_key: str, idempotency_key: str, body: dict[str, Any]
    ) -> EnrolledHolder: ...

    async def get_account_holder(self, base_url: str, api_key: str, account_holder_token: str) -> EnrolledHolder: ...

    async def aclose(self) -> None: ...
