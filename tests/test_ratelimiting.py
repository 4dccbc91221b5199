"""Rate limiting on the wire (CONTRACT section 3): headers, 429s, per-client limits, the token route,
failing open, the CLI, and one limit across real worker processes sharing the database."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import http.client
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest

from canopy_svc import cli
from canopy_svc.api.app import create_app
from canopy_svc.api.routes import auth as auth_routes
from canopy_svc.core.db import create_pool
from canopy_svc.core.settings import Settings
from canopy_svc.rules.ratelimit import Decision, LeasingRateLimiter, MemoryRateLimiter, PostgresRateLimiter
from canopy_svc.store import api_clients
from tests.helpers import TEST_DATA_KEY, make_client, minimal_customer
from tests.processes import ServerProcess, poll, token_for

TINY_RATE = 0.001  # one request per 1000 s: no refill can happen during a test
RATE_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


def app_with(settings: Settings, pool: asyncpg.Pool, **overrides: Any) -> Any:
    return create_app(dataclasses.replace(settings, **overrides), pool=pool)


def http_for(app: Any, token: str | None = None, address: str = "127.0.0.1") -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(address, 40000)), base_url="http://testserver", headers=headers
    )


async def client_http(
    app: Any, pool: asyncpg.Pool, org: str = "acme", *, rate: float | None = None, burst: int | None = None
) -> tuple[str, str, httpx.AsyncClient]:
    """A new client of `org` (with these limits, if given): its id, secret, and an http client with its token."""
    org_id, client_id, secret = await make_client(pool, org)
    if rate is not None or burst is not None:
        assert await api_clients.set_limits(pool, client_id, rate=rate, burst=burst) is not None
    return client_id, secret, http_for(app, app.resources.tokens.issue(client_id, org_id, "read write"))


def limit_headers(response: httpx.Response) -> tuple[int, int, int]:
    return tuple(int(response.headers[name]) for name in RATE_HEADERS)  # type: ignore[return-value]


def assert_rate_limited(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == "rate_limited" and body["error"]["message"]
    assert response.headers["content-type"] == "application/json"
    retry_after = int(response.headers["retry-after"])
    assert retry_after >= 1
    return retry_after


# --- headers and 429 --------------------------------------------------------------------------


async def test_headers_on_authenticated_successes_and_errors(app: Any, pool: asyncpg.Pool) -> None:
    _, _, http = await client_http(app, pool)
    async with http:
        first = await http.get("/customers")
        assert first.status_code == 200, first.text
        assert limit_headers(first) == (100, 99, 1)  # the schema's default limits
        assert "retry-after" not in first.headers
        missing = await http.get("/customers/nobody")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        invalid = await http.post("/customers", json=minimal_customer(email="not-an-email"))
        assert invalid.status_code == 422 and invalid.json()["error"]["code"] == "invalid_input"
        no_route = await http.get("/no/such/route")
        assert no_route.status_code == 404
        assert no_route.headers["x-request-id"]
        for response in (missing, invalid, no_route):  # at 100/s the bucket refills as we go
            limit, remaining, reset = limit_headers(response)
            assert limit == 100 and 95 <= remaining <= 99 and 0 <= reset <= 1
    # With no refill, the count goes down on errors just as on successes.
    _, _, slow = await client_http(app, pool, rate=TINY_RATE, burst=10)
    async with slow:
        answers = [
            await slow.get("/customers"),
            await slow.get("/customers/nobody"),
            await slow.post("/customers", json=minimal_customer(email="not-an-email")),
            await slow.get("/no/such/route"),
        ]
    assert [a.status_code for a in answers] == [200, 404, 422, 404]
    assert [limit_headers(a)[:2] for a in answers] == [(10, 9), (10, 8), (10, 7), (10, 6)]


async def test_burst_then_429_and_other_clients_unaffected(app: Any, pool: asyncpg.Pool) -> None:
    _, _, limited = await client_http(app, pool, rate=TINY_RATE, burst=5)
    _, _, same_org = await client_http(app, pool, rate=TINY_RATE, burst=5)
    async with limited, same_org:
        answers = [await limited.get("/customers") for _ in range(8)]
        assert [a.status_code for a in answers] == [200] * 5 + [429] * 3
        assert [int(a.headers["ratelimit-remaining"]) for a in answers[:5]] == [4, 3, 2, 1, 0]
        for denied in answers[5:]:
            retry_after = assert_rate_limited(denied)
            assert retry_after > 900  # a whole emission interval (1000 s) away, in whole seconds
            limit, remaining, reset = limit_headers(denied)
            assert (limit, remaining) == (5, 0) and reset >= retry_after
            assert denied.headers["x-request-id"]
        other = await same_org.get("/customers")
        assert other.status_code == 200 and limit_headers(other)[:2] == (5, 4)
        assert (await limited.get("/customers")).status_code == 429


async def test_requests_arriving_together_get_exactly_the_burst(app: Any, pool: asyncpg.Pool) -> None:
    _, _, http = await client_http(app, pool, rate=TINY_RATE, burst=7)
    async with http:
        answers = await asyncio.gather(*(http.get("/customers") for _ in range(20)))
    assert sorted(a.status_code for a in answers) == [200] * 7 + [429] * 13


async def test_public_routes_carry_no_headers_and_are_never_limited(app: Any, pool: asyncpg.Pool) -> None:
    _, _, http = await client_http(app, pool, rate=TINY_RATE, burst=1)
    async with http:  # it even sends its token, which public routes do not look at
        for path in ("/healthz", "/readyz", "/openapi.json") * 10:
            response = await http.get(path)
            assert response.status_code == 200, (path, response.text)
            assert not any(name in response.headers for name in (*RATE_HEADERS, "retry-after")), path
        first = await http.get("/customers")  # its one request was not used up by the public ones
        assert first.status_code == 200 and limit_headers(first)[:2] == (1, 0)
        assert_rate_limited(await http.get("/customers"))
        assert (await http.get("/healthz")).status_code == 200


async def test_unauthenticated_requests_are_answered_401_without_rate_headers(app: Any) -> None:
    async with http_for(app, "not-a-token") as http:
        response = await http.get("/customers")
    assert response.status_code == 401
    assert not any(name in response.headers for name in RATE_HEADERS)


# --- per-client limits from api_clients ---------------------------------------------------------


async def test_changed_limits_apply_at_once_with_the_cache_disabled(settings: Settings, pool: asyncpg.Pool) -> None:
    app = app_with(settings, pool, rate_limit_cache_seconds=0)
    # The tiny rate from the start: a first request at the default 100/s would leave a TAT that
    # expires after 10 ms, and on a slow machine that refill would admit the request meant to be 429.
    client_id, _, http = await client_http(app, pool, rate=TINY_RATE)
    async with http:
        assert limit_headers(await http.get("/customers"))[0] == 100
        assert await api_clients.set_limits(pool, client_id, burst=2) == (TINY_RATE, 2)
        second = await http.get("/customers")
        assert second.status_code == 200 and limit_headers(second)[:2] == (2, 0)
        assert_rate_limited(await http.get("/customers"))
        assert await api_clients.set_limits(pool, client_id, burst=50) == (TINY_RATE, 50)
        third = await http.get("/customers")
        assert third.status_code == 200 and limit_headers(third)[0] == 50
    assert len(app.given_state.rate_limiting.client_limits) == 0


async def test_cached_limits_are_kept_until_they_expire(app: Any, pool: asyncpg.Pool) -> None:
    clock = FakeClock()
    cache = app.given_state.rate_limiting.client_limits
    cache.clock = clock
    assert cache.ttl == 5.0
    client_id, _, http = await client_http(app, pool)
    async with http:
        assert limit_headers(await http.get("/customers"))[0] == 100
        await api_clients.set_limits(pool, client_id, rate=TINY_RATE, burst=3)
        clock.now += 4.9
        assert limit_headers(await http.get("/customers"))[0] == 100  # no query: the cached limits
        clock.now += 0.2
        assert limit_headers(await http.get("/customers"))[0] == 3


async def test_limits_cache_is_bounded(settings: Settings, pool: asyncpg.Pool) -> None:
    app = app_with(settings, pool)
    cache = app.given_state.rate_limiting.client_limits
    cache._max_entries = 3
    for _ in range(5):
        _, _, http = await client_http(app, pool)
        async with http:
            assert (await http.get("/customers")).status_code == 200
    assert len(cache) == 3


# --- POST /auth/token ---------------------------------------------------------------------------


@pytest.fixture
def scrypt_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts the token route's secret verifications (the expensive part)."""
    calls: list[str] = []
    real = auth_routes.verify_secret

    def counting(secret: str, stored: str) -> bool:
        calls.append(secret)
        return real(secret, stored)

    monkeypatch.setattr(auth_routes, "verify_secret", counting)
    return calls


