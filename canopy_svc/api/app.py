"""The ASGI application: routes, middleware, error rendering, and the pool's lifespan."""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import hmac
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from canopy_svc.api import metrics, openapi, routing
from canopy_svc.api.authentication import AuthenticationMiddleware
from canopy_svc.api.context import RequestContextMiddleware
from canopy_svc.api.ratelimiting import RateLimiting, RateLimitMiddleware
from canopy_svc.api.responses import error_response
from canopy_svc.api.routes import (
    accounts,
    auth,
    beneficial_owners,
    cards,
    customers,
    events,
    health,
    lithic_webhooks,
    organization,
    products,
    simulator,
    subscriptions,
)
from canopy_svc.api.state import LifespanState, Resources, State
from canopy_svc.core import metrics as process_metrics
from canopy_svc.core import supervision
from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.db import DatabaseGate, create_pool, when_available
from canopy_svc.core.settings import Settings
from canopy_svc.issuers.gateway import CardGateway
from canopy_svc.issuers.hosts import LithicHosts
from canopy_svc.issuers.lithic import LithicClient
from canopy_svc.issuers.webhooks import WebhookClient, WebhookHosts
from canopy_svc.loanpro import customers as loanpro_customers
from canopy_svc.loanpro import face as loanpro_face
from canopy_svc.rules import idempotency, lithic_sync
from canopy_svc.rules import retention as event_retention
from canopy_svc.rules.cursors import CursorCodec
from canopy_svc.rules.passwords import RecentSecrets
from canopy_svc.rules.tokens import TokenAuthority
from canopy_svc.store.data_key import ensure_key_check
from canopy_svc.store.migrations import migrate_database
from canopy_svc.wire.errors import ApiError, BadRequest, MethodNotAllowed, NotFound
from canopy_svc.wire.loanpro import PREFIX as LOANPRO_PREFIX
from canopy_svc.workers.cards import CardWorker, RetryPolicy
from canopy_svc.workers.deliveries import DeliveryPolicy, DeliveryWorker
from canopy_svc.workers.reconciler import CardReconciler

# Every endpoint /openapi.json documents, in its order; each resource module declares its own.
ENDPOINTS: list[routing.Endpoint] = [
    *auth.endpoints,
    *customers.endpoints,
    *beneficial_owners.endpoints,
    *products.endpoints,
    *accounts.endpoints,
    *cards.endpoints,
    *organization.endpoints,
    *subscriptions.endpoints,
    *events.endpoints,
    *health.endpoints,
    *lithic_webhooks.endpoints,
    *simulator.endpoints,
    *loanpro_customers.endpoints,
]


def _in_its_face(request: Request, error: ApiError) -> ApiError:
    """Under the LoanPro face's prefix, an error raised before its handlers (routing, an unknown path)
    is answered in LoanPro's shape too."""
    if request.url.path.startswith(LOANPRO_PREFIX + "/"):
        return loanpro_face.translated(error)
    return error


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(_in_its_face(request, exc))


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error: ApiError
    if exc.status_code == 404:
        error = NotFound("No route matches this path")
    elif exc.status_code == 405:
        error = MethodNotAllowed(headers=dict(exc.headers or {}))
    else:
        error = BadRequest()
    return error_response(_in_its_face(request, error))


