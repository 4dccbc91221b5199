"""A fake Lithic card API on 127.0.0.1, strict about the wire rules so tests catch a client that breaks them.

It runs http.server in its own thread, so it keeps answering while a test's event loop is busy awaiting.
It checks what Lithic's OpenAPI spec (and our contract) require of `POST /v1/cards`,
`PATCH /v1/cards/{token}`, `GET /v1/cards/{token}`, `POST /v1/cards/{token}/renew` and `.../reissue`,
`POST /v1/account_holders` and
`GET /v1/account_holders/{token}`; anything off is answered 400/401 and appended to `spec_violations`,
which tests assert is empty.

    with FakeLithic(api_key="test-key") as fake:
        ...  # point the client at fake.base_url
        fake.fail_next(status=429, times=2, retry_after="1")
        fake.lose_answer_next()          # do the work, then answer 500
        event = fake.change_card(token, state="CLOSED")   # out of band, as Lithic on its own
        body, headers = fake.signed_webhook(event)        # what Lithic would POST to /webhooks/lithic
        assert fake.spec_violations == []
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

from canopy_svc.issuers.webhooks import new_secret, signature

# From Lithic's spec: request body properties of postCards / patchCardByToken, and their enums.
CREATE_FIELDS = frozenset(
    {
        "account_token", "card_program_token", "bulk_order_token", "carrier", "digital_card_art_token",
        "exp_month", "exp_year", "memo", "pin", "product_id", "replacement_for", "replacement_substatus",
        "replacement_comment", "replacement_account_token", "shipping_address", "shipping_method",
        "spend_limit", "spend_limit_duration", "state", "type",
    }
)  # fmt: skip
UPDATE_FIELDS = frozenset(
    {
        "digital_card_art_token", "memo", "network_program_token", "pin", "pin_status", "spend_limit",
        "spend_limit_duration", "state", "substatus", "comment",
    }
)  # fmt: skip
CARD_TYPES = frozenset({"MERCHANT_LOCKED", "PHYSICAL", "SINGLE_USE", "VIRTUAL", "UNLOCKED", "DIGITAL_WALLET"})
# Lithic accepts these still, "please use VIRTUAL instead": the service must never send them.
DEPRECATED_CARD_TYPES = frozenset({"UNLOCKED", "DIGITAL_WALLET"})
SHIPPING_METHODS = frozenset({"STANDARD", "STANDARD_WITH_TRACKING", "PRIORITY", "EXPRESS", "2_DAY", "EXPEDITED"})
PHYSICAL_ONLY_FIELDS = ("shipping_address", "product_id", "shipping_method")
# ShippingAddress (components/schemas): required and optional properties, all strings.
SHIPPING_REQUIRED = ("first_name", "last_name", "address1", "city", "state", "postal_code", "country")
SHIPPING_OPTIONAL = ("address2", "email", "phone_number", "line2_text")
# postCardRenew / postCardReissue: their bodies' properties, and the card types each applies to.
RENEW_FIELDS = frozenset({"shipping_address", "carrier", "exp_month", "exp_year", "product_id", "shipping_method"})
REISSUE_FIELDS = frozenset({"carrier", "product_id", "shipping_address", "shipping_method"})
RENEWABLE_TYPES = frozenset({"PHYSICAL", "VIRTUAL"})
REISSUABLE_TYPES = frozenset({"PHYSICAL"})
MAX_REISSUES_AND_RENEWALS = 8
CREATE_STATES = frozenset({"OPEN", "PAUSED"})
UPDATE_STATES = frozenset({"OPEN", "PAUSED", "CLOSED"})
SPEND_LIMIT_DURATIONS = frozenset({"ANNUALLY", "FOREVER", "MONTHLY", "TRANSACTION"})
_UUID_FIELDS = ("account_token", "card_program_token", "bulk_order_token", "digital_card_art_token",
                "replacement_for", "replacement_account_token", "network_program_token")  # fmt: skip

MAX_BODY = 1 << 20

# postAccountHolders (components/schemas Kyc, Kyb, KycExempt, Individual, BusinessEntity, Address): each
# body's properties, and the required ones. The test SSNs decide the evaluation, as the simulator's do
# (canopy_svc/issuers/simulator.py): REJECTED_SSN is REJECTED; PENDING_SSN is PENDING_DOCUMENT under
# KYC_ADVANCED and PENDING_REVIEW under KYB_BASIC (the workflows that have those states), else ACCEPTED.
REJECTED_SSN = "666666666"
PENDING_SSN = "555555555"
KYC_FIELDS = frozenset({"individual", "tos_timestamp", "workflow", "external_id", "kyc_passed_timestamp"})
KYC_REQUIRED = ("individual", "tos_timestamp", "workflow")
KYB_FIELDS = frozenset(
    {
        "beneficial_owner_entities", "beneficial_owner_individuals", "business_entity", "control_person",
        "external_id", "kyb_passed_timestamp", "nature_of_business", "tos_timestamp", "website_url", "workflow",
    }
)  # fmt: skip
KYB_REQUIRED = (
    "beneficial_owner_entities", "beneficial_owner_individuals", "business_entity", "control_person",
    "nature_of_business", "tos_timestamp", "workflow",
)  # fmt: skip
KYC_EXEMPT_FIELDS = frozenset(
    {
        "address", "business_account_token", "email", "external_id", "first_name", "kyc_exemption_type",
        "last_name", "phone_number", "workflow",
    }
)  # fmt: skip
KYC_EXEMPT_REQUIRED = ("address", "email", "first_name", "kyc_exemption_type", "last_name", "phone_number")
INDIVIDUAL_FIELDS = frozenset({"address", "dob", "email", "first_name", "government_id", "last_name", "phone_number"})
KYC_INDIVIDUAL_REQUIRED = ("address", "dob", "email", "first_name", "government_id", "last_name", "phone_number")
KYB_INDIVIDUAL_REQUIRED = ("address", "dob", "email", "first_name", "government_id", "last_name")
BUSINESS_FIELDS = frozenset(
    {"address", "dba_business_name", "entity_token", "government_id", "legal_business_name", "parent_company",
     "phone_numbers"}
)  # fmt: skip
BUSINESS_REQUIRED = ("address", "government_id", "legal_business_name", "phone_numbers")
ADDRESS_FIELDS = frozenset({"address1", "address2", "city", "country", "postal_code", "state"})
ADDRESS_REQUIRED = ("address1", "city", "country", "postal_code", "state")
KYC_WORKFLOWS = frozenset({"KYC_ADVANCED", "KYC_BASIC", "KYC_BYO"})
KYB_WORKFLOWS = frozenset({"KYB_BASIC", "KYB_BYO"})
KYC_EXEMPTION_TYPES = frozenset({"AUTHORIZED_USER", "PREPAID_CARD_USER"})
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_NINE_DIGITS = re.compile(r"[0-9]{3}-?[0-9]{2}-?[0-9]{4}|[0-9]{2}-?[0-9]{7}")


class RecordedRequest(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, the raw text when it is not JSON, or None when empty
    at: float = 0.0  # time.monotonic() when it arrived: what pacing is checked by


@dataclass
class _Step:
    kind: str  # "answer" | "delay" | "lose" | "stall" | "hold"
    status: int = 500
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class _Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _error_body(message: str) -> bytes:
    return json.dumps({"debugging_request_id": str(uuid.uuid4()), "message": message}).encode()


class FakeLithic:
    """The fake server. All state is guarded by `lock`; read `cards`/`requests` freely between awaits."""

    def __init__(self, api_key: str = "test-key") -> None:
        self.api_key = api_key
        self.cards: dict[str, dict[str, Any]] = {}
        self.requests: list[RecordedRequest] = []
        self.spec_violations: list[str] = []
        self.errors: list[str] = []  # bugs in the fake itself; tests may assert it is empty too
        self.lock = threading.RLock()
        self.webhook_secret = new_secret()  # what Lithic shows for the event subscription
        self.account_token = str(uuid.uuid4())
        self.default_card_program_token = str(uuid.uuid4())
        self._by_idempotency_key: dict[str, tuple[str, Any]] = {}  # key -> (card token, request body)
        self.replacements: dict[str, int] = {}  # card token -> its renewals and reissues
        self.account_holders: dict[str, dict[str, Any]] = {}  # token -> Lithic's AccountHolder answer
        self._holders_by_key: dict[str, tuple[str, Any]] = {}  # key -> (holder token, request body)
        self._script: deque[_Step] = deque()
        self._down = False
        self._down_status: int | None = None
        self._closing = threading.Event()
        self.work_done = threading.Event()  # set by a "stall" step once the card exists
        self.holding = threading.Event()  # set by a "hold" step once the request arrived
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> FakeLithic:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True  # a scripted slow answer must not hold up shutdown
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-lithic", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()  # wakes scripted delays
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeLithic:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "FakeLithic is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- scripting ---------------------------------------------------------------------------------------

    def fail_next(
        self, status: int, *, times: int = 1, retry_after: str | None = None, message: str | None = None
    ) -> None:
        """Answer the next `times` requests with `status` and Lithic's error body, doing nothing else."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        text = message if message is not None else f"Scripted failure {status}"
        self._push(times, _Step("answer", status=status, body=_error_body(text), headers=headers))

    def answer_next(
        self,
        status: int,
        body: bytes | str | dict[str, Any],
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `times` requests with exactly this, doing nothing else (e.g. a malformed 200)."""
        if isinstance(body, dict):
            body = json.dumps(body)
        raw = body.encode() if isinstance(body, str) else body
        self._push(times, _Step("answer", status=status, body=raw, headers=dict(headers or {})))

    def delay_next(self, seconds: float, *, times: int = 1) -> None:
        """Wait `seconds` before handling the next `times` requests (then do the work, like a slow Lithic)."""
        self._push(times, _Step("delay", seconds=seconds))

    def stall_after_work_next(self, seconds: float, *, times: int = 1) -> None:
        """Do the work of the next `times` requests, then hold the answer back for `seconds`.

        The window in which a test kills the caller: the card exists at Lithic, the caller has no answer.
        `work_done` is set when the work is done, so the test knows when to strike.
        """
        self._push(times, _Step("stall", seconds=seconds))

    def hold_next(self) -> None:
        """Hold the next request, before doing its work, until release(): a Lithic as slow as a test needs.

        `holding` is set when the request has arrived, so the test knows the caller is mid-call."""
        self.holding.clear()
        self._release.clear()
        self._push(1, _Step("hold"))

    def release(self) -> None:
        self._release.set()

    def lose_answer_next(self, *, times: int = 1) -> None:
        """Do the work of the next `times` requests (create/update the card), then answer 500 instead.

        Simulates an answer lost on the way back: a retry with the same Idempotency-Key must find the card.
        """
        self._push(times, _Step("lose"))

    def go_down(self, status: int | None = None) -> None:
        """Until come_back(): drop every connection without answering, or answer `status` (e.g. 503)."""
        with self.lock:
            self._down = True
            self._down_status = status

    def come_back(self) -> None:
        with self.lock:
            self._down = False
            self._down_status = None

    @property
    def down(self) -> bool:
        with self.lock:
            return self._down

    @down.setter
    def down(self, value: bool) -> None:
        if value:
            self.go_down()
        else:
            self.come_back()

    def _push(self, times: int, step: _Step) -> None:
        if times < 1:
            raise ValueError("times must be >= 1")
        with self.lock:
            self._script.extend(step for _ in range(times))

    # -- serving -----------------------------------------------------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        method = handler.command
        headers = dict(handler.headers.items())
        raw = self._read_body(handler)
        body = self._decode(raw)
        with self.lock:
            self.requests.append(RecordedRequest(method, handler.path, headers, body, time.monotonic()))
            down, down_status = self._down, self._down_status
            step = self._script.popleft() if not down and self._script else None

        if down:
            if down_status is None:
                handler.close_connection = True  # closes the socket without a byte of answer
                return
            self._send(handler, _Answer(down_status, _error_body("Service unavailable")))
            return
        if step is not None and step.kind == "hold":
            self.holding.set()
            while not self._release.wait(0.05):
                if self._closing.is_set():
                    return
            step = None
        if step is not None and step.kind == "delay":
            if self._closing.wait(step.seconds):
                return  # shutting down: give up quietly
            step = None
        if step is not None and step.kind == "answer":
            self._send(handler, _Answer(step.status, step.body, step.headers))
            return

        answer = self._route(method, handler.path, handler.headers, raw, body)
        if step is not None and step.kind == "stall":
            self.work_done.set()
            if self._closing.wait(step.seconds):
                return
        if step is not None and step.kind == "lose" and 200 <= answer.status < 300:
            answer = _Answer(500, _error_body("Internal server error"))
        self._send(handler, answer)

    def _read_body(self, handler: _Handler) -> bytes:
        try:
            length = int(handler.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        # Read it all even when the answer is an error: unread bytes would turn our answer into a reset.
        return handler.rfile.read(min(max(length, 0), MAX_BODY)) if length else b""

    @staticmethod
    def _decode(raw: bytes) -> Any:
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _violation(self, status: int, message: str) -> _Answer:
        with self.lock:
            self.spec_violations.append(message)
        return _Answer(status, _error_body(message))

    def _route(self, method: str, target: str, headers: Any, raw: bytes, body: Any) -> _Answer:
        path = urlsplit(target).path
        auth = headers.get("Authorization")
        if auth is None:
            return self._violation(401, "Please provide API key in Authorization header")
        if auth != self.api_key:
            if auth.split(" ", 1)[0].lower() in ("bearer", "basic", "token"):
                return self._violation(401, "Please provide API key in the form Authorization: [api-key]")
            return _Answer(401, _error_body("Could not find API key"))

        card_path = re.fullmatch(r"/v1/cards/([^/]+)", path)
        holder_path = re.fullmatch(r"/v1/account_holders/([^/]+)", path)
        if method == "POST" and path == "/v1/cards":
            return self._create(headers, raw, body)
        if method == "POST" and path == "/v1/account_holders":
            return self._enroll(headers, raw, body)
        if method == "GET" and holder_path:
            return self._account_holder(unquote(holder_path[1]))
        if method == "PATCH" and card_path:
            return self._update(unquote(card_path[1]), headers, raw, body)
        if method == "GET" and card_path:
            return self._get(unquote(card_path[1]), raw)
        if method == "POST" and (again := re.fullmatch(r"/v1/cards/([^/]+)/(renew|reissue)", path)):
            return self._renew_or_reissue(unquote(again[1]), again[2], headers, raw, body)
        return self._violation(404, f"{method} {path} is not an endpoint the client should call")

    def _json_body(self, headers: Any, raw: bytes, body: Any) -> str | None:
        content_type = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            return f"Content-Type must be application/json, got {content_type or 'nothing'}"
        if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
            return "the fake needs a Content-Length body"
        if not isinstance(body, dict) or not raw:
            return "body must be a JSON object"
        return None

    def _create(self, headers: Any, raw: bytes, body: Any) -> _Answer:
        key = headers.get("Idempotency-Key")
        if not key:
            return self._violation(400, "Idempotency-Key header is required")
        if not _is_uuid(key):
            return self._violation(400, "Idempotency-Key must be a UUID")
        problem = self._json_body(headers, raw, body)
        if problem:
            return self._violation(400, problem)
        problems = _create_problems(body)
        if problems:
            return self._violation(400, "; ".join(problems))
        if (replaced := body.get("replacement_for")) is not None:
            if not (isinstance(replaced, str) and _is_uuid(replaced)):
                return self._violation(400, "replacement_for must be a card token (uuid)")
            with self.lock:
                old = self.cards.get(replaced)
            if old is None:  # Lithic's 404 would be the service's bug here: it only replaces cards it issued
                return self._violation(400, f"replacement_for names no card: {replaced}")
            if old["type"] != body["type"]:
                return self._violation(400, f"a {old['type']} card is replaced by a {old['type']} card")

        with self.lock:
            seen = self._by_idempotency_key.get(key)
            if seen is not None:
                token, first_body = seen
                if first_body != body:
                    return self._violation(422, "Idempotency-Key reused with a different body")
                return _Answer(200, json.dumps(self.cards[token]).encode())
            card = self._new_card(body)
            self.cards[card["token"]] = card
            self._by_idempotency_key[key] = (card["token"], body)
            return _Answer(200, json.dumps(card).encode())

    def _new_card(self, body: dict[str, Any]) -> dict[str, Any]:
        pan = "4111" + "".join(str(secrets.randbelow(10)) for _ in range(12))
        card: dict[str, Any] = {
            "token": str(uuid.uuid4()),
            "account_token": body.get("account_token", self.account_token),
            "card_program_token": body.get("card_program_token", self.default_card_program_token),
            "cardholder_currency": "USD",
            "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "cvv": f"{secrets.randbelow(1000):03d}",
            "exp_month": "06",
            "exp_year": str(datetime.now(UTC).year + 5),
            "funding": None,
            "hostname": "",
            "last_four": pan[-4:],
            "pan": pan,
            "pin_status": "NOT_SET",
            "replacement_for": body.get("replacement_for"),
            "spend_limit": body.get("spend_limit", 0),
            "spend_limit_duration": body.get("spend_limit_duration", "TRANSACTION"),
            # A PHYSICAL card is made and sent before it can be used in person.
            "state": "PENDING_FULFILLMENT" if body["type"] == "PHYSICAL" else body.get("state", "OPEN"),
            "type": body["type"],
        }
        if "exp_month" in body:
            card["exp_month"], card["exp_year"] = body["exp_month"], body["exp_year"]
        if "product_id" in body:
            card["product_id"] = body["product_id"]
        if "memo" in body:
            card["memo"] = body["memo"]
        return card

    def _update(self, token: str, headers: Any, raw: bytes, body: Any) -> _Answer:
        if not _is_uuid(token):
            return self._violation(400, "card_token must be a UUID")
        problem = self._json_body(headers, raw, body)
        if problem:
            return self._violation(400, problem)
        problems = _update_problems(body)
        if problems:
            return self._violation(400, "; ".join(problems))
        with self.lock:
            card = self.cards.get(token)
            if card is None:
                return _Answer(404, _error_body("Card not found"))
            if card["state"] == "CLOSED":
                return _Answer(400, _error_body("Card is closed and cannot be updated"))
            card.update(body)
            return _Answer(200, json.dumps(card).encode())

    def _renew_or_reissue(self, token: str, operation: str, headers: Any, raw: bytes, body: Any) -> _Answer:
        """postCardRenew (PHYSICAL, VIRTUAL; shipping_address required; a new expiry) and postCardReissue
        (PHYSICAL; a duplicate, same expiry). Lithic counts both: 8 at most per card."""
        if not _is_uuid(token):
            return self._violation(400, "card_token must be a UUID")
        problem = self._json_body(headers, raw, body)
        if problem:
            return self._violation(400, problem)
        problems = _renewal_problems(body, operation)
        if problems:
            return self._violation(400, "; ".join(problems))
        done = {"renew": "renewed", "reissue": "reissued"}[operation]
        with self.lock:
            card = self.cards.get(token)
            if card is None:
                return _Answer(404, _error_body("Card not found"))
            allowed = RENEWABLE_TYPES if operation == "renew" else REISSUABLE_TYPES
            if card["type"] not in allowed:  # the service checks the type first: sending it is a bug
                return self._violation(400, f"a {card['type']} card cannot be {done}")
            if card["state"] == "CLOSED":
                return _Answer(400, _error_body(f"A closed card cannot be {done}"))
            if self.replacements.get(token, 0) >= MAX_REISSUES_AND_RENEWALS:
                return _Answer(400, _error_body("Card has been reissued or renewed the maximum number of times"))
            self.replacements[token] = self.replacements.get(token, 0) + 1
            if operation == "renew":
                now = datetime.now(UTC)
                card["exp_month"] = body.get("exp_month", f"{now.month:02d}")
                card["exp_year"] = body.get("exp_year", str(now.year + 6))
                card["cvv"] = f"{secrets.randbelow(1000):03d}"
            if "product_id" in body:
                card["product_id"] = body["product_id"]
            return _Answer(200, json.dumps(card).encode())

    def _get(self, token: str, raw: bytes) -> _Answer:
        """getCardByToken: no body, the card as it is now."""
        if not _is_uuid(token):
            return self._violation(400, "card_token must be a UUID")
        if raw:
            return self._violation(400, "GET /v1/cards/{card_token} takes no body")
        with self.lock:
            card = self.cards.get(token)
            if card is None:
                return _Answer(404, _error_body("Card not found"))
            return _Answer(200, json.dumps(card).encode())

    # -- out of band: what Lithic does on its own, and the webhooks it sends about it ----------------------

    def change_card(self, token: str, **fields: Any) -> dict[str, Any]:
        """Changes a card as Lithic would on its own (a SINGLE_USE card closing after its first use, a
        renewal); returns the card.updated event Lithic would send when the state changed (else {})."""
        with self.lock:
            card = self.cards[token]
            previous = {name: card.get(name) for name in fields if card.get(name) != fields[name]}
            card.update(fields)
            if "state" not in previous:
                return {}
            return {"event_type": "card.updated", "token": token, "state": card["state"], "previous_fields": previous}

    def signed_webhook(
        self,
        event: dict[str, Any],
        *,
        secret: str | None = None,
        timestamp: int | None = None,
        webhook_id: str | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """A webhook as Lithic sends it: the body and its Standard Webhooks headers, signed with
        `secret` (default: this fake's webhook_secret) at `timestamp` (default: now)."""
        body = json.dumps(event).encode()
        webhook_id = webhook_id or "msg_" + secrets.token_hex(12)
        timestamp = int(time.time()) if timestamp is None else timestamp
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secret or self.webhook_secret, webhook_id, timestamp, body),
        }
        return body, headers

    def set_account_holder_status(self, token: str, status: str, reasons: list[str] | None = None) -> None:
        """Lithic's review ends (or changes): what GET /v1/account_holders/{token} answers from now on."""
        with self.lock:
            holder = self.account_holders[token]
            holder["status"] = status
            holder["status_reasons"] = list(reasons or [])
            holder["verification_application"]["status"] = status
            holder["verification_application"]["status_reasons"] = list(reasons or [])

    def account_holder_creates(self) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if r.method == "POST" and r.path == "/v1/account_holders"]

    def _enroll(self, headers: Any, raw: bytes, body: Any) -> _Answer:
        key = headers.get("Idempotency-Key")
        if key is not None and not _is_uuid(key):
            return self._violation(400, "Idempotency-Key must be a UUID")
        problem = self._json_body(headers, raw, body)
        if problem:
            return self._violation(400, problem)
        problems = _account_holder_problems(body)
        if problems:
            return self._violation(400, "; ".join(problems))
        with self.lock:
            if key is not None and (seen := self._holders_by_key.get(key)) is not None:
                token, first_body = seen
                if first_body != body:
                    return self._violation(422, "Idempotency-Key reused with a different body")
                return _Answer(200, json.dumps(self._holder_answer(self.account_holders[token])).encode())
            holder = self._new_account_holder(body)
            self.account_holders[holder["token"]] = holder
            if key is not None:
                self._holders_by_key[key] = (holder["token"], body)
            return _Answer(200, json.dumps(self._holder_answer(holder)).encode())

    def _new_account_holder(self, body: dict[str, Any]) -> dict[str, Any]:
        workflow = body["workflow"]
        people = [body.get("individual"), body.get("control_person"), *body.get("beneficial_owner_individuals", [])]
        ids = {str(p["government_id"]).replace("-", "") for p in people if isinstance(p, dict)}
        status, reasons = "ACCEPTED", []
        if workflow != "KYC_EXEMPT" and REJECTED_SSN in ids:
            status, reasons = "REJECTED", ["ID_VERIFICATION_FAILURE"]
        elif PENDING_SSN in ids and workflow == "KYC_ADVANCED":
            status, reasons = "PENDING_DOCUMENT", ["DOB_VERIFICATION_FAILURE"]
        elif PENDING_SSN in ids and workflow == "KYB_BASIC":
            status, reasons = "PENDING_REVIEW", ["PRIMARY_BUSINESS_ENTITY_ADDRESS_VERIFICATION_FAILURE"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "token": str(uuid.uuid4()),
            "account_token": str(uuid.uuid4()),
            "status": status,
            "status_reasons": reasons,
            "created": now,
            "external_id": body.get("external_id"),
            "user_type": "BUSINESS" if workflow.startswith("KYB") else "INDIVIDUAL",
            "verification_application": {"created": now, "status": status, "status_reasons": reasons, "updated": now},
            "workflow": workflow,  # kept for tests; not part of the answer
            "request": body,  # likewise
        }

    @staticmethod
    def _holder_answer(holder: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in holder.items() if key not in ("workflow", "request")}

    def _account_holder(self, token: str) -> _Answer:
        if not _is_uuid(token):
            return self._violation(400, "account_holder_token must be a UUID")
        with self.lock:
            holder = self.account_holders.get(token)
            if holder is None:
                return _Answer(404, _error_body("Account holder not found"))
            return _Answer(200, json.dumps(self._holder_answer(holder)).encode())

    def _send(self, handler: _Handler, answer: _Answer) -> None:
        try:
            handler.send_response(answer.status)
            if answer.body:
                handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(answer.body)))
            for name, value in answer.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(answer.body)
        except OSError:
            pass  # the client gave up (e.g. its timeout fired): nothing to answer to


