"""A background worker stops when it is cancelled, whatever else happens in that loop tick.

On Python 3.10 and 3.11 `asyncio.wait_for` swallows a cancellation that arrives in the tick its
awaited event is set in (cpython#86296): a worker woken (a NOTIFY, a finished delivery) as it is
cancelled would run on, a server would hang on shutdown, and a test's teardown waited forever. Each
wait of the workers goes through core/notify.wait_set, which never absorbs the caller's cancellation;
these cancel at a range of tick offsets around the wake-up."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from canopy_svc.core import notify
from canopy_svc.core.crypto import DataCipher
from canopy_svc.issuers.webhooks import WebhookClient, WebhookHosts
from canopy_svc.workers.deliveries import DeliveryWorker
from tests.helpers import TEST_DATA_KEY, make_worker

OFFSETS = range(8)  # loop ticks between the start of the wait and the wake-up with the cancel


@pytest.mark.parametrize("offset", OFFSETS)
async def test_a_wait_woken_in_the_tick_it_is_cancelled_is_cancelled(offset: int) -> None:
    event = asyncio.Event()
    waiting = asyncio.create_task(notify.wait_set(event, 10))
    for _ in range(offset):
        await asyncio.sleep(0)
    event.set()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_a_wait_answers_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert await notify.wait_set(event, 0.01) is False
    asyncio.get_running_loop().call_soon(event.set)
    assert await notify.wait_set(event, 10) is True
    assert await notify.wait_set(event, 0) is True  # set already


async def stops_when_cancelled_as_it_is_woken(run: asyncio.Task[None], wake: asyncio.Event, offset: int) -> None:
    """Once the worker waits on `wake` (polled, with a bound), `offset` ticks later wakes and cancels it
    in one tick, and expects it to end within a bound."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not wake._waiters:  # type: ignore[attr-defined]  # asyncio.Event's waiting futures
        assert loop.time() < deadline and not run.done(), "the worker never reached its wait"
        await asyncio.sleep(0.001)
    for _ in range(offset):
        await asyncio.sleep(0)
    wake.set()
    run.cancel()
    done, _ = await asyncio.wait({run}, timeout=10)
    assert run in done, "the worker went on running after its cancel"


@pytest.mark.parametrize("offset", OFFSETS)
async def test_the_card_worker_stops_when_cancelled_as_it_is_woken(pool: asyncpg.Pool, offset: int) -> None:
    worker = make_worker(pool)
    run = asyncio.create_task(worker.run())
    await stops_when_cancelled_as_it_is_woken(run, worker._wake, offset)


@pytest.mark.parametrize("offset", OFFSETS)
async def test_the_delivery_worker_stops_when_cancelled_as_it_is_woken(pool: asyncpg.Pool, offset: int) -> None:
    client = WebhookClient(WebhookHosts.from_entries(()))
    worker = DeliveryWorker(pool, None, client, DataCipher(TEST_DATA_KEY))
    run = asyncio.create_task(worker.run())
    try:
        await stops_when_cancelled_as_it_is_woken(run, worker._wake, offset)
    finally:
        await client.aclose()
