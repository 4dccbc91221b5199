"""Settings: the only reader of the environment.

Each setting is a field that declares its variable and its default, once (`_env`). `Settings.from_env`
reads them (the CLI's flags override them); `Settings.export` writes them back for the worker
processes `canopy-svc serve` starts, so each worker reads the settings serve decided. A secret the
environment does not give comes from the data folder (canopy_svc/core/secret_files.py).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from canopy_svc.core import secret_files
from canopy_svc.core.crypto import decode_key
from canopy_svc.issuers.hosts import ALLOWED_HOSTS_ENV, LithicHosts
from canopy_svc.issuers.webhooks import ALLOWED_HOSTS_ENV as WEBHOOK_ALLOWED_HOSTS_ENV
from canopy_svc.issuers.webhooks import WebhookHosts

RATE_LIMIT_STORES = ("memory", "postgres")
LOG_FORMATS = ("", "json", "text")  # "": by the terminal
DATA_KEY_ENV = "CANOPY_SVC_DATA_KEY"
DEFAULT_DATA_DIR = Path(".canopy-data")


def _env(name: str, default: Any, parse: Callable[[str], Any] = str, *, secret: bool = False) -> Any:
    """A setting read from the variable `name` by `parse`; unset or empty, it is `default`.
    A secret is left out of repr and never exported."""
    return field(default=default, repr=not secret, metadata={"env": name, "parse": parse, "secret": secret})


def _flag(raw: str) -> bool:
    return raw not in ("0", "false", "no")


def _words(raw: str) -> tuple[str, ...]:
    return tuple(raw.replace(",", " ").split())


def _lowercase(raw: str) -> str:
    return raw.strip().lower()


def _data_key(raw: str) -> bytes:
    return decode_key(raw, source=DATA_KEY_ENV)


def _text(value: Any) -> str:
    """A setting's value as its variable spells it (what `parse` reads back)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple):
        return " ".join(value)
    return str(value)


def _given(setting: Field[Any], environ: Mapping[str, str]) -> tuple[bool, Any]:
    raw = environ.get(setting.metadata["env"])
    return (True, setting.metadata["parse"](raw)) if raw else (False, None)


def _field(cls: type[Any], name: str) -> Field[Any]:
    return next(setting for setting in fields(cls) if setting.name == name)


def variable(cls: type[Any], name: str) -> str:
    """The environment variable of the setting `name` of `cls`."""
    return str(_field(cls, name).metadata["env"])


def _read(cls: type[Any], environ: Mapping[str, str] | None) -> dict[str, Any]:
    """The settings of `cls` that the environment gives."""
    source = os.environ if environ is None else environ
    values = {}
    for setting in fields(cls):
        given, value = _given(setting, source)
        if given:
            values[setting.name] = value
    return values


