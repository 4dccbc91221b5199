"""POST /auth/token, bearer checks on every route, forged tokens, and scopes (CONTRACT section 2)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from jose import jwt

from canopy_svc.wire.errors import Unauthorized
from tests.helpers import TEST_JWT_SECRET, ApiClient, make_client, minimal_customer

ISSUER = "canopy-svc"
AUDIENCE = "canopy-svc-api"
PUBLIC_ROUTES = ["/healthz", "/readyz", "/openapi.json", "/docs", "/docs/swagger-ui-bundle.js"]
PROTECTED = [
    ("GET", "/customers"), ("POST", "/customers"), ("GET", "/customers/x"), ("PUT", "/customers/x"),
    ("PATCH", "/customers/x"), ("GET", "/customers/accounts"), ("GET", "/customers/x/accounts"),
    ("GET", "/products"), ("POST", "/products"), ("GET", "/products/p"), ("GET", "/accounts"),
    ("POST", "/accounts"), ("GET", "/accounts/a"), ("POST", "/accounts/a/customers/c/cards"),
    ("PUT", "/accounts/a/customers/c/cards"), ("GET", "/organization/settings"),
    ("PUT", "/organization/settings"), ("GET", "/organization/issuer_processors"),
    ("PUT", "/organization/issuer_processors"),
]  # fmt: skip
# What a read-only token may not do, beyond the customer writes.
WRITES_ELSEWHERE = [
    ("POST", "/products"), ("POST", "/accounts"), ("POST", "/accounts/a/customers/c/cards"),
    ("PUT", "/accounts/a/customers/c/cards"), ("PUT", "/organization/settings"),
    ("PUT", "/organization/issuer_processors"),
]  # fmt: skip


async def get_token(http: httpx.AsyncClient, client_id: str, client_secret: str) -> httpx.Response:
    return await http.post("/auth/token", json={"client_id": client_id, "client_secret": client_secret})


def claims_for(api: ApiClient, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER, "aud": AUDIENCE, "sub": api.client_id, "org": str(api.org_id), "scope": "read write",
        "iat": now, "exp": now + 600, "jti": uuid.uuid4().hex,
    }  # fmt: skip
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not ...}


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def by_hand(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A JWT assembled without a library; `key` None leaves the signature empty."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


async def call(
    http: httpx.AsyncClient, token: str | None, method: str = "GET", path: str = "/customers", scheme: str = "Bearer"
) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"{scheme} {token}"}
    kwargs: dict[str, Any] = {"json": minimal_customer()} if method in ("POST", "PUT", "PATCH") else {}
    return await http.request(method, path, headers=headers, **kwargs)


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == "unauthorized"


def assert_expired(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "not_authorized"


def assert_forbidden(response: httpx.Response) -> None:
    """A valid token lacking the route's scope: `forbidden`, never the code clients re-authenticate on."""
    assert response.status_code == 403, response.text
    if response.url.path.startswith("/api/public/api/1/"):  # the LoanPro face: its own error shape
        assert response.json()["error"] == {"message": "Forbidden", "type": "ForbiddenException", "code": 403}
    else:
        assert response.json()["error"]["code"] == "forbidden"


# --- POST /auth/token ----------------------------------------------------------------------------


async def test_token_for_good_credentials_works(anonymous: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    org_id, client_id, secret = await make_client(pool, "acme")
    response = await get_token(anonymous, client_id, secret)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "expires_in", "token_type"}
    assert body["expires_in"] == 3600 and body["token_type"] == "Bearer"
    token = body["access_token"]
    created = await anonymous.post(
        "/customers", json=minimal_customer(customer_id="via-token"), headers={"Authorization": f"Bearer {token}"}
    )
    assert created.status_code == 200, created.text
    fetched = await anonymous.get("/customers/via-token", headers={"Authorization": f"Bearer {token}"})
    assert fetched.status_code == 200
    assert await pool.fetchval("SELECT org_id FROM customers WHERE customer_id = 'via-token'") == org_id


