"""Settings, read once from the environment (and the CLI, which writes the same variables)."""

from __future__ import annotations

import base64
import contextlib
import math
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATA_DIR = ".canopy-data"
RATE_LIMIT_STORES = ("memory", "postgres")


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    jwt_secret: str = field(default="", repr=False)
    token_ttl_seconds: int = 3600
    issuer: str = "canopy-svc"
    audience: str = "canopy-svc-api"
    pool_min_size: int = 2
    pool_max_size: int = 10
    log_level: str = "INFO"
    # 32 bytes for AES-GCM at rest (SSNs, Lithic keys): CANOPY_SVC_DATA_KEY or <data_dir>/data-key.
    data_key: bytes = field(default=b"", repr=False)
    card_worker: bool = True
    card_retry_base_seconds: float = 1.0
    card_lease_seconds: float = 60.0
    lithic_timeout_seconds: float = 10.0
    # CANOPY_SVC_LITHIC_ALLOWED_HOSTS: hosts (or host:port) a tenant's Lithic base_url may name besides
    # Lithic's own, connected to wherever they resolve (loopback for tests and the sandbox). Operator only.
    lithic_allowed_hosts: tuple[str, ...] = ()
    # The database gate (canopy_svc/db.py DatabaseGate): a probe every CANOPY_SVC_DB_PROBE_SECONDS
    # (0 turns it off), failing after CANOPY_SVC_DB_PROBE_TIMEOUT_SECONDS, after which requests get a
    # quick 503 until a probe succeeds.
    db_probe_seconds: float = 1.0
    db_probe_timeout_seconds: float = 2.0
    # Rate limiting (CONTRACT section 3; canopy_svc/api/ratelimiting.py).
    # CANOPY_SVC_RATE_LIMIT_STORE: "memory" (one process; the default) or "postgres" (shared by every
    # worker and host on the database). `canopy-svc serve --workers N` with N > 1 sets it to "postgres"
    # unless the operator set it.
    rate_limit_store: str = "memory"
    # CANOPY_SVC_RATE_LIMIT_CACHE_SECONDS: how long a process keeps a client's (rate, burst) from
    # api_clients before reading them again; 0 reads them on every request. Default 5.
    rate_limit_cache_seconds: float = 5.0
    # CANOPY_SVC_RATE_LIMIT_TIMEOUT: seconds the limiter's store gets per decision before the request
    # is let through (fail open). Default 0.25.
    rate_limit_timeout_seconds: float = 0.25
    # CANOPY_SVC_RATE_LIMIT_PURGE_SECONDS: how often the Postgres store's expired buckets are
    # deleted. Default 60.
    rate_limit_purge_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.rate_limit_store not in RATE_LIMIT_STORES:
            raise ValueError(f"CANOPY_SVC_RATE_LIMIT_STORE must be one of {', '.join(RATE_LIMIT_STORES)}, "
                             f"not {self.rate_limit_store!r}")
        from canopy_svc.issuers.hosts import LithicHosts

        LithicHosts.from_entries(self.lithic_allowed_hosts)  # a malformed entry raises here

    @classmethod
    def from_env(cls) -> Settings:
        from canopy_svc.crypto import load_data_key

        data_dir = Path(os.environ.get("CANOPY_SVC_DATA_DIR", DEFAULT_DATA_DIR))
        jwt_secret = os.environ.get("CANOPY_SVC_JWT_SECRET") or load_or_create_secret(data_dir, "jwt-secret")
        return cls(
            data_key=load_data_key(data_dir),
            card_worker=os.environ.get("CANOPY_SVC_CARD_WORKER", "1") not in ("0", "false", "no"),
            card_retry_base_seconds=_float_env("CANOPY_SVC_CARD_RETRY_BASE_SECONDS", cls.card_retry_base_seconds),
            card_lease_seconds=_float_env("CANOPY_SVC_CARD_LEASE_SECONDS", cls.card_lease_seconds),
            lithic_timeout_seconds=_float_env("CANOPY_SVC_LITHIC_TIMEOUT_SECONDS", cls.lithic_timeout_seconds),
            lithic_allowed_hosts=tuple(os.environ.get("CANOPY_SVC_LITHIC_ALLOWED_HOSTS", "").replace(",", " ").split()),
            db_probe_seconds=_float_env("CANOPY_SVC_DB_PROBE_SECONDS", cls.db_probe_seconds),
            db_probe_timeout_seconds=_float_env("CANOPY_SVC_DB_PROBE_TIMEOUT_SECONDS", cls.db_probe_timeout_seconds),
            database_url=os.environ.get("DATABASE_URL") or None,
            data_dir=data_dir,
            jwt_secret=jwt_secret,
            token_ttl_seconds=_int_env("CANOPY_SVC_TOKEN_TTL", cls.token_ttl_seconds),
            issuer=os.environ.get("CANOPY_SVC_JWT_ISSUER", "canopy-svc"),
            audience=os.environ.get("CANOPY_SVC_JWT_AUDIENCE", "canopy-svc-api"),
            pool_min_size=_int_env("CANOPY_SVC_POOL_MIN", cls.pool_min_size),
            pool_max_size=_int_env("CANOPY_SVC_POOL_MAX", cls.pool_max_size),
            log_level=os.environ.get("CANOPY_SVC_LOG_LEVEL", "INFO").upper(),
            rate_limit_store=(os.environ.get("CANOPY_SVC_RATE_LIMIT_STORE") or "memory").strip().lower(),
            rate_limit_cache_seconds=_float_env("CANOPY_SVC_RATE_LIMIT_CACHE_SECONDS", cls.rate_limit_cache_seconds),
            rate_limit_timeout_seconds=_float_env("CANOPY_SVC_RATE_LIMIT_TIMEOUT", cls.rate_limit_timeout_seconds),
            rate_limit_purge_seconds=_float_env("CANOPY_SVC_RATE_LIMIT_PURGE_SECONDS", cls.rate_limit_purge_seconds),
        )


