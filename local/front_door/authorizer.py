"""API Gateway's JWT authorizer for HTTP APIs, as its developer guide describes the checks (docs/api.md cites it):

1. the token is taken from the identity source (``Authorization``, with or without ``Bearer``);
2. it is an RS256 JWT whose ``kid`` is in the issuer's JWKS (``{issuer}/.well-known/jwks.json``) and whose
   signature verifies;
3. ``iss`` equals the authorizer's issuer;
4. ``aud`` - or, when the token has none (Cognito's access tokens), ``client_id`` - is one of the audience;
5. ``exp`` is in the future (and ``nbf``, ``iat`` not);
6. when the route has authorization scopes, the token's ``scope`` (or ``scp``) holds at least one of them.

A failure of 1-5 is 401 ``{"message":"Unauthorized"}``; of 6, 403 ``{"message":"Forbidden"}``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

JWKS_CACHE_SECONDS = 2 * 3600  # API Gateway caches a JWKS for up to two hours
VERIFIED_TOKENS_KEPT = 4096


class Unauthorized(Exception):
    """401: no token, or one API Gateway does not accept; the message is what www-authenticate says."""


class Forbidden(Exception):
    """403: a valid token without any of the route's scopes."""


@dataclass(frozen=True)
class JwtConfiguration:
    issuer: str
    audience: tuple[str, ...]


class JwksCache:
    """The issuers' key sets, fetched on first use and again when a token names an unknown kid."""

    def __init__(self, jwks_url: Callable[[str], str]):
        self._jwks_url = jwks_url
        self._sets: dict[str, tuple[float, KeySet]] = {}
        self._verified: dict[str, tuple[KeySet, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def key_set(self, issuer: str, kid: str | None) -> KeySet:
        with self._lock:
            cached = self._sets.get(issuer)
        if cached and time.monotonic() - cached[0] < JWKS_CACHE_SECONDS and \
                any(k.kid == kid for k in cached[1].keys):
            return cached[1]
        try:
            answer = requests.get(self._jwks_url(issuer), timeout=5)
            answer.raise_for_status()
            key_set = KeySet.import_key_set(answer.json())
        except (requests.RequestException, ValueError, JoseError) as exc:
            raise Unauthorized(f"the issuer's keys could not be read: {type(exc).__name__}") from None
        with self._lock:
            self._sets[issuer] = (time.monotonic(), key_set)
        return key_set

    def verified_claims(self, token: str, issuer: str, kid: str | None) -> dict[str, Any]:
        """The claims of a token whose signature verifies with the issuer's keys. A client sends one token many
        times until it expires, so its signature is checked once per key set (a refreshed set checks it again);
        every other check is made on every request."""
        key_set = self.key_set(issuer, kid)
        with self._lock:
            seen = self._verified.get(token)
        if seen and seen[0] is key_set:
            return seen[1]
        try:
            claims = jwt.decode(token, key_set, algorithms=["RS256"]).claims
        except (JoseError, ValueError):
            raise Unauthorized("the token's signature does not verify") from None
        with self._lock:
            if len(self._verified) >= VERIFIED_TOKENS_KEPT:
                self._verified.clear()
            self._verified[token] = (key_set, claims)
        return claims


def bearer_token(header: str | None) -> str:
    if not header or not header.strip():
        raise Unauthorized("no token")
    parts = header.strip().split()
    if len(parts) == 2 and parts[0].lower() == "bearer":
        return parts[1]
    if len(parts) == 1:
        return parts[0]
    raise Unauthorized("the token is not a JWT")


def authorize(header: str | None, config: JwtConfiguration, route_scopes: list[str], keys: JwksCache,
              now: float | None = None) -> tuple[dict[str, Any], list[str]]:
    """The token's claims and scopes, or Unauthorized / Forbidden as API Gateway would answer."""
    token = bearer_token(header)
    try:
        header_fields = jws.extract_compact(token.encode()).protected
    except (JoseError, ValueError, UnicodeError):
        raise Unauthorized("the token is not a JWT") from None
    if header_fields.get("alg") != "RS256":
        raise Unauthorized("the token's algorithm is not RS256")
    if not header_fields.get("kid"):
        raise Unauthorized("the token names no key (kid)")
    claims = keys.verified_claims(token, config.issuer, header_fields.get("kid"))
    if claims.get("iss") != config.issuer:
        raise Unauthorized("the token has an invalid issuer")
    audience = claims.get("aud", claims.get("client_id"))
    audiences = audience if isinstance(audience, list) else [audience]
    if not any(a in config.audience for a in audiences if isinstance(a, str)):
        raise Unauthorized("the token does not have a valid audience")
    now = time.time() if now is None else now
    if not isinstance(claims.get("exp"), (int, float)) or claims["exp"] <= now:
        raise Unauthorized("the token has expired")
    if any(isinstance(claims.get(name), (int, float)) and claims[name] > now for name in ("nbf", "iat")):
        raise Unauthorized("the token is not valid yet")
    granted = str(claims.get("scope", claims.get("scp", ""))).split()
    if route_scopes and not set(granted) & set(route_scopes):
        raise Forbidden("the token does not have the scope this route requires")
    return claims, granted


def claims_as_strings(claims: dict[str, Any]) -> dict[str, str]:
    """Claims as API Gateway passes them in payload format 2.0: every value a string, a list as "[a b]"."""
    def text(value: Any) -> str:
        if isinstance(value, list):
            return "[" + " ".join(text(v) for v in value) + "]"
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return {name: text(value) for name, value in claims.items()}
