"""Bearer tokens: JWTs made and checked with python-jose, HS256 only.

A token is accepted only in the one form this service writes it:
- canonical JWS compact form: three base64url segments ([A-Za-z0-9_-], no padding), each decoding
  and re-encoding to itself (so its last character's unused bits are zero). base64 decoders skip
  junk and ignore those bits, so without this `token + "~~"`, `token + "="` or a changed last
  character would verify too, as the same token under another spelling.
- strict claims: `exp`, `iat` (and `nbf`, if present) are JSON integers from 0 to 2**53 - 1. RFC
  7519 allows any finite number; this service is the only issuer and writes integer seconds, so a
  fraction, a numeric string or an `Infinity` (which Python's json reads) is a token it did not make.
  `iss`, `aud`, `sub`, `org` (decimal digits), `scope` and `jti` are strings.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from jose import jws, jwt
from jose.exceptions import JOSEError

from canopy_svc.rules.validation import json_depth_exceeds
from canopy_svc.wire.errors import Forbidden, NotAuthorized, Unauthorized

# Pinned: a token naming any other algorithm ("none", RS256 with our secret as a "public key"...)
# is refused before its signature is looked at.
ALGORITHMS = ["HS256"]
_CACHE_LIMIT = 10_000
# Ours are about 300 characters; a long one is refused before any decoding.
MAX_TOKEN_LENGTH = 4096
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")

NumericDate = Annotated[int, msgspec.Meta(ge=0, le=2**53 - 1)]


class _Header(msgspec.Struct):
    alg: str


class _Claims(msgspec.Struct):
    iss: str
    aud: str
    sub: str
    org: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,18}$")]
    scope: str
    iat: NumericDate
    exp: NumericDate
    jti: str
    nbf: NumericDate | None = None


_header_decoder = msgspec.json.Decoder(_Header)
_claims_decoder = msgspec.json.Decoder(_Claims)


@dataclass(frozen=True, slots=True)
class Principal:
    client_id: str
    org_id: int
    scopes: frozenset[str]
    expires_at: int


class TokenAuthority:
    def __init__(self, secret: str, *, issuer: str, audience: str, ttl_seconds: int) -> None:
        self._secret = secret
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds
        # Verified tokens, so a client's every request does not pay for the HMAC and claim checks.
        # Only a token that passed _decode, so only its canonical spelling, is ever a key.
        self._verified: dict[str, Principal] = {}

    def issue(self, client_id: str, org_id: int, scopes: str) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": self.audience, "sub": client_id, "org": str(org_id),
            "scope": scopes, "iat": now, "exp": now + self.ttl_seconds, "jti": uuid.uuid4().hex,
        }  # fmt: skip
        return str(jwt.encode(claims, self._secret, algorithm=ALGORITHMS[0]))

    def verify(self, token: str) -> Principal:
        principal = self._verified.get(token)
        if principal is not None:
            if principal.expires_at > time.time():
                return principal
            del self._verified[token]
            raise NotAuthorized("Token expired")
        principal = self._decode(token)
        if len(self._verified) >= _CACHE_LIMIT:
            self._verified.clear()
        self._verified[token] = principal
        return principal

    def _decode(self, token: str) -> Principal:
        header, payload = canonical_segments(token)
        try:
            if _header_decoder.decode(header).alg not in ALGORITHMS:
                raise Unauthorized("Invalid token")
            jws.verify(token, self._secret, algorithms=ALGORITHMS)  # the signature, by python-jose
            claims = _claims_decoder.decode(payload)
        except (msgspec.DecodeError, JOSEError):
            raise Unauthorized("Invalid token") from None
        if claims.iss != self.issuer or claims.aud != self.audience:
            raise Unauthorized("Invalid token")
        now = time.time()
        if claims.nbf is not None and claims.nbf > now:
            raise Unauthorized("Invalid token")
        if claims.exp <= now:
            raise NotAuthorized("Token expired")
        return Principal(
            client_id=claims.sub, org_id=int(claims.org), scopes=frozenset(claims.scope.split()), expires_at=claims.exp
        )


def canonical_segments(token: str) -> tuple[bytes, bytes]:
    """The decoded header and payload of a token in canonical compact form; else 401."""
    if len(token) > MAX_TOKEN_LENGTH or not _COMPACT_JWS.fullmatch(token):
        raise Unauthorized("Invalid token")
    decoded = [_canonical_b64url(segment) for segment in token.split(".")]
    header, payload = decoded[0], decoded[1]
    # Both are flat JSON objects; jose's json.loads would recurse into a deep one (RecursionError).
    if json_depth_exceeds(header, 1) or json_depth_exceeds(payload, 1):
        raise Unauthorized("Invalid token")
    return header, payload


def _canonical_b64url(segment: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise Unauthorized("Invalid token") from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != segment:
        raise Unauthorized("Invalid token")  # unused bits set, or a length no encoder writes
    return raw


def require_scope(principal: Principal, scope: str) -> None:
    if scope not in principal.scopes:
        raise Forbidden(f"Token lacks the '{scope}' scope")
