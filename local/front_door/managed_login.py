"""Cognito's managed login on the twin: the browser half of the authorization code grant, for the pool's app clients.

- ``GET /oauth2/authorize`` checks the request as Cognito does, then sends the browser to ``GET /login`` with the
  same parameters, or - when it has a sign-in session - straight back to the client's callback with a code.
- ``GET /login`` is the sign-in form. ``POST /login`` checks the user name and password with AdminInitiateAuth on
  moto's cognito-idp; a user whose password is temporary (NEW_PASSWORD_REQUIRED) gets a second form, answered with
  AdminRespondToAuthChallenge. Signed in, the browser goes to ``redirect_uri?code=...&state=...``: a single-use
  code valid five minutes (user_grants.py), which the token endpoint exchanges for tokens.
- ``GET /logout?client_id=...&logout_uri=...`` ends the session and redirects to one of the client's LogoutURLs
  (or, with ``redirect_uri`` and the other authorize parameters instead, to the sign-in form again).

Errors: an unknown client, or a redirect_uri that is not exactly one of the client's CallbackURLs, gets an error
page and is never redirected (RFC 6749 section 4.1.2.1; Cognito documents the redirected errors only "If client_id
and redirect_uri are valid"); the others go back to the callback as ``?error=invalid_request|unauthorized_client|
invalid_scope`` with the state. A wrong user name or password shows the form again with one generic message.

The pages have no script and a strict Content-Security-Policy, and every value in them is escaped (Jinja2's
autoescape). The forms post back the authorization request they were given (their action is ``/login?<the
request>``, checked again on POST) with a CSRF token that must equal the browser's XSRF-TOKEN cookie (SameSite=Lax,
so another site's form cannot send it). Sessions last an hour, as managed login's cookies do. Everything is plain
HTTP on 127.0.0.1, so no cookie is Secure.

https://docs.aws.amazon.com/cognito/latest/developerguide/authorization-endpoint.html
https://docs.aws.amazon.com/cognito/latest/developerguide/login-endpoint.html
https://docs.aws.amazon.com/cognito/latest/developerguide/logout-endpoint.html
https://docs.aws.amazon.com/cognito/latest/developerguide/amazon-cognito-user-pools-using-the-id-token.html (sessions)
"""

from __future__ import annotations

import hmac
import secrets
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jinja2
from botocore.exceptions import ClientError
from werkzeug.datastructures import MultiDict
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from local.front_door.user_grants import SignIn, UserGrants

AUTHORIZE_PARAMETERS = ("response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge",
                        "code_challenge_method", "nonce")
SESSION_SECONDS = 3600  # "Amazon Cognito sets session cookies that are valid for 1 hour"
SESSION_COOKIE, CSRF_COOKIE = "cognito", "XSRF-TOKEN"
OIDC_SCOPES = ("phone", "email", "profile")  # "can only be requested if openid scope is also requested"
WRONG_PASSWORD = "Incorrect username or password."
# No form-action: browsers apply it to the redirect that follows the POST, which goes to the app's callback.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

PAGE = jinja2.Environment(autoescape=True).from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{ title }}</title></head>
<body><main>
<h1>{{ title }}</h1>
{% if error %}<p role="alert">{{ error }}</p>{% endif %}
{% if step == "password" %}
<form method="post" action="{{ action }}">
<input type="hidden" name="_csrf" value="{{ csrf }}">
<p><label>Username <input name="username" value="{{ username }}" autocomplete="username" required autofocus></label></p>
<p><label>Password <input name="password" type="password" autocomplete="current-password" required></label></p>
<p><button type="submit">Sign in</button></p>
</form>
{% elif step == "new_password" %}
<p>Your password is temporary. Choose a new one to sign in.</p>
<form method="post" action="{{ action }}">
<input type="hidden" name="_csrf" value="{{ csrf }}">
<input type="hidden" name="challenge" value="{{ challenge }}">
<p><label>New password <input name="new_password" type="password" autocomplete="new-password" \
required autofocus></label></p>
<p><label>Enter the new password again <input name="confirm_password" type="password" autocomplete="new-password" \
required></label></p>
<p><button type="submit">Change password and sign in</button></p>
</form>
{% endif %}
</main></body></html>
""")


def page(title: str, status: int = 200, **values: Any) -> Response:
    """One of managed login's pages (a form or an error), escaped, with the security headers."""
    response = Response(PAGE.render(title=title, **values), status, content_type="text/html; charset=utf-8")
    response.headers.update(SECURITY_HEADERS)
    return response


class PageError(Exception):
    """Shown on an error page, never redirected: the request names no client or no callback we may send it to."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class Redirect(Exception):
    """An error the client's callback receives (``?error=...&state=...``)."""

    def __init__(self, location: str):
        super().__init__(location)
        self.location = location


