"""Soak: many mixed requests against one real `canopy-svc serve` worker; its RSS must stay flat.

`make soak` runs this file: it starts an embedded PostgreSQL of its own in a temporary folder, a
client, and `canopy-svc serve` (1 worker) on loopback, then sends `--requests` requests (bounded by
`--seconds` too) from `--concurrency` connections: creates (some linked to an account, some with an
Idempotency-Key, some replayed), reads, PATCHes, list pages (followed by cursor), searches, accounts,
links, and the 404s and 422s of bad requests. It samples the worker's RSS (psutil) at start, after
`--warmup` requests and every `--sample-every` requests, and fails (exit 1) on any unexpected answer,
or if RSS grew by `--max-growth-mb` or more between the end of warmup and the end.

tests/test_resilience.py runs a short one (2,000 requests) in `make test`, on the test database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

# Run as a script (`make soak`), Python puts tests/ first on sys.path; tests.helpers and tests.processes
# are found from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MB = 1024 * 1024


@dataclass(frozen=True)
class SoakConfig:
    requests: int = 30_000
    seconds: float = 600.0  # the bound in time, whatever the count
    concurrency: int = 16
    warmup: int = 5_000
    sample_every: int = 1_000


@dataclass
class SoakResult:
    total: int = 0
    seconds: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)  # "kind status" -> count
    errors: dict[str, int] = field(default_factory=dict)  # unexpected "kind status" -> count
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    rss_samples_mb: list[tuple[int, float]] = field(default_factory=list)  # (requests done, RSS MB)
    rss_start_mb: float = 0.0
    rss_warm_mb: float = 0.0
    rss_end_mb: float = 0.0

    @property
    def growth_mb(self) -> float:
        return self.rss_end_mb - self.rss_warm_mb

    def report(self) -> dict[str, Any]:
        def pct(values: list[float], q: float) -> float:
            ordered = sorted(values)
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

        return {
            "requests": self.total,
            "seconds": round(self.seconds, 1),
            "requests_per_second": round(self.total / self.seconds, 1) if self.seconds else 0,
            "rss_mb": {
                "start": round(self.rss_start_mb, 1),
                "after_warmup": round(self.rss_warm_mb, 1),
                "end": round(self.rss_end_mb, 1),
                "growth_after_warmup": round(self.growth_mb, 2),
                "samples": [(n, round(mb, 1)) for n, mb in self.rss_samples_mb],
            },
            "errors": self.errors,
            "by_kind": {
                kind: {"count": len(values), "p50_ms": round(statistics.median(values), 2), "p99_ms": pct(values, 0.99)}
                for kind, values in sorted(self.latencies_ms.items())
            },
        }

    def summary(self) -> str:
        report = self.report()
        rss = report["rss_mb"]
        lines = [
            f"soak: {self.total} requests in {report['seconds']} s ({report['requests_per_second']}/s), "
            f"unexpected answers: {self.errors or 'none'}",
            f"RSS MB: start {rss['start']}, after warmup {rss['after_warmup']}, end {rss['end']}, "
            f"growth after warmup {rss['growth_after_warmup']}",
            "RSS MB by requests done: " + ", ".join(f"{n}: {mb}" for n, mb in rss["samples"]),
            *(
                f"  {kind:<18} {v['count']:>6}  p50 {v['p50_ms']:>7} ms  p99 {v['p99_ms']:>7} ms"
                for kind, v in report["by_kind"].items()
            ),
        ]
        return "\n".join(lines)


def rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / MB


def _customer(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "customer_id": f"soak-{n}",
        "name_first": f"Soak{n % 97}",
        "name_last": f"Tester{n % 89}",
        "phone_number": "+14155550123",
        "address_line_one": f"{n} Main St",
        "address_city": "Springfield",
        "address_state": "IL",
        "address_zip": "62701",
        "email": f"soak{n}@example.com",
        "date_of_birth": "1990-12-10",
        "ssn": f"1234{n % 99_999 + 1:05d}",
        **extra,
    }


class Mix:
    """The requests, in a fixed mix; each kind with the statuses it may get."""

    KINDS = (
        # (kind, weight)
        ("create", 14),
        ("create_linked", 4),
        ("create_keyed", 3),
        ("replay", 2),
        ("get", 20),
        ("patch", 10),
        ("list", 8),
        ("list_next", 6),
        ("search", 10),
        ("customer_accounts", 5),
        ("links", 3),
        ("get_account", 5),
        ("create_account", 2),
        ("not_found", 4),
        ("invalid", 4),
    )
    EXPECTED = {"not_found": {404}, "invalid": {422}}

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.schedule = [kind for kind, weight in self.KINDS for _ in range(weight)]
        self.customers: list[str] = []
        self.accounts: list[str] = []
        self.keys: list[tuple[str, dict[str, Any]]] = []
        self.cursor: str | None = None
        self.n = 0

    def next(self) -> tuple[str, str, str, dict[str, Any] | None, dict[str, str]]:
        n = self.n
        self.n += 1
        kind = self.schedule[(n * 7) % len(self.schedule)]  # 7 is prime to the length: an even spread
        if not self.customers or not self.accounts:
            kind = "create_account" if not self.accounts else "create"
        if kind == "replay" and not self.keys:
            kind = "create_keyed"
        customer = self.customers[(n * 31) % len(self.customers)] if self.customers else ""
        cid = f"{self.run_id}-{n}"
        match kind:
            case "create":
                return kind, "POST", "/customers", _customer(n, customer_id=cid), {}
            case "create_linked":
                account = self.accounts[n % len(self.accounts)]
                return (
                    kind,
                    "POST",
                    "/customers",
                    _customer(
                        n,
                        customer_id=cid,
                        assign_to_accounts=[{"account_id": account, "customer_account_role": "SECONDARY"}],
                    ),
                    {},
                )
            case "create_keyed":
                return kind, "POST", "/customers", _customer(n, customer_id=cid), {"Idempotency-Key": f"{cid}-key"}
            case "replay":
                key, body = self.keys[n % len(self.keys)]
                return kind, "POST", "/customers", body, {"Idempotency-Key": key}
            case "get":
                return kind, "GET", f"/customers/{customer}", None, {}
            case "patch":
                return kind, "PATCH", f"/customers/{customer}", {"name_middle": f"M{n}", "address_line_two": None}, {}
            case "list":
                return kind, "GET", "/customers?limit=20", None, {}
            case "list_next":
                after = f"&starting_after={self.cursor}" if self.cursor else ""
                return kind, "GET", f"/customers?limit=50{after}", None, {}
            case "search":
                return kind, "GET", f"/customers?search_parameters=soak{n % 97}%20test&limit=10", None, {}
            case "customer_accounts":
                return kind, "GET", f"/customers/{customer}/accounts", None, {}
            case "links":
                return kind, "GET", "/customers/accounts?limit=25", None, {}
            case "get_account":
                return kind, "GET", f"/accounts/{self.accounts[n % len(self.accounts)]}", None, {}
            case "create_account":
                return kind, "POST", "/accounts", {"account_id": f"{cid}-acc", "product_id": "soak-product"}, {}
            case "not_found":
                return kind, "GET", f"/customers/{cid}-missing", None, {}
            case _:  # invalid: every problem listed, from the error path
                return (
                    kind,
                    "POST",
                    "/customers",
                    {"name_first": "", "phone_number": "4105556789", "date_of_birth": "1990-02-30"},
                    {},
                )

    def answered(self, kind: str, status: int, payload: Any, body: Any, headers: dict[str, str]) -> None:
        if status != 200:
            return
        if kind == "create_keyed":  # replayed only once answered: a replay in flight would be a 409
            self.keys.append((headers["Idempotency-Key"], body))
        if kind in ("create", "create_linked", "create_keyed"):
            self.customers.append(payload["customer_id"])
        elif kind == "create_account":
            self.accounts.append(payload["account_id"])
        elif kind == "list_next":
            self.cursor = payload["paging"]["starting_after"]  # None at the end: start over


async def fetch_token(base_url: str, client_id: str, secret: str) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        answer = await http.post("/auth/token", json={"client_id": client_id, "client_secret": secret})
        answer.raise_for_status()
        token: str = answer.json()["access_token"]
        return token


async def run_soak(base_url: str, token: str, pid: int, config: SoakConfig) -> SoakResult:
    """Sends config.requests mixed requests (or fewer if config.seconds run out) and samples `pid`'s RSS."""
    result = SoakResult()
    mix = Mix(run_id=f"s{int(time.time() * 1000) % 10_000_000}")
    limits = httpx.Limits(max_connections=config.concurrency, max_keepalive_connections=config.concurrency)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=30) as http:
        product = await http.post(
            "/products",
            json={
                "product_id": "soak-product",
                "product_overview": {"product_name": "Soak", "product_type": "REVOLVING"},
            },
        )
        if product.status_code not in (200, 409):  # 409: made by an earlier soak on this database
            raise RuntimeError(f"cannot make the soak product: {product.status_code} {product.text}")
        result.rss_start_mb = rss_mb(pid)
        result.rss_samples_mb.append((0, result.rss_start_mb))
        started = time.monotonic()
        deadline = started + config.seconds

        async def worker() -> None:
            while result.total < config.requests and time.monotonic() < deadline:
                kind, method, url, body, extra = mix.next()
                result.total += 1
                sent = time.perf_counter()
                try:
                    answer = await http.request(method, url, json=body, headers=extra)
                    status, payload = answer.status_code, answer.json()
                except (httpx.HTTPError, ValueError) as exc:
                    status, payload = 0, type(exc).__name__
                result.latencies_ms.setdefault(kind, []).append((time.perf_counter() - sent) * 1000)
                result.statuses[f"{kind} {status}"] += 1
                if status not in Mix.EXPECTED.get(kind, {200}):
                    name = f"{kind} {status}"
                    result.errors[name] = result.errors.get(name, 0) + 1
                    if result.errors[name] == 1:
                        print(f"soak: unexpected {name} for {method} {url}: {str(payload)[:300]}", file=sys.stderr)
                mix.answered(kind, status, payload, body, extra)
                done = result.total
                if done == config.warmup:
                    result.rss_warm_mb = rss_mb(pid)
                    result.rss_samples_mb.append((done, result.rss_warm_mb))
                elif done % config.sample_every == 0 and done < config.requests:
                    result.rss_samples_mb.append((done, rss_mb(pid)))

        await asyncio.gather(*(worker() for _ in range(config.concurrency)))
        result.seconds = time.monotonic() - started
        result.rss_end_mb = rss_mb(pid)
        result.rss_samples_mb.append((result.total, result.rss_end_mb))
        if not result.rss_warm_mb:  # stopped by time before the warmup ended: no growth to judge
            result.rss_warm_mb = result.rss_end_mb
    return result