async def token_attempt(http: httpx.AsyncClient, client_id: str, secret: str) -> httpx.Response:
    return await http.post("/auth/token", json={"client_id": client_id, "client_secret": secret})


def fresh_limiter(app: Any) -> FakeClock:
    """A memory store on a clock that stands still unless moved: scrypts take time, and no bucket may
    refill while a test counts."""
    clock = FakeClock()
    app.given_state.rate_limiting.use_store(MemoryRateLimiter(clock=clock))
    return clock


async def test_token_route_limits_failures_per_client_id(app: Any, pool: asyncpg.Pool, scrypt_calls: list[str]) -> None:
    assert (auth_routes.TOKEN_CLIENT_BURST, auth_routes.TOKEN_CLIENT_RATE) == (10, 10 / 60)
    assert auth_routes.TOKEN_SOURCE_FREE_RATE == 1 / 60
    clock = fresh_limiter(app)
    _, client_id, secret = await make_client(pool, "acme")
    _, other_id, other_secret = await make_client(pool, "acme")
    async with http_for(app, address="203.0.113.9") as attacker, http_for(app, address="198.51.100.4") as owner:
        # One free failure for this source, then the client_id's shared budget of 10.
        wrong = [await token_attempt(attacker, client_id, f"guess-{n}") for n in range(11)]
        assert [r.status_code for r in wrong] == [401] * 11
        assert len(scrypt_calls) == 11
        retry_after = assert_rate_limited(await token_attempt(attacker, client_id, "guess-12"))
        assert 1 <= retry_after <= 6  # one every 6 s refills the shared budget
        # From the attacker's own address, a right secret never verified before is refused unchecked too...
        assert_rate_limited(await token_attempt(attacker, client_id, secret))
        assert len(scrypt_calls) == 11
        # ...but the owner, elsewhere, gets its token: its address has not failed for this client.
        good = await token_attempt(owner, client_id, secret)
        assert good.status_code == 200, good.text
        assert len(scrypt_calls) == 12
        # Now verified lately: from anywhere, without a scrypt or a budget.
        assert (await token_attempt(attacker, client_id, secret)).status_code == 200
        assert len(scrypt_calls) == 12
        # Another client from the attacker's address is not affected.
        assert (await token_attempt(attacker, other_id, other_secret)).status_code == 200
        clock.now += 6.0  # one more guess in the shared budget
        assert (await token_attempt(attacker, client_id, "guess-13")).status_code == 401
        assert_rate_limited(await token_attempt(attacker, client_id, "guess-14"))
        assert len(scrypt_calls) == 14