def _spend_limit_problem(body: dict[str, Any]) -> str | None:
    if "spend_limit" not in body:
        return None
    value = body["spend_limit"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return f"spend_limit must be a non-negative integer (cents), got {value!r}"
    return None


def _common_problems(body: dict[str, Any], allowed: frozenset[str]) -> list[str]:
    problems = [f"unknown field {name!r}" for name in sorted(body.keys() - allowed)]
    problems += [f"{name} must not be null (omit it instead)" for name in sorted(body) if body[name] is None]
    if "memo" in body and body["memo"] is not None and not isinstance(body["memo"], str):
        problems.append("memo must be a string")
    spend = _spend_limit_problem(body)
    if spend:
        problems.append(spend)
    duration = body.get("spend_limit_duration")
    if duration is not None and duration not in SPEND_LIMIT_DURATIONS:
        problems.append(f"invalid spend_limit_duration {duration!r}")
    problems += [
        f"{name} must be a UUID"
        for name in _UUID_FIELDS
        if name in allowed and body.get(name) is not None and not _is_uuid(body[name])
    ]
    return problems


def _create_problems(body: dict[str, Any]) -> list[str]:
    problems = _common_problems(body, CREATE_FIELDS)
    if "type" not in body:
        problems.append("type is required")
    elif body["type"] not in CARD_TYPES:
        problems.append(f"invalid type {body['type']!r}")
    elif body["type"] in DEPRECATED_CARD_TYPES:
        problems.append(f"deprecated type {body['type']!r} sent (use VIRTUAL)")
    problems += _expiry_problems(body)
    if body.get("type") == "PHYSICAL":
        if "shipping_address" not in body:
            problems.append("shipping_address is required for a PHYSICAL card")
        else:
            problems += _shipping_problems(body["shipping_address"], body.get("shipping_method"))
    else:
        problems += [f"{name} applies to PHYSICAL cards only" for name in PHYSICAL_ONLY_FIELDS if name in body]
    if "product_id" in body and not (isinstance(body["product_id"], str) and body["product_id"]):
        problems.append("product_id must be a non-empty string")
    if "shipping_method" in body and body["shipping_method"] not in SHIPPING_METHODS:
        problems.append(f"invalid shipping_method {body['shipping_method']!r}")
    if body.get("state") is not None and body["state"] not in CREATE_STATES:
        problems.append(f"invalid state {body['state']!r} (OPEN or PAUSED on create)")
    return problems


def _expiry_problems(body: dict[str, Any]) -> list[str]:
    """exp_month: two digits (MM); exp_year: four (yyyy); strings, and given together."""
    problems = []
    if ("exp_month" in body) != ("exp_year" in body):
        problems.append("exp_month and exp_year go together")
    month, year = body.get("exp_month"), body.get("exp_year")
    if month is not None and not (isinstance(month, str) and re.fullmatch(r"0[1-9]|1[0-2]", month)):
        problems.append(f"exp_month must be MM, got {month!r}")
    if year is not None and not (isinstance(year, str) and re.fullmatch(r"[0-9]{4}", year)):
        problems.append(f"exp_year must be yyyy, got {year!r}")
    return problems


def _shipping_problems(address: Any, method: Any) -> list[str]:
    if not isinstance(address, dict):
        return ["shipping_address must be an object"]
    problems = [f"shipping_address.{name} is required" for name in SHIPPING_REQUIRED if name not in address]
    problems += [
        f"unknown field shipping_address.{name}"
        for name in sorted(address.keys() - {*SHIPPING_REQUIRED, *SHIPPING_OPTIONAL})
    ]
    problems += [f"shipping_address.{name} must be a string" for name, v in address.items() if not isinstance(v, str)]
    if problems:
        return problems
    if len(address["first_name"]) + len(address["last_name"]) > 25:
        problems.append("shipping_address first_name and last_name may not exceed 25 characters together")
    if not re.fullmatch(r"[A-Z]{3}", address["country"]):
        problems.append(f"shipping_address.country must be ISO 3166-1 alpha-3, got {address['country']!r}")
    if address["country"] == "USA":
        if not re.fullmatch(r"[A-Z]{2}", address["state"]):
            problems.append("shipping_address.state must be a two-letter code in the US")
        if not re.fullmatch(r"[0-9]{5}(-[0-9]{4})?", address["postal_code"]):
            problems.append("shipping_address.postal_code must be 12345 or 12345-1234 in the US")
    if method == "EXPEDITED":
        problems += [
            f"shipping_address.{name} is required with EXPEDITED"
            for name in ("email", "phone_number")
            if name not in address
        ]
    return problems


def _renewal_problems(body: dict[str, Any], operation: str) -> list[str]:
    """The request bodies of postCardRenew and postCardReissue (CardRenewParams, CardReissueParams)."""
    allowed = RENEW_FIELDS if operation == "renew" else REISSUE_FIELDS
    problems = [f"unknown field {name}" for name in sorted(body.keys() - allowed)]
    problems += [f"{name} must not be null (omit it instead)" for name in sorted(body) if body[name] is None]
    if problems:
        return problems
    if operation == "renew":
        problems += _expiry_problems(body)
        if "shipping_address" not in body:
            problems.append("shipping_address is required")
    if "shipping_address" in body:
        problems += _shipping_problems(body["shipping_address"], body.get("shipping_method"))
    if "product_id" in body and not (isinstance(body["product_id"], str) and body["product_id"]):
        problems.append("product_id must be a non-empty string")
    if "shipping_method" in body and body["shipping_method"] not in SHIPPING_METHODS:
        problems.append(f"invalid shipping_method {body['shipping_method']!r}")
    return problems


def _update_problems(body: dict[str, Any]) -> list[str]:
    problems = _common_problems(body, UPDATE_FIELDS)
    if body.get("state") is not None and body["state"] not in UPDATE_STATES:
        problems.append(f"invalid state {body['state']!r}")
    return problems


def _account_holder_problems(body: dict[str, Any]) -> list[str]:
    """postAccountHolders: the body is one of Kyc, Kyb, KycExempt, told apart by its workflow."""
    workflow = body.get("workflow")
    if workflow == "KYC_EXEMPT":
        problems = _object_problems(body, "", KYC_EXEMPT_FIELDS, KYC_EXEMPT_REQUIRED)
        if body.get("kyc_exemption_type") not in KYC_EXEMPTION_TYPES:
            problems.append(f"invalid kyc_exemption_type {body.get('kyc_exemption_type')!r}")
        problems += _address_problems(body.get("address"), "address", countries=("USA", "CAN"))
        problems += _contact_problems(body, "")
        if "business_account_token" in body and not _is_uuid(body["business_account_token"]):
            problems.append("business_account_token must be a UUID")
        return problems
    if workflow in KYC_WORKFLOWS:
        problems = _object_problems(body, "", KYC_FIELDS, KYC_REQUIRED)
        problems += _individual_problems(body.get("individual"), "individual", KYC_INDIVIDUAL_REQUIRED)
    elif workflow in KYB_WORKFLOWS:
        problems = _object_problems(body, "", KYB_FIELDS, KYB_REQUIRED)
        problems += _individual_problems(body.get("control_person"), "control_person", KYB_INDIVIDUAL_REQUIRED)
        owners, entities = body.get("beneficial_owner_individuals"), body.get("beneficial_owner_entities")
        if not isinstance(owners, list) or not isinstance(entities, list):
            problems.append("beneficial_owner_individuals and beneficial_owner_entities must be arrays")
        else:
            if not owners and not entities:
                problems.append("beneficial_owner_individuals or beneficial_owner_entities must be populated")
            for i, owner in enumerate(owners):
                problems += _individual_problems(owner, f"beneficial_owner_individuals[{i}]", KYB_INDIVIDUAL_REQUIRED)
            for i, entity in enumerate(entities):
                problems += _business_problems(entity, f"beneficial_owner_entities[{i}]")
        problems += _business_problems(body.get("business_entity"), "business_entity")
    else:
        return [f"invalid workflow {workflow!r}"]
    stamp = "kyb_passed_timestamp" if workflow.startswith("KYB") else "kyc_passed_timestamp"
    if workflow.endswith("_BYO") and stamp not in body:
        problems.append(f"{stamp} is required with {workflow}")
    for name in ("tos_timestamp", stamp):
        if name in body and not _is_timestamp(body[name]):
            problems.append(f"{name} must be an RFC 3339 timestamp, got {body[name]!r}")
    return problems


def _object_problems(value: Any, where: str, allowed: frozenset[str], required: tuple[str, ...]) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where or 'body'} must be an object"]
    prefix = f"{where}." if where else ""
    problems = [f"{prefix}{name} is required" for name in required if name not in value]
    problems += [f"unknown field {prefix}{name}" for name in sorted(value.keys() - allowed)]
    problems += [f"{prefix}{name} must not be null (omit it instead)" for name in sorted(value) if value[name] is None]
    problems += [
        f"{prefix}{name} must be a string"
        for name, item in value.items()
        if item is not None and not isinstance(item, (str, dict, list))
    ]
    return problems


