"""HTTP rules of CONTRACT section 1 and operations of section 8: the error envelope, 400/404/405/413/415,
X-Request-Id, the access log, health, the OpenAPI document and the docs page, and 500/503 hygiene."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from canopy_svc.api.app import create_app
from canopy_svc.core.logs import JsonFormatter
from canopy_svc.core.settings import Settings
from tests.helpers import ApiClient, make_client, minimal_customer, seed_customer

MIB = 1024 * 1024
JSON = {"Content-Type": "application/json"}


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


def allow(response: httpx.Response) -> set[str]:
    return {method.strip() for method in response.headers["allow"].split(",")}


# --- envelope: 404, 405 --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nope", "/customers/x/y/z", "/v1/customers", "/auth"])
async def test_unknown_path_is_404_envelope(api: ApiClient, path: str) -> None:
    assert_envelope(await api.http.get(path), 404, "not_found")


async def test_wrong_method_is_405_with_allow(api: ApiClient) -> None:
    response = await api.http.delete("/customers")
    assert_envelope(response, 405, "method_not_allowed")
    assert {"GET", "POST"} <= allow(response) <= {"GET", "POST", "HEAD"}

    response = await api.http.delete("/customers/x")
    assert_envelope(response, 405, "method_not_allowed")
    assert {"GET", "PUT", "PATCH"} <= allow(response) <= {"GET", "PUT", "PATCH", "HEAD"}

    response = await api.http.post("/customers/x", json={})
    assert_envelope(response, 405, "method_not_allowed")
    assert "POST" not in allow(response)


async def test_wrong_method_on_public_routes(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.post("/healthz", json={})
    assert_envelope(response, 405, "method_not_allowed")
    assert "GET" in allow(response)
    response = await anonymous.get("/auth/token")
    assert_envelope(response, 405, "method_not_allowed")
    assert allow(response) == {"POST"}


# --- bodies: 415, 413, 400 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx", "multipart/form-data; boundary=x"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/customers"), ("PUT", "/customers/x"), ("PATCH", "/customers/x"), ("POST", "/auth/token")],
)
async def test_body_must_be_json(
    api: ApiClient, pool: asyncpg.Pool, content_type: str | None, method: str, path: str
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = await api.http.request(method, path, content=json.dumps(minimal_customer()).encode(), headers=headers)
    assert_envelope(response, 415, "unsupported_media_type")
    assert await pool.fetchval("SELECT count(*) FROM customers") == 0


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", "application/json;charset=UTF-8"]
)
async def test_json_media_type_with_parameters_is_accepted(api: ApiClient, content_type: str) -> None:
    response = await api.http.post(
        "/customers", content=json.dumps(minimal_customer()).encode(), headers={"Content-Type": content_type}
    )
    assert response.status_code == 200, response.text


def padded(size: int) -> bytes:
    """A valid customer body padded with JSON white space to exactly `size` bytes."""
    body = json.dumps(minimal_customer()).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


async def test_body_of_exactly_1_mib_is_accepted(api: ApiClient) -> None:
    body = padded(MIB)
    assert len(body) == MIB
    response = await api.http.post("/customers", content=body, headers=JSON)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/customers"), ("PUT", "/customers/x"), ("PATCH", "/customers/x"), ("POST", "/auth/token")],
)
async def test_body_over_1_mib_with_content_length_is_413(
    api: ApiClient, pool: asyncpg.Pool, method: str, path: str
) -> None:
    response = await api.http.request(method, path, content=padded(MIB + 1), headers=JSON)
    assert "content-length" in response.request.headers
    assert_envelope(response, 413, "payload_too_large")
    assert await pool.fetchval("SELECT count(*) FROM customers") == 0


async def test_streamed_body_over_1_mib_without_content_length_is_413(api: ApiClient, pool: asyncpg.Pool) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"name_first": "' + b"x" * 1000
        for _ in range(2 * MIB // 65536):
            sent += 65536
            yield b"x" * 65536
        yield b'"}'

    response = await api.http.post("/customers", content=chunks(), headers=JSON)
    assert "content-length" not in response.request.headers
    assert_envelope(response, 413, "payload_too_large")
    assert await pool.fetchval("SELECT count(*) FROM customers") == 0


async def test_streamed_small_body_is_fine(api: ApiClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        raw = json.dumps(minimal_customer()).encode()
        for i in range(0, len(raw), 7):
            yield raw[i : i + 7]

    response = await api.http.post("/customers", content=chunks(), headers=JSON)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"{'a': 1}",
        b"nope",
        b"",
        b"\xff\xfe",
        b'{"a": 1}}',
        b"[]",
        b"[{}]",
        b'"a string"',
        b"42",
        b"null",
        b"true",
    ],
)
@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/customers"), ("PATCH", "/customers/x"), ("POST", "/auth/token")]
)
async def test_malformed_or_non_object_body_is_400(api: ApiClient, raw: bytes, method: str, path: str) -> None:
    response = await api.http.request(method, path, content=raw, headers=JSON)
    assert_envelope(response, 400, "bad_request")


async def test_422_envelope_lists_details(api: ApiClient) -> None:
    error = assert_envelope(await api.http.post("/customers", json={}), 422, "invalid_input")
    assert len(error["details"]) == 9


async def test_400_for_a_bad_query_parameter(api: ApiClient) -> None:
    error = assert_envelope(await api.http.get("/customers", params={"starting_after": "forged"}), 400, "bad_request")
    assert error["details"] == []


# --- X-Request-Id --------------------------------------------------------------------------------


@pytest.mark.parametrize("sane", ["abc-123", "a", "0f8c2d1e-9b7a-4c3d-8e2f-1a2b3c4d5e6f", "req.1:2_3", "x" * 128])
async def test_sane_request_id_is_echoed(api: ApiClient, sane: str) -> None:
    response = await api.http.get("/customers", headers={"X-Request-Id": sane})
    assert response.headers["x-request-id"] == sane


@pytest.mark.parametrize("insane", ["x" * 129, "has spaces", "semi;colon", "new\tline", "<script>", "é"])
async def test_insane_request_id_is_replaced(api: ApiClient, insane: str) -> None:
    response = await api.http.get("/customers", headers={"X-Request-Id": insane.encode("utf-8")})
    replaced = response.headers["x-request-id"]
    assert replaced and replaced != insane
    assert re.fullmatch(r"[A-Za-z0-9._:\-]{1,128}", replaced)


async def test_request_id_is_made_when_absent_and_fresh_each_time(api: ApiClient) -> None:
    first = (await api.http.get("/customers")).headers["x-request-id"]
    second = (await api.http.get("/customers")).headers["x-request-id"]
    assert first and second and first != second


async def test_request_id_on_every_kind_of_response(api: ApiClient, anonymous: httpx.AsyncClient) -> None:
    responses = [
        await anonymous.get("/customers"),  # 401
        await anonymous.get("/healthz"),
        await anonymous.get("/openapi.json"),
        await api.http.get("/nope"),  # 404
        await api.http.delete("/customers"),  # 405
        await api.http.post("/customers", content=b"{}"),  # 415
        await api.http.post("/customers", content=padded(MIB + 10), headers=JSON),  # 413
        await api.http.post("/customers", content=b"[", headers=JSON),  # 400
        await api.http.post("/customers", json={}),  # 422
        await api.http.post("/customers", json=minimal_customer()),  # 200
        await anonymous.post("/auth/token", json={"client_id": "x", "client_secret": "y"}),  # 401
    ]
    statuses = {r.status_code for r in responses}
    assert statuses == {200, 400, 401, 404, 405, 413, 415, 422}
    for response in responses:
        assert response.headers.get("x-request-id"), (response.status_code, response.headers)
    echoed = await anonymous.get("/customers", headers={"X-Request-Id": "abc-123"})
    assert echoed.status_code == 401 and echoed.headers["x-request-id"] == "abc-123"


# --- the access log ------------------------------------------------------------------------------


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    formatter = JsonFormatter()
    return [json.loads(formatter.format(r)) for r in caplog.records if r.name == "canopy_svc.access"]


async def test_one_json_access_line_per_request(
    api: ApiClient, anonymous: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="canopy_svc.access")
    await api.http.post("/customers", json=seed_customer(), headers={"X-Request-Id": "req-create"})
    await api.http.get("/customers/0x1234", headers={"X-Request-Id": "req-get"})
    await anonymous.get("/customers", headers={"X-Request-Id": "req-anon"})
    await api.http.get("/nope", headers={"X-Request-Id": "req-404"})
    lines = access_lines(caplog)
    assert [line["request_id"] for line in lines] == ["req-create", "req-get", "req-anon", "req-404"]
    for line in lines:
        assert {"request_id", "client_id", "method", "path", "status", "duration_ms"} <= set(line)
        assert isinstance(line["duration_ms"], int | float) and line["duration_ms"] >= 0
    create, get, anon, missing = lines
    assert (create["method"], create["path"], create["status"], create["client_id"]) == (
        "POST",
        "/customers",
        200,
        api.client_id,
    )
    assert (get["method"], get["path"], get["status"]) == ("GET", "/customers/0x1234", 200)
    assert (anon["status"], anon["client_id"]) == (401, None)
    assert missing["status"] == 404


async def test_access_log_carries_no_personal_data_tokens_or_secrets(
    api: ApiClient, anonymous: httpx.AsyncClient, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _, client_id, secret = await make_client(pool, "acme")
    token_response = await anonymous.post("/auth/token", json={"client_id": client_id, "client_secret": secret})
    token = token_response.json()["access_token"]
    await anonymous.post(
        "/customers",
        json=seed_customer(ssn="123-45-6789", email="secret.person@example.com"),
        headers={"Authorization": f"Bearer {token}"},
    )
    await api.http.get("/customers", params={"search_parameters": "trevino zebulon", "limit": "7"})
    await api.http.patch("/customers/0x1234", json={"ssn": "987-65-4321"})
    await api.http.post("/customers", json=seed_customer(customer_id="c2", ssn="000-11-2222"))  # 422
    await anonymous.post("/auth/token", json={"client_id": client_id, "client_secret": "wrong-" + secret})
    formatter = JsonFormatter()
    # the service's own lines (the test's httpx client logs its URLs, that is not the service)
    text = "\n".join(formatter.format(r) for r in caplog.records if not r.name.startswith("httpx"))
    assert len(access_lines(caplog)) == 6
    for needle in (
        "123-45-6789",
        "123456789",
        "987-65-4321",
        "000-11-2222",
        "secret.person",
        "example.com",
        secret,
        token,
        token.split(".")[2],
        "zebulon",
        "search_parameters",
        "limit=7",
        "Trevino",
    ):
        assert needle not in text, needle
    assert api.http.headers["Authorization"].split(" ", 1)[1] not in text


# --- health, OpenAPI, docs -----------------------------------------------------------------------


async def test_healthz_and_readyz(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    response = await anonymous.get("/readyz")
    assert response.status_code == 200 and response.json()["status"] == "ready"


@pytest.fixture
async def openapi_document(anonymous: httpx.AsyncClient) -> dict[str, Any]:
    response = await anonymous.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document: dict[str, Any] = response.json()
    return document


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = document["components"]["schemas"][name]
    return schema


async def test_openapi_document(openapi_document: dict[str, Any]) -> None:
    document = openapi_document
    assert document["openapi"].startswith("3.1")
    paths = document["paths"]
    assert {"post", "get"} <= set(paths["/customers"])
    assert {"get", "put", "patch"} <= set(paths["/customers/{customer_id}"])
    assert "post" in paths["/auth/token"]
    assert {"/healthz", "/readyz"} <= set(paths)
    create = paths["/customers"]["post"]
    request_schema = create["requestBody"]["content"]["application/json"]["schema"]
    assert request_schema["$ref"].endswith("/CustomerCreate")
    customer_create = resolve(document, request_schema)
    required = set(customer_create["required"])
    assert {
        "name_first",
        "name_last",
        "phone_number",
        "address_line_one",
        "address_city",
        "address_state",
        "address_zip",
        "email",
        "date_of_birth",
    } == required
    assign = customer_create["properties"]["assign_to_accounts"]
    arrays = [s for s in assign.get("anyOf", [assign]) if s.get("type") == "array"]
    assert arrays and arrays[0]["maxItems"] == 100
    country = customer_create["properties"]["address_country_code"]
    enums = [s["enum"] for s in country.get("anyOf", [country]) if "enum" in s]
    assert enums and "AN" in enums[0] and "US" in enums[0] and "us" not in enums[0]
    assert "security" not in create or create["security"] == [{"bearerAuth": []}]
    assert paths["/customers"]["get"]["security"] == [{"bearerAuth": []}]
    assert "security" not in paths["/auth/token"]["post"]
    assert {"200", "422"} <= set(create["responses"])


async def test_openapi_patterns_match_what_is_enforced(openapi_document: dict[str, Any]) -> None:
    """The document is built from the validating types: its patterns are the enforced ones."""
    from canopy_svc.wire import fields

    customer_create = openapi_document["components"]["schemas"]["CustomerCreate"]
    ssn = customer_create["properties"]["ssn"]
    patterns = [s.get("pattern") for s in ssn.get("anyOf", [ssn])]
    assert fields.SSN_PATTERN in patterns
    customer_id = customer_create["properties"]["customer_id"]
    assert fields.CUSTOMER_ID_PATTERN in [s.get("pattern") for s in customer_id.get("anyOf", [customer_id])]


LISTINGS = ["/customers", "/customers/accounts", "/customers/{customer_id}/accounts", "/products", "/accounts"]
LISTINGS += ["/customers/{customer_id}/beneficial_owners"]


def listing_query(document: dict[str, Any], path: str) -> dict[str, Any]:
    (parameter,) = [p for p in document["paths"][path]["get"]["parameters"] if p["in"] == "query"]
    assert (parameter["style"], parameter["explode"]) == ("form", True)  # ?limit=5&starting_after=...
    schema: dict[str, Any] = parameter["schema"]
    return schema


async def test_openapi_listing_states_the_paging_rules(openapi_document: dict[str, Any], api: ApiClient) -> None:
    """The cursors exclude each other (one object parameter, so OpenAPI can say it), match the pattern
    the server checks (empty is none), and `limit` accepts anything: both as the server has them."""
    import jsonschema

    from canopy_svc.rules import paging

    for path in LISTINGS:
        query = listing_query(openapi_document, path)
        assert {"limit", "starting_after", "ending_before"} <= set(query["properties"])
        assert query["properties"]["starting_after"]["pattern"] == paging.CURSOR_PATTERN
        validator = jsonschema.Draft202012Validator(query)
        assert not validator.is_valid({"starting_after": "A" * 27, "ending_before": "A" * 27})
        assert validator.is_valid({"starting_after": "A" * 27, "ending_before": "", "limit": "abc"})
        assert not validator.is_valid({"starting_after": "A" * 27 + "="})
    assert listing_query(openapi_document, "/customers/accounts")["properties"]["limit"]["default"] == "30"
    # What the document refuses, the server does; what it allows (an empty cursor is none), the server takes.
    for params in (
        {"starting_after": "A" * 27, "ending_before": "A" * 27},
        {"ending_before": "A" * 27 + "="},
        {"starting_after": "A" * 26 + "!"},
    ):
        assert_envelope(await api.http.get("/customers", params=params), 400, "bad_request")
    assert (await api.http.get("/customers", params={"starting_after": "", "ending_before": ""})).status_code == 200


def request_schema(document: dict[str, Any], name: str) -> Any:
    import jsonschema

    components = {"components": document["components"]}
    return jsonschema.Draft202012Validator(
        {**document["components"]["schemas"][name], **components},
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


async def test_openapi_states_the_meaning_rules(openapi_document: dict[str, Any], api: ApiClient) -> None:
    """What validation.py refuses beyond the types is in the document too, and both refuse the same."""
    import datetime

    create, update = (request_schema(openapi_document, name) for name in ("CustomerCreate", "CustomerUpdate"))
    today = datetime.datetime.now(datetime.UTC).date()
    refused = [
        {"ssn": "000-12-3456"},
        {"ssn": "123004567"},
        {"ssn": "123-45-0000"},
        {"email": "someone@example.test"},
        {"email": "no-at-sign"},
        {"date_of_birth": "1899-12-31"},
        {"date_of_birth": (today + datetime.timedelta(days=1)).isoformat()},
        {"address_country_code": "PR", "address_zip": "ABC"},
        {"address_country_code": "DE", "address_zip": "10115!"},
        {"name_middle": "a\x00b"},
    ]
    for body in refused:
        assert not create.is_valid(minimal_customer(**body)), body
        assert not update.is_valid(body), body
        assert_envelope(await api.http.post("/customers", json=minimal_customer(**body)), 422, "invalid_input")
    # No country is the US on create; on an update without one the stored country decides, unseen.
    for body in ({"address_zip": "SW1A 1AA"}, {"address_state": "Bavaria"}):
        assert not create.is_valid(minimal_customer(**body)) and update.is_valid(body), body
        assert_envelope(await api.http.post("/customers", json=minimal_customer(**body)), 422, "invalid_input")
    allowed = [
        {"address_country_code": "DE", "address_zip": "10115", "address_state": "Berlin"},
        {"date_of_birth": today.isoformat()},
        {"ssn": "123-45-6789"},
    ]
    for n, change in enumerate(allowed):
        assert create.is_valid(minimal_customer(**change)) and update.is_valid(change), change
        response = await api.http.post("/customers", json=minimal_customer(customer_id=f"c{n}", **change))
        assert response.status_code == 200, response.text
    card = request_schema(openapi_document, "CardUpdate")
    assert not card.is_valid({}) and not card.is_valid({"memo": "x"})
    assert card.is_valid({"state": "OPEN"}) and card.is_valid({"spend_limit": None})


def test_openapi_base_url_is_the_servers_rule() -> None:
    """base_url's pattern is LithicHosts.problem, as the operator set it (CANOPY_SVC_LITHIC_ALLOWED_HOSTS)."""
    from canopy_svc.api import openapi
    from canopy_svc.api.app import ENDPOINTS
    from canopy_svc.issuers.hosts import LithicHosts

    candidates = [
        "https://api.lithic.com",
        "https://SANDBOX.lithic.com:0443/v1/",
        "https://api.lithic.com:8443",
        "http://api.lithic.com",
        "HTTPS://api.lithic.com",
        "https://api.lithic.com.evil.com",
        "https://api.lithic.com/a/../b",
        "https://user@api.lithic.com",
        "http://127.0.0.1:8080/x",
        "https://127.0.0.1:8080",
        "http://127.0.0.1:9090",
        "http://localhost:1/",
        "https://fake.example",
        "http://fake.example",
        "https://fake.example:443/p",
        "https://fake.example:444",
        "http://[::1]:5",
    ]
    for entries in ((), ("127.0.0.1:8080", "localhost", "fake.example:443", "[::1]")):
        hosts = LithicHosts.from_entries(entries)
        schema = openapi.build_document(ENDPOINTS, lithic_hosts=hosts)["components"]["schemas"]["LithicConfigIn"]
        (url_schema,) = [s for s in schema["properties"]["base_url"]["anyOf"] if s.get("type") == "string"]
        pattern = re.compile(url_schema["pattern"])
        for url in candidates:
            # LithicConfigIn's own pattern (^https?://, lowercase) and then LithicHosts.problem.
            enforced = url.startswith(("https://", "http://")) and hosts.problem(url) is None
            assert (pattern.search(url) is not None) == enforced, url


