"""`canopy-svc`: serve, migrate, and manage organizations' API clients."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg

from canopy_svc.api import examples
from canopy_svc.config import DEFAULT_DATA_DIR, Settings, load_or_create_secret
from canopy_svc.crypto import DataCipher, DataKeyError, load_data_key
from canopy_svc.db import migrate_database
from canopy_svc.migrations import migrate
from canopy_svc.rules.ids import new_client_id, new_client_secret
from canopy_svc.rules.passwords import hash_secret
from canopy_svc.store import api_clients, organizations
from canopy_svc.store.data_key import DataKeyMismatch

DEV_ORG = "dev"
DEV_CLIENT_FILE = "dev-client.json"


def _add_database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path,
        default=Path(os.environ.get("CANOPY_SVC_DATA_DIR", DEFAULT_DATA_DIR)),
        help="folder of the embedded PostgreSQL and local keys (env CANOPY_SVC_DATA_DIR; default "
             f"{DEFAULT_DATA_DIR}); unused for the database when DATABASE_URL is set",
    )


@contextmanager
def database(data_dir: Path) -> Iterator[str]:
    """DATABASE_URL if set (an outage of it is its operator's: the gate waits for it), else the embedded
    PostgreSQL in data_dir: restarted if its postmaster dies meanwhile, stopped after, if we started it."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    from canopy_svc.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(data_dir, supervise=True)
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


async def _create_client(dsn: str, org: str, scopes: str, cipher: DataCipher, *,
                         rate: float | None = None, burst: int | None = None) -> dict[str, Any]:
    async with _migrated(dsn, cipher) as conn, conn.transaction():
        org_id = await organizations.get_or_create_organization(conn, org)
        client_id, secret = new_client_id(), new_client_secret()
        await organizations.insert_client(conn, org_id, client_id, hash_secret(secret), scopes)
        limits = await api_clients.set_limits(conn, client_id, rate=rate, burst=burst)
        assert limits is not None
    return {"org": org, "client_id": client_id, "client_secret": secret,
            "rate_per_second": limits[0], "burst": limits[1]}


async def _set_limits(dsn: str, client_id: str, rate: float | None, burst: int | None,
                      cipher: DataCipher) -> tuple[float, int] | None:
    async with _migrated(dsn, cipher) as conn:
        return await api_clients.set_limits(conn, client_id, rate=rate, burst=burst)


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
        return await organizations.find_client(conn, client_id) is not None
    finally:
        await conn.close()


def cmd_clients_create(args: argparse.Namespace) -> int:
    with database(args.data_dir) as dsn:
        created = asyncio.run(_create_client(dsn, args.org, " ".join(args.scope), _cipher(args.data_dir),
                                             rate=args.rate, burst=args.burst))
    if args.json:
        print(json.dumps(created))
    else:
        print(f"organization:  {created['org']}")
        print(f"client_id:     {created['client_id']}")
        print(f"client_secret: {created['client_secret']}")
        print(f"rate:          {created['rate_per_second']:g} requests/s, burst {created['burst']}")
        print("The secret is shown only now; it is stored as a hash.", file=sys.stderr)
    return 0


def cmd_clients_set_limits(args: argparse.Namespace) -> int:
    if args.rate is None and args.burst is None:
        print("canopy-svc clients set-limits: give --rate, --burst or both", file=sys.stderr)
        return 2
    with database(args.data_dir) as dsn:
        limits = asyncio.run(_set_limits(dsn, args.client_id, args.rate, args.burst, _cipher(args.data_dir)))
    if limits is None:
        print(f"canopy-svc: no API client {args.client_id!r}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"client_id": args.client_id, "rate_per_second": limits[0], "burst": limits[1]}))
    else:
        print(f"client_id: {args.client_id}")
        print(f"rate:      {limits[0]:g} requests/s")
        print(f"burst:     {limits[1]}")
        print("Running servers use the new limits within CANOPY_SVC_RATE_LIMIT_CACHE_SECONDS (default 5).",
              file=sys.stderr)
    return 0


async def _set_duplicate_policy(dsn: str, org: str, policy: str, cipher: DataCipher) -> bool:
    async with _migrated(dsn, cipher) as conn:
        org_id = await organizations.find_organization(conn, org)
        if org_id is None:
            return False
        await organizations.set_duplicate_policy(conn, org_id, policy)
        return True


def cmd_orgs_set_duplicate_policy(args: argparse.Namespace) -> int:
    with database(args.data_dir) as dsn:
        found = asyncio.run(_set_duplicate_policy(dsn, args.org, args.policy, _cipher(args.data_dir)))
    if not found:
        print(f"canopy-svc: no organization named {args.org!r}", file=sys.stderr)
        return 1
    print(f"organization {args.org}: duplicate_customer_policy = {args.policy}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    with database(args.data_dir) as dsn:
        version = asyncio.run(migrate_database(dsn, _cipher(args.data_dir)))
    print(f"schema at version {version}")
    return 0


def _cipher(data_dir: Path) -> DataCipher:
    return DataCipher(load_data_key(data_dir))


def _dev_client(dsn: str, data_dir: Path) -> dict[str, Any]:
    """The sandbox's dev client: made on first start, kept (0600) in the data folder after."""
    path = data_dir / DEV_CLIENT_FILE
    if path.exists():
        saved: dict[str, Any] = json.loads(path.read_text())
        if asyncio.run(_client_exists(dsn, saved["client_id"])):
            return saved
    created = asyncio.run(_create_client(dsn, DEV_ORG, "read write", _cipher(data_dir)))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(created, handle)
    return created


def dev_banner(client: dict[str, Any], base_url: str) -> str:
    credentials = json.dumps({"client_id": client["client_id"], "client_secret": client["client_secret"]})
    return "\n".join([
        "",
        f"canopy-svc sandbox on {base_url}  (organization '{client['org']}', client {client['client_id']})",
        "Paste these two lines into a shell: the first gets a token, the second creates a customer.",
        "",
        f"TOKEN=$(curl -s -X POST {base_url}/auth/token -H 'Content-Type: application/json' "
        f"-d '{credentials}' | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/')",
        f"curl -s -X POST {base_url}/customers -H \"Authorization: Bearer $TOKEN\" "
        f"-H 'Content-Type: application/json' -d '{json.dumps(examples.CUSTOMER, separators=(',', ':'))}'",
        "",
        f"API docs: {base_url}/docs",
        "",
    ])


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from canopy_svc.http_protocol import LimitedHttpToolsProtocol  # reads its limits: a bad one stops here
    from canopy_svc.logs import configure_logging

    configure_logging(os.environ.get("CANOPY_SVC_LOG_LEVEL", "INFO"))
    data_dir: Path = args.data_dir
    os.environ["CANOPY_SVC_DATA_DIR"] = str(data_dir)
    # Made here, once, so every worker process reads the same secrets.
    if not os.environ.get("CANOPY_SVC_JWT_SECRET"):
        load_or_create_secret(data_dir, "jwt-secret")
    # Several workers must share their rate limits (CONTRACT section 3): the memory store would give
    # each worker its own buckets, so a client would get N times its rate. The operator's choice wins.
    if args.workers > 1 and not os.environ.get("CANOPY_SVC_RATE_LIMIT_STORE"):
        os.environ["CANOPY_SVC_RATE_LIMIT_STORE"] = "postgres"
    Settings.from_env()  # a bad CANOPY_SVC_* setting stops serve here, not every worker in a loop
    cipher = _cipher(data_dir)
    # uvicorn re-raises the SIGTERM it caught once it has drained; turning it into SystemExit here
    # lets the embedded PostgreSQL be stopped cleanly on the way out.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    with database(data_dir) as dsn:
        os.environ["DATABASE_URL"] = dsn
        asyncio.run(migrate_database(dsn, cipher))  # a wrong data key stops here, with a clear message
        if args.dev:
            shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host  # noqa: S104
            print(dev_banner(_dev_client(dsn, data_dir), f"http://{shown_host}:{args.port}"), flush=True)
        uvicorn.run(
            "canopy_svc.api.app:create_served_app", factory=True, host=args.host, port=args.port,
            workers=args.workers, log_config=None, access_log=False, proxy_headers=False,
            timeout_graceful_shutdown=args.graceful_timeout,
            # httptools with limits on header size, header/body time and connections (CANOPY_SVC_*).
            http=LimitedHttpToolsProtocol,
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="canopy-svc", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP server")
    _add_database_options(serve)
    serve.add_argument("--host", default=os.environ.get("CANOPY_SVC_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("CANOPY_SVC_PORT", "8000")))
    serve.add_argument("--workers", type=int, default=int(os.environ.get("CANOPY_SVC_WORKERS", "1")))
    serve.add_argument("--graceful-timeout", type=int,
                       default=int(os.environ.get("CANOPY_SVC_GRACEFUL_TIMEOUT", "20")),
                       help="seconds in-flight requests get to finish on SIGTERM (env CANOPY_SVC_GRACEFUL_TIMEOUT)")
    serve.add_argument("--dev", action="store_true",
                       help="make a dev organization and client on first start and print curl lines")
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
