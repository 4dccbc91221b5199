"""Idempotency-Key (contract section 7): one answer per key, stored with the work it answers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from canopy_svc.store import idempotency
from tests.helpers import ApiClient, assert_error, make_client, minimal_customer
from tests.processes import ServerProcess, token_for


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


async def count(pool: asyncpg.Pool, table: str = "customers") -> int:
    return int(await pool.fetchval(f"SELECT count(*) FROM {table}"))


async def test_a_repeat_gets_the_first_answer_back(api: ApiClient, pool: asyncpg.Pool) -> None:
    first = await api.http.post("/customers", json=minimal_customer(), headers=keyed("k-1"))
    second = await api.http.post("/customers", json=minimal_customer(), headers=keyed("k-1"))

    assert first.status_code == second.status_code == 200
    assert second.content == first.content  # the generated customer_id included
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert await count(pool) == 1


async def test_without_a_key_every_request_is_new(api: ApiClient, pool: asyncpg.Pool) -> None:
    await api.http.post("/customers", json=minimal_customer())
    await api.http.post("/customers", json=minimal_customer())
    assert await count(pool) == 2


async def test_the_same_key_with_another_body_or_path_is_refused(api: ApiClient, pool: asyncpg.Pool) -> None:
    created = await api.http.post("/customers", json=minimal_customer(customer_id="c-1"), headers=keyed("k-1"))
    assert created.status_code == 200

    other_body = await api.http.post("/customers", json=minimal_customer(customer_id="c-2"), headers=keyed("k-1"))
    other_path = await api.http.patch("/customers/c-1", json={"name_middle": "X"}, headers=keyed("k-1"))

    for answer in (other_body, other_path):
        assert answer.status_code == 422
        assert answer.json()["error"]["code"] == "idempotency_key_reused"
    assert await count(pool) == 1
    assert (await api.http.get("/customers/c-1")).json()["name_middle"] is None


async def test_errors_are_answers_too_and_are_replayed(api: ApiClient, pool: asyncpg.Pool) -> None:
    body = minimal_customer(assign_to_accounts=[{"account_id": "no-such-account"}])
    first = await api.http.post("/customers", json=body, headers=keyed("k-404"))
    assert first.status_code == 404
    assert await count(pool) == 0  # the customer insert was rolled back with the failed link ...
    assert await count(pool, "idempotency_keys") == 1  # ... while the answer was kept

    replay = await api.http.post("/customers", json=body, headers=keyed("k-404"))
    assert replay.status_code == 404
    assert replay.content == first.content
    assert replay.headers["Idempotent-Replayed"] == "true"

    invalid = await api.http.post("/customers", json={"name_first": ""}, headers=keyed("k-422"))
    again = await api.http.post("/customers", json={"name_first": ""}, headers=keyed("k-422"))
    assert invalid.status_code == again.status_code == 422
    assert again.json() == invalid.json() and again.headers["Idempotent-Replayed"] == "true"


async def test_keys_belong_to_one_organization(api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool) -> None:
    mine = await api.http.post("/customers", json=minimal_customer(customer_id="same"), headers=keyed("shared"))
    theirs = await other_api.http.post("/customers", json=minimal_customer(customer_id="same"), headers=keyed("shared"))
    assert mine.status_code == theirs.status_code == 200
    assert "Idempotent-Replayed" not in theirs.headers
    assert await count(pool) == 2


async def test_malformed_keys_are_400(api: ApiClient, pool: asyncpg.Pool) -> None:
    for key in (b"x" * 256, b"tab\there", "caf\u00e9".encode()):
        answer = await api.http.post("/customers", json=minimal_customer(), headers={"Idempotency-Key": key})
        assert answer.status_code == 400, key
        assert answer.json()["error"]["code"] == "bad_request"
    assert await count(pool) == 0


async def test_key_lengths_1_to_255_are_taken_and_an_empty_one_is_400(api: ApiClient, pool: asyncpg.Pool) -> None:
    longest = await api.http.post("/customers", json=minimal_customer(), headers=keyed("k" * 255))
    assert longest.status_code == 200, longest.text
    empty = await api.http.post("/customers", json=minimal_customer(customer_id="other"), headers=keyed(""))
    assert_error(empty, 400, "bad_request")
    assert await count(pool) == 1


async def test_a_repeat_while_the_first_runs_is_409_in_progress(api: ApiClient, pool: asyncpg.Pool) -> None:
    """The first request is held deterministically: this transaction owns the key's lock, as it would."""
    async with pool.acquire() as conn, conn.transaction():
        assert await idempotency.try_lock(conn, api.org_id, "busy")
        answer = await api.http.post("/customers", json=minimal_customer(), headers=keyed("busy"))
        assert_error(answer, 409, "idempotency_in_progress")
    assert await count(pool) == 0
    assert await count(pool, "idempotency_keys") == 0  # the refusal is not remembered as the answer


