"""`canopy-svc`: serve, migrate, and manage organizations' API clients."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg

from canopy_svc.api import examples
from canopy_svc.core import secret_files
from canopy_svc.core.crypto import DataCipher, DataKeyError
from canopy_svc.core.settings import Settings, use_metrics_folder, variable
from canopy_svc.rules import clients, customer_import, loanpro
from canopy_svc.store import organizations
from canopy_svc.store.data_key import DataKeyMismatch
from canopy_svc.store.migrations import migrate, migrate_database

DEV_ORG = "dev"
# Flags that are settings (dest = Settings field): given, they win over the environment.
_SETTING_FLAGS = ("data_dir", "host", "port", "workers", "graceful_timeout_seconds")


def _env_help(name: str) -> str:
    return f"env {variable(Settings, name)}; default {getattr(Settings, name)}"


def _add_database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        help=f"folder of the embedded PostgreSQL and local keys ({_env_help('data_dir')}); "
        f"unused for the database when {variable(Settings, 'database_url')} is set",
    )


def _settings(args: argparse.Namespace) -> Settings:
    """The settings, the command's flags winning over the environment."""
    flags = {name: getattr(args, name, None) for name in _SETTING_FLAGS}
    return Settings.from_env(**{name: value for name, value in flags.items() if value is not None})


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """DATABASE_URL if set (an outage of it is its operator's: the gate waits for it), else the embedded
    PostgreSQL in data_dir: restarted if its postmaster dies meanwhile, stopped after, if we started it."""
    if settings.database_url:
        yield settings.database_url
        return
    from canopy_svc.core.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(settings.data_dir, supervise=True)
    uri = server.start()
    try:
        yield uri
    finally:
        server.stop()


@asynccontextmanager
async def _migrated(dsn: str, cipher: DataCipher) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a database brought to this build's schema (the commands below need it)."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await migrate(conn, cipher)
        yield conn
    finally:
        await conn.close()


async def _create_client(
    dsn: str, org: str, scopes: str, cipher: DataCipher, *, rate: float | None = None, burst: int | None = None
) -> dict[str, Any]:
    async with _migrated(dsn, cipher) as conn, conn.transaction():
        created = await clients.create_client(conn, org, scopes, rate=rate, burst=burst)
        instance_id = await loanpro.instance_id_by_name(conn, org)
    return {
        "org": created.org,
        "client_id": created.client_id,
        "client_secret": created.client_secret,
        "rate_per_second": created.limits[0],
        "burst": created.limits[1],
        "loanpro_instance_id": instance_id,
    }


async def _instance_id(dsn: str, org: str) -> int | None:
    conn = await asyncpg.connect(dsn)
    try:
        return await loanpro.instance_id_by_name(conn, org)
    finally:
        await conn.close()


async def _set_limits(
    dsn: str, client_id: str, rate: float | None, burst: int | None, cipher: DataCipher
) -> tuple[float, int] | None:
    async with _migrated(dsn, cipher) as conn:
        return await clients.set_limits(conn, client_id, rate=rate, burst=burst)


def _rate_arg(text: str) -> float:
    """argparse type: requests per second, a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number > 0 (requests per second), not {text}")
    return value


def _burst_arg(text: str) -> int:
    """argparse type: the bucket size, a whole number >= 1 (and fitting the integer column)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 2**31 - 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text}")
    return value


