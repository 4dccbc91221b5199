"""What the requests of one app share, typed: Starlette's lifespan state (its docs/lifespan.md).

The lifespan yields a `LifespanState`; the server copies it into every request's scope["state"], where
`state_of` (and the accessors of api/requests.py) read it. An app given its pool (create_app's `pool`,
in tests) needs no lifespan: its State is made at once and handed to requests that come without one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict

from starlette.types import Scope

from canopy_svc.core.notify import CardSettlements

if TYPE_CHECKING:
    import asyncpg

    from canopy_svc.api.ratelimiting import RateLimiting
    from canopy_svc.core.crypto import DataCipher
    from canopy_svc.core.db import DatabaseGate
    from canopy_svc.core.settings import Settings
    from canopy_svc.core.supervision import Supervisor
    from canopy_svc.issuers.gateway import CardGateway
    from canopy_svc.issuers.hosts import LithicHosts
    from canopy_svc.issuers.webhooks import WebhookClient
    from canopy_svc.rules.cursors import CursorCodec
    from canopy_svc.rules.passwords import RecentSecrets
    from canopy_svc.rules.tokens import TokenAuthority


@dataclass(eq=False)
class Resources:
    """Made with the app, before any database: so tests can reach (and swap) them before it serves."""

    settings: Settings
    tokens: TokenAuthority
    cipher: DataCipher
    card_gateway: CardGateway
    lithic_hosts: LithicHosts
    cursors: CursorCodec
    recent_secrets: RecentSecrets  # one per app, so one per worker process
    webhooks: WebhookClient  # its hosts check subscriptions' URLs; the delivery worker posts with it
    # Requests waiting for the cards they queued; its listener runs with the lifespan (api/card_waits.py).
    card_settlements: CardSettlements = field(default_factory=CardSettlements)


@dataclass(eq=False)
class State:
    """The app's Resources, its pool, and what is built once the pool exists."""

    resources: Resources
    pool: asyncpg.Pool
    rate_limiting: RateLimiting
    gate: DatabaseGate | None = None  # the request log reads it: a closed gate's refusals are one outage
    background: Supervisor | None = None  # None: no lifespan ran (an app given its pool)


class LifespanState(TypedDict):
    canopy: State


def state_of(scope: Scope) -> State:
    found: State = scope["state"]["canopy"]
    return found
