"""`make failover-drill`: lose the primary under load on pg_auto_failover, then switch over, and lose
nothing that was acknowledged (issue 16, items 2-4).

In a temporary folder, on loopback ports chosen free: a pg_auto_failover monitor, a primary and a
secondary with synchronous replication, and `canopy-svc serve --workers 2` on the formation's
multi-host DATABASE_URL (target_session_attrs=read-write). A steady load of customer creates, each
with an Idempotency-Key and every other one with a card-linked account (cards from the built-in
simulator), runs throughout. A client retries every 503 (and every lost answer) with the same key,
as the README tells clients to.

1. Failover: the primary's host is lost: its pg_autoctl is frozen (SIGSTOP, so nothing restarts
   the server: a dead host restarts nothing) and its postmaster is SIGKILLed mid-load. The monitor
   promotes the standby; the service must serve again by itself. The lost node is then thawed and
   rejoins as the secondary.
2. Switchover: `pg_autoctl perform switchover` under the same load.

Then every acknowledged customer, link and card is checked on the primary, and the figures printed.
Exits non-zero if an acknowledged write is lost, anything is doubled, any answer is unexpected (a
500 above all), or the service did not recover within its bounds.

pg_autoctl refuses to run as root: as root the nodes run as user `postgres` (made if missing); as
another user, as that user. pg_auto_failover is installed with apt-get when missing (root only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: `tests.` importable

from canopy_svc.rules.ids import new_client_id, new_client_secret
from canopy_svc.rules.passwords import hash_secret
from canopy_svc.store import api_clients, organizations
from tests.helpers import CARD_CONFIG, minimal_customer
from tests.processes import ServerProcess, free_port

APT_PACKAGE = "postgresql-15-auto-failover"
DATABASE = "canopy"
WEBHOOK_RECEIVER = Path(__file__).resolve().parent.parent / "bench" / "webhook_receiver.py"
DELIVERED_EVENT = "card_issued"  # the subscription's one type: one delivery per acknowledged card
ACCOUNT_ID = "drill-account"
NODE_USER = "postgres"
# The monitor's health checks, tightened from 5 s period / 20 s unhealthy / 30 s demote timeout so
# the drill's failover takes seconds, not half a minute (pg_autoctl(5): "Deciding when to promote").
JOINED_STATES = ("single", "wait_primary", "primary", "secondary")  # the first node is "single" alone
MONITOR_SETTINGS = {
    "health_check_period": 1000,
    "health_check_timeout": 1000,
    "health_check_max_retries": 1,
    "health_check_retry_delay": 500,
    "node_considered_unhealthy_timeout": 2000,
    "primary_demote_timeout": 3000,
}


def log(message: str) -> None:
    print(f"[drill {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- pg_auto_failover --------------------------------------------------------------------------------


def postgres_bindir() -> Path:
    """The newest PostgreSQL whose pg_auto_failover extension is installed."""
    for version in sorted((p.name for p in Path("/usr/lib/postgresql").glob("*")), key=int, reverse=True):
        if Path(f"/usr/share/postgresql/{version}/extension/pgautofailover.control").exists():
            return Path(f"/usr/lib/postgresql/{version}/bin")
    raise SystemExit(f"no PostgreSQL with pg_auto_failover: apt-get install -y {APT_PACKAGE}")


def ensure_installed() -> None:
    if shutil.which("pg_autoctl") and any(Path("/usr/share/postgresql").glob("*/extension/pgautofailover.control")):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit(f"pg_auto_failover is missing: install {APT_PACKAGE} (Debian/Ubuntu), then run again")
    log(f"installing {APT_PACKAGE}")
    command = ["apt-get", "install", "-y", "-q", APT_PACKAGE]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(command, env=env, stdout=subprocess.DEVNULL, timeout=600).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL, timeout=600, check=True)
        subprocess.run(command, env=env, stdout=subprocess.DEVNULL, timeout=600, check=True)


def node_user() -> str | None:
    """Who runs the nodes: None for this user, or (as root) NODE_USER, made if missing."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(NODE_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", NODE_USER], check=True, timeout=30)
    return NODE_USER