def server_refuses(body: dict[str, Any]) -> bool:
    """Whether POST /customers' parse (shape and meaning) refuses the body."""
    from canopy_svc.rules.customers import parse_create
    from canopy_svc.wire.errors import InvalidInput

    try:
        parse_create(json.dumps(body).encode())
    except InvalidInput:
        return True
    return False


def test_openapi_phone_pattern_is_phonenumbers_possible_lengths() -> None:
    """The document's E.164 pattern, the server's check and phonenumbers' metadata agree for every
    country calling code and every national number length (E.164 caps the whole at 15 digits)."""
    import phonenumbers
    from phonenumbers import PhoneNumber, ValidationResult, is_possible_number_with_reason

    from canopy_svc.api import openapi
    from canopy_svc.api.app import ENDPOINTS
    from canopy_svc.rules import validation

    schema = openapi.build_document(ENDPOINTS)["components"]["schemas"]["CustomerCreate"]
    pattern = re.compile(schema["properties"]["phone_number"]["pattern"])
    possible = 0
    for code in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE):
        for length in range(1, 16):
            national = "5" * length
            number = PhoneNumber(country_code=code, national_number=int(national))
            expected = (
                is_possible_number_with_reason(number) == ValidationResult.IS_POSSIBLE and len(str(code)) + length <= 15
            )
            e164 = f"+{code}{national}"
            assert (pattern.search(e164) is not None) == validation.is_possible_e164(e164) == expected, e164
            possible += expected
    assert possible > 400  # not vacuous: every country code has a possible length or more
    # Fictional and test ranges are possible numbers (the contract); a final newline is no number.
    assert pattern.search("+15555555555") and not pattern.search("+15555555555\n")


