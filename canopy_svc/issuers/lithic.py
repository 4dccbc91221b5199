"""Issuing payment cards at Lithic: the async HTTP client.

Wire rules, checked against Lithic's OpenAPI spec (card API: `POST /v1/cards` = operationId postCards,
`PATCH /v1/cards/{card_token}` = patchCardByToken; mirrored in github.com/api-evangelist/lithic,
openapi/lithic-card-api-openapi.yml) and Lithic's generated SDK (github.com/lithic-com/lithic-python,
src/lithic/_client.py and types/card_create_params.py, card_update_params.py):

- Auth is the `ApiKeyAuth` scheme: `Authorization: <api-key>`, the raw key with no "Bearer" (Lithic's
  401 text: "Please provide API key in the form Authorization: [api-key]"; the SDK sends the bare key).
- `POST /v1/cards` takes an `Idempotency-Key` header (format uuid). The body requires `type` (enum
  MERCHANT_LOCKED, PHYSICAL, SINGLE_USE, VIRTUAL, and the deprecated UNLOCKED/DIGITAL_WALLET); optional
  `memo` (string), `state` (OPEN|PAUSED), `spend_limit` (integer cents, minimum 0; 0 means "no limit"),
  `card_program_token` (uuid). Lithic answers 200 with the card.
- `POST /v1/cards/{card_token}/renew` (PHYSICAL, VIRTUAL) requires `shipping_address` and takes
  `exp_month`/`exp_year`, `product_id`, `shipping_method`, `carrier`; `POST /v1/cards/{card_token}/reissue`
  (PHYSICAL) takes the same but the expiry, all optional. Both answer the card; neither declares an
  Idempotency-Key, and a card is reissued or renewed 8 times at most.
- `PATCH /v1/cards/{card_token}` (card_token is a uuid) takes `state` (CLOSED|OPEN|PAUSED; CLOSED is final)
  and/or `spend_limit`; unsupplied fields stay unchanged. The spec declares no Idempotency-Key here: setting
  absolute values is idempotent already.
- The card answer carries `token`, `last_four`, `state`, `type`, `spend_limit`, `memo`, `created`, ... and,
  for PCI-enabled programs, `pan` and `cvv`, which we never keep.
- Errors are `{"debugging_request_id": uuid, "message": str}` (schema `error`).
"""

from __future__ import annotations

import email.utils
import logging
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, TypeVar

import httpx

from canopy_svc.issuers.account_holders import EnrolledHolder, enrolled_holder, without_personal_data
from canopy_svc.issuers.card_issuer import CardRequest, IssuedCard, LithicRejected, LithicRetryable
from canopy_svc.issuers.egress import DestinationRefused, GuardedTransport
from canopy_svc.issuers.hosts import LITHIC_ONLY, LithicHosts

log = logging.getLogger("canopy_svc.lithic")

LITHIC_SANDBOX_URL = "https://sandbox.lithic.com"
LITHIC_PRODUCTION_URL = "https://api.lithic.com"

MAX_MESSAGE_LENGTH = 500
MAX_RETRY_AFTER = 3600.0

# Lithic's generated SDKs also retry 408 (request timeout) and 409 (lock timeout: e.g. our retry arrives while
# Lithic still processes the first attempt with the same Idempotency-Key). Treating them as final would mark a
# card FAILED that Lithic is about to create, so they count as retryable like 429 and 5xx.
_RETRYABLE_4XX = frozenset({408, 409, 429})

_T = TypeVar("_T")