class Formation:
    """A monitor and two Postgres nodes under `root`, each its own `pg_autoctl run`."""

    def __init__(self, root: Path, user: str | None) -> None:
        self.root = root
        self.user = user
        self.bindir = postgres_bindir()
        self.ports = {"monitor": free_port(), "node1": free_port(), "node2": free_port()}
        self.runs: dict[str, subprocess.Popen[bytes]] = {}
        self.frozen: list[psutil.Process] = []

    def command(self, *args: str) -> list[str]:
        # pg_autoctl keeps its configuration, state and pid files under the XDG folders: all in `root`.
        env = [
            "env",
            f"PATH={self.bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            f"XDG_CONFIG_HOME={self.root / 'xdg' / 'config'}",
            f"XDG_DATA_HOME={self.root / 'xdg' / 'data'}",
            f"XDG_RUNTIME_DIR={self.root / 'xdg' / 'run'}",
        ]
        # setpriv execs pg_autoctl itself (runuser would stay its parent, and stop itself when its child
        # is stopped): the process started is pg_autoctl, the leader of a process group of its own.
        become = ["setpriv", f"--reuid={self.user}", f"--regid={self.user}", "--init-groups"] if self.user else []
        return [*become, *env, f"HOME={self.root}", "pg_autoctl", *args]

    def pgdata(self, name: str) -> str:
        return str(self.root / name)

    def tool(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(self.command(*args), capture_output=True, timeout=timeout, cwd=self.root)
        if done.returncode != 0:
            raise RuntimeError(f"pg_autoctl {args[0]} failed:\n{done.stderr.decode(errors='replace')[-2000:]}")
        return done.stdout.decode()

    def run(self, name: str) -> None:
        log_file = (self.root / f"{name}.log").open("ab")
        self.runs[name] = subprocess.Popen(
            self.command("run", "--pgdata", self.pgdata(name)),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            start_new_session=True,
        )

    @property
    def monitor_uri(self) -> str:
        return f"postgresql://autoctl_node@127.0.0.1:{self.ports['monitor']}/pg_auto_failover?sslmode=disable"

    @property
    def dsn(self) -> str:
        hosts = ",".join(f"127.0.0.1:{self.ports[name]}" for name in ("node1", "node2"))
        return f"postgresql://postgres@{hosts}/{DATABASE}?target_session_attrs=read-write&sslmode=disable"

    def node_dsn(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.ports[name]}/{DATABASE}?sslmode=disable"

    def build(self) -> None:
        # Made before pg_autoctl runs: it falls back to /tmp/pg_autoctl for a runtime folder that is missing.
        for folder in ("xdg", "xdg/config", "xdg/data", "xdg/run"):
            (self.root / folder).mkdir(mode=0o700)
            if self.user:
                shutil.chown(self.root / folder, self.user, self.user)
        common = ["--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl"]  # loopback only, a throwaway
        self.tool("create", "monitor", "--pgdata", self.pgdata("monitor"), "--pgport", str(self.ports["monitor"]),
                  *common)  # fmt: skip
        # `create monitor` has no --listen: its Postgres would listen on every address.
        self.tool("config", "set", "--pgdata", self.pgdata("monitor"), "postgresql.listen_addresses", "127.0.0.1")
        self.run("monitor")
        wait_for(lambda: self.monitor_answers(), 60, "the monitor")
        asyncio.run(self.tune_monitor())
        for name in ("node1", "node2"):
            self.tool("create", "postgres", "--pgdata", self.pgdata(name), "--pgport", str(self.ports[name]),
                      "--listen", "127.0.0.1", "--monitor", self.monitor_uri, "--dbname", DATABASE, "--name", name,
                      *common)  # fmt: skip
            self.run(name)
            wait_for(lambda name=name: self.reported(name) in JOINED_STATES, 120, f"{name} to join")
        self.wait_stable(120)

    def monitor_answers(self) -> bool:
        try:
            self.tool("show", "state", "--pgdata", self.pgdata("monitor"), timeout=10)
        except (RuntimeError, subprocess.TimeoutExpired):
            return False
        return True

    async def tune_monitor(self) -> None:
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{self.ports['monitor']}/pg_auto_failover")
        try:
            for name, value in MONITOR_SETTINGS.items():
                await conn.execute(f"ALTER SYSTEM SET pgautofailover.{name} = {int(value)}")
            await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()

    def states(self) -> dict[str, tuple[str, str]]:
        """node name -> (reported state, assigned state), as the monitor has them."""
        try:
            shown = json.loads(self.tool("show", "state", "--pgdata", self.pgdata("monitor"), "--json", timeout=10))
        except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError):
            return {}
        return {node["nodename"]: (node["current_group_state"], node["assigned_group_state"]) for node in shown}

    def reported(self, name: str) -> str | None:
        state = self.states().get(name)
        return state[0] if state else None

    def primary(self) -> str | None:
        """The node taking writes: wait_primary is a primary whose standby is gone (replication async
        until it is back: pg_auto_failover keeps the service up rather than wait for it). A lost
        primary still shows the state it last reported, so the assigned one must agree."""
        writable = ("primary", "wait_primary")
        states = self.states().items()
        return next((name for name, (now, goal) in states if now in writable and goal in writable), None)

    def wait_stable(self, seconds: float) -> None:
        """A primary and a secondary, each in the state it was assigned."""

        def stable() -> bool:
            states = self.states()
            settled = all(reported == assigned for reported, assigned in states.values())
            return settled and sorted(reported for reported, _ in states.values()) == ["primary", "secondary"]

        wait_for(stable, seconds, "a primary and a secondary")

    def lose_host(self, name: str) -> None:
        """The host is gone: its pg_autoctl frozen (nothing left to restart Postgres), its postmaster
        SIGKILLed (its backends exit when they find the postmaster dead)."""
        run = psutil.Process(self.runs[name].pid)
        postmaster = int((self.root / name / "postmaster.pid").read_text().split()[0])
        self.frozen = [p for p in [run, *run.children(recursive=True)] if p.name() != "postgres"]
        for process in self.frozen:
            process.send_signal(signal.SIGSTOP)
        os.kill(postmaster, signal.SIGKILL)

    def thaw(self) -> None:
        for process in self.frozen:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGCONT)
        self.frozen = []

    def switchover(self) -> None:
        self.tool("perform", "switchover", "--pgdata", self.pgdata("monitor"), timeout=120)

    def stop(self) -> None:
        """Each node's pg_autoctl asked to stop (fast), then its process group killed: only what this
        drill started (pg_autoctl, its services and its Postgres are one group per node)."""
        self.thaw()
        for name in ("node1", "node2", "monitor"):
            if name in self.runs and self.runs[name].poll() is None:
                with contextlib.suppress(Exception):
                    self.tool("stop", "--pgdata", self.pgdata(name), "--fast", timeout=20)
        for name, run in self.runs.items():
            with contextlib.suppress(subprocess.TimeoutExpired):
                run.wait(timeout=20)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(run.pid, signal.SIGKILL)
            run.wait(timeout=10)
            pidfile = self.root / name / "postmaster.pid"  # a postmaster that left its group, if any
            with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError, IndexError, psutil.Error):
                postmaster = psutil.Process(int(pidfile.read_text().split()[0]))
                if postmaster.name() == "postgres" and str(self.root / name) in " ".join(postmaster.cmdline()):
                    postmaster.kill()