@dataclass(frozen=True)
class Authorization:
    """A checked authorization request: its client and the parameters it was given."""

    client: dict[str, Any]
    parameters: dict[str, str]
    scopes: tuple[str, ...]

    @property
    def query(self) -> str:
        return urlencode(self.parameters)

    def back(self, **answer: str) -> str:
        """The callback with ``answer`` and the request's state."""
        uri = self.parameters["redirect_uri"]
        state = {"state": self.parameters["state"]} if "state" in self.parameters else {}
        return uri + ("&" if "?" in uri else "?") + urlencode({**answer, **state})


@dataclass(frozen=True)
class _Session:
    username: str
    auth_time: int
    expires: float


@dataclass(frozen=True)
class _Challenge:
    """A NEW_PASSWORD_REQUIRED in progress. The user name is kept here, never taken from the form: moto's
    RespondToAuthChallenge does not check that it is the session's user."""

    username: str
    client_id: str
    session: str
    expires: float


class ManagedLogin:
    """A WSGI app: managed login's pages for one user pool."""

    def __init__(self, cognito, user_pool_id: str, grants: UserGrants):
        self._cognito = cognito
        self._pool_id = user_pool_id
        self._grants = grants
        self._sessions: dict[str, _Session] = {}
        self._challenges: dict[str, _Challenge] = {}
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        routes = {("GET", "/oauth2/authorize"): self.authorize, ("GET", "/login"): self.login_form,
                  ("POST", "/login"): self.login, ("GET", "/logout"): self.logout}
        route = routes.get((request.method, request.path))
        try:
            if route is None:
                known = any(path == request.path for _, path in routes)
                raise PageError("This page does not exist." if not known else "Method not allowed.",
                                405 if known else 404)
            response = route(request)
        except PageError as exc:
            response = page("An error was encountered with the requested page", exc.status, error=str(exc))
        except Redirect as exc:
            response = redirect(exc.location, 302)
        response.headers.update({k: v for k, v in SECURITY_HEADERS.items() if k not in response.headers})
        return response(environ, start_response)

    # ------------------------------------------------------------------ the endpoints
    def authorize(self, request: Request) -> Response:
        authorization = self._authorization(request.args)
        session = self._session(request)
        if session is not None:
            return redirect(self._code(authorization, session.username, session.auth_time), 302)
        return redirect(f"/login?{authorization.query}", 302)

    def login_form(self, request: Request) -> Response:
        return self._form(request, self._authorization(request.args))

    def login(self, request: Request) -> Response:
        authorization = self._authorization(request.args)
        csrf = request.cookies.get(CSRF_COOKIE, "")
        if not csrf or not hmac.compare_digest(csrf, request.form.get("_csrf", "")):
            raise PageError("The sign-in form has expired or was not sent from this page: open it again.", 403)
        if "challenge" in request.form:
            return self._new_password(request, authorization)
        username, password = request.form.get("username", "").strip(), request.form.get("password", "")
        try:
            answer = self._cognito.admin_initiate_auth(
                UserPoolId=self._pool_id, ClientId=authorization.parameters["client_id"],
                AuthFlow="ADMIN_USER_PASSWORD_AUTH", AuthParameters={"USERNAME": username, "PASSWORD": password})
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NotAuthorizedException", "UserNotFoundException",
                                                 "InvalidParameterException"):
                return self._form(request, authorization, error=WRONG_PASSWORD, username=username)
            raise Redirect(authorization.back(error="server_error")) from None
        challenge = answer.get("ChallengeName")
        if challenge == "NEW_PASSWORD_REQUIRED":
            now = self._grants.clock()
            lifetime = 60 * int(authorization.client.get("AuthSessionValidity", 3))  # the client's, in minutes
            challenge_id = secrets.token_urlsafe(32)
            with self._lock:
                self._challenges = {c: v for c, v in self._challenges.items() if v.expires > now}
                self._challenges[challenge_id] = _Challenge(username, authorization.parameters["client_id"],
                                                            answer["Session"], now + lifetime)
            return self._form(request, authorization, step="new_password", challenge=challenge_id)
        if challenge:
            raise PageError(f"The twin's managed login does not answer the {challenge} challenge.", 501)
        return self._signed_in(authorization, username)

    def logout(self, request: Request) -> Response:
        args = request.args
        client = self._client(args.get("client_id"))
        if "logout_uri" in args:
            if args["logout_uri"] not in client.get("LogoutURLs", []):
                raise PageError("The logout_uri is not one of the app client's sign-out URLs.")
            target = args["logout_uri"]
        elif "redirect_uri" in args:
            target = f"/login?{self._authorization(args).query}"
        else:
            raise PageError("A sign-out request needs a client_id and a logout_uri (or the authorize parameters).")
        with self._lock:
            self._sessions.pop(request.cookies.get(SESSION_COOKIE, ""), None)
        response = redirect(target, 302)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # ------------------------------------------------------------------ the checks
    def _authorization(self, args: MultiDict) -> Authorization:
        """The request's client and parameters, or the error Cognito answers it with."""
        for name in AUTHORIZE_PARAMETERS:
            if len(args.getlist(name)) > 1:
                raise PageError(f"The parameter {name} is given more than once.")
        parameters = {name: args[name] for name in AUTHORIZE_PARAMETERS if name in args}
        client = self._client(parameters.get("client_id"))
        if parameters.get("redirect_uri") not in client.get("CallbackURLs", []):
            raise PageError("redirect_mismatch: the redirect_uri is not one of the app client's callback URLs.")
        authorization = Authorization(client, parameters, ())

        def refuse(error: str):
            return Redirect(authorization.back(error=error))

        response_type = parameters.get("response_type")
        if response_type not in ("code", "token"):
            raise refuse("invalid_request")
        if ("code_challenge" in parameters) != ("code_challenge_method" in parameters) or \
                parameters.get("code_challenge_method", "S256") != "S256" or parameters.get("code_challenge") == "":
            raise refuse("invalid_request")  # PKCE: S256 only, challenge and method together
        flows = client.get("AllowedOAuthFlows", []) if client.get("AllowedOAuthFlowsUserPoolClient") else []
        if {"code": "code", "token": "implicit"}[response_type] not in flows:
            raise refuse("unauthorized_client")
        if response_type == "token":
            raise refuse("unsupported_response_type")  # the twin has no implicit grant; no client here uses it
        allowed = client.get("AllowedOAuthScopes", [])
        scopes = tuple(dict.fromkeys(parameters.get("scope", "").split())) or tuple(allowed)
        if not scopes or not set(scopes) <= set(allowed) or (set(scopes) & set(OIDC_SCOPES) and "openid" not in scopes):
            raise refuse("invalid_scope")
        return Authorization(client, parameters, scopes)

    def _client(self, client_id: str | None) -> dict[str, Any]:
        if not client_id:
            raise PageError("The request has no client_id.")
        try:
            return self._cognito.describe_user_pool_client(UserPoolId=self._pool_id,
                                                           ClientId=client_id)["UserPoolClient"]
        except ClientError:
            raise PageError("The client_id is not an app client of this user pool.") from None

    def _session(self, request: Request) -> _Session | None:
        with self._lock:
            session = self._sessions.get(request.cookies.get(SESSION_COOKIE, ""))
        return session if session is not None and session.expires > self._grants.clock() else None

    # ------------------------------------------------------------------ the steps
    def _new_password(self, request: Request, authorization: Authorization) -> Response:
        with self._lock:
            challenge = self._challenges.get(request.form["challenge"])
        if challenge is None or challenge.expires <= self._grants.clock() or \
                challenge.client_id != authorization.parameters["client_id"]:
            return self._form(request, authorization, error="Your sign-in session has expired. Sign in again.")
        if request.form.get("new_password", "") != request.form.get("confirm_password"):
            return self._form(request, authorization, step="new_password", challenge=request.form["challenge"],
                              error="The two passwords are not the same.")
        try:
            self._cognito.admin_respond_to_auth_challenge(
                UserPoolId=self._pool_id, ClientId=challenge.client_id, ChallengeName="NEW_PASSWORD_REQUIRED",
                Session=challenge.session,
                ChallengeResponses={"USERNAME": challenge.username, "NEW_PASSWORD": request.form["new_password"]})
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "InvalidPasswordException":
                return self._form(request, authorization, step="new_password", challenge=request.form["challenge"],
                                  error="The password does not meet the user pool's password policy.")
            return self._form(request, authorization, error="Your sign-in session has expired. Sign in again.")
        with self._lock:
            self._challenges.pop(request.form["challenge"], None)
        return self._signed_in(authorization, challenge.username)

    def _signed_in(self, authorization: Authorization, username: str) -> Response:
        now = self._grants.clock()
        session_id = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions = {s: v for s, v in self._sessions.items() if v.expires > now}
            self._sessions[session_id] = _Session(username, int(now), now + SESSION_SECONDS)
        response = redirect(self._code(authorization, username, int(now)), 302)
        response.set_cookie(SESSION_COOKIE, session_id, max_age=SESSION_SECONDS, path="/", httponly=True,
                            samesite="Lax")
        return response

    def _code(self, authorization: Authorization, username: str, auth_time: int) -> str:
        """The callback with a new code for this sign-in."""
        p = authorization.parameters
        sign_in = SignIn(username, p["client_id"], authorization.scopes, auth_time, p.get("nonce"))
        return authorization.back(code=self._grants.issue_code(sign_in, p["redirect_uri"], p.get("code_challenge")))

    def _form(self, request: Request, authorization: Authorization, step: str = "password", **values: Any) -> Response:
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        name = authorization.client.get("ClientName") or authorization.parameters["client_id"]
        response = page(f"Sign in to {name}", action=f"/login?{authorization.query}", csrf=csrf, step=step, **values)
        response.set_cookie(CSRF_COOKIE, csrf, path="/", httponly=True, samesite="Lax")
        return response