async def test_owner_gets_its_tokens_while_others_hammer_its_client_id(
    app: Any, pool: asyncpg.Pool, scrypt_calls: list[str]
) -> None:
    """Guesses from 20 addresses at once, concurrently with the owner's token-per-job loop: every one of
    the owner's requests is a 200, and the guesses cost only the failure budgets' scrypts."""
    fresh_limiter(app)
    _, client_id, secret = await make_client(pool, "acme")
    attackers = [http_for(app, address=f"192.0.2.{n}") for n in range(1, 21)]
    stop, spent = asyncio.Event(), asyncio.Event()
    refused = 0

    async def hammer(http: httpx.AsyncClient) -> None:
        nonlocal refused
        n = 0
        while not stop.is_set():
            n += 1
            answer = await token_attempt(http, client_id, f"guess-{n}")
            assert answer.status_code in (401, 429), answer.text
            refused += answer.status_code == 429
            if refused >= 100:
                spent.set()
            await asyncio.sleep(0)

    async with http_for(app, address="198.51.100.4") as owner:
        guessing = [asyncio.create_task(hammer(http)) for http in attackers]
        try:
            async with asyncio.timeout(60):  # generous: a busy machine is slow
                await spent.wait()  # the budgets are spent: the attack is at full tilt
            owner_answers = [await token_attempt(owner, client_id, secret) for _ in range(50)]
        finally:
            stop.set()
            await asyncio.gather(*guessing)
            for http in attackers:
                await http.aclose()
    assert [a.status_code for a in owner_answers] == [200] * 50
    owner_scrypts = scrypt_calls.count(secret)
    assert owner_scrypts == 1  # the first; then the secret is known
    # 20 free failures (one per address) and the shared 10: the clock stands still, nothing refills.
    assert len(scrypt_calls) - owner_scrypts == 20 + 10


async def test_a_client_id_cannot_name_another_clients_bucket(
    app: Any, pool: asyncpg.Pool, scrypt_calls: list[str]
) -> None:
    """ "<client_id>:<address>" is a client_id too: guessing at it must not spend the owner's free try."""
    fresh_limiter(app)
    _, client_id, secret = await make_client(pool, "acme")
    async with http_for(app, address="203.0.113.9") as attacker, http_for(app, address="198.51.100.4") as owner:
        for target in (f"{client_id}:198.51.100.4", client_id):  # then the client's own shared budget
            while (await token_attempt(attacker, target, "guess")).status_code == 401:
                pass
        answer = await token_attempt(owner, client_id, secret)
    assert answer.status_code == 200, answer.text
    assert len(scrypt_calls) == 2 * 11 + 1