def wait_for(predicate: Callable[[], object], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {seconds:.0f} s for {what}")
        time.sleep(0.2)


# --- the load ------------------------------------------------------------------------------------


@dataclass
class Attempt:
    started: float
    finished: float
    status: int | None  # None: no answer (connection cut, timeout)


@dataclass
class Load:
    base_url: str
    token: str
    account_id: str
    deadline: float  # a write not acknowledged by then is given up (and the drill fails)
    attempts: list[Attempt] = field(default_factory=list)
    acknowledged: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> customer_id
    linked: set[str] = field(default_factory=set)  # customer ids created with a card-linked account
    doubled_keys: list[str] = field(default_factory=list)  # one key answered with two customers
    unexpected: list[tuple[int | None, str]] = field(default_factory=list)
    given_up: int = 0
    stopping: bool = False
    http: httpx.AsyncClient | None = None
    _count: int = 0

    async def write(self) -> None:
        """One customer create, retried under its key until it is acknowledged."""
        n = self._count
        self._count += 1
        key = f"drill-{n}-{uuid.uuid4().hex[:12]}"
        body = minimal_customer(name_first=f"Drill{n}")
        card = n % 2 == 0
        if card:
            body["assign_to_accounts"] = [
                {"account_id": self.account_id, "customer_account_issuer_processor_config": CARD_CONFIG}
            ]
        while True:
            started = time.monotonic()
            status: int | None = None
            answer: httpx.Response | None = None
            assert self.http is not None
            try:
                answer = await self.http.post("/customers", json=body, headers={"Idempotency-Key": key})
                status = answer.status_code
            except httpx.HTTPError:
                pass  # outcome unknown: the same key again
            self.attempts.append(Attempt(started, time.monotonic(), status))
            if answer is not None and status == 200:
                customer_id = answer.json()["customer_id"]
                if self.acknowledged.setdefault(key, customer_id) != customer_id:
                    self.doubled_keys.append(key)
                if card:
                    self.linked.add(customer_id)
                return
            if status is not None and status not in (409, 429, 503):  # 409: the key still in progress
                self.unexpected.append((status, answer.text[:300] if answer is not None else ""))
                return
            if time.monotonic() > self.deadline:
                self.given_up += 1
                return
            retry_after = float(answer.headers.get("retry-after", "1")) if answer is not None else 0.5
            await asyncio.sleep(min(retry_after, 1.0))

    async def run(self, clients: int, pause: float) -> None:
        async def client() -> None:
            while not self.stopping:
                await self.write()
                await asyncio.sleep(pause)

        headers = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=10) as self.http:
            await asyncio.gather(*(client() for _ in range(clients)))

    def start(self, clients: int, pause: float) -> threading.Thread:
        """The load on a thread of its own (daemon: an interrupted drill does not wait for it)."""
        thread = threading.Thread(target=asyncio.run, args=(self.run(clients, pause),), daemon=True)
        thread.start()
        return thread

    def acknowledged_since(self, moment: float) -> bool:
        return any(a.status == 200 and a.started > moment for a in list(self.attempts))

    def window(self, since: float, until: float) -> dict[str, Any]:
        """Figures of the attempts started in [since, until)."""
        inside = [a for a in list(self.attempts) if since <= a.started < until]
        unavailable = [a for a in inside if a.status == 503 or a.status is None]
        # The first 200 after the outage began (a write can still commit in the instant after the kill).
        outage = min((a.started for a in unavailable), default=since)
        first_ok = min((a.finished for a in inside if a.status == 200 and a.started >= outage), default=None)
        return {
            "requests": len(inside),
            "answered_503": sum(1 for a in inside if a.status == 503),
            "no_answer": sum(1 for a in inside if a.status is None),
            "seconds_of_503": round(max(a.finished for a in unavailable) - min(a.started for a in unavailable), 2)
            if unavailable
            else 0.0,
            "seconds_to_first_200": None if first_ok is None else round(first_ok - since, 2),
        }


