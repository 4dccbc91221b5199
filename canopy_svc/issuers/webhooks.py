"""Webhook deliveries to a tenant's receiver: where they may go, how they are signed, and the POST.

A tenant names the URL, so it could point this server at its own network (a metadata service, the
database port) and read the answer back in the delivery's record. So a URL must be https; the
address each connection dials is checked where it is dialled (issuers/egress.py: never loopback,
private, link-local or reserved), unless the operator allows the host by name
(CANOPY_SVC_WEBHOOK_ALLOWED_HOSTS: tests and the sandbox allow loopback, and there plain http).
No redirect is followed, every phase has a timeout, and at most MAX_KEPT_ANSWER bytes of an answer
are read.

Signatures follow Standard Webhooks (standardwebhooks.com): the secret is `whsec_` and base64 of
random bytes; `webhook-signature` is `v1,` and base64 HMAC-SHA256, under the decoded bytes, of
`{webhook-id}.{webhook-timestamp}.{body}`. Canopy's body also carries `hmac_signature`: base64
HMAC-SHA256 of the `data` member, as serialized in that body, under the same key.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import email.utils
import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from canopy_svc.issuers.egress import DestinationRefused, GuardedTransport
from canopy_svc.issuers.hosts import LITHIC_ONLY, LithicHosts
from canopy_svc.wire.patterns import END, any_case

ALLOWED_HOSTS_ENV = "CANOPY_SVC_WEBHOOK_ALLOWED_HOSTS"
SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
SECRET_BYTES = 32
MAX_KEPT_ANSWER = 4096
# The answers whose Retry-After says when to try again (RFC 9110 section 10.2.3).
RETRY_AFTER_STATUSES = frozenset({429, 503})
_DELAY_SECONDS = re.compile(r"[0-9]{1,10}")

# Scheme, host, port, path and query; no userinfo ("https://good@127.0.0.1/"), fragment, backslash or
# space, on which URL parsers disagree about the host.
_URL = re.compile(
    r"(?P<scheme>https?)://(?P<host>[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<rest>(?:/[A-Za-z0-9._~!$&'()*+,;=:@%-]*)*(?:\?[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?)",
    re.IGNORECASE,
)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a whsec_ secret: its base64 part, decoded (as Standard Webhooks' libraries do)."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def _hmac_b64(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header's value."""
    return "v1," + _hmac_b64(secret_key(secret), f"{webhook_id}.{timestamp}.".encode() + body)


# How far a signed webhook's timestamp may be from now, either way (Standard Webhooks' libraries: 5 min).
TIMESTAMP_TOLERANCE_SECONDS = 300
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


class SignatureRefused(Exception):
    """A received webhook whose signature does not verify (the reason is for our log, never the sender)."""


def verify(
    secret: str,
    webhook_id: str | None,
    timestamp: str | None,
    signatures: str | None,
    body: bytes,
    *,
    now: float | None = None,
    tolerance_seconds: float = TIMESTAMP_TOLERANCE_SECONDS,
) -> None:
    """Checks a received Standard Webhooks signature, as signature() makes it: `signatures` is the
    webhook-signature header (space-separated `v1,<base64>` entries: a sender rotating its secret sends
    several), any of which may match. Raises SignatureRefused; a timestamp outside the tolerance is
    refused too, so a captured webhook cannot be replayed later."""
    if not webhook_id or not timestamp or not signatures:
        raise SignatureRefused("missing webhook-id, webhook-timestamp or webhook-signature")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise SignatureRefused("malformed webhook-timestamp")
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance_seconds:
        raise SignatureRefused("webhook-timestamp outside the tolerance")
    expected = signature(secret, webhook_id, int(timestamp), body).encode()
    for candidate in signatures.split(" "):
        if candidate.startswith("v1,") and hmac.compare_digest(candidate.encode(), expected):
            return
    raise SignatureRefused("no matching v1 signature")


def is_secret(text: str) -> bool:
    """Whether `text` is a usable whsec_ secret: the prefix, then base64 of at least 16 bytes."""
    if not text.startswith(SECRET_PREFIX):
        return False
    try:
        return len(base64.b64decode(text.removeprefix(SECRET_PREFIX), validate=True)) >= 16
    except ValueError:
        return False


def canopy_body(secret: str, event_type: str, data: bytes) -> bytes:
    """Canopy's body {"event", "data", "hmac_signature"}, `data` kept as the bytes it was signed as."""
    event = _json_string(event_type)
    mac = _json_string(_hmac_b64(secret_key(secret), data))
    return b'{"event":' + event + b',"data":' + data + b',"hmac_signature":' + mac + b"}"


def _json_string(text: str) -> bytes:
    """A JSON string (names and base64 need no escaping beyond what this does)."""
    return b'"' + text.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