def test_openapi_ssn_and_email_rules_are_the_servers_for_the_whole_class() -> None:
    """Every SSN with any of its groups all zeros, hyphenated or not, and every special-use domain in any
    case, as a domain or a subdomain's parent: the document refuses exactly what the server does."""
    import itertools

    import email_validator

    from canopy_svc.api import openapi
    from canopy_svc.api.app import ENDPOINTS

    create = request_schema(openapi.build_document(ENDPOINTS), "CustomerCreate")
    bodies = []
    for zeros in itertools.product([False, True], repeat=3):
        groups = ["000" if zeros[0] else "123", "00" if zeros[1] else "45", "0000" if zeros[2] else "6789"]
        bodies += [{"ssn": "".join(groups)}, {"ssn": "-".join(groups)}]
    for name in sorted(email_validator.SPECIAL_USE_DOMAIN_NAMES):
        for domain in (name, name.upper(), f"mail.{name}", f"{name}.example.com", f"not{name}.com"):
            bodies.append({"email": f"someone@{domain}"})
    refused = 0
    for change in bodies:
        body = minimal_customer(**change)
        assert (not create.is_valid(body)) == server_refuses(body), change
        refused += server_refuses(body)
    assert refused == 14 + 3 * len(email_validator.SPECIAL_USE_DOMAIN_NAMES)  # the two lists, less what passes


