"""Issues the cards waiting in the outbox (the PENDING rows of `cards`), in every server process.

Exactly one card per row, whatever happens in between:
- a row is leased with FOR UPDATE SKIP LOCKED, so two workers never call Lithic for it at once;
- every call for a row carries the row's Idempotency-Key, stored with it before the first call, so a
  retry after a crash, a timeout or a lost answer gets Lithic's first card back, never a second;
- a worker that dies mid-call leaves the lease to expire and another worker retries the same key.
It wakes on NOTIFY when a card is committed, and otherwise sleeps until the next retry is due.

It also sends the outbox's closes (the cards of a deleted or CLOSED account), under the same rules:
leased with SKIP LOCKED, retried with the same backoff, and safe to send twice (PATCH state=CLOSED
sets an absolute value), so a worker that dies mid-call leaves the close to the next one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from canopy_svc.core import notify, supervision
from canopy_svc.issuers.card_issuer import CardRequest, LithicRejected, LithicRetryable, lithic_type
from canopy_svc.issuers.gateway import CardGateway, Issuer
from canopy_svc.rules import cards as card_rules
from canopy_svc.rules import events
from canopy_svc.store import account_holders as account_holder_store
from canopy_svc.store import cards as card_store
from canopy_svc.workers.account_holders import Enroller, Proceed, Refuse, Wait

log = logging.getLogger("canopy_svc.cards")


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 1.0
    max_seconds: float = 300.0
    lease_seconds: float = 60.0

    def delay(self, attempts: int, retry_after: float | None) -> float:
        if retry_after is not None:  # Lithic said when; sooner would only be refused again
            return min(max(retry_after, self.base_seconds / 10), self.max_seconds)
        backoff: float = min(self.base_seconds * 2 ** max(attempts - 1, 0), self.max_seconds)
        return backoff * random.uniform(0.5, 1.0)  # jitter: workers that failed together spread out


class CardWorker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str | None,
        gateway: CardGateway,
        *,
        policy: RetryPolicy | None = None,
        batch_size: int = 8,
        idle_seconds: float = 30.0,
        min_interval_seconds: float = 0.0,
    ) -> None:
        """`min_interval_seconds`: the least time between two Lithic calls of one organization (its key),
        across every worker sharing the database (0: unpaced)."""
        self.pool = pool
        self.min_interval_seconds = min_interval_seconds
        self.dsn = dsn
        self.gateway = gateway
        self.policy = policy or RetryPolicy()
        self.batch_size = batch_size
        self.idle_seconds = idle_seconds
        self._wake = asyncio.Event()
        self.enroller = Enroller(pool, gateway.cipher, lease_seconds=self.policy.lease_seconds)

    def wake(self) -> None:
        self._wake.set()

    async def process_due(self) -> int:
        """Claims the cards due now and issues them, then finishes card changes whose request died
        between recording the change and recording Lithic's answer, then sends the closes due (after
        issuing: a card issued just now may be one waiting to be closed); returns how many it handled."""
        claimed = await card_store.claim_due(self.pool, limit=self.batch_size, lease_seconds=self.policy.lease_seconds)
        if claimed:
            await asyncio.gather(*(self._issue(card) for card in claimed))
        stale = await card_store.claim_stale_changes(
            self.pool, limit=self.batch_size, lease_seconds=self.policy.lease_seconds, change_id=str(uuid.uuid4())
        )
        if stale:
            await asyncio.gather(*(self._finish_change(change) for change in stale))
        closes = await card_store.claim_due_closes(
            self.pool, limit=self.batch_size, lease_seconds=self.policy.lease_seconds
        )
        if closes:
            await asyncio.gather(*(self._close(card) for card in closes))
        return max(len(claimed), len(stale), len(closes))

    async def _pace(self, org_id: int, issuer: Issuer) -> float:
        """Waits for the organization's next slot for a Lithic call (the sandbox limits card writes per
        key: spacing them beats burning 429s). 0 when the call may go out now; else the seconds until the
        slot, when it is further off than half a lease: the caller puts the row back instead of holding it
        past its lease (another worker would take it over)."""
        if issuer.simulated or self.min_interval_seconds <= 0:
            return 0.0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.lease_seconds / 2
        while True:
            wait = await card_store.claim_lithic_call(self.pool, org_id, interval_seconds=self.min_interval_seconds)
            if wait <= 0:
                return 0.0
            if loop.time() + wait > deadline:
                return wait
            await asyncio.sleep(wait)  # bounded by the deadline; another worker may take the slot first

    async def _hold_after(self, org_id: int, retryable: LithicRetryable) -> None:
        """A 429 with Retry-After holds every call of the organization, not only the refused one's retry."""
        if retryable.status == 429 and retryable.retry_after:
            await card_store.hold_lithic_calls(self.pool, org_id, seconds=retryable.retry_after)

    async def _close(self, card: Any) -> None:
        """PATCH /v1/cards/{token} {"state": "CLOSED"}: retried like an issue, until Lithic answers."""
        try:
            issuer = self.gateway.issuer(card["lithic_api_key_encrypted"], card["lithic_base_url"])
            if wait := await self._pace(card["org_id"], issuer):
                await card_store.defer_close(self.pool, card["id"], delay_seconds=wait)
                return
            closed = await issuer.client.update_card(issuer.base_url, issuer.api_key, card["token"], state="CLOSED")
        except LithicRejected as rejected:
            # Final: retrying cannot succeed (a revoked key, a card Lithic does not know). Kept on the
            # card, where its account's owner (and an operator, in the log) can see it was not closed.
            log.warning("card close rejected by issuer", extra={"card_id": card["id"], "status": rejected.status})
            refusal = f"The issuer refused to close the card: {rejected.message}"
            await card_store.close_refused(self.pool, card["id"], refusal)
        except LithicRetryable as retryable:
            await self._hold_after(card["org_id"], retryable)
            delay = self.policy.delay(card["close_attempts"], retryable.retry_after)
            log.info(
                "card close will be retried",
                extra={"card_id": card["id"], "attempts": card["close_attempts"], "delay_s": round(delay, 2)},
            )
            await card_store.close_later(
                self.pool, card["id"], delay_seconds=delay, error="Closing: issuer unavailable; retrying"
            )
        except Exception as exc:  # a bug or a bad key must not kill the worker; the lease retries later
            log.error("card close failed unexpectedly", extra={"card_id": card["id"], "error_type": type(exc).__name__})
        else:
            async with self.pool.acquire() as conn, conn.transaction():  # the close and its event together
                done = await card_store.mark_closed(conn, card["id"], state=closed.state)
                await events.record_card_event(conn, events.card_change_type(closed.state), done)

    async def _finish_change(self, card: Any) -> None:
        """Sends the recorded change again (Lithic's PATCH sets absolute values: a repeat is harmless).
        A renewal or reissue is not sent again (Lithic counts each, and takes no Idempotency-Key for
        them): the card is read back, and what Lithic has is recorded, renewed or not."""
        fields: dict[str, Any] = json.loads(card["change_fields"])
        try:
            issuer = self.gateway.issuer(card["lithic_api_key_encrypted"], card["lithic_base_url"])
            if await self._pace(card["org_id"], issuer):
                return  # the change stays recorded; the next sweep after the lease sends it
            if fields.get("operation", "update") != "update":
                issued = await issuer.client.get_card(issuer.base_url, issuer.api_key, card["token"])
            else:
                issued = await issuer.client.update_card(
                    issuer.base_url,
                    issuer.api_key,
                    card["token"],
                    state=fields.get("state"),
                    spend_limit=fields.get("spend_limit"),
                )
        except LithicRetryable as retryable:
            await self._hold_after(card["org_id"], retryable)
            return  # the change stays recorded; the next sweep after the lease tries again
        except LithicRejected as rejected:
            log.warning("card change rejected by issuer", extra={"card_id": card["id"], "status": rejected.status})
            await card_store.abandon_change(self.pool, card["id"], card["change_id"])
            return
        except Exception as exc:  # a bug or a bad key: forget the change rather than retry it forever
            log.error(
                "card change failed unexpectedly", extra={"card_id": card["id"], "error_type": type(exc).__name__}
            )
            await card_store.abandon_change(self.pool, card["id"], card["change_id"])
            return
        async with self.pool.acquire() as conn, conn.transaction():  # the change and its event together
            await card_rules.record_issuer_answer(conn, card["id"], str(card["change_id"]), issued)
        log.info("finished an interrupted card change", extra={"card_id": card["id"]})

    def _request(self, card: Any) -> CardRequest:
        """The row as Lithic's postCards body: UNLOCKED asked, VIRTUAL sent; the sealed address opened."""
        sealed = card["shipping_address_encrypted"]
        return CardRequest(
            type=lithic_type(card["card_type"]),
            memo=card["memo"],
            state=card["state"],
            spend_limit=card["spend_limit"],
            card_program_token=card["card_program_token"],
            spend_limit_duration=card["spend_limit_duration"],
            exp_month=card["exp_month"],
            exp_year=card["exp_year"],
            product_id=card["product_id"],
            shipping_method=card["shipping_method"],
            shipping_address=(
                card_store.open_shipping_address(self.gateway.cipher, card["idempotency_key"], sealed)
                if sealed is not None
                else None
            ),
            replacement_for=card["replacement_for"],
        )

    async def _issue(self, card: Any) -> None:
        try:
            issuer = self.gateway.issuer(card["lithic_api_key_encrypted"], card["lithic_base_url"])
            if wait := await self._pace(card["org_id"], issuer):
                await card_store.defer_issue(self.pool, card["id"], delay_seconds=wait)
                return
            account = await self.enroller.account_for(card, issuer)  # the customer's account holder, if on
            if not isinstance(account, Proceed):
                await self._hold_for_enrollment(card, account)
                return
            if account.called_lithic and (wait := await self._pace(card["org_id"], issuer)):
                await card_store.defer_issue(self.pool, card["id"], delay_seconds=wait)  # the enrollment took the slot
                return
            request = dataclasses.replace(self._request(card), account_token=account.account_token)
            issued = await issuer.client.create_card(issuer.base_url, issuer.api_key, card["idempotency_key"], request)
        except LithicRejected as rejected:
            log.warning("card rejected by issuer", extra={"card_id": card["id"], "status": rejected.status})
            async with self.pool.acquire() as conn, conn.transaction():
                failed = await card_store.mark_failed(conn, card["id"], rejected.message)
                await events.record_card_event(conn, "card_failed", failed)
        except LithicRetryable as retryable:
            await self._hold_after(card["org_id"], retryable)
            delay = self.policy.delay(card["attempts"], retryable.retry_after)
            log.info(
                "card issue will be retried",
                extra={"card_id": card["id"], "attempts": card["attempts"], "delay_s": round(delay, 2)},
            )
            await card_store.retry_later(
                self.pool, card["id"], delay_seconds=delay, error="Issuer unavailable; retrying"
            )
        except Exception as exc:  # a bug or a bad key must not kill the worker; the lease retries later
            log.error("card issue failed unexpectedly", extra={"card_id": card["id"], "error_type": type(exc).__name__})
        else:
            # What Lithic answered is what is kept (its spend_limit 0 is "no limit", stored as null).
            answer = dataclasses.asdict(issued) | {"spend_limit": issued.spend_limit or None}
            async with self.pool.acquire() as conn, conn.transaction():  # the card and its event together
                done = await card_store.mark_issued(conn, card["id"], answer)
                await events.record_card_event(conn, "card_issued", done)

    async def _hold_for_enrollment(self, card: Any, outcome: Wait | Refuse) -> None:
        """A card whose customer's enrollment is not ACCEPTED: FAILED when it was refused, else kept PENDING
        (never issued under another account, nor under none)."""
        if isinstance(outcome, Refuse):
            log.warning("card not issued: account holder not accepted", extra={"card_id": card["id"]})
            async with self.pool.acquire() as conn, conn.transaction():
                failed = await card_store.mark_failed(conn, card["id"], outcome.error)
                await events.record_card_event(conn, "card_failed", failed)
            return
        retryable = outcome.retryable
        if retryable is not None:
            await self._hold_after(card["org_id"], retryable)
        retry_after = retryable.retry_after if retryable is not None else None
        delay = self.policy.base_seconds if outcome.soon else self.policy.delay(outcome.attempts, retry_after)
        await account_holder_store.hold_card(self.pool, card["id"], delay_seconds=delay, error=outcome.error)

    async def run(self) -> None:
        """Until cancelled: drain what is due, then sleep until woken or the next retry is due."""
        listener = asyncio.create_task(self._listen())
        unreachable = False  # logged once per outage, not every round
        try:
            while True:
                self._wake.clear()
                if listener.done():
                    listener.result()  # a listener that died ends the worker, for its supervisor to restart
                try:
                    while await self.process_due() == self.batch_size:
                        pass
                    due_in = await card_store.seconds_until_next_due(self.pool, lease_seconds=self.policy.lease_seconds)
                    unreachable = False
                except supervision.RETRIED_ERRORS as exc:
                    if not unreachable:
                        log.warning("card worker cannot reach the database", extra={"error_type": type(exc).__name__})
                    unreachable = True
                    due_in = 1.0
                timeout = self.idle_seconds if due_in is None else min(max(due_in, 0.01), self.idle_seconds)
                await notify.wait_set(self._wake, timeout)  # cancellable at any tick (see there)
        finally:
            await supervision.stop(listener)

    async def _listen(self) -> None:
        """LISTEN on a connection of its own; reconnects when the database comes back."""
        if self.dsn is None:
            return
        await notify.listen_forever(self.dsn, card_store.NOTIFY_CHANNEL, self._wake)