async def _client_exists(dsn: str, client_id: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return await clients.find_client(conn, client_id) is not None
    finally:
        await conn.close()


def cmd_clients_create(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with database(settings) as dsn:
        created = asyncio.run(
            _create_client(
                dsn, args.org, " ".join(args.scope), DataCipher(settings.data_key), rate=args.rate, burst=args.burst
            )
        )
    if args.json:
        print(json.dumps(created))
    else:
        print(f"organization:  {created['org']}")
        print(f"client_id:     {created['client_id']}")
        print(f"client_secret: {created['client_secret']}")
        print(f"rate:          {created['rate_per_second']:g} requests/s, burst {created['burst']}")
        print(f"instance id:   {created['loanpro_instance_id']}  (the LoanPro face's Autopal-Instance-ID)")
        print("The secret is shown only now; it is stored as a hash.", file=sys.stderr)
    return 0


def cmd_clients_set_limits(args: argparse.Namespace) -> int:
    if args.rate is None and args.burst is None:
        print("canopy-svc clients set-limits: give --rate, --burst or both", file=sys.stderr)
        return 2
    settings = _settings(args)
    with database(settings) as dsn:
        limits = asyncio.run(_set_limits(dsn, args.client_id, args.rate, args.burst, DataCipher(settings.data_key)))
    if limits is None:
        print(f"canopy-svc: no API client {args.client_id!r}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"client_id": args.client_id, "rate_per_second": limits[0], "burst": limits[1]}))
    else:
        print(f"client_id: {args.client_id}")
        print(f"rate:      {limits[0]:g} requests/s")
        print(f"burst:     {limits[1]}")
        print(
            f"Running servers use the new limits within {variable(Settings, 'rate_limit_cache_seconds')} "
            f"(default {Settings.rate_limit_cache_seconds:g}).",
            file=sys.stderr,
        )
    return 0


async def _set_duplicate_policy(dsn: str, org: str, policy: str, cipher: DataCipher) -> bool:
    async with _migrated(dsn, cipher) as conn:
        org_id = await organizations.find_organization(conn, org)
        if org_id is None:
            return False
        await organizations.set_duplicate_policy(conn, org_id, policy)
        return True


def cmd_orgs_set_duplicate_policy(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with database(settings) as dsn:
        found = asyncio.run(_set_duplicate_policy(dsn, args.org, args.policy, DataCipher(settings.data_key)))
    if not found:
        print(f"canopy-svc: no organization named {args.org!r}", file=sys.stderr)
        return 1
    print(f"organization {args.org}: duplicate_customer_policy = {args.policy}")
    return 0


class _ImportDisplay:
    """The import's progress on stderr: a bar (rows, rate, rejects, time left by the bytes read) on a
    terminal, nothing otherwise; the summary is printed at the end either way."""

    def __init__(self, show_bar: bool) -> None:
        self.started = time.monotonic()
        self.bar: Any = None
        self.shown_bytes = 0
        self.rows_before = 0
        self.show_bar = show_bar

    def update(self, progress: customer_import.Progress) -> None:
        if not self.show_bar:
            return
        if self.bar is None:
            # The rate counts from the first batch on: not the database's start nor the workers' spawn.
            self.started, self.rows_before = time.monotonic(), progress.rows_this_run
            # tqdm: small, dependency-free and cheap per update; its time left follows the bytes read.
            from tqdm import tqdm

            self.bar = tqdm(
                total=progress.total_bytes,
                unit="B",
                unit_scale=True,
                file=sys.stderr,
                # A terminal that reports no size (0 x 0: some ptys) would hide the bar: 80 x 24 then.
                ncols=shutil.get_terminal_size().columns,
                nrows=shutil.get_terminal_size().lines,
                bar_format="{desc} {percentage:3.0f}%|{bar:20}| [{elapsed}, {remaining} left]",
            )
        elapsed = time.monotonic() - self.started
        rate = (progress.rows_this_run - self.rows_before) / elapsed if elapsed > 0 else 0.0
        self.bar.set_description_str(
            f"{progress.created:,} created, {progress.rejected:,} rejected, {rate:,.0f} rows/s", refresh=False
        )
        self.bar.update(progress.bytes_read - self.shown_bytes)
        self.shown_bytes = progress.bytes_read

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


async def _import_customers(
    dsn: str, args: argparse.Namespace, data_key: bytes, file_format: customer_import.Format, display: _ImportDisplay
) -> customer_import.Progress | None:
    async with _migrated(dsn, DataCipher(data_key)) as conn:
        org_id = await organizations.find_organization(conn, args.org)
        if org_id is None:
            return None
        return await customer_import.run_import(
            conn,
            org_id,
            args.file,
            file_format,
            data_key,
            rejects_path=args.rejects or args.file.with_name(args.file.name + ".rejects.jsonl"),
            batch_rows=args.batch_rows,
            jobs=args.jobs,
            on_progress=display.update,
        )


def cmd_customers_import(args: argparse.Namespace) -> int:
    try:
        file_format = customer_import.format_of(args.file, args.format)
    except customer_import.UnreadableFile as exc:
        print(f"canopy-svc customers import: {exc}", file=sys.stderr)
        return 2
    if not args.file.is_file():
        print(f"canopy-svc customers import: no file {args.file}", file=sys.stderr)
        return 2
    settings = _settings(args)
    display = _ImportDisplay(sys.stderr.isatty() and not args.json)
    started = time.monotonic()
    try:
        with database(settings) as dsn:
            done = asyncio.run(_import_customers(dsn, args, settings.data_key, file_format, display))
    except customer_import.UnreadableFile as exc:
        print(f"canopy-svc customers import: {exc}", file=sys.stderr)
        return 2
    finally:
        display.close()
    if done is None:
        print(f"canopy-svc: no organization named {args.org!r}", file=sys.stderr)
        return 1
    seconds = time.monotonic() - started
    summary = {
        "org": args.org,
        "file": str(args.file),
        "created": done.created,
        "rejected": done.rejected,
        "with_warnings": done.warned,
        "rows_this_run": done.rows_this_run,
        "resumed_after_line": done.resumed_from_line,
        "already_imported": done.already_finished,
        "seconds": round(seconds, 3),
        "rows_per_second": round(done.rows_this_run / seconds) if seconds > 0 else None,
        "rejects_file": str(args.rejects or args.file.with_name(args.file.name + ".rejects.jsonl")),
    }
    if args.json:
        print(json.dumps(summary))
    elif done.already_finished:
        print(f"{args.file} was already imported into {args.org}: {done.created:,} created, {done.rejected:,} rejected")
    else:
        resumed = f" (resumed after line {done.resumed_from_line:,})" if done.resumed_from_line else ""
        print(
            f"imported {args.file} into {args.org}{resumed}: {done.created:,} created "
            f"({done.warned:,} with duplicate warnings), {done.rejected:,} rejected "
            f"(see {summary['rejects_file']}); {done.rows_this_run:,} rows in {seconds:.1f} s"
        )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with database(settings) as dsn:
        version = asyncio.run(migrate_database(dsn, DataCipher(settings.data_key)))
    print(f"schema at version {version}")
    return 0


def _dev_client(dsn: str, settings: Settings) -> dict[str, Any]:
    """The sandbox's dev client: made on first start, kept (0600) in the data folder after."""
    saved = secret_files.read_dev_client(settings.data_dir)
    if saved is not None and asyncio.run(_client_exists(dsn, saved["client_id"])):
        # Read again: a client saved before the LoanPro face has none in its file.
        return saved | {"loanpro_instance_id": asyncio.run(_instance_id(dsn, saved["org"]))}
    created = asyncio.run(_create_client(dsn, DEV_ORG, "read write", DataCipher(settings.data_key)))
    secret_files.write_dev_client(settings.data_dir, created)
    return created


def dev_banner(client: dict[str, Any], base_url: str) -> str:
    credentials = json.dumps({"client_id": client["client_id"], "client_secret": client["client_secret"]})
    return "\n".join(
        [
            "",
            f"canopy-svc sandbox on {base_url}  (organization '{client['org']}', client {client['client_id']})",
            "Paste these two lines into a shell: the first gets a token, the second creates a customer.",
            "",
            f"TOKEN=$(curl -s -X POST {base_url}/auth/token -H 'Content-Type: application/json' "
            f'-d \'{credentials}\' | sed -E \'s/.*"access_token":"([^"]+)".*/\\1/\')',
            f'curl -s -X POST {base_url}/customers -H "Authorization: Bearer $TOKEN" '
            f"-H 'Content-Type: application/json' -d '{json.dumps(examples.CUSTOMER, separators=(',', ':'))}'",
            "Watch what happened (every change is an event; subscribe a URL to have them pushed):",
            f'curl -s {base_url}/events -H "Authorization: Bearer $TOKEN"',
            *_loanpro_lines(client, base_url),
            "",
            f"API docs: {base_url}/docs",
            "",
        ]
    )


def _loanpro_lines(client: dict[str, Any], base_url: str) -> list[str]:
    instance_id = client.get("loanpro_instance_id")
    if instance_id is None:
        return []
    return [
        f"The same customers through the LoanPro face (Autopal-Instance-ID {instance_id}):",
        f"curl -s '{base_url}/api/public/api/1/odata.svc/Customers?$expand=PrimaryAddress,Phones' "
        f'-H "Authorization: Bearer $TOKEN" -H "Autopal-Instance-ID: {instance_id}"',
    ]


@contextmanager
def metrics_dir(workers: int) -> Iterator[Path | None]:
    """With several workers, a folder of their metrics (prometheus-client's multi-process mode), made
    empty for this run and removed after it; with one, none (its metrics stay in memory). Set before
    the workers start: each chooses its mode as it imports prometheus-client."""
    if workers <= 1:
        use_metrics_folder(None)  # a leftover folder from elsewhere would mix in its values
        yield None
        return
    path = Path(tempfile.mkdtemp(prefix="canopy-metrics-"))
    use_metrics_folder(path)
    try:
        yield path
    finally:
        use_metrics_folder(None)
        shutil.rmtree(path, ignore_errors=True)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from canopy_svc.core.http_protocol import LimitedHttpToolsProtocol  # reads its limits: a bad one stops here
    from canopy_svc.core.logs import configure_logging

    # Read here, once: a bad CANOPY_SVC_* setting stops serve here, not every worker in a loop, and
    # the data folder's secrets are made before any worker reads them. Several workers share their
    # rate limits unless the operator chose a store (Settings.rate_limit_store).
    settings = _settings(args)
    configure_logging(settings.log_level, settings.log_format)
    cipher = DataCipher(settings.data_key)
    # uvicorn re-raises the SIGTERM it caught once it has drained; turning it into SystemExit here
    # lets the embedded PostgreSQL be stopped cleanly on the way out.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    # The metrics folder first: each worker chooses its mode as it imports prometheus-client.
    with metrics_dir(settings.workers), database(settings) as dsn:
        settings = dataclasses.replace(settings, database_url=dsn)
        settings.export()  # each worker process builds its Settings from the environment: these
        asyncio.run(migrate_database(dsn, cipher))  # a wrong data key stops here, with a clear message
        if args.dev:
            shown_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
            print(dev_banner(_dev_client(dsn, settings), f"http://{shown_host}:{settings.port}"), flush=True)
        uvicorn.run(
            "canopy_svc.api.app:create_served_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_config=None,
            access_log=False,
            proxy_headers=False,
            timeout_graceful_shutdown=settings.graceful_timeout_seconds,
            # httptools with limits on header size, header/body time and connections (CANOPY_SVC_*).
            http=LimitedHttpToolsProtocol,
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="canopy-svc", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP server")
    _add_database_options(serve)
    serve.add_argument("--host", help=f"address to listen on ({_env_help('host')})")
    serve.add_argument("--port", type=int, help=f"port to listen on ({_env_help('port')})")
    serve.add_argument("--workers", type=int, help=f"worker processes ({_env_help('workers')})")
    serve.add_argument(
        "--graceful-timeout",
        type=int,
        dest="graceful_timeout_seconds",
        help=f"seconds in-flight requests get to finish on SIGTERM ({_env_help('graceful_timeout_seconds')})",
    )
    serve.add_argument(
        "--dev", action="store_true", help="make a dev organization and client on first start and print curl lines"
    )
    serve.set_defaults(handler=cmd_serve)

    migrate = commands.add_parser("migrate", help="apply schema.sql and data migrations")
    _add_database_options(migrate)
    migrate.set_defaults(handler=cmd_migrate)

    clients = commands.add_parser("clients", help="API clients of organizations")
    client_commands = clients.add_subparsers(dest="clients_command", required=True)
    create = client_commands.add_parser("create", help="make a client; prints its secret once")
    _add_database_options(create)
    create.add_argument("--org", required=True, help="organization name (made if new)")
    create.add_argument("--scope", nargs="+", default=["read", "write"], choices=["read", "write"])
    create.add_argument("--json", action="store_true", help="print one JSON object, for scripts")
    create.add_argument("--rate", type=_rate_arg, help="sustained requests per second (default 100)")
    create.add_argument("--burst", type=_burst_arg, help="requests allowed at once (default 100)")
    create.set_defaults(handler=cmd_clients_create)
    set_limits = client_commands.add_parser("set-limits", help="change a client's rate limit")
    _add_database_options(set_limits)
    set_limits.add_argument("client_id")
    set_limits.add_argument("--rate", type=_rate_arg, help="sustained requests per second")
    set_limits.add_argument("--burst", type=_burst_arg, help="requests allowed at once")
    set_limits.add_argument("--json", action="store_true", help="print one JSON object, for scripts")
    set_limits.set_defaults(handler=cmd_clients_set_limits)

    orgs = commands.add_parser("orgs", help="organizations' settings")
    org_commands = orgs.add_subparsers(dest="orgs_command", required=True)
    policy = org_commands.add_parser("set-duplicate-policy", help="warn (default), block or off")
    _add_database_options(policy)
    policy.add_argument("--org", required=True, help="organization name")
    policy.add_argument("policy", choices=["warn", "block", "off"])
    policy.set_defaults(handler=cmd_orgs_set_duplicate_policy)

    customers = commands.add_parser("customers", help="customers of an organization")
    customer_commands = customers.add_subparsers(dest="customers_command", required=True)
    importing = customer_commands.add_parser(
        "import",
        help="load a CSV or JSON-lines file of POST /customers bodies; resumes where a killed run stopped",
    )
    _add_database_options(importing)
    importing.add_argument("file", type=Path, help="the file (.csv, or .jsonl / .ndjson: one body per line)")
    importing.add_argument("--org", required=True, help="organization name")
    importing.add_argument("--format", choices=customer_import.FORMATS, help="csv or jsonl (default: by extension)")
    importing.add_argument("--rejects", type=Path, help="where refused rows are written (default FILE.rejects.jsonl)")
    importing.add_argument(
        "--batch-rows",
        type=_burst_arg,
        default=customer_import.DEFAULT_BATCH_ROWS,
        help=f"rows per transaction (default {customer_import.DEFAULT_BATCH_ROWS})",
    )
    importing.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes that check and encrypt rows (default: the CPUs; 0: in this process)",
    )
    importing.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    importing.set_defaults(handler=cmd_customers_import)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = args.handler
    try:
        result: int = handler(args)
    except KeyboardInterrupt:
        return 130
    except (DataKeyMismatch, DataKeyError) as exc:
        print(f"canopy-svc: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