@dataclass(frozen=True)
class HttpLimits:
    """What one HTTP connection may cost a worker (canopy_svc/http_protocol.py); read by each worker.

    CANOPY_SVC_MAX_HEADER_BYTES: request line and headers together (default 64 KiB; more gets 431).
    CANOPY_SVC_HEADER_TIMEOUT_SECONDS: for the whole header section, from the connection's start or
    the end of the previous response (default 10; then 408 and close).
    CANOPY_SVC_BODY_TIMEOUT_SECONDS: for the whole request body, from the end of its headers
    (default 30; then 408 and close).
    CANOPY_SVC_MAX_CONNECTIONS: open connections per worker (default 1000); more get 503 and close.
    """

    max_header_bytes: int = 64 * 1024
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    max_connections: int = 1000

    def __post_init__(self) -> None:
        if self.max_header_bytes < 1024 or self.max_connections < 1:
            raise ValueError("CANOPY_SVC_MAX_HEADER_BYTES must be >= 1024 and CANOPY_SVC_MAX_CONNECTIONS >= 1")
        if not (0 < self.header_timeout_seconds < math.inf and 0 < self.body_timeout_seconds < math.inf):
            raise ValueError("CANOPY_SVC_HEADER_TIMEOUT_SECONDS and CANOPY_SVC_BODY_TIMEOUT_SECONDS must be > 0")

    @classmethod
    def from_env(cls) -> HttpLimits:
        return cls(
            max_header_bytes=_int_env("CANOPY_SVC_MAX_HEADER_BYTES", cls.max_header_bytes),
            header_timeout_seconds=_float_env("CANOPY_SVC_HEADER_TIMEOUT_SECONDS", cls.header_timeout_seconds),
            body_timeout_seconds=_float_env("CANOPY_SVC_BODY_TIMEOUT_SECONDS", cls.body_timeout_seconds),
            max_connections=_int_env("CANOPY_SVC_MAX_CONNECTIONS", cls.max_connections),
        )


def load_or_create_secret(data_dir: Path, name: str, nbytes: int = 32) -> str:
    """A random secret made once and kept in the data folder (mode 0600), for the sandbox.

    Production sets the matching environment variable instead, so no secret sits on disk.
    """
    path = data_dir / name
    if not path.exists():
        value = base64.urlsafe_b64encode(secrets.token_bytes(nbytes)).decode().rstrip("=")
        publish_secret_file(path, value)
    return path.read_text().strip()


def publish_secret_file(path: Path, text: str) -> None:
    """Publish a complete secret file atomically; whoever links first wins, others use theirs.

    A plain O_EXCL create on the final name would let a concurrent starter (another worker) read
    the file while it is still empty, so it is written to an O_EXCL temp file and hard-linked into
    place (link fails if the name exists, exactly like O_EXCL, but the content is already complete).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process won the race: use its secret
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
