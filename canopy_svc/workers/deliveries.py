"""Delivers events to their subscriptions (the pending rows of `webhook_deliveries`), in every server
process.

At least once, whatever happens in between, and never a storm:
- a delivery is leased with FOR UPDATE SKIP LOCKED and its next_attempt_at pushed past the lease, so two
  workers never POST it at once, and one whose worker died (a SIGKILL mid-POST) is posted again once
  the lease runs out; every try carries the event's id as `webhook-id`, for the receiver to dedup;
- a receiver answering anything but 2xx, timing out or refusing the connection is tried again after an
  exponential backoff with jitter (DeliveryPolicy), or after the Retry-After of its 429 or 503 if that
  is later (bounded by the longest backoff), up to max_attempts; then the delivery is failed, kept for
  replay, and the subscription's failure_notification_endpoint is told;
- at most `per_subscription` deliveries of one subscription are in flight in a process, so one slow
  receiver holds a few of the `max_in_flight` slots, never all of them.
It wakes on NOTIFY when a delivery is committed or requeued, and otherwise sleeps until the next one
is due (an idle system sleeps, with a bounded fallback poll in case a NOTIFY was missed).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from canopy_svc.core import notify, supervision
from canopy_svc.core.crypto import DataCipher
from canopy_svc.issuers.webhooks import Answer, WebhookClient, canopy_body
from canopy_svc.rules.webhooks import secret_context
from canopy_svc.store import events as event_store
from canopy_svc.store import webhooks as store

log = logging.getLogger("canopy_svc.deliveries")

FAILURE_EVENT = "webhook_delivery_failed"
_data_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class DeliveryPolicy:
    """Canopy retries from about a minute to about a day: with the default base of 60 s the waits are
    1, 2, 4, ... minutes, each at most 600 bases (10 h), times a jitter of 0.5 to 1; 12 tries span
    about 14 to 27 hours."""

    base_seconds: float = 60.0
    max_attempts: int = 12
    lease_seconds: float = 60.0

    @property
    def max_backoff(self) -> float:
        return self.base_seconds * 600

    def delay(self, attempts: int, retry_after: float | None = None) -> float:
        """The wait before the next try. A receiver's Retry-After is honoured (never sooner) up to the
        longest backoff, so a receiver cannot park a delivery past the schedule's day."""
        backoff: float = min(self.base_seconds * 2 ** max(attempts - 1, 0), self.max_backoff)
        jittered = backoff * random.uniform(0.5, 1.0)  # jitter: deliveries that failed together spread out
        if retry_after is None:
            return jittered
        return max(jittered, min(retry_after, self.max_backoff))


def compact_data(stored: str) -> bytes:
    """The event's data as sent and signed: the stored JSON, compact (the same bytes on every try)."""
    return _encoder.encode(_data_decoder.decode(stored))


