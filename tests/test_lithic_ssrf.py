"""A tenant's Lithic base_url cannot make this server call anything but Lithic (issue 8, item 2).

Refused when set (PUT /organization/issuer_processors: the contract's 422), refused again on the
address each connection dials (DNS can answer anything, later), never redirected, and only Lithic's
own error object is repeated back in a card's error.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import subprocess
import sys
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpcore
import httpx
import pytest

from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.settings import Settings
from canopy_svc.issuers.card_issuer import CardRequest, LithicRejected
from canopy_svc.issuers.egress import DestinationRefused, GuardedBackend, GuardedTransport, is_public_address
from canopy_svc.issuers.gateway import CardGateway
from canopy_svc.issuers.hosts import LITHIC_ONLY, LithicHosts
from canopy_svc.issuers.lithic import LithicClient
from canopy_svc.workers.cards import CardWorker, RetryPolicy
from tests.fake_lithic import FakeLithic
from tests.helpers import TEST_DATA_KEY, TEST_JWT_SECRET, TEST_KEY_TEXT, ApiClient, assert_invalid, minimal_customer

KEY = "test-key"
PROXY = "lithic-proxy.internal:8443"


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Lithic's hosts only (the default), unless a test gives the operator's list."""
    allowed: tuple[str, ...] = getattr(request, "param", ())
    return Settings(
        database_url=None,
        data_dir=tmp_path,
        jwt_secret=TEST_JWT_SECRET,
        data_key=TEST_DATA_KEY,
        lithic_allowed_hosts=allowed,
    )


async def put_base_url(api: ApiClient, base_url: str) -> httpx.Response:
    return await api.http.put(
        "/organization/issuer_processors", json={"lithic_config": {"api_key": KEY, "base_url": base_url}}
    )


INTERNAL = [
    # loopback, any port and path, any scheme
    "https://localhost",
    "https://localhost:5432",
    "http://localhost:5432/",
    "http://127.0.0.1:8089",
    "https://127.0.0.1",
    "https://127.0.0.2:6379",
    "https://[::1]",
    "https://[::1]:443",
    "http://[::1]:8080",
    # private, shared, link-local (cloud metadata), unspecified, multicast, broadcast
    "https://10.0.0.5",
    "https://172.16.0.1",
    "https://192.168.1.1",
    "https://100.64.0.1",
    "https://169.254.169.254/latest/meta-data",
    "https://0.0.0.0",
    "https://224.0.0.1",
    "https://255.255.255.255",
    "https://[fe80::1]",
    "https://[fd00::1]",
    "https://[fc00::1]",
    "https://[ff02::1]",
    "https://[::]",
    # IPv6 forms of IPv4 addresses
    "https://[::ffff:127.0.0.1]",
    "https://[::ffff:7f00:1]",
    "https://[::ffff:169.254.169.254]",
    "https://[64:ff9b::a9fe:a9fe]",
    "https://[2002:7f00:1::]",
    "https://[::127.0.0.1]",
    # other spellings of 127.0.0.1 that resolvers accept
    "http://2130706433/",
    "https://2130706433",
    "https://0x7f000001",
    "https://0x7f.1",
    "https://0177.0.0.1",
    "https://127.1",
    "https://017700000001",
    "https://127.000.000.001",
]
LOOKALIKES = [
    # trailing dots and empty labels
    "https://api.lithic.com.",
    "https://sandbox.lithic.com./v1",
    "https://localhost.",
    "https://api..lithic.com",
    # userinfo, and parser-differential characters around it
    "https://api.lithic.com@127.0.0.1/",
    "https://api.lithic.com:443@127.0.0.1",
    "https://user:pw@api.lithic.com",
    "https://127.0.0.1#@api.lithic.com",
    "https://127.0.0.1\\@api.lithic.com",
    "https://127.0.0.1?@api.lithic.com",
    "https://api.lithic.com\\.evil.example",
    "https://api.lithic.com%2f@127.0.0.1",
    # other hosts that look like Lithic's
    "https://api.lithic.com.evil.example",
    "https://evil-api.lithic.com",
    "https://lithic.com",
    "https://www.lithic.com",
    "https://ap\u0456.lithic.com",
    "https://xn--ap-ioc.lithic.com",  # a Cyrillic i, and its punycode
    # Lithic's hosts, but not over https on 443
    "http://api.lithic.com",
    "http://sandbox.lithic.com/v1",
    "https://api.lithic.com:8443",
    "https://api.lithic.com:80",
    "https://api.lithic.com:0443x",
    # paths, queries, fragments, escapes, whitespace, control characters
    "https://api.lithic.com/../admin",
    "https://api.lithic.com/./v1",
    "https://api.lithic.com/%2e%2e/",
    "https://api.lithic.com/v1?x=1",
    "https://api.lithic.com/#frag",
    "https://api.lithic.com /v1",
    "https://api.lithic.com\t",
    "https://api.lithic.com\x00",
    "https://api.lithic.com\r\nHost: 127.0.0.1",
    "https://api.lithic.com//v1",
    "https://",
    "https:///api.lithic.com",
]


