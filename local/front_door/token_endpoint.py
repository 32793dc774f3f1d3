"""Cognito's OAuth 2.0 token endpoint (``/oauth2/token``) on the twin: the client-credentials, authorization-code
and refresh-token grants (https://docs.aws.amazon.com/cognito/latest/developerguide/token-endpoint.html).

moto's cognito-idp keeps the pool, its users, groups, resource servers and app clients (so a client created later
with ``aws cognito-idp create-user-pool-client`` works at once) and serves the pool's JWKS; it has no token endpoint.
This one authenticates the client (a confidential one with its secret, by HTTP Basic or client_id and
client_secret in the form; a public one by its client_id), checks the grant against the client's settings, and
issues RS256 tokens signed with the pool's key:

- client_credentials: an access token with the claims Cognito puts in a client-credentials token (docs/api.md);
- authorization_code: a code from managed login (managed_login.py, user_grants.py) with its redirect_uri and PKCE
  code_verifier gives an access token, a refresh token and, when ``openid`` was granted, an ID token, with the
  claims of a user's tokens
  (https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-the-access-token.html,
  https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-the-id-token.html);
- refresh_token: new access and ID tokens with the original ``auth_time`` and ``origin_jti``, no new refresh token.

Lifetimes are the client's (https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_CreateUserPoolClient.html:
access and ID tokens one hour, refresh tokens 30 days, unless the client says otherwise). Errors are as Cognito
documents them: JSON ``{"error": ...}`` with 400, an unknown client or a wrong secret included (``invalid_client``).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError
from joserfc import jwt
from werkzeug.wrappers import Request, Response

from local.front_door.user_grants import GrantRefused, SignIn, UserGrants

UNIT_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
GRANTS = ("authorization_code", "refresh_token", "client_credentials")


class TokenError(Exception):
    def __init__(self, error: str, status: int = 400):
        super().__init__(error)
        self.error, self.status = error, status


def lifetime_s(client: dict[str, Any], kind: str) -> int:
    """A token's lifetime in seconds from the client's ``<kind>Validity`` and ``TokenValidityUnits``."""
    default_value, default_unit = (30, "days") if kind == "RefreshToken" else (1, "hours")
    value = client.get(f"{kind}Validity", default_value)
    unit = client.get("TokenValidityUnits", {}).get(kind, default_unit)
    return int(value) * UNIT_SECONDS.get(unit, UNIT_SECONDS[default_unit])


class TokenEndpoint:
    """A WSGI app: ``POST /oauth2/token`` for one user pool."""

    def __init__(self, cognito, user_pool_id: str, region: str, signing_key: Any, grants: UserGrants | None = None):
        self._cognito = cognito
        self._pool_id = user_pool_id
        self._issuer = f"https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"
        self._key = signing_key  # the pool's private key: moto's JWKS serves its public half
        self._grants = grants or UserGrants()  # what managed login issued

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        try:
            if request.path != "/oauth2/token":
                return Response('{"message":"Not Found"}', 404,
                                content_type="application/json")(environ, start_response)
            if request.method != "POST":
                raise TokenError("invalid_request", 405)
            body = self.issue(request)
            response = Response(json.dumps(body), 200, content_type="application/json")
        except TokenError as exc:
            response = Response('{"error":"%s"}' % exc.error, exc.status, content_type="application/json")
        response.headers["Cache-Control"] = "no-store"
        response.headers["Access-Control-Allow-Origin"] = "*"  # as Cognito's: browser apps redeem codes with PKCE
        return response(environ, start_response)

    def issue(self, request: Request) -> dict[str, Any]:
        if request.mimetype != "application/x-www-form-urlencoded":
            raise TokenError("invalid_request")
        form = request.form
        grant = form.get("grant_type")
        client_id, secret = self._client_credentials(request)
        client = self._client(client_id)
        if client.get("ClientSecret") is not None:
            if secret != client["ClientSecret"]:
                raise TokenError("invalid_client")
        elif grant == "client_credentials":
            raise TokenError("invalid_client")  # a public client has no secret to authenticate with
        if not grant:
            raise TokenError("invalid_request")
        if grant not in GRANTS:
            raise TokenError("unsupported_grant_type")
        if grant == "client_credentials":
            return self._client_token(client, form.get("scope", "").split())
        if grant == "authorization_code":
            if not client.get("AllowedOAuthFlowsUserPoolClient") or "code" not in client.get("AllowedOAuthFlows", []):
                raise TokenError("unauthorized_client")
            if not form.get("code") or not form.get("redirect_uri"):
                raise TokenError("invalid_request")
            try:
                sign_in = self._grants.redeem_code(form["code"], client_id, form["redirect_uri"],
                                                   form.get("code_verifier"))
            except GrantRefused:
                raise TokenError("invalid_grant") from None
            origin_jti = str(uuid.uuid4())
            tokens = self._user_tokens(client, sign_in, origin_jti)
            tokens["refresh_token"] = self._grants.issue_refresh(sign_in, origin_jti,
                                                                 lifetime_s(client, "RefreshToken"))
            return tokens
        if not form.get("refresh_token"):
            raise TokenError("invalid_request")
        try:
            sign_in, origin_jti = self._grants.redeem_refresh(form["refresh_token"], client_id)
        except GrantRefused:
            raise TokenError("invalid_grant") from None
        return self._user_tokens(client, sign_in, origin_jti)

    def _client_token(self, client: dict[str, Any], requested: list[str]) -> dict[str, Any]:
        if (not client.get("AllowedOAuthFlowsUserPoolClient")
                or "client_credentials" not in client.get("AllowedOAuthFlows", [])):
            raise TokenError("unauthorized_client")
        allowed = client.get("AllowedOAuthScopes", [])
        requested = requested or allowed
        if not requested or not set(requested) <= set(allowed):
            raise TokenError("invalid_scope")
        lifetime = lifetime_s(client, "AccessToken")
        now = int(self._grants.clock())
        claims = {"sub": client["ClientId"], "token_use": "access", "scope": " ".join(requested), "auth_time": now,
                  "iss": self._issuer, "exp": now + lifetime, "iat": now, "version": 2,
                  "jti": str(uuid.uuid4()), "client_id": client["ClientId"]}
        return {"access_token": self._sign(claims), "expires_in": lifetime, "token_type": "Bearer"}

    def _user_tokens(self, client: dict[str, Any], sign_in: SignIn, origin_jti: str) -> dict[str, Any]:
        """A signed-in user's access token and, with ``openid``, ID token - from the user as moto holds it now."""
        try:
            user = self._cognito.admin_get_user(UserPoolId=self._pool_id, Username=sign_in.username)
        except ClientError:
            raise TokenError("invalid_grant") from None  # the user was deleted since
        if not user.get("Enabled", True):
            raise TokenError("invalid_grant")
        attributes = {a["Name"]: a["Value"] for a in user.get("UserAttributes", [])}
        pages = self._cognito.get_paginator("admin_list_groups_for_user").paginate(
            UserPoolId=self._pool_id, Username=user["Username"])
        groups = [g["GroupName"] for page in pages for g in page["Groups"]]
        now = int(self._grants.clock())
        common = {"sub": attributes["sub"], **({"cognito:groups": groups} if groups else {}), "iss": self._issuer,
                  "origin_jti": origin_jti, "auth_time": sign_in.auth_time, "iat": now}
        access_s = lifetime_s(client, "AccessToken")
        access = {**common, "version": 2, "client_id": client["ClientId"], "token_use": "access",
                  "scope": " ".join(sign_in.scopes), "exp": now + access_s, "jti": str(uuid.uuid4()),
                  "username": user["Username"]}
        tokens = {"access_token": self._sign(access), "expires_in": access_s, "token_type": "Bearer"}
        if "openid" in sign_in.scopes:  # "An ID token is only returned if openid scope is requested"
            readable = client.get("ReadAttributes")  # none configured: the client reads every attribute
            profile = {name: (value == "true" if name.endswith("_verified") else value)
                       for name, value in attributes.items()
                       if name != "sub" and (readable is None or name in readable)}
            identity = {**common, **profile, "aud": client["ClientId"], "cognito:username": user["Username"],
                        "token_use": "id", "exp": now + lifetime_s(client, "IdToken"), "jti": str(uuid.uuid4()),
                        **({"nonce": sign_in.nonce} if sign_in.nonce else {})}
            tokens["id_token"] = self._sign(identity)
        return tokens

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode({"alg": "RS256", "kid": self._key.kid}, claims, self._key)

    @staticmethod
    def _client_credentials(request: Request) -> tuple[str, str | None]:
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise TokenError("invalid_client") from None
            client_id, _, secret = decoded.partition(":")
            return unquote_plus(client_id), unquote_plus(secret)
        client_id = request.form.get("client_id")
        if not client_id:
            raise TokenError("invalid_client")
        return client_id, request.form.get("client_secret")

    def _client(self, client_id: str) -> dict[str, Any]:
        try:
            return self._cognito.describe_user_pool_client(UserPoolId=self._pool_id,
                                                           ClientId=client_id)["UserPoolClient"]
        except ClientError:
            raise TokenError("invalid_client") from None
