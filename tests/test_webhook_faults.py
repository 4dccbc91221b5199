"""Deliveries through a crash (issue 12, "Faults"): two `canopy-svc serve` processes deliver a burst
of 1,000 events to one receiver, and one is SIGKILLed in the middle, with deliveries in flight. Every
event reaches the receiver at least once (what the killed process had in flight is sent again by the
other once its lease runs out), and the receiver, deduplicating by webhook-id, sees each exactly once.

No timing decides the kill: the receiver holds POSTs unanswered from the 200th on, so both servers
fill their slots of the subscription; once it holds all of them, the killed server's are known (by
the sending port) and none of those can have been recorded as delivered."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import psutil

from canopy_svc.rules import events
from tests.helpers import make_client
from tests.processes import ServerProcess, token_for
from tests.webhook_receiver import Receiver, Reply, verify, wait_for

BURST = 1000
BATCH = 50
HOLD_AFTER = BURST // 5
CONCURRENCY = 4  # slots of the subscription per server process
# A held POST must not time out before both servers have filled their slots (seconds on a busy box);
# the lease, the wait for the killed server's deliveries to be sent again, is just longer.
TIMEOUT_SECONDS = 10.0
LEASE_SECONDS = 12.0
BOUND_SECONDS = 180.0  # generous bounds: two servers and the receiver share two busy cores
STARTUP_SECONDS = 90.0


def ports_to(process: psutil.Process, port: int) -> set[int]:
    """The local ports of the process's TCP connections to `port` on loopback."""
    return {c.laddr.port for c in process.net_connections("tcp") if c.raddr and c.raddr.port == port}


async def test_a_burst_survives_a_sigkilled_server(pool: asyncpg.Pool, database_url: str, tmp_path: Path) -> None:
    env = {
        "CANOPY_SVC_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "CANOPY_SVC_WEBHOOK_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
        "CANOPY_SVC_WEBHOOK_LEASE_SECONDS": str(LEASE_SECONDS),
        "CANOPY_SVC_WEBHOOK_RETRY_BASE_SECONDS": "0.05",
        "CANOPY_SVC_WEBHOOK_CONCURRENCY": str(CONCURRENCY),
        "CANOPY_SVC_CARD_WORKER": "0",
    }
    org_id, client_id, secret = await make_client(pool, "acme")
    first = ServerProcess(database_url, tmp_path / "a", **env)
    second = ServerProcess(database_url, tmp_path / "b", **env)
    with Receiver() as receiver:
        receiver.default = Reply(200, delay=0.005)  # a receiver that takes a moment: the burst lasts seconds
        receiver.hold_after = HOLD_AFTER
        try:
            first.start(timeout=STARTUP_SECONDS)
            second.start(timeout=STARTUP_SECONDS)
            assert first.process is not None and second.process is not None
            headers = {"Authorization": f"Bearer {token_for(first, client_id, secret)}"}
            async with httpx.AsyncClient(base_url=first.base_url, headers=headers, timeout=30) as http:
                answer = await http.put("/organization/subscribe", json={"webhook_url": receiver.url()})
                assert answer.status_code == 201, answer.text
                signing_secret = answer.json()["signing_secret"]

            # The burst, committed in batches (each commit's NOTIFY wakes both servers' workers).
            for start in range(0, BURST, BATCH):
                async with pool.acquire() as conn, conn.transaction():
                    for n in range(start, start + BATCH):
                        await events.record_event(conn, org_id, "test_event", {"description": f"burst {n}"})
            expected = {row["event_id"] for row in await pool.fetch("SELECT event_id FROM events")}
            assert len(expected) == BURST

            # Both servers at their limit, every POST of theirs held: the first's are what it has in flight.
            await wait_for(
                lambda: len(receiver.holding()) == 2 * CONCURRENCY, "both servers' slots held", bound=BOUND_SECONDS
            )
            first_ports = ports_to(psutil.Process(first.process.pid), receiver.port)
            in_flight_at_kill = {r.webhook_id for r in receiver.holding() if r.peer_port in first_ports}
            assert len(in_flight_at_kill) == CONCURRENCY
            assert len(receiver.received) == HOLD_AFTER + 2 * CONCURRENCY  # mid-burst
            first.kill()  # what it had leased is neither delivered nor released
            receiver.release()

            await wait_for(
                lambda: {r.webhook_id for r in receiver.received} >= expected, "every event", bound=BOUND_SECONDS
            )
            # The last ones are recorded as delivered just after their 200: wait for the database too.
            assert await poll_undelivered(pool, bound=BOUND_SECONDS) == 0
            assert second.process.poll() is None, second.log()
        finally:
            first.kill()
            second.kill()

    seen = Counter(r.webhook_id for r in receiver.received)
    assert set(seen) == expected  # at least once each, and nothing else
    # What the killed server had in flight reached the receiver twice: from it (never answered), then
    # from the survivor once the lease ran out. Deduplicated by webhook-id, each is one event.
    assert all(seen[webhook_id] >= 2 for webhook_id in in_flight_at_kill)
    assert len(seen) == BURST
    by_id = {r.webhook_id: r for r in receiver.received}
    for webhook_id in sorted(in_flight_at_kill | set(sorted(expected)[:: BURST // 20])):
        verify(signing_secret, by_id[webhook_id].headers, by_id[webhook_id].body)


async def poll_undelivered(pool: asyncpg.Pool, *, bound: float) -> int:
    """Polls, within `bound`, until no delivery is left undelivered; returns how many are left."""
    deadline = time.monotonic() + bound
    while True:
        left: int = await pool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE state <> 'delivered'")
        if left == 0 or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.05)