# --- setup and checks ----------------------------------------------------------------------------


class Receiver:
    """bench/webhook_receiver.py in a process of its own: 200 to every POST, each webhook-id kept."""

    def __init__(self, root: Path) -> None:
        self.port_file, self.arrivals_file = root / "receiver.port", root / "receiver.arrivals"
        self.process = subprocess.Popen(
            [sys.executable, str(WEBHOOK_RECEIVER), str(self.port_file), str(self.arrivals_file)],
            stdout=(root / "receiver.log").open("ab"),  # its keep-alive handlers' cancellation at exit
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(lambda: self.port_file.exists() and self.port_file.read_text(), 30, "the webhook receiver")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port_file.read_text().strip()}/hooks"

    def stop(self) -> list[str]:
        """Stops it; the webhook-id of every delivery that arrived, in order."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        if not self.arrivals_file.exists():
            return []
        return [line.split()[0] for line in self.arrivals_file.read_text().splitlines() if line.strip()]


async def make_drill_client(dsn: str) -> tuple[int, str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        org_id = await organizations.get_or_create_organization(conn, "failover-drill")
        client_id, secret = new_client_id(), new_client_secret()
        await organizations.insert_client(conn, org_id, client_id, hash_secret(secret), "read write")
        await api_clients.set_limits(conn, client_id, rate=100_000.0, burst=100_000)
    finally:
        await conn.close()
    return org_id, client_id, secret


async def wait_cards_settled(dsn: str, org_id: int, seconds: float) -> int:
    """Waits for the card outbox to drain; returns how many cards are still PENDING."""
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            conn = await asyncpg.connect(dsn, timeout=5)
            try:
                pending: int = await conn.fetchval(
                    "SELECT count(*) FROM cards WHERE org_id = $1 AND status = 'PENDING'", org_id
                )
            finally:
                await conn.close()
            if pending == 0 or time.monotonic() > deadline:
                return pending
        await asyncio.sleep(0.5)


async def check_deliveries(dsn: str, org_id: int, receiver: Receiver, seconds: float) -> dict[str, int]:
    """Once the outbox has drained: every event of the subscribed type arrived; how many twice."""
    deadline = time.monotonic() + seconds
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        while True:  # polled with a bound: the outbox is another process's
            pending = await conn.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE org_id = $1 AND state = 'pending'", org_id
            )
            if not pending or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        rows = await conn.fetch("SELECT event_id FROM events WHERE org_id = $1 AND type = $2", org_id, DELIVERED_EVENT)
        events = {r["event_id"] for r in rows}
        failed = await conn.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE org_id = $1 AND state = 'failed'", org_id
        )
    finally:
        await conn.close()
    arrivals = receiver.stop()
    return {
        "events": len(events),
        "arrived": len(set(arrivals) & events),
        "lost": len(events - set(arrivals)),
        # At least once (README, "Events and webhooks"): a delivery whose success could not be recorded
        # before the primary went away is sent again, under the same webhook-id for the receiver to drop.
        "sent_again": len(arrivals) - len(set(arrivals)),
        "pending": int(pending),
        "failed": int(failed),
    }


async def check(dsn: str, org_id: int, account_id: str, load: Load) -> dict[str, int]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        customers = {
            r["customer_id"] for r in await conn.fetch("SELECT customer_id FROM customers WHERE org_id = $1", org_id)
        }
        links = await conn.fetch(
            """SELECT c.customer_id, l.id AS link_id,
                      (SELECT count(*) FROM cards k WHERE k.link_id = l.id) AS cards,
                      (SELECT count(*) FROM cards k WHERE k.link_id = l.id AND k.status = 'ISSUED') AS issued
                 FROM customer_account_links l
                 JOIN customers c ON c.id = l.customer_row_id
                 JOIN accounts a ON a.id = l.account_row_id
                WHERE l.org_id = $1 AND a.account_id = $2""",
            org_id,
            account_id,
        )
        tokens = await conn.fetchval(
            "SELECT count(*) - count(DISTINCT token) FROM cards WHERE org_id = $1 AND token IS NOT NULL", org_id
        )
    finally:
        await conn.close()
    acknowledged = set(load.acknowledged.values())
    by_customer = {r["customer_id"]: r for r in links}
    lost_customers = len(acknowledged - customers)
    lost_links = sum(1 for c in load.linked if c not in by_customer)
    lost_cards = sum(1 for c in load.linked if c in by_customer and by_customer[c]["cards"] == 0)
    return {
        "acknowledged_customers": len(acknowledged),
        "acknowledged_links": len(load.linked),
        "lost": lost_customers + lost_links + lost_cards,
        # A customer nobody was answered for, a link nobody asked for, a second card, a key with two answers.
        "duplicates": len(customers - acknowledged)
        + sum(1 for c in by_customer if c not in load.linked)
        + sum(max(r["cards"] - 1, 0) for r in links)
        + int(tokens)
        + len(load.doubled_keys),
        "cards_issued": sum(int(r["issued"]) for r in links),
        "cards_not_issued": sum(int(r["cards"] - r["issued"]) for r in links),
    }


# --- the drill -----------------------------------------------------------------------------------


async def prepare(formation: Formation, server: ServerProcess, webhook_url: str) -> tuple[int, str]:
    """The drill's organization, client (limits that never bind), webhook subscription, product and
    account; its token."""
    org_id, client_id, secret = await make_drill_client(formation.dsn)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        token = (await http.post("/auth/token", json={"client_id": client_id, "client_secret": secret})).json()
        http.headers["Authorization"] = f"Bearer {token['access_token']}"
        subscribed = await http.put(
            "/organization/subscribe", json={"webhook_url": webhook_url, "filter_events": [DELIVERED_EVENT]}
        )
        assert subscribed.status_code == 201, subscribed.text
        product = await http.post(
            "/products", json={"product_overview": {"product_name": "Drill", "product_type": "REVOLVING"}}
        )
        created = await http.post(
            "/accounts", json={"account_id": ACCOUNT_ID, "product_id": product.json()["product_id"]}
        )
        assert created.status_code == 200, created.text
    return org_id, str(token["access_token"])


def drill(formation: Formation, server: ServerProcess, receiver: Receiver, args: argparse.Namespace) -> int:
    org_id, token = asyncio.run(prepare(formation, server, receiver.url))
    load = Load(server.base_url, token, ACCOUNT_ID, deadline=time.monotonic() + args.max_seconds)
    marks: dict[str, float] = {}
    figures: dict[str, Any] = {}
    started = time.monotonic()
    thread = load.start(args.clients, args.pause)
    try:
        time.sleep(args.warmup)
        old = formation.primary()
        assert old is not None, formation.states()
        log(f"SIGKILL of {old}'s postmaster (its pg_autoctl frozen)")
        marks["kill"] = time.monotonic()
        formation.lose_host(old)
        wait_for(lambda: formation.primary() not in (None, old), args.recovery_seconds, "the standby's promotion")
        marks["promoted"] = time.monotonic()
        log(f"{formation.primary()} promoted after {marks['promoted'] - marks['kill']:.1f} s")
        wait_for(lambda: load.acknowledged_since(marks["kill"]), args.recovery_seconds, "a 200 after the kill")
        time.sleep(args.after)
        marks["failover_end"] = time.monotonic()
        log(f"thawing {old}: it rejoins as the secondary")
        formation.thaw()
        formation.wait_stable(args.recovery_seconds * 2)
        time.sleep(args.after)
        log("pg_autoctl perform switchover")
        marks["switchover"] = time.monotonic()
        formation.switchover()
        formation.wait_stable(args.recovery_seconds)
        marks["switched"] = time.monotonic()
        log(f"switched over to {formation.primary()} in {marks['switched'] - marks['switchover']:.1f} s")
        time.sleep(args.after)
        marks["end"] = time.monotonic()
    finally:
        load.stopping = True
    thread.join(timeout=args.max_seconds)  # each write is bounded by the load's deadline
    figures["failover"] = load.window(marks["kill"], marks["failover_end"])
    figures["failover"]["seconds_to_promotion"] = round(marks["promoted"] - marks["kill"], 2)
    figures["switchover"] = load.window(marks["switchover"], marks["end"])
    pending = asyncio.run(wait_cards_settled(formation.dsn, org_id, args.recovery_seconds))
    figures["checks"] = asyncio.run(check(formation.dsn, org_id, ACCOUNT_ID, load))
    figures["checks"]["cards_pending"] = pending
    figures["deliveries"] = asyncio.run(check_deliveries(formation.dsn, org_id, receiver, args.recovery_seconds))
    figures["requests"] = len(load.attempts)
    figures["acknowledged"] = len(load.acknowledged)
    figures["unexpected_answers"] = len(load.unexpected)
    figures["given_up"] = load.given_up
    figures["load_seconds"] = round(marks["end"] - started, 1)

    print(json.dumps(figures, indent=2))
    checks = figures["checks"]
    failover_figures, switchover_figures = figures["failover"], figures["switchover"]
    print(f"requests acknowledged:            {figures['acknowledged']} (of {figures['requests']} sent)")
    print(f"acknowledged writes lost:         {checks['lost']}")
    print(f"duplicates:                       {checks['duplicates']}")
    print(f"failover, seconds of 503:         {failover_figures['seconds_of_503']}")
    print(f"failover, kill to first 200:      {failover_figures['seconds_to_first_200']} s")
    print(f"switchover, seconds of 503:       {switchover_figures['seconds_of_503']}")
    print(f"cards issued / not issued:        {checks['cards_issued']} / {checks['cards_not_issued']}")
    deliveries = figures["deliveries"]
    print(
        f"webhook deliveries:               {deliveries['arrived']} of {deliveries['events']} {DELIVERED_EVENT} "
        f"events, {deliveries['lost']} lost, {deliveries['sent_again']} sent again (same webhook-id)"
    )
    failures = []
    if checks["lost"] or checks["duplicates"]:
        failures.append("acknowledged writes lost or doubled")
    if load.unexpected:
        failures.append(f"unexpected answers: {load.unexpected[:5]}")
    if load.given_up:
        failures.append(f"{load.given_up} writes never acknowledged")
    if checks["cards_not_issued"] or pending:
        failures.append("cards left unissued")
    if deliveries["lost"] or deliveries["pending"] or deliveries["failed"]:
        failures.append("webhook deliveries lost, left pending or failed")
    if (
        failover_figures["seconds_to_first_200"] is None
        or failover_figures["seconds_to_first_200"] > args.recovery_seconds
    ):
        failures.append("no recovery from the failover in time")
    if switchover_figures["seconds_of_503"] > args.switchover_503_seconds:
        failures.append(f"503s for longer than {args.switchover_503_seconds} s during the switchover")
    for failure in failures:
        print(f"FAIL: {failure}")
    print("PASS" if not failures else "FAILED")
    return 1 if failures else 0


@contextlib.contextmanager
def scratch(keep: bool, user: str | None) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="canopy-failover-"))
    root.chmod(0o755)
    if user:
        shutil.chown(root, user)
    try:
        yield root
    finally:
        if keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=6, help="concurrent writers")
    parser.add_argument("--pause", type=float, default=0.05, help="seconds each writer waits between creates")
    parser.add_argument("--warmup", type=float, default=6.0, help="seconds of load before the kill")
    parser.add_argument("--after", type=float, default=5.0, help="seconds of load after each recovery")
    parser.add_argument("--recovery-seconds", type=float, default=60.0, help="bound on each recovery")
    parser.add_argument("--switchover-503-seconds", type=float, default=5.0, help="bound on 503s in the switchover")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="bound on the whole load")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, data)")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the cleanup below runs
    ensure_installed()
    user = node_user()
    with scratch(args.keep, user) as root:
        formation = Formation(root, user)
        server: ServerProcess | None = None
        receiver: Receiver | None = None
        try:
            log(f"building the formation in {root}")
            formation.build()
            log(f"formation up: {formation.states()}")
            asyncio.run(assert_synchronous(formation))
            receiver = Receiver(root)
            server = ServerProcess(
                formation.dsn,
                root / "server",
                workers=2,
                CANOPY_SVC_CARD_LEASE_SECONDS="5",
                CANOPY_SVC_CARD_RETRY_BASE_SECONDS="0.2",
                CANOPY_SVC_LOG_FORMAT="json",
                CANOPY_SVC_WEBHOOK_ALLOWED_HOSTS="127.0.0.1",  # the receiver, on loopback
                CANOPY_SVC_WEBHOOK_TIMEOUT_SECONDS="3",
                CANOPY_SVC_WEBHOOK_LEASE_SECONDS="5",  # a claim lost with the old primary is retried soon
                CANOPY_SVC_WEBHOOK_RETRY_BASE_SECONDS="0.5",
            ).start(timeout=60)
            log(f"canopy-svc serve --workers 2 on {formation.dsn}")
            return drill(formation, server, receiver, args)
        except Exception:
            if server is not None:
                print(server.log()[-4000:], file=sys.stderr)
            raise
        finally:
            if server is not None:
                server.kill()
            if receiver is not None:
                receiver.stop()
            formation.stop()


async def assert_synchronous(formation: Formation) -> None:
    """A 200 means the standby has it too: the primary must wait for a synchronous standby."""
    conn = await asyncpg.connect(formation.dsn, timeout=10)
    try:
        names = await conn.fetchval("SHOW synchronous_standby_names")
        states = [r["sync_state"] for r in await conn.fetch("SELECT sync_state FROM pg_stat_replication")]
    finally:
        await conn.close()
    log(f"synchronous_standby_names = {names!r}, standbys {states}")
    if not names or not any(state in ("sync", "quorum") for state in states):
        raise SystemExit("the formation's replication is not synchronous")


if __name__ == "__main__":
    sys.exit(main())