async def test_issued_token_claims(anonymous: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    org_id, client_id, secret = await make_client(pool, "acme")
    before = int(time.time())
    first = (await get_token(anonymous, client_id, secret)).json()["access_token"]
    second = (await get_token(anonymous, client_id, secret)).json()["access_token"]
    after = int(time.time())
    assert jwt.get_unverified_header(first)["alg"] == "HS256"
    claims = jwt.decode(first, TEST_JWT_SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)
    assert set(claims) == {"iss", "aud", "sub", "org", "scope", "iat", "exp", "jti"}
    assert claims["iss"] == ISSUER and claims["aud"] == AUDIENCE
    assert claims["sub"] == client_id
    assert str(claims["org"]) == str(org_id)
    assert set(claims["scope"].split()) == {"read", "write"}
    assert before <= claims["iat"] <= after
    assert claims["exp"] - claims["iat"] == 3600
    other = jwt.get_unverified_claims(second)
    assert claims["jti"] and other["jti"] and claims["jti"] != other["jti"]


async def test_wrong_secret_and_unknown_client_are_the_same_401(
    anonymous: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    _, client_id, secret = await make_client(pool, "acme")
    wrong = await get_token(anonymous, client_id, secret + "x")
    unknown = await get_token(anonymous, "cli_doesnotexist000000", secret)
    assert_unauthorized(wrong)
    assert_unauthorized(unknown)
    assert wrong.content == unknown.content
    assert "access_token" not in wrong.text


async def test_token_request_body_is_validated(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.post("/auth/token", json={"client_id": "cli_x"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["params"] == {"missingProperty": "client_secret"}
    response = await anonymous.post("/auth/token", content=b"{oops", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_request"
    response = await anonymous.post(
        "/auth/token",
        content=b"client_id=a&client_secret=b",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415 and response.json()["error"]["code"] == "unsupported_media_type"


async def test_secret_is_stored_only_as_a_slow_hash(pool: asyncpg.Pool) -> None:
    _, client_id, secret = await make_client(pool, "acme")
    row = await pool.fetchrow("SELECT * FROM api_clients WHERE client_id = $1", client_id)
    assert row is not None
    assert row["secret_hash"].startswith("scrypt$")
    assert secret not in row["secret_hash"]
    assert all(secret not in str(value) for value in row.values())


# --- public and protected routes -----------------------------------------------------------------


@pytest.mark.parametrize("path", PUBLIC_ROUTES)
async def test_public_routes_need_no_token(anonymous: httpx.AsyncClient, path: str) -> None:
    response = await anonymous.get(path)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_protected_routes_need_a_token(anonymous: httpx.AsyncClient, method: str, path: str) -> None:
    assert_unauthorized(await call(anonymous, None, method, path))


@pytest.mark.parametrize(
    ("scheme", "token"),
    [
        ("Basic", "dXNlcjpwYXNz"),
        ("Token", "abc"),
        ("Bearer", ""),
        ("Bearer", "garbage"),
        ("Bearer", "a.b.c"),
        ("Bearer", "eyJhbGciOiJIUzI1NiJ9.e30."),
        ("Bearer", "Bearer x"),
    ],
)
async def test_malformed_authorization_is_401(
    api: ApiClient, anonymous: httpx.AsyncClient, scheme: str, token: str
) -> None:
    for method, path in PROTECTED:
        assert_unauthorized(await call(anonymous, token, method, path, scheme=scheme))


async def test_scheme_is_case_insensitive(api: ApiClient, anonymous: httpx.AsyncClient) -> None:
    token = api.http.headers["Authorization"].split(" ", 1)[1]
    response = await call(anonymous, token, scheme="bearer")
    assert response.status_code == 200, response.text


# --- forged tokens -------------------------------------------------------------------------------


async def test_a_correct_hand_made_token_is_accepted(api: ApiClient, anonymous: httpx.AsyncClient) -> None:
    """The control for the forgeries below: the same construction with everything right works."""
    token = by_hand({"alg": "HS256", "typ": "JWT"}, claims_for(api), TEST_JWT_SECRET.encode())
    response = await call(anonymous, token)
    assert response.status_code == 200, response.text
    library = jwt.encode(claims_for(api), TEST_JWT_SECRET, algorithm="HS256")
    assert (await call(anonymous, library)).status_code == 200


async def test_alg_none_is_401(api: ApiClient, anonymous: httpx.AsyncClient) -> None:
    for alg in ("none", "None", "NONE"):
        token = by_hand({"alg": alg, "typ": "JWT"}, claims_for(api), None)
        for method, path in PROTECTED:
            assert_unauthorized(await call(anonymous, token, method, path))
    # an unsigned token with a signature part copied from a genuine one
    genuine = jwt.encode(claims_for(api), TEST_JWT_SECRET, algorithm="HS256")
    unsigned = by_hand({"alg": "none"}, claims_for(api), None)
    assert_unauthorized(await call(anonymous, unsigned[:-1] + genuine.split(".")[2]))


async def test_token_signed_with_another_key_is_401(api: ApiClient, anonymous: httpx.AsyncClient) -> None:
    token = jwt.encode(claims_for(api), "another-secret-of-enough-length-0123456789", algorithm="HS256")
    for method, path in PROTECTED:
        assert_unauthorized(await call(anonymous, token, method, path))


async def test_tampered_payload_is_401(api: ApiClient, other_api: ApiClient, anonymous: httpx.AsyncClient) -> None:
    genuine = jwt.encode(claims_for(api), TEST_JWT_SECRET, algorithm="HS256")
    header, _, signature = genuine.split(".")
    evil = b64url(json.dumps(claims_for(api, org=str(other_api.org_id))).encode())
    assert_unauthorized(await call(anonymous, f"{header}.{evil}.{signature}"))


@pytest.mark.parametrize(
    "overrides",
    [
        {"iss": "someone-else"},
        {"aud": "another-api"},
        {"aud": ["another-api"]},
        {"iss": ...},
        {"aud": ...},
        {"sub": ...},
        {"org": ...},
        {"scope": ...},
        {"iat": ...},
        {"exp": ...},
        {"jti": ...},
        {"org": "not-a-number"},
        {"org": None},
        {"sub": 42},
        {"scope": ["read", "write"]},
        {"nbf": int(time.time()) + 3600},
    ],
)
async def test_wrong_or_missing_claims_are_401(
    api: ApiClient, anonymous: httpx.AsyncClient, overrides: dict[str, Any]
) -> None:
    token = jwt.encode(claims_for(api, **overrides), TEST_JWT_SECRET, algorithm="HS256")
    for method, path in PROTECTED:
        assert_unauthorized(await call(anonymous, token, method, path))


async def test_other_algorithms_are_401(api: ApiClient, anonymous: httpx.AsyncClient) -> None:
    for algorithm in ("HS512", "HS384"):
        token = jwt.encode(claims_for(api), TEST_JWT_SECRET, algorithm=algorithm)
        assert_unauthorized(await call(anonymous, token))
    # RS256 declared, "signed" with the shared secret as if it were a public key (alg confusion)
    for alg in ("RS256", "ES256", "PS256"):
        token = by_hand({"alg": alg, "typ": "JWT"}, claims_for(api), TEST_JWT_SECRET.encode())
        assert_unauthorized(await call(anonymous, token))


async def test_expired_token_is_403(api: ApiClient, anonymous: httpx.AsyncClient) -> None:
    now = int(time.time())
    token = jwt.encode(claims_for(api, iat=now - 7200, exp=now - 3600), TEST_JWT_SECRET, algorithm="HS256")
    for method, path in PROTECTED:
        assert_expired(await call(anonymous, token, method, path))


async def test_expired_token_that_was_valid_before_is_403(
    app: Any, api: ApiClient, anonymous: httpx.AsyncClient
) -> None:
    """A token seen (and cached) while valid is refused once its exp has passed."""
    now = int(time.time())
    # exp well ahead: now + 1 expires at the next whole second, maybe before the first call is answered.
    token = jwt.encode(claims_for(api, iat=now - 10, exp=now + 600), TEST_JWT_SECRET, algorithm="HS256")
    assert (await call(anonymous, token)).status_code == 200
    cache = getattr(app.resources.tokens, "_verified", None)
    cached = cache.get(token) if isinstance(cache, dict) else None
    if cached is None:
        pytest.skip("no verified-token cache to age")
    # age the cached entry instead of sleeping
    cache[token] = type(cached)(cached.client_id, cached.org_id, cached.scopes, now - 1)
    assert_expired(await call(anonymous, token))


# --- scopes --------------------------------------------------------------------------------------


async def test_read_scope_can_read_but_not_write(anonymous: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    _, client_id, secret = await make_client(pool, "acme", "read")
    response = await get_token(anonymous, client_id, secret)
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert jwt.get_unverified_claims(token)["scope"] == "read"
    assert (await call(anonymous, token, "GET", "/customers")).status_code == 200
    assert (await call(anonymous, token, "GET", "/customers/x")).status_code == 404
    for method, path in (("POST", "/customers"), ("PUT", "/customers/x"), ("PATCH", "/customers/x"), *WRITES_ELSEWHERE):
        assert_forbidden(await call(anonymous, token, method, path))
    assert (await call(anonymous, token, "GET", "/organization/settings")).status_code == 200
    assert await pool.fetchval("SELECT count(*) FROM customers") == 0


async def test_write_scope_alone_cannot_read(api: ApiClient, anonymous: httpx.AsyncClient) -> None:
    token = jwt.encode(claims_for(api, scope="write"), TEST_JWT_SECRET, algorithm="HS256")
    assert_forbidden(await call(anonymous, token, "GET", "/customers"))
    assert (await call(anonymous, token, "POST", "/customers")).status_code == 200


async def test_no_scope_is_403(api: ApiClient, anonymous: httpx.AsyncClient) -> None:
    token = jwt.encode(claims_for(api, scope=""), TEST_JWT_SECRET, algorithm="HS256")
    for method, path in PROTECTED:
        assert_forbidden(await call(anonymous, token, method, path))


def declared_protected() -> list[tuple[str, str]]:
    """Every endpoint the app declares that needs a token, its path parameters filled in."""
    from canopy_svc.api.app import ENDPOINTS

    return [(e.method, re.sub(r"\{\w+\}", "x", e.path)) for e in ENDPOINTS if not e.public]


async def test_every_declared_endpoint_needs_its_scope(api: ApiClient, anonymous: httpx.AsyncClient) -> None:
    """No scope: every endpoint is forbidden; read: every write; write: every read. From the declarations,
    so a route added later is covered by this test without a list to keep."""
    tokens = {
        scope: jwt.encode(claims_for(api, scope=scope), TEST_JWT_SECRET, algorithm="HS256")
        for scope in ("", "read", "write")
    }
    for method, path in declared_protected():
        assert_forbidden(await call(anonymous, tokens[""], method, path))
        needs = "read" if method == "GET" else "write"
        other = "write" if needs == "read" else "read"
        assert_forbidden(await call(anonymous, tokens[other], method, path))


async def test_expired_token_lacking_the_scope_is_expired(api: ApiClient, anonymous: httpx.AsyncClient) -> None:
    """Expiry is told first: a new token may well carry the scope."""
    now = int(time.time())
    token = jwt.encode(
        claims_for(api, scope="read", iat=now - 7200, exp=now - 3600), TEST_JWT_SECRET, algorithm="HS256"
    )
    assert_expired(await call(anonymous, token, "POST", "/customers"))


async def test_token_of_one_org_sees_only_that_org(api: ApiClient, other_api: ApiClient) -> None:
    assert (await api.http.post("/customers", json=minimal_customer(customer_id="mine"))).status_code == 200
    assert (await other_api.http.get("/customers/mine")).status_code == 404
    assert (await api.http.get("/customers/mine")).status_code == 200


# --- canonical form and strict claims (issue 8, items 9 and 10) ----------------------------------

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# Every printable ASCII character outside the token alphabet, and a few beyond ASCII.
NOT_B64URL = [c for c in map(chr, range(0x20, 0x7F)) if c not in B64URL and c != "."] + ["\t", "\xa0", "\xff"]


def respellings(token: str) -> set[str]:
    """The same token written otherwise: junk appended, inserted anywhere, padding, changed unused bits."""
    variants = {token + junk for junk in ("~~", "!!!!", "=", "==", "===", ".", "..", "%3D")}
    for position in range(len(token) + 1):
        for junk in NOT_B64URL:
            variants.add(token[:position] + junk + token[position:])
    segments = token.split(".")
    for index, segment in enumerate(segments):
        variants.add(".".join([*segments[:index], segment + "=" * (-len(segment) % 4 or 4), *segments[index + 1 :]]))
        # Another last character whose meaningful bits are the same: decodes to the same bytes.
        unused_bits = {2: 4, 3: 2}.get(len(segment) % 4, 0)
        if unused_bits:
            value = B64URL.index(segment[-1])
            for other in range(value & ~((1 << unused_bits) - 1), (value | ((1 << unused_bits) - 1)) + 1):
                if other != value:
                    variants.add(".".join([*segments[:index], segment[:-1] + B64URL[other], *segments[index + 1 :]]))
    variants.discard(token)
    return variants


def test_only_the_canonical_spelling_of_a_token_verifies(app: Any) -> None:
    authority = app.resources.tokens
    token = authority.issue("cli_x", 7, "read write")
    variants = respellings(token)
    assert len(variants) > 5_000
    same_bytes = [v for v in variants if v.count(".") == 2 and all(c in B64URL + "." for c in v)]
    assert same_bytes, "no variant changes only unused bits: the test would not test that"
    for variant in sorted(variants):
        with pytest.raises(Unauthorized):
            authority.verify(variant)
    assert authority.verify(token).org_id == 7


async def test_respelled_tokens_are_401_over_http(api: ApiClient, anonymous: httpx.AsyncClient) -> None:
    """Also after the genuine one was verified (and cached): the cache knows only the canonical spelling."""
    token = api.http.headers["Authorization"].split(" ", 1)[1]
    assert (await call(anonymous, token)).status_code == 200
    last = token.split(".")[2]
    flipped = last[:-1] + B64URL[B64URL.index(last[-1]) ^ 1]  # 43 characters: 2 unused bits in the last
    for variant in (
        token + "~~",
        token + "!!!!",
        token + "=",
        token + "==",
        f"{token[:-43]}{flipped}",
        token[:10] + "!" + token[10:],
        token.replace(".", "..", 1),
    ):
        assert_unauthorized(await call(anonymous, variant))
    assert (await call(anonymous, token)).status_code == 200


def signed_by_hand(claims_json: str, header: str = '{"alg":"HS256","typ":"JWT"}') -> str:
    """A token with exactly this claims text, signed with the real key."""
    signing_input = f"{b64url(header.encode())}.{b64url(claims_json.encode())}"
    signature = hmac.new(TEST_JWT_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("exp", "Infinity"),
        ("exp", "-Infinity"),
        ("exp", "NaN"),
        ("exp", '"{future}"'),
        ("exp", "{future}.5"),
        ("exp", "1e400"),
        ("exp", "1" + "0" * 400),
        ("exp", "true"),
        ("exp", "null"),
        ("exp", "-1"),
        ("exp", "{future}.0"),
        ("exp", str(2**53)),
        ("iat", '"{now}"'),
        ("iat", "Infinity"),
        ("iat", "{now}.25"),
        ("nbf", "Infinity"),
        ("nbf", '"{now}"'),
        ("nbf", "-Infinity"),
        ("org", "{org}"),
        ("org", '" {org}"'),
        ("aud", '["canopy-svc-api"]'),
        ("sub", '["x"]'),
    ],
)
async def test_claims_must_have_the_types_we_write(
    api: ApiClient, anonymous: httpx.AsyncClient, name: str, raw: str
) -> None:
    """A token signed with our key, but with a claim we never write so: 401, never a 500 or a 200."""
    now = int(time.time())
    claims = claims_for(api)
    claims.pop(name, None)
    text = json.dumps(claims)[:-1] + f', "{name}": ' + raw.format(future=now + 600, now=now, org=api.org_id) + "}"
    assert_unauthorized(await call(anonymous, signed_by_hand(text)))
    # The control: the same construction with the claim as we write it is accepted.
    assert (await call(anonymous, signed_by_hand(json.dumps(claims_for(api, nbf=now - 1))))).status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        '{"alg":"HS256","x":' + "[" * 1_200 + "]" * 1_200 + "}",
        "[" * 2_500,
        "[" * 30_000,
        '{"alg":"HS256","typ":"JWT","kid":"\\ud800"}',
        '"HS256"',
    ],
)
async def test_hostile_headers_are_401(api: ApiClient, anonymous: httpx.AsyncClient, header: str) -> None:
    assert_unauthorized(await call(anonymous, signed_by_hand(json.dumps(claims_for(api)), header)))