async def test_concurrent_repeats_make_one_customer(api: ApiClient, pool: asyncpg.Pool) -> None:
    body = minimal_customer()
    answers = await asyncio.gather(*(api.http.post("/customers", json=body, headers=keyed("race")) for _ in range(20)))

    assert await count(pool) == 1
    (customer_id,) = await pool.fetch("SELECT customer_id FROM customers")
    for answer in answers:
        if answer.status_code == 200:
            assert answer.json()["customer_id"] == customer_id["customer_id"]
        else:
            assert answer.status_code == 409
            assert answer.json()["error"]["code"] == "idempotency_in_progress"


async def test_expired_keys_are_forgotten_and_purged(api: ApiClient, pool: asyncpg.Pool) -> None:
    await api.http.post("/customers", json=minimal_customer(customer_id="c-1"), headers=keyed("old"))
    await pool.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")

    # Past 24 hours the key is free again: the same request is new work (here, a taken id: 409).
    again = await api.http.post("/customers", json=minimal_customer(customer_id="c-1"), headers=keyed("old"))
    assert again.status_code == 409 and "Idempotent-Replayed" not in again.headers

    await pool.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
    await api.http.post("/customers", json=minimal_customer(customer_id="c-2"), headers=keyed("fresh"))
    assert await idempotency.purge_expired(pool) == 1
    assert [row["key"] for row in await pool.fetch("SELECT key FROM idempotency_keys")] == ["fresh"]


async def test_twenty_concurrent_repeats_on_two_worker_processes(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    _, client_id, secret = await make_client(pool, "acme")
    with ServerProcess(database_url, tmp_path, workers=2) as server:
        headers = {"Authorization": f"Bearer {token_for(server, client_id, secret)}", **keyed("two-workers")}
        limits = httpx.Limits(max_connections=20)
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers, limits=limits, timeout=20) as http:
            answers: list[Any] = await asyncio.gather(
                *(http.post("/customers", json=minimal_customer()) for _ in range(20))
            )

    assert await count(pool) == 1
    statuses = sorted(answer.status_code for answer in answers)
    assert set(statuses) <= {200, 409}
    assert 200 in statuses
    customer_ids = {answer.json()["customer_id"] for answer in answers if answer.status_code == 200}
    assert len(customer_ids) == 1
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["error"]["code"] == "idempotency_in_progress"


async def test_the_same_key_with_another_method_is_refused(api: ApiClient) -> None:
    await api.http.post("/customers", json=minimal_customer(customer_id="c-1"))
    put = await api.http.put("/customers/c-1", json={"name_middle": "X"}, headers=keyed("k-m"))
    patch = await api.http.patch("/customers/c-1", json={"name_middle": "X"}, headers=keyed("k-m"))
    assert put.status_code == 200
    assert patch.status_code == 422 and patch.json()["error"]["code"] == "idempotency_key_reused"
