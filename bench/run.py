"""`make bench`: the database ceiling (pgbench), then canopy-svc under wrk, 1 worker and 2.

Everything runs on this machine, in this order, in one go, so the ratios compare like with like:

1. An embedded PostgreSQL (pgserver) in a temporary folder, migrated with `canopy-svc migrate`; an
   organization `bench` and a client with a limit high enough never to bind
   (`canopy-svc clients create --org bench --json --rate 1000000 --burst 1000000`).
2. BENCH_ROWS (1,000,000) customers loaded with INSERT ... SELECT FROM generate_series (secondary
   indexes dropped first and rebuilt after, exactly as schema.sql defines them), VACUUM ANALYZE.
3. The raw ceiling with pgbench, `-M prepared -n -c 32 -j 2 -T BENCH_SECONDS`: the service's customer
   INSERT (bench/pgbench_insert.sql) and its key lookup (bench/pgbench_lookup.sql); and, as a
   diagnostic, the list-page SQL at the start of the table and ~99% deep.
4. `canopy-svc serve --workers 1`, then `--workers 2` (CANOPY_SVC_LOG_LEVEL=WARNING: no access log
   lines), each driven by wrk (`-t 2 -c 32 -d BENCH_SECONDS --latency`) through: POST /customers,
   GET /customers/{id}, GET /customers?limit=12 (first page, and a page ~99% deep), and POST
   /customers with one assign_to_accounts link. The server's processes are sampled every 100 ms
   (RSS per process; CPU of the server, PostgreSQL, wrk and the whole box). The two list pages run
   in paired rounds (BENCH_PAGE_ROUNDS, 5; first then deep, SECONDS / rounds each) after an
   unmeasured warm-up pass of each, since their ratio is the point: the headline ratio is the
   median of the rounds' deep/first p50 ratios (the pooled p50 and mean ratios are recorded too).
   The 1-worker server then runs POST and GET once more at BENCH_LATENCY_CONNECTIONS (8), a
   diagnostic of latency with less queueing, not used for the targets. Every run records
   connections / requests-per-second, the mean latency Little's law implies for a closed loop that
   keeps every connection busy. A diagnostic third server (2 workers, each with its own memory rate
   limiter) shows what the shared PostgreSQL limiter costs. With py-spy, the 1-worker server is then
   profiled during extra POST and GET passes (not the measured ones: py-spy --native pauses the
   worker for each sample).
5. bench-results/result.json, a table on stdout, and the targets of issue 5, pass or fail.

Environment: BENCH_SECONDS (15), BENCH_ROWS (1000000), BENCH_CONNECTIONS (32), BENCH_THREADS (2),
BENCH_WORKERS ("1,2"), BENCH_WARMUP_SECONDS (2), BENCH_PAGE_ROUNDS (5), BENCH_LATENCY_CONNECTIONS (8;
0 skips the diagnostic), BENCH_DIAGNOSE_LIMITER (1; 0 skips the third server), BENCH_PROFILE (1 when
py-spy is found; 0 skips), BENCH_PROFILE_SECONDS (10), BENCH_PROFILE_MODES ("python,native", see
profile()), BENCH_LOG_LEVEL (WARNING; INFO puts the access log on), BENCH_DEEP_CURSOR ("search" or
"walk", see find_deep_cursor), BENCH_RESULTS (bench-results), BENCH_SERVER_ENV (unset; e.g.
"CANOPY_SVC_POOL_MAX=32": settings for the servers under test, recorded in the result).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

from profile_summary import summarize_raw  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SECONDS", "15"))
ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
WORKER_COUNTS = [int(w) for w in os.environ.get("BENCH_WORKERS", "1,2").split(",") if w.strip()]
WARMUP_SECONDS = int(os.environ.get("BENCH_WARMUP_SECONDS", "2"))
PROFILE_SECONDS = int(os.environ.get("BENCH_PROFILE_SECONDS", "10"))
PROFILE_MODES = [m.strip() for m in os.environ.get("BENCH_PROFILE_MODES", "python,native").split(",") if m.strip()]
PAGE_ROUNDS = max(1, int(os.environ.get("BENCH_PAGE_ROUNDS", "5")))
LATENCY_CONNECTIONS = int(os.environ.get("BENCH_LATENCY_CONNECTIONS", "8"))
DIAGNOSE_LIMITER = os.environ.get("BENCH_DIAGNOSE_LIMITER", "1") not in ("0", "false", "no")
LOG_LEVEL = os.environ.get("BENCH_LOG_LEVEL", "WARNING").upper()
DEEP_CURSOR_MODE = os.environ.get("BENCH_DEEP_CURSOR", "search")
RESULTS = Path(os.environ.get("BENCH_RESULTS", ROOT / "bench-results"))
# Secrets made for this run and given to every process it starts (CLI, server workers), so they agree.
JWT_SECRET = base64.urlsafe_b64encode(os.urandom(32)).decode()
DATA_KEY = base64.urlsafe_b64encode(os.urandom(32)).decode()

ACCOUNT_ID = "bench-account"
PRODUCT_ID = "bench-product"
# One area code per POST pass, so phone numbers never repeat between passes (no duplicate warnings):
# as many codes as a default run has passes (warm-ups and profiles included: 16), with room to spare.
AREA_CODES = ["212", "312", "415", "617", "646", "718", "202", "305", "404", "512", "303", "206",
              "213", "310", "408", "503", "602", "702", "713", "801", "919", "615", "704", "612"]  # fmt: skip
PGBENCH_AREA = "973"

TARGETS = {
    "post_vs_insert_ceiling": 0.20,
    "get_vs_lookup_ceiling": 0.08,
    "p99_ms": 20.0,
    "deep_vs_first_page": 1.2,
    "rss_mb_per_worker": 80.0,
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
# PostgreSQL: start, load, pgbench


@dataclass
class Database:
    dsn: str
    socket_dir: str
    postmaster_pid: int
    version: str
    org_id: int = 0
    client: dict[str, Any] = field(default_factory=dict)


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


LOAD_SQL = """
INSERT INTO customers (id, org_id, customer_id, name_prefix, name_first, name_middle, name_last, name_suffix,
    phone_number, address_line_one, address_line_two, address_city, address_state, address_zip,
    address_country_code, ssn_encrypted, ssn_hash, international_customer_id, email, date_of_birth,
    business_legal_name, doing_business_as, business_ein, created_at, updated_at)
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