async def test_openapi_birth_dates_turn_with_the_utc_day(monkeypatch: pytest.MonkeyPatch) -> None:
    """/openapi.json states date_of_birth up to the day of the clock it reads: rebuilt when the UTC day
    turns (into a leap day, out of it, into a new year), not within a day. A turned clock, not the wall."""
    import datetime

    from starlette.applications import Starlette

    from canopy_svc.api import openapi, routing
    from canopy_svc.api.app import ENDPOINTS
    from canopy_svc.rules.validation import EARLIEST_BIRTH_DATE

    days = [
        datetime.date(2024, 2, 28),
        datetime.date(2024, 2, 29),
        datetime.date(2024, 3, 1),
        datetime.date(2024, 12, 31),
        datetime.date(2025, 1, 1),
    ]
    clock = [days[0]]
    built: list[datetime.date | None] = []
    build = openapi.build_document

    def counted(operations: Any, today: datetime.date | None = None, *args: Any) -> dict[str, Any]:
        built.append(today)
        return build(operations, today, *args)

    monkeypatch.setattr(openapi, "build_document", counted)
    app = Starlette(routes=routing.routes(openapi.endpoints(ENDPOINTS, today=lambda: clock[0])))
    one_day = datetime.timedelta(days=1)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        for day in days:
            clock[0] = day
            for _ in range(2):  # the second is the first's document
                response = await client.get("/openapi.json")
                assert response.status_code == 200
                schemas = response.json()["components"]["schemas"]
                for name in ("CustomerCreate", "CustomerUpdate"):
                    pattern = re.compile(schemas[name]["properties"]["date_of_birth"]["pattern"])
                    for accepted in (EARLIEST_BIRTH_DATE, day - one_day, day):
                        assert pattern.search(accepted.isoformat()), (day, accepted)
                    for refused in (EARLIEST_BIRTH_DATE - one_day, day + one_day):
                        assert not pattern.search(refused.isoformat()), (day, refused)
    assert built == days


