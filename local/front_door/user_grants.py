"""What a user's sign-in on the twin's managed login leaves for its token endpoint: authorization codes and
refresh tokens.

A code is single-use and valid five minutes ("The response returns a one time use code that is valid for five
minutes", https://docs.aws.amazon.com/cognito/latest/developerguide/authorization-endpoint.html). It is bound to
the client, the redirect_uri it was issued for ("Must be the same redirect_uri that was used to get
authorization_code in /oauth2/authorize") and the PKCE challenge: ``code_verifier`` is "Required if grant_type is
authorization_code and the authorization code was requested with PKCE"
(https://docs.aws.amazon.com/cognito/latest/developerguide/token-endpoint.html), S256 only (RFC 7636 section 4.6).
A refresh token lives as long as the client's RefreshTokenValidity and keeps the sign-in's ``auth_time`` and
``origin_jti``. Time comes from ``clock``, so tests can move it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CODE_SECONDS = 300
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")  # RFC 7636 section 4.1


class GrantRefused(Exception):
    """The token endpoint's ``invalid_grant``; the message says why (for logs, not for the caller)."""


@dataclass(frozen=True)
class SignIn:
    """Who signed in, to which client, with which scopes and when: what the tokens are made from."""

    username: str
    client_id: str
    scopes: tuple[str, ...]
    auth_time: int
    nonce: str | None = None


@dataclass(frozen=True)
class _Code:
    sign_in: SignIn
    redirect_uri: str
    challenge: str | None
    expires: float


@dataclass(frozen=True)
class _Refresh:
    sign_in: SignIn
    origin_jti: str
    expires: float


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of a verifier: BASE64URL(SHA256(ASCII(verifier))) without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


class UserGrants:
    def __init__(self, clock: Callable[[], float] = time.time, signed_out: dict[str, Any] | None = None):
        """``signed_out``: the user pool's own register of refresh tokens (token -> (client, user, origin) or None
        once the user is signed out everywhere), so AdminUserGlobalSignOut revokes these tokens too, as on AWS."""
        self.clock = clock
        self._codes: dict[str, _Code] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._register = signed_out if signed_out is not None else {}
        self._lock = threading.Lock()

    def issue_code(self, sign_in: SignIn, redirect_uri: str, challenge: str | None) -> str:
        code = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            self._codes = {c: g for c, g in self._codes.items() if g.expires > now}  # forget unredeemed ones
            self._codes[code] = _Code(sign_in, redirect_uri, challenge, now + CODE_SECONDS)
        return code

    def redeem_code(self, code: str, client_id: str, redirect_uri: str, verifier: str | None) -> SignIn:
        with self._lock:
            grant = self._codes.pop(code, None)  # the first attempt spends it, right or wrong
        if grant is None:
            raise GrantRefused("the code is unknown or was used")
        if grant.expires <= self.clock():
            raise GrantRefused("the code has expired")
        if grant.sign_in.client_id != client_id:
            raise GrantRefused("the code was issued to another client")
        if grant.redirect_uri != redirect_uri:
            raise GrantRefused("the redirect_uri is not the one the code was issued for")
        if grant.challenge is not None and not (
                verifier and _VERIFIER.fullmatch(verifier) and hmac.compare_digest(s256(verifier), grant.challenge)):
            raise GrantRefused("the code_verifier does not match the code_challenge")
        return grant.sign_in

    def issue_refresh(self, sign_in: SignIn, origin_jti: str, lifetime_s: int) -> str:
        token = secrets.token_urlsafe(48)
        with self._lock:
            self._refresh[token] = _Refresh(sign_in, origin_jti, self.clock() + lifetime_s)
            self._register[token] = (sign_in.client_id, sign_in.username, origin_jti)
        return token

    def redeem_refresh(self, token: str, client_id: str) -> tuple[SignIn, str]:
        """The sign-in and origin_jti a refresh token carries; it stays valid until it expires."""
        with self._lock:
            grant = self._refresh.get(token)
        if grant is None or grant.sign_in.client_id != client_id:
            raise GrantRefused("the refresh token is unknown or belongs to another client")
        if self._register.get(token) is None:
            raise GrantRefused("the user was signed out everywhere since")
        if grant.expires <= self.clock():
            with self._lock:
                self._refresh.pop(token, None)
            raise GrantRefused("the refresh token has expired")
        return grant.sign_in, grant.origin_jti
