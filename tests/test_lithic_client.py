"""The Lithic client against a fake Lithic that enforces the wire rules; the simulator; Retry-After."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from canopy_svc.issuers.card_issuer import CardRequest, IssuedCard, LithicRejected, LithicRetryable
from canopy_svc.issuers.hosts import LithicHosts
from canopy_svc.issuers.lithic import LITHIC_SANDBOX_URL, LithicClient, parse_retry_after
from canopy_svc.issuers.simulator import CardSimulator
from tests.fake_lithic import FakeLithic
from tests.helpers import CUSTOMERS_SHIPPING_ADDRESS

KEY = "test-key"
FAKE = LithicHosts.from_entries(["127.0.0.1"])  # the operator's setting that lets the fake Lithic be reached
PROGRAM = "00000000-0000-0000-1000-000000000000"  # Lithic's sandbox card program token


@pytest.fixture
async def client() -> AsyncIterator[LithicClient]:
    async with LithicClient(timeout=5.0, hosts=FAKE) as lithic:
        yield lithic


def new_key() -> str:
    return str(uuid.uuid4())


async def test_create_sends_exactly_what_lithic_expects(client: LithicClient, fake_lithic: FakeLithic) -> None:
    key = new_key()
    card = CardRequest(
        type="SINGLE_USE", memo="Jane's card", state="PAUSED", spend_limit=150_00, card_program_token=PROGRAM
    )

    issued = await client.create_card(fake_lithic.base_url, KEY, key, card)

    assert fake_lithic.spec_violations == []
    [request] = fake_lithic.requests
    assert (request.method, request.path) == ("POST", "/v1/cards")
    assert request.headers["Authorization"] == KEY
    assert request.headers["Idempotency-Key"] == key
    assert request.headers["Content-Type"] == "application/json"
    assert request.body == {
        "type": "SINGLE_USE",
        "memo": "Jane's card",
        "state": "PAUSED",
        "spend_limit": 15000,
        "card_program_token": PROGRAM,
    }
    stored = fake_lithic.cards[issued.token]
    assert issued == IssuedCard(
        token=stored["token"],
        last_four=stored["pan"][-4:],
        state="PAUSED",
        type="SINGLE_USE",
        memo="Jane's card",
        spend_limit=15000,
        spend_limit_duration="TRANSACTION",
        exp_month=stored["exp_month"],
        exp_year=stored["exp_year"],
        created=datetime.fromisoformat(stored["created"]),
        hostname=None,  # Lithic's "": not locked to a merchant
    )
    assert stored["pan"] not in repr(issued) and "cvv" not in repr(issued)


async def test_physical_card_sends_shipping_expiry_and_duration(client: LithicClient, fake_lithic: FakeLithic) -> None:
    card = CardRequest(
        type="PHYSICAL",
        spend_limit_duration="MONTHLY",
        exp_month="07",
        exp_year="2029",
        product_id="783991122",
        shipping_method="STANDARD_WITH_TRACKING",
        shipping_address=CUSTOMERS_SHIPPING_ADDRESS,
    )

    issued = await client.create_card(fake_lithic.base_url, KEY, new_key(), card)

    assert fake_lithic.spec_violations == []
    assert fake_lithic.requests[0].body == {
        "type": "PHYSICAL",
        "spend_limit_duration": "MONTHLY",
        "exp_month": "07",
        "exp_year": "2029",
        "product_id": "783991122",
        "shipping_method": "STANDARD_WITH_TRACKING",
        "shipping_address": CUSTOMERS_SHIPPING_ADDRESS,
    }
    assert (issued.type, issued.state, issued.spend_limit_duration) == ("PHYSICAL", "PENDING_FULFILLMENT", "MONTHLY")
    assert (issued.exp_month, issued.exp_year) == ("07", "2029")
    assert "Lovelace" not in repr(card)  # a request is never logged with its address


async def test_answer_keeps_the_locked_merchant_and_never_the_pan() -> None:
    answer = {
        "token": str(uuid.uuid4()), "last_four": "4142", "state": "OPEN", "type": "MERCHANT_LOCKED",
        "memo": "m", "spend_limit": 0, "spend_limit_duration": "FOREVER", "exp_month": "06", "exp_year": "2031",
        "created": "2021-06-28T22:53:15Z", "hostname": "shop.example.com", "pan": "4111111289144142", "cvv": "776",
    }  # fmt: skip
    async with LithicClient(transport=httpx.MockTransport(lambda _: httpx.Response(200, json=answer))) as mocked:
        issued = await mocked.create_card(LITHIC_SANDBOX_URL, KEY, new_key(), CardRequest(type="MERCHANT_LOCKED"))

    assert issued.hostname == "shop.example.com"
    assert issued.created == datetime(2021, 6, 28, 22, 53, 15, tzinfo=UTC)
    assert (issued.spend_limit, issued.spend_limit_duration) == (0, "FOREVER")
    assert "4111111289144142" not in repr(issued) and "776" not in repr(issued)


@pytest.mark.parametrize(
    "change",
    [{"type": "PLASTIC"}, {"state": "LOST"}, {"last_four": "42"}],
)
async def test_an_answer_outside_the_spec_is_retried_not_stored(change: dict[str, str]) -> None:
    answer = {"token": str(uuid.uuid4()), "last_four": "4142", "state": "OPEN", "type": "VIRTUAL"} | change
    async with LithicClient(transport=httpx.MockTransport(lambda _: httpx.Response(200, json=answer))) as mocked:
        with pytest.raises(LithicRetryable):
            await mocked.create_card(LITHIC_SANDBOX_URL, KEY, new_key(), CardRequest(type="VIRTUAL"))


async def test_none_fields_are_left_out(client: LithicClient, fake_lithic: FakeLithic) -> None:
    issued = await client.create_card(fake_lithic.base_url, KEY, new_key(), CardRequest(type="MERCHANT_LOCKED"))

    assert fake_lithic.requests[0].body == {"type": "MERCHANT_LOCKED"}
    assert fake_lithic.spec_violations == []
    assert (issued.state, issued.memo, issued.spend_limit) == ("OPEN", None, 0)


async def test_same_idempotency_key_twice_makes_one_card(client: LithicClient, fake_lithic: FakeLithic) -> None:
    key, card = new_key(), CardRequest(type="VIRTUAL", memo="m")

    first = await client.create_card(fake_lithic.base_url, KEY, key, card)
    second = await client.create_card(fake_lithic.base_url, KEY, key, card)

    assert first == second
    assert list(fake_lithic.cards) == [first.token]
    assert fake_lithic.spec_violations == []


async def test_base_url_with_trailing_v1_or_slash_is_accepted(client: LithicClient, fake_lithic: FakeLithic) -> None:
    await client.create_card(fake_lithic.base_url + "/v1/", KEY, new_key(), CardRequest(type="SINGLE_USE"))

    assert fake_lithic.requests[0].path == "/v1/cards"
    assert fake_lithic.spec_violations == []


async def test_429_is_retryable_with_retry_after(client: LithicClient, fake_lithic: FakeLithic) -> None:
    fake_lithic.fail_next(status=429, times=2, retry_after="1", message="Rate limited, too many requests per second")
    key, card = new_key(), CardRequest(type="SINGLE_USE")

    for _ in range(2):
        with pytest.raises(LithicRetryable) as caught:
            await client.create_card(fake_lithic.base_url, KEY, key, card)
        assert (caught.value.status, caught.value.retry_after) == (429, 1.0)
        assert caught.value.message == "Rate limited, too many requests per second"
    issued = await client.create_card(fake_lithic.base_url, KEY, key, card)

    assert list(fake_lithic.cards) == [issued.token]
    assert {r.headers["Idempotency-Key"] for r in fake_lithic.requests} == {key}


async def test_429_with_http_date_retry_after(client: LithicClient, fake_lithic: FakeLithic) -> None:
    fake_lithic.fail_next(status=429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")

    with pytest.raises(LithicRetryable) as caught:
        await client.create_card(fake_lithic.base_url, KEY, new_key(), CardRequest(type="SINGLE_USE"))

    assert caught.value.retry_after == 0.0  # a date in the past means "now"


@pytest.mark.parametrize("status", [500, 502, 503, 408, 409])
async def test_server_errors_and_lock_timeouts_are_retryable(
    client: LithicClient, fake_lithic: FakeLithic, status: int
) -> None:
    fake_lithic.fail_next(status=status)

    with pytest.raises(LithicRetryable) as caught:
        await client.create_card(fake_lithic.base_url, KEY, new_key(), CardRequest(type="SINGLE_USE"))

    assert caught.value.status == status
    assert caught.value.retry_after is None
    assert fake_lithic.cards == {}


async def test_422_is_rejected_with_lithic_message(client: LithicClient, fake_lithic: FakeLithic) -> None:
    fake_lithic.fail_next(status=422, message="Invalid card_program_token")

    with pytest.raises(LithicRejected) as caught:
        await client.create_card(fake_lithic.base_url, KEY, new_key(), CardRequest(type="SINGLE_USE"))

    assert (caught.value.status, caught.value.message) == (422, "Invalid card_program_token")
    assert caught.value.debugging_request_id is not None
    assert fake_lithic.cards == {}


async def test_rejection_message_is_truncated_and_never_holds_the_key(
    client: LithicClient, fake_lithic: FakeLithic
) -> None:
    fake_lithic.fail_next(status=400, message=f"API key {KEY} is\nnot allowed " + "x" * 1000)

    with pytest.raises(LithicRejected) as caught:
        await client.create_card(fake_lithic.base_url, KEY, new_key(), CardRequest(type="SINGLE_USE"))

    message = caught.value.message
    assert message.startswith("API key [redacted] is not allowed xxx")
    assert len(message) == 500
    assert KEY not in str(caught.value) and "\n" not in message


async def test_wrong_key_is_rejected_401(client: LithicClient, fake_lithic: FakeLithic) -> None:
    with pytest.raises(LithicRejected) as caught:
        await client.create_card(fake_lithic.base_url, "other-key", new_key(), CardRequest(type="SINGLE_USE"))

    assert (caught.value.status, caught.value.message) == (401, "Could not find API key")
    assert fake_lithic.spec_violations == []


async def test_error_without_json_body_gets_a_status_message(client: LithicClient, fake_lithic: FakeLithic) -> None:
    fake_lithic.answer_next(status=403, body="<html>nope</html>", headers={"Content-Type": "text/html"})

    with pytest.raises(LithicRejected) as caught:
        await client.create_card(fake_lithic.base_url, KEY, new_key(), CardRequest(type="SINGLE_USE"))

    assert (caught.value.status, caught.value.message) == (403, "HTTP 403 Forbidden")


async def test_success_without_a_card_is_retryable(client: LithicClient, fake_lithic: FakeLithic) -> None:
    fake_lithic.answer_next(status=200, body={"unexpected": True})

    with pytest.raises(LithicRetryable) as caught:
        await client.create_card(fake_lithic.base_url, KEY, new_key(), CardRequest(type="SINGLE_USE"))

    assert caught.value.status == 200


async def test_timeout_is_retryable(fake_lithic: FakeLithic) -> None:
    fake_lithic.delay_next(seconds=5.0)

    async with LithicClient(timeout=0.2, hosts=FAKE) as impatient:
        with pytest.raises(LithicRetryable) as caught:
            await impatient.create_card(fake_lithic.base_url, KEY, new_key(), CardRequest(type="SINGLE_USE"))

    assert caught.value.status is None
    assert "in time" in caught.value.message


async def test_connection_refused_is_retryable(client: LithicClient) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(LithicRetryable) as caught:
        await client.create_card(f"http://127.0.0.1:{port}", KEY, new_key(), CardRequest(type="SINGLE_USE"))

    assert caught.value.status is None
    assert "ConnectError" in caught.value.message


async def test_lithic_down_then_back(client: LithicClient, fake_lithic: FakeLithic) -> None:
    key, card = new_key(), CardRequest(type="SINGLE_USE")
    fake_lithic.down = True
    with pytest.raises(LithicRetryable):
        await client.create_card(fake_lithic.base_url, KEY, key, card)
    fake_lithic.go_down(status=503)
    with pytest.raises(LithicRetryable) as caught:
        await client.create_card(fake_lithic.base_url, KEY, key, card)
    assert caught.value.status == 503

    fake_lithic.down = False
    issued = await client.create_card(fake_lithic.base_url, KEY, key, card)

    assert list(fake_lithic.cards) == [issued.token]


async def test_lost_answer_then_retry_returns_the_same_card(client: LithicClient, fake_lithic: FakeLithic) -> None:
    key, card = new_key(), CardRequest(type="SINGLE_USE", memo="lost", spend_limit=500)
    fake_lithic.lose_answer_next()

    with pytest.raises(LithicRetryable) as caught:
        await client.create_card(fake_lithic.base_url, KEY, key, card)
    assert caught.value.status == 500
    [created] = fake_lithic.cards.values()  # Lithic made it; we just never heard

    issued = await client.create_card(fake_lithic.base_url, KEY, key, card)

    assert issued.token == created["token"]
    assert len(fake_lithic.cards) == 1
    assert fake_lithic.spec_violations == []


async def test_update_state_and_spend_limit(client: LithicClient, fake_lithic: FakeLithic) -> None:
    issued = await client.create_card(fake_lithic.base_url, KEY, new_key(), CardRequest(type="SINGLE_USE"))

    paused = await client.update_card(fake_lithic.base_url, KEY, issued.token, state="PAUSED")
    limited = await client.update_card(fake_lithic.base_url, KEY, issued.token, spend_limit=2500)
    both = await client.update_card(fake_lithic.base_url, KEY, issued.token, state="OPEN", spend_limit=0)

    assert (paused.state, paused.spend_limit) == ("PAUSED", 0)
    assert (limited.state, limited.spend_limit) == ("PAUSED", 2500)
    assert (both.state, both.spend_limit) == ("OPEN", 0)
    patches = fake_lithic.requests[1:]
    assert [(r.method, r.path, r.body) for r in patches] == [
        ("PATCH", f"/v1/cards/{issued.token}", {"state": "PAUSED"}),
        ("PATCH", f"/v1/cards/{issued.token}", {"spend_limit": 2500}),
        ("PATCH", f"/v1/cards/{issued.token}", {"state": "OPEN", "spend_limit": 0}),
    ]
    assert all(r.headers["Authorization"] == KEY for r in patches)
    assert fake_lithic.cards[issued.token]["state"] == "OPEN"
    assert fake_lithic.spec_violations == []


async def test_closed_is_final(client: LithicClient, fake_lithic: FakeLithic) -> None:
    issued = await client.create_card(fake_lithic.base_url, KEY, new_key(), CardRequest(type="SINGLE_USE"))
    closed = await client.update_card(fake_lithic.base_url, KEY, issued.token, state="CLOSED")
    assert closed.state == "CLOSED"

    with pytest.raises(LithicRejected) as caught:
        await client.update_card(fake_lithic.base_url, KEY, issued.token, state="OPEN")

    assert caught.value.status == 400
    assert fake_lithic.cards[issued.token]["state"] == "CLOSED"


async def test_update_unknown_card_is_rejected_404(client: LithicClient, fake_lithic: FakeLithic) -> None:
    with pytest.raises(LithicRejected) as caught:
        await client.update_card(fake_lithic.base_url, KEY, str(uuid.uuid4()), state="PAUSED")

    assert (caught.value.status, caught.value.message) == (404, "Card not found")
    assert fake_lithic.spec_violations == []


async def test_lost_update_answer_is_retryable_and_the_retry_agrees(
    client: LithicClient, fake_lithic: FakeLithic
) -> None:
    issued = await client.create_card(fake_lithic.base_url, KEY, new_key(), CardRequest(type="SINGLE_USE"))
    fake_lithic.lose_answer_next()

    with pytest.raises(LithicRetryable):
        await client.update_card(fake_lithic.base_url, KEY, issued.token, state="PAUSED")
    again = await client.update_card(fake_lithic.base_url, KEY, issued.token, state="PAUSED")

    assert again.state == "PAUSED"


async def test_bad_configuration_fails_without_calling_lithic(client: LithicClient, fake_lithic: FakeLithic) -> None:
    card = CardRequest(type="SINGLE_USE")
    for base_url in ("sandbox.lithic.com", "ftp://sandbox.lithic.com", "http://sandbox.lithic.com"):
        with pytest.raises(LithicRejected) as caught:
            await client.create_card(base_url, KEY, new_key(), card)
        assert caught.value.status == 0
    for api_key in ("", "key\r\nX-Injected: 1", "kéy"):
        with pytest.raises(LithicRejected) as caught:
            await client.create_card(fake_lithic.base_url, api_key, new_key(), card)
        assert caught.value.status == 0
    with pytest.raises(ValueError, match="UUID"):
        await client.create_card(fake_lithic.base_url, KEY, "not-a-uuid", card)
    with pytest.raises(ValueError, match="state and/or spend_limit"):
        await client.update_card(fake_lithic.base_url, KEY, str(uuid.uuid4()))
    with pytest.raises(ValueError, match="card_token"):  # nor can a token reshape the path
        await client.update_card(fake_lithic.base_url, KEY, "../accounts", state="PAUSED")

    assert fake_lithic.requests == []


async def test_client_accepts_an_injected_transport() -> None:
    def lithic(request: httpx.Request) -> httpx.Response:
        assert request.url == "https://sandbox.lithic.com/v1/cards"
        return httpx.Response(
            200, json={"token": "t-1", "last_four": "4242", "state": "OPEN", "type": "SINGLE_USE", "pan": "x"}
        )

    async with LithicClient(transport=httpx.MockTransport(lithic)) as mocked:
        issued = await mocked.create_card(LITHIC_SANDBOX_URL, KEY, new_key(), CardRequest(type="SINGLE_USE"))

    assert issued == IssuedCard("t-1", "4242", "OPEN", "SINGLE_USE", None, None)


async def test_fake_flags_card_type_shipping_and_expiry_violations(fake_lithic: FakeLithic) -> None:
    url = fake_lithic.base_url + "/v1/cards"
    bodies = [
        {"type": "UNLOCKED"},  # deprecated: the service sends VIRTUAL
        {"type": "PHYSICAL"},  # no shipping_address
        {"type": "PHYSICAL", "shipping_address": {**CUSTOMERS_SHIPPING_ADDRESS, "country": "US"}},
        {"type": "PHYSICAL", "shipping_address": {**CUSTOMERS_SHIPPING_ADDRESS, "first_name": "Augusta Ada King-Noel"}},
        {"type": "PHYSICAL", "shipping_address": CUSTOMERS_SHIPPING_ADDRESS, "shipping_method": "EXPEDITED"},
        {"type": "VIRTUAL", "product_id": "1"},
        {"type": "VIRTUAL", "exp_month": "6", "exp_year": "2029"},
        {"type": "VIRTUAL", "exp_month": "06"},
    ]
    async with httpx.AsyncClient() as raw:
        answers = [
            await raw.post(url, headers={"Authorization": KEY, "Idempotency-Key": new_key()}, json=body)
            for body in bodies
        ]

    assert [a.status_code for a in answers] == [400] * len(bodies)
    assert len(fake_lithic.spec_violations) == len(bodies)
    assert fake_lithic.cards == {}


# -- the fake itself: it must catch a client that breaks the rules ----------------------------------------


async def test_fake_flags_spec_violations(fake_lithic: FakeLithic) -> None:
    url = fake_lithic.base_url + "/v1/cards"
    good = {"Authorization": KEY, "Idempotency-Key": new_key()}
    async with httpx.AsyncClient() as raw:
        bearer = await raw.post(url, headers={**good, "Authorization": f"Bearer {KEY}"}, json={"type": "SINGLE_USE"})
        no_key = await raw.post(url, headers={"Authorization": KEY}, json={"type": "SINGLE_USE"})
        nulls = await raw.post(url, headers=good, json={"type": "SINGLE_USE", "memo": None})
        extra = await raw.post(url, headers=good, json={"type": "SINGLE_USE", "colour": "red"})
        bad = await raw.post(
            url,
            headers=good,
            json={"type": "PLASTIC", "state": "CLOSED", "spend_limit": -1, "card_program_token": "x"},
        )
        form = await raw.post(url, headers=good, data={"type": "SINGLE_USE"})
        other = await raw.get(url, headers={"Authorization": KEY})

    statuses = [r.status_code for r in (bearer, no_key, nulls, extra, bad, form, other)]
    assert statuses == [401, 400, 400, 400, 400, 400, 404]
    assert bad.json()["message"] == (
        "spend_limit must be a non-negative integer (cents), got -1; card_program_token must be a UUID; "
        "invalid type 'PLASTIC'; invalid state 'CLOSED' (OPEN or PAUSED on create)"
    )
    assert len(fake_lithic.spec_violations) == 7
    assert fake_lithic.cards == {}
    assert fake_lithic.errors == []


async def test_fake_rejects_reusing_a_key_for_another_card(client: LithicClient, fake_lithic: FakeLithic) -> None:
    key = new_key()
    await client.create_card(fake_lithic.base_url, KEY, key, CardRequest(type="SINGLE_USE"))

    with pytest.raises(LithicRejected) as caught:
        await client.create_card(fake_lithic.base_url, KEY, key, CardRequest(type="SINGLE_USE", memo="other"))

    assert caught.value.status == 422
    assert fake_lithic.spec_violations == ["Idempotency-Key reused with a different body"]
    assert len(fake_lithic.cards) == 1


def test_fake_as_context_manager_stops_listening() -> None:
    with FakeLithic(api_key="k") as fake:
        base_url = fake.base_url
        assert httpx.post(base_url + "/v1/cards", headers={"Authorization": "k"}, json={}).status_code == 400

    with pytest.raises(httpx.ConnectError):
        httpx.post(base_url + "/v1/cards", json={})


# -- simulator ----------------------------------------------------------------------------------------------


async def test_simulator_issues_remembers_and_updates() -> None:
    simulator = CardSimulator()
    key = new_key()

    first = await simulator.create_card("ignored", "ignored", key, CardRequest(type="SINGLE_USE", spend_limit=100))
    again = await simulator.create_card("ignored", "ignored", key, CardRequest(type="SINGLE_USE", spend_limit=100))
    other = await simulator.create_card("ignored", "ignored", new_key(), CardRequest(type="MERCHANT_LOCKED"))

    assert first == again and first.token != other.token
    assert uuid.UUID(first.token) and len(first.last_four) == 4 and first.last_four.isdigit()
    assert (first.state, first.type, first.spend_limit, first.memo) == ("OPEN", "SINGLE_USE", 100, None)

    paused = await simulator.update_card("", "", first.token, state="PAUSED", spend_limit=50)
    assert (paused.token, paused.state, paused.spend_limit) == (first.token, "PAUSED", 50)
    assert await simulator.create_card("", "", key, CardRequest(type="SINGLE_USE")) == paused

    await simulator.update_card("", "", first.token, state="CLOSED")
    with pytest.raises(LithicRejected) as closed:
        await simulator.update_card("", "", first.token, state="OPEN")
    assert closed.value.status == 400
    with pytest.raises(LithicRejected) as unknown:
        await simulator.update_card("", "", str(uuid.uuid4()), state="PAUSED")
    assert unknown.value.status == 404
    with pytest.raises(LithicRejected):
        await simulator.create_card("", "", new_key(), CardRequest(type="SINGLE_USE", state="CLOSED"))
    await simulator.aclose()


# -- Retry-After --------------------------------------------------------------------------------------------

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("soon", None),
        ("-5", None),
        ("nan", None),
        ("0", 0.0),
        ("1", 1.0),
        (" 7 ", 7.0),
        ("2.5", 2.5),
        ("86400", 3600.0),
        ("Thu, 02 Jan 2025 03:04:35 GMT", 30.0),
        ("Thu, 02 Jan 2025 03:04:00 GMT", 0.0),
        ("Fri, 03 Jan 2025 03:04:05 GMT", 3600.0),
        ("Thu, 02 Jan 2025 03:04:35 -0000", 30.0),
        ("Thu, 99 Foo 2025 03:04:35 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_defaults_to_the_current_time() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
