"""The ASGI application: routes, middleware, error rendering, and the pool's lifespan."""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import hmac
from collections.abc import AsyncIterator

import asyncpg
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from canopy_svc import maintenance
from canopy_svc.api import openapi
from canopy_svc.api.authentication import AuthenticationMiddleware
from canopy_svc.api.context import RequestContextMiddleware
from canopy_svc.api.ratelimiting import RateLimiting, RateLimitMiddleware
from canopy_svc.api.responses import error_response
from canopy_svc.api.routes import accounts, auth, customers, health, organization
from canopy_svc.card_worker import CardWorker, RetryPolicy
from canopy_svc.config import Settings
from canopy_svc.crypto import DataCipher
from canopy_svc.db import DatabaseGate, create_pool, migrate_database, when_available
from canopy_svc.errors import ApiError, BadRequest, MethodNotAllowed, NotFound
from canopy_svc.issuers.gateway import CardGateway
from canopy_svc.issuers.hosts import LithicHosts
from canopy_svc.issuers.lithic import LithicClient
from canopy_svc.rules import models
from canopy_svc.rules.cursors import CursorCodec
from canopy_svc.rules.customers import MAX_SEARCH_WORDS
from canopy_svc.rules.tokens import TokenAuthority
from canopy_svc.store import idempotency
from canopy_svc.store.data_key import ensure_key_check

# Request examples for /docs (and the first requests schemathesis sends): the README's.
_CUSTOMER_EXAMPLE = {
    "customer_id": "0x1234", "name_prefix": "Dr.", "name_first": "Miriam", "name_middle": "Louise",
    "name_last": "Trevino", "name_suffix": "Jr", "phone_number": "+14105556789",
    "address_line_one": "12 Strawberry Road", "address_line_two": "Suite 101", "address_city": "Atlanta",
    "address_state": "GA", "address_zip": "99999-1000", "address_country_code": "US", "ssn": "888888888",
    "international_customer_id": "9999999999", "email": "marissa@protonmail.com", "date_of_birth": "1985-06-20",
    "business_details": {"business_legal_name": "Umbrella Corporation", "doing_business_as": "Umbrella",
                         "business_ein": "888-88-8888"},
}  # fmt: skip
_PRODUCT_EXAMPLE = {"product_id": "prod-1", "product_overview": {"product_name": "Card", "product_type": "REVOLVING"}}
_ACCOUNT_EXAMPLE = {"account_id": "acc-1", "product_id": "prod-1", "summary": {"credit_limit_cents": 500000},
                    "assign_customers": [{"customer_id": "0x1234", "customer_account_role": "PRIMARY"}]}

OPERATIONS = [
    openapi.Operation("POST", "/auth/token", "Exchange client credentials for a bearer token",
                      models.TokenResponse, models.TokenRequest, public=True, errors=(401, 429, 500, 503)),
    openapi.Operation("POST", "/customers", "Create a customer", models.Customer, models.CustomerCreate,
                      errors=(401, 403, 404, 409, 429, 500, 503), example=_CUSTOMER_EXAMPLE),
    openapi.Operation("GET", "/customers", "List customers, oldest first", models.CustomerList,
                      query=openapi.listing_query(search_parameters={"type": "string", "description": (
                          f"At most {MAX_SEARCH_WORDS} words (runs of letters and digits), "
                          "each matched at the start of names and business names")})),
    openapi.Operation("GET", "/customers/{customer_id}", "Get a customer", models.Customer,
                      errors=(401, 403, 404, 429, 500, 503)),
    openapi.Operation("PUT", "/customers/{customer_id}", "Update a customer", models.Customer,
                      models.CustomerUpdate, errors=(401, 403, 404, 409, 429, 500, 503),
                      example={"email": "miriam@example.com", "address_line_two": None}),
    openapi.Operation("PATCH", "/customers/{customer_id}", "Update a customer (same as PUT)",
                      models.Customer, models.CustomerUpdate, errors=(401, 403, 404, 409, 429, 500, 503),
                      example={"email": "miriam@example.com", "address_line_two": None}),
    openapi.Operation("GET", "/customers/{customer_id}/accounts", "The accounts a customer is on",
                      models.AccountList, query=openapi.listing_query(),
                      errors=(401, 403, 404, 429, 500, 503)),
    openapi.Operation("GET", "/customers/accounts", "Every customer-account link (default limit 30)",
                      models.CustomerAccountLinkList, query=openapi.listing_query(default_limit=30)),
    openapi.Operation("POST", "/products", "Create a product", models.Product, models.ProductCreate,
                      errors=(401, 403, 409, 429, 500, 503), example=_PRODUCT_EXAMPLE),
    openapi.Operation("GET", "/products", "List products", models.ProductList, query=openapi.listing_query()),
    openapi.Operation("GET", "/products/{product_id}", "Get a product", models.Product,
                      errors=(401, 403, 404, 429, 500, 503)),
    openapi.Operation("POST", "/accounts", "Create an account, optionally with customers", models.Account,
                      models.AccountCreate, errors=(401, 403, 404, 409, 429, 500, 503), example=_ACCOUNT_EXAMPLE),
    openapi.Operation("GET", "/accounts", "List accounts", models.AccountList, query=openapi.listing_query()),
    openapi.Operation("GET", "/accounts/{account_id}", "Get an account with its customers and cards",
                      models.Account, errors=(401, 403, 404, 429, 500, 503)),
    openapi.Operation("POST", "/accounts/{account_id}/customers/{customer_id}/cards",
                      "Issue a card for a customer on an account", models.CardDetails, models.CardCreate,
                      errors=(401, 403, 404, 429, 500, 503),
                      example={"spend_limit": 100000, "lithic": {"type": "SINGLE_USE", "memo": "One-off"}}),
    openapi.Operation("PUT", "/accounts/{account_id}/customers/{customer_id}/cards",
                      "Change the state or spend limit of the link's newest card at Lithic", models.CardDetails,
                      models.CardUpdate, errors=(401, 403, 404, 409, 429, 500, 503), example={"state": "PAUSED"}),
    openapi.Operation("GET", "/organization/issuer_processors", "The organization's Lithic settings (key masked)",
                      models.IssuerProcessors),
    openapi.Operation("PUT", "/organization/issuer_processors", "Set the organization's Lithic key",
                      models.IssuerProcessors, models.IssuerProcessorsUpdate),
    openapi.Operation("GET", "/organization/settings", "The organization's settings", models.OrganizationSettings),
    openapi.Operation("PUT", "/organization/settings", "Change the organization's duplicate-customer policy",
                      models.OrganizationSettings, models.OrganizationSettingsUpdate,
                      example={"duplicate_customer_policy": "warn"}),
    openapi.Operation("GET", "/healthz", "Process is up", models.Health, public=True, errors=()),
    openapi.Operation("GET", "/readyz", "Database is reachable", models.Health, public=True, errors=(503,)),
]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error: ApiError
    if exc.status_code == 404:
        error = NotFound("No route matches this path")
    elif exc.status_code == 405:
        error = MethodNotAllowed(headers=dict(exc.headers or {}))
    else:
        error = BadRequest()
    return error_response(error)


