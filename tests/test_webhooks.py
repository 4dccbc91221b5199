"""Webhooks (issue 12, items 2, 3 and 5), against a real receiver on loopback: Canopy's subscription
routes, deliveries signed so an independent Standard Webhooks check passes (and fails on a tampered
body or an old timestamp), retries with one webhook-id and an honoured backoff, the failed set and its
replay, isolation between organizations, and URLs that cannot reach inside."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.settings import Settings
from canopy_svc.issuers.egress import GuardedTransport
from canopy_svc.issuers.webhooks import MAX_KEPT_ANSWER, WebhookClient, WebhookHosts
from canopy_svc.workers.deliveries import DeliveryPolicy, DeliveryWorker
from tests.helpers import TEST_DATA_KEY, ApiClient, assert_error, assert_invalid, minimal_customer
from tests.webhook_receiver import (
    Receiver,
    Reply,
    VerificationFailed,
    canopy_signature_holds,
    verify,
    wait_for,
)

ALLOWED = ("127.0.0.1",)
BASE_SECONDS = 0.1
TIMEOUT_SECONDS = 0.5


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, webhook_allowed_hosts=ALLOWED)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def make_delivery_worker(
    pool: asyncpg.Pool, dsn: str | None, *, max_attempts: int = 5, timeout: float = TIMEOUT_SECONDS
) -> DeliveryWorker:
    client = WebhookClient(WebhookHosts.from_entries(ALLOWED), timeout=timeout)
    policy = DeliveryPolicy(base_seconds=BASE_SECONDS, max_attempts=max_attempts, lease_seconds=10)
    return DeliveryWorker(pool, dsn, client, DataCipher(TEST_DATA_KEY), policy=policy, idle_seconds=5)


@pytest.fixture
async def worker(pool: asyncpg.Pool, database_url: str) -> AsyncIterator[DeliveryWorker]:
    """A worker running as the server runs it: woken by LISTEN/NOTIFY, sleeping until retries are due."""
    running = make_delivery_worker(pool, database_url, max_attempts=4)
    task = asyncio.create_task(running.run())
    try:
        yield running
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await running.client.aclose()


async def subscribe(api: ApiClient, url: str, **fields: Any) -> dict[str, Any]:
    answer = await api.http.put("/organization/subscribe", json={"webhook_url": url, **fields})
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def create_customer(api: ApiClient, customer_id: str) -> None:
    answer = await api.http.post("/customers", json=minimal_customer(customer_id=customer_id, ssn="123-45-6789"))
    assert answer.status_code == 200, answer.text


# --- the routes --------------------------------------------------------------------------------------


async def test_subscribe_answers_canopys_201_with_the_secret_once(api: ApiClient, receiver: Receiver) -> None:
    created = await subscribe(api, receiver.url(), filter_events=["card_issued", "card_failed"])
    assert created["description"] == "Webhook created"
    assert created["subscription_id"].startswith("sub_") and created["active"] is True
    assert created["signing_secret"].startswith("whsec_")
    assert created["filter_events"] == ["card_failed", "card_issued"]
    listed = (await api.http.get("/organization/subscriptions")).json()
    (shown,) = listed["results"]
    assert "signing_secret" not in shown and created["signing_secret"] not in json.dumps(listed)
    assert shown["subscription_id"] == created["subscription_id"]

    path = f"/organization/subscriptions/{created['subscription_id']}"
    off = await api.http.put(f"{path}/unsubscribe")
    assert off.status_code == 200 and off.json()["active"] is False
    assert (await api.http.put(f"{path}/unsubscribe")).json()["active"] is False  # the same again
    on = await api.http.put(f"{path}/resubscribe")
    assert on.status_code == 200 and on.json()["active"] is True
    assert_error(await api.http.put("/organization/subscriptions/sub_nope/unsubscribe"), 404, "not_found")


async def test_the_subscriptions_list_pages(api: ApiClient, receiver: Receiver) -> None:
    ids = [(await subscribe(api, receiver.url(f"/h{n}")))["subscription_id"] for n in range(3)]
    first = (await api.http.get("/organization/subscriptions", params={"limit": "2"})).json()
    assert [s["subscription_id"] for s in first["results"]] == ids[:2] and first["paging"]["has_more"]
    rest = await api.http.get(
        "/organization/subscriptions", params={"starting_after": first["paging"]["starting_after"]}
    )
    assert [s["subscription_id"] for s in rest.json()["results"]] == ids[2:]


BAD_URLS = [
    "https://10.0.0.1/hooks",  # private
    "https://169.254.169.254/latest/meta-data",  # link-local: a cloud's metadata service
    "https://[::1]/hooks",  # loopback, not the operator's
    "https://[fe80::1]/hooks",
    "https://localhost/hooks",
    "https://0.0.0.0/hooks",
    "http://hooks.example.com/x",  # plain http across a network
    "https://user:pass@hooks.example.com/",  # userinfo: parsers disagree on the host
    "https://hooks.example.com/a b",
    "https://hooks.example.com/#frag",
    "https://hooks.example.com:99999/",
    "ftp://hooks.example.com/",
    "hooks.example.com/x",
    "https://hooks.example.com\\@127.0.0.1/",
]


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.parametrize("field", ["webhook_url", "failure_notification_endpoint"])
async def test_a_url_that_could_reach_inside_or_is_malformed_is_refused(api: ApiClient, url: str, field: str) -> None:
    body = {"webhook_url": "https://hooks.example.com/ok", field: url}
    problems = assert_invalid(await api.http.put("/organization/subscribe", json=body))
    assert {p["instancePath"] for p in problems} == {f"/{field}"}
    assert (await api.http.get("/organization/subscriptions")).json()["results"] == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"webhook_url": None},
        {"webhook_url": 5},
        {"webhook_url": ["https://hooks.example.com/"]},
        {"webhook_url": "https://hooks.example.com/" + "a" * 2100},
        {"webhook_url": "https://hooks.example.com/\u0000"},
        {"webhook_url": "https://hooks.example.com/", "filter_events": ["card_stolen"]},
        {"webhook_url": "https://hooks.example.com/", "filter_events": []},
        {"webhook_url": "https://hooks.example.com/", "filter_events": "card_issued"},
        {"webhook_url": "https://hooks.example.com/", "filter_events": [None]},
        {"webhook_url": "https://hooks.example.com/", "failure_notification_endpoint": 1},
    ],
)
async def test_every_field_refuses_bad_input(api: ApiClient, body: dict[str, Any]) -> None:
    assert_invalid(await api.http.put("/organization/subscribe", json=body))


async def test_a_public_https_url_is_accepted(api: ApiClient) -> None:
    created = await subscribe(api, "https://hooks.example.com/canopy?tenant=1")
    assert created["webhook_url"] == "https://hooks.example.com/canopy?tenant=1"


async def test_another_organization_cannot_see_or_change_a_subscription(
    api: ApiClient, other_api: ApiClient, receiver: Receiver
) -> None:
    created = await subscribe(api, receiver.url())
    assert (await other_api.http.get("/organization/subscriptions")).json()["results"] == []
    for action in ("unsubscribe", "resubscribe"):
        answer = await other_api.http.put(f"/organization/subscriptions/{created['subscription_id']}/{action}")
        assert_error(answer, 404, "not_found")
    assert (await api.http.get("/organization/subscriptions")).json()["results"][0]["active"] is True


# --- deliveries ----------------------------------------------------------------------------------------


async def test_a_delivery_carries_canopys_body_and_verifiable_standard_webhooks_headers(
    api: ApiClient, receiver: Receiver, worker: DeliveryWorker
) -> None:
    secret = (await subscribe(api, receiver.url()))["signing_secret"]
    await create_customer(api, "c-1")
    await wait_for(lambda: len(receiver.received) == 1, "the delivery")
    (got,) = receiver.received
    (event,) = (await api.http.get("/events")).json()["results"]
    assert got.json["event"] == "customer_created" and got.json["data"] == event["data"]
    assert "ssn" not in got.json["data"] and b"6789" not in got.body
    assert got.webhook_id == event["id"]
    assert got.headers["content-type"] == "application/json"
    verify(secret, got.headers, got.body)
    assert canopy_signature_holds(secret, got.body)

    tampered = got.body.replace(b"c-1", b"c-2")
    with pytest.raises(VerificationFailed):
        verify(secret, got.headers, tampered)
    assert not canopy_signature_holds(secret, tampered)
    with pytest.raises(VerificationFailed):  # the same message replayed an hour later
        verify(secret, got.headers, got.body, now=time.time() + 3600)
    with pytest.raises(VerificationFailed):  # a timestamp changed to pass the window breaks the signature
        verify(secret, {**got.headers, "webhook-timestamp": str(int(time.time()) + 1)}, got.body)
    with pytest.raises(VerificationFailed):  # another subscription's secret
        verify((await subscribe(api, receiver.url("/other")))["signing_secret"], got.headers, got.body)


async def test_filters_unsubscribe_and_the_test_event(
    api: ApiClient, receiver: Receiver, worker: DeliveryWorker
) -> None:
    cards_only = await subscribe(api, receiver.url("/cards"), filter_events=["card_issued"])
    everything = await subscribe(api, receiver.url("/all"))
    off = await subscribe(api, receiver.url("/off"))
    assert (await api.http.put(f"/organization/subscriptions/{off['subscription_id']}/unsubscribe")).status_code == 200
    await create_customer(api, "c-1")
    tested = await api.http.get("/organization/subscribe/test")
    assert tested.status_code == 201 and tested.json() == {"description": "Event triggered."}
    await wait_for(lambda: len(receiver.at("/all")) == 2, "both events at the catch-all")
    assert sorted(r.json["event"] for r in receiver.at("/all")) == ["customer_created", "test_event"]
    await worker.drain()
    assert receiver.at("/cards") == [] and receiver.at("/off") == []
    assert cards_only["active"] and everything["active"]


async def test_retries_500_429_and_a_timeout_then_delivers_with_one_webhook_id_after_the_backoff(
    api: ApiClient, receiver: Receiver, worker: DeliveryWorker, pool: asyncpg.Pool
) -> None:
    receiver.script.extend([Reply(500), Reply(429), Reply(200, delay=TIMEOUT_SECONDS * 3), Reply(200)])
    secret = (await subscribe(api, receiver.url()))["signing_secret"]
    await create_customer(api, "c-1")
    await wait_for(lambda: len(receiver.received) == 4, "four tries")
    tries = receiver.received
    assert len({t.webhook_id for t in tries}) == 1
    for attempt in tries:
        verify(secret, attempt.headers, attempt.body)
    assert len({t.body for t in tries}) == 1  # the same body on every try, timestamps apart
    # Waits of base x 2^(n-1), jittered by 0.5 to 1: never sooner than half of that.
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(tries)]
    assert gaps[0] >= BASE_SECONDS * 0.5 and gaps[1] >= BASE_SECONDS * 1.0
    assert gaps[2] >= TIMEOUT_SECONDS + BASE_SECONDS * 2.0
    row = await wait_row(pool, "delivered")
    assert row["attempts"] == 4 and row["last_status"] == 200


async def test_a_429s_retry_after_is_honoured(
    api: ApiClient, receiver: Receiver, worker: DeliveryWorker, pool: asyncpg.Pool
) -> None:
    """The backoff after a first try is at most BASE_SECONDS; a 429 asking for 2 s gets no try sooner."""
    wait = 2
    receiver.script.extend([Reply(429, headers={"Retry-After": str(wait)}), Reply(200)])
    await subscribe(api, receiver.url())
    await create_customer(api, "c-1")
    await wait_for(lambda: len(receiver.received) == 2, "the try after the 429")
    first, second = receiver.received
    assert first.webhook_id == second.webhook_id
    assert second.at - first.at >= wait
    row = await wait_row(pool, "delivered")
    assert row["attempts"] == 2


def test_retry_after_is_read_as_rfc_9110_writes_it() -> None:
    from email.utils import formatdate

    from canopy_svc.issuers.webhooks import retry_after_seconds

    now = 1_800_000_000.0
    assert retry_after_seconds("120") == 120.0 and retry_after_seconds(" 3 ") == 3.0
    assert retry_after_seconds(formatdate(now + 10, usegmt=True), now=now) == 10.0
    assert retry_after_seconds(formatdate(now - 10, usegmt=True), now=now) == 0.0  # a date gone: now
    for unreadable in (None, "", "-1", "1.5", "soon", "\u0662", "9" * 11):
        assert retry_after_seconds(unreadable) is None, unreadable


def test_retry_after_is_bounded_by_the_longest_backoff() -> None:
    policy = DeliveryPolicy(base_seconds=1.0, max_attempts=12)
    assert policy.delay(1, retry_after=10**9) == policy.max_backoff == 600.0  # a receiver cannot park it for ever
    assert policy.delay(1, retry_after=5.0) >= 5.0
    assert 0.5 <= policy.delay(1, retry_after=0.0) <= 1.0  # sooner than the backoff: the backoff
    assert 0.5 <= policy.delay(1) <= 1.0


async def test_retry_after_counts_only_on_429_and_503(receiver: Receiver) -> None:
    client = WebhookClient(WebhookHosts.from_entries(ALLOWED), timeout=TIMEOUT_SECONDS)
    receiver.script.extend([Reply(status, headers={"Retry-After": "7"}) for status in (429, 503, 500, 200)])
    try:
        answers = [await client.post(receiver.url(), "whsec_" + "A" * 44, "evt_1", b"{}") for _ in range(4)]
    finally:
        await client.aclose()
    assert [a.retry_after for a in answers] == [7.0, 7.0, None, None]


async def wait_row(pool: asyncpg.Pool, state: str) -> asyncpg.Record:
    async def settled() -> asyncpg.Record | None:
        row: asyncpg.Record | None = await pool.fetchrow("SELECT * FROM webhook_deliveries WHERE state = $1", state)
        return row

    deadline = time.monotonic() + 30
    while (row := await settled()) is None:
        assert time.monotonic() < deadline, f"no delivery became {state}"
        await asyncio.sleep(0.01)
    return row


async def test_the_last_failure_is_failed_told_to_the_failure_endpoint_and_replayed(
    api: ApiClient, receiver: Receiver, worker: DeliveryWorker, pool: asyncpg.Pool
) -> None:
    receiver.default = Reply(503, body=b"x" * (MAX_KEPT_ANSWER * 3))
    subscription = await subscribe(api, receiver.url(), failure_notification_endpoint=receiver.url("/failures"))
    await create_customer(api, "c-1")
    row = await wait_row(pool, "failed")
    assert row["attempts"] == worker.policy.max_attempts and row["last_status"] == 503
    assert len(row["last_response"]) <= MAX_KEPT_ANSWER  # a few KB of the answer at most
    receiver.default = Reply(200)
    await wait_for(lambda: len(receiver.at("/failures")) == 1, "the failure notice")
    (notice,) = receiver.at("/failures")
    verify(subscription["signing_secret"], notice.headers, notice.body)
    (event,) = (await api.http.get("/events")).json()["results"]
    assert notice.json["event"] == "webhook_delivery_failed"
    assert notice.json["data"]["event_id"] == event["id"] and notice.json["data"]["last_status"] == 503
    assert notice.webhook_id != event["id"]

    replayed = await api.http.put("/organization/subscribe/replay_failed_events")
    assert replayed.status_code == 200 and replayed.json()["requeued"] == 1
    await wait_row(pool, "delivered")
    assert receiver.at("/hooks")[-1].webhook_id == event["id"]
    assert (await api.http.put("/organization/subscribe/replay_failed_events")).json()["requeued"] == 0


async def test_a_redirect_is_not_followed(
    api: ApiClient, receiver: Receiver, worker: DeliveryWorker, pool: asyncpg.Pool
) -> None:
    receiver.script.append(Reply(302, headers={"location": receiver.url("/elsewhere")}))
    await subscribe(api, receiver.url())
    await create_customer(api, "c-1")
    await wait_row(pool, "delivered")  # the retry after the 302, answered 200
    assert receiver.at("/elsewhere") == [] and len(receiver.at("/hooks")) == 2


async def test_one_organizations_subscription_never_gets_anothers_events(
    api: ApiClient, other_api: ApiClient, receiver: Receiver, worker: DeliveryWorker
) -> None:
    await subscribe(api, receiver.url("/acme"))
    await subscribe(other_api, receiver.url("/globex"))
    await create_customer(api, "c-1")
    await create_customer(other_api, "c-1")
    assert (await other_api.http.get("/organization/subscribe/test")).status_code == 201
    await wait_for(lambda: len(receiver.received) == 3, "three deliveries")
    assert [r.json["event"] for r in receiver.at("/acme")] == ["customer_created"]
    assert sorted(r.json["event"] for r in receiver.at("/globex")) == ["customer_created", "test_event"]
    acme_ids = {e["id"] for e in (await api.http.get("/events")).json()["results"]}
    assert {r.webhook_id for r in receiver.at("/acme")} == acme_ids
    assert not acme_ids & {r.webhook_id for r in receiver.at("/globex")}


async def test_a_failed_request_delivers_nothing(api: ApiClient, receiver: Receiver, worker: DeliveryWorker) -> None:
    await subscribe(api, receiver.url())
    refused = await api.http.post("/customers", json=minimal_customer(assign_to_accounts=[{"account_id": "nope"}]))
    assert_error(refused, 404, "not_found")
    await api.http.get("/organization/subscribe/test")  # then something that is delivered
    await wait_for(lambda: len(receiver.received) == 1, "the test event")
    await worker.drain()
    assert [r.json["event"] for r in receiver.received] == ["test_event"]


async def test_a_slow_receiver_does_not_hold_back_the_others(
    api: ApiClient, receiver: Receiver, pool: asyncpg.Pool, database_url: str
) -> None:
    """Twenty deliveries to a receiver that takes its time, then one to a quick one: the quick one is
    delivered while the slow one's are still coming (its subscription has its few slots, no more)."""
    worker = make_delivery_worker(pool, database_url)
    slow_reply = Reply(200, delay=0.3)
    receiver.script.extend([slow_reply] * 20)
    await subscribe(api, receiver.url("/slow"), filter_events=["customer_created"])
    for n in range(20):
        await create_customer(api, f"c-{n}")
    await subscribe(api, receiver.url("/quick"), filter_events=["test_event"])
    await api.http.get("/organization/subscribe/test")
    task = asyncio.create_task(worker.run())
    try:
        await wait_for(lambda: len(receiver.at("/quick")) == 1, "the quick receiver's delivery")
        assert len(receiver.at("/slow")) <= 2 * worker.per_subscription
        await wait_for(lambda: len(receiver.at("/slow")) == 20, "the slow receiver's deliveries")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await worker.client.aclose()