async def test_openapi_document_is_valid(openapi_document: dict[str, Any]) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(openapi_document)


async def test_docs_page_is_swagger_ui_from_this_server(anonymous: httpx.AsyncClient) -> None:
    """The page, its script and the bundle's files, each with its own content type, under a CSP that lets
    the page load from this origin only, and no inline script. (tests/test_docs_browser.py drives it.)"""
    from canopy_svc.api import docs_ui

    page = await anonymous.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert policy == docs_ui.CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in policy and "unsafe" not in policy and "connect-src 'self'" in policy
    assert "<script>" not in page.text  # every script is a file: no 'unsafe-inline' needed
    loaded = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert set(loaded) == {
        "/docs/swagger-ui.css", "/docs/favicon-32x32.png", "/docs/swagger-ui-bundle.js", "/docs/init.js"
    }  # fmt: skip
    types = {
        "/docs/swagger-ui.css": "text/css; charset=utf-8",
        "/docs/swagger-ui-bundle.js": "text/javascript; charset=utf-8",
        "/docs/init.js": "text/javascript; charset=utf-8",
        "/docs/favicon-32x32.png": "image/png",
        "/docs/openapi-3.0.json": "application/json",
    }
    for path, content_type in types.items():
        answer = await anonymous.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["content-type"] == content_type, path
        assert answer.headers["x-content-type-options"] == "nosniff", path
    bundle = await anonymous.get("/docs/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in bundle.text and "max-age" in bundle.headers["cache-control"]
    assert (await anonymous.get("/docs/favicon-32x32.png")).content.startswith(b"\x89PNG")
    options = (await anonymous.get("/docs/init.js")).text
    assert '"/docs/openapi-3.0.json"' in options and "persistAuthorization: false" in options
    # Nothing else of the package's folder is served (its index.html points at the petstore): not a
    # public path, so an anonymous request is refused as on any unknown path.
    assert (await anonymous.get("/docs/index.html")).status_code == 401


async def test_swagger_uis_document_is_the_document_in_openapi_30(
    anonymous: httpx.AsyncClient, openapi_document: dict[str, Any]
) -> None:
    """Swagger UI 4 (the bundle's) renders OpenAPI 3.0 only: its document is a valid 3.0 one with the
    same operations, bodies, examples and bearer scheme as /openapi.json."""
    validators = pytest.importorskip("openapi_spec_validator")
    from openapi_spec_validator.validation import OpenAPIV30SpecValidator

    shown = (await anonymous.get("/docs/openapi-3.0.json")).json()
    validators.validate(shown, cls=OpenAPIV30SpecValidator)
    assert shown["openapi"] == "3.0.3"
    assert shown["components"]["securitySchemes"] == {
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    assert openapi_document["components"]["securitySchemes"] == shown["components"]["securitySchemes"]
    for path, operations in openapi_document["paths"].items():
        assert set(shown["paths"][path]) == set(operations), path
        for method, operation in operations.items():
            converted = shown["paths"][path][method]
            assert converted.get("security") == operation.get("security"), (method, path)
            assert converted.get("requestBody", {}).get("content", {}).get("application/json", {}).get(
                "example"
            ) == operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("example")
    assert set(shown["paths"]) == set(openapi_document["paths"])
    text = json.dumps(shown)
    assert '"type": "null"' not in text and '"const"' not in text and '"examples"' not in text


def test_the_30_rendition_says_31s_words_in_30s() -> None:
    from canopy_svc.api.docs_ui import as_openapi_30

    document = {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1", "description": "d."},
        "paths": {},
        "components": {
            "schemas": {
                "A": {
                    "type": "object",
                    "required": [],
                    "properties": {
                        "ref": {"anyOf": [{"$ref": "#/components/schemas/B"}, {"type": "null"}], "default": None},
                        "plain": {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "null"}]},
                        "two": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                        "fixed": {"const": "x"},
                        "listed": {"type": ["integer", "null"], "examples": [1, 2]},
                    },
                    "if": {"required": ["plain"]},
                    "then": {"required": ["ref"]},
                },
                "B": {"type": "string"},
            }
        },
    }
    original = json.dumps(document)
    shown = as_openapi_30(document)
    assert json.dumps(document) == original  # the 3.1 document is left as it was
    a = shown["components"]["schemas"]["A"]
    assert "required" not in a and "if" not in a and "then" not in a
    assert a["properties"] == {
        "ref": {"allOf": [{"$ref": "#/components/schemas/B"}], "nullable": True, "default": None},
        "plain": {"type": "string", "maxLength": 3, "nullable": True},
        "two": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        "fixed": {"enum": ["x"]},
        "listed": {"type": "integer", "nullable": True, "example": 1},
    }