def create_app(settings: Settings | None = None, *, pool: asyncpg.Pool | None = None) -> Starlette:
    """The app. Given a pool (tests), it uses it; otherwise its lifespan migrates and opens one."""
    settings = settings or Settings.from_env()
    tokens = TokenAuthority(settings.jwt_secret, issuer=settings.issuer, audience=settings.audience,
                            ttl_seconds=settings.token_ttl_seconds)

    cipher = DataCipher(settings.data_key)
    lithic_hosts = LithicHosts.from_entries(settings.lithic_allowed_hosts)
    gateway = CardGateway(cipher, lithic=LithicClient(timeout=settings.lithic_timeout_seconds, hosts=lithic_hosts))
    # The pool is the app's (passed in, or opened by the lifespan); read when first needed.
    rate_limiting = RateLimiting(settings, lambda: getattr(app.state, "pool", None))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(gateway.aclose)
            gate = None
            if pool is None:
                if settings.database_url is None:
                    raise RuntimeError("DATABASE_URL is not set (canopy-svc serve sets it for the embedded server)")
                dsn = settings.database_url
                await when_available(lambda: migrate_database(dsn, cipher), what="migrate")
                if settings.db_probe_seconds > 0:
                    gate = DatabaseGate(interval=settings.db_probe_seconds,
                                        timeout=settings.db_probe_timeout_seconds)
                app.state.pool = await when_available(lambda: create_pool(
                    dsn, min_size=settings.pool_min_size, max_size=settings.pool_max_size, gate=gate), what="pool")
                stack.push_async_callback(app.state.pool.close)
            else:
                await ensure_key_check(app.state.pool, cipher.key_check(), cipher.fingerprint())
            app.state.gate = gate  # the request log reads it: a closed gate's refusals are one outage
            # Every background task supervised: restarted after any failure, and reported by /readyz
            # while down. Stopped before the pool closes (the exit stack runs this callback first).
            background = app.state.background = maintenance.Supervisor()
            stack.push_async_callback(background.aclose)
            if gate is not None:
                background.start("database-gate", functools.partial(gate.watch, settings.database_url))
            if settings.card_worker:
                worker = CardWorker(app.state.pool, settings.database_url, gateway, policy=RetryPolicy(
                    base_seconds=settings.card_retry_base_seconds, lease_seconds=settings.card_lease_seconds))
                background.start("card-worker", worker.run)
            background.start("idempotency-keys", functools.partial(
                maintenance.run_every, 300, "idempotency-keys",
                functools.partial(idempotency.purge_expired, app.state.pool)))
            if rate_limiting.store == "postgres":
                buckets = rate_limiting.postgres_store()  # made now that the pool exists
                background.start("rate-limit-buckets", functools.partial(
                    maintenance.run_every, settings.rate_limit_purge_seconds, "rate-limit-buckets",
                    buckets.purge_expired))
            yield

    app = Starlette(
        routes=[*auth.routes, *customers.routes, *accounts.routes, *organization.routes, *health.routes,
                *openapi.routes(OPERATIONS)],
        middleware=[
            Middleware(RequestContextMiddleware),
            Middleware(AuthenticationMiddleware, tokens=tokens),
            Middleware(RateLimitMiddleware, limiting=rate_limiting),
        ],
        exception_handlers={ApiError: _api_error, HTTPException: _http_exception},
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.tokens = tokens
    app.state.cipher = cipher
    app.state.card_gateway = gateway
    app.state.lithic_hosts = lithic_hosts
    app.state.rate_limiting = rate_limiting
    app.state.cursors = CursorCodec(hmac.new(settings.jwt_secret.encode(), b"paging cursors",
                                             hashlib.sha256).digest())
    if pool is not None:
        app.state.pool = pool
    return app


def create_served_app() -> Starlette:
    """The factory uvicorn calls in each worker process: JSON logs, settings from the environment."""
    from canopy_svc.logs import configure_logging

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    app = create_app(settings)
    # The modules and tables loaded so far live as long as the process: keep the collector from
    # walking them again and again (gen-2 passes over them were the long tail of request latency),
    # and collect the young generation less often, as servers that allocate per request do.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    return app
