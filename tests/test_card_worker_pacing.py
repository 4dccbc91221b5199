"""Issue 13, item 6: the card worker spaces its Lithic calls per organization (Lithic's sandbox limits
card writes per key) instead of burning 429s, and still honours Retry-After.

Spacing is read from the times the fake Lithic recorded each request at, never from sleeps. Each
call goes out after the database handed it its slot, so two calls' arrival times differ by the
interval plus the difference of their trips (scheduling on a busy machine): the checks allow half an
interval for that, far from the nothing-between-them an unpaced worker shows."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import asyncpg

from tests.fake_lithic import FakeLithic
from tests.helpers import ApiClient, account, linked_customer, make_worker, use_lithic

INTERVAL = 0.4


def creates(fake: FakeLithic) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST" and r.path == "/v1/cards"]


def gaps(times: list[float]) -> list[float]:
    ordered = sorted(times)
    return [later - earlier for earlier, later in itertools.pairwise(ordered)]


async def cards_for(api: ApiClient, fake: FakeLithic, count: int, account_id: str = "acc-1") -> None:
    """`count` pending cards of one link: the link's own and count - 1 more."""
    await use_lithic(api, fake)
    await linked_customer(api, await account(api, account_id))
    for _ in range(count - 1):
        answer = await api.http.post(f"/accounts/{account_id}/customers/cust-1/cards", json={})
        assert answer.status_code == 200, answer.text


async def test_one_organizations_calls_are_spaced(api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic) -> None:
    await cards_for(api, fake_lithic, 4)

    assert await make_worker(pool, min_interval_seconds=INTERVAL).process_due() == 4  # one batch, sent together

    times = [r.at for r in creates(fake_lithic)]
    assert len(times) == 4
    assert min(gaps(times)) >= INTERVAL / 2
    assert max(times) - min(times) >= 3 * INTERVAL - INTERVAL / 2
    assert await pool.fetchval("SELECT count(*) FROM cards WHERE status = 'ISSUED'") == 4
    assert fake_lithic.spec_violations == []


async def test_workers_share_the_pace(api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic) -> None:
    """Two workers (as in two processes) take the slots from the same row, so together they keep it."""
    await cards_for(api, fake_lithic, 4)
    first = make_worker(pool, min_interval_seconds=INTERVAL)
    first.batch_size = 2
    second = make_worker(pool, min_interval_seconds=INTERVAL)
    second.batch_size = 2

    handled = await asyncio.gather(first.process_due(), second.process_due())

    assert sum(handled) == 4
    assert min(gaps([r.at for r in creates(fake_lithic)])) >= INTERVAL / 2


async def test_organizations_are_paced_apart(
    api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    """One organization's queue does not hold up another's first call."""
    slow = 2.0
    await cards_for(api, fake_lithic, 2)
    await cards_for(other_api, fake_lithic, 1)

    assert await make_worker(pool, min_interval_seconds=slow).process_due() == 3

    times = sorted(r.at for r in creates(fake_lithic))
    # Two go out at once (each organization's first), the third a whole interval later.
    assert times[1] - times[0] < slow / 2
    assert times[2] - times[1] >= slow / 2


async def test_a_429_holds_the_organizations_calls_for_its_retry_after(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    await cards_for(api, fake_lithic, 2)
    fake_lithic.fail_next(status=429, retry_after="2", message="Rate limited")
    worker = make_worker(pool, min_interval_seconds=0.05)
    worker.batch_size = 1  # one card a round: the refused one, then the other

    assert await worker.process_due() == 1
    refused = await pool.fetchrow(
        "SELECT id, status, extract(epoch FROM next_attempt_at - now())::float8 AS wait FROM cards ORDER BY id LIMIT 1"
    )
    assert refused["status"] == "PENDING"
    assert 1 < refused["wait"] <= 2.5  # Retry-After honoured for the refused card, not the 10 ms base backoff
    assert await worker.process_due() == 1  # the other card, due at once, waits for the hold

    first, second = creates(fake_lithic)
    assert second.at - first.at >= 1.5
    assert await pool.fetchval("SELECT status FROM cards WHERE id <> $1", refused["id"]) == "ISSUED"
    assert fake_lithic.spec_violations == []


async def test_a_slot_too_far_off_puts_the_card_back_unsent(
    api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic
) -> None:
    """A worker does not hold a leased card past half its lease waiting for a slot: another worker
    would take it over. The card goes back, its attempt uncounted (nothing was sent)."""
    await cards_for(api, fake_lithic, 1)
    await pool.execute("UPDATE organizations SET lithic_next_call_at = now() + interval '100 seconds'")

    assert await make_worker(pool, min_interval_seconds=INTERVAL).process_due() == 1

    assert creates(fake_lithic) == []
    card = await pool.fetchrow(
        "SELECT status, attempts, extract(epoch FROM next_attempt_at - now())::float8 AS wait FROM cards"
    )
    assert (card["status"], card["attempts"]) == ("PENDING", 0)
    assert 90 < card["wait"] <= 100


async def test_unpaced_when_the_setting_is_zero(api: ApiClient, pool: asyncpg.Pool, fake_lithic: FakeLithic) -> None:
    await cards_for(api, fake_lithic, 2)

    assert await make_worker(pool, min_interval_seconds=0).process_due() == 2

    assert (
        await pool.fetchval("SELECT lithic_next_call_at FROM organizations WHERE lithic_api_key_encrypted IS NOT NULL")
        is None
    )