def _individual_problems(person: Any, where: str, required: tuple[str, ...]) -> list[str]:
    problems = _object_problems(person, where, INDIVIDUAL_FIELDS, required)
    if problems:
        return problems
    if "government_id" in person and not _NINE_DIGITS.fullmatch(str(person["government_id"])):
        problems.append(f"{where}.government_id must be nine digits, with or without hyphens")
    if not _is_date_or_timestamp(person.get("dob")):
        problems.append(f"{where}.dob must be an RFC 3339 date")
    problems += _contact_problems(person, where)
    return problems + _address_problems(person.get("address"), f"{where}.address", countries=("USA",))


def _business_problems(business: Any, where: str) -> list[str]:
    problems = _object_problems(business, where, BUSINESS_FIELDS, BUSINESS_REQUIRED)
    if problems:
        return problems
    phones = business["phone_numbers"]
    if not isinstance(phones, list) or not phones or not all(isinstance(p, str) and _E164.fullmatch(p) for p in phones):
        problems.append(f"{where}.phone_numbers must be one or more E.164 numbers")
    if not re.fullmatch(r"[0-9]{2}-?[0-9]{7}|[0-9]{3}-?[0-9]{2}-?[0-9]{4}", str(business["government_id"])):
        problems.append(f"{where}.government_id must be a nine-digit EIN")
    return problems + _address_problems(business.get("address"), f"{where}.address", countries=("USA",))