async def test_a_client_fetching_a_token_per_job_is_served(
    app: Any, pool: asyncpg.Pool, scrypt_calls: list[str]
) -> None:
    fresh_limiter(app)
    _, client_id, secret = await make_client(pool, "acme")
    async with http_for(app) as http:
        answers = [await token_attempt(http, client_id, secret) for _ in range(100)]
        answers += await asyncio.gather(*(token_attempt(http, client_id, secret) for _ in range(50)))
    assert [a.status_code for a in answers] == [200] * 150
    assert len({a.json()["access_token"] for a in answers}) == 150
    assert len(scrypt_calls) == 1


async def test_successes_give_their_budget_back(app: Any, pool: asyncpg.Pool, scrypt_calls: list[str]) -> None:
    """With no secret remembered, every success pays a scrypt but spends no failure budget: a fleet
    logging in from one address (more than the 1 free and 10 shared) is not refused."""
    from canopy_svc.rules.passwords import RecentSecrets

    fresh_limiter(app)
    app.resources.recent_secrets = RecentSecrets(ttl=0)  # remembers nothing
    _, client_id, secret = await make_client(pool, "acme")
    async with http_for(app) as http:
        answers = [await token_attempt(http, client_id, secret) for _ in range(13)]
        assert [a.status_code for a in answers] == [200] * 13
        assert len(scrypt_calls) == 13
        # And the budgets are whole: a guesser from here still has its 1 + 10.
        wrong = [await token_attempt(http, client_id, "wrong") for _ in range(12)]
    assert [a.status_code for a in wrong] == [401] * 11 + [429]


async def test_a_changed_secret_ends_the_remembered_one(app: Any, pool: asyncpg.Pool, scrypt_calls: list[str]) -> None:
    from canopy_svc.rules.passwords import hash_secret

    fresh_limiter(app)
    _, client_id, secret = await make_client(pool, "acme")
    async with http_for(app) as http:
        assert (await token_attempt(http, client_id, secret)).status_code == 200
        assert (await token_attempt(http, client_id, secret)).status_code == 200
        assert len(scrypt_calls) == 1
        await pool.execute(
            "UPDATE api_clients SET secret_hash = $2 WHERE client_id = $1", client_id, hash_secret("the-new-secret")
        )
        assert (await token_attempt(http, client_id, secret)).status_code == 401  # checked again, and refused
        assert len(scrypt_calls) == 2
        assert (await token_attempt(http, client_id, "the-new-secret")).status_code == 200
        await pool.execute("DELETE FROM api_clients WHERE client_id = $1", client_id)
        assert (await token_attempt(http, client_id, "the-new-secret")).status_code == 401


async def test_token_route_limits_each_source_address(app: Any, pool: asyncpg.Pool, scrypt_calls: list[str]) -> None:
    assert (auth_routes.TOKEN_ADDRESS_BURST, auth_routes.TOKEN_ADDRESS_RATE) == (30, 1.0)
    clock = fresh_limiter(app)
    _, client_id, secret = await make_client(pool, "acme")
    async with http_for(app, address="203.0.113.9") as sprayer, http_for(app, address="198.51.100.4") as honest:
        answers = await asyncio.gather(*(token_attempt(sprayer, f"cli_guess{n:03d}", "x") for n in range(30)))
        assert [r.status_code for r in answers] == [401] * 30
        assert len(scrypt_calls) == 30
        # Every client_id is new, yet the address is out of attempts: a secret not verified lately is
        # refused unchecked, even a right one.
        assert_rate_limited(await token_attempt(sprayer, client_id, secret))
        assert len(scrypt_calls) == 30
        good = await token_attempt(honest, client_id, secret)
        assert good.status_code == 200, good.text
        # Known now, so served to the sprayer's address too, without a scrypt.
        assert (await token_attempt(sprayer, client_id, secret)).status_code == 200
        assert len(scrypt_calls) == 31
        clock.now += 1.0  # one more try a second
        assert (await token_attempt(sprayer, "cli_guess999", "x")).status_code == 401
        assert_rate_limited(await token_attempt(sprayer, "cli_guess999", "x"))


async def test_an_ipv6_source_is_its_64(app: Any, pool: asyncpg.Pool, scrypt_calls: list[str]) -> None:
    """One host is given a /64: its 2**64 addresses are one source, not 2**64 budgets."""
    fresh_limiter(app)
    for n in range(30):
        async with http_for(app, address=f"2001:db8:1:2::{n:x}") as http:
            assert (await token_attempt(http, f"cli_guess{n:03d}", "x")).status_code == 401
    async with (
        http_for(app, address="2001:db8:1:2:ffff::1") as same_64,
        http_for(app, address="2001:db8:1:3::1") as next_64,
    ):
        assert_rate_limited(await token_attempt(same_64, "cli_other", "x"))
        assert (await token_attempt(next_64, "cli_other", "x")).status_code == 401
    assert len(scrypt_calls) == 31