_KEPT_INDEXES = ("customers_pkey", "customers_org_customer_id_key")


async def load_customers(dsn: str, org_id: int, rows: int) -> dict[str, Any]:
    """ROWS customers in the bench organization, ids 1..ROWS in customer_id order.

    Bulk-load practice: the secondary indexes are dropped, the rows inserted by two sessions in
    parallel (explicit ids 1..ROWS, then the identity moved past them), the indexes rebuilt from
    their own definitions, two at a time, and the table vacuumed and analyzed. The unique key stays
    throughout. The index set is compared before and after.
    """
    started = time.monotonic()
    conns = [await asyncpg.connect(dsn) for _ in range(2)]
    try:
        for conn in conns:
            await conn.execute("SET maintenance_work_mem = '256MB'; SET synchronous_commit = off")
        indexes = await conns[0].fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'customers' "
            "ORDER BY indexname"
        )
        before = {(r["indexname"], r["indexdef"]) for r in indexes}
        secondary = [r for r in indexes if r["indexname"] not in _KEPT_INDEXES]
        for r in secondary:
            await conns[0].execute(f'DROP INDEX "{r["indexname"]}"')
        half = rows // 2
        await asyncio.gather(
            conns[0].execute(LOAD_SQL, org_id, 1, half), conns[1].execute(LOAD_SQL, org_id, half + 1, rows)
        )
        await conns[0].execute("SELECT setval(pg_get_serial_sequence('customers', 'id'), $1)", rows)
        inserted = time.monotonic()
        queue = list(secondary)

        async def build(conn: asyncpg.Connection) -> None:
            while queue:
                await conn.execute(queue.pop(0)["indexdef"])

        await asyncio.gather(*(build(c) for c in conns))
        indexed = time.monotonic()
        after = {
            (r["indexname"], r["indexdef"])
            for r in await conns[0].fetch(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'customers'"
            )
        }
        if after != before:
            raise SystemExit(f"bench: the rebuilt indexes differ from the schema's: {before ^ after}")
        await conns[0].execute("VACUUM (ANALYZE) customers")
        # Flush the load's dirty pages now: a checkpoint falling inside a timed run stalls every
        # request for its writes, and the measurement would be of the load, not of the service.
        await conns[0].execute("CHECKPOINT")
        count = await conns[0].fetchval("SELECT count(*) FROM customers WHERE org_id = $1", org_id)
        size = await conns[0].fetchval("SELECT pg_size_pretty(pg_total_relation_size('customers'))")
    finally:
        for conn in conns:
            await conn.close()
    done = time.monotonic()
    return {
        "rows": count,
        "insert_s": round(inserted - started, 1),
        "index_s": round(indexed - inserted, 1),
        "vacuum_analyze_s": round(done - indexed, 1),
        "total_s": round(done - started, 1),
        "table_size_with_indexes": size,
        "indexes_rebuilt": [r["indexname"] for r in secondary],
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
    args.append("postgres")
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


class Server:
    def __init__(self, db: Database, data_dir: Path, workers: int, env: dict[str, str] | None = None) -> None:
        self.db = db
        self.workers = workers
        self.env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        suffix = "".join(f"-{value}" for value in sorted(self.env.values()))
        self.log_path = RESULTS / f"server-w{workers}{suffix}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.command = [
            *cli(),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
            "--data-dir",
            str(data_dir),
        ]

    def start(self, timeout: float = 60.0) -> Server:
        log_file = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command,
            env=base_env(self.db.dsn, self.data_dir) | self.env,
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


def get_token(server: Server, client: dict[str, Any]) -> str:
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


