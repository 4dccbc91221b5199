"""What every card issuer takes and answers, in Lithic's shapes: the request, the card, the errors, and
the protocol the card worker and the card rules call (LithicClient and CardSimulator provide it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


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


@dataclass(frozen=True)
class CardRequest:
    """What to ask Lithic for. None means "let Lithic decide" and is left out of the body."""

    type: str
    memo: str | None = None
    state: str | None = None
    spend_limit: int | None = None
    card_program_token: str | None = None

    def to_json(self) -> dict[str, Any]:
        fields = {
            "type": self.type,
            "memo": self.memo,
            "state": self.state,
            "spend_limit": self.spend_limit,
            "card_program_token": self.card_program_token,
        }
        return {key: value for key, value in fields.items() if value is not None}


@dataclass(frozen=True)
class IssuedCard:
    """The part of Lithic's card object we keep (never the PAN or CVV)."""

    token: str
    last_four: str
    state: str
    type: str
    memo: str | None
    spend_limit: int | None


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

    async def aclose(self) -> None: ...