class CanopyApp(Starlette):
    """Starlette with its Resources, made with it. Given a pool, it needs no lifespan: its State is made
    at once and handed to each request that comes without one (httpx's ASGITransport runs no lifespan)."""

    def __init__(
        self,
        resources: Resources,
        given: State | None,
        *,
        routes: Sequence[BaseRoute],
        lifespan: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(lifespan=lifespan, **kwargs)
        self.router = routing.SegmentRouter(routes, lifespan=lifespan)
        self.resources = resources
        self._given = given

    @property
    def given_state(self) -> State:
        """The State of an app made with a pool (tests reach its rate limiter here)."""
        if self._given is None:
            raise RuntimeError("this app opens its own pool: its State is the lifespan's")
        return self._given

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._given is not None and scope["type"] == "http":
            scope.setdefault("state", {}).setdefault("canopy", self._given)
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, *, pool: asyncpg.Pool | None = None) -> CanopyApp:
    """The app. Given a pool (tests), it uses it; otherwise its lifespan migrates and opens one."""
    settings = settings or Settings.from_env()
    cipher = DataCipher(settings.data_key)
    lithic_hosts = LithicHosts.from_entries(settings.lithic_allowed_hosts)
    webhook_hosts = WebhookHosts.from_entries(settings.webhook_allowed_hosts)
    resources = Resources(
        settings=settings,
        tokens=TokenAuthority(
            settings.jwt_secret,
            issuer=settings.issuer,
            audience=settings.audience,
            ttl_seconds=settings.token_ttl_seconds,
        ),
        cipher=cipher,
        card_gateway=CardGateway(
            cipher, lithic=LithicClient(timeout=settings.lithic_timeout_seconds, hosts=lithic_hosts)
        ),
        lithic_hosts=lithic_hosts,
        cursors=CursorCodec(hmac.new(settings.jwt_secret.encode(), b"paging cursors", hashlib.sha256).digest()),
        recent_secrets=RecentSecrets(),
        webhooks=WebhookClient(webhook_hosts, timeout=settings.webhook_timeout_seconds),
    )
    given = None if pool is None else State(resources, pool, RateLimiting(settings, pool))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[LifespanState]:
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(process_metrics.mark_process_dead)  # last: this worker's live gauges end with it
            stack.push_async_callback(resources.card_gateway.aclose)
            stack.push_async_callback(resources.webhooks.aclose)
            gate = None
            if given is None:
                if settings.database_url is None:
                    raise RuntimeError("DATABASE_URL is not set (canopy-svc serve sets it for the embedded server)")
                dsn = settings.database_url
                await when_available(lambda: migrate_database(dsn, cipher), what="migrate")
                if settings.db_probe_seconds > 0:
                    gate = DatabaseGate(interval=settings.db_probe_seconds, timeout=settings.db_probe_timeout_seconds)
                opened = await when_available(
                    lambda: create_pool(
                        dsn, min_size=settings.pool_min_size, max_size=settings.pool_max_size, gate=gate
                    ),
                    what="pool",
                )
                stack.push_async_callback(opened.close)
                rate_limiting = RateLimiting(settings, opened)  # made now that the pool exists
            else:
                opened, rate_limiting = given.pool, given.rate_limiting
                await ensure_key_check(opened, cipher.key_check(), cipher.fingerprint())
            # Every background task supervised: restarted after any failure, and reported by /readyz
            # while down. Stopped before the pool closes (the exit stack runs this callback first).
            background = supervision.Supervisor()
            stack.push_async_callback(background.aclose)
            if gate is not None:
                background.start("database-gate", functools.partial(gate.watch, dsn))
            if settings.database_url is not None and settings.card_issue_wait_ms > 0:
                background.start(
                    "card-settlements", functools.partial(resources.card_settlements.listen, settings.database_url)
                )
            if settings.card_worker:
                worker = CardWorker(
                    opened,
                    settings.database_url,
                    resources.card_gateway,
                    policy=RetryPolicy(
                        base_seconds=settings.card_retry_base_seconds, lease_seconds=settings.card_lease_seconds
                    ),
                    min_interval_seconds=settings.lithic_min_interval_ms / 1000,
                )
                background.start("card-worker", worker.run)
            if settings.reconcile_reads_per_second > 0:
                reconciler = CardReconciler(
                    opened,
                    resources.card_gateway,
                    reads_per_second=settings.reconcile_reads_per_second,
                    min_age_seconds=settings.reconcile_min_age_seconds,
                )
                background.start("card-reconciler", reconciler.run)
            background.start(
                "lithic-webhook-ids",
                functools.partial(
                    supervision.run_every,
                    3600,
                    "lithic-webhook-ids",
                    functools.partial(lithic_sync.purge_webhook_ids, opened),
                ),
            )
            if settings.delivery_worker:
                deliveries = DeliveryWorker(
                    opened,
                    settings.database_url,
                    resources.webhooks,
                    cipher,
                    policy=DeliveryPolicy(
                        base_seconds=settings.webhook_retry_base_seconds,
                        max_attempts=settings.webhook_max_attempts,
                        lease_seconds=settings.webhook_lease_seconds,
                    ),
                    per_subscription=settings.webhook_concurrency,
                )
                background.start("delivery-worker", deliveries.run)
            background.start(
                "event-retention",
                functools.partial(
                    supervision.run_every,
                    3600,
                    "event-retention",
                    functools.partial(
                        event_retention.purge_expired,
                        opened,
                        event_days=settings.event_retention_days,
                        delivery_days=settings.delivery_retention_days,
                    ),
                ),
            )
            background.start(
                "idempotency-keys",
                functools.partial(
                    supervision.run_every, 300, "idempotency-keys", functools.partial(idempotency.purge_expired, opened)
                ),
            )
            if rate_limiting.store == "postgres":
                background.start(
                    "rate-limit-buckets",
                    functools.partial(
                        supervision.run_every,
                        settings.rate_limit_purge_seconds,
                        "rate-limit-buckets",
                        rate_limiting.postgres_store().purge_expired,
                    ),
                )
            yield {"canopy": State(resources, opened, rate_limiting, gate=gate, background=background)}

    served = [
        *ENDPOINTS,
        *openapi.endpoints(ENDPOINTS, lithic_hosts=lithic_hosts, webhook_hosts=webhook_hosts),
        *metrics.endpoints(),
    ]
    routes = routing.routes(served)
    return CanopyApp(
        resources,
        given,
        routes=routes,
        middleware=[
            Middleware(RequestContextMiddleware, templates=metrics.RouteTemplates(list(routes))),
            Middleware(
                AuthenticationMiddleware,
                tokens=resources.tokens,
                public_paths=routing.public_paths(served),
                scopes=routing.scopes_by_method(served),
            ),
            Middleware(RateLimitMiddleware),
        ],
        exception_handlers={ApiError: _api_error, HTTPException: _http_exception},
        lifespan=lifespan,
    )


def create_served_app() -> Starlette:
    """The factory uvicorn calls in each worker process: logging and settings from the environment."""
    from canopy_svc.core.logs import configure_logging

    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    # The modules and tables loaded so far live as long as the process: keep the collector from
    # walking them again and again (gen-2 passes over them were the long tail of request latency),
    # and collect the young generation less often, as servers that allocate per request do.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    return app