def find_deep_cursor(server: Server, token: str, rows: int) -> dict[str, Any]:
    """A `starting_after` cursor ~99% of the way into the loaded customers, minted by the server.

    Cursors are opaque and signed, so the bench does not forge one. Two honest ways:
    - "search" (default, 1 request): the loaded customer number i has the word `i` in its name_last,
      so `search_parameters=<D // 10>` (a prefix search) finds customer D // 10 and then D, D+1...
      in id order; with `limit=2` the page is [D // 10, D] and its `paging.starting_after` is the
      cursor after customer D. Search and plain listings share one keyset (the row id), and the page
      fetched with that cursor is checked to start at customer D + 1.
    - "walk" (BENCH_DEEP_CURSOR=walk, or when the check fails): follow `starting_after` with
      `limit=1000` until D rows are behind (D / 1000 requests).
    """
    deep_row = rows - rows // 100  # 990,000 of 1,000,000
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:

        def check(cursor: str) -> bool:
            page = http.get("/customers", params={"limit": 12, "starting_after": cursor}).json()
            return bool(page.get("results")) and page["results"][0]["customer_id"] == str(deep_row + 1)

        started = time.monotonic()
        if DEEP_CURSOR_MODE == "search" and deep_row % 10 == 0:
            answer = http.get("/customers", params={"search_parameters": str(deep_row // 10), "limit": 2})
            found = answer.json() if answer.status_code == 200 else {}
            ids = [c["customer_id"] for c in found.get("results", [])]
            cursor = (found.get("paging") or {}).get("starting_after")
            if ids == [str(deep_row // 10), str(deep_row)] and cursor and check(cursor):
                return {
                    "cursor": cursor,
                    "after_customer": deep_row,
                    "method": "search",
                    "requests": 2,
                    "seconds": round(time.monotonic() - started, 2),
                }
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
        if not check(cursor):
            raise SystemExit("bench: the walked cursor does not lead where expected")
        return {
            "cursor": cursor,
            "after_customer": deep_row,
            "method": "walk",
            "requests": requests + 1,
            "seconds": round(time.monotonic() - started, 2),
        }


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
) -> dict[str, Any]:
    url = f"{server.url}{path}"
    command = [
        "wrk",
        "-t",
        str(min(THREADS, connections)),  # wrk wants at least one connection per thread
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--latency",
        "-s",
        str(BENCH / script),
        url,
    ]
    if args:
        command += ["--", *args]
    env = {**os.environ, "BENCH_TOKEN": token}
    with Sampler(server.pid if sample else None, server.db.postmaster_pid) as sampler:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        sampler.add("wrk", process.pid)
        out, err = process.communicate(timeout=seconds + 60)
    line = next((x for x in out.splitlines() if x.startswith("BENCH_JSON ")), None)
    if process.returncode != 0 or line is None:
        raise SystemExit(f"bench: wrk failed ({process.returncode}):\n{out}\n{err}")
    result: dict[str, Any] = json.loads(line[len("BENCH_JSON ") :])
    lat = result.pop("latency_us")
    socket_errors = sum(result["socket_errors"].values())
    return {
        "command": " ".join(["wrk", *command[1:]]).replace(url, f"http://127.0.0.1:PORT{path}"),
        "requests": result["requests"],
        "duration_s": result["duration_s"],
        "requests_per_s": result["requests_per_s"],
        "connections": connections,
        "little_mean_ms": little_mean_ms(connections, result["requests_per_s"]),
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


@dataclass
class Scenario:
    name: str
    label: str
    script: str
    path: str
    args: list[str]
    ceiling: str | None = None  # "insert" or "lookup"


class PassTags:
    """A fresh (tag, area code) for every POST pass, warm-ups and profiles included."""

    def __init__(self) -> None:
        self.count = 0

    def next(self) -> tuple[str, str]:
        self.count += 1
        return f"b{self.count}", AREA_CODES[(self.count - 1) % len(AREA_CODES)]


def scenarios(tags: PassTags, deep_cursor: str) -> list[Scenario]:
    post_tag, post_area = tags.next()
    link_tag, link_area = tags.next()
    return [
        Scenario(
            "post_customers",
            "POST /customers",
            "post_customers.lua",
            "/customers",
            [post_tag, post_area],
            ceiling="insert",
        ),
        Scenario(
            "get_customer", "GET /customers/{id}", "get_customer.lua", "/customers/1", [str(ROWS)], ceiling="lookup"
        ),
        Scenario("list_first_page", "GET /customers?limit=12", "get_path.lua", "/customers?limit=12", []),
        Scenario(
            "list_deep_page",
            f"GET /customers?limit=12&starting_after=<{ROWS - ROWS // 100}>",
            "get_path.lua",
            f"/customers?limit=12&starting_after={deep_cursor}",
            [],
        ),
        Scenario(
            "post_customers_linked",
            "POST /customers + 1 account link",
            "post_customers.lua",
            "/customers",
            [link_tag, link_area, ACCOUNT_ID],
            ceiling="insert",
        ),
    ]


def fresh_args(tags: PassTags, scenario: Scenario) -> list[str]:
    """The scenario's wrk arguments, with a fresh (tag, area code) if it is a POST pass."""
    if scenario.script != "post_customers.lua":
        return scenario.args
    tag, area = tags.next()
    return [tag, area, *scenario.args[2:]]


def profile(server: Server, token: str, tags: PassTags, scenario: Scenario, spy: str) -> dict[str, Any]:
    """py-spy on the (single) worker during extra wrk passes of this scenario, one per mode in
    BENCH_PROFILE_MODES ("python,native"): raw collapsed stacks in
    bench-results/profile-<scenario>-<mode>.txt, summarized (main thread) by own and cumulative time.

    - python: `--nonblocking`, Python frames only; py-spy reads the worker's memory without pausing
      it, so the shares are those of the worker's own time (time in C code, system calls included,
      is counted to the Python function that called it).
    - native: `--native`, C frames too, so a system call shows with its Python caller. py-spy must
      pause the worker for every sample then (throughput drops by a third), and a sample that lands
      while the worker is descheduled counts for the call it sits in: read these shares as where the
      worker's wall time goes, not its CPU.
    Neither pass is a measured one."""
    pid = server.worker_pids()[0]
    results: dict[str, Any] = {}
    for mode in PROFILE_MODES:
        out = RESULTS / f"profile-{scenario.name}-{mode}.txt"
        flag = "--native" if mode == "native" else "--nonblocking"
        command = [spy, "record", "--pid", str(pid), "--duration", str(PROFILE_SECONDS), "--rate", "100",
                   "--format", "raw", "--threads", "--output", str(out), flag]  # fmt: skip
        out.unlink(missing_ok=True)
        log(f"profiling {scenario.label} with py-spy ({mode}) for {PROFILE_SECONDS} s")
        spy_process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            load = run_wrk(server, token, scenario.script, scenario.path, fresh_args(tags, scenario),
                           PROFILE_SECONDS + 2, sample=False)  # fmt: skip
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
        summary["file"] = str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else str(out)
        summary["command"] = " ".join(["py-spy", *command[1:]]).replace(str(ROOT) + "/", "")
        summary["load_during_profile"] = {k: load[k] for k in ("requests_per_s", "latency_ms", "errors")}
        results[mode] = summary
    return results


@dataclass
class ServerConfig:
    key: str  # "w1", "w2", ...
    workers: int
    note: str = ""
    env: dict[str, str] = field(default_factory=dict)
    only: tuple[str, ...] = ()  # scenario names; empty: all
    profile: bool = False
    latency_diagnostic: bool = False  # POST and GET again at LATENCY_CONNECTIONS


def server_configs() -> list[ServerConfig]:
    configs = [ServerConfig(f"w{n}", n, profile=(n == 1), latency_diagnostic=(n == 1)) for n in WORKER_COUNTS]
    if DIAGNOSE_LIMITER and any(n > 1 for n in WORKER_COUNTS):
        n = max(WORKER_COUNTS)
        configs.append(
            ServerConfig(
                f"w{n}-memlimit",
                n,
                env={"CANOPY_SVC_RATE_LIMIT_STORE": "memory"},
                only=("post_customers", "get_customer"),
                note="diagnostic, not the contract: each worker limits on its own (memory store), to show "
                "what the shared PostgreSQL limiter costs",
            )
        )
    return configs


PAGE_PAIR = ("list_first_page", "list_deep_page")
LATENCY_SCENARIOS = ("post_customers", "get_customer")


def labelled(
    result: dict[str, Any], config: ServerConfig, scenario: Scenario, key: str | None = None
) -> dict[str, Any]:
    """`key` names a diagnostic run of this server that is not its configuration's (the targets look
    runs up by config "wN", so a run under another key never counts for them)."""
    result.update(
        {
            "config": key or config.key,
            "workers": config.workers,
            "scenario": scenario.name,
            "label": scenario.label,
            "ceiling": scenario.ceiling,
            "diagnostic": bool(key or config.env),
        }
    )
    if scenario.script == "post_customers.lua":
        result["tag"] = scenario.args[0]  # every customer of this pass has a customer_id "<tag>-..."
    log(
        f"  {result['config']} {scenario.label}: {result['requests_per_s']:.0f} req/s, "
        f"p50 {result['latency_ms']['p50']} ms, p99 {result['latency_ms']['p99']} ms, "
        f"mean {result['latency_ms']['mean']} ms (connections / req/s: {result['little_mean_ms']} ms), "
        f"errors {result['errors']}"
        + (f" (first: {result['first_error'][:200]})" if result["errors"] else "")
    )
    return result


def run_page_pair(
    server: Server, token: str, tags: PassTags, config: ServerConfig, pages: list[Scenario]
) -> list[dict[str, Any]]:
    """The first and the deep list page in paired rounds (first, deep, first, deep, ...), each
    SECONDS / PAGE_ROUNDS long: their ratio is the point, and on a shared machine the load of others
    drifts. A round's two runs are seconds apart, so under the same drift; the headline is the
    median of the rounds' ratios, which one disturbed round cannot move (the ratio of the pooled
    p50s can: each page's p50 may come from a different round)."""
    seconds = max(1, round(SECONDS / PAGE_ROUNDS))
    parts: dict[str, list[dict[str, Any]]] = {sc.name: [] for sc in pages}
    if WARMUP_SECONDS:
        # Both pages, unmeasured: each has its own statements to prepare and plan, and its own pages
        # to bring into the caches; warming only the first would bill the deep page for that in round 1.
        for scenario in pages:
            run_wrk(server, token, scenario.script, scenario.path, scenario.args, WARMUP_SECONDS, sample=False)
    log(f"{config.key} first and deep list pages: {PAGE_ROUNDS} paired rounds of {seconds} s each")
    for _ in range(PAGE_ROUNDS):
        for scenario in pages:
            parts[scenario.name].append(run_wrk(server, token, scenario.script, scenario.path, scenario.args, seconds))
    first, deep = (parts[sc.name] for sc in pages)
    merged = []
    for scenario in pages:
        result = merge_runs(parts[scenario.name])
        result["round_seconds"] = seconds
        merged.append(labelled(result, config, scenario))
    for stat in ("p50", "mean"):
        by_round = [
            round(d["latency_ms"][stat] / f["latency_ms"][stat], 3) for f, d in zip(first, deep, strict=True)
        ]
        merged[1][f"{stat}_ratio_to_first_by_round"] = by_round
        merged[1][f"{stat}_ratio_to_first"] = round(statistics.median(by_round), 3)
    log(
        f"  {config.key} deep/first p50 by round: {merged[1]['p50_ratio_to_first_by_round']}, "
        f"median {merged[1]['p50_ratio_to_first']}"
    )
    return merged


def bench_server(
    db: Database, data_dir: Path, config: ServerConfig, tags: PassTags, spy: str | None, deep: dict[str, Any] | None
) -> dict[str, Any]:
    server = Server(db, data_dir, config.workers, config.env)
    runs: list[dict[str, Any]] = []
    profiles: dict[str, Any] = {}
    after: list[dict[str, Any]] = []
    try:
        log(
            f"starting canopy-svc serve --workers {config.workers} on port {server.port}"
            + (f" ({config.note})" if config.note else "")
        )
        server.start()
        token = get_token(server, db.client)
        if deep is None:
            make_account(server, token)
            deep = find_deep_cursor(server, token, ROWS)
            log(
                f"deep cursor after customer {deep['after_customer']} by {deep['method']} "
                f"({deep['requests']} requests, {deep['seconds']} s)"
            )
        chosen = [sc for sc in scenarios(tags, deep["cursor"]) if not config.only or sc.name in config.only]
        pages = [sc for sc in chosen if sc.name in PAGE_PAIR]
        for scenario in chosen:
            if scenario.name in PAGE_PAIR:
                if scenario.name == PAGE_PAIR[0] and len(pages) == 2:
                    runs += run_page_pair(server, token, tags, config, pages)
                continue
            if WARMUP_SECONDS:
                run_wrk(
                    server,
                    token,
                    scenario.script,
                    scenario.path,
                    fresh_args(tags, scenario),
                    WARMUP_SECONDS,
                    sample=False,
                )
            log(f"{config.key} {scenario.label}: {SECONDS} s")
            result = run_wrk(server, token, scenario.script, scenario.path, scenario.args, SECONDS)
            runs.append(labelled(result, config, scenario))
        if config.latency_diagnostic and LATENCY_CONNECTIONS > 0:
            # The same server, warm, at fewer connections: how much of the latency at CONNECTIONS
            # is queueing. A diagnostic: the targets are set at CONNECTIONS.
            key = f"{config.key} @{LATENCY_CONNECTIONS} conns"
            for scenario in [sc for sc in chosen if sc.name in LATENCY_SCENARIOS]:
                scenario = replace(scenario, args=fresh_args(tags, scenario))  # a POST pass of its own
                log(f"{key} {scenario.label}: {SECONDS} s (diagnostic)")
                result = run_wrk(server, token, scenario.script, scenario.path, scenario.args, SECONDS,
                                 connections=LATENCY_CONNECTIONS)  # fmt: skip
                runs.append(labelled(result, config, scenario, key=key))
        after = rss_now(server.pid)
        if spy and config.profile:
            for scenario in scenarios(tags, deep["cursor"])[:2]:
                profiles[scenario.name] = profile(server, token, tags, scenario, spy)
    finally:
        server.stop()
    command = " ".join(["canopy-svc", *server.command[len(cli()) :]]).replace(str(data_dir), "<tmp>/svc")
    return {
        "runs": runs,
        "profiles": profiles,
        "deep": deep,
        "server": {
            "config": config.key,
            "workers": config.workers,
            "note": config.note,
            "env": config.env,
            "rss_after_runs": after,
            "command": command,
        },
    }


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


def evaluate(runs: list[dict[str, Any]], ceilings: dict[str, float], servers: list[dict[str, Any]]) -> list[dict]:
    def find(workers: int, name: str) -> dict[str, Any] | None:
        return next((r for r in runs if r["config"] == f"w{workers}" and r["scenario"] == name), None)

    targets: list[dict[str, Any]] = []

    def target(name: str, value: float | None, limit: float, passed: bool | None, unit: str = "") -> None:
        targets.append(
            {
                "target": name,
                "value": value,
                "limit": limit,
                "unit": unit,
                "pass": passed if value is not None else None,
            }
        )

    post, get = find(1, "post_customers"), find(1, "get_customer")
    first, deep = find(1, "list_first_page"), find(1, "list_deep_page")
    if post:
        ratio = post["requests_per_s"] / ceilings["insert"]
        target(
            "1 worker: POST /customers >= 20% of the pgbench INSERT ceiling",
            round(ratio, 3),
            TARGETS["post_vs_insert_ceiling"],
            ratio >= TARGETS["post_vs_insert_ceiling"],
            "ratio",
        )
        target(
            "1 worker: POST /customers p99 < 20 ms",
            post["latency_ms"]["p99"],
            TARGETS["p99_ms"],
            post["latency_ms"]["p99"] < TARGETS["p99_ms"],
            "ms",
        )
    if get:
        ratio = get["requests_per_s"] / ceilings["lookup"]
        target(
            "1 worker: GET /customers/{id} >= 8% of the pgbench lookup ceiling",
            round(ratio, 3),
            TARGETS["get_vs_lookup_ceiling"],
            ratio >= TARGETS["get_vs_lookup_ceiling"],
            "ratio",
        )
        target(
            "1 worker: GET /customers/{id} p99 < 20 ms",
            get["latency_ms"]["p99"],
            TARGETS["p99_ms"],
            get["latency_ms"]["p99"] < TARGETS["p99_ms"],
            "ms",
        )
    if first and deep:
        ratio = deep["p50_ratio_to_first"]
        rounds = len(deep["p50_ratio_to_first_by_round"])
        target(
            f"1 worker: deep list page p50 within 1.2x the first page's (median of {rounds} paired rounds' ratios)",
            ratio,
            TARGETS["deep_vs_first_page"],
            ratio <= TARGETS["deep_vs_first_page"],
            "ratio",
        )
    for server in servers:
        if server["env"]:
            continue  # diagnostic configurations are not what the targets are about
        role = "main" if server["workers"] == 1 else "worker"
        workers = [p for p in server["rss_after_runs"] if p["role"] == role]
        if workers:
            worst = max(p["rss_mb"] for p in workers)
            target(
                f"{server['config']}: RSS per worker after the runs < 80 MB",
                worst,
                TARGETS["rss_mb_per_worker"],
                worst < TARGETS["rss_mb_per_worker"],
                "MB",
            )
    errors = sum(r["errors"] for r in runs)
    target("every run: 0 errors (non-2xx and socket errors)", errors, 0, errors == 0, "errors")
    return targets


def table(result: dict[str, Any]) -> str:
    pgb = result["pgbench"]
    ceilings = {"insert": pgb["insert"]["tps"], "lookup": pgb["lookup"]["tps"]}
    before = result["load_before_start"]
    lines = [
        f"machine: {result['machine']['cpu_model']}, {result['machine']['logical_cpus']} CPUs; busy "
        f"{before['busy_pct_of_one_core']:.0f}% of a core before the start; access log "
        f"{'on' if result['settings']['log_level'] in ('INFO', 'DEBUG') else 'off'} "
        f"(CANOPY_SVC_LOG_LEVEL={result['settings']['log_level']})",
        f"pgbench ceiling (-c {CONNECTIONS} -j {THREADS} -M prepared, {SECONDS} s): "
        f"INSERT {ceilings['insert']:.0f} tps, lookup {ceilings['lookup']:.0f} tps",
    ]
    if "page_first" in pgb and "page_deep" in pgb:
        first, deep = pgb["page_first"], pgb["page_deep"]
        lines.append(
            f"pgbench list-page SQL ({first['seconds']} s each): first {first['tps']:.0f} tps,"
            f" deep {pgb['page_deep']['tps']:.0f} tps (deep/first time "
            f"{first['tps'] / deep['tps']:.2f}x)"
        )

    def config_label(r: dict[str, Any]) -> str:
        return f"{r['config']} (diagnostic)" if r.get("diagnostic") else r["config"]

    width = max([len("config"), *(len(config_label(r)) for r in result["runs"])])
    lines += [
        "",
        f"{'config':<{width}} {'scenario':<38} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'mean ms':>7} "
        f"{'C/X ms':>7} {'err':>4} {'/ceil':>6} {'peak RSS MB':<16} {'svc CPU':>7} {'svc ms/req':>10} "
        f"{'pg ms/req':>9} {'wrk CPU':>7} {'other':>6}",
    ]
    for r in result["runs"]:
        ratio = f"{r['requests_per_s'] / ceilings[r['ceiling']]:.1%}" if r["ceiling"] else "-"
        rss = ",".join(
            f"{p['role'][0]}{p['peak_rss_mb']:.0f}" for p in r["server_processes"] if p["role"] in ("main", "worker")
        )
        cpu = r["cpu_pct"]
        little = f"{r['little_mean_ms']:.2f}" if r["little_mean_ms"] is not None else "-"
        lines.append(
            f"{config_label(r):<{width}} {r['label'][:38]:<38} {r['requests_per_s']:>7.0f} "
            f"{r['latency_ms']['p50']:>7.2f} {r['latency_ms']['p99']:>7.2f} {r['latency_ms']['mean']:>7.2f} "
            f"{little:>7} {r['errors']:>4} {ratio:>6} {rss:<16} "
            f"{cpu.get('server', 0):>6.0f}% {r['server_cpu_ms_per_request']:>10.3f} "
            f"{r['postgres_cpu_ms_per_request']:>9.3f} "
            f"{cpu.get('wrk', 0):>6.0f}% {cpu.get('other', 0):>5.0f}%"
        )
    lines += [
        f"(config wN = --workers N, {CONNECTIONS} connections unless '@N conns'; CPU in % of one core; ms/req ="
        " CPU ms per request; 'other' = the box's busy time not used by the server, PostgreSQL or wrk;"
        " RSS m = main process, w = worker)",
        "(C/X = connections / req/s: by Little's law the mean latency, at that throughput, of a closed loop"
        " that keeps every connection busy: the queueing floor, which only more throughput lowers. wrk's mean"
        " can exceed it: wrk adds synthetic samples for slow requests (its coordinated-omission correction),"
        " and its mean, p50 and p99 include them)",
    ]
    for server in result["servers"]:
        if server["note"]:
            lines.append(f"{server['config']}: {server['note']}")
    if any(r["config"].endswith(" conns") for r in result["runs"]):
        lines.append(
            f"@{LATENCY_CONNECTIONS} conns: diagnostic, the same server at {LATENCY_CONNECTIONS} connections"
            " after its measured runs, to show how much of the latency is queueing; not used for the targets"
        )
    for config, ratio in result["deep_vs_first_page"].items():
        rounds = ", ".join(f"{x:.2f}" for x in ratio["p50_by_round"])
        mean_rounds = ", ".join(f"{x:.2f}" for x in ratio["mean_by_round"])
        lines.append(
            f"deep/first list page, {config}: p50 {ratio['p50_median_of_rounds']:.2f}x, the median of"
            f" {ratio['rounds']} paired rounds of {ratio['round_seconds']} s ({rounds}); pooled p50s"
            f" {ratio['p50_pooled']:.2f}x; mean {ratio['mean']:.2f}x pooled, {ratio['mean_median_of_rounds']:.2f}x"
            f" median of rounds ({mean_rounds}); throughput first/deep {ratio['throughput']:.2f}x; CPU per request"
            f" (server + PostgreSQL) {ratio['cpu_ms_per_request'][1] / ratio['cpu_ms_per_request'][0]:.2f}x"
        )
    lines += ["", "targets (issue 5):"]
    for t in result["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[t["pass"]]
        lines.append(f"  [{verdict}] {t['target']}: {t['value']} (limit {t['limit']} {t['unit']})")
    for name, modes in result["profiles"].items():
        for mode, prof in modes.items():
            if "top_own" not in prof:
                continue
            lines += [
                "",
                f"profile {name} ({mode}): w1, py-spy {PROFILE_SECONDS} s, {prof['samples']} samples of the "
                f"main thread at {prof['load_during_profile']['requests_per_s']:.0f} req/s; top own time",
            ]
            for row in prof["top_own"][:10]:
                lines.append(f"  {row['share_pct']:5.1f}%  {row['function']}")
            lines.append(
                "  own time by package: "
                + ", ".join(f"{row['package']} {row['share_pct']:.0f}%" for row in prof["own_by_package"][:8])
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------


def create_client(dsn: str, data_dir: Path) -> dict[str, Any]:
    env = base_env(dsn, data_dir)
    migrated = subprocess.run(
        [*cli(), "migrate", "--data-dir", str(data_dir)], env=env, capture_output=True, text=True, check=False
    )
    if migrated.returncode != 0:
        raise SystemExit(f"bench: canopy-svc migrate failed:\n{migrated.stdout}\n{migrated.stderr}")
    log(migrated.stdout.strip())
    made = subprocess.run(
        [
            *cli(),
            "clients",
            "create",
            "--org",
            "bench",
            "--json",
            "--rate",
            "1000000",
            "--burst",
            "1000000",
            "--data-dir",
            str(data_dir),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        raise SystemExit(f"bench: canopy-svc clients create failed:\n{made.stdout}\n{made.stderr}")
    client: dict[str, Any] = json.loads(made.stdout.strip().splitlines()[-1])
    return client


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


def main() -> int:
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed. On Debian/Ubuntu: sudo apt-get install -y wrk", file=sys.stderr)
        return 2
    pg_bin("pgbench")
    spy = py_spy()
    RESULTS.mkdir(parents=True, exist_ok=True)
    for stale in [*RESULTS.glob("profile-*.txt"), *RESULTS.glob("server-*.log")]:
        stale.unlink()  # this run's files only
    started = time.monotonic()
    started_at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    before = background_load()
    if before["busy_pct_of_one_core"] > 25:
        log(
            f"warning: the machine is already busy ({before['busy_pct_of_one_core']:.0f}% of a core before the bench:"
            f" {', '.join(h['command'][:60] for h in before['busy_processes'][:3])}); the figures will show it"
        )
    tmp = Path(tempfile.mkdtemp(prefix="canopy-bench-"))
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(SystemExit(143)))
    from canopy_svc.core.embedded import EmbeddedPostgres

    postgres = EmbeddedPostgres(tmp / "pgdata")
    try:
        log(f"starting the embedded PostgreSQL in {tmp}")
        dsn = postgres.start()
        postmaster, version = asyncio.run(_postmaster(dsn))
        db = Database(dsn=dsn, socket_dir=_socket_dir(dsn), postmaster_pid=postmaster, version=version)
        svc_dir = tmp / "svc"
        db.client = create_client(dsn, svc_dir)

        async def org_id() -> int:
            conn = await asyncpg.connect(dsn)
            try:
                return int(await conn.fetchval("SELECT id FROM organizations WHERE name = 'bench'"))
            finally:
                await conn.close()

        db.org_id = asyncio.run(org_id())
        log(f"loading {ROWS:,} customers")
        load = asyncio.run(load_customers(dsn, db.org_id, ROWS))
        log(
            f"  loaded in {load['total_s']} s (insert {load['insert_s']}, indexes {load['index_s']}, "
            f"vacuum analyze {load['vacuum_analyze_s']}); customers table {load['table_size_with_indexes']}"
        )

        log(f"pgbench INSERT ceiling: {SECONDS} s")
        insert = run_pgbench(
            db, "pgbench_insert.sql", {"org_id": db.org_id, "n": 0, "tag": 1, "area": PGBENCH_AREA}, SECONDS
        )
        log(f"  {insert['tps']:.0f} tps")
        log(f"pgbench lookup ceiling: {SECONDS} s")
        lookup = run_pgbench(db, "pgbench_lookup.sql", {"org_id": db.org_id, "rows": ROWS}, SECONDS)
        log(f"  {lookup['tps']:.0f} tps")
        ceilings = {"insert": insert["tps"], "lookup": lookup["tps"]}
        # Diagnostics (not ceilings): the list-page SQL at the start and ~99% deep, straight on the
        # database, to tell the database's share of a deep page from the server's.
        deep_row = ROWS - ROWS // 100
        page_seconds = max(5, SECONDS // 3)
        log(f"pgbench list-page SQL, first and deep: {page_seconds} s each")
        page_first = run_pgbench(db, "pgbench_page_first.sql", {"org_id": db.org_id, "lim": 13}, page_seconds)
        page_deep = run_pgbench(
            db, "pgbench_page_deep.sql", {"org_id": db.org_id, "lim": 13, "after": deep_row}, page_seconds
        )
        log(f"  first {page_first['tps']:.0f} tps, deep {page_deep['tps']:.0f} tps")
        plans = asyncio.run(explain_pages(dsn, db.org_id, deep_row))

        tags = PassTags()
        runs: list[dict[str, Any]] = []
        servers: list[dict[str, Any]] = []
        profiles: dict[str, Any] = {}
        deep = None
        for config in server_configs():
            outcome = bench_server(db, svc_dir, config, tags, spy, deep)
            deep = outcome["deep"]
            runs += outcome["runs"]
            servers.append(outcome["server"])
            profiles.update(outcome["profiles"])
        stored = asyncio.run(stored_by_pass(dsn, db.org_id))
        for r in runs:
            if "tag" in r:
                # wrk counts the answers it read; requests in flight when it stopped may be stored too.
                found = stored.get(r["tag"], {"customers": 0, "links": 0})
                r["stored"] = found
                if found["customers"] < r["requests"] - r["errors"]:
                    r["errors"] += 1
                    r["first_error"] = r["first_error"] or (
                        f"only {found['customers']} customers stored for {r['requests']} answers"
                    )
                if r["scenario"] == "post_customers_linked" and found["links"] != found["customers"]:
                    r["errors"] += 1
                    r["first_error"] = r["first_error"] or f"{found['links']} links for {found['customers']} customers"
        for r in runs:
            r["ratio_to_ceiling"] = round(r["requests_per_s"] / ceilings[r["ceiling"]], 4) if r["ceiling"] else None
        deep_ratios = {}
        for workers in WORKER_COUNTS:
            first = next(r for r in runs if r["config"] == f"w{workers}" and r["scenario"] == "list_first_page")
            deep_run = next(r for r in runs if r["config"] == f"w{workers}" and r["scenario"] == "list_deep_page")
            deep_ratios[f"w{workers}"] = {
                "rounds": deep_run["rounds"],
                "round_seconds": deep_run["round_seconds"],
                "p50_ms": [first["latency_ms"]["p50"], deep_run["latency_ms"]["p50"]],
                "cpu_ms_per_request": [
                    round(run_["server_cpu_ms_per_request"] + run_["postgres_cpu_ms_per_request"], 3)
                    for run_ in (first, deep_run)
                ],
                # The headline (the target's figure): the median of the paired rounds' p50 ratios.
                "p50_median_of_rounds": deep_run["p50_ratio_to_first"],
                "p50_by_round": deep_run["p50_ratio_to_first_by_round"],
                # Each page's rounds pooled into its row (p50 = the median of its rounds' p50s, as wrk
                # gives no histogram to merge), then deep over first: pairs broken, kept for comparison.
                "p50_pooled": round(deep_run["latency_ms"]["p50"] / first["latency_ms"]["p50"], 3),
                "mean": round(deep_run["latency_ms"]["mean"] / first["latency_ms"]["mean"], 3),
                "mean_median_of_rounds": deep_run["mean_ratio_to_first"],
                "mean_by_round": deep_run["mean_ratio_to_first_by_round"],
                "throughput": round(first["requests_per_s"] / deep_run["requests_per_s"], 3),
            }
        result = {
            "started_at": started_at,
            "duration_s": round(time.monotonic() - started, 1),
            "machine": machine() | {"postgres": version},
            "load_before_start": before,
            "settings": {
                "server_env": os.environ.get("BENCH_SERVER_ENV", ""),
                "seconds": SECONDS,
                "connections": CONNECTIONS,
                "wrk_threads": THREADS,
                "rows": ROWS,
                "warmup_seconds": WARMUP_SECONDS,
                "page_rounds": PAGE_ROUNDS,
                "latency_diagnostic_connections": LATENCY_CONNECTIONS,
                "latency": (
                    "wrk's figures: after each run wrk adds, for every request slower than twice"
                    " connections / req/s, synthetic samples at that latency minus multiples of it"
                    " (its coordinated-omission correction); mean, p50 and p99 include them, so the"
                    " mean can exceed little_mean_ms, which the raw mean cannot"
                ),
                "log_level": LOG_LEVEL,
                "access_log": (
                    "off: CANOPY_SVC_LOG_LEVEL=WARNING drops the per-request INFO line"
                    if LOG_LEVEL != "INFO" and LOG_LEVEL != "DEBUG"
                    else "on (one JSON line per request)"
                ),
                "pool_max_per_worker": "default (CANOPY_SVC_POOL_MAX unset: 10)",
                "rate_limit_store": {
                    "w1": "memory (the default for 1 worker)",
                    "w2": "postgres (what `serve --workers N>1` sets)",
                },
                "client_rate_limit": {"rate": db.client.get("rate_per_second"), "burst": db.client.get("burst")},
                "postgres": "pgserver defaults (shared_buffers 128MB, fsync on, synchronous_commit on)",
            },
            "load": load,
            "deep_cursor": {k: v for k, v in (deep or {}).items() if k != "cursor"},
            "pgbench": {
                "insert": insert,
                "lookup": lookup,
                "page_first": page_first | {"seconds": page_seconds},
                "page_deep": page_deep | {"seconds": page_seconds},
            },
            "page_plans": plans,
            "servers": servers,
            "runs": runs,
            "deep_vs_first_page": deep_ratios,
            "profiles": profiles,
        }
        result["targets"] = evaluate(runs, ceilings, servers)
        result["duration_s"] = round(time.monotonic() - started, 1)
        (RESULTS / "result.json").write_text(json.dumps(result, indent=2) + "\n")
        print(table(result))
        print(f"\nwritten: {RESULTS / 'result.json'} ({result['duration_s']} s in all)")
        return 0
    finally:
        log("stopping PostgreSQL and removing the temporary folder")
        postgres.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