RATE_LIMIT_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


# --- 500 and 503 ---------------------------------------------------------------------------------

SENSITIVE = "SELECT ssn FROM customers WHERE ssn = '123-45-6789' -- at /srv/canopy_svc/store/customers.py"


class _Failing:
    """Any use raises `error`: as a pool, as a connection, as a context manager."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise self.error

        return fail


@pytest.fixture
def broken_app(settings: Settings, request: pytest.FixtureRequest) -> Any:
    error: BaseException = request.param
    app = create_app(settings, pool=_Failing(error))  # type: ignore[arg-type]
    return app


async def client_of(app: Any) -> httpx.AsyncClient:
    token = app.resources.tokens.issue("cli_test", 1, "read write")
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {token}"},
    )


@pytest.mark.parametrize("broken_app", [RuntimeError(SENSITIVE)], indirect=True)
async def test_500_never_leaks_internals(broken_app: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with await client_of(broken_app) as http:
        for response in (
            await http.get("/customers/0x1234"),
            await http.get("/customers"),
            await http.post("/customers", json=seed_customer(ssn="123-45-6789")),
        ):
            error = assert_envelope(response, 500, "server_error")
            assert error["details"] == []
            for needle in ("SELECT", "ssn", "123-45-6789", "Traceback", "RuntimeError", ".py"):
                assert needle not in response.text
            assert response.headers.get("x-request-id")
            assert set(RATE_LIMIT_HEADERS) <= set(response.headers)  # an authenticated response, even a 500
    logged = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert "123-45-6789" not in logged and "SELECT" not in logged
    assert "RuntimeError" in logged  # the type is logged for the operator, the text is not


@pytest.mark.parametrize(
    "broken_app", [ConnectionRefusedError(111, "Connection refused"), OSError("unreachable")], indirect=True
)
async def test_database_unreachable_is_503_with_retry_after(broken_app: Any) -> None:
    async with await client_of(broken_app) as http:
        for response in (await http.get("/customers/0x1234"), await http.get("/readyz")):
            assert_envelope(response, 503, "unavailable")
            assert int(response.headers["retry-after"]) >= 1
            assert response.headers.get("x-request-id")
        authenticated = await http.get("/customers/0x1234")
        assert set(RATE_LIMIT_HEADERS) <= set(authenticated.headers)
        healthz = await http.get("/healthz")
        assert healthz.status_code == 200  # the process is up even when the database is not


async def test_a_client_gone_mid_body_gets_no_answer_and_logs_499(
    app: Any, api: ApiClient, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """Not a server error: nothing is sent (it would be a 500 to nobody), nothing stored, no error line."""
    caplog.set_level(logging.INFO, logger="canopy_svc")
    token = api.http.headers["authorization"].encode()
    chunks = [
        {"type": "http.request", "body": b'{"name_first": "Ada",', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return chunks.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/customers",
        "raw_path": b"/customers",
        "query_string": b"",
        "root_path": "",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 40000),
        "headers": [(b"host", b"testserver"), (b"authorization", token), (b"content-type", b"application/json")],
    }
    await app(scope, receive, send)
    assert sent == []
    (line,) = access_lines(caplog)
    assert (line["path"], line["status"], line["client_id"]) == ("/customers", 499, api.client_id)
    assert not [r for r in caplog.records if r.name == "canopy_svc.wire.errors"]
    assert await pool.fetchval("SELECT count(*) FROM customers") == 0
