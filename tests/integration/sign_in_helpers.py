"""Signing in on the twin's managed login as a user's browser and app do: /oauth2/authorize, the sign-in form (and the
new-password form of a user created with a temporary password), the callback with a code, then the code and its PKCE
verifier at /oauth2/token. Used by the drivers' sign-in tests and the review API's."""

from __future__ import annotations

import base64
import hashlib
import secrets
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from local.twin import Twin

SUBMIT, READ = "vehicle-classifier/photos.submit", "vehicle-classifier/photos.read"
DRIVER_SCOPES = f"openid {SUBMIT} {READ}"
CALLBACK = "scones-driver://signed-in"  # the template's DriverAppCallbackUrls default
TEMPORARY, CHOSEN = "Temp0rary-password", "Ch0sen-by-the-driver"
REVIEW_SCOPE = "openid vehicle-classifier/reviews.decide"


class Forms(HTMLParser):
    """The forms of a page as a browser sees them: each one's action and fields."""

    def __init__(self, html: str):
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form":
            self.forms.append((attributes.get("action") or "", {}))
        elif tag == "input" and self.forms and attributes.get("name"):
            self.forms[-1][1][attributes["name"]] = attributes.get("value") or ""


class Browser:
    """A user's browser on the twin's user pool domain: it keeps cookies and follows redirects one by one."""

    def __init__(self, twin: Twin):
        self.base = twin.outputs["TokenUrl"].removesuffix("/oauth2/token")
        self.session = requests.Session()

    def get(self, url: str, **params: str) -> requests.Response:
        return self.session.get(urljoin(self.base, url), params=params, allow_redirects=False, timeout=10)

    def submit(self, page: requests.Response, **fields: str) -> requests.Response:
        """Fill in the page's form and send it, as the browser would."""
        (action, hidden), = Forms(page.text).forms
        return self.session.post(urljoin(page.url, action), data={**hidden, **fields}, allow_redirects=False,
                                 timeout=10)


def challenge() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge, as the app makes them."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize(browser: Browser, client_id: str, code_challenge: str, redirect_uri: str = CALLBACK,
              **change: str) -> requests.Response:
    """The app sends the browser to /oauth2/authorize (``change`` replaces or adds parameters)."""
    return browser.get("/oauth2/authorize", **{
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": DRIVER_SCOPES,
        "state": "state-1", "code_challenge": code_challenge, "code_challenge_method": "S256", **change})


def callback(answer: requests.Response, redirect_uri: str = CALLBACK) -> dict[str, str]:
    """The parameters managed login sent the browser back to the app with."""
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(redirect_uri + "?"), location
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


def sign_in(browser: Browser, client_id: str, username: str, password: str, code_challenge: str,
            new_password: str | None = None, redirect_uri: str = CALLBACK, **change: str) -> dict[str, str]:
    to_login = authorize(browser, client_id, code_challenge, redirect_uri, **change)
    assert to_login.status_code == 302 and to_login.headers["Location"].startswith("/login?")
    form = browser.get(to_login.headers["Location"])
    answer = browser.submit(form, username=username, password=password)
    if new_password:
        assert answer.status_code == 200 and "temporary" in answer.text
        answer = browser.submit(answer, new_password=new_password, confirm_password=new_password)
    return callback(answer, redirect_uri)


def redeem(twin: Twin, client_id: str, code: str, verifier: str | None,
           redirect_uri: str = CALLBACK) -> requests.Response:
    form = {"grant_type": "authorization_code", "client_id": client_id, "code": code, "redirect_uri": redirect_uri}
    if verifier is not None:
        form["code_verifier"] = verifier
    return requests.post(twin.outputs["TokenUrl"], data=form, timeout=10)


def claims(twin: Twin, token: str) -> dict:
    """The token's claims, once its signature verifies against the pool's JWKS (as API Gateway checks it)."""
    jwks = requests.get(f"{twin.url}/{twin.outputs['UserPoolId']}/.well-known/jwks.json", timeout=10).json()
    return jwt.decode(token, KeySet.import_key_set(jwks)).claims


def reviewer_token(twin: Twin, user: str, *, reviewer: bool = True) -> str:
    """A person's access token from the review page's app client, signed in on managed login as the page does it:
    a reviewer added as operations leads add them (python -m review add-reviewer), or (``reviewer=False``) a user
    of the pool outside the reviewers group."""
    from contracts.stack import twin as twin_target
    from review.reviewers import add_reviewer

    if reviewer:
        password = add_reviewer(twin_target(twin.settings.port), user, f"{user}@example.com", on_twin=True)\
            .temporary_password
    else:
        password = TEMPORARY
        twin.client("cognito-idp").admin_create_user(UserPoolId=twin.outputs["UserPoolId"], Username=user,
                                                     TemporaryPassword=password, MessageAction="SUPPRESS")
    verifier, code_challenge = challenge()
    page, client_id = twin.outputs["ReviewPageUrl"], twin.outputs["ReviewClientId"]
    back = sign_in(Browser(twin), client_id, user, password, code_challenge, new_password=CHOSEN, redirect_uri=page,
                   scope=REVIEW_SCOPE)
    answer = redeem(twin, client_id, back["code"], verifier, redirect_uri=page)
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]
