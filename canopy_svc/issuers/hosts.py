"""Where a tenant's Lithic base_url may point: Lithic's own hosts, and those the operator allows."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

LITHIC_HOSTS = ("api.lithic.com", "sandbox.lithic.com")
# Read by canopy_svc.core.settings.Settings (lithic_allowed_hosts); named here for the messages of a bad entry.
ALLOWED_HOSTS_ENV = "CANOPY_SVC_LITHIC_ALLOWED_HOSTS"

# A base_url in the narrowest form: scheme, host (a name, or an IPv6 literal in brackets), port, path. No
# userinfo ("https://api.lithic.com@127.0.0.1/"), query, fragment, percent-escape, backslash or space, on
# which URL parsers disagree about the host; no "." or ".." path segment.
_HOST = r"[a-z0-9.-]+|\[[0-9a-f:.]+\]"
_BASE_URL = re.compile(
    rf"(?P<scheme>https?)://(?P<host>{_HOST})(?::(?P<port>[0-9]{{1,5}}))?(?P<path>(?:/[a-z0-9_~-][a-z0-9._~-]*)*/?)",
    re.IGNORECASE,
)
_ENTRY = re.compile(rf"(?P<host>{_HOST})(?::(?P<port>[0-9]{{1,5}}))?", re.IGNORECASE)


def _host_key(host: str) -> str:
    """A host as compared: lowercase, an IP literal in its canonical form and without brackets."""
    host = host.lower().removeprefix("[").removesuffix("]")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host  # a name; "127.1", "2130706433" or "0x7f.1" stay names, equal to no IP entry


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@dataclass(frozen=True)
class LithicHosts:
    """Where a Lithic base_url may point: Lithic's own hosts (https, port 443), and the hosts the operator
    allows (CANOPY_SVC_LITHIC_ALLOWED_HOSTS: a fake or a proxy; loopback for tests and the sandbox).

    A tenant sets base_url, so without this it could make this server call any address it can reach
    (metadata services, the database port) and read the answer back in a card's error.
    """

    # (host, port) pairs; port None means any port.
    operator: frozenset[tuple[str, int | None]] = frozenset()

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> LithicHosts:
        """Entries are `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address."""
        allowed: set[tuple[str, int | None]] = set()
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            matched = _ENTRY.fullmatch(f"[{entry}]" if entry.count(":") > 1 and "[" not in entry else entry)
            port = int(matched["port"]) if matched and matched["port"] else None
            if matched is None or port == 0 or (port or 0) > 65535:
                raise ValueError(f"{ALLOWED_HOSTS_ENV}: {entry!r} is not a host, host:port or [IPv6]:port")
            allowed.add((_host_key(matched["host"]), port))
        return cls(frozenset(allowed))

    def trusts(self, host: str, port: int) -> bool:
        key = _host_key(host)
        return (key, None) in self.operator or (key, port) in self.operator

    def allows(self, host: str, port: int) -> bool:
        return self.trusts(host, port) or (_host_key(host) in LITHIC_HOSTS and port == 443)

    def problem(self, base_url: str) -> str | None:
        """Why base_url may not be used (a message for the tenant), or None."""
        matched = _BASE_URL.fullmatch(base_url)
        if matched is None:
            return "must be an absolute https URL: scheme, host, optional port and path, nothing else"
        scheme, host = matched["scheme"].lower(), _host_key(matched["host"])
        port = int(matched["port"]) if matched["port"] else (443 if scheme == "https" else 80)
        if not self.allows(host, port):
            return f"must be a Lithic API host ({', '.join(LITHIC_HOSTS)}) over https"
        if scheme == "http" and not _is_loopback(host):
            # The key travels in a header: plain http only to this machine (a local fake), never across a network.
            return "must use https (http only to this machine)"
        return None


LITHIC_ONLY = LithicHosts()