async def test_a_subscription_never_has_more_than_its_slots_in_flight(
    api: ApiClient, receiver: Receiver, pool: asyncpg.Pool
) -> None:
    """A claim counts what the process already has in flight: with two of the four slots taken it
    takes two more, not four (else one slow receiver would hold up to twice its share)."""
    worker = make_delivery_worker(pool, None, timeout=9)  # a held POST must not time out meanwhile
    receiver.hold_after = 2  # the first two answered at once, every later one held unanswered
    await subscribe(api, receiver.url())
    for n in range(20):
        await create_customer(api, f"c-{n}")
    try:
        assert await worker.claim() == worker.per_subscription
        await wait_for(lambda: len(receiver.holding()) == 2 and len(worker._tasks) == 2, "two held, two done")
        assert await worker.claim() == worker.per_subscription - 2
        assert await worker.claim() == 0
        await wait_for(lambda: len(receiver.holding()) == worker.per_subscription, "the slots at the receiver")
        receiver.release()
        await worker.drain()
    finally:
        receiver.release()
        await worker.client.aclose()
    assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE state = 'delivered'") == 20
    assert len({r.webhook_id for r in receiver.received}) == 20


async def test_the_address_is_checked_when_it_is_dialled() -> None:
    """A public-looking name that resolves to loopback (a rebinding DNS answer) is refused at connect."""

    async def rebinding(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    hosts = WebhookHosts()
    client = WebhookClient(hosts, timeout=1, transport=GuardedTransport(hosts, resolver=rebinding))
    try:
        answer = await client.post("https://hooks.example.com/x", "whsec_" + "A" * 44, "evt_1", b"{}")
    finally:
        await client.aclose()
    assert answer.status is None and answer.error is not None and "not public" in answer.error
    assert not answer.delivered


async def test_a_dead_receiver_is_retried_not_fatal(api: ApiClient, pool: asyncpg.Pool) -> None:
    await subscribe(api, "http://127.0.0.1:9/nothing-listens")
    await create_customer(api, "c-1")
    worker = make_delivery_worker(pool, None)
    try:
        await worker.drain()
    finally:
        await worker.client.aclose()
    row = await pool.fetchrow("SELECT * FROM webhook_deliveries")
    assert row is not None and row["state"] == "pending" and row["attempts"] == 1
    assert row["last_status"] is None and "connection failed" in row["last_error"]


async def test_the_failure_endpoint_is_optional(api: ApiClient, receiver: Receiver, pool: asyncpg.Pool) -> None:
    receiver.default = Reply(500)
    await subscribe(api, receiver.url())
    await create_customer(api, "c-1")
    worker = make_delivery_worker(pool, None, max_attempts=1)
    try:
        await worker.drain()
    finally:
        await worker.client.aclose()
    row = await wait_row(pool, "failed")
    assert row["failure_notified"] is False and len(receiver.received) == 1


def test_an_operator_setting_with_a_bad_host_is_refused() -> None:
    with pytest.raises(ValueError, match="CANOPY_SVC_WEBHOOK_ALLOWED_HOSTS"):
        WebhookHosts.from_entries(["not a host"])
    with pytest.raises(ValueError, match="CANOPY_SVC_WEBHOOK_ALLOWED_HOSTS"):
        Settings.from_env({"CANOPY_SVC_WEBHOOK_ALLOWED_HOSTS": "bad/host", "CANOPY_SVC_JWT_SECRET": "x" * 40})


async def test_retention_purges_old_events_and_finished_deliveries(
    api: ApiClient, receiver: Receiver, pool: asyncpg.Pool
) -> None:
    from canopy_svc.rules import retention

    await subscribe(api, receiver.url())
    await create_customer(api, "c-1")
    await create_customer(api, "c-2")
    await pool.execute("UPDATE events SET created_at = now() - interval '31 days' WHERE data->>'customer_id' = 'c-1'")
    await pool.execute("UPDATE webhook_deliveries SET state = 'failed', finished_at = now() - interval '6 days'")
    assert await retention.purge_expired(pool, event_days=30, delivery_days=5) >= 2
    events = (await api.http.get("/events")).json()["results"]
    assert [e["data"]["customer_id"] for e in events] == ["c-2"]
    assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries") == 0


WEBHOOK_URL_CANDIDATES = [
    "https://hooks.example.com/x?a=1",
    "HTTPS://Hooks.Example.COM:0443/a/b/?q=/x?y",
    "https://hooks.example.com:65535",
    "https://hooks.example.com:65536",
    "https://hooks.example.com:0",
    "https://hooks.example.com:00000",
    "https://hooks.example.com:000001",
    "https://hooks.example.com:/x",
    "https://-.",
    "https://8.8.8.8/x",  # an address, public or not, is refused: name the host
    "https://10.0.0.1",
    "https://256.1.1.1",  # no IPv4 address: a name, checked when dialled
    "https://01.2.3.4",
    "https://127.1",
    "https://1.2.3.4.",
    "https://1.2.3.4.example.com",
    "https://[2606:4700::1111]/x",
    "https://[::1]:8080",
    "https://[:::]",
    "https://localhost",
    "https://LOCALHOST:443/",
    "https://a.b.LocalHost",
    "https://.localhost",
    "https://notlocalhost",
    "https://localhost.example.com",
    "https://localhost./x",
    "http://hooks.example.com",
    "http://127.0.0.1:8080/x",
    "http://127.0.0.1:08080/x",
    "http://127.0.0.1",
    "https://127.0.0.1",
    "http://localhost:80/",
    "http://LOCALHOST",
    "https://fake.example:8443/x",
    "https://fake.example",
    "http://fake.example:8443",
    "http://[::1]:5/x",
    "http://[0:0:0:0:0:0:0:1]:5",  # the server takes every spelling; the document says the canonical one
    "https://user@hooks.example.com/",
    "https://hooks.example.com/a b",
    "https://hooks.example.com/#f",
    "ftp://hooks.example.com/",
    "https://hooks.example.com/\n",
    "https://hooks.example.com\n",
]


@pytest.mark.parametrize("entries", [(), ("127.0.0.1:8080", "localhost", "fake.example:8443", "[::1]")])
def test_the_documents_webhook_url_pattern_is_the_servers_rule(entries: tuple[str, ...]) -> None:
    """The OpenAPI document states WebhookHosts.problem whole, for the operator's hosts as they are set
    (schemathesis then holds the server to it: what the pattern allows is accepted, the rest refused)."""
    from canopy_svc.api import openapi
    from canopy_svc.api.app import ENDPOINTS

    hosts = WebhookHosts.from_entries(entries)
    schema = openapi.build_document(ENDPOINTS, webhook_hosts=hosts)["components"]["schemas"]["SubscriptionCreate"]
    patterns = {schema["properties"]["webhook_url"]["pattern"]}
    patterns |= {s["pattern"] for s in schema["properties"]["failure_notification_endpoint"]["anyOf"] if "pattern" in s}
    (pattern,) = patterns
    assert "x-webhook-url" not in json.dumps(schema)
    for url in WEBHOOK_URL_CANDIDATES:
        if url == "http://[0:0:0:0:0:0:0:1]:5" and entries:
            continue
        # SubscriptionCreate's own pattern (a scheme and printable ASCII), then the server's rule.
        enforced = re.fullmatch(r"[Hh][Tt][Tt][Pp][Ss]?://[!-~]+", url) is not None and hosts.problem(url) is None
        assert (re.search(pattern, url) is not None) == enforced, url


def test_the_hosts_refuse_what_they_should() -> None:
    hosts = WebhookHosts.from_entries(ALLOWED)
    assert hosts.problem("http://127.0.0.1:8080/x") is None  # the operator's loopback, plain http
    assert hosts.problem("https://hooks.example.com/x?a=1") is None
    assert hosts.problem("http://127.0.0.2/x") is not None
    assert WebhookHosts().problem("http://127.0.0.1/x") is not None
    # An address literal is refused even when public: a receiver is named (its certificate names it),
    # and the address a name resolves to is checked when it is dialled.
    assert WebhookHosts().problem("https://8.8.8.8/x") == "must name its host (not an IP address or localhost)"
    assert WebhookHosts().problem("https://[2606:4700::1111]/x") is not None