def refusal_problem(answer: httpx.Response) -> str | None:
    """What is wrong with an answer that should be the contract's 422 on base_url, or None."""
    try:
        details = assert_invalid(answer)
    except AssertionError as error:
        return str(error)
    if {d["instancePath"] for d in details} != {"/lithic_config/base_url"}:
        return f"details {details}"
    return None


# Each list in one test (one organization, one client): a client's secret hash is most of a test's setup.
async def test_a_base_url_off_lithic_is_refused_when_set(api: ApiClient) -> None:
    wrong = {}
    for base_url in INTERNAL + LOOKALIKES:
        problem = refusal_problem(await put_base_url(api, base_url))
        if problem is not None:
            wrong[base_url] = problem
    assert wrong == {}
    assert (await api.http.get("/organization/issuer_processors")).json() == {"lithic_config": None}


async def test_lithics_own_hosts_are_accepted(api: ApiClient) -> None:
    for base_url in [
        "https://api.lithic.com",
        "https://sandbox.lithic.com",
        "https://sandbox.lithic.com/",
        "https://api.lithic.com/v1",
        "https://API.Lithic.com/v1/",
        "https://sandbox.lithic.com:443",
    ]:
        answer = await put_base_url(api, base_url)
        assert answer.status_code == 200, (base_url, answer.text)
        assert answer.json()["lithic_config"]["base_url"] == base_url


@pytest.mark.parametrize("settings", [("127.0.0.1", PROXY)], indirect=True)
async def test_the_operator_allows_more_hosts_and_only_those(api: ApiClient) -> None:
    for base_url in [
        "http://127.0.0.1:8089",
        "https://127.0.0.1:5432/v1",
        f"https://{PROXY}",
        "https://api.lithic.com",
    ]:
        answer = await put_base_url(api, base_url)
        assert answer.status_code == 200, (base_url, answer.text)
    wrong = {}
    for base_url in [
        "https://lithic-proxy.internal",  # the operator allowed port 8443 only
        f"http://{PROXY}",  # the key is not sent in clear across a network
        "http://localhost:8089",
        "http://127.0.0.2:8089",
        "http://2130706433:8089",
        "http://[::ffff:127.0.0.1]:8089",
        "http://127.0.0.1.:8089",
        "http://[::1]:8089",
        "http://api.lithic.com@127.0.0.2:8089",
    ]:
        problem = refusal_problem(await put_base_url(api, base_url))
        if problem is not None:
            wrong[base_url] = problem
    assert wrong == {}


@pytest.mark.parametrize(
    "entry",
    [
        "http://127.0.0.1",
        "127.0.0.1:0",
        "127.0.0.1:99999",
        "[::1",
        "host/path",
        "user@host",
        "host:port",
        "a_b.example",
    ],
)
def test_a_malformed_operator_entry_stops_the_start(entry: str) -> None:
    with pytest.raises(ValueError, match="CANOPY_SVC_LITHIC_ALLOWED_HOSTS"):
        LithicHosts.from_entries([entry])
    with pytest.raises(ValueError, match="CANOPY_SVC_LITHIC_ALLOWED_HOSTS"):
        Settings(lithic_allowed_hosts=("127.0.0.1", entry))


