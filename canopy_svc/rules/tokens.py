"""Bearer tokens: JWTs made and checked with python-jose, HS256 only."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from jose import jwt
from jose.exceptions import ExpiredSignatureError, JWTClaimsError, JWTError

from canopy_svc.errors import NotAuthorized, Unauthorized

# Pinned: a token naming any other algorithm ("none", RS256 with our secret as a "public key"...)
# is refused before its signature is looked at.
ALGORITHMS = ["HS256"]
_REQUIRED_CLAIMS = ("iss", "aud", "sub", "org", "scope", "iat", "exp", "jti")
_CACHE_LIMIT = 10_000


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
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=ALGORITHMS, audience=self.audience, issuer=self.issuer,
                options={f"require_{name}": True for name in ("iat", "exp", "iss", "aud", "sub", "jti")},
            )
        except ExpiredSignatureError:
            raise NotAuthorized("Token expired") from None
        except JWTClaimsError:
            raise Unauthorized("Invalid token") from None
        except JWTError:
            raise Unauthorized("Invalid token") from None
        if any(name not in claims for name in _REQUIRED_CLAIMS):
            raise Unauthorized("Invalid token")
        try:
            org_id = int(claims["org"])
        except (TypeError, ValueError):
            raise Unauthorized("Invalid token") from None
        scope = claims["scope"]
        if not isinstance(scope, str) or not isinstance(claims["sub"], str):
            raise Unauthorized("Invalid token")
        return Principal(
            client_id=claims["sub"], org_id=org_id, scopes=frozenset(scope.split()),
            expires_at=int(claims["exp"]),
        )


def require_scope(principal: Principal, scope: str) -> None:
    if scope not in principal.scopes:
        raise NotAuthorized(f"Token lacks the '{scope}' scope")
