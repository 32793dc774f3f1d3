"""The twin's managed login and token endpoint in one process on moto's cognito-idp, with a clock the tests move:
what the sign-in page shows (escaped, with its Content-Security-Policy), the CSRF check, and a code's five minutes.
tests/integration/test_front_door_sign_in.py drives the same through the running twin, as a browser would."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from moto import mock_aws
from werkzeug.test import Client

from local.front_door.managed_login import ManagedLogin
from local.front_door.server import by_path
from local.front_door.token_endpoint import TokenEndpoint
from local.front_door.user_grants import CODE_SECONDS, GrantRefused, SignIn, UserGrants, s256

CALLBACK = "http://localhost:8765/callback"
VERIFIER = "v" * 43
PASSWORD = "Corr3ct-horse-battery"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pool(aws_env):
    with mock_aws():
        cognito = boto3.client("cognito-idp", region_name="us-east-1")
        pool_id = cognito.create_user_pool(PoolName="drivers")["UserPool"]["Id"]
        cognito.create_resource_server(UserPoolId=pool_id, Identifier="api", Name="API",
                                       Scopes=[{"ScopeName": "read", "ScopeDescription": "read"}])
        cognito.admin_create_user(UserPoolId=pool_id, Username="driver-7", MessageAction="SUPPRESS")
        cognito.admin_set_user_password(UserPoolId=pool_id, Username="driver-7", Password=PASSWORD, Permanent=True)
        yield cognito, pool_id


def app_client(cognito, pool_id: str, name: str = "drivers-app") -> str:
    return cognito.create_user_pool_client(
        UserPoolId=pool_id, ClientName=name, AllowedOAuthFlowsUserPoolClient=True, AllowedOAuthFlows=["code"],
        AllowedOAuthScopes=["openid", "api/read"], CallbackURLs=[CALLBACK])["UserPoolClient"]["ClientId"]


@pytest.fixture
def domain(pool):
    """The user pool's domain (token endpoint + managed login) as a WSGI client, its clock and signing key."""
    cognito, pool_id = pool
    clock, key = Clock(), RSAKey.generate_key(2048, parameters={"kid": "test"})
    grants = UserGrants(clock)
    app = by_path({"/oauth2/token": TokenEndpoint(cognito, pool_id, "us-east-1", key, grants)},
                  ManagedLogin(cognito, pool_id, grants))
    return Client(app), clock, key


def authorize_query(client_id: str, **extra: str) -> dict[str, str]:
    return {"response_type": "code", "client_id": client_id, "redirect_uri": CALLBACK, "scope": "openid api/read",
            "state": "s-1", "code_challenge": s256(VERIFIER), "code_challenge_method": "S256", **extra}


def form_fields(html: str) -> tuple[str, dict[str, str]]:
    action = unescape(re.search(r'<form method="post" action="([^"]*)"', html).group(1))
    return action, {m.group(1): unescape(m.group(2))
                    for m in re.finditer(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html)}


def sign_in(browser: Client, client_id: str) -> str:
    """The code managed login sends the browser back with."""
    form = browser.get("/login", query_string=authorize_query(client_id))
    action, hidden = form_fields(form.get_data(as_text=True))
    answer = browser.post(action, data={**hidden, "username": "driver-7", "password": PASSWORD})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]


def redeem(browser: Client, client_id: str, code: str, verifier: str = VERIFIER):
    return browser.post("/oauth2/token", data={"grant_type": "authorization_code", "client_id": client_id,
                                                "code": code, "redirect_uri": CALLBACK, "code_verifier": verifier})