@dataclass(frozen=True)
class Settings:
    # DATABASE_URL: PostgreSQL to use; unset, `canopy-svc` starts the embedded one in data_dir.
    database_url: str | None = _env("DATABASE_URL", None)
    data_dir: Path = _env("CANOPY_SVC_DATA_DIR", DEFAULT_DATA_DIR, Path)  # noqa: RUF009 (_env is a field())
    # Signs the tokens and keys the paging cursors; unset, the data folder's jwt-secret (made once).
    jwt_secret: str = _env("CANOPY_SVC_JWT_SECRET", "", secret=True)
    token_ttl_seconds: int = _env("CANOPY_SVC_TOKEN_TTL", 3600, int)
    issuer: str = _env("CANOPY_SVC_JWT_ISSUER", "canopy-svc")
    audience: str = _env("CANOPY_SVC_JWT_AUDIENCE", "canopy-svc-api")
    pool_min_size: int = _env("CANOPY_SVC_POOL_MIN", 2, int)
    pool_max_size: int = _env("CANOPY_SVC_POOL_MAX", 10, int)
    log_level: str = _env("CANOPY_SVC_LOG_LEVEL", "INFO", str.upper)
    # "text" (one readable line per event, for a person) or "json" (one object per line, for a
    # collector); unset, text when stderr is a terminal, json otherwise (canopy_svc/core/logs.py).
    log_format: str = _env("CANOPY_SVC_LOG_FORMAT", "", _lowercase)
    # GET /metrics: unset, loopback callers only; set, only whoever sends it as a bearer token.
    metrics_token: str = _env("CANOPY_SVC_METRICS_TOKEN", "", secret=True)
    # 32 bytes for AES-GCM at rest (SSNs, Lithic keys), urlsafe base64; unset, the data folder's data-key.
    data_key: bytes = _env(DATA_KEY_ENV, b"", _data_key, secret=True)
    card_worker: bool = _env("CANOPY_SVC_CARD_WORKER", True, _flag)
    card_retry_base_seconds: float = _env("CANOPY_SVC_CARD_RETRY_BASE_SECONDS", 1.0, float)
    card_lease_seconds: float = _env("CANOPY_SVC_CARD_LEASE_SECONDS", 60.0, float)
    lithic_timeout_seconds: float = _env("CANOPY_SVC_LITHIC_TIMEOUT_SECONDS", 10.0, float)
    # How long a request that queued a card (POST /accounts with a Lithic config, POST .../cards) waits
    # after its commit for the card worker to issue it, to answer it ISSUED; 0 answers at once (PENDING).
    card_issue_wait_ms: float = _env("CANOPY_SVC_CARD_ISSUE_WAIT_MS", 3000.0, float)
    # The least time between two Lithic calls of the card worker for one organization (Lithic's
    # sandbox limits card writes per key), across every process; 0 turns pacing off.
    lithic_min_interval_ms: float = _env("CANOPY_SVC_LITHIC_MIN_INTERVAL_MS", 100.0, float)
    # The reconciler (canopy_svc/workers/reconciler.py): this process's most card read-backs from Lithic
    # per second (0 turns it off), and how often at most one card whose state can change at Lithic on
    # its own (a SINGLE_USE card, say) is read back.
    reconcile_reads_per_second: float = _env("CANOPY_SVC_RECONCILE_READS_PER_SECOND", 2.0, float)
    reconcile_min_age_seconds: float = _env("CANOPY_SVC_RECONCILE_MIN_AGE_SECONDS", 300.0, float)
    # Hosts (or host:port) a tenant's Lithic base_url may name besides Lithic's own, connected to
    # wherever they resolve (loopback for tests and the sandbox). Operator only.
    lithic_allowed_hosts: tuple[str, ...] = _env(ALLOWED_HOSTS_ENV, (), _words)
    # The database gate (canopy_svc/core/db.py DatabaseGate): a probe every db_probe_seconds (0 turns it
    # off), failing after db_probe_timeout_seconds, after which requests get a quick 503 until a
    # probe succeeds.
    db_probe_seconds: float = _env("CANOPY_SVC_DB_PROBE_SECONDS", 1.0, float)
    db_probe_timeout_seconds: float = _env("CANOPY_SVC_DB_PROBE_TIMEOUT_SECONDS", 2.0, float)
    # Rate limiting (CONTRACT section 3; canopy_svc/api/ratelimiting.py): "memory" (one process) or
    # "postgres" (shared by every worker and host on the database). Unset, memory for one worker and
    # postgres for several: a memory store would give each worker its own buckets, N times the rate.
    rate_limit_store: str = _env("CANOPY_SVC_RATE_LIMIT_STORE", "", _lowercase)
    # How long a process keeps a client's (rate, burst) from api_clients before reading them again;
    # 0 reads them on every request.
    rate_limit_cache_seconds: float = _env("CANOPY_SVC_RATE_LIMIT_CACHE_SECONDS", 5.0, float)
    # Seconds the limiter's store gets per decision before the request is let through (fail open).
    rate_limit_timeout_seconds: float = _env("CANOPY_SVC_RATE_LIMIT_TIMEOUT", 0.25, float)
    # How often the Postgres store's expired buckets are deleted.
    rate_limit_purge_seconds: float = _env("CANOPY_SVC_RATE_LIMIT_PURGE_SECONDS", 60.0, float)
    # Events and webhooks (issue 12; canopy_svc/workers/deliveries.py). A failed delivery is retried after
    # base, 2 x base, 4 x base, ... (jittered), max_attempts tries in all: about a day at the default base.
    delivery_worker: bool = _env("CANOPY_SVC_DELIVERY_WORKER", True, _flag)
    webhook_retry_base_seconds: float = _env("CANOPY_SVC_WEBHOOK_RETRY_BASE_SECONDS", 60.0, float)
    webhook_max_attempts: int = _env("CANOPY_SVC_WEBHOOK_MAX_ATTEMPTS", 12, int)
    # For a whole delivery (connect, send, answer); the lease of a delivery in flight is longer.
    webhook_timeout_seconds: float = _env("CANOPY_SVC_WEBHOOK_TIMEOUT_SECONDS", 10.0, float)
    # How long a delivery in flight is held before another process may send it again (its sender died).
    webhook_lease_seconds: float = _env("CANOPY_SVC_WEBHOOK_LEASE_SECONDS", 60.0, float)
    # Deliveries of one subscription in flight at once, per process: a slow receiver holds no more (a
    # quarter of the worker's 64 slots). 16, not 4: with 4 a busy server delivered 9/s under POST load,
    # with 16 65/s (BENCHMARKS.md).
    webhook_concurrency: int = _env("CANOPY_SVC_WEBHOOK_CONCURRENCY", 16, int)
    # Hosts (or host:port) a webhook_url may name wherever they resolve, plain http allowed to loopback
    # (tests and the sandbox); any other URL is https to a public address. Operator only.
    webhook_allowed_hosts: tuple[str, ...] = _env(WEBHOOK_ALLOWED_HOSTS_ENV, (), _words)
    # Events are kept this long for GET /events; delivered and failed deliveries (replayable) this long.
    event_retention_days: float = _env("CANOPY_SVC_EVENT_RETENTION_DAYS", 30.0, float)
    delivery_retention_days: float = _env("CANOPY_SVC_DELIVERY_RETENTION_DAYS", 5.0, float)
    # `canopy-svc serve` (its flags win): where it listens, how many worker processes, and the
    # seconds in-flight requests get to finish on SIGTERM.
    host: str = _env("CANOPY_SVC_HOST", "127.0.0.1")
    port: int = _env("CANOPY_SVC_PORT", 8000, int)
    workers: int = _env("CANOPY_SVC_WORKERS", 1, int)
    graceful_timeout_seconds: int = _env("CANOPY_SVC_GRACEFUL_TIMEOUT", 20, int)

    def __post_init__(self) -> None:
        if not self.rate_limit_store:
            object.__setattr__(self, "rate_limit_store", "postgres" if self.workers > 1 else "memory")
        if self.rate_limit_store not in RATE_LIMIT_STORES:
            raise ValueError(
                f"{variable(Settings, 'rate_limit_store')} must be one of {', '.join(RATE_LIMIT_STORES)}, "
                f"not {self.rate_limit_store!r}"
            )
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"{variable(Settings, 'log_format')} must be json or text, not {self.log_format!r}")
        LithicHosts.from_entries(self.lithic_allowed_hosts)  # a malformed entry raises here
        WebhookHosts.from_entries(self.webhook_allowed_hosts)
        if self.webhook_lease_seconds <= self.webhook_timeout_seconds:
            raise ValueError(
                f"{variable(Settings, 'webhook_lease_seconds')} must be longer than "
                f"{variable(Settings, 'webhook_timeout_seconds')}: a slow delivery would be sent twice at once"
            )
        if self.webhook_max_attempts < 1 or self.webhook_concurrency < 1 or self.webhook_retry_base_seconds <= 0:
            raise ValueError(
                f"{variable(Settings, 'webhook_max_attempts')} and {variable(Settings, 'webhook_concurrency')} "
                f"must be >= 1, {variable(Settings, 'webhook_retry_base_seconds')} > 0"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """The settings `environ` (os.environ by default) gives, `overrides` (the CLI's flags) winning.
        A secret neither gives is the data folder's, made there on first use."""
        values = {**_read(cls, environ), **overrides}
        data_dir = Path(values.get("data_dir", cls.data_dir))
        if not values.get("jwt_secret"):
            values["jwt_secret"] = secret_files.jwt_secret(data_dir)
        if not values.get("data_key"):
            values["data_key"] = secret_files.data_key(data_dir)
        return cls(**values)

    def exported(self) -> dict[str, str]:
        """The environment that gives these settings back, secrets left out (each process reads them
        where this one did: the environment it inherits, or the data folder)."""
        return {
            setting.metadata["env"]: _text(value)
            for setting in fields(self)
            if not setting.metadata["secret"] and (value := getattr(self, setting.name)) is not None
        }

    def export(self) -> None:
        """Writes these settings to this process's environment, for the processes it starts."""
        os.environ.update(self.exported())


# prometheus-client's own variable, which it reads as it is imported: `serve --workers N` sets it for
# its workers (canopy_svc/cli.py metrics_dir). Not a setting: the operator does not choose it.
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_folder() -> str | None:
    """The multi-process metrics folder, if this process has one (canopy_svc/core/metrics.py)."""
    return os.environ.get(METRICS_DIR_ENV) or None


def use_metrics_folder(path: Path | None) -> None:
    """Sets (or, None, removes) the metrics folder the processes started from now on inherit."""
    if path is None:
        os.environ.pop(METRICS_DIR_ENV, None)
    else:
        os.environ[METRICS_DIR_ENV] = str(path)


def load_data_key(data_dir: Path, environ: Mapping[str, str] | None = None) -> bytes:
    """The data key alone: CANOPY_SVC_DATA_KEY if set, else the data folder's (made there once)."""
    given, key = _given(_field(Settings, "data_key"), os.environ if environ is None else environ)
    return key if given else secret_files.data_key(data_dir)


@dataclass(frozen=True)
class HttpLimits:
    """What one HTTP connection may cost a worker (canopy_svc/core/http_protocol.py); read by each worker.

    CANOPY_SVC_MAX_HEADER_BYTES: request line and headers together (more gets 431).
    CANOPY_SVC_HEADER_TIMEOUT_SECONDS: for the whole header section, from the connection's start or
    the end of the previous response (then 408 and close).
    CANOPY_SVC_BODY_TIMEOUT_SECONDS: for the whole request body, from the end of its headers (then
    408 and close).
    CANOPY_SVC_MAX_CONNECTIONS: open connections per worker; more get 503 and close.
    """

    max_header_bytes: int = _env("CANOPY_SVC_MAX_HEADER_BYTES", 64 * 1024, int)
    header_timeout_seconds: float = _env("CANOPY_SVC_HEADER_TIMEOUT_SECONDS", 10.0, float)
    body_timeout_seconds: float = _env("CANOPY_SVC_BODY_TIMEOUT_SECONDS", 30.0, float)
    max_connections: int = _env("CANOPY_SVC_MAX_CONNECTIONS", 1000, int)

    def __post_init__(self) -> None:
        name = functools.partial(variable, HttpLimits)
        if self.max_header_bytes < 1024 or self.max_connections < 1:
            raise ValueError(f"{name('max_header_bytes')} must be >= 1024 and {name('max_connections')} >= 1")
        if not (0 < self.header_timeout_seconds < math.inf and 0 < self.body_timeout_seconds < math.inf):
            raise ValueError(f"{name('header_timeout_seconds')} and {name('body_timeout_seconds')} must be > 0")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HttpLimits:
        return cls(**_read(cls, environ))