@dataclass(frozen=True)
class WebhookHosts:
    """Where deliveries may connect: any public address; the operator's hosts wherever they resolve."""

    operator: LithicHosts = LITHIC_ONLY  # no operator hosts

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> WebhookHosts:
        try:
            return cls(LithicHosts.from_entries(entries))
        except ValueError as exc:
            raise ValueError(str(exc).replace("CANOPY_SVC_LITHIC_ALLOWED_HOSTS", ALLOWED_HOSTS_ENV)) from None

    def allows(self, host: str, port: int) -> bool:
        return True  # the address is what counts: GuardedBackend checks it when it dials

    def trusts(self, host: str, port: int) -> bool:
        return self.operator.trusts(host, port)

    def problem(self, url: str) -> str | None:
        """Why a tenant's URL may not be used (a message for the tenant), or None. url_pattern() states
        the same rule for the OpenAPI document: change both together."""
        matched = _URL.fullmatch(url)
        if matched is None:
            return "must be an absolute https URL: scheme, host, optional port, path and query, nothing else"
        scheme, raw_host = matched["scheme"].lower(), matched["host"].lower()
        host = raw_host.strip("[]")
        port = int(matched["port"]) if matched["port"] else (443 if scheme == "https" else 80)
        if not 0 < port < 65536:
            return "must have a port between 1 and 65535"
        if scheme == "http" and not (self.trusts(host, port) and _is_loopback(host)):
            return "must use https"
        if not self.trusts(host, port) and (raw_host.startswith("[") or _is_ipv4(host) or _is_localhost(host)):
            return "must name its host (not an IP address or localhost)"
        return None

    def url_pattern(self) -> str:
        """What problem() accepts, as one ECMA/Python regex: https (any case) to a name that is neither an
        IPv4 literal nor localhost, on a port of 1..65535 (leading zeros allowed), with problem()'s path
        and query; or the operator's hosts, with http too where loopback. An operator's IPv6 host is
        spelled in its canonical form only (the server takes every spelling of the address)."""
        name = rf"(?!{_IPV4}{_HOST_END})(?!(?:[A-Za-z0-9.-]*\.)?{any_case('localhost')}{_HOST_END})[A-Za-z0-9.-]+"
        origins = [f"{any_case('https')}://{name}(?::{_PORT})?"]
        for host, allowed in sorted(self.operator.operator, key=lambda entry: (entry[0], entry[1] or 0)):
            spelled = rf"\[{host}\]" if ":" in host else any_case(host)
            schemes = ("https", "http") if _is_loopback(host) else ("https",)
            for scheme in schemes:
                default = 443 if scheme == "https" else 80
                if allowed is None:
                    port = f"(?::{_PORT})?"
                else:
                    spelled_port = f":0{{0,{5 - len(str(allowed))}}}{allowed}"
                    port = f"(?:{spelled_port})?" if allowed == default else spelled_port
                origins.append(f"{any_case(scheme)}://{spelled}{port}")
        return f"^(?:{'|'.join(origins)}){_REST}{END}"


# url_pattern's pieces, as _URL and problem() read a URL.
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = rf"(?:{_OCTET}\.){{3}}{_OCTET}"  # what ipaddress reads as IPv4: no leading zeros
_HOST_END = "(?:[:/?]|$)"
_PORT = (
    "(?=[0-9]{1,5}(?![0-9]))0*(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
)
_REST = r"(?:/[A-Za-z0-9._~!$&'()*+,;=:@%-]*)*(?:\?[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _is_ipv4(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv4Address)
    except ValueError:
        return False  # a name ("127.1" and "0x7f.1" too): its address is checked when it is dialled


def _is_localhost(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """The wait a Retry-After header asks for (delay-seconds, or an HTTP-date), None when there is none
    or it cannot be read. Not bounded here: the delivery policy bounds it."""
    if value is None:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": an HTTP-date is in GMT
        when = when.replace(tzinfo=datetime.UTC)
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


@dataclass(frozen=True)
class Answer:
    """What a receiver answered: its status (None: no answer), the start of its body, and the wait its
    Retry-After asked for (429 and 503 only)."""

    status: int | None
    body: str
    error: str | None = None
    retry_after: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookClient:
    """POSTs deliveries. One connection pool for every receiver; never retries by itself (the worker
    owns the schedule, stored with each delivery)."""

    def __init__(
        self,
        hosts: WebhookHosts,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.hosts = hosts
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            transport=transport or GuardedTransport(hosts),
            follow_redirects=False,  # a 3xx is an answer that is not 2xx: retried, never followed
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def post(self, url: str, secret: str, webhook_id: str, body: bytes) -> Answer:
        problem = self.hosts.problem(url)
        if problem is not None:  # checked at subscribe time too; an operator may have narrowed the hosts
            return Answer(None, "", f"webhook_url {problem}")
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": "canopy-svc-webhooks",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secret, webhook_id, timestamp, body),
        }
        try:
            # One deadline for the whole exchange: httpx's timeout is per phase, a trickling
            # receiver could hold a delivery far longer.
            async with (
                asyncio.timeout(self.timeout),
                self._http.stream("POST", url, content=body, headers=headers) as response,
            ):
                kept = bytearray()
                async for chunk in response.aiter_raw():
                    kept += chunk[: MAX_KEPT_ANSWER - len(kept)]
                    if len(kept) >= MAX_KEPT_ANSWER:
                        break  # the rest is not read: closing the stream drops the connection
                retry_after = None
                if response.status_code in RETRY_AFTER_STATUSES:
                    retry_after = retry_after_seconds(response.headers.get("retry-after"))
                return Answer(response.status_code, kept.decode("utf-8", "replace"), retry_after=retry_after)
        except DestinationRefused:
            return Answer(None, "", "the webhook_url resolves to an address that is not public")
        except (TimeoutError, httpx.TimeoutException):
            return Answer(None, "", "timed out")
        except httpx.HTTPError as exc:
            return Answer(None, "", f"connection failed ({type(exc).__name__})")