async def _make_client(dsn: str) -> tuple[str, str]:
    import asyncpg

    from canopy_svc.core.crypto import DataCipher
    from canopy_svc.rules.ids import new_client_id, new_client_secret
    from canopy_svc.rules.passwords import hash_secret
    from canopy_svc.store import api_clients, organizations
    from canopy_svc.store.migrations import migrate_database
    from tests.helpers import TEST_DATA_KEY

    await migrate_database(dsn, DataCipher(TEST_DATA_KEY))
    conn = await asyncpg.connect(dsn)
    try:
        org_id = await organizations.get_or_create_organization(conn, "soak")
        client_id, secret = new_client_id(), new_client_secret()
        await organizations.insert_client(conn, org_id, client_id, hash_secret(secret), "read write")
        # The soak measures the server, not the limiter's 429s.
        await api_clients.set_limits(conn, client_id, rate=1_000_000.0, burst=1_000_000)
    finally:
        await conn.close()
    return client_id, secret


def main(argv: list[str] | None = None) -> int:
    defaults = SoakConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=defaults.requests)
    parser.add_argument("--seconds", type=float, default=defaults.seconds)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--warmup", type=int, default=defaults.warmup)
    parser.add_argument("--sample-every", type=int, default=defaults.sample_every)
    parser.add_argument("--max-growth-mb", type=float, default=10.0)
    parser.add_argument("--database-url", help="use this (throwaway) database instead of an embedded one")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    config = SoakConfig(args.requests, args.seconds, args.concurrency, args.warmup, args.sample_every)

    from canopy_svc.core.embedded import EmbeddedPostgres
    from tests.processes import ServerProcess

    workdir = Path(tempfile.mkdtemp(prefix="canopy-soak-"))
    postgres = None if args.database_url else EmbeddedPostgres(workdir / "postgres")
    try:
        dsn = args.database_url or postgres.start()  # type: ignore[union-attr]
        client_id, secret = asyncio.run(_make_client(dsn))
        with ServerProcess(dsn, workdir / "server", CANOPY_SVC_CARD_WORKER="0") as server:
            assert server.process is not None
            print(
                f"soak: {config.requests} requests (at most {config.seconds:g} s), {config.concurrency} "
                f"connections, against pid {server.process.pid} on {server.base_url}",
                file=sys.stderr,
            )
            token = asyncio.run(fetch_token(server.base_url, client_id, secret))
            result = asyncio.run(run_soak(server.base_url, token, server.process.pid, config))
            code = server.terminate(timeout=60)
    finally:
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(result.summary())
    if args.json:
        args.json.write_text(json.dumps(result.report(), indent=1))
    failed = []
    if result.errors:
        failed.append(f"unexpected answers: {result.errors}")
    if result.growth_mb >= args.max_growth_mb:
        failed.append(f"RSS grew {result.growth_mb:.1f} MB after warmup (limit {args.max_growth_mb:g})")
    if code != 0:
        failed.append(f"the server exited {code} on SIGTERM")
    for line in failed:
        print(f"soak FAILED: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
