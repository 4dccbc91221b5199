"""`make bench`: the database ceiling (pgbench), then canopy-svc under wrk in three data shapes.

Everything runs on this machine, in this order, in one go, so the ratios compare like with like.
Read every figure as a ratio within this run: the machine (2 cores) is shared with other work.

1. An embedded PostgreSQL (pgserver) in a temporary folder, with one database per data shape, each
   migrated with `canopy-svc migrate` and given an organization `bench` and a client whose limit never
   binds (`canopy-svc clients create --org bench --json --rate 1000000 --burst 1000000`).
2. The data shapes (BENCH_SHAPES, "unique,repeated,fresh"):
   - unique: BENCH_ROWS (1,000,000) customers whose every value is unique, bulk-loaded (INSERT ...
     SELECT FROM generate_series, secondary indexes dropped and rebuilt exactly as schema.sql has
     them), VACUUM ANALYZE; the POST bodies unique too.
   - repeated: BENCH_ROWS customers with the repetition real ones have (LOAD_SQL_REPEATED: families
     of four sharing last name, phone and address, a fifth of all customers; 2% at four addresses
     shared by thousands; sixteen common surnames), loaded and analyzed the same way; the POST bodies
     repeat the same way (bench/post_customers.lua `repeated`, with an SSN each) and land at the
     loaded rows' popular addresses.
   - fresh: an empty database, as a new user's server starts: no preload, no ANALYZE (autovacuum
     only); the POST bodies repeated. Its server is first left idle (BENCH_IDLE_SECONDS) to measure
     what an idle server costs, then filled by its creates.
3. The raw ceiling with pgbench on the unique database, `-M prepared -n -c 32 -j 2 -T BENCH_SECONDS`:
   the service's customer INSERT (bench/pgbench_insert.sql) and its key lookup
   (bench/pgbench_lookup.sql); as a diagnostic, the list-page SQL at the start and ~99% deep.
4. Per shape, `canopy-svc serve --workers 1` with the access log on, as in production
   (BENCH_LOG_LEVEL INFO), driven by wrk (`-t 2 -c 32 -d BENCH_SECONDS --latency`): POST /customers,
   GET /customers/{id}; on the loaded shapes the first and a ~99% deep list page, and a search on a
   shared and on a rare last name, each pair in paired rounds (BENCH_PAGE_ROUNDS, 5) after an
   unmeasured warm-up of each (the headline: the median of the rounds' p50 ratios). Every run counts
   its answers per slice (BENCH_SLICES, 5, of the run), so a slope shows. Then POST and GET again at
   a fixed offered load, BENCH_FIXED_LOAD (0.5) of the rate just measured, paced by wrk's delay()
   (bench/lib.lua), for latency without the queue a closed loop builds. The unique shape also runs
   POST with one assign_to_accounts link, a 2-worker server (BENCH_WORKERS "1,2"), and py-spy on its
   1-worker server during extra POST and GET passes (BENCH_PROFILE_PIN: the worker on CPU 0, PostgreSQL
   and wrk on the others, so the profile is the worker's own CPU, not the preemptions of a 2-core box).
   The server's processes are sampled every 100 ms (RSS per process; CPU of the server, PostgreSQL,
   wrk and the whole box).
5. Webhooks (issue 12; BENCH_WEBHOOKS 1, 0 skips), on a database of their own: a 1-worker server with
   one subscription to a local receiver (bench/webhook_receiver.py, its own process, 200 at once):
   the delivery throughput of BENCH_WEBHOOK_BACKLOG (5000) events committed at once; then the
   commit-to-delivery latency (from the moment the commit returned to the receiver's arrival) of an
   event committed every BENCH_WEBHOOK_PROBE_MS (50) for BENCH_SECONDS, at idle and while wrk runs
   POST /customers as above (whose events are delivered too). BENCH_ONLY=webhooks runs this part
   alone (no pgbench, no shapes; about 2 minutes), into bench-results/result-webhooks.json.
6. Bulk import (issue 15; BENCH_IMPORT 1, 0 skips): `canopy-svc customers import` of BENCH_IMPORT_ROWS
   (200,000) valid JSON lines into a database of BENCH_ROWS loaded customers (the unique shape's load),
   policy `warn`, the command's defaults; target 20,000 rows/s. BENCH_ONLY=import runs this part alone,
   into bench-results/result-import.json.
7. bench-results/result.json, a table on stdout, and every target of issue 9, PASS or FAIL with its figure.

Environment: BENCH_SECONDS (15), BENCH_ROWS (1000000), BENCH_SHAPES, BENCH_CONNECTIONS (32),
BENCH_THREADS (2), BENCH_WORKERS ("1,2"; workers beyond 1 run on the unique shape), BENCH_SLICES (5),
BENCH_FRESH_SECONDS (2 x BENCH_SECONDS: the fresh shape's POST run), BENCH_FIXED_LOAD (0.5),
BENCH_IDLE_SECONDS (30; 0 skips), BENCH_WARMUP_SECONDS (2), BENCH_PAGE_ROUNDS (5),
BENCH_LATENCY_CONNECTIONS (0; N > 0 adds a closed-loop POST and GET at N connections, a diagnostic),
BENCH_DIAGNOSE_LIMITER (0; 1 adds a 2-worker server with per-worker memory limiters),
BENCH_PROFILE (1 when py-spy is found), BENCH_PROFILE_SECONDS (10), BENCH_PROFILE_MODES
("python,native", see profile()), BENCH_PROFILE_PIN (1), BENCH_LOG_LEVEL (INFO: the access log on;
WARNING turns it off), BENCH_DEEP_CURSOR ("search" or "walk"), BENCH_RESULTS (bench-results),
BENCH_SERVER_ENV (unset; e.g. "CANOPY_SVC_POOL_MAX=32": settings for the servers under test),
BENCH_WEBHOOKS (1), BENCH_WEBHOOK_BACKLOG (5000), BENCH_WEBHOOK_PROBE_MS (50), BENCH_IMPORT (1),
BENCH_IMPORT_ROWS (200000), BENCH_IMPORT_BATCH_ROWS (2000), BENCH_ONLY ("webhooks" or "import").
A quick smoke run: BENCH_ROWS=20000 BENCH_SECONDS=3 BENCH_IDLE_SECONDS=5 BENCH_PROFILE=0 make bench.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import functools
import itertools
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

from profile_summary import summarize_raw  # noqa: E402


def _flag(name: str, default: str) -> bool:
    return os.environ.get(name, default) not in ("0", "false", "no", "")


SECONDS = int(os.environ.get("BENCH_SECONDS", "15"))
ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
SHAPES = [s.strip() for s in os.environ.get("BENCH_SHAPES", "unique,repeated,fresh").split(",") if s.strip()]
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
WORKER_COUNTS = [int(w) for w in os.environ.get("BENCH_WORKERS", "1,2").split(",") if w.strip()]
SLICES = max(1, int(os.environ.get("BENCH_SLICES", "5")))
FRESH_SECONDS = int(os.environ.get("BENCH_FRESH_SECONDS", str(2 * SECONDS)))
FIXED_LOAD = float(os.environ.get("BENCH_FIXED_LOAD", "0.5"))
IDLE_SECONDS = int(os.environ.get("BENCH_IDLE_SECONDS", "30"))
WARMUP_SECONDS = int(os.environ.get("BENCH_WARMUP_SECONDS", "2"))
PROFILE_SECONDS = int(os.environ.get("BENCH_PROFILE_SECONDS", "10"))
PROFILE_MODES = [m.strip() for m in os.environ.get("BENCH_PROFILE_MODES", "python,native").split(",") if m.strip()]
PROFILE_PIN = _flag("BENCH_PROFILE_PIN", "1") and (psutil.cpu_count() or 1) >= 2
PAGE_ROUNDS = max(1, int(os.environ.get("BENCH_PAGE_ROUNDS", "5")))
LATENCY_CONNECTIONS = int(os.environ.get("BENCH_LATENCY_CONNECTIONS", "0"))
DIAGNOSE_LIMITER = _flag("BENCH_DIAGNOSE_LIMITER", "0")
LOG_LEVEL = os.environ.get("BENCH_LOG_LEVEL", "INFO").upper()
ACCESS_LOG = LOG_LEVEL in ("INFO", "DEBUG")
DEEP_CURSOR_MODE = os.environ.get("BENCH_DEEP_CURSOR", "search")
RESULTS = Path(os.environ.get("BENCH_RESULTS", ROOT / "bench-results"))
WEBHOOKS = _flag("BENCH_WEBHOOKS", "1")
ONLY = os.environ.get("BENCH_ONLY", "")  # "webhooks" or "import": that part alone (no pgbench, no shapes)
IMPORT = _flag("BENCH_IMPORT", "1")
WEBHOOK_BACKLOG = int(os.environ.get("BENCH_WEBHOOK_BACKLOG", "5000"))
WEBHOOK_PROBE_MS = float(os.environ.get("BENCH_WEBHOOK_PROBE_MS", "50"))
# Secrets made for this run and given to every process it starts (CLI, server workers), so they agree.
JWT_SECRET = base64.urlsafe_b64encode(os.urandom(32)).decode()
DATA_KEY = base64.urlsafe_b64encode(os.urandom(32)).decode()

ACCOUNT_ID = "bench-account"
PRODUCT_ID = "bench-product"
# One area code per POST pass, so phone numbers never repeat between passes: as many codes as a
# default run has passes (warm-ups, fixed-load runs and profiles included: about 18), with room to spare.
AREA_CODES = ["212", "312", "415", "617", "646", "718", "202", "305", "404", "512", "303", "206",
              "213", "310", "408", "503", "602", "702", "713", "801", "919", "615", "704", "612",
              "216", "412", "504", "614", "714", "818"]  # fmt: skip
PGBENCH_AREA = "973"
LOADED_REPEATED_AREA = "301"  # the loaded repeated rows' phones; no POST pass uses it

TARGETS = {
    "post_vs_insert_ceiling": 0.25,
    "post_last_vs_first_slice": 0.90,
    "get_vs_lookup_ceiling": 0.10,
    "deep_vs_first_page": 1.2,
    "shared_vs_rare_search": 1.2,
    "rss_mb_per_worker": 80.0,
    "fixed_load_p99_ms_get": 10.0,
    "fixed_load_p99_ms_post": 20.0,
    "idle_cpu_pct": 1.0,
}
def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Tools


def pg_bin(name: str) -> Path:
    """A PostgreSQL program from the pgserver wheel (pgbench, psql), found via the package's path."""
    import pgserver

    path = Path(pgserver.__file__).resolve().parent / "pginstall" / "bin" / name
    if not path.exists():
        raise SystemExit(f"bench: {name} not found at {path} (is pgserver installed?)")
    return path


def cli() -> list[str]:
    """`canopy-svc` of this venv (the console script beside this Python), else `python -m canopy_svc`."""
    script = Path(sys.executable).parent / "canopy-svc"
    return [str(script)] if script.exists() else [sys.executable, "-m", "canopy_svc"]


