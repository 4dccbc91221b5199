"""The process's Prometheus metrics (prometheus-client), and their text exposition.

Labels are bounded by construction: a route is its documented template ("/customers/{customer_id}"),
never the path; a method outside the HTTP verbs is "OTHER"; the other labels are fixed words chosen
here. No label ever carries an organization, a client or anything a tenant sent.

With several worker processes (`canopy-svc serve --workers N`) the CLI sets PROMETHEUS_MULTIPROC_DIR to
a folder of its own before the workers start: prometheus-client then keeps each value in a file per
process there (it decides when it is imported), and a scrape of any worker adds up every worker's. The
gauges of live state (pool, gate) count only the processes still running ("live" modes): a worker
marks its own files dead as it stops, and a scrape drops those of workers that died without stopping.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from canopy_svc.core.settings import metrics_folder

# What generate_latest writes: the classic text format, which every Prometheus (2.x included) reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # the route label of a request no route matches (ids in 404s stay out)

# Our metrics only (not prometheus-client's global REGISTRY, which other libraries may fill).
REGISTRY = CollectorRegistry(auto_describe=True)
if metrics_folder() is None:
    # Of this process; in multi-process mode a scrape would show one worker's only, so none.
    ProcessCollector(registry=REGISTRY)
    PlatformCollector(registry=REGISTRY)

REQUESTS = Counter(
    "canopy_http_requests",
    "HTTP requests answered, by route template, method and status",
    ("route", "method", "status"),
    registry=REGISTRY,
)
LATENCY = Histogram(
    "canopy_http_request_duration_seconds",
    "Time from a request's arrival in the app to the end of its answer, by route template and method",
    ("route", "method"),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
POOL_IN_USE = Gauge(
    "canopy_db_pool_connections_in_use",
    "Pooled database connections held by a request or task (summed over live workers)",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
POOL_WAITING = Gauge(
    "canopy_db_pool_waiting",
    "Requests or tasks waiting for a pooled database connection (summed over live workers)",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
GATE_OPEN = Gauge(
    "canopy_db_gate_open",
    "1 while the database gate is open, 0 while closed (requests answered 503); the lowest of the live workers",
    multiprocess_mode="livemin",
    registry=REGISTRY,
)
GATE_OPEN.set(1)  # a process without a gate (CANOPY_SVC_DB_PROBE_SECONDS=0) lets every request through
RATE_LIMIT_DENIALS = Counter(
    "canopy_rate_limit_denials",
    "Requests answered 429, by the limit that refused them "
    "(client: an API client's rate; token_address, token_client: the failure budgets of POST /auth/token)",
    ("limit",),
    registry=REGISTRY,
)
TOKEN_FAILURES = Counter(
    "canopy_token_failures",
    "Refused credentials, by kind (bearer: a missing, bad or expired token; scope: a token without the "
    "scope; credentials: a wrong client_id or secret at POST /auth/token; metrics: a wrong operator token)",
    ("kind",),
    registry=REGISTRY,
)

# Made once each: `labels()` validates and looks up on every call, and these are fixed words.
for _limit in ("client", "token_address", "token_client"):
    RATE_LIMIT_DENIALS.labels(_limit)
for _kind in ("bearer", "scope", "credentials", "metrics"):
    TOKEN_FAILURES.labels(_kind)


# The series of each (route, method, status) seen: `labels()` checks and locks on every call, which a
# request need not pay. Bounded as the labels are: the routes' templates, METHODS, the statuses.
_request_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    method = method if method in METHODS else "OTHER"
    series = _request_series.get((route, method, status))
    if series is None:
        series = (REQUESTS.labels(route, method, str(status)), LATENCY.labels(route, method))
        _request_series[(route, method, status)] = series
    series[0].inc()
    series[1].observe(seconds)


def rate_limit_denied(limit: str) -> None:
    RATE_LIMIT_DENIALS.labels(limit).inc()


def token_failed(kind: str) -> None:
    TOKEN_FAILURES.labels(kind).inc()


@dataclass(frozen=True)
class OutboxState:
    """One outbox at scrape time: read from the database (the same from any worker, so not per process)."""

    name: str  # a fixed word: "cards", "card_closes" (a webhook delivery outbox adds its own)
    depth: int
    oldest_age_seconds: float | None  # None: no age (empty, or an outbox that keeps no queued-at time)


class _Outboxes(Collector):
    def __init__(self, outboxes: Iterable[OutboxState]) -> None:
        self.outboxes = list(outboxes)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("canopy_outbox_depth", "Items waiting in an outbox", labels=["outbox"])
        age = GaugeMetricFamily(
            "canopy_outbox_oldest_age_seconds", "Age of the oldest item waiting in an outbox", labels=["outbox"]
        )
        for outbox in self.outboxes:
            depth.add_metric([outbox.name], outbox.depth)
            if outbox.oldest_age_seconds is not None:
                age.add_metric([outbox.name], outbox.oldest_age_seconds)
        yield depth
        yield age


class _Scrape(Collector):
    def __init__(self, *parts: Collector) -> None:
        self.parts = parts

    def collect(self) -> Iterator[Metric]:
        for part in self.parts:
            yield from part.collect()


def _forget_dead_workers(path: str) -> None:
    """Live gauges of workers that died without stopping (killed, crashed; uvicorn starts another)."""
    for file in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        pid = file.rsplit("_", 1)[1].removesuffix(".db")
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            mark_process_dead(int(pid))
        except PermissionError:
            pass  # alive, another user's: not ours to judge


def render(outboxes: Iterable[OutboxState] = ()) -> bytes:
    """The text exposition: every worker's values in multi-process mode, this process's otherwise."""
    path = metrics_folder()
    if path is not None:
        _forget_dead_workers(path)
    ours: Collector = multiprocess.MultiProcessCollector(None, path=path) if path else REGISTRY  # type: ignore[no-untyped-call]
    return generate_latest(_Scrape(ours, _Outboxes(outboxes)))


def mark_process_dead(pid: int | None = None) -> None:
    """Drops this (or `pid`'s) live gauges from the multi-process folder: a stopped worker's pool is not in use."""
    path = metrics_folder()
    if path is not None:
        multiprocess.mark_process_dead(os.getpid() if pid is None else pid, path)  # type: ignore[no-untyped-call]