def _contact_problems(person: dict[str, Any], where: str) -> list[str]:
    prefix = f"{where}." if where else ""
    problems = []
    if "phone_number" in person and not _E164.fullmatch(str(person["phone_number"])):
        problems.append(f"{prefix}phone_number must be E.164")
    if "email" in person and not re.fullmatch(r"[^@\s]+@[^@\s]+", str(person["email"])):
        problems.append(f"{prefix}email must be an email address")
    return problems


def _address_problems(address: Any, where: str, *, countries: tuple[str, ...]) -> list[str]:
    problems = _object_problems(address, where, ADDRESS_FIELDS, ADDRESS_REQUIRED)
    if problems:
        return problems
    if address["country"] not in countries:
        problems.append(f"{where}.country must be one of {countries} (alpha-3), got {address['country']!r}")
    elif address["country"] == "USA":
        if not re.fullmatch(r"[A-Z]{2}", address["state"]):
            problems.append(f"{where}.state must be a two-letter code")
        if not re.fullmatch(r"[0-9]{5}(-[0-9]{4})?", address["postal_code"]):
            problems.append(f"{where}.postal_code must be 12345 or 12345-1234")
    return problems


def _is_timestamp(value: Any) -> bool:
    if not isinstance(value, str) or len(value) < 19:
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _is_date_or_timestamp(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection keeps "drop the connection" simple

    def _dispatch(self) -> None:
        fake: FakeLithic = self.server.fake  # type: ignore[attr-defined]
        try:
            fake._handle(self)
        except Exception as exc:  # a bug in the fake must show up in the test, not only on stderr
            with fake.lock:
                fake.errors.append(f"{type(exc).__name__}: {exc}")
            fake._send(self, _Answer(500, _error_body("fake crashed")))

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean
