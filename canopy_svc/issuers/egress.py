"""Outbound connections that cannot be pointed at this machine or its private network.

A host name allowed by name can still resolve to 127.0.0.1, 169.254.169.254 or 10.x (a hostile or
rebinding DNS answer), and a check of the name before the request says nothing about the address the
socket then dials. So the check is made where the connection is made: an httpcore network backend
resolves the name once, refuses unless every address is public, and connects to a checked address.
TLS still verifies the certificate of the name (httpcore's server_hostname is the URL's host, not the
address dialled), and the Host header is the URL's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

import httpcore
import httpx

log = logging.getLogger("canopy_svc.issuers.egress")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

# Well-known prefixes that embed an IPv4 address: the embedded one decides (6to4 and Teredo are
# unwrapped by ipaddress itself).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Not globally reachable (IANA special-purpose registries) though Python 3.11 calls them global:
# IETF protocol assignments, 6to4 relay anycast, NAT64 local use, documentation (RFC 9637).
_NOT_GLOBAL = tuple(
    ipaddress.ip_network(network) for network in ("192.0.0.0/24", "192.88.99.0/24", "64:ff9b:1::/48", "3fff::/20")
)


class DestinationRefused(Exception):
    """No connection was made: the destination is not one this client may reach. Never retried."""


class Destinations(Protocol):
    def allows(self, host: str, port: int) -> bool:
        """Whether a request may go to this host and port at all."""

    def trusts(self, host: str, port: int) -> bool:
        """Whether the operator allowed this host by name, wherever it resolves (loopback for tests)."""


def is_public_address(address: str | IPAddress) -> bool:
    """False for loopback, private, shared (CGNAT), link-local, multicast, reserved, unspecified and
    documentation addresses, and for IPv6 forms that embed one (IPv4-mapped, NAT64, 6to4, Teredo)."""
    try:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:  # fe80::1%eth0: a link's own address
            return False
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public_address(embedded)
        if ip.is_site_local:
            return False
    if any(ip in network for network in _NOT_GLOBAL):
        return False
    return ip.is_global and not (
        ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified
    )


async def resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host (it also reads 2130706433 or 0x7f.1 as IPv4)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _share(remaining: float, addresses_left: int) -> float:
    """An address's part of the time left, as Go's dialer gives it: an even share, at least 2 s (or what
    is left), so one that never answers (an unrouted IPv6, say) leaves time for the next."""
    return min(remaining, max(remaining / addresses_left, 2.0))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, refusing any connection the destinations do not allow."""

    def __init__(
        self,
        destinations: Destinations,
        *,
        resolver: Resolver = resolve,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._destinations = destinations
        self._resolve = resolver
        self._inner = inner or httpcore.AnyIOBackend()

    # httpcore's signature, timeout included.
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if not self._destinations.allows(host, port):
            raise DestinationRefused(f"{host}:{port} is not an allowed destination")
        if self._destinations.trusts(host, port):
            return await self._inner.connect_tcp(
                host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
            )
        # One timeout for the lookup and every dial, as httpx's own connect has.
        clock = asyncio.get_running_loop().time
        deadline = None if timeout is None else clock() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                addresses = await self._resolve(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:  # no such name, resolver down: like a refused connection, retried later
            raise httpcore.ConnectError(f"cannot resolve {host} ({type(exc).__name__})") from None
        refused = [address for address in addresses if not is_public_address(address)]
        if refused or not addresses:
            # Every address, not just the first: a later attempt in the list must not reach inside either.
            log.warning("refused a connection to a non-public address", extra={"host": host, "addresses": refused})
            raise DestinationRefused(f"{host} resolves to an address that is not public")
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for index, address in enumerate(addresses):  # dial the checked address itself: no second lookup to rebind
            share = None if deadline is None else _share(deadline - clock(), len(addresses) - index)
            if share is not None and share <= 0:
                raise httpcore.ConnectTimeout(f"connecting to {host} timed out")
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=share, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise DestinationRefused("unix sockets are not a destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport (TLS verified, no proxy from the environment) over a GuardedBackend."""

    def __init__(
        self,
        destinations: Destinations,
        *,
        resolver: Resolver = resolve,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        super().__init__(retries=0)
        limits = httpx.Limits()
        # httpx 0.28 takes no network backend: its pool is replaced by the same pool over ours.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(destinations, resolver=resolver, inner=inner),
        )
