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
import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from canopy_svc.issuers.egress import DestinationRefused, GuardedTransport, is_public_address
from canopy_svc.issuers.hosts import LITHIC_ONLY, LithicHosts

ALLOWED_HOSTS_ENV = "CANOPY_SVC_WEBHOOK_ALLOWED_HOSTS"
SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
SECRET_BYTES = 32
MAX_KEPT_ANSWER = 4096

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
        """Why a tenant's URL may not be used (a message for the tenant), or None."""
        matched = _URL.fullmatch(url)
        if matched is None:
            return "must be an absolute https URL: scheme, host, optional port, path and query, nothing else"
        scheme, host = matched["scheme"].lower(), matched["host"].lower().strip("[]")
        port = int(matched["port"]) if matched["port"] else (443 if scheme == "https" else 80)
        if not 0 < port < 65536:
            return "must have a port between 1 and 65535"
        if scheme == "http" and not (self.trusts(host, port) and _is_loopback(host)):
            return "must use https"
        if not self.trusts(host, port) and _is_internal_literal(host):
            return "must not point at a loopback, private or link-local address"
        return None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _is_internal_literal(host: str) -> bool:
    """An address literal or `localhost` that is not public (a name is checked when it is dialled)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return not is_public_address(ipaddress.ip_address(host))
    except ValueError:
        return False


@dataclass(frozen=True)
class Answer:
    """What a receiver answered: its status (None: no answer) and the start of its body."""

    status: int | None
    body: str
    error: str | None = None

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
                return Answer(response.status_code, kept.decode("utf-8", "replace"))
        except DestinationRefused:
            return Answer(None, "", "the webhook_url resolves to an address that is not public")
        except (TimeoutError, httpx.TimeoutException):
            return Answer(None, "", "timed out")
        except httpx.HTTPError as exc:
            return Answer(None, "", f"connection failed ({type(exc).__name__})")