async def test_an_ipv4_mapped_source_is_its_ipv4_host(app: Any, pool: asyncpg.Pool, scrypt_calls: list[str]) -> None:
    """A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d: each is its IPv4 host (not one /64
    holding every IPv4 client), the same host as when reported plainly."""
    fresh_limiter(app)
    for n in range(30):
        async with http_for(app, address="::ffff:203.0.113.9" if n % 2 else "203.0.113.9") as http:
            assert (await token_attempt(http, f"cli_guess{n:03d}", "x")).status_code == 401
    async with (
        http_for(app, address="203.0.113.9") as same,
        http_for(app, address="::ffff:203.0.113.9") as mapped,
        http_for(app, address="::ffff:203.0.113.10") as other,
    ):
        assert_rate_limited(await token_attempt(same, "cli_other", "x"))
        assert_rate_limited(await token_attempt(mapped, "cli_other", "x"))
        assert (await token_attempt(other, "cli_other", "x")).status_code == 401
    assert len(scrypt_calls) == 31


def test_recent_secrets_are_keyed_bounded_and_expire() -> None:
    from canopy_svc.rules.passwords import RecentSecrets

    clock = FakeClock()
    recent = RecentSecrets(max_entries=3, ttl=60.0, clock=clock)
    key = recent.key("cli_a", "secret")
    assert key == recent.key("cli_a", "secret") and len(key) == 32
    assert b"secret" not in key and key != RecentSecrets().key("cli_a", "secret")  # a key of its own
    assert recent.key("cli_a", "bsecret") != recent.key("cli_ab", "secret")  # no ambiguity at the join
    assert not recent.known(key)
    recent.remember(key, "scrypt$hash-1")
    assert recent.known(key) and recent.matches(key, "scrypt$hash-1")
    assert not recent.matches(key, "scrypt$hash-2") and not recent.known(key)  # changed: forgotten
    recent.remember(key, "scrypt$hash-1")
    clock.now += 60.0
    assert not recent.known(key) and len(recent) == 0
    for n in range(5):
        recent.remember(recent.key(f"cli_{n}", "s"), "h")
    assert len(recent) == 3
    assert not recent.known(recent.key("cli_0", "s")) and recent.known(recent.key("cli_4", "s"))


# --- the Postgres store, in-process ---------------------------------------------------------------