def test_serve_with_a_malformed_operator_entry_stops_before_any_worker(tmp_path: Path) -> None:
    """Checked once in serve's own process: each worker raising it would be restarted by uvicorn, in a loop.
    The database named does not exist, so a check left to the workers fails on it instead."""
    env = {
        **os.environ,
        "CANOPY_SVC_LITHIC_ALLOWED_HOSTS": "127.0.0.1 http://127.0.0.1",
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "CANOPY_SVC_DATA_KEY": TEST_KEY_TEXT,
    }
    done = subprocess.run(
        [sys.executable, "-m", "canopy_svc", "serve", "--workers", "2", "--port", "1", "--data-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "CANOPY_SVC_LITHIC_ALLOWED_HOSTS: 'http://127.0.0.1'" in done.stderr, done.stderr


def test_the_operator_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CANOPY_SVC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CANOPY_SVC_LITHIC_ALLOWED_HOSTS", f"127.0.0.1, {PROXY} ::1")
    assert Settings.from_env().lithic_allowed_hosts == ("127.0.0.1", PROXY, "::1")
    monkeypatch.delenv("CANOPY_SVC_LITHIC_ALLOWED_HOSTS")
    assert Settings.from_env().lithic_allowed_hosts == ()
    hosts = LithicHosts.from_entries(["127.0.0.1", PROXY, "::1", "[::2]:80"])
    assert hosts.trusts("127.0.0.1", 1) and hosts.trusts("lithic-proxy.internal", 8443) and hosts.trusts("::1", 9)
    assert hosts.trusts("::2", 80) and not hosts.trusts("::2", 81) and not hosts.trusts("lithic-proxy.internal", 443)


# -- at connect time -------------------------------------------------------------------------------------


class Everywhere:
    """Destinations that let every name through to the address check (which is what is tested)."""

    def allows(self, host: str, port: int) -> bool:
        return True

    def trusts(self, host: str, port: int) -> bool:
        return False


class Dialer(httpcore.AsyncNetworkBackend):
    """Records every address dialled; tunnels to `target` (a local server) when given one."""

    def __init__(self, target: tuple[str, int] | None = None) -> None:
        self.dialled: list[tuple[str, int]] = []
        self.target = target

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.dialled.append((host, port))
        if self.target is None:
            raise httpcore.ConnectError("nothing listens here")
        return await httpcore.AnyIOBackend().connect_tcp(*self.target, timeout=timeout)


def resolving_to(*addresses: str) -> Any:
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return list(addresses)

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


NON_PUBLIC = [
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "172.31.255.255",
    "192.168.0.1",
    "100.64.0.1",
    "169.254.169.254",
    "0.0.0.0",
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "240.0.0.1",
    "192.0.2.1",
    "198.18.0.1",
    "192.0.0.8",
    "::1",
    "::",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b:1::1",
    "2002:7f00:1::1",
    "2002:a00:1::1",
    "2001:0:4136:e378:8000:63bf:80ff:fffe",
    "fe80::1",
    "fe80::1%1",
    "fec0::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "ff0e::1",
    "2001:db8::1",
    "100::1",
    "::127.0.0.1",
    "not an address",
]
PUBLIC = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "2606:2800:220:1:248:1893:25c8:1946",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


@pytest.mark.parametrize("address", NON_PUBLIC)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_not(address: str) -> None:
    assert is_public_address(address)


# Every range IANA's special-purpose registries mark not globally reachable (and those they mark N/A
# but that lead inside: 6to4's relay anycast), multicast, and the deprecated site-local and
# IPv4-compatible IPv6 ranges. The ranges that embed an IPv4 address (IPv4-mapped, NAT64, 6to4,
# Teredo) are tested through the addresses they embed.
NOT_GLOBAL_V4 = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "255.255.255.255/32",
]
NOT_GLOBAL_V6 = [
    "::/128",
    "::1/128",
    "::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",
    "2001:db8::/32",
    "3fff::/20",
    "5f00::/16",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
]
NOT_GLOBAL = [ipaddress.ip_network(network) for network in NOT_GLOBAL_V4 + NOT_GLOBAL_V6]


def first_middle_last(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[Any]:
    return sorted({network[0], network[network.num_addresses // 2], network[-1]})


def embeddings(v4: ipaddress.IPv4Address) -> list[ipaddress.IPv6Address]:
    """The IPv6 addresses that lead to v4: IPv4-mapped, NAT64, 6to4, and a Teredo client's."""
    teredo_server = int(ipaddress.IPv4Address("65.54.227.120"))
    return [
        ipaddress.IPv6Address(f"::ffff:{v4}"),
        ipaddress.IPv6Address(f"64:ff9b::{v4}"),
        ipaddress.IPv6Address((0x2002 << 112) | (int(v4) << 80) | 1),
        ipaddress.IPv6Address((0x20010000 << 96) | (teredo_server << 64) | (~int(v4) & 0xFFFFFFFF)),
    ]


@pytest.mark.parametrize("network", NOT_GLOBAL, ids=str)
def test_every_address_of_every_non_global_range_is_refused(network: Any) -> None:
    """The range's first, middle and last address, and for IPv4 each IPv6 form that embeds them."""
    addresses = first_middle_last(network)
    if network.version == 4:
        addresses += [embedded for address in addresses for embedded in embeddings(address)]
    assert [str(address) for address in addresses if is_public_address(address)] == []


def test_the_ranges_end_where_they_do() -> None:
    """The address just outside each range is public (when it is in no other range, and global unicast),
    embedded in IPv6 too: a range is refused exactly, not by a coarser prefix."""
    global_unicast = ipaddress.ip_network("2000::/3")
    neighbours = []
    for network in NOT_GLOBAL:
        for step in (-1, network.num_addresses):
            try:
                neighbour = network[0] + step
            except ipaddress.AddressValueError:
                continue
            if any(neighbour in other for other in NOT_GLOBAL):
                continue
            if neighbour.version == 6 and neighbour not in global_unicast:
                continue  # reserved space around ::/8 and fc00::/7 and above: not public either
            neighbours += [neighbour, *(embeddings(neighbour) if neighbour.version == 4 else [])]
    assert len(neighbours) > 40
    assert [str(address) for address in neighbours if not is_public_address(address)] == []


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "0x7f.1",
        "localhost",
        "::1",
        "::ffff:127.0.0.1",
        "169.254.169.254",
        "10.0.0.1",
        "0.0.0.0",
        "0",
        "fe80::1",
        "fd00::1",
        "224.0.0.1",
        "100.64.0.1",
    ],
)
async def test_what_a_name_resolves_to_is_checked_before_dialling(host: str) -> None:
    """The system resolver's own reading of each spelling (2130706433 is 127.0.0.1 to it) is checked."""
    dialer = Dialer()
    backend = GuardedBackend(Everywhere(), inner=dialer)
    with pytest.raises(DestinationRefused):
        await backend.connect_tcp(host, 443, timeout=5)
    assert dialer.dialled == []


@pytest.mark.parametrize(
    "answer",
    [
        ["127.0.0.1"],
        ["169.254.169.254"],
        ["::ffff:10.0.0.1"],
        ["fd00::1"],
        ["93.184.216.34", "127.0.0.1"],
        ["127.0.0.1", "93.184.216.34"],
    ],
)
async def test_lithics_name_rebound_to_an_internal_address_is_refused(answer: list[str]) -> None:
    """DNS rebinding: a name allowed by name that answers an internal address, even among public ones."""
    dialer = Dialer()
    backend = GuardedBackend(LITHIC_ONLY, resolver=resolving_to(*answer), inner=dialer)
    with pytest.raises(DestinationRefused):
        await backend.connect_tcp("api.lithic.com", 443, timeout=5)
    assert dialer.dialled == []


async def test_a_name_is_dialled_at_the_address_checked_not_looked_up_again() -> None:
    dialer = Dialer()
    resolve = resolving_to("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946")
    backend = GuardedBackend(LITHIC_ONLY, resolver=resolve, inner=dialer)
    with pytest.raises(httpcore.ConnectError):
        await backend.connect_tcp("sandbox.lithic.com", 443, timeout=5)
    assert resolve.asked == ["sandbox.lithic.com"]
    assert dialer.dialled == [("93.184.216.34", 443), ("2606:2800:220:1:248:1893:25c8:1946", 443)]


class Unanswered(Dialer):
    """The first address dialled never answers (its whole timeout, told at once); the others refuse."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float | None] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.timeouts.append(timeout)
        if not self.dialled:
            self.dialled.append((host, port))
            raise httpcore.ConnectTimeout("no answer")
        return await super().connect_tcp(host, port, timeout, local_address, socket_options)


async def test_one_connect_timeout_covers_the_lookup_and_every_address() -> None:
    """As httpx's own connect: the lookup's time counts, and an address that never answers takes only
    its share, so the next one (IPv4 after an unrouted IPv6, say) is still dialled."""

    async def slow_resolve(host: str, port: int) -> list[str]:
        await asyncio.sleep(0.2)
        return ["2606:2800:220:1:248:1893:25c8:1946", "93.184.216.34", "1.1.1.1"]

    dialer = Unanswered()
    backend = GuardedBackend(LITHIC_ONLY, resolver=slow_resolve, inner=dialer)
    with pytest.raises(httpcore.ConnectError):  # the last address refused
        await backend.connect_tcp("api.lithic.com", 443, timeout=9)
    assert [address for address, _ in dialer.dialled] == [
        "2606:2800:220:1:248:1893:25c8:1946",
        "93.184.216.34",
        "1.1.1.1",
    ]
    # The lookup slept 0.2 s at least (give or take the clock's resolution).
    assert all(timeout is not None and 0 < timeout < 9 - 0.19 for timeout in dialer.timeouts), dialer.timeouts
    assert dialer.timeouts[0] is not None and dialer.timeouts[0] < (9 - 0.19) / 3  # its share of three


async def test_a_lookup_that_uses_up_the_timeout_is_a_connect_timeout() -> None:
    async def hanging_resolve(host: str, port: int) -> list[str]:
        await asyncio.sleep(60)
        return ["93.184.216.34"]

    dialer = Dialer()
    with pytest.raises(httpcore.ConnectTimeout):
        await GuardedBackend(LITHIC_ONLY, resolver=hanging_resolve, inner=dialer).connect_tcp(
            "api.lithic.com", 443, timeout=0.1
        )
    assert dialer.dialled == []


@pytest.mark.parametrize(
    ("host", "port"),
    [("evil.example", 443), ("api.lithic.com", 5432), ("127.0.0.1", 443), ("lithic-proxy.internal", 443)],
)
async def test_a_destination_not_allowed_is_refused_before_any_lookup(host: str, port: int) -> None:
    resolve, dialer = resolving_to("93.184.216.34"), Dialer()
    backend = GuardedBackend(LithicHosts.from_entries([PROXY]), resolver=resolve, inner=dialer)
    with pytest.raises(DestinationRefused):
        await backend.connect_tcp(host, port, timeout=5)
    assert resolve.asked == [] and dialer.dialled == []


async def test_a_host_the_operator_allowed_is_dialled_by_name() -> None:
    resolve, dialer = resolving_to("127.0.0.1"), Dialer()
    backend = GuardedBackend(LithicHosts.from_entries(["localhost"]), resolver=resolve, inner=dialer)
    with pytest.raises(httpcore.ConnectError):
        await backend.connect_tcp("localhost", 8089, timeout=5)
    assert resolve.asked == [] and dialer.dialled == [("localhost", 8089)]


async def test_the_request_keeps_its_host_when_dialled_at_an_address(fake_lithic: FakeLithic) -> None:
    """Dialled at the checked address, the request still names the host (and TLS would verify it)."""
    port = int(fake_lithic.base_url.rsplit(":", 1)[1])
    dialer = Dialer(target=("127.0.0.1", port))  # stands in for the public address's network path

    class LithicTest(Everywhere):
        def allows(self, host: str, port: int) -> bool:
            return host == "lithic.test"

    transport = GuardedTransport(LithicTest(), resolver=resolving_to("93.184.216.34"), inner=dialer)
    async with httpx.AsyncClient(transport=transport) as http:
        answer = await http.patch(
            f"http://lithic.test:{port}/v1/cards/{uuid.uuid4()}",
            headers={"Authorization": KEY},
            json={"state": "PAUSED"},
        )
        with pytest.raises(DestinationRefused):
            await http.get(f"http://127.0.0.1:{port}/")
    assert answer.status_code == 404  # the fake's answer for an unknown card
    assert dialer.dialled == [("93.184.216.34", port)]
    assert [r.headers["Host"] for r in fake_lithic.requests] == [f"lithic.test:{port}"]


async def test_the_client_refuses_lithics_name_rebound_to_loopback() -> None:
    dialer = Dialer()
    transport = GuardedTransport(LITHIC_ONLY, resolver=resolving_to("127.0.0.1"), inner=dialer)
    async with LithicClient(timeout=5, transport=transport) as client:
        with pytest.raises(LithicRejected) as caught:
            await client.create_card("https://api.lithic.com", KEY, str(uuid.uuid4()), CardRequest(type="VIRTUAL"))
    assert caught.value.status == 0 and "allowed" in caught.value.message
    assert dialer.dialled == []


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:{port}",
        "http://localhost:{port}",
        "https://127.0.0.1:{port}",
        "http://2130706433:{port}",
        "https://api.lithic.com@127.0.0.1:{port}",
    ],
)
async def test_the_client_refuses_a_base_url_off_lithic_before_sending(fake_lithic: FakeLithic, base_url: str) -> None:
    """A base_url stored before the rule (or allowed by an operator since gone) is refused when used."""
    url = base_url.format(port=fake_lithic.base_url.rsplit(":", 1)[1])
    async with LithicClient(timeout=5) as client:  # the default: Lithic's hosts only
        with pytest.raises(LithicRejected) as caught:
            await client.create_card(url, KEY, str(uuid.uuid4()), CardRequest(type="VIRTUAL"))
    assert caught.value.status == 0
    assert fake_lithic.requests == []


async def test_a_card_of_a_stored_base_url_off_lithic_fails_without_a_call(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    """An organization whose base_url was stored by an older version (http to a loopback port)."""
    ok = await api.http.put("/organization/issuer_processors", json={"lithic_config": {"api_key": KEY}})
    assert ok.status_code == 200
    await pool.execute("UPDATE organizations SET lithic_base_url = $2 WHERE id = $1", api.org_id, fake_lithic.base_url)
    await link_with_card(api)

    worker = CardWorker(
        pool,
        None,
        CardGateway(DataCipher(TEST_DATA_KEY), lithic=LithicClient(timeout=5)),
        policy=RetryPolicy(base_seconds=0.01),
    )
    assert await worker.process_due() == 1

    (card,) = await pool.fetch("SELECT status, error FROM cards")
    assert card["status"] == "FAILED" and card["error"].startswith("Lithic base_url must be a Lithic API host")
    assert fake_lithic.requests == []


async def link_with_card(api: ApiClient) -> None:
    product = await api.http.post(
        "/products", json={"product_overview": {"product_name": "Card", "product_type": "REVOLVING"}}
    )
    account = await api.http.post("/accounts", json={"account_id": "acc-1", "product_id": product.json()["product_id"]})
    assert account.status_code == 200, account.text
    customer = await api.http.post(
        "/customers",
        json=minimal_customer(
            customer_id="cust-1",
            assign_to_accounts=[
                {"account_id": "acc-1", "customer_account_issuer_processor_config": {"lithic": {"type": "SINGLE_USE"}}}
            ],
        ),
    )
    assert customer.status_code == 200, customer.text


# -- redirects -------------------------------------------------------------------------------------------


@pytest.fixture
def elsewhere() -> Iterator[FakeLithic]:
    """A second server, where a redirect would lead."""
    with FakeLithic(api_key=KEY) as other:
        yield other


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_never_followed(fake_lithic: FakeLithic, elsewhere: FakeLithic, status: int) -> None:
    fake_lithic.answer_next(status=status, body="", headers={"Location": elsewhere.base_url + "/v1/cards"})
    async with LithicClient(timeout=5, hosts=LithicHosts.from_entries(["127.0.0.1"])) as client:
        with pytest.raises(LithicRejected) as caught:
            await client.create_card(fake_lithic.base_url, KEY, str(uuid.uuid4()), CardRequest(type="VIRTUAL"))
    assert caught.value.status == status
    assert caught.value.message.startswith(f"HTTP {status}")
    assert len(fake_lithic.requests) == 1 and elsewhere.requests == []


# -- what of an upstream's answer is repeated back -------------------------------------------------------

REQUEST_ID = "8a1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"
NOT_LITHICS = [
    b'{"message": "redis: -ERR unknown command"}',  # no debugging_request_id
    b'{"debugging_request_id": "not-a-uuid", "message": "internal text"}',
    b'{"debugging_request_id": 5, "message": "internal text"}',
    b'{"debugging_request_id": "%s", "message": 5}' % REQUEST_ID.encode(),
    b'{"debugging_request_id": "%s", "message": " \\n "}' % REQUEST_ID.encode(),
    b'{"error": {"message": "internal text"}}',
    b'["internal text"]',
    b'"internal text"',
    b"internal text",
    b"<html>internal text</html>",
    b"SSH-2.0-OpenSSH_9.6\r\n",
    b"\x00\x01\x02 internal text",
    b"",
]


def mocked_client(status: int, body: bytes, reason: bytes = b"internal text") -> LithicClient:
    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, extensions={"reason_phrase": reason})

    return LithicClient(transport=httpx.MockTransport(upstream))


@pytest.mark.parametrize("body", NOT_LITHICS)
@pytest.mark.parametrize("status", [400, 404, 422])
async def test_only_lithics_error_object_is_repeated_back(body: bytes, status: int) -> None:
    async with mocked_client(status, body) as client:
        with pytest.raises(LithicRejected) as caught:
            await client.create_card("https://api.lithic.com", KEY, str(uuid.uuid4()), CardRequest(type="VIRTUAL"))
    assert (
        caught.value.message
        == {400: "HTTP 400 Bad Request", 404: "HTTP 404 Not Found", 422: "HTTP 422 Unprocessable Entity"}[status]
    )
    assert caught.value.debugging_request_id is None


async def test_an_unknown_status_gets_its_number_only() -> None:
    async with mocked_client(499, b"internal text") as client:
        with pytest.raises(LithicRejected) as caught:
            await client.create_card("https://api.lithic.com", KEY, str(uuid.uuid4()), CardRequest(type="VIRTUAL"))
    assert caught.value.message == "HTTP 499"


async def test_lithics_error_object_is_repeated_back_bounded() -> None:
    body = b'{"debugging_request_id": "%s", "message": "Invalid\\u0000 memo %s"}' % (REQUEST_ID.encode(), b"x" * 5000)
    async with mocked_client(400, body) as client:
        with pytest.raises(LithicRejected) as caught:
            await client.create_card("https://api.lithic.com", KEY, str(uuid.uuid4()), CardRequest(type="VIRTUAL"))
    assert caught.value.message.startswith("Invalid memo xxx") and len(caught.value.message) == 500
    assert caught.value.debugging_request_id == REQUEST_ID


async def test_a_card_error_shows_no_upstream_text(api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic) -> None:
    """Through the API: what an upstream that is not Lithic says never reaches card_details[].error."""
    hosts = LithicHosts.from_entries(["127.0.0.1"])
    await api.http.put("/organization/issuer_processors", json={"lithic_config": {"api_key": KEY}})
    await pool.execute("UPDATE organizations SET lithic_base_url = $2 WHERE id = $1", api.org_id, fake_lithic.base_url)
    # JSON with a message, as many servers answer, but not Lithic's error object.
    fake_lithic.answer_next(status=400, body={"message": "-ERR wrong number of arguments (redis at 10.0.0.7)"})
    await link_with_card(api)

    worker = CardWorker(
        pool,
        None,
        CardGateway(DataCipher(TEST_DATA_KEY), lithic=LithicClient(timeout=5, hosts=hosts)),
        policy=RetryPolicy(base_seconds=0.01),
    )
    assert await worker.process_due() == 1

    (card,) = (await api.http.get("/accounts/acc-1")).json()["customers"][0]["card_details"]
    assert card["status"] == "FAILED" and card["error"] == "HTTP 400 Bad Request"
