"""Reads cards back from Lithic (GET /v1/cards/{token}) and records what changed there on its own, so
a webhook that never came is repaired: in every server process, at a bounded rate.

Which cards (store/lithic_sync.py RECONCILABLE): those whose state can change at Lithic without a call
of ours (a SINGLE_USE card closing after its first authorization, a MERCHANT_LOCKED one locking to its
first merchant, a PHYSICAL one leaving fulfillment), each at most once per `min_age_seconds`; and
first, any card a webhook named. A read is leased with SKIP LOCKED (no two processes read a card at
once), and its answer is applied by rules/lithic_sync.py apply_observed, as a webhook's is, only if the
row did not change meanwhile (else it is read again).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg

from canopy_svc.core import supervision
from canopy_svc.issuers.card_issuer import LithicRejected, LithicRetryable
from canopy_svc.issuers.gateway import CardGateway
from canopy_svc.rules import lithic_sync
from canopy_svc.store import lithic_sync as store

log = logging.getLogger("canopy_svc.reconciler")


class CardReconciler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        gateway: CardGateway,
        *,
        reads_per_second: float,
        min_age_seconds: float,
        batch_size: int = 16,
        idle_seconds: float = 60.0,
    ) -> None:
        """`reads_per_second`: this process's most Lithic reads per second (<= 0: unpaced, for tests)."""
        self.pool = pool
        self.gateway = gateway
        self.interval = 1.0 / reads_per_second if reads_per_second > 0 else 0.0
        self.min_age_seconds = min_age_seconds
        self.batch_size = batch_size
        self.idle_seconds = idle_seconds

    async def process_due(self) -> int:
        """One pass: claims the cards due a read-back and applies what Lithic answers; returns how many."""
        claimed = await store.claim_read_backs(self.pool, limit=self.batch_size, min_age_seconds=self.min_age_seconds)
        loop = asyncio.get_running_loop()
        for index, card in enumerate(claimed):
            started = loop.time()
            await self._read_back(card)
            if self.interval and index < len(claimed) - 1:
                await asyncio.sleep(max(self.interval - (loop.time() - started), 0.0))  # the bounded rate
        return len(claimed)

    async def _read_back(self, card: Any) -> None:
        try:
            issuer = self.gateway.issuer(card["lithic_api_key_encrypted"], card["lithic_base_url"])
            answer = await issuer.client.get_card(issuer.base_url, issuer.api_key, card["token"])
        except LithicRetryable:
            # Lithic is busy or away: tried again after min_age_seconds like any card (a webhook's
            # read-back too, sooner).
            await store.read_back_soon(self.pool, card["id"], delay_seconds=max(self.min_age_seconds, 60.0))
            return
        except LithicRejected as rejected:
            # Final for this read (a revoked key, a card the simulator of another process made): left as is.
            log.info("card read-back refused by issuer", extra={"card_id": card["id"], "status": rejected.status})
            return
        except Exception as exc:  # a bug or a bad key must not kill the worker
            log.error("card read-back failed", extra={"card_id": card["id"], "error_type": type(exc).__name__})
            return
        async with self.pool.acquire() as conn, conn.transaction():  # the change and its event together
            outcome = await lithic_sync.apply_observed(
                conn, card["id"], lithic_sync.observed_card(answer), row_version=card["row_version"]
            )
        if outcome == "changed":
            log.info("card changed at Lithic, recorded", extra={"card_id": card["id"]})

    async def run(self) -> None:
        """Until cancelled: passes while there is work, then sleeps until the next card is due, at least
        a second (a card due but not claimable, its change in flight, waits) and at most idle_seconds
        (how late a read-back a webhook queued in another process can be)."""
        unreachable = False  # logged once per outage
        while True:
            try:
                while await self.process_due() == self.batch_size:
                    pass
                due_in = await store.seconds_until_next_read(self.pool, min_age_seconds=self.min_age_seconds)
                unreachable = False
            except supervision.RETRIED_ERRORS as exc:
                if not unreachable:
                    log.warning("reconciler cannot reach the database", extra={"error_type": type(exc).__name__})
                unreachable = True
                due_in = 1.0
            await asyncio.sleep(min(max(due_in if due_in is not None else self.idle_seconds, 1.0), self.idle_seconds))