async def test_postgres_store_limits_and_keeps_state_in_the_database(settings: Settings, pool: asyncpg.Pool) -> None:
    app = app_with(settings, pool, rate_limit_store="postgres")
    client_id, _, http = await client_http(app, pool, rate=TINY_RATE, burst=3)
    async with http:
        answers = [await http.get("/customers") for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    assert_rate_limited(answers[3])
    assert isinstance(app.given_state.rate_limiting.limiter()._inner, LeasingRateLimiter)
    assert isinstance(app.given_state.rate_limiting.postgres_store(), PostgresRateLimiter)
    keys = {r["key"] for r in await pool.fetch("SELECT key FROM rate_limit_buckets")}
    assert keys == {f"client:{client_id}"}


@pytest.mark.parametrize("store", ["memory", "postgres"])
async def test_give_back_returns_one_request_and_never_more_than_the_burst(
    settings: Settings, pool: asyncpg.Pool, store: str
) -> None:
    """The token route gives back what a success took (RateLimiting -> fail-open -> the store; Postgres
    through its leasing wrapper, as in serving)."""
    limiting = app_with(settings, pool, rate_limit_store=store).given_state.rate_limiting
    limiting.use_store(MemoryRateLimiter(clock=FakeClock()) if store == "memory" else PostgresRateLimiter(pool))
    hits = [(await limiting.hit("k", TINY_RATE, 2)).allowed for _ in range(3)]
    assert hits == [True, True, False]
    await limiting.give_back("k", TINY_RATE, 2)
    assert [(await limiting.hit("k", TINY_RATE, 2)).allowed for _ in range(2)] == [True, False]
    # A bucket that is full (or unknown) stays full: giving back never adds room beyond the burst.
    await limiting.give_back("fresh", TINY_RATE, 2)
    await limiting.give_back("fresh", TINY_RATE, 2)
    assert [(await limiting.hit("fresh", TINY_RATE, 2)).allowed for _ in range(3)] == [True, True, False]


async def test_token_route_counts_only_failures_with_the_postgres_store(
    settings: Settings, pool: asyncpg.Pool, scrypt_calls: list[str]
) -> None:
    from canopy_svc.rules.passwords import RecentSecrets

    app = app_with(settings, pool, rate_limit_store="postgres")
    app.resources.recent_secrets = RecentSecrets(ttl=0)  # every success pays its scrypt and its budget
    _, client_id, secret = await make_client(pool, "acme")
    async with http_for(app) as http:
        assert [(await token_attempt(http, client_id, secret)).status_code for _ in range(3)] == [200] * 3
        wrong = [(await token_attempt(http, client_id, "wrong")).status_code for _ in range(12)]
    assert wrong == [401] * 11 + [429]
    assert len(scrypt_calls) == 3 + 11


async def test_memory_store_by_default_touches_no_table(app: Any, pool: asyncpg.Pool) -> None:
    _, _, http = await client_http(app, pool, rate=TINY_RATE, burst=1)
    async with http:
        assert (await http.get("/customers")).status_code == 200
        assert_rate_limited(await http.get("/customers"))
    assert app.given_state.rate_limiting.store == "memory"
    assert await pool.fetchval("SELECT count(*) FROM rate_limit_buckets") == 0


async def test_lifespan_purges_expired_buckets(settings: Settings, pool: asyncpg.Pool) -> None:
    app = app_with(settings, pool, rate_limit_store="postgres", rate_limit_purge_seconds=0.02, card_worker=False)
    await pool.execute(
        """INSERT INTO rate_limit_buckets (key, tat, allowed) VALUES
           ('test:expired', extract(epoch FROM now()) - 10, true),
           ('test:active', extract(epoch FROM now()) + 3600, true)"""
    )
    async with app.router.lifespan_context(app):
        for _ in range(500):
            if await pool.fetchval("SELECT count(*) FROM rate_limit_buckets WHERE key = 'test:expired'") == 0:
                break
            await asyncio.sleep(0.01)
        remaining = {r["key"] for r in await pool.fetch("SELECT key FROM rate_limit_buckets")}
    assert remaining == {"test:active"}


# --- failing open ----------------------------------------------------------------------------------


@pytest.fixture
async def closed_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    broken = await create_pool(database_url, min_size=1, max_size=1)
    await broken.close()
    yield broken


async def test_failing_store_lets_requests_through_and_logs(
    app: Any, pool: asyncpg.Pool, closed_pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="canopy_svc.ratelimit")
    app.given_state.rate_limiting.use_store(PostgresRateLimiter(closed_pool))
    _, client_id, http = await client_http(app, pool, rate=TINY_RATE, burst=2)
    async with http:
        answers = [await http.get("/customers") for _ in range(6)]
        assert [a.status_code for a in answers] == [200] * 6
        assert all(limit_headers(a)[0] == 2 for a in answers)
        tokens = [await token_attempt(http, client_id, "wrong") for _ in range(12)]
        assert [t.status_code for t in tokens] == [401] * 12  # no 429: the token limits fail open too
    warnings = [r for r in caplog.records if r.name == "canopy_svc.ratelimit" and r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per failure burst, not once per request
    assert "rate limit store unavailable" in warnings[0].getMessage()
    assert "InterfaceError" in warnings[0].getMessage()


class HangingStore:
    async def hit(self, key: str, rate: float, burst: int) -> Decision:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_slow_store_times_out_and_lets_requests_through(settings: Settings, pool: asyncpg.Pool) -> None:
    app = app_with(settings, pool, rate_limit_timeout_seconds=0.05)
    app.given_state.rate_limiting.use_store(HangingStore())
    _, _, http = await client_http(app, pool, rate=TINY_RATE, burst=1)
    async with http:
        answers = [await http.get("/customers") for _ in range(3)]
    assert [a.status_code for a in answers] == [200] * 3


async def test_limits_lookup_failure_uses_the_defaults(
    settings: Settings, pool: asyncpg.Pool, closed_pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="canopy_svc.ratelimit")
    org_id, client_id, _ = await make_client(pool, "acme")
    await api_clients.set_limits(pool, client_id, rate=TINY_RATE, burst=1)
    app = create_app(settings, pool=closed_pool)  # every query fails, the limits lookup included
    # At the default 100/s a request more than 10 ms after the last finds a token refilled: no clock moves here.
    app.given_state.rate_limiting.use_store(MemoryRateLimiter(clock=FakeClock()))
    async with http_for(app, app.resources.tokens.issue(client_id, org_id, "read write")) as http:
        no_route = await http.get("/no/such/route")  # answered without the database
        assert no_route.status_code == 404
        assert limit_headers(no_route)[:2] == (100, 99)  # the defaults, not the client's burst of 1
        # A request whose own query fails: 503 from the error path, still with the headers.
        down = await http.get("/customers")
        assert down.status_code == 503, down.text
        assert down.json()["error"]["code"] == "unavailable"
        assert int(down.headers["retry-after"]) >= 1
        assert limit_headers(down)[:2] == (100, 98)
        assert down.headers["x-request-id"]
    assert any("client rate limits unavailable" in r.getMessage() for r in caplog.records)


# --- the CLI ------------------------------------------------------------------------------------


def run_cli(database_url: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CANOPY_SVC_DATA_KEY": base64.urlsafe_b64encode(TEST_DATA_KEY).decode(),
    }
    return subprocess.run(
        [sys.executable, "-m", "canopy_svc", *args, "--data-dir", str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_cli_create_and_set_limits(
    settings: Settings, pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    made = await asyncio.to_thread(
        run_cli, database_url, tmp_path, "clients", "create", "--org", "acme", "--rate", "2", "--burst", "3", "--json"
    )
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert (created["rate_per_second"], created["burst"]) == (2.0, 3)
    assert await api_clients.limits(pool, created["client_id"]) == (2.0, 3)

    app = app_with(settings, pool, rate_limit_cache_seconds=0)
    async with http_for(app) as anonymous:
        token = await token_attempt(anonymous, created["client_id"], created["client_secret"])
        assert token.status_code == 200, token.text
    async with http_for(app, token.json()["access_token"]) as http:
        answers = [await http.get("/customers") for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert limit_headers(answers[0])[0] == 3
        assert_rate_limited(answers[3])

        changed = await asyncio.to_thread(
            run_cli,
            database_url,
            tmp_path,
            "clients",
            "set-limits",
            created["client_id"],
            "--rate",
            "2",
            "--burst",
            "10",
        )
        assert changed.returncode == 0, changed.stderr
        assert "rate:      2 requests/s" in changed.stdout and "burst:     10" in changed.stdout
        assert await api_clients.limits(pool, created["client_id"]) == (2.0, 10)
        after = await http.get("/customers")
        assert after.status_code == 200 and limit_headers(after)[0] == 10

    unknown = await asyncio.to_thread(
        run_cli, database_url, tmp_path, "clients", "set-limits", "cli_nobody", "--burst", "5"
    )
    assert unknown.returncode == 1
    assert "no API client 'cli_nobody'" in unknown.stderr


async def test_cli_create_without_limits_gets_the_defaults(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    made = await asyncio.to_thread(run_cli, database_url, tmp_path, "clients", "create", "--org", "acme", "--json")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert (created["rate_per_second"], created["burst"]) == (100.0, 100)
    assert await api_clients.limits(pool, created["client_id"]) == (100.0, 100)


@pytest.mark.parametrize(
    "args",
    [
        ["clients", "create", "--org", "acme", "--rate", "0"],
        ["clients", "create", "--org", "acme", "--rate", "-1"],
        ["clients", "create", "--org", "acme", "--rate", "nan"],
        ["clients", "create", "--org", "acme", "--rate", "inf"],
        ["clients", "create", "--org", "acme", "--rate", "fast"],
        ["clients", "create", "--org", "acme", "--burst", "0"],
        ["clients", "create", "--org", "acme", "--burst", "2.5"],
        ["clients", "create", "--org", "acme", "--burst", "99999999999"],
        ["clients", "set-limits", "cli_x", "--rate", "0"],
        ["clients", "set-limits", "cli_x", "--burst", "-3"],
    ],
)
def test_cli_rejects_bad_limits(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error: argument --" in err and ("--rate" in err or "--burst" in err)


def test_cli_set_limits_needs_a_value(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["clients", "set-limits", "cli_x", "--data-dir", str(tmp_path)]) == 2
    assert "give --rate, --burst or both" in capsys.readouterr().err


# --- real worker processes on one database ---------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def worker_pids(server: ServerProcess) -> list[int]:
    """The uvicorn worker processes under `canopy-svc serve` (none when it serves in-process)."""
    assert server.process is not None
    children = psutil.Process(server.process.pid).children()
    return sorted(
        c.pid
        for c in children
        if "multiprocessing" in " ".join(c.cmdline()) and "resource_tracker" not in " ".join(c.cmdline())
    )


def connections_by_worker(server: ServerProcess, pids: list[int], per_worker: int) -> dict[int, list[Any]]:
    """Keep-alive connections, opened until every worker process has accepted `per_worker` of them.

    The kernel hands each new connection to whichever worker accepts first; psutil shows which one
    holds the server end, so the test's requests provably reach every worker.
    """
    owned: dict[int, list[http.client.HTTPConnection]] = {pid: [] for pid in pids}
    spare: list[http.client.HTTPConnection] = []
    for _ in range(200):
        if all(len(conns) >= per_worker for conns in owned.values()):
            return owned
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.connect()
        assert conn.sock is not None
        local_port = conn.sock.getsockname()[1]

        def owner(port: int = local_port) -> int | None:
            for pid in pids:
                for c in psutil.Process(pid).net_connections(kind="tcp"):
                    if c.laddr and c.laddr.port == server.port and c.raddr and c.raddr.port == port:
                        return pid
            return None

        pid = poll(owner, timeout=10, interval=0.01)
        (owned[pid] if len(owned[pid]) < per_worker else spare).append(conn)
    raise AssertionError(f"connections never spread over the workers: {[len(c) for c in owned.values()]}")


def fire(connections: list[http.client.HTTPConnection], token: str, per_connection: int) -> list[int]:
    """per_connection GETs on each connection, all connections at once (one thread each)."""

    def run(conn: http.client.HTTPConnection) -> list[int]:
        statuses = []
        for _ in range(per_connection):
            conn.request("GET", "/customers", headers={"Authorization": f"Bearer {token}"})
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
        return statuses

    with ThreadPoolExecutor(max_workers=len(connections)) as executor:
        return [s for statuses in executor.map(run, connections) for s in statuses]


def burst_over_workers(server: ServerProcess, client_id: str, secret: str) -> tuple[list[int], list[int]]:
    """60 requests, 30 through each of the two workers, over 6 simultaneous connections."""
    pids = worker_pids(server)
    token = token_for(server, client_id, secret)
    owned = connections_by_worker(server, pids, per_worker=3)
    try:
        statuses = fire([c for conns in owned.values() for c in conns], token, per_connection=10)
    finally:
        for conns in owned.values():
            for conn in conns:
                conn.close()
    return pids, statuses


async def start(server: ServerProcess) -> ServerProcess:
    return await asyncio.to_thread(server.start)


async def test_two_workers_share_one_limit(pool: asyncpg.Pool, database_url: str, tmp_path: Path) -> None:
    _, client_id, secret = await make_client(pool, "acme")
    await api_clients.set_limits(pool, client_id, rate=0.01, burst=20)
    server = await start(ServerProcess(database_url, tmp_path, workers=2))
    try:
        pids, statuses = await asyncio.to_thread(burst_over_workers, server, client_id, secret)
    finally:
        server.kill()
    assert len(pids) == 2
    assert len(statuses) == 60
    # The Postgres store decides atomically per key: exactly the burst, not 20 per worker.
    assert statuses.count(200) == 20, statuses
    assert statuses.count(429) == 40, statuses
    keys = {r["key"] for r in await pool.fetch("SELECT key FROM rate_limit_buckets")}
    assert f"client:{client_id}" in keys


async def test_two_workers_with_the_memory_store_forced_each_keep_their_own(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    """The control: what the test above would see if serve did not switch to the shared store."""
    _, client_id, secret = await make_client(pool, "acme")
    await api_clients.set_limits(pool, client_id, rate=0.01, burst=20)
    server = await start(ServerProcess(database_url, tmp_path, workers=2, CANOPY_SVC_RATE_LIMIT_STORE="memory"))
    try:
        pids, statuses = await asyncio.to_thread(burst_over_workers, server, client_id, secret)
    finally:
        server.kill()
    assert len(pids) == 2
    assert statuses.count(200) == 40, statuses  # 20 per worker: twice the client's rate
    assert await pool.fetchval("SELECT count(*) FROM rate_limit_buckets") == 0


async def test_one_worker_uses_memory_and_limits(pool: asyncpg.Pool, database_url: str, tmp_path: Path) -> None:
    _, client_id, secret = await make_client(pool, "acme")
    await api_clients.set_limits(pool, client_id, rate=0.01, burst=20)
    server = await start(ServerProcess(database_url, tmp_path, workers=1))
    try:
        assert worker_pids(server) == []  # serves in the one process
        token = token_for(server, client_id, secret)

        def burst() -> list[int]:
            conns = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=10) for _ in range(6)]
            try:
                return fire(conns, token, per_connection=10)
            finally:
                for conn in conns:
                    conn.close()

        statuses = await asyncio.to_thread(burst)
    finally:
        server.kill()
    assert statuses.count(200) == 20 and statuses.count(429) == 40, statuses
    assert await pool.fetchval("SELECT count(*) FROM rate_limit_buckets") == 0  # nothing in the database


def test_unknown_store_is_refused(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    with pytest.raises(ValueError, match="CANOPY_SVC_RATE_LIMIT_STORE"):
        dataclasses.replace(settings, rate_limit_store="redis")
    monkeypatch.setenv("CANOPY_SVC_JWT_SECRET", "x" * 40)
    monkeypatch.setenv("CANOPY_SVC_DATA_KEY", base64.urlsafe_b64encode(TEST_DATA_KEY).decode())
    monkeypatch.setenv("CANOPY_SVC_RATE_LIMIT_STORE", " Postgres ")
    assert Settings.from_env().rate_limit_store == "postgres"
    monkeypatch.delenv("CANOPY_SVC_RATE_LIMIT_STORE")
    assert Settings.from_env().rate_limit_store == "memory"