# ------------------------------------------------------------------ the page
def test_the_sign_in_page_escapes_the_client_name_and_state_and_forbids_scripts(pool, domain):
    browser, _, _ = domain
    client_id = app_client(*pool, name='<script>alert("name")</script>')
    state = '"><script>alert("state")</script>'
    answer = browser.get("/login", query_string=authorize_query(client_id, state=state))
    html = answer.get_data(as_text=True)
    assert answer.status_code == 200 and answer.mimetype == "text/html"
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#34;name&#34;)&lt;/script&gt;" in html  # shown, as text
    action, hidden = form_fields(html)
    assert parse_qs(urlsplit(action).query)["state"] == [state]  # posted back intact
    assert hidden["_csrf"] and hidden["_csrf"] in answer.headers["Set-Cookie"]
    csp = answer.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert answer.headers["X-Frame-Options"] == "DENY" and answer.headers["Cache-Control"] == "no-store"


def test_an_unknown_client_gets_an_error_page_with_the_same_policy_and_no_redirect(domain):
    browser, _, _ = domain
    answer = browser.get("/oauth2/authorize", query_string={"client_id": "<b>nobody</b>", "redirect_uri": CALLBACK})
    assert answer.status_code == 400 and "Location" not in answer.headers
    assert "<b>" not in answer.get_data(as_text=True)  # the page repeats nothing of the request
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]


def test_a_sign_in_post_without_the_pages_csrf_token_is_refused(pool, domain):
    browser, _, _ = domain
    client_id = app_client(*pool)
    action, hidden = form_fields(browser.get("/login", query_string=authorize_query(client_id)).get_data(as_text=True))
    forged = browser.post(action, data={"_csrf": "guessed", "username": "driver-7", "password": PASSWORD})
    assert forged.status_code == 403 and "Location" not in forged.headers
    another_browser = Client(browser.application)  # no cookie: what another site's form would send
    form = {**hidden, "username": "driver-7", "password": PASSWORD}
    assert another_browser.post(action, data=form).status_code == 403


# ------------------------------------------------------------------ the code's five minutes
@pytest.mark.parametrize("seconds_later, status", [(CODE_SECONDS - 1, 200), (CODE_SECONDS, 400)])
def test_a_code_is_good_for_five_minutes(pool, domain, seconds_later, status):
    browser, clock, key = domain
    client_id = app_client(*pool)
    code = sign_in(browser, client_id)
    signed_in_at = clock.now
    clock.now += seconds_later
    answer = redeem(browser, client_id, code)
    assert answer.status_code == status, answer.get_data(as_text=True)
    if status == 400:
        assert answer.get_json() == {"error": "invalid_grant"}
        return
    claims = jwt.decode(answer.get_json()["access_token"], key).claims
    assert claims["auth_time"] == int(signed_in_at) and claims["iat"] == int(clock.now)
    assert claims["exp"] == int(clock.now) + 3600  # the client sets no lifetime: one hour


def test_a_session_lasts_an_hour(pool, domain):
    browser, clock, _ = domain
    client_id = app_client(*pool)
    sign_in(browser, client_id)
    clock.now += 3599
    again = browser.get("/oauth2/authorize", query_string=authorize_query(client_id))
    assert again.headers["Location"].startswith(CALLBACK + "?code=")
    clock.now += 1
    later = browser.get("/oauth2/authorize", query_string=authorize_query(client_id))
    assert later.headers["Location"].startswith("/login?")


# ------------------------------------------------------------------ the grants themselves
def test_a_code_is_bound_to_its_client_redirect_uri_and_verifier():
    grants = UserGrants(Clock())
    who = SignIn("driver-7", "app", ("openid",), 0)

    def refused(**change) -> bool:
        code = grants.issue_code(who, CALLBACK, s256(VERIFIER))
        arguments = {"client_id": "app", "redirect_uri": CALLBACK, "verifier": VERIFIER, **change}
        try:
            grants.redeem_code(code, **arguments)
        except GrantRefused:
            return True
        return False

    assert not refused()
    for change in ({"client_id": "other"}, {"redirect_uri": CALLBACK + "/"}, {"verifier": None},
                   {"verifier": "w" * 43}, {"verifier": "short"}):
        assert refused(**change), change
    unbound = grants.issue_code(who, CALLBACK, None)  # no PKCE: no verifier needed
    assert grants.redeem_code(unbound, "app", CALLBACK, None) == who
