"""Webhook subscriptions, Canopy's routes: subscribe (the secret shown once), list, unsubscribe and
resubscribe, a test event, and the replay of failed deliveries."""

from __future__ import annotations

import asyncpg

from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.dbtypes import Conn, Queryable, Row
from canopy_svc.issuers.webhooks import WebhookHosts, new_secret
from canopy_svc.rules import events
from canopy_svc.rules.cursors import CursorCodec
from canopy_svc.rules.ids import base62_id
from canopy_svc.rules.paging import PageRequest, keyset_page
from canopy_svc.rules.validation import BodyDecoder
from canopy_svc.store import webhooks as store
from canopy_svc.wire.errors import InvalidInput, NotFound, detail
from canopy_svc.wire.models import (
    Description,
    ReplayedDeliveries,
    Subscription,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionList,
)

SUBSCRIPTION_DECODER = BodyDecoder(SubscriptionCreate)
CURSOR_KIND = "subscriptions"
# Canopy's words.
CREATED = "Webhook created"
TRIGGERED = "Event triggered."


def secret_context(subscription_id: str) -> bytes:
    """The secret is bound to its subscription: a ciphertext copied to another row does not decrypt."""
    return b"webhook_subscriptions.secret:" + subscription_id.encode()


def parse_subscription(body: bytes, hosts: WebhookHosts) -> SubscriptionCreate:
    payload = SUBSCRIPTION_DECODER.decode(body)
    problems = []
    for name in ("webhook_url", "failure_notification_endpoint"):
        url = getattr(payload, name)
        # Refused here, and checked again at every connection (issuers/egress.py): a name can resolve anywhere.
        problem = hosts.problem(url) if url is not None else None
        if problem is not None:
            problems.append(detail(f"/{name}", "format", {"format": "uri"}, problem))
    if problems:
        raise InvalidInput(problems)
    return payload


def subscription_from_record(record: Row) -> Subscription:
    return Subscription(
        subscription_id=record["subscription_id"],
        webhook_url=record["webhook_url"],
        filter_events=list(record["filter_events"]) if record["filter_events"] is not None else None,
        failure_notification_endpoint=record["failure_notification_endpoint"],
        active=record["active"],
        created_at=record["created_at"],
        updated_at=record["updated_at"],
    )


async def subscribe(conn: Conn, org_id: int, payload: SubscriptionCreate, cipher: DataCipher) -> SubscriptionCreated:
    subscription_id = "sub_" + base62_id(24)
    secret = new_secret()
    record = await store.insert_subscription(
        conn,
        org_id,
        subscription_id,
        webhook_url=payload.webhook_url,
        filter_events=sorted(set(payload.filter_events)) if payload.filter_events is not None else None,
        failure_notification_endpoint=payload.failure_notification_endpoint,
        secret_encrypted=cipher.encrypt(secret, context=secret_context(subscription_id)),
    )
    subscription = subscription_from_record(record)
    return SubscriptionCreated(
        **{name: getattr(subscription, name) for name in Subscription.__struct_fields__},
        description=CREATED,
        signing_secret=secret,
    )


async def list_subscriptions(conn: Queryable, org_id: int, cursors: CursorCodec, page: PageRequest) -> SubscriptionList:
    async def fetch(limit: int, after: int | None, before: int | None) -> list[asyncpg.Record]:
        return await store.page_subscriptions(conn, org_id, limit=limit, after=after, before=before)

    records, paging = await keyset_page(cursors, org_id, CURSOR_KIND, page, fetch)
    return SubscriptionList(results=[subscription_from_record(r) for r in records], paging=paging)


async def set_active(conn: Queryable, org_id: int, subscription_id: str, active: bool) -> Subscription:
    """Unsubscribe (False) or resubscribe (True). While inactive a subscription gets no new deliveries;
    the worker fails its pending ones, which replay_failed_events requeues once it is active again."""
    record = await store.set_active(conn, org_id, subscription_id, active)
    if record is None:
        raise NotFound(f"No subscription found with the provided subscription_id: {subscription_id}")
    return subscription_from_record(record)


async def trigger_test(conn: Conn, org_id: int) -> Description:
    await events.record_event(conn, org_id, "test_event", Description(description="This is a test event."))
    return Description(description=TRIGGERED)


async def replay_failed(conn: Queryable, org_id: int) -> ReplayedDeliveries:
    """Requeues the organization's failed deliveries (a batch of up to 1000 per call: call again for more)."""
    requeued = await store.replay_failed(conn, org_id)
    return ReplayedDeliveries(description="Failed events requeued.", requeued=requeued)