_DELAY_SECONDS = re.compile(r"\d+(\.\d+)?")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date), clamped to [0, 3600].

    None when the header is absent or unreadable, so the caller falls back to its own backoff.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if _DELAY_SECONDS.fullmatch(value):
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # HTTP-dates are always GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class LithicClient:
    """Talks to Lithic. One shared connection pool; base_url and key per call (each organization has its own).

    It never retries by itself: the caller (the card worker) owns the schedule and persists the
    Idempotency-Key, so a retry after a crash reuses it too.
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        hosts: LithicHosts = LITHIC_ONLY,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`hosts` is checked on every base_url, and again on the address each connection dials;
        `transport` replaces the guarded one (tests only: it dials whatever it likes)."""
        self.hosts = hosts
        # No redirects: a redirected POST could be replayed as GET, leak the key or reach another host.
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), transport=transport or GuardedTransport(hosts), follow_redirects=False
        )

    async def __aenter__(self) -> LithicClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create_card(self, base_url: str, api_key: str, idempotency_key: str, card: CardRequest) -> IssuedCard:
        if not _is_uuid(idempotency_key):
            raise ValueError("idempotency_key must be a UUID (Lithic's Idempotency-Key is a uuid)")
        return await self._send(
            "POST", base_url, "/v1/cards", api_key, card.to_json(), {"Idempotency-Key": idempotency_key}
        )

    async def update_card(
        self,
        base_url: str,
        api_key: str,
        card_token: str,
        *,
        state: str | None = None,
        spend_limit: int | None = None,
    ) -> IssuedCard:
        body: dict[str, Any] = {}
        if state is not None:
            body["state"] = state
        if spend_limit is not None:
            body["spend_limit"] = spend_limit
        if not body:
            raise ValueError("update_card needs state and/or spend_limit")
        # The spec's card_token is a uuid; checking it also keeps a token from reshaping the path ("../x").
        if not _is_uuid(card_token):
            raise ValueError("card_token must be a UUID")
        return await self._send("PATCH", base_url, f"/v1/cards/{card_token}", api_key, body, {})

    async def get_card(self, base_url: str, api_key: str, card_token: str) -> IssuedCard:
        """GET /v1/cards/{card_token}: the card as Lithic has it now (the reconciler's read-back)."""
        if not _is_uuid(card_token):
            raise ValueError("card_token must be a UUID")
        return await self._send("GET", base_url, f"/v1/cards/{card_token}", api_key, None, {})

    async def renew_card(self, base_url: str, api_key: str, card_token: str, body: dict[str, Any]) -> IssuedCard:
        """POST /v1/cards/{card_token}/renew (postCardRenew): a new expiry and CVV, same token and PAN. The
        spec takes no Idempotency-Key here, and Lithic counts each renewal: the caller never resends one
        whose outcome it does not know, it reads the card back."""
        if not _is_uuid(card_token):
            raise ValueError("card_token must be a UUID")
        if "shipping_address" not in body:
            raise ValueError("Lithic's renew requires a shipping_address")
        return await self._send("POST", base_url, f"/v1/cards/{card_token}/renew", api_key, body, {})

    async def reissue_card(self, base_url: str, api_key: str, card_token: str, body: dict[str, Any]) -> IssuedCard:
        """POST /v1/cards/{card_token}/reissue (postCardReissue): a duplicate PHYSICAL card, same PAN and
        expiry; no Idempotency-Key either (see renew_card)."""
        if not _is_uuid(card_token):
            raise ValueError("card_token must be a UUID")
        return await self._send("POST", base_url, f"/v1/cards/{card_token}/reissue", api_key, body, {})

    async def create_account_holder(
        self, base_url: str, api_key: str, idempotency_key: str, body: dict[str, Any]
    ) -> EnrolledHolder:
        """POST /v1/account_holders (postAccountHolders): `body` is a Kyc, Kyb or KycExempt request. Lithic's
        messages about it are cleared of SSN- and email-shaped text (they end up on a card's error)."""
        if not _is_uuid(idempotency_key):
            raise ValueError("idempotency_key must be a UUID")
        headers = {"Idempotency-Key": idempotency_key}
        return await self._call("POST", base_url, "/v1/account_holders", api_key, body, headers, _holder_answer)

    async def get_account_holder(self, base_url: str, api_key: str, account_holder_token: str) -> EnrolledHolder:
        """GET /v1/account_holders/{account_holder_token} (getAccountHolder): its evaluation as it stands."""
        if not _is_uuid(account_holder_token):
            raise ValueError("account_holder_token must be a UUID")
        path = f"/v1/account_holders/{account_holder_token}"
        return await self._call("GET", base_url, path, api_key, None, {}, _holder_answer)

    async def _send(
        self,
        method: str,
        base_url: str,
        path: str,
        api_key: str,
        body: dict[str, Any] | None,
        extra_headers: dict[str, str],
    ) -> IssuedCard:
        return await self._call(method, base_url, path, api_key, body, extra_headers, _issued_card)

    async def _call(
        self,
        method: str,
        base_url: str,
        path: str,
        api_key: str,
        body: dict[str, Any] | None,
        extra_headers: dict[str, str],
        parse: Callable[[object], _T],
    ) -> _T:
        url = _endpoint(self.hosts, base_url, path)
        _check_api_key(api_key)
        headers = {"Authorization": api_key, "Accept": "application/json", **extra_headers}
        try:
            response = await self._http.request(method, url, headers=headers, json=body)
        except DestinationRefused as exc:
            # The base_url (or what its name resolves to now) is not Lithic's: no retry makes it so.
            raise LithicRejected(0, "Lithic base_url does not lead to an allowed Lithic host") from exc
        except httpx.TimeoutException as exc:
            raise LithicRetryable(f"Lithic did not answer in time ({type(exc).__name__})") from exc
        except httpx.LocalProtocolError as exc:
            # Our own request is malformed; sending it again cannot help.
            raise LithicRejected(0, f"Could not send the request to Lithic ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise LithicRetryable(f"Could not reach Lithic ({type(exc).__name__})") from exc
        # Status and path only: bodies hold card data and headers hold the key.
        log.debug("lithic %s %s -> %s", method, path, response.status_code)
        return _interpret(response, api_key, parse)


def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _endpoint(hosts: LithicHosts, base_url: str, path: str) -> str:
    # Checked here too, not only when a tenant sets it: stored base_urls predate the rule, operators change it.
    problem = hosts.problem(base_url) if isinstance(base_url, str) else "must be a string"
    if problem is not None:
        raise LithicRejected(0, f"Lithic base_url {problem}")
    root = base_url.rstrip("/")
    # Lithic's SDKs configure base URLs ending in /v1; accept that spelling instead of calling /v1/v1/cards.
    if root.endswith("/v1"):
        root = root[: -len("/v1")]
    return root + path


def _check_api_key(api_key: str) -> None:
    # A header value must be visible ASCII; anything else would fail in the HTTP layer on every retry.
    if not isinstance(api_key, str) or not api_key.strip() or not all(" " <= ch <= "~" for ch in api_key):
        raise LithicRejected(0, "Lithic API key is empty or not a valid header value")


def _holder_answer(data: object) -> EnrolledHolder:
    return enrolled_holder(data)


def _interpret(response: httpx.Response, api_key: str, parse: Callable[[object], _T]) -> _T:
    status = response.status_code
    if 200 <= status < 300:
        try:
            return parse(response.json())
        except ValueError:
            # The request may well have worked; a retry with the same Idempotency-Key fetches the card again.
            what = "an account holder" if parse is _holder_answer else "a card"
            raise LithicRetryable(f"Lithic answered {status} without {what}", status=status) from None
    message, request_id = _error_details(response, api_key)
    if parse is _holder_answer:
        message = without_personal_data(message)
    if status in _RETRYABLE_4XX or status >= 500:
        raise LithicRetryable(
            message,
            status=status,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            debugging_request_id=request_id,
        )
    raise LithicRejected(status, message, debugging_request_id=request_id)


# Lithic's Card enums (the stored columns' checks hold the same): an answer outside them is not a card
# this service can record, and is treated like an answer without a card.
CARD_TYPES = frozenset({"MERCHANT_LOCKED", "PHYSICAL", "SINGLE_USE", "VIRTUAL", "UNLOCKED", "DIGITAL_WALLET"})
CARD_STATES = frozenset({"OPEN", "PAUSED", "CLOSED", "PENDING_FULFILLMENT", "PENDING_ACTIVATION"})
SPEND_LIMIT_DURATIONS = frozenset({"TRANSACTION", "MONTHLY", "ANNUALLY", "FOREVER"})
_LAST_FOUR = re.compile(r"[0-9]{4}")
_EXP_MONTH = re.compile(r"0[1-9]|1[0-2]")
_EXP_YEAR = re.compile(r"[0-9]{4}")


def _issued_card(data: object) -> IssuedCard:
    """The card Lithic answered, as far as we keep it: never its `pan` or `cvv`."""
    if not isinstance(data, dict):
        raise ValueError("card is not an object")
    required = {
        name: value
        for name in ("token", "last_four", "state", "type")
        if isinstance(value := data.get(name), str) and value
    }
    if len(required) < 4:
        raise ValueError("card lacks token, last_four, state or type")
    if (
        required["type"] not in CARD_TYPES
        or required["state"] not in CARD_STATES
        or not _LAST_FOUR.fullmatch(required["last_four"])
    ):
        raise ValueError("card has a type, state or last_four outside Lithic's spec")
    memo = data.get("memo")
    spend_limit = data.get("spend_limit")
    if isinstance(spend_limit, bool) or not isinstance(spend_limit, int) or spend_limit < 0:
        spend_limit = None
    duration = data.get("spend_limit_duration")
    hostname = data.get("hostname")
    return IssuedCard(
        token=required["token"],
        last_four=required["last_four"],
        state=required["state"],
        type=required["type"],
        memo=memo if isinstance(memo, str) else None,
        spend_limit=spend_limit,
        spend_limit_duration=duration if duration in SPEND_LIMIT_DURATIONS else None,
        exp_month=_matching(data.get("exp_month"), _EXP_MONTH),
        exp_year=_matching(data.get("exp_year"), _EXP_YEAR),
        created=_timestamp(data.get("created")),
        # "" until a MERCHANT_LOCKED card is locked (and for every other type): no merchant.
        hostname=hostname[:255] if isinstance(hostname, str) and hostname else None,
    )


def _matching(value: object, pattern: re.Pattern[str]) -> str | None:
    return value if isinstance(value, str) and pattern.fullmatch(value) else None


def _timestamp(value: object) -> datetime | None:
    """Lithic's `created`, RFC 3339 in UTC ("2021-06-28T22:53:15Z"); None when unreadable."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _error_details(response: httpx.Response, api_key: str) -> tuple[str, str | None]:
    """Lithic's message and request id when the body is Lithic's error object, else "HTTP <status>".

    Only Lithic's own shape is passed on (to the card's error, to the tenant): any other body, a proxy's
    page or whatever else answered, is not repeated back, nor is the upstream's reason phrase.
    """
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("message"), str) and _is_uuid(data.get("debugging_request_id")):
        message = _clean(data["message"], api_key)[:MAX_MESSAGE_LENGTH]
        if message:
            return message, str(uuid.UUID(data["debugging_request_id"]))
    status = response.status_code
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}", None
    except ValueError:
        return f"HTTP {status}", None


def _clean(text: str, api_key: str) -> str:
    # The message is stored on the card and shown to operators: never the key, one printable line.
    if api_key:
        text = text.replace(api_key, "[redacted]")
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
