"""PUT .../cards calls Lithic from the request: paced with the card worker's calls, on the
organization's one schedule (CANOPY_SVC_LITHIC_MIN_INTERVAL_MS), not around it."""

from __future__ import annotations

import dataclasses
from typing import Any

import asyncpg

from tests.fake_lithic import FakeLithic
from tests.helpers import ApiClient, account, assert_error, linked_customer, make_worker, use_lithic

PATH = "/accounts/acc-1/customers/cust-1/cards"


async def test_a_change_when_the_organizations_next_slot_is_far_is_a_503_and_sends_nothing(
    app: Any, api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await use_lithic(api, fake_lithic)
    await linked_customer(api, await account(api))
    await make_worker(pool).process_due()  # unpaced: the card is issued without taking a slot
    # A minute between calls: the first change takes the slot, the next finds it a minute away.
    app.resources.settings = dataclasses.replace(app.resources.settings, lithic_min_interval_ms=60_000)
    first = await api.http.put(PATH, json={"state": "PAUSED"})
    assert first.status_code == 200, first.text
    refused = await api.http.put(PATH, json={"state": "OPEN"}, headers={"Idempotency-Key": "paced-1"})
    assert_error(refused, 503, "unavailable")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert len([r for r in fake_lithic.requests if r.method == "PATCH"]) == 1
    stored = await pool.fetchrow("SELECT state, change_id FROM cards")
    assert (stored["state"], stored["change_id"]) == ("PAUSED", None)
    # The 503 is not kept under the key: the retry, once the slot is free, goes through.
    await pool.execute("UPDATE organizations SET lithic_next_call_at = NULL")
    retried = await api.http.put(PATH, json={"state": "OPEN"}, headers={"Idempotency-Key": "paced-1"})
    assert retried.status_code == 200, retried.text
    assert retried.json()["state"] == "OPEN"
