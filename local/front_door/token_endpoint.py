"""Cognito's OAuth 2.0 token endpoint (``/oauth2/token``) for the client-credentials grant, on the twin.

moto's cognito-idp keeps the pool, its resource servers and app clients (so a client created later with
``aws cognito-idp create-user-pool-client`` works at once) and serves the pool's JWKS; it has no token endpoint.
This one authenticates the client with its secret (HTTP Basic, or client_id and client_secret in the form), checks
the grant and scopes against the client's settings, and issues an RS256 access token signed with the pool's key,
with the claims Cognito puts in a client-credentials token (docs/api.md). Errors are as Cognito documents
them: JSON ``{"error": ...}`` with 400, an unknown client or a wrong secret included (``invalid_client``).
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError
from joserfc import jwt
from werkzeug.wrappers import Request, Response

UNIT_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}


class TokenError(Exception):
    def __init__(self, error: str, status: int = 400):
        super().__init__(error)
        self.error, self.status = error, status


class TokenEndpoint:
    """A WSGI app: ``POST /oauth2/token`` for one user pool."""

    def __init__(self, cognito, user_pool_id: str, region: str, signing_key: Any):
        self._cognito = cognito
        self._pool_id = user_pool_id
        self._issuer = f"https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"
        self._key = signing_key  # the pool's private key: moto's JWKS serves its public half

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        try:
            if request.path != "/oauth2/token":
                return Response('{"message":"Not Found"}', 404, content_type="application/json")(environ, start_response)
            if request.method != "POST":
                raise TokenError("invalid_request", 405)
            body = self.issue(request)
            response = Response(body, 200, content_type="application/json")
        except TokenError as exc:
            response = Response('{"error":"%s"}' % exc.error, exc.status, content_type="application/json")
        response.headers["Cache-Control"] = "no-store"
        return response(environ, start_response)

    def issue(self, request: Request) -> str:
        import json

        if request.mimetype != "application/x-www-form-urlencoded":
            raise TokenError("invalid_request")
        form = request.form
        grant = form.get("grant_type")
        client_id, secret = self._client_credentials(request)
        client = self._client(client_id)
        if client.get("ClientSecret") is None or secret != client["ClientSecret"]:
            raise TokenError("invalid_client")
        if not grant:
            raise TokenError("invalid_request")
        if grant != "client_credentials":
            raise TokenError("unsupported_grant_type")
        if not client.get("AllowedOAuthFlowsUserPoolClient") or "client_credentials" not in client.get("AllowedOAuthFlows", []):
            raise TokenError("unauthorized_client")
        allowed = client.get("AllowedOAuthScopes", [])
        requested = form.get("scope", "").split() or allowed
        if not requested or not set(requested) <= set(allowed):
            raise TokenError("invalid_scope")
        units = client.get("TokenValidityUnits", {}).get("AccessToken", "minutes")
        lifetime = int(client.get("AccessTokenValidity", 60)) * UNIT_SECONDS.get(units, 60)
        now = int(time.time())
        claims = {"sub": client_id, "token_use": "access", "scope": " ".join(requested), "auth_time": now,
                  "iss": self._issuer, "exp": now + lifetime, "iat": now, "version": 2,
                  "jti": str(uuid.uuid4()), "client_id": client_id}
        token = jwt.encode({"alg": "RS256", "kid": self._key.kid}, claims, self._key)
        return json.dumps({"access_token": token, "expires_in": lifetime, "token_type": "Bearer"})

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
            return self._cognito.describe_user_pool_client(UserPoolId=self._pool_id, ClientId=client_id)["UserPoolClient"]
        except ClientError:
            raise TokenError("invalid_client") from None