class DeliveryWorker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str | None,
        client: WebhookClient,
        cipher: DataCipher,
        *,
        policy: DeliveryPolicy | None = None,
        per_subscription: int = 4,
        max_in_flight: int = 64,
        idle_seconds: float = 30.0,
    ) -> None:
        self.pool = pool
        self.dsn = dsn
        self.client = client
        self.cipher = cipher
        self.policy = policy or DeliveryPolicy()
        self.per_subscription = per_subscription
        self.max_in_flight = max_in_flight
        self.idle_seconds = idle_seconds
        self._wake = asyncio.Event()
        self._in_flight: Counter[int] = Counter()  # by subscription row id
        self._tasks: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        self._wake.set()

    async def claim(self) -> int:
        """Claims what is due within the free slots and starts delivering it; returns how many."""
        free = self.max_in_flight - len(self._tasks)
        if free <= 0:
            return 0
        claimed = await store.claim_due(
            self.pool,
            limit=free,
            per_subscription=self.per_subscription,
            in_flight=dict(self._in_flight),  # a copy: deliveries finishing meanwhile change the Counter
            lease_seconds=self.policy.lease_seconds,
        )
        for delivery in claimed:
            self._in_flight[delivery["subscription_row_id"]] += 1
            task = asyncio.create_task(self._deliver(delivery))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(claimed)

    async def drain(self) -> None:
        """Delivers what is due now and waits for those deliveries (tests, and a clean stop)."""
        while await self.claim():
            pass
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
            while await self.claim():
                pass

    async def _deliver(self, delivery: Any) -> None:
        subscription = delivery["subscription_row_id"]
        try:
            await self._attempt(delivery)
        except supervision.RETRIED_ERRORS as exc:  # the lease runs out and the delivery is tried again
            log.warning(
                "delivery not recorded", extra={"delivery_id": delivery["id"], "error_type": type(exc).__name__}
            )
        except Exception as exc:  # a bug must not kill the worker; the lease retries later
            log.error(
                "delivery failed unexpectedly", extra={"delivery_id": delivery["id"], "error_type": type(exc).__name__}
            )
        finally:
            self._in_flight[subscription] -= 1
            if self._in_flight[subscription] <= 0:
                del self._in_flight[subscription]
            self._wake.set()  # a slot is free

    async def _attempt(self, delivery: Any) -> None:
        delivery_id, attempts = delivery["id"], delivery["attempts"]
        if not delivery["active"]:
            await store.mark_failed(
                self.pool, delivery_id, attempts, status=None, answer="", error="the subscription is unsubscribed"
            )
            return
        secret = self.cipher.decrypt(delivery["secret_encrypted"], context=secret_context(delivery["subscription_id"]))
        body = canopy_body(secret, delivery["type"], compact_data(delivery["data"]))
        answer = await self.client.post(delivery["webhook_url"], secret, delivery["event_id"], body)
        if answer.delivered:
            assert answer.status is not None
            await store.mark_delivered(self.pool, delivery_id, attempts, answer.status, answer.body)
            return
        fields = {"delivery_id": delivery_id, "attempts": attempts, "status": answer.status, "error": answer.error}
        if attempts >= self.policy.max_attempts:
            log.warning("delivery failed for good", extra=fields)
            failed = await store.mark_failed(
                self.pool, delivery_id, attempts, status=answer.status, answer=answer.body, error=answer.error
            )
            if failed and delivery["failure_notification_endpoint"]:
                await self._tell_failure(delivery, secret, answer)
            return
        delay = self.policy.delay(attempts, answer.retry_after)
        log.info("delivery will be retried", extra={**fields, "delay_s": round(delay, 3)})
        await store.retry_later(
            self.pool,
            delivery_id,
            attempts,
            delay_seconds=delay,
            status=answer.status,
            answer=answer.body,
            error=answer.error,
        )

    async def _tell_failure(self, delivery: Any, secret: str, answer: Answer) -> None:
        """One POST to the failure endpoint, signed like a delivery (its webhook-id is the event's with
        a suffix, so a receiver deduplicating both never mistakes one for the other). Not retried: the
        failed delivery itself stays, replayable, and GET /events has the event."""
        data = _encoder.encode(
            {
                "subscription_id": delivery["subscription_id"],
                "webhook_url": delivery["webhook_url"],
                "event_id": delivery["event_id"],
                "event_type": delivery["type"],
                "attempts": delivery["attempts"],
                "last_status": answer.status,
                "last_error": answer.error,
            }
        )
        told = await self.client.post(
            delivery["failure_notification_endpoint"],
            secret,
            f"{delivery['event_id']}_failed",
            canopy_body(secret, FAILURE_EVENT, data),
        )
        if told.delivered:
            await store.mark_failure_notified(self.pool, delivery["id"])
        else:
            log.warning("failure endpoint not told", extra={"delivery_id": delivery["id"], "status": told.status})

    async def run(self) -> None:
        """Until cancelled: claim what is due, then sleep until woken (a NOTIFY, a slot freed) or the next
        retry is due."""
        listener = asyncio.create_task(self._listen())
        unreachable = False  # logged once per outage, not every round
        try:
            while True:
                self._wake.clear()
                if listener.done():
                    listener.result()  # a listener that died ends the worker, for its supervisor to restart
                try:
                    claimed = await self.claim()
                    full = len(self._tasks) >= self.max_in_flight
                    due_in = None if full else await store.seconds_until_next_due(self.pool)
                    unreachable = False
                except supervision.RETRIED_ERRORS as exc:
                    if not unreachable:
                        log.warning(
                            "delivery worker cannot reach the database", extra={"error_type": type(exc).__name__}
                        )
                    unreachable = True
                    claimed, due_in = 0, 1.0
                if due_in == 0.0 and claimed == 0:
                    # Due, yet nothing claimable: its subscriptions are at their limit here (a finished
                    # delivery wakes us) or another process is claiming it right now.
                    due_in = 1.0 if self._tasks else 0.05
                elif due_in == 0.0:
                    continue  # more may be due than one claim took
                timeout = self.idle_seconds if due_in is None else min(max(due_in, 0.01), self.idle_seconds)
                await notify.wait_set(self._wake, timeout)  # cancellable at any tick (see there)
        finally:
            await supervision.stop(listener)
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()  # their leases run out and another worker delivers them
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _listen(self) -> None:
        """LISTEN on a connection of its own; reconnects when the database comes back."""
        if self.dsn is None:
            return
        await notify.listen_forever(self.dsn, event_store.NOTIFY_CHANNEL, self._wake)