def py_spy() -> str | None:
    if os.environ.get("BENCH_PROFILE", "1") in ("0", "false", "no"):
        return None
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def base_env(dsn: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANOPY_SVC_")}
    env.update(
        {
            "DATABASE_URL": dsn,
            "CANOPY_SVC_DATA_DIR": str(data_dir),
            "CANOPY_SVC_JWT_SECRET": JWT_SECRET,
            "CANOPY_SVC_DATA_KEY": DATA_KEY,
            "CANOPY_SVC_LOG_LEVEL": LOG_LEVEL,
        }
    )
    # BENCH_SERVER_ENV="CANOPY_SVC_POOL_MAX=32 ...": settings for the servers under test, for
    # experiments (the caller's own CANOPY_SVC_* are dropped so a developer's shell can't skew a run).
    for item in os.environ.get("BENCH_SERVER_ENV", "").split():
        name, _, value = item.partition("=")
        if not name.startswith("CANOPY_SVC_"):
            raise SystemExit(f"BENCH_SERVER_ENV takes CANOPY_SVC_* settings only, not {name!r}")
        env[name] = value
    return env


# --------------------------------------------------------------------------------------------------
# Sampling the server's processes (RSS every 100 ms) and CPU use of the server and of PostgreSQL


def _counters(proc: psutil.Process) -> tuple[float, float, int, int]:
    """(user s, system s, voluntary, involuntary context switches) of a process so far."""
    times = proc.cpu_times()
    switches = proc.num_ctx_switches()
    return float(times.user), float(times.system), int(switches.voluntary), int(switches.involuntary)


def _role(proc: psutil.Process, root_pid: int) -> str:
    if proc.pid == root_pid:
        return "main"
    try:
        cmdline = " ".join(proc.cmdline())
    except psutil.Error:
        return "other"
    if "resource_tracker" in cmdline:
        return "resource_tracker"
    if "multiprocessing.spawn" in cmdline or "spawn_main" in cmdline:
        return "worker"
    return "other"


class Sampler:
    """Samples, every `interval` s until stopped: RSS of each process of the server's tree (max kept),
    and the CPU seconds used by each group of processes (the server's tree, PostgreSQL's postmaster
    and backends, the load generator) and by the whole box, so a run shows what else was running."""

    def __init__(self, server_pid: int | None, postmaster_pid: int, interval: float = 0.1) -> None:
        self.server_pid = server_pid
        self.roots: dict[str, int] = {"postgres": postmaster_pid}
        if server_pid is not None:
            self.roots["server"] = server_pid
        self.interval = interval
        self.rss_max: dict[int, int] = {}
        self.roles: dict[int, str] = {}
        self._first: dict[int, tuple[float, float, int, int]] = {}
        self._last: dict[int, tuple[float, float, int, int]] = {}
        self._group: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = 0.0
        self.started_wall = 0.0
        self.elapsed = 0.0
        self._box_start: Any = None
        self.box_busy_pct = 0.0
        self._members: dict[str, list[psutil.Process]] = {}
        self._refreshed = 0.0
        self._self = psutil.Process()
        self._self_start = 0.0
        self.self_cpu_pct = 0.0

    def add(self, group: str, pid: int) -> None:
        """Another process tree to account for (the load generator, once started)."""
        self.roots[group] = pid

    def _tree(self, pid: int | None) -> list[psutil.Process]:
        if pid is None:
            return []
        try:
            root = psutil.Process(pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def _refresh(self) -> None:
        """Who belongs to each group: a scan of /proc, so done once a second, not every sample."""
        self._members = {group: self._tree(pid) for group, pid in list(self.roots.items())}
        self._refreshed = time.monotonic()

    def _sample(self) -> None:
        if set(self._members) != set(self.roots) or time.monotonic() - self._refreshed >= 1.0:
            self._refresh()
        for group, procs in self._members.items():
            for proc in procs:
                try:
                    counters = _counters(proc)
                    if group == "server":
                        rss = proc.memory_info().rss
                        self.rss_max[proc.pid] = max(self.rss_max.get(proc.pid, 0), rss)
                        if proc.pid not in self.roles:
                            self.roles[proc.pid] = _role(proc, self.server_pid or -1)
                    if proc.pid not in self._first:
                        # A process born during the run used all its CPU in it.
                        born_in_run = proc.create_time() >= self.started_wall - 0.01
                        self._first[proc.pid] = (0.0, 0.0, 0, 0) if born_in_run else counters
                        self._group[proc.pid] = group
                    self._last[proc.pid] = counters
                except psutil.Error:
                    continue

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self.started = time.monotonic()
        self.started_wall = time.time()
        self._box_start = psutil.cpu_times()
        times = self._self.cpu_times()
        self._self_start = times.user + times.system
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.elapsed = time.monotonic() - self.started
        end = psutil.cpu_times()
        not_busy = ("idle", "iowait", "guest", "guest_nice")  # guest time is already counted in user
        busy = sum(getattr(end, f) - getattr(self._box_start, f) for f in end._fields if f not in not_busy)
        self.box_busy_pct = 100.0 * busy / max(self.elapsed, 1e-9)
        times = self._self.cpu_times()
        self.self_cpu_pct = 100.0 * (times.user + times.system - self._self_start) / max(self.elapsed, 1e-9)

    def _delta(self, group: str, index: int) -> float:
        return sum(self._last[p][index] - self._first[p][index] for p in self._last if self._group.get(p) == group)

    def cpu_seconds(self, group: str) -> float:
        return self._delta(group, 0) + self._delta(group, 1)

    def server_detail(self, requests: int) -> dict[str, float]:
        """The server's CPU per request split into user and kernel time, and its context switches
        per request (involuntary ones: the worker was preempted, the box being busy)."""
        per = max(requests, 1)
        return {
            "user_ms_per_request": round(1000 * self._delta("server", 0) / per, 3),
            "system_ms_per_request": round(1000 * self._delta("server", 1) / per, 3),
            "voluntary_switches_per_request": round(self._delta("server", 2) / per, 2),
            "involuntary_switches_per_request": round(self._delta("server", 3) / per, 2),
        }

    def cpu_pct(self, group: str) -> float:
        """CPU use of a group in % of one core (200% = both cores of a 2-core box)."""
        return round(100.0 * self.cpu_seconds(group) / max(self.elapsed, 1e-9), 1)

    def cpu_report(self) -> dict[str, float]:
        """% of one core: each group, the whole box, and the rest of the box (other users' work)."""
        groups = {group: self.cpu_pct(group) for group in self.roots}
        groups["bench"] = round(self.self_cpu_pct, 1)  # this script: the sampling itself
        return groups | {
            "box": round(self.box_busy_pct, 1),
            "other": round(max(self.box_busy_pct - sum(groups.values()), 0.0), 1),
        }

    def rss_report(self) -> list[dict[str, Any]]:
        return [
            {"pid": pid, "role": self.roles.get(pid, "other"), "peak_rss_mb": round(rss / 2**20, 1)}
            for pid, rss in sorted(self.rss_max.items())
        ]


def rss_now(server_pid: int) -> list[dict[str, Any]]:
    out = []
    try:
        root = psutil.Process(server_pid)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                out.append(
                    {
                        "pid": proc.pid,
                        "role": _role(proc, server_pid),
                        "rss_mb": round(proc.memory_info().rss / 2**20, 1),
                    }
                )
    except psutil.Error:
        pass
    return out



# --------------------------------------------------------------------------------------------------
# PostgreSQL: the databases of the shapes, their data, pgbench


@dataclass
class Cluster:
    dsn: str  # the default database's
    socket_dir: str
    postmaster_pid: int
    version: str


@dataclass
class Database:
    """One shape's database in the cluster, with its bench organization and client."""

    cluster: Cluster
    name: str
    dsn: str
    data_dir: Path  # the CLI's and the servers' --data-dir (their keys; the database is DATABASE_URL)
    org_id: int = 0
    client: dict[str, Any] = field(default_factory=dict)

    @property
    def postmaster_pid(self) -> int:
        return self.cluster.postmaster_pid

    @property
    def socket_dir(self) -> str:
        return self.cluster.socket_dir


async def _postmaster(dsn: str) -> tuple[int, str]:
    conn = await asyncpg.connect(dsn)
    try:
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        version = await conn.fetchval("SHOW server_version")
        postmaster = psutil.Process(backend).ppid()  # while the backend still exists
    finally:
        await conn.close()
    return postmaster, version


def _socket_dir(dsn: str) -> str:
    found = re.search(r"[?&]host=([^&]+)", dsn)
    if not found:
        raise SystemExit(f"bench: cannot find the socket folder in {dsn}")
    return found.group(1)


def dsn_of(dsn: str, database: str) -> str:
    """The same server's DSN for another database (the path of the URI)."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def create_database(dsn: str, name: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


_COLUMN_LIST = """id, org_id, customer_id, name_prefix, name_first, name_middle, name_last, name_suffix,
    phone_number, address_line_one, address_line_two, address_city, address_state, address_zip,
    address_country_code, ssn_encrypted, ssn_hash, international_customer_id, email, date_of_birth,
    business_legal_name, doing_business_as, business_ein, created_at, updated_at"""

LOAD_SQL = f"""
INSERT INTO customers ({_COLUMN_LIST})
OVERRIDING SYSTEM VALUE
SELECT i, $1, i::text,
    CASE WHEN i % 50 = 0 THEN 'Dr.' END,
    (ARRAY['Ada','Alan','Grace','Miriam','Linus','Barbara','Edsger','Margaret','Dennis','Frances'])[1 + i % 10],
    CASE WHEN i % 3 = 0 THEN 'Louise' END,
    (ARRAY['Lovelace','Turing','Hopper','Trevino','Torvalds','Liskov','Dijkstra','Hamilton','Ritchie','Allen'])
        [1 + (i / 10) % 10] || ' ' || i::text,
    NULL,
    '+1' || (2012000000 + i)::text,
    i::text || ' Main Street',
    CASE WHEN i % 4 = 0 THEN 'Apt ' || (1 + i % 97)::text END,
    'Springfield', 'IL', lpad((10000 + i % 89999)::text, 5, '0'), CASE WHEN i % 2 = 0 THEN 'US' END,
    NULL, NULL, NULL,
    'customer' || i::text || '@example.com',
    DATE '1950-01-01' + (i % 18000)::int,
    CASE WHEN i % 20 = 0 THEN 'Business ' || i::text || ' LLC' END,
    CASE WHEN i % 20 = 0 THEN 'Business ' || i::text END,
    CASE WHEN i % 20 = 0 THEN '12-3456789' END,
    now() - make_interval(secs => $3::bigint - i), now() - make_interval(secs => $3::bigint - i)
FROM generate_series($2::bigint, $3::bigint) AS i
"""

# The repetition real customers have, by customer number i; bench/post_customers.lua `repeated` makes
# its bodies by the same rules (keep the two in step): families of four (i / 4) share last name, phone
# and address when (i / 4) % 5 = 0, a fifth of all customers; 2% (i % 50 = 7) live at one of four
# addresses (an office, apartment blocks: BENCH_ROWS / 200 customers each); last names are sixteen
# common surnames, 1 in 100 (i % 100 = 11, outside families) has one of its own ('Zq' and six letters);
# one customer in 20 is a business named with its number (what the deep cursor's search finds).
_SURNAMES = ("ARRAY['Garcia','Smith','Nguyen','Johnson','Kim','Patel','Brown','Lopez','Williams','Chen','Jones',"
             "'Miller','Davis','Rodriguez','Martinez','Wilson']")
_HOT = {  # line, city, state, zip
    "line": "ARRAY['1 Corporate Plaza','350 Fifth Avenue','200 Park Avenue','1 Infinite Loop']",
    "city": "ARRAY['New York','New York','New York','Cupertino']",
    "state": "ARRAY['NY','NY','NY','CA']",
    "zip": "ARRAY['10001','10118','10166','95014']",
}
_CODE6 = " || ".join(f"chr(97 + ((i / {26 ** k}) % 26)::int)" for k in range(5, -1, -1))
LOAD_SQL_REPEATED = f"""
INSERT INTO customers ({_COLUMN_LIST})
OVERRIDING SYSTEM VALUE
SELECT i, $1, i::text,
    CASE WHEN i % 50 = 0 THEN 'Dr.' END,
    (ARRAY['Ada','Alan','Grace','Miriam','Linus','Barbara','Edsger','Margaret','Dennis','Frances'])[1 + i % 10],
    CASE WHEN i % 3 = 0 THEN 'Louise' END,
    CASE WHEN (i / 4) % 5 = 0 THEN ({_SURNAMES})[1 + (i / 4) % 16]
         WHEN i % 100 = 11 THEN 'Zq' || {_CODE6}
         ELSE ({_SURNAMES})[1 + (i * 7) % 16] END,
    NULL,
    '+1{LOADED_REPEATED_AREA}' || lpad(((CASE WHEN (i / 4) % 5 = 0 THEN i / 4 ELSE i END) % 10000000)::text, 7, '0'),
    CASE WHEN i % 50 = 7 THEN ({_HOT["line"]})[1 + (i / 50) % 4]
         WHEN (i / 4) % 5 = 0 THEN (i / 4)::text || ' Family Lane'
         ELSE i::text || ' Main Street' END,
    CASE WHEN i % 4 = 0 THEN 'Apt ' || (1 + i % 97)::text END,
    CASE WHEN i % 50 = 7 THEN ({_HOT["city"]})[1 + (i / 50) % 4] ELSE 'Springfield' END,
    CASE WHEN i % 50 = 7 THEN ({_HOT["state"]})[1 + (i / 50) % 4] ELSE 'IL' END,
    CASE WHEN i % 50 = 7 THEN ({_HOT["zip"]})[1 + (i / 50) % 4]
         WHEN (i / 4) % 5 = 0 THEN lpad((10000 + (i / 4) % 89999)::text, 5, '0')
         ELSE lpad((10000 + i % 89999)::text, 5, '0') END,
    CASE WHEN i % 2 = 0 THEN 'US' END,
    NULL, NULL, NULL,
    'customer' || i::text || '@example.com',
    DATE '1950-01-01' + (i % 18000)::int,
    CASE WHEN i % 20 = 0 THEN 'Business ' || i::text || ' LLC' END,
    CASE WHEN i % 20 = 0 THEN 'Business ' || i::text END,
    CASE WHEN i % 20 = 0 THEN '12-3456789' END,
    now() - make_interval(secs => $3::bigint - i), now() - make_interval(secs => $3::bigint - i)
FROM generate_series($2::bigint, $3::bigint) AS i
"""

SURNAMES = ("Garcia", "Smith", "Nguyen", "Johnson", "Kim", "Patel", "Brown", "Lopez", "Williams", "Chen", "Jones",
            "Miller", "Davis", "Rodriguez", "Martinez", "Wilson")  # fmt: skip


def code6(n: int) -> str:
    return "".join(chr(97 + (n // 26**k) % 26) for k in range(5, -1, -1))


def is_family(n: int) -> bool:
    return (n // 4) % 5 == 0


def rare_repeated_customer(near: int) -> int:
    """A loaded repeated customer at or after `near` with a last name of its own."""
    n = near - near % 100 + 11
    while is_family(n):
        n += 100
    return n


_KEPT_INDEXES = ("customers_pkey", "customers_org_customer_id_key")


# Tables the customer rows write through their triggers, filled in bulk by the load instead (the
# schema's own function makes the rows the trigger would).
_DERIVED_TABLES = {
    "customer_search_terms": """INSERT INTO customer_search_terms (org_id, term, customer_row_id)
        SELECT org_id, term, id FROM customers, unnest(canopy_search_terms(search_vector)) term
        WHERE org_id = $1 AND id BETWEEN $2 AND $3""",
}
_INDEXES = """SELECT tablename, indexname, indexdef FROM pg_indexes
              WHERE schemaname = 'public' AND tablename = ANY($1::text[]) ORDER BY tablename, indexname"""
_CONSTRAINT_INDEXES = """
    SELECT conrelid::regclass::text AS tablename, conname, pg_get_constraintdef(oid) AS definition
    FROM pg_constraint WHERE contype IN ('p', 'u') AND conrelid::regclass::text = ANY($1::text[])"""


async def load_customers(dsn: str, org_id: int, rows: int, sql: str) -> dict[str, Any]:
    """`rows` customers in the bench organization, ids 1..rows in customer_id order, by `sql`.

    Bulk-load practice: the customers' secondary indexes are dropped and their user triggers disabled,
    the rows inserted by two sessions in parallel (explicit ids 1..rows, then the identity moved past
    them); the tables those triggers keep (the search terms) are filled in bulk by the schema's own
    function, with their keys dropped and added back after; every index is rebuilt from its own
    definition, two at a time, and the tables vacuumed and analyzed. The customers' unique key stays
    throughout. The index set is compared before and after, and a sample of customers' terms is
    checked against what the trigger makes.
    """
    started = time.monotonic()
    conns = [await asyncpg.connect(dsn) for _ in range(2)]
    try:
        for conn in conns:
            await conn.execute("SET maintenance_work_mem = '256MB'; SET synchronous_commit = off")
        present = await conns[0].fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        derived = [t for t in _DERIVED_TABLES if t in {r["tablename"] for r in present}]
        tables = ["customers", *derived]
        before = {tuple(r) for r in await conns[0].fetch(_INDEXES, tables)}
        keys = await conns[0].fetch(_CONSTRAINT_INDEXES, derived)
        for r in keys:
            await conns[0].execute(f'ALTER TABLE {r["tablename"]} DROP CONSTRAINT "{r["conname"]}"')
        key_names = {r["conname"] for r in keys}
        secondary = [r for r in await conns[0].fetch(_INDEXES, tables)
                     if r["indexname"] not in _KEPT_INDEXES and r["indexname"] not in key_names]  # fmt: skip
        for r in secondary:
            await conns[0].execute(f'DROP INDEX "{r["indexname"]}"')
        await conns[0].execute("ALTER TABLE customers DISABLE TRIGGER USER")
        half = rows // 2
        try:
            await asyncio.gather(conns[0].execute(sql, org_id, 1, half), conns[1].execute(sql, org_id, half + 1, rows))
        finally:
            await conns[0].execute("ALTER TABLE customers ENABLE TRIGGER USER")
        await conns[0].execute("SELECT setval(pg_get_serial_sequence('customers', 'id'), $1)", rows)
        inserted = time.monotonic()
        for table in derived:
            fill = _DERIVED_TABLES[table]
            await asyncio.gather(conns[0].execute(fill, org_id, 1, half),
                                 conns[1].execute(fill, org_id, half + 1, rows))
        derived_at = time.monotonic()
        queue = [r["indexdef"] for r in secondary]
        queue += [f'ALTER TABLE {r["tablename"]} ADD CONSTRAINT "{r["conname"]}" {r["definition"]}' for r in keys]

        async def build(conn: asyncpg.Connection) -> None:
            while queue:
                await conn.execute(queue.pop(0))

        await asyncio.gather(*(build(c) for c in conns))
        indexed = time.monotonic()
        after = {tuple(r) for r in await conns[0].fetch(_INDEXES, tables)}
        if after != before:
            raise SystemExit(f"bench: the rebuilt indexes differ from the schema's: {before ^ after}")
        if "customer_search_terms" in derived:
            wrong = await conns[0].fetchval(
                """SELECT count(*) FROM (SELECT id, search_vector FROM customers WHERE org_id = $1
                                         ORDER BY random() LIMIT 200) c
                   WHERE ARRAY(SELECT term FROM customer_search_terms t
                               WHERE t.org_id = $1 AND t.customer_row_id = c.id ORDER BY term)
                      <> ARRAY(SELECT unnest(canopy_search_terms(c.search_vector)) ORDER BY 1)""",
                org_id,
            )
            if wrong:
                raise SystemExit(f"bench: {wrong} of 200 sampled customers have other search terms than the trigger's")
        # One table per session: the search terms (tens of millions of rows) take longest.
        vacuums = [f"VACUUM (ANALYZE) {table}" for table in reversed(tables)]

        async def vacuum(conn: asyncpg.Connection) -> None:
            while vacuums:
                await conn.execute(vacuums.pop(0))

        await asyncio.gather(*(vacuum(c) for c in conns))
        # Flush the load's dirty pages now: a checkpoint falling inside a timed run stalls every
        # request for its writes, and the measurement would be of the load, not of the service.
        await conns[0].execute("CHECKPOINT")
        count = await conns[0].fetchval("SELECT count(*) FROM customers WHERE org_id = $1", org_id)
        size = await conns[0].fetchval("SELECT pg_size_pretty(pg_total_relation_size('customers'))")
        sizes = {t: await conns[0].fetchval(f"SELECT pg_size_pretty(pg_total_relation_size('{t}'))") for t in derived}
        shared = await conns[0].fetch(
            """SELECT n, count(*) AS values FROM (
                   SELECT count(*) AS n FROM customers WHERE org_id = $1
                   GROUP BY canopy_address_key(address_line_one, address_zip, address_country_code)) g
               GROUP BY n ORDER BY n DESC LIMIT 5""",
            org_id,
        )
        # That count walked a duplicate index whole: the index statistics after the runs (table_stats)
        # must show what the service read, not the load.
        await conns[0].execute("SELECT pg_stat_reset()")
    finally:
        for conn in conns:
            await conn.close()
    done = time.monotonic()
    return {
        "rows": count,
        "insert_s": round(inserted - started, 1),
        "derived_tables_s": round(derived_at - inserted, 1),
        "index_s": round(indexed - derived_at, 1),
        "vacuum_analyze_s": round(done - indexed, 1),
        "total_s": round(done - started, 1),
        "table_size_with_indexes": size,
        "derived_table_sizes": sizes,
        "indexes_rebuilt": [r["indexname"] for r in secondary] + [r["conname"] for r in keys],
        # The most shared addresses: (customers at one address, how many addresses have that many).
        "most_shared_addresses": [[r["n"], r["values"]] for r in shared],
    }


async def stored_by_pass(dsn: str, org_id: int) -> dict[str, dict[str, int]]:
    """Customers (and account links) stored per POST pass, by the tag their customer_id starts with."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """SELECT split_part(c.customer_id, '-', 1) AS tag, count(*) AS customers, count(l.id) AS links
               FROM customers c LEFT JOIN customer_account_links l ON l.customer_row_id = c.id
               WHERE c.org_id = $1 AND c.customer_id LIKE 'b%-%' GROUP BY 1""",
            org_id,
        )
    finally:
        await conn.close()
    return {r["tag"]: {"customers": r["customers"], "links": r["links"]} for r in rows}


async def some_customer_ids(dsn: str, org_id: int, limit: int = 20000) -> list[str]:
    """Up to `limit` customer_ids of the organization, at random (for GET on a database the run filled)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT customer_id FROM customers WHERE org_id = $1 ORDER BY random() LIMIT $2", org_id, limit
        )
    finally:
        await conn.close()
    return [r["customer_id"] for r in rows]


async def table_stats(dsn: str) -> dict[str, Any]:
    """What the planner knew of the customers table, and what its indexes read (pg_stat_user_*)."""
    conn = await asyncpg.connect(dsn)
    try:
        table = await conn.fetchrow(
            """SELECT n_live_tup, n_mod_since_analyze, last_analyze::text, last_autoanalyze::text,
                      autoanalyze_count, (SELECT reltuples FROM pg_class WHERE relname = 'customers') AS reltuples
               FROM pg_stat_user_tables WHERE relname = 'customers'"""
        )
        indexes = await conn.fetch(
            """SELECT indexrelname AS name, idx_scan AS scans, idx_tup_read AS entries_read
               FROM pg_stat_user_indexes WHERE relname = 'customers' ORDER BY indexrelname"""
        )
    finally:
        await conn.close()
    return {"table": dict(table) if table else {}, "indexes": [dict(r) for r in indexes]}


async def explain_pages(dsn: str, org_id: int, deep_row: int) -> dict[str, str]:
    """EXPLAIN ANALYZE of the first and the deep page's SQL (the store's own statement text)."""
    from canopy_svc.store.customers import COLUMNS

    conn = await asyncpg.connect(dsn)
    try:
        plans = {}
        for name, sql, args in (
            ("first", f"SELECT {COLUMNS} FROM customers WHERE org_id = $1 ORDER BY id ASC LIMIT $2", (org_id, 13)),
            (
                "deep",
                f"SELECT {COLUMNS} FROM customers WHERE org_id = $1 AND id > $2 ORDER BY id ASC LIMIT $3",
                (org_id, deep_row, 13),
            ),
        ):
            rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", *args)
            plans[name] = "\n".join(r[0] for r in rows)
            # The generic plan, which a prepared statement (asyncpg prepares every query) may switch
            # to after five executions, run with the same values.
            types = ", ".join("bigint" for _ in args)
            await conn.execute(f"SET plan_cache_mode = force_generic_plan; PREPARE bench_page ({types}) AS {sql}")
            values = ", ".join(str(int(a)) for a in args)
            rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE bench_page ({values})")
            await conn.execute("DEALLOCATE bench_page; RESET plan_cache_mode")
            plans[f"{name}_generic"] = "\n".join(r[0] for r in rows)
        return plans
    finally:
        await conn.close()


def run_pgbench(db: Database, script: str, defines: dict[str, Any], seconds: int) -> dict[str, Any]:
    args = [
        str(pg_bin("pgbench")),
        "-h",
        db.socket_dir,
        "-U",
        "postgres",
        "-n",
        "-M",
        "prepared",
        "-c",
        str(CONNECTIONS),
        "-j",
        str(THREADS),
        "-T",
        str(seconds),
        "-f",
        str(BENCH / script),
    ]
    for name, value in defines.items():
        args += ["-D", f"{name}={value}"]
    args.append(db.name)
    with Sampler(None, db.postmaster_pid) as sampler:
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sampler.add("pgbench", process.pid)
        out, err = process.communicate(timeout=seconds + 120)
    if process.returncode != 0:
        raise SystemExit(f"bench: pgbench failed ({process.returncode}):\n{out}\n{err}")

    def number(pattern: str) -> float:
        found = re.search(pattern, out)
        if not found:
            raise SystemExit(f"bench: cannot read {pattern!r} from pgbench:\n{out}")
        return float(found.group(1))

    return {
        "script": f"bench/{script}",
        "command": " ".join(["pgbench", *args[1:]]),
        "tps": round(number(r"tps = ([\d.]+) \(without initial connection time\)"), 1),
        "transactions": int(number(r"number of transactions actually processed: (\d+)")),
        "failed": int(number(r"number of failed transactions: (\d+)")),
        "latency_avg_ms": number(r"latency average = ([\d.]+) ms"),
        "cpu_pct": sampler.cpu_report(),
        "postgres_cpu_ms_per_tx": round(
            1000
            * sampler.cpu_seconds("postgres")
            / max(int(number(r"number of transactions actually processed: (\d+)")), 1),
            4,
        ),
    }


# --------------------------------------------------------------------------------------------------
# The server



# --------------------------------------------------------------------------------------------------
# The server


class Server:
    def __init__(self, db: Database, key: str, workers: int, env: dict[str, str] | None = None) -> None:
        self.db = db
        self.key = key
        self.workers = workers
        self.env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = RESULTS / f"server-{key}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.access_log: dict[str, Any] = {}
        self.command = [*cli(), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                        "--workers", str(workers), "--data-dir", str(db.data_dir)]  # fmt: skip

    def start(self, timeout: float = 60.0) -> Server:
        log_file = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command,
            env=base_env(self.db.dsn, self.db.data_dir) | self.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"bench: server exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            ready = False
            with contextlib.suppress(httpx.HTTPError):
                ready = httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
            if ready and len(self.worker_pids()) >= self.workers:
                # Every worker answers /readyz once the others do (they start together); give the
                # last one a moment to finish its lifespan (migration check, pool).
                time.sleep(1.0)
                return self
            time.sleep(0.1)
        raise SystemExit(f"bench: server not ready in {timeout}s:\n{self.log_path.read_text()}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the main one with 1 worker, else the spawned workers."""
        if self.workers == 1:
            return [self.pid]
        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return []
        return [c.pid for c in children if _role(c, self.pid) == "worker"]

    def stop(self) -> None:
        """SIGTERM to the server (uvicorn drains and stops its workers), SIGKILL to the group if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            log(f"server {self.pid} did not stop in 30 s; killing its process group")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        # Nothing of ours may outlive the bench: the workers are in the server's process group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.access_log = condense_log(self.log_path)


def condense_log(path: Path) -> dict[str, Any]:
    """The server's log without its access lines (one per request: hundreds of MB in a run), which are
    counted by status instead; every other line is kept."""
    statuses: Counter[str] = Counter()
    kept = path.with_suffix(".kept")
    with path.open("rb") as source, kept.open("wb") as out:
        for line in source:
            if b'"logger":"canopy_svc.access"' in line:
                found = re.search(rb'"status":(\d+)', line)
                statuses[found.group(1).decode() if found else "?"] += 1
            else:
                out.write(line)
    kept.replace(path)
    return {"lines": sum(statuses.values()), "by_status": dict(sorted(statuses.items()))}


def get_token(server: Server) -> str:
    client = server.db.client
    answer = httpx.post(
        f"{server.url}/auth/token",
        timeout=30,
        json={"client_id": client["client_id"], "client_secret": client["client_secret"]},
    )
    answer.raise_for_status()
    token: str = answer.json()["access_token"]
    return token


def make_account(server: Server, token: str) -> None:
    """The product and the account every linked POST /customers is assigned to."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
        answer = http.post(
            "/products",
            json={
                "product_id": PRODUCT_ID,
                "product_overview": {"product_name": "Bench revolving credit", "product_type": "REVOLVING"},
            },
        )
        if answer.status_code not in (200, 409):
            raise SystemExit(f"bench: POST /products answered {answer.status_code}: {answer.text}")
        answer = http.post(
            "/accounts",
            json={"account_id": ACCOUNT_ID, "product_id": PRODUCT_ID, "summary": {"credit_limit_cents": 500000}},
        )
        if answer.status_code not in (200, 409):
            raise SystemExit(f"bench: POST /accounts answered {answer.status_code}: {answer.text}")


@dataclass(frozen=True)
class DeepSearch:
    """A search whose page ends at the deep row: `limit` results, the customers `expected`, in id order."""

    word: str
    limit: int
    expected: tuple[int, ...]


def deep_search(preload: str, deep_row: int) -> DeepSearch | None:
    """How the loaded data lets one search reach the deep row (see find_deep_cursor)."""
    if preload == "unique" and deep_row % 10 == 0:
        # Customer i has the word i in its name_last: '99000' finds 99000, then 990000, 990001...
        return DeepSearch(str(deep_row // 10), 2, (deep_row // 10, deep_row))
    if preload == "repeated" and deep_row % 2000 == 0:
        # Businesses (i % 20 = 0) carry their number: '9900' finds 9900, 99000, 990000, 990020...
        return DeepSearch(str(deep_row // 100), 3, (deep_row // 100, deep_row // 10, deep_row))
    return None


def find_deep_cursor(server: Server, token: str, rows: int, preload: str) -> dict[str, Any]:
    """A `starting_after` cursor ~99% of the way into the loaded customers, minted by the server.

    Cursors are opaque and signed, so the bench does not forge one. Two honest ways:
    - "search" (default, 2 requests): a prefix search whose matches, in id order, are a few early
      customers and then the deep row and those after it (deep_search); with the page ending at the
      deep row, its `paging.starting_after` is the cursor after it. Search and plain listings share
      one keyset (the row id), and the page fetched with that cursor is checked to start at the next
      customer.
    - "walk" (BENCH_DEEP_CURSOR=walk, or when the check fails): follow `starting_after` with
      `limit=1000` until the deep row is behind (rows / 1000 requests).
    """
    deep_row = rows - rows // 100  # 990,000 of 1,000,000
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:

        def check(cursor: str) -> bool:
            page = http.get("/customers", params={"limit": 12, "starting_after": cursor}).json()
            return bool(page.get("results")) and page["results"][0]["customer_id"] == str(deep_row + 1)

        started = time.monotonic()
        search = deep_search(preload, deep_row)
        if DEEP_CURSOR_MODE == "search" and search is not None:
            answer = http.get("/customers", params={"search_parameters": search.word, "limit": search.limit})
            found = answer.json() if answer.status_code == 200 else {}
            ids = [c["customer_id"] for c in found.get("results", [])]
            cursor = (found.get("paging") or {}).get("starting_after")
            if ids == [str(i) for i in search.expected] and cursor and check(cursor):
                return {"cursor": cursor, "after_customer": deep_row, "method": f"search {search.word!r}",
                        "requests": 2, "seconds": round(time.monotonic() - started, 2)}  # fmt: skip
            log("the search shortcut to a deep cursor did not check out; walking pages of 1000 instead")
        cursor, behind, requests = None, 0, 0
        while behind < deep_row:
            params: dict[str, Any] = {"limit": min(1000, deep_row - behind)}
            if cursor:
                params["starting_after"] = cursor
            page = http.get("/customers", params=params).json()
            requests += 1
            behind += len(page["results"])
            cursor = page["paging"]["starting_after"]
            if not cursor:
                raise SystemExit(f"bench: the listing ended after {behind} customers")
        if cursor is None or not check(cursor):
            raise SystemExit("bench: the walked cursor does not lead where expected")
        return {"cursor": cursor, "after_customer": deep_row, "method": "walk", "requests": requests + 1,
                "seconds": round(time.monotonic() - started, 2)}  # fmt: skip


def search_hits(server: Server, token: str, word: str) -> dict[str, Any]:
    """How many customers a search word matches (counted through the API, pages of 1000, up to 5000:
    enough to tell a shared name from a rare one)."""
    headers = {"Authorization": f"Bearer {token}"}
    count, cursor = 0, None
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as http:
        while count < 5000:
            params: dict[str, Any] = {"search_parameters": word, "limit": 1000}
            if cursor:
                params["starting_after"] = cursor
            answer = http.get("/customers", params=params)
            if answer.status_code != 200:
                return {"word": word, "error": f"{answer.status_code} {answer.text[:200]}"}
            page = answer.json()
            count += len(page["results"])
            cursor = page["paging"]["starting_after"]  # None on the last page
            if not cursor:
                return {"word": word, "matches": count}
    return {"word": word, "matches": f">= {count}"}


# --------------------------------------------------------------------------------------------------
# wrk


def little_mean_ms(connections: int, requests_per_s: float) -> float | None:
    """Little's law for a closed loop: with every connection always waiting on a request, the mean
    latency at this throughput is connections / throughput, whatever the server. The queueing floor:
    at these connections, the mean falls only as the throughput rises."""
    return round(1000 * connections / requests_per_s, 2) if requests_per_s else None


def run_wrk(
    server: Server,
    token: str,
    script: str,
    path: str,
    args: list[str],
    seconds: int,
    sample: bool = True,
    connections: int = CONNECTIONS,
    rate: float | None = None,
    cpus: list[int] | None = None,
) -> dict[str, Any]:
    """One wrk run. `rate`: the requests per second offered, paced (bench/lib.lua delay()), instead of
    a closed loop; `cpus`: the CPUs wrk may run on (profiling pins it away from the worker)."""
    threads = min(THREADS, connections)  # wrk wants at least one connection per thread
    url = f"{server.url}{path}"
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency",
               "-s", str(BENCH / script), url]  # fmt: skip
    if args:
        command += ["--", *args]
    env = {**os.environ, "BENCH_TOKEN": token, "BENCH_SLICE_SECONDS": f"{seconds / SLICES:.3f}"}
    if rate is not None:
        env["BENCH_THREAD_RATE"] = f"{rate / threads:.3f}"
    with Sampler(server.pid if sample else None, server.db.postmaster_pid) as sampler:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        if cpus:
            with contextlib.suppress(psutil.Error):
                psutil.Process(process.pid).cpu_affinity(cpus)
        sampler.add("wrk", process.pid)
        out, err = process.communicate(timeout=seconds + 60)
    line = next((x for x in out.splitlines() if x.startswith("BENCH_JSON ")), None)
    if process.returncode != 0 or line is None:
        raise SystemExit(f"bench: wrk failed ({process.returncode}):\n{out}\n{err}")
    result: dict[str, Any] = json.loads(line[len("BENCH_JSON ") :])
    lat = result.pop("latency_us")
    socket_errors = sum(result["socket_errors"].values())
    slice_seconds = result.get("slice_seconds") or 0
    # The slices of the run proper: a few answers can land just after its end, in a slice of their own.
    slices = [round(n / slice_seconds, 1) for n in result.get("answers_by_slice", [])[:SLICES]] if slice_seconds else []
    shown = " ".join(f"BENCH_{k}={env[f'BENCH_{k}']}" for k in ("SLICE_SECONDS", "THREAD_RATE") if f"BENCH_{k}" in env)
    return {
        "command": f"{shown} " + " ".join(["wrk", *command[1:]]).replace(url, f"http://127.0.0.1:PORT{path}"),
        "requests": result["requests"],
        "duration_s": result["duration_s"],
        "requests_per_s": result["requests_per_s"],
        "requests_per_s_by_slice": slices,
        "slice_seconds": slice_seconds or None,
        "offered_per_s": round(rate, 1) if rate is not None else None,
        "connections": connections,
        "little_mean_ms": little_mean_ms(connections, result["requests_per_s"]) if rate is None else None,
        "latency_ms": {k: round(v / 1000, 2) for k, v in lat.items()},
        "non2xx": result["non2xx"],
        "non2xx_by_status": result["non2xx_by_status"],
        "socket_errors": result["socket_errors"],
        "errors": result["non2xx"] + socket_errors,
        "first_error": result["first_error"],
        "cpu_pct": sampler.cpu_report(),
        # CPU per request: steadier than requests/s on a shared box (it does not care who else ran).
        "server_cpu_ms_per_request": round(1000 * sampler.cpu_seconds("server") / max(result["requests"], 1), 3),
        "postgres_cpu_ms_per_request": round(1000 * sampler.cpu_seconds("postgres") / max(result["requests"], 1), 3),
        "server_cpu_detail": sampler.server_detail(result["requests"]) if sample else None,
        "server_processes": sampler.rss_report(),
    }


def merge_runs(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Several wrk runs of one scenario as one: totals for counts, the median of each round's latency
    percentiles (wrk gives no histogram to merge), request-weighted CPU per request, peak RSS."""
    requests = sum(p["requests"] for p in parts)
    duration = sum(p["duration_s"] for p in parts)

    def median(values: list[float]) -> float:
        ordered = sorted(values)
        middle = len(ordered) // 2
        return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2

    def weighted(key: str) -> float:
        return round(sum(p[key] * p["requests"] for p in parts) / max(requests, 1), 3)

    latency = {k: round(median([p["latency_ms"][k] for p in parts]), 2) for k in parts[0]["latency_ms"]}
    latency["max"] = max(p["latency_ms"]["max"] for p in parts)
    peaks: dict[int, dict[str, Any]] = {}
    for part in parts:
        for proc in part["server_processes"]:
            if proc["pid"] not in peaks or proc["peak_rss_mb"] > peaks[proc["pid"]]["peak_rss_mb"]:
                peaks[proc["pid"]] = proc
    cpu = {
        k: round(sum(p["cpu_pct"].get(k, 0) * p["duration_s"] for p in parts) / max(duration, 1e-9), 1)
        for k in parts[0]["cpu_pct"]
    }
    detail = None
    if parts[0].get("server_cpu_detail"):
        detail = {
            k: round(sum(p["server_cpu_detail"][k] * p["requests"] for p in parts) / max(requests, 1), 3)
            for k in parts[0]["server_cpu_detail"]
        }
    statuses: dict[str, int] = {}
    for part in parts:
        for status, count in part["non2xx_by_status"].items():
            statuses[status] = statuses.get(status, 0) + count
    requests_per_s = round(requests / max(duration, 1e-9), 1)
    return {
        "command": parts[0]["command"].replace(f"-d {parts[0]['duration_s']:.0f}s", "-d <round>s"),
        "rounds": len(parts),
        "requests": requests,
        "duration_s": round(duration, 3),
        "requests_per_s": requests_per_s,
        "connections": parts[0]["connections"],
        "little_mean_ms": little_mean_ms(parts[0]["connections"], requests_per_s),
        "latency_ms": latency,
        "latency_ms_by_round": [p["latency_ms"] for p in parts],
        "requests_per_s_by_round": [p["requests_per_s"] for p in parts],
        "non2xx": sum(p["non2xx"] for p in parts),
        "non2xx_by_status": statuses,
        "socket_errors": {k: sum(p["socket_errors"][k] for p in parts) for k in parts[0]["socket_errors"]},
        "errors": sum(p["errors"] for p in parts),
        "first_error": next((p["first_error"] for p in parts if p["first_error"]), ""),
        "cpu_pct": cpu,
        "server_cpu_ms_per_request": weighted("server_cpu_ms_per_request"),
        "postgres_cpu_ms_per_request": weighted("postgres_cpu_ms_per_request"),
        "server_cpu_detail": detail,
        "server_processes": sorted(peaks.values(), key=lambda proc: proc["pid"]),
    }




# --------------------------------------------------------------------------------------------------
# Shapes and scenarios


@dataclass(frozen=True)
class Shape:
    key: str  # "unique", "repeated", "fresh"
    title: str
    database: str
    preload: str | None  # "unique", "repeated" or None (fresh: empty, never analyzed by hand)
    bodies: str  # POST bodies: "unique" or "repeated" (bench/post_customers.lua)
    post_seconds: int
    post_warmup: bool  # a fresh database's first creates are the measurement, not a warm-up


def shapes() -> list[Shape]:
    known = {
        "unique": Shape("unique", f"{ROWS:,} unique customers, analyzed", "postgres", "unique", "unique",
                        SECONDS, True),
        "repeated": Shape("repeated", f"{ROWS:,} customers with realistic repetition, analyzed", "bench_repeated",
                          "repeated", "repeated", SECONDS, True),
        "fresh": Shape("fresh", "a fresh, empty database (no preload, no ANALYZE), filled by its creates",
                       "bench_fresh", None, "repeated", FRESH_SECONDS, False),
    }  # fmt: skip
    unknown = set(SHAPES) - set(known)
    if unknown:
        raise SystemExit(f"bench: unknown BENCH_SHAPES {sorted(unknown)}; known: {', '.join(known)}")
    return [known[key] for key in SHAPES]


@dataclass
class Scenario:
    name: str
    label: str
    script: str
    path: str
    args: list[str]
    ceiling: str | None = None  # "insert" or "lookup"


class PassTags:
    """A fresh (tag, area code, base customer number) for every POST pass, warm-ups and profiles included."""

    def __init__(self) -> None:
        self.count = 0

    def next(self) -> tuple[str, str, str]:
        self.count += 1
        # Repeated bodies number their customers from base (bench/post_customers.lua): past the loaded ones.
        return f"b{self.count}", AREA_CODES[(self.count - 1) % len(AREA_CODES)], str((self.count + 1) * 10_000_000)


def post_scenario(tags: PassTags, shape: Shape, *, linked: bool = False) -> Scenario:
    tag, area, base = tags.next()
    label = "POST /customers" + (" + 1 account link" if linked else "") + (" (repeated)" if shape.bodies == "repeated"
                                                                             else "")
    return Scenario("post_customers_linked" if linked else "post_customers", label, "post_customers.lua",
                    "/customers", [tag, area, ACCOUNT_ID if linked else "-", shape.bodies, base], ceiling="insert")


def fresh_args(tags: PassTags, scenario: Scenario) -> list[str]:
    """The scenario's wrk arguments, with a fresh (tag, area code, base) if it is a POST pass."""
    if scenario.script != "post_customers.lua":
        return scenario.args
    tag, area, base = tags.next()
    return [tag, area, scenario.args[2], scenario.args[3], base]


def get_scenario(source: str) -> Scenario:
    return Scenario("get_customer", "GET /customers/{id}", "get_customer.lua", "/customers/1", [source],
                    ceiling="lookup")


def page_scenarios(deep_cursor: str) -> list[Scenario]:
    return [
        Scenario("list_first_page", "GET /customers?limit=12", "get_path.lua", "/customers?limit=12", []),
        Scenario("list_deep_page", f"GET /customers?limit=12&starting_after=<{ROWS - ROWS // 100}>", "get_path.lua",
                 f"/customers?limit=12&starting_after={deep_cursor}", []),
    ]  # fmt: skip


def search_words(shape: Shape) -> tuple[str, str]:
    """(a last name thousands share, one that a single customer has), as the loaded data makes them."""
    deep_row = ROWS - ROWS // 100
    if shape.preload == "unique":
        return "lovelace", str(deep_row)  # 'lovelace' is 1 in 10 names; the word i is customer i's alone
    return SURNAMES[0].lower(), "zq" + code6(rare_repeated_customer(deep_row))


def search_scenarios(shape: Shape, limit: int = 12) -> list[Scenario]:
    """The rare name first: the pair's ratio is shared over rare. At limit=12 the shared name answers a
    full page and the rare one a single customer, so the pair also weighs answering eleven more
    customers; at limit=1 both answer one, and the pair weighs only what the number of matches costs
    (the target: bounded work per page)."""
    shared, rare = search_words(shape)
    suffix = "" if limit == 12 else f"_limit{limit}"
    return [
        Scenario(f"search_rare{suffix}", f"GET /customers?search_parameters={rare}&limit={limit}", "get_path.lua",
                 f"/customers?search_parameters={rare}&limit={limit}", []),
        Scenario(f"search_shared{suffix}", f"GET /customers?search_parameters={shared}&limit={limit}",
                 "get_path.lua", f"/customers?search_parameters={shared}&limit={limit}", []),
    ]  # fmt: skip


def labelled(result: dict[str, Any], shape: Shape, config: str, workers: int, scenario: Scenario,
             kind: str = "closed", diagnostic: bool = False) -> dict[str, Any]:
    """`kind`: "closed" (a closed loop at CONNECTIONS, what the throughput targets read), "fixed" (paced at
    a fixed offered load: the latency targets) or "diagnostic"."""
    result.update({"shape": shape.key, "config": config, "workers": workers, "scenario": scenario.name,
                   "label": scenario.label, "ceiling": scenario.ceiling if kind == "closed" else None,
                   "kind": kind, "diagnostic": diagnostic})  # fmt: skip
    if scenario.script == "post_customers.lua":
        result["tag"] = scenario.args[0]  # every customer of this pass has a customer_id "<tag>-..."
    offered = f" at {result['offered_per_s']:.0f}/s offered" if result.get("offered_per_s") else ""
    slices = result.get("requests_per_s_by_slice") or []
    log(
        f"  {shape.key} {config} {scenario.label}{offered}: {result['requests_per_s']:.0f} req/s"
        + (f" (slices {', '.join(f'{x:.0f}' for x in slices)})" if len(slices) > 1 else "")
        + f", p50 {result['latency_ms']['p50']} ms, p99 {result['latency_ms']['p99']} ms, errors {result['errors']}"
        + (f" (first: {result['first_error'][:200]})" if result["errors"] else "")
    )
    return result


def run_pair(server: Server, token: str, shape: Shape, config: str, workers: int, pair: list[Scenario]
             ) -> list[dict[str, Any]]:
    """Two scenarios whose ratio is the point (first and deep page; rare and shared search) in paired
    rounds (a, b, a, b, ...), each SECONDS / PAGE_ROUNDS long: on a shared machine the load of others
    drifts. A round's two runs are seconds apart, so under the same drift; the headline is the median
    of the rounds' ratios (b over a), which one disturbed round cannot move."""
    seconds = max(1, round(SECONDS / PAGE_ROUNDS))
    parts: dict[str, list[dict[str, Any]]] = {sc.name: [] for sc in pair}
    if WARMUP_SECONDS:
        # Both, unmeasured: each has its own statements to prepare and plan and its own pages to bring
        # into the caches; warming only the first would bill the second for that in round 1.
        for scenario in pair:
            run_wrk(server, token, scenario.script, scenario.path, scenario.args, WARMUP_SECONDS, sample=False)
    log(f"{shape.key} {config} {pair[0].name} / {pair[1].name}: {PAGE_ROUNDS} paired rounds of {seconds} s")
    for _ in range(PAGE_ROUNDS):
        for scenario in pair:
            parts[scenario.name].append(run_wrk(server, token, scenario.script, scenario.path, scenario.args, seconds))
    first, second = (parts[sc.name] for sc in pair)
    merged = []
    for scenario in pair:
        result = merge_runs(parts[scenario.name])
        result["round_seconds"] = seconds
        merged.append(labelled(result, shape, config, workers, scenario))
    for stat in ("p50", "mean"):
        # A round where either side answered nothing (every request past wrk's 2 s timeout) has no ratio.
        by_round = [round(b["latency_ms"][stat] / a["latency_ms"][stat], 3)
                    if a["requests"] and b["requests"] and a["latency_ms"][stat] and b["latency_ms"][stat] else None
                    for a, b in zip(first, second, strict=True)]  # fmt: skip
        valid = [x for x in by_round if x is not None]
        merged[1][f"{stat}_ratio_to_{pair[0].name}_by_round"] = by_round
        merged[1][f"{stat}_ratio_to_{pair[0].name}"] = round(statistics.median(valid), 3) if valid else None
    merged[1]["throughput_ratio"] = round(merged[0]["requests_per_s"] / max(merged[1]["requests_per_s"], 1e-9), 3)
    log(f"  {shape.key} {config} {pair[1].name}/{pair[0].name} p50 by round: "
        f"{merged[1][f'p50_ratio_to_{pair[0].name}_by_round']}, median {merged[1][f'p50_ratio_to_{pair[0].name}']}")
    return merged


# --------------------------------------------------------------------------------------------------
# Profile and idle


@contextlib.contextmanager
def pinned(server: Server) -> Iterator[list[int] | None]:
    """With BENCH_PROFILE_PIN: the worker alone on CPU 0, PostgreSQL (its postmaster and every backend,
    present and future) on the others, and wrk too (the CPUs given back). The worker is then never
    preempted by the database it waits on, so the profile is of its own CPU. Undone after."""
    if not PROFILE_PIN:
        yield None
        return
    cpus = list(range(psutil.cpu_count() or 1))
    others = cpus[1:]
    worker = psutil.Process(server.worker_pids()[0])
    postgres = psutil.Process(server.db.postmaster_pid)
    tree = [postgres, *postgres.children(recursive=True)]
    before = worker.cpu_affinity()
    try:
        worker.cpu_affinity([0])
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                proc.cpu_affinity(others)
        yield others
    finally:
        with contextlib.suppress(psutil.Error):
            worker.cpu_affinity(before)
        for proc in [postgres, *postgres.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                proc.cpu_affinity(cpus)


def profile(server: Server, token: str, tags: PassTags, scenario: Scenario, spy: str) -> dict[str, Any]:
    """py-spy on the (single) worker during extra wrk passes of this scenario, one per mode in
    BENCH_PROFILE_MODES ("python,native"): raw collapsed stacks in
    bench-results/profile-<scenario>-<mode>.txt, summarized (main thread) by own and cumulative time.

    - python: `--nonblocking`, Python frames only; py-spy reads the worker's memory without pausing
      it (time in C code, system calls included, is counted to the Python function that called it).
    - native: `--native`, C frames too, so a system call shows with its Python caller. py-spy must
      pause the worker for every sample then (throughput drops by a third).
    With BENCH_PROFILE_PIN (pinned()), the shares are of the worker's own CPU; without, a sample that
    lands while the worker is descheduled (PostgreSQL woken by its write took the core) counts for the
    call it sits in, a `write()` mostly. `Runner.run` own time is the event loop, waiting in epoll
    included (py-spy cannot tell uvloop's wait from work). Neither pass is a measured one."""
    pid = server.worker_pids()[0]
    results: dict[str, Any] = {}
    with pinned(server) as cpus:
        for mode in PROFILE_MODES:
            out = RESULTS / f"profile-{scenario.name}-{mode}.txt"
            flag = "--native" if mode == "native" else "--nonblocking"
            command = [spy, "record", "--pid", str(pid), "--duration", str(PROFILE_SECONDS), "--rate", "100",
                       "--format", "raw", "--threads", "--output", str(out), flag]  # fmt: skip
            out.unlink(missing_ok=True)
            log(f"profiling {scenario.label} with py-spy ({mode}{', pinned' if cpus else ''}) for {PROFILE_SECONDS} s")
            spy_process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if cpus:
                with contextlib.suppress(psutil.Error):
                    psutil.Process(spy_process.pid).cpu_affinity(cpus)
            try:
                load = run_wrk(server, token, scenario.script, scenario.path, fresh_args(tags, scenario),
                               PROFILE_SECONDS + 2, sample=True, cpus=cpus)  # fmt: skip
                output, _ = spy_process.communicate(timeout=60)
            finally:
                if spy_process.poll() is None:
                    spy_process.kill()
                    spy_process.wait()
            if spy_process.returncode != 0 or not out.exists():
                message = output.decode(errors="replace")[-500:].strip()
                log(f"py-spy ({mode}) failed ({spy_process.returncode}): {message}")
                results[mode] = {"error": message}
                continue
            summary = summarize_raw(out.read_text(), seconds=PROFILE_SECONDS, rate=100)
            summary["mode"] = mode
            summary["pinned"] = bool(cpus)
            summary["file"] = str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else str(out)
            summary["command"] = " ".join(["py-spy", *command[1:]]).replace(str(ROOT) + "/", "")
            summary["load_during_profile"] = {k: load[k] for k in ("requests_per_s", "latency_ms", "errors",
                                                                   "server_cpu_ms_per_request", "cpu_pct")}
            results[mode] = summary
    return results


def _cpu_ticks(procs: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            out[proc.pid] = times.user + times.system
    return out


def _wakeups(procs: list[psutil.Process]) -> int:
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.num_ctx_switches().voluntary
    return total


async def _backends(dsn: str, database: str) -> list[int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                                database)
    finally:
        await conn.close()
    return [r["pid"] for r in rows]


def measure_idle(server: Server, seconds: int) -> dict[str, Any]:
    """What a started server costs while nothing happens: CPU ticks (/proc/<pid>/stat, user + system,
    threads included) of its processes and of the PostgreSQL backends connected to its database, over
    `seconds`, and the server's voluntary context switches (its wake-ups)."""
    time.sleep(3.0)  # the end of startup (the first rounds of its background tasks) is not idleness
    root = psutil.Process(server.pid)
    mine = [root, *root.children(recursive=True)]
    backends = []
    for pid in asyncio.run(_backends(server.db.dsn, server.db.name)):
        with contextlib.suppress(psutil.Error):
            backends.append(psutil.Process(pid))
    postgres = psutil.Process(server.db.postmaster_pid)
    everything = [postgres, *postgres.children(recursive=True)]
    groups = (mine, backends, everything)
    before, woken = [_cpu_ticks(g) for g in groups], _wakeups(mine)
    started = time.monotonic()
    time.sleep(seconds)  # the idle window itself
    elapsed = time.monotonic() - started
    after, woken = [_cpu_ticks(g) for g in groups], _wakeups(mine) - woken

    def pct(i: int) -> float:
        used = sum(after[i][pid] - before[i].get(pid, after[i][pid]) for pid in after[i])
        return round(100.0 * used / elapsed, 3)

    return {
        "seconds": round(elapsed, 1),
        "server_cpu_pct": pct(0),
        "server_backends_cpu_pct": pct(1),
        "server_backends": len(backends),
        "postgres_all_cpu_pct": pct(2),
        "server_wakeups_per_s": round(woken / elapsed, 1),
        "clock_ticks_per_s": os.sysconf("SC_CLK_TCK"),
        "method": "psutil cpu_times of /proc/<pid>/stat (user + system ticks) before and after the window",
    }


# --------------------------------------------------------------------------------------------------
# One shape


@dataclass
class ServerConfig:
    key: str  # "w1", "w2", ...
    workers: int
    note: str = ""
    env: dict[str, str] = field(default_factory=dict)
    full: bool = True  # the 1-worker server of its shape: pairs, fixed load, profile (unique), idle (fresh)


def closed_run(server: Server, token: str, shape: Shape, config: ServerConfig, tags: PassTags, scenario: Scenario,
               seconds: int, warmup: bool = True) -> dict[str, Any]:
    """A closed-loop run at CONNECTIONS, after an unmeasured warm-up pass of its own (POST: another tag)."""
    if warmup and WARMUP_SECONDS:
        run_wrk(server, token, scenario.script, scenario.path, fresh_args(tags, scenario), WARMUP_SECONDS,
                sample=False)  # fmt: skip
    log(f"{shape.key} {config.key} {scenario.label}: {seconds} s")
    result = run_wrk(server, token, scenario.script, scenario.path, scenario.args, seconds)
    return labelled(result, shape, config.key, config.workers, scenario)


def bench_shape(shape: Shape, db: Database, tags: PassTags, spy: str | None) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    servers: list[dict[str, Any]] = []
    profiles: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    configs = [ServerConfig("w1", 1)]
    if shape.key == "unique":
        configs += [ServerConfig(f"w{n}", n, full=False) for n in WORKER_COUNTS if n > 1]
        if DIAGNOSE_LIMITER and any(n > 1 for n in WORKER_COUNTS):
            n = max(WORKER_COUNTS)
            configs.append(ServerConfig(f"w{n}-memlimit", n, env={"CANOPY_SVC_RATE_LIMIT_STORE": "memory"},
                                        full=False, note="diagnostic, not the contract: each worker limits on its own"))
    deep: dict[str, Any] | None = None
    for config in configs:
        server = Server(db, f"{shape.key}-{config.key}", config.workers, config.env)
        after: list[dict[str, Any]] = []
        try:
            log(f"{shape.key}: starting canopy-svc serve --workers {config.workers} on port {server.port}")
            server.start()
            if config.full and shape.key == "fresh" and IDLE_SECONDS > 0:
                log(f"{shape.key} {config.key}: idle for {IDLE_SECONDS} s")
                extra["idle"] = measure_idle(server, IDLE_SECONDS)
                log(f"  idle: server {extra['idle']['server_cpu_pct']}% of a core, its backends "
                    f"{extra['idle']['server_backends_cpu_pct']}%, {extra['idle']['server_wakeups_per_s']} wake-ups/s")
            token = get_token(server)
            if config.key == "w1" and shape.key == "unique":
                make_account(server, token)
            if shape.preload and deep is None:
                deep = find_deep_cursor(server, token, ROWS, shape.preload)
                log(f"{shape.key}: deep cursor after customer {deep['after_customer']} by {deep['method']} "
                    f"({deep['requests']} requests, {deep['seconds']} s)")
                extra["search_hits"] = [search_hits(server, token, word) for word in search_words(shape)]
            measured: dict[str, dict[str, Any]] = {}
            closed = functools.partial(closed_run, server, token, shape, config, tags)
            post = post_scenario(tags, shape)
            measured["post"] = closed(post, shape.post_seconds, warmup=shape.post_warmup)
            runs.append(measured["post"])
            if shape.preload:
                get = get_scenario(str(ROWS))
            else:
                ids = RESULTS / f"ids-{shape.key}.txt"
                customer_ids = asyncio.run(some_customer_ids(db.dsn, db.org_id))
                ids.write_text("".join(f"{customer_id}\n" for customer_id in customer_ids))
                get = get_scenario(f"@{ids}")
                extra["get_ids"] = len(customer_ids)
            measured["get"] = closed(get, SECONDS)
            runs.append(measured["get"])
            if shape.preload and deep is not None:
                runs += run_pair(server, token, shape, config.key, config.workers, page_scenarios(deep["cursor"]))
                if config.full:
                    runs += run_pair(server, token, shape, config.key, config.workers, search_scenarios(shape))
                    runs += run_pair(server, token, shape, config.key, config.workers, search_scenarios(shape, 1))
            if shape.key == "unique":
                runs.append(closed(post_scenario(tags, shape, linked=True), SECONDS))
            if config.full and FIXED_LOAD > 0:
                # Latency at a fixed offered load: a fraction of the rate this server just reached.
                for name, scenario in (("get", get), ("post", post)):
                    rate = FIXED_LOAD * measured[name]["requests_per_s"]
                    paced = replace(scenario, args=fresh_args(tags, scenario))
                    log(f"{shape.key} {config.key} {scenario.label} at {rate:.0f}/s offered: {SECONDS} s")
                    result = run_wrk(server, token, paced.script, paced.path, paced.args, SECONDS, rate=rate)
                    runs.append(labelled(result, shape, config.key, config.workers, paced, kind="fixed"))
            if config.full and LATENCY_CONNECTIONS > 0:
                for scenario in (post, get):
                    diag = replace(scenario, args=fresh_args(tags, scenario))
                    result = run_wrk(server, token, diag.script, diag.path, diag.args, SECONDS,
                                     connections=LATENCY_CONNECTIONS)  # fmt: skip
                    runs.append(labelled(result, shape, f"{config.key} @{LATENCY_CONNECTIONS} conns", config.workers,
                                         diag, kind="diagnostic", diagnostic=True))  # fmt: skip
            after = rss_now(server.pid)
            if spy and config.full and shape.key == "unique":
                for scenario in (post_scenario(tags, shape), get):
                    profiles[scenario.name] = profile(server, token, tags, scenario, spy)
        finally:
            server.stop()
        command = " ".join(["canopy-svc", *server.command[len(cli()):]]).replace(str(db.data_dir), "<tmp>/svc")
        servers.append({"shape": shape.key, "config": config.key, "workers": config.workers, "note": config.note,
                        "env": config.env, "rss_after_runs": after, "command": command,
                        "access_log": server.access_log})  # fmt: skip
    stored = asyncio.run(stored_by_pass(db.dsn, db.org_id))
    for r in runs:
        if "tag" in r:
            # wrk counts the answers it read; requests in flight when it stopped may be stored too.
            found = stored.get(r["tag"], {"customers": 0, "links": 0})
            r["stored"] = found
            if found["customers"] < r["requests"] - r["errors"]:
                r["errors"] += 1
                r["first_error"] = r["first_error"] or f"only {found['customers']} customers stored for {r['requests']}"
            if r["scenario"] == "post_customers_linked" and found["links"] != found["customers"]:
                r["errors"] += 1
                r["first_error"] = r["first_error"] or f"{found['links']} links for {found['customers']} customers"
    extra["table_after"] = asyncio.run(table_stats(db.dsn))
    return {"runs": runs, "servers": servers, "profiles": profiles, "deep": deep, **extra}


# --------------------------------------------------------------------------------------------------
# Webhooks (issue 12): delivery throughput to a local receiver, commit-to-delivery latency at idle and
# under the POST load


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50, p99 and max in ms of seconds given (None when there are too few to say)."""
    if len(values) < 2:
        return {"p50": None, "p99": None, "max": None, "n": len(values)}  # type: ignore[dict-item]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(1000 * statistics.median(values), 2), "p99": round(1000 * cuts[98], 2),
            "max": round(1000 * max(values), 2), "n": len(values)}  # fmt: skip


class WebhookReceiver:
    """bench/webhook_receiver.py in its own process: 200 at once, arrivals kept until stop()."""

    def __init__(self, tmp: Path) -> None:
        self.port_file, self.arrivals_file = tmp / "receiver.port", tmp / "receiver.arrivals"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> WebhookReceiver:
        self.process = subprocess.Popen([sys.executable, str(BENCH / "webhook_receiver.py"), str(self.port_file),
                                         str(self.arrivals_file)], start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + timeout
        while not (self.port_file.exists() and self.port_file.read_text()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("bench: the webhook receiver did not start")
            time.sleep(0.05)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port_file.read_text()}/hooks"

    def stop(self) -> list[tuple[str, float]]:
        """Stops it; every arrival as (webhook-id, wall-clock time)."""
        if self.process is None:
            return []
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)
        self.process = None
        lines = self.arrivals_file.read_text().splitlines() if self.arrivals_file.exists() else []
        return [(webhook_id, float(at)) for webhook_id, at in (line.split() for line in lines)]


async def commit_events(dsn: str, org_id: int, count: int, note: str) -> tuple[list[str], float]:
    """`count` test events committed in one transaction through the service's own record_event (the
    event, its delivery and the NOTIFY in one statement, as a change writes them); their ids and the
    wall-clock time the commit returned."""
    from canopy_svc.rules import events

    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            ids = [(await events.record_event(conn, org_id, "test_event", {"description": f"{note} {n}"})).id
                   for n in range(count)]  # fmt: skip
        return ids, time.time()
    finally:
        await conn.close()


async def probe_events(dsn: str, org_id: int, seconds: float, interval: float) -> list[dict[str, Any]]:
    """One event committed every `interval` s for `seconds`, each in a transaction of its own: its id, and
    the wall-clock times just before its transaction began and just after its commit returned (the commit
    happened between the two; the latency is counted from the second, so it is a lower bound by at most
    the first's distance)."""
    from canopy_svc.rules import events

    conn = await asyncpg.connect(dsn)
    probes = []
    try:
        start = time.monotonic()
        for n in itertools.count():
            due = start + n * interval
            if due >= start + seconds:
                break
            ahead = due - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)  # the schedule: a fixed rate of probes, not a wait for anything
            began = time.time()
            async with conn.transaction():
                event = await events.record_event(conn, org_id, "test_event", {"description": f"probe {n}"})
            probes.append({"id": event.id, "began": began, "committed": time.time()})
    finally:
        await conn.close()
    return probes


async def _pending(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'"))
    finally:
        await conn.close()


def wait_delivered(dsn: str, bound: float) -> float:
    """Seconds until no delivery is pending (polled every 0.1 s, within `bound`)."""
    started = time.monotonic()
    while asyncio.run(_pending(dsn)):
        if time.monotonic() - started > bound:
            raise SystemExit(f"bench: deliveries still pending after {bound:.0f} s")
        time.sleep(0.1)
    return round(time.monotonic() - started, 2)


async def _created_at(dsn: str, event_type: str) -> dict[str, float]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT event_id, extract(epoch FROM created_at)::float8 AS at FROM events "
                                "WHERE type = $1", event_type)  # fmt: skip
    finally:
        await conn.close()
    return {r["event_id"]: r["at"] for r in rows}


def bench_webhooks(cluster: Cluster, tmp: Path, tags: PassTags) -> dict[str, Any]:
    """One server (1 worker, the default per-subscription concurrency) with one subscription to a local
    receiver that answers 200 at once:
    1. throughput: WEBHOOK_BACKLOG events committed at once, delivered as fast as the worker goes;
    2. latency at idle: an event committed every WEBHOOK_PROBE_MS, for SECONDS, nothing else running;
    3. latency under the POST load: the same probes while wrk runs POST /customers as the shapes do
       (closed loop, CONNECTIONS connections), each POST's customer_created delivered too."""
    shape = Shape("webhooks", "webhook deliveries to a local receiver", "bench_webhooks", None, "unique", SECONDS, True)
    db, _ = prepare(cluster, shape, tmp)
    receiver = WebhookReceiver(tmp).start()
    server = Server(db, "webhooks-w1", 1, {"CANOPY_SVC_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"})
    interval = WEBHOOK_PROBE_MS / 1000
    result: dict[str, Any] = {"backlog_events": WEBHOOK_BACKLOG, "probe_interval_ms": WEBHOOK_PROBE_MS}
    try:
        server.start()
        token = get_token(server)
        answer = httpx.put(f"{server.url}/organization/subscribe", json={"webhook_url": receiver.url},
                           headers={"Authorization": f"Bearer {token}"}, timeout=30)  # fmt: skip
        answer.raise_for_status()

        log(f"webhooks: {WEBHOOK_BACKLOG} events committed at once, delivered")
        with Sampler(server.pid, db.postmaster_pid) as sampler:
            backlog, committed = asyncio.run(commit_events(db.dsn, db.org_id, WEBHOOK_BACKLOG, "backlog"))
            result["backlog_drain_s"] = wait_delivered(db.dsn, bound=600)
        result["backlog_cpu_pct"] = sampler.cpu_report()
        result["backlog_server_cpu_ms_per_delivery"] = round(1000 * sampler.cpu_seconds("server") / WEBHOOK_BACKLOG, 3)
        result["backlog_postgres_cpu_ms_per_delivery"] = round(
            1000 * sampler.cpu_seconds("postgres") / WEBHOOK_BACKLOG, 3)

        log(f"webhooks: latency at idle, an event every {WEBHOOK_PROBE_MS:.0f} ms for {SECONDS} s")
        with Sampler(server.pid, db.postmaster_pid) as sampler:
            idle_probes = asyncio.run(probe_events(db.dsn, db.org_id, SECONDS, interval))
            wait_delivered(db.dsn, bound=120)
        result["idle_cpu_pct"] = sampler.cpu_report()

        log(f"webhooks: latency under the POST load (wrk, {CONNECTIONS} connections), {SECONDS} s")
        loaded: dict[str, Any] = {}
        prober = threading.Thread(target=lambda: loaded.update(
            probes=asyncio.run(probe_events(db.dsn, db.org_id, SECONDS, interval))))  # fmt: skip
        post = post_scenario(tags, shape)
        wrk_started = time.time()
        prober.start()
        load = run_wrk(server, token, post.script, post.path, post.args, SECONDS)
        wrk_ended = time.time()
        prober.join()
        result["post_load"] = {k: load[k] for k in ("requests_per_s", "latency_ms", "errors", "cpu_pct", "command")}
        result["pending_when_load_ended"] = asyncio.run(_pending(db.dsn))
        result["drain_after_load_s"] = wait_delivered(db.dsn, bound=900)
    finally:
        server.stop()
        arrivals = receiver.stop()

    first: dict[str, float] = {}
    for webhook_id, at in arrivals:
        first[webhook_id] = min(at, first.get(webhook_id, at))
    result["arrivals"] = len(arrivals)
    result["duplicates"] = len(arrivals) - len(first)
    missing = [i for i in backlog if i not in first]
    last = max(first[i] for i in backlog if i in first)
    result["backlog_missing"] = len(missing)
    result["throughput_per_s"] = round(len(backlog) / max(last - committed, 1e-9), 1)

    def latencies(probes: list[dict[str, Any]]) -> dict[str, Any]:
        delivered = [p for p in probes if p["id"] in first]
        return {**percentiles([first[p["id"]] - p["committed"] for p in delivered]),
                "commit_p99_ms": percentiles([p["committed"] - p["began"] for p in probes])["p99"],
                "undelivered": len(probes) - len(delivered)}  # fmt: skip

    result["idle_latency_ms"] = latencies(idle_probes)
    result["load_latency_ms"] = latencies(loaded.get("probes", []))
    # Every POST's customer_created was delivered too: its latency from its transaction's start (an
    # upper bound: the request's own work and commit are in it), and how many arrived within the load.
    created = asyncio.run(_created_at(db.dsn, "customer_created"))
    result["post_events"] = len(created)
    result["post_events_latency_from_transaction_start_ms"] = percentiles(
        [first[i] - at for i, at in created.items() if i in first])
    during = sum(1 for i in created if i in first and wrk_started <= first[i] <= wrk_ended)
    result["deliveries_per_s_during_load"] = round(during / max(wrk_ended - wrk_started, 1e-9), 1)
    result["post_events_missing"] = sum(1 for i in created if i not in first)
    return result


def webhook_table(w: dict[str, Any]) -> list[str]:
    def lat(x: dict[str, Any]) -> str:
        return (f"p50 {x['p50']} ms, p99 {x['p99']} ms, max {x['max']} ms over {x['n']} events"
                f" (commit itself p99 {x['commit_p99_ms']} ms; undelivered {x['undelivered']})")

    load = w["post_load"]
    return [
        "", "== webhooks: 1-worker server, one subscription, a local receiver answering 200 at once",
        f"throughput: {w['backlog_events']} events committed at once delivered at {w['throughput_per_s']}/s "
        f"(drained in {w['backlog_drain_s']} s; server {w['backlog_server_cpu_ms_per_delivery']} ms CPU per delivery,"
        f" PostgreSQL {w['backlog_postgres_cpu_ms_per_delivery']} ms;"
        f" other {w['backlog_cpu_pct'].get('other', 0):.0f}%)",
        f"commit-to-delivery at idle (an event every {w['probe_interval_ms']:.0f} ms): {lat(w['idle_latency_ms'])}",
        f"commit-to-delivery under the POST load ({load['requests_per_s']:.0f} POST/s, {load['errors']} errors,"
        f" other {load['cpu_pct'].get('other', 0):.0f}%): {lat(w['load_latency_ms'])}",
        f"  the POSTs' own {w['post_events']} events: delivered at {w['deliveries_per_s_during_load']}/s during the"
        f" load, {w['pending_when_load_ended']} pending when it ended, drained {w['drain_after_load_s']} s later;"
        f" latency from their transaction's start p50 {w['post_events_latency_from_transaction_start_ms']['p50']} ms,"
        f" p99 {w['post_events_latency_from_transaction_start_ms']['p99']} ms",
        f"  arrivals {w['arrivals']}, duplicates {w['duplicates']}, backlog missing {w['backlog_missing']}, POST"
        f" events missing {w['post_events_missing']}",
    ]


# --------------------------------------------------------------------------------------------------
# Report


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False).stdout
    return {
        "cpu_model": model,
        "logical_cpus": psutil.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "wrk": wrk_version.split(" Copyright")[0].strip(),
    }


def find_run(runs: list[dict[str, Any]], shape: str, scenario: str, kind: str = "closed",
             config: str = "w1") -> dict[str, Any] | None:
    return next((r for r in runs if r["shape"] == shape and r["config"] == config and r["scenario"] == scenario
                 and r["kind"] == kind), None)  # fmt: skip


def evaluate(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 9's targets, per data shape, for the 1-worker server at CONNECTIONS connections."""
    runs, ceilings = result["runs"], result["ceilings"]
    targets: list[dict[str, Any]] = []

    def target(shape: str, name: str, value: float | None, limit: float, passed: bool | None, unit: str = "",
               note: str = "", failed_without_figure: bool = False) -> None:
        verdict = False if failed_without_figure else (passed if value is not None else None)
        targets.append({"shape": shape, "target": name, "value": value, "limit": limit, "unit": unit,
                        "pass": verdict, "note": note})  # fmt: skip

    for shape in result["shapes"]:
        key = shape["key"]
        post, get = find_run(runs, key, "post_customers"), find_run(runs, key, "get_customer")
        if post:
            ratio = post["requests_per_s"] / ceilings["insert"]
            target(key, "POST /customers >= 25% of the pgbench INSERT ceiling", round(ratio, 3),
                   TARGETS["post_vs_insert_ceiling"], ratio >= TARGETS["post_vs_insert_ceiling"], "ratio")
            slices = post["requests_per_s_by_slice"]
            if len(slices) >= 2 and slices[0]:
                slope = slices[-1] / slices[0]
                target(key, "POST /customers: last slice within 10% of the first", round(slope, 3),
                       TARGETS["post_last_vs_first_slice"], slope >= TARGETS["post_last_vs_first_slice"], "ratio",
                       note="req/s by slice: " + ", ".join(f"{x:.0f}" for x in slices))
        if get:
            ratio = get["requests_per_s"] / ceilings["lookup"]
            target(key, "GET /customers/{id} >= 10% of the pgbench lookup ceiling"
                   + (" (access log on)" if ACCESS_LOG else " (access log OFF)"), round(ratio, 3),
                   TARGETS["get_vs_lookup_ceiling"], ratio >= TARGETS["get_vs_lookup_ceiling"], "ratio")
        # `beside`: a pair whose ratio is printed in the target's note, not judged.
        for scenario, pair, name, limit, both_ways, beside in (
            ("list_deep_page", "list_first_page", "deep list page p50 within 1.2x the first page's",
             "deep_vs_first_page", False, None),
            # "As fast on a shared name as on a rare one": bounded work per page either way, so the slower
            # of the two within 1.2x of the other, whichever it is.
            # Both answering one customer (limit=1): what the number of matches costs, alone. The
            # limit=12 pair (a full page against one row) is reported in the note beside it.
            ("search_shared_limit1", "search_rare_limit1", "search p50 on a shared and on a rare last name"
             " within 1.2x of each other, one customer answered each", "shared_vs_rare_search", True,
             ("search_shared", "search_rare", "at limit=12 (a full page against one customer)")),
        ):
            found = find_run(runs, key, scenario)
            if found and f"p50_ratio_to_{pair}" in found:
                ratio = found[f"p50_ratio_to_{pair}"]
                rounds = found[f"p50_ratio_to_{pair}_by_round"]
                shown = ", ".join("no answers" if x is None else f"{x:.2f}" for x in rounds)
                note = f"{scenario} / {pair} by round: {shown}"
                if None in rounds:  # a side that answered nothing in a round is not "as fast": no ratio hides it
                    other = find_run(runs, key, pair)
                    note += (f"; req/s {found['requests_per_s']:.1f} against {other['requests_per_s']:.1f}, "
                             f"errors {found['errors']} and {other['errors']}" if other else "")
                if beside:
                    other_run = find_run(runs, key, beside[0])
                    if other_run and other_run.get(f"p50_ratio_to_{beside[1]}") is not None:
                        note += f"; {beside[2]} {other_run[f'p50_ratio_to_{beside[1]}']:.2f}"
                value = None if ratio is None else round(max(ratio, 1 / ratio) if both_ways else ratio, 3)
                target(key, f"{name} (median of {len(rounds)} paired rounds)", value, TARGETS[limit],
                       value is not None and value <= TARGETS[limit], "ratio", note=note,
                       failed_without_figure=None in rounds)
        for scenario, limit, what in (("get_customer", "fixed_load_p99_ms_get", "GET"),
                                      ("post_customers", "fixed_load_p99_ms_post", "POST")):
            fixed = find_run(runs, key, scenario, kind="fixed")
            if fixed:
                p99 = fixed["latency_ms"]["p99"]
                held = fixed["requests_per_s"] >= 0.95 * fixed["offered_per_s"]
                target(key, f"{what} p99 < {TARGETS[limit]:.0f} ms at a fixed {FIXED_LOAD:.0%} of its max rate", p99,
                       TARGETS[limit], p99 < TARGETS[limit] and held, "ms",
                       note=f"offered {fixed['offered_per_s']:.0f}/s, served {fixed['requests_per_s']:.0f}/s"
                       + ("" if held else ": the load was not held, so FAIL"))
        for server in result["servers"]:
            if server["shape"] != key or server["env"]:
                continue
            role = "main" if server["workers"] == 1 else "worker"
            workers = [p for p in server["rss_after_runs"] if p["role"] == role]
            if workers:
                worst = max(p["rss_mb"] for p in workers)
                target(key, f"{server['config']}: RSS per worker after the runs < 80 MB", worst,
                       TARGETS["rss_mb_per_worker"], worst < TARGETS["rss_mb_per_worker"], "MB")
        idle = shape.get("idle")
        if idle:
            target(key, f"an idle server (1 worker) uses < 1% of a core ({idle['seconds']:.0f} s window)",
                   idle["server_cpu_pct"], TARGETS["idle_cpu_pct"], idle["server_cpu_pct"] < TARGETS["idle_cpu_pct"],
                   "% of a core", note=f"its PostgreSQL backends {idle['server_backends_cpu_pct']}%, "
                   f"{idle['server_wakeups_per_s']} wake-ups/s")
        errors = sum(r["errors"] for r in runs if r["shape"] == key)
        target(key, "every run: 0 errors (non-2xx and socket errors)", errors, 0, errors == 0, "errors")
    return targets


def table(result: dict[str, Any]) -> str:
    pgb = result["pgbench"]
    ceilings = result["ceilings"]
    before = result["load_before_start"]
    lines = [
        f"machine: {result['machine']['cpu_model']}, {result['machine']['logical_cpus']} CPUs; busy "
        f"{before['busy_pct_of_one_core']:.0f}% of a core before the start; access log "
        f"{'on' if ACCESS_LOG else 'off'} (CANOPY_SVC_LOG_LEVEL={LOG_LEVEL}); figures are ratios within this run",
        f"pgbench ceiling (-c {CONNECTIONS} -j {THREADS} -M prepared, {SECONDS} s): "
        f"INSERT {ceilings['insert']:.0f} tps, lookup {ceilings['lookup']:.0f} tps",
    ]
    if "page_first" in pgb and "page_deep" in pgb:
        first, deep = pgb["page_first"], pgb["page_deep"]
        lines.append(f"pgbench list-page SQL ({first['seconds']} s each): first {first['tps']:.0f} tps, deep "
                     f"{deep['tps']:.0f} tps (deep/first time {first['tps'] / deep['tps']:.2f}x)")
    for shape in result["shapes"]:
        lines += ["", f"== {shape['key']}: {shape['title']}"]
        if shape.get("load"):
            load = shape["load"]
            lines.append(f"loaded {load['rows']:,} rows in {load['total_s']} s ({load['table_size_with_indexes']});"
                         f" most shared addresses (customers, addresses): {load['most_shared_addresses'][:3]}")
        if shape.get("search_hits"):
            lines.append("search words: " + ", ".join(f"{h['word']!r} {h.get('matches', h.get('error'))} matches"
                                                      for h in shape["search_hits"]))
        rows = [r for r in result["runs"] if r["shape"] == shape["key"]]
        width = max([len("config"), *(len(r["config"]) for r in rows)])
        lines.append(
            f"{'config':<{width}} {'kind':<6} {'scenario':<44} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'err':>4} {'/ceil':>6} {'RSS MB':<10} {'svc ms/req':>10} {'pg ms/req':>9} {'other':>6}  req/s by slice"
        )
        for r in rows:
            ratio = f"{r['requests_per_s'] / ceilings[r['ceiling']]:.1%}" if r["ceiling"] else "-"
            rss = ",".join(f"{p['role'][0]}{p['peak_rss_mb']:.0f}" for p in r["server_processes"]
                           if p["role"] in ("main", "worker"))  # fmt: skip
            label = r["label"] + (f" @{r['offered_per_s']:.0f}/s" if r.get("offered_per_s") else "")
            slices = ", ".join(f"{x:.0f}" for x in r.get("requests_per_s_by_slice") or [])
            lines.append(
                f"{r['config']:<{width}} {r['kind']:<6} {label[:44]:<44} {r['requests_per_s']:>7.0f} "
                f"{r['latency_ms']['p50']:>7.2f} {r['latency_ms']['p99']:>7.2f} {r['errors']:>4} {ratio:>6} "
                f"{rss:<10} {r['server_cpu_ms_per_request']:>10.3f} {r['postgres_cpu_ms_per_request']:>9.3f} "
                f"{r['cpu_pct'].get('other', 0):>5.0f}%  {slices}"
            )
        if shape.get("idle"):
            idle = shape["idle"]
            lines.append(f"idle ({idle['seconds']:.0f} s, before any request): server {idle['server_cpu_pct']}% of a "
                         f"core, its {idle['server_backends']} PostgreSQL backends {idle['server_backends_cpu_pct']}%, "
                         f"all of PostgreSQL {idle['postgres_all_cpu_pct']}%; "
                         f"{idle['server_wakeups_per_s']} wake-ups/s")
    if result.get("webhooks"):
        lines += webhook_table(result["webhooks"])
    lines += [
        "",
        f"(kind: closed = closed loop at {CONNECTIONS} connections; fixed = paced at a fixed offered load (@N/s);"
        " CPU ms per request of the server and of PostgreSQL; 'other' = the box's busy time used by none of"
        " the server, PostgreSQL or wrk: other people's work; RSS m = main process, w = worker)",
        "", "targets (issue 9; 1 worker, 32 connections):",
    ]
    for t in result["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[t["pass"]]
        lines.append(f"  [{verdict}] {t['shape']}: {t['target']}: {t['value']} (limit {t['limit']} {t['unit']})"
                     + (f"; {t['note']}" if t["note"] else ""))
    for name, modes in result["profiles"].items():
        for mode, prof in modes.items():
            if "top_own" not in prof:
                continue
            load = prof["load_during_profile"]
            how = f"{mode}, pinned" if prof.get("pinned") else mode
            lines += ["", f"profile {name} ({how}): unique w1, py-spy {PROFILE_SECONDS} s, {prof['samples']} samples"
                      f" of the main thread at {load['requests_per_s']:.0f} req/s,"
                      f" {load['server_cpu_ms_per_request']} ms of server CPU per request; top own time"]
            for row in prof["top_own"][:12]:
                lines.append(f"  {row['share_pct']:5.1f}%  {row['function']}")
            lines.append("  own time by package: "
                         + ", ".join(f"{row['package']} {row['share_pct']:.0f}%" for row in prof["own_by_package"][:8]))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------


def create_client(dsn: str, data_dir: Path) -> dict[str, Any]:
    env = base_env(dsn, data_dir)
    migrated = subprocess.run(
        [*cli(), "migrate", "--data-dir", str(data_dir)], env=env, capture_output=True, text=True, check=False
    )
    if migrated.returncode != 0:
        raise SystemExit(f"bench: canopy-svc migrate failed:\n{migrated.stdout}\n{migrated.stderr}")
    made = subprocess.run(
        [*cli(), "clients", "create", "--org", "bench", "--json", "--rate", "1000000", "--burst", "1000000",
         "--data-dir", str(data_dir)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if made.returncode != 0:
        raise SystemExit(f"bench: canopy-svc clients create failed:\n{made.stdout}\n{made.stderr}")
    client: dict[str, Any] = json.loads(made.stdout.strip().splitlines()[-1])
    return client


async def _org_id(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT id FROM organizations WHERE name = 'bench'"))
    finally:
        await conn.close()


def background_load(seconds: float = 3.0) -> dict[str, Any]:
    """How busy the box is before the bench starts (others' work skews every figure after)."""
    start = psutil.cpu_times()
    time.sleep(seconds)
    end = psutil.cpu_times()
    not_busy = ("idle", "iowait", "guest", "guest_nice")
    busy = sum(getattr(end, f) - getattr(start, f) for f in end._fields if f not in not_busy)
    top = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            top.append((proc.cpu_percent(None), proc))
    time.sleep(1.0)
    hogs = []
    for _, proc in top:
        with contextlib.suppress(psutil.Error):
            used = proc.cpu_percent(None)
            if used >= 10:
                hogs.append({"pid": proc.pid, "cpu_pct": round(used), "command": " ".join(proc.cmdline())[:120]})
    return {
        "busy_pct_of_one_core": round(100.0 * busy / seconds, 1),
        "loadavg": list(os.getloadavg()),
        "busy_processes": sorted(hogs, key=lambda h: -h["cpu_pct"]),
    }


def prepare(cluster: Cluster, shape: Shape, tmp: Path) -> tuple[Database, dict[str, Any] | None]:
    """The shape's database: created, migrated, with its client, and loaded if the shape preloads."""
    if shape.database != "postgres":
        asyncio.run(create_database(cluster.dsn, shape.database))
    dsn = dsn_of(cluster.dsn, shape.database)
    db = Database(cluster, shape.database, dsn, tmp / f"svc-{shape.key}")
    db.client = create_client(dsn, db.data_dir)
    db.org_id = asyncio.run(_org_id(dsn))
    load = None
    if shape.preload:
        log(f"{shape.key}: loading {ROWS:,} customers")
        sql = LOAD_SQL if shape.preload == "unique" else LOAD_SQL_REPEATED
        load = asyncio.run(load_customers(dsn, db.org_id, ROWS, sql))
        log(f"  loaded in {load['total_s']} s (insert {load['insert_s']}, derived tables {load['derived_tables_s']}, "
            f"indexes {load['index_s']}, vacuum analyze {load['vacuum_analyze_s']}); customers table "
            f"{load['table_size_with_indexes']}, {load['derived_table_sizes']}; most shared addresses "
            f"(customers, addresses) {load['most_shared_addresses'][:3]}")
    return db, load


def check_pgbench_scripts() -> None:
    """The ceiling must be the service's own statements: its INSERT's columns, in the store's order."""
    from canopy_svc.store.customers import COLUMN_NAMES, WRITABLE

    text = (BENCH / "pgbench_insert.sql").read_text()
    found = re.search(r"INSERT INTO customers \(([^)]*)\)", text)
    columns = tuple(c.strip() for c in found.group(1).split(",")) if found else ()
    if columns != ("org_id", "customer_id", *WRITABLE):
        raise SystemExit(f"bench: bench/pgbench_insert.sql inserts {columns}, the service {WRITABLE}: update it")
    for script in ("pgbench_insert.sql", "pgbench_lookup.sql", "pgbench_page_first.sql", "pgbench_page_deep.sql"):
        if ", ".join(COLUMN_NAMES[1:]) not in " ".join((BENCH / script).read_text().split()):
            raise SystemExit(f"bench: bench/{script} does not answer the store's columns {COLUMN_NAMES[1:]}")


IMPORT_ROWS = int(os.environ.get("BENCH_IMPORT_ROWS", "200000"))
IMPORT_BATCH_ROWS = int(os.environ.get("BENCH_IMPORT_BATCH_ROWS", "2000"))
IMPORT_TARGET_ROWS_PER_S = 20000


def import_file(path: Path, rows: int) -> None:
    """rows valid POST /customers bodies, one per line, sharing no compared value with the loaded rows
    (their phones are +1201..., emails customerN@example.com) nor with one another."""
    with path.open("w") as handle:
        for n in range(1, rows + 1):
            body = {
                "customer_id": f"imp-{n}", "name_first": ("Ada", "Alan", "Grace", "Linus")[n % 4],
                "name_last": f"Importer{n}", "phone_number": f"+1646{2000000 + n:07d}",
                "address_line_one": f"{n} Import Road", "address_city": "Springfield", "address_state": "IL",
                "address_zip": f"{10000 + n % 89999:05d}", "email": f"imported{n}@example.org",
                "date_of_birth": f"19{50 + n % 50}-0{1 + n % 9}-1{n % 10}",
                "ssn": f"{100 + n // 9999 % 600:03d}-{10 + n // 99 % 89:02d}-{n % 9999 + 1:04d}",
            }  # fmt: skip
            handle.write(json.dumps(body) + "\n")


def bench_import(cluster: Cluster, tmp: Path) -> dict[str, Any]:
    """Issue 15: `canopy-svc customers import` of IMPORT_ROWS valid JSON lines into an organization of
    ROWS loaded customers (the unique shape's load), duplicate policy `warn` (the default: every row
    compared), with the command's defaults (a worker process per CPU)."""
    db, load = prepare(cluster, Shape("import", "import", "bench_import", "unique", "unique", 0, True), tmp)
    path = tmp / "import.jsonl"
    import_file(path, IMPORT_ROWS)
    log(f"import: {IMPORT_ROWS:,} rows into {ROWS:,} customers")
    env = base_env(db.dsn, db.data_dir)
    before = psutil.cpu_times()
    started = time.monotonic()
    done = subprocess.run(
        [*cli(), "customers", "import", str(path), "--org", "bench", "--json", "--batch-rows", str(IMPORT_BATCH_ROWS),
         "--data-dir", str(db.data_dir)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    seconds = time.monotonic() - started
    after = psutil.cpu_times()
    if done.returncode != 0:
        raise SystemExit(f"bench: customers import failed:\n{done.stdout}\n{done.stderr}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    busy = sum(getattr(after, f) - getattr(before, f) for f in after._fields if f not in ("idle", "iowait"))
    result = {
        "rows": IMPORT_ROWS, "table_rows_before": ROWS, "batch_rows": IMPORT_BATCH_ROWS,
        "created": summary["created"], "rejected": summary["rejected"],
        "seconds": round(seconds, 2), "command_seconds": summary["seconds"],
        "rows_per_s": round(summary["created"] / summary["seconds"]),
        "box_busy_cores": round(busy / seconds, 2), "load": load,
        "target_rows_per_s": IMPORT_TARGET_ROWS_PER_S,
    }  # fmt: skip
    log(f"  {result['rows_per_s']:,} rows/s ({result['created']:,} created in {result['command_seconds']} s; "
        f"box busy {result['box_busy_cores']} cores)")
    return result


def import_only(cluster: Cluster, tmp: Path, started: float, started_at: str, before: dict[str, Any],
                version: str) -> int:
    """BENCH_ONLY=import: the import part alone, written to bench-results/result-import.json."""
    outcome = bench_import(cluster, tmp)
    result = {"started_at": started_at, "machine": machine() | {"postgres": version}, "load_before_start": before,
              "import": outcome, "duration_s": round(time.monotonic() - started, 1)}  # fmt: skip
    (RESULTS / "result-import.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    verdict = "PASS" if outcome["rows_per_s"] >= IMPORT_TARGET_ROWS_PER_S else "FAIL"
    print(f"machine: {result['machine']['cpu_model']}, {result['machine']['logical_cpus']} CPUs; busy "
          f"{before['busy_pct_of_one_core']:.0f}% of a core before the start")
    print(f"customers import: {outcome['rows_per_s']:,} rows/s into {ROWS:,} customers "
          f"(target {IMPORT_TARGET_ROWS_PER_S:,}: {verdict})")
    print(f"\nwritten: {RESULTS / 'result-import.json'} ({result['duration_s']} s in all)")
    return 0


def webhooks_only(cluster: Cluster, tmp: Path, started: float, started_at: str, before: dict[str, Any],
                  version: str) -> int:
    """BENCH_ONLY=webhooks: the webhook part alone, written to bench-results/result-webhooks.json."""
    webhooks = bench_webhooks(cluster, tmp, PassTags())
    result = {"started_at": started_at, "machine": machine() | {"postgres": version}, "load_before_start": before,
              "settings": {"seconds": SECONDS, "connections": CONNECTIONS, "wrk_threads": THREADS,
                           "log_level": LOG_LEVEL, "server_env": os.environ.get("BENCH_SERVER_ENV", "")},
              "webhooks": webhooks, "duration_s": round(time.monotonic() - started, 1)}  # fmt: skip
    (RESULTS / "result-webhooks.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"machine: {result['machine']['cpu_model']}, {result['machine']['logical_cpus']} CPUs; busy "
          f"{before['busy_pct_of_one_core']:.0f}% of a core before the start")
    print("\n".join(webhook_table(webhooks)))
    print(f"\nwritten: {RESULTS / 'result-webhooks.json'} ({result['duration_s']} s in all)")
    return 0


def main() -> int:
    if ONLY not in ("", "webhooks", "import"):
        print(f"bench: BENCH_ONLY={ONLY!r}: only 'webhooks' or 'import' (or unset: everything)", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None and ONLY != "import":
        print("bench: wrk is not installed. On Debian/Ubuntu: sudo apt-get install -y wrk", file=sys.stderr)
        return 2
    if ONLY != "import":  # the import part runs no pgbench
        pg_bin("pgbench")
        check_pgbench_scripts()
    chosen = shapes()
    spy = py_spy()
    RESULTS.mkdir(parents=True, exist_ok=True)
    for stale in [*RESULTS.glob("profile-*.txt"), *RESULTS.glob("server-*.log"), *RESULTS.glob("ids-*.txt")]:
        stale.unlink()  # this run's files only
    started = time.monotonic()
    started_at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    before = background_load()
    if before["busy_pct_of_one_core"] > 25:
        log(f"warning: the machine is already busy ({before['busy_pct_of_one_core']:.0f}% of a core before the bench:"
            f" {', '.join(h['command'][:60] for h in before['busy_processes'][:3])}); the figures will show it")
    tmp = Path(tempfile.mkdtemp(prefix="canopy-bench-"))
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(SystemExit(143)))
    from canopy_svc.core.embedded import EmbeddedPostgres

    postgres = EmbeddedPostgres(tmp / "pgdata")
    try:
        log(f"starting the embedded PostgreSQL in {tmp}")
        dsn = postgres.start()
        postmaster, version = asyncio.run(_postmaster(dsn))
        cluster = Cluster(dsn=dsn, socket_dir=_socket_dir(dsn), postmaster_pid=postmaster, version=version)
        if ONLY == "webhooks":
            return webhooks_only(cluster, tmp, started, started_at, before, version)
        if ONLY == "import":
            return import_only(cluster, tmp, started, started_at, before, version)
        prepared = {shape.key: prepare(cluster, shape, tmp) for shape in chosen}
        # The ceilings on a database of a million unique customers, the unique shape's if it runs.
        if "unique" in prepared:
            ceiling_db = prepared["unique"][0]
        else:
            ceiling_db, _ = prepare(cluster, Shape("ceiling", "", "bench_ceiling", "unique", "unique", 0, True), tmp)
        log(f"pgbench INSERT ceiling: {SECONDS} s")
        insert = run_pgbench(ceiling_db, "pgbench_insert.sql",
                             {"org_id": ceiling_db.org_id, "n": 0, "tag": 1, "area": PGBENCH_AREA}, SECONDS)
        log(f"  {insert['tps']:.0f} tps")
        log(f"pgbench lookup ceiling: {SECONDS} s")
        lookup = run_pgbench(ceiling_db, "pgbench_lookup.sql", {"org_id": ceiling_db.org_id, "rows": ROWS}, SECONDS)
        log(f"  {lookup['tps']:.0f} tps")
        ceilings = {"insert": insert["tps"], "lookup": lookup["tps"]}
        # Diagnostics (not ceilings): the list-page SQL at the start and ~99% deep, straight on the
        # database, to tell the database's share of a deep page from the server's.
        deep_row = ROWS - ROWS // 100
        page_seconds = max(5, SECONDS // 3)
        log(f"pgbench list-page SQL, first and deep: {page_seconds} s each")
        page_first = run_pgbench(ceiling_db, "pgbench_page_first.sql", {"org_id": ceiling_db.org_id, "lim": 13},
                                 page_seconds)
        page_deep = run_pgbench(ceiling_db, "pgbench_page_deep.sql",
                                {"org_id": ceiling_db.org_id, "lim": 13, "after": deep_row}, page_seconds)
        log(f"  first {page_first['tps']:.0f} tps, deep {page_deep['tps']:.0f} tps")
        plans = asyncio.run(explain_pages(ceiling_db.dsn, ceiling_db.org_id, deep_row))

        tags = PassTags()
        runs: list[dict[str, Any]] = []
        servers: list[dict[str, Any]] = []
        profiles: dict[str, Any] = {}
        shape_results = []
        for shape in chosen:
            db, load = prepared[shape.key]
            outcome = bench_shape(shape, db, tags, spy)
            runs += outcome["runs"]
            servers += outcome["servers"]
            profiles.update(outcome["profiles"])
            shape_results.append({
                "key": shape.key, "title": shape.title, "database": shape.database, "preload": shape.preload,
                "bodies": shape.bodies, "post_seconds": shape.post_seconds, "load": load,
                "deep_cursor": {k: v for k, v in (outcome["deep"] or {}).items() if k != "cursor"},
                "search_hits": outcome.get("search_hits"), "idle": outcome.get("idle"),
                "get_ids": outcome.get("get_ids"), "table_after": outcome.get("table_after"),
            })  # fmt: skip
        webhooks = bench_webhooks(cluster, tmp, tags) if WEBHOOKS else None
        imported = bench_import(cluster, tmp) if IMPORT else None
        for r in runs:
            r["ratio_to_ceiling"] = round(r["requests_per_s"] / ceilings[r["ceiling"]], 4) if r["ceiling"] else None
        result: dict[str, Any] = {
            "started_at": started_at,
            "machine": machine() | {"postgres": version},
            "load_before_start": before,
            "settings": {
                "server_env": os.environ.get("BENCH_SERVER_ENV", ""), "seconds": SECONDS, "rows": ROWS,
                "shapes": SHAPES, "connections": CONNECTIONS, "wrk_threads": THREADS, "slices": SLICES,
                "fresh_post_seconds": FRESH_SECONDS, "fixed_load": FIXED_LOAD, "idle_seconds": IDLE_SECONDS,
                "warmup_seconds": WARMUP_SECONDS, "page_rounds": PAGE_ROUNDS, "profile_pinned": PROFILE_PIN,
                "log_level": LOG_LEVEL,
                "access_log": "on (one JSON line per request, to the server's log file)" if ACCESS_LOG else "off",
                "latency": (
                    "wrk's figures: after each run wrk adds, for every request slower than twice the mean interval"
                    " of a connection, synthetic samples (its coordinated-omission correction); at a fixed offered"
                    " load the latency is measured from each request's send, which its slot decides"
                ),
                "pool_max_per_worker": "default (CANOPY_SVC_POOL_MAX unset: 10)",
                "postgres": "pgserver defaults (shared_buffers 128MB, fsync on, synchronous_commit on)",
            },
            "ceilings": ceilings,
            "pgbench": {"insert": insert, "lookup": lookup, "page_first": page_first | {"seconds": page_seconds},
                        "page_deep": page_deep | {"seconds": page_seconds}},
            "page_plans": plans,
            "shapes": shape_results,
            "servers": servers,
            "runs": runs,
            "profiles": profiles,
            "webhooks": webhooks,
            "import": imported,
        }
        result["targets"] = evaluate(result)
        result["duration_s"] = round(time.monotonic() - started, 1)
        (RESULTS / "result.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(table(result))
        print(f"\nwritten: {RESULTS / 'result.json'} ({result['duration_s']} s in all)")
        return 0
    finally:
        log("stopping PostgreSQL and removing the temporary folder")
        postgres.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
