"""Drivers sign in on the twin as on AWS: managed login's authorization code grant with PKCE, driven as the drivers'
app and its browser would - /oauth2/authorize, the sign-in form (and the new-password form of a user created with a
temporary password), the callback with a code, the code and its verifier at /oauth2/token - then the API with the
access token, whose custom scopes InitiateAuth's tokens never carry. And what Cognito refuses: a wrong password, a
callback not registered, a scope the client does not have, a reused code, a wrong verifier.
"""

from __future__ import annotations

import pytest
import requests

from local.twin import Twin
from sign_in_helpers import (CALLBACK, CHOSEN, READ, SUBMIT, TEMPORARY, Browser, Forms, authorize, callback,
                             challenge, claims, redeem, sign_in)


@pytest.fixture(scope="module")
def cognito(twin):
    return twin.client("cognito-idp")


@pytest.fixture(scope="module")
def driver_app(twin) -> str:
    return twin.outputs["DriverAppClientId"]


def new_driver(twin: Twin, cognito, username: str, email: str | None = None) -> str:
    """A driver as the company creates one: a temporary password, no sign-up."""
    attributes = [{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}] if email else []
    cognito.admin_create_user(UserPoolId=twin.outputs["UserPoolId"], Username=username, TemporaryPassword=TEMPORARY,
                              UserAttributes=attributes, MessageAction="SUPPRESS")
    return username


@pytest.fixture(scope="module")
def signed_in(twin, cognito, driver_app):
    """driver-1 signs in for the first time (choosing a password), and the app redeems the code."""
    pool = twin.outputs["UserPoolId"]
    new_driver(twin, cognito, "driver-1", email="driver-1@example.com")
    cognito.create_group(UserPoolId=pool, GroupName="drivers")
    cognito.admin_add_user_to_group(UserPoolId=pool, Username="driver-1", GroupName="drivers")
    verifier, code_challenge = challenge()
    back = sign_in(Browser(twin), driver_app, "driver-1", TEMPORARY, code_challenge, new_password=CHOSEN)
    assert back["state"] == "state-1"
    answer = redeem(twin, driver_app, back["code"], verifier)
    assert answer.status_code == 200, answer.text
    return answer.json()


# ------------------------------------------------------------------ signed in, the API lets the driver in
def test_the_code_gives_access_id_and_refresh_tokens(twin, cognito, signed_in, driver_app):
    assert set(signed_in) == {"access_token", "id_token", "refresh_token", "expires_in", "token_type"}
    assert (signed_in["token_type"], signed_in["expires_in"]) == ("Bearer", 3600)  # the client's 60 minutes
    user = cognito.admin_get_user(UserPoolId=twin.outputs["UserPoolId"], Username="driver-1")
    sub = {a["Name"]: a["Value"] for a in user["UserAttributes"]}["sub"]
    assert user["UserStatus"] == "CONFIRMED"  # the new password replaced the temporary one
    issuer = f"https://cognito-idp.us-east-1.amazonaws.com/{twin.outputs['UserPoolId']}"
    access = claims(twin, signed_in["access_token"])
    shown = ("sub", "username", "client_id", "token_use", "iss", "version", "cognito:groups")
    assert {k: access[k] for k in shown} == {
        "sub": sub, "username": "driver-1", "client_id": driver_app, "token_use": "access", "iss": issuer,
        "version": 2, "cognito:groups": ["drivers"]}
    assert set(access["scope"].split()) == {"openid", SUBMIT, READ}
    assert access["exp"] - access["iat"] == 3600 and access["auth_time"] <= access["iat"]
    assert "aud" not in access and access["jti"] != access["origin_jti"]
    identity = claims(twin, signed_in["id_token"])
    assert {k: identity[k] for k in ("sub", "aud", "cognito:username", "email", "email_verified", "token_use",
                                     "cognito:groups", "origin_jti", "auth_time")} == {
        "sub": sub, "aud": driver_app, "cognito:username": "driver-1", "email": "driver-1@example.com",
        "email_verified": True, "token_use": "id", "cognito:groups": ["drivers"], "origin_jti": access["origin_jti"],
        "auth_time": access["auth_time"]}
    assert "scope" not in identity


def test_the_drivers_access_token_is_let_into_both_routes(twin, signed_in):
    bearer = {"Authorization": f"Bearer {signed_in['access_token']}"}
    unknown = requests.get(f"{twin.outputs['ApiUrl']}/photos/{'0' * 32}", headers=bearer, timeout=30)
    assert unknown.status_code == 404 and unknown.json()["error"] == "NotFound"  # authorized: no such photo
    created = requests.post(f"{twin.outputs['ApiUrl']}/photos", json={"content_type": "image/png"}, headers=bearer,
                            timeout=30)
    assert created.status_code == 201, created.text
    sub = claims(twin, signed_in["access_token"])["sub"]
    assert created.json()["upload"]["fields"]["key"].startswith(f"api/{sub}/")  # the driver is the caller
    assert requests.get(created.json()["result_url"], headers=bearer, timeout=30).json()["state"] == "pending"


def test_the_id_token_is_still_not_let_in(twin, signed_in):
    answer = requests.get(f"{twin.outputs['ApiUrl']}/photos/{'0' * 32}",
                          headers={"Authorization": f"Bearer {signed_in['id_token']}"}, timeout=30)
    assert (answer.status_code, answer.json()) == (403, {"message": "Forbidden"})


def test_the_refresh_token_gives_new_tokens_of_the_same_sign_in(twin, signed_in, driver_app):
    answer = requests.post(twin.outputs["TokenUrl"], data={"grant_type": "refresh_token", "client_id": driver_app,
                                                           "refresh_token": signed_in["refresh_token"]}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {"access_token", "id_token", "expires_in", "token_type"}  # no new refresh token
    before, after = claims(twin, signed_in["access_token"]), claims(twin, answer.json()["access_token"])
    for kept in ("origin_jti", "auth_time", "sub"):
        assert after[kept] == before[kept], kept
    assert after["jti"] != before["jti"] and after["scope"] == before["scope"]
    wrong = requests.post(twin.outputs["TokenUrl"], data={"grant_type": "refresh_token", "client_id": driver_app,
                                                          "refresh_token": "not-a-refresh-token"}, timeout=10)
    assert (wrong.status_code, wrong.json()) == (400, {"error": "invalid_grant"})


def test_signing_a_user_out_everywhere_revokes_their_refresh_tokens(twin, cognito, driver_app):
    new_driver(twin, cognito, "driver-out")
    verifier, code_challenge = challenge()
    back = sign_in(Browser(twin), driver_app, "driver-out", TEMPORARY, code_challenge, new_password=CHOSEN)
    refresh = redeem(twin, driver_app, back["code"], verifier).json()["refresh_token"]
    def again() -> requests.Response:
        return requests.post(twin.outputs["TokenUrl"], timeout=10, data={
            "grant_type": "refresh_token", "client_id": driver_app, "refresh_token": refresh})

    assert again().status_code == 200
    cognito.admin_user_global_sign_out(UserPoolId=twin.outputs["UserPoolId"], Username="driver-out")
    assert (again().status_code, again().json()) == (400, {"error": "invalid_grant"})


# ------------------------------------------------------------------ what managed login refuses
def test_a_wrong_password_shows_the_form_again_without_a_code(twin, cognito, driver_app):
    new_driver(twin, cognito, "driver-2")
    browser = Browser(twin)
    _, code_challenge = challenge()
    form = browser.get(authorize(browser, driver_app, code_challenge).headers["Location"])
    for username, password in (("driver-2", "Not-the-passw0rd"), ("nobody-at-all", TEMPORARY)):
        answer = browser.submit(form, username=username, password=password)
        assert answer.status_code == 200 and "Location" not in answer.headers
        assert "Incorrect username or password." in answer.text  # the same words: no user enumeration
        assert Forms(answer.text).forms[0][0] == Forms(form.text).forms[0][0]  # the same request posted back
    assert browser.submit(form, username="driver-2", password=TEMPORARY).status_code == 200  # then the right one


def test_the_new_password_must_be_typed_twice_alike_and_meet_the_policy(twin, cognito, driver_app):
    new_driver(twin, cognito, "driver-3")
    browser = Browser(twin)
    _, code_challenge = challenge()
    form = browser.get(authorize(browser, driver_app, code_challenge).headers["Location"])
    asked = browser.submit(form, username="driver-3", password=TEMPORARY)
    unlike = browser.submit(asked, new_password=CHOSEN, confirm_password=CHOSEN + "x")
    assert unlike.status_code == 200 and "not the same" in unlike.text
    weak = browser.submit(unlike, new_password="short", confirm_password="short")
    assert weak.status_code == 200 and "password policy" in weak.text
    assert callback(browser.submit(weak, new_password=CHOSEN, confirm_password=CHOSEN))["code"]


def test_a_callback_that_is_not_registered_gets_an_error_page_and_no_redirect(twin, driver_app):
    browser = Browser(twin)
    _, code_challenge = challenge()
    for client_id, redirect_uri in ((driver_app, "https://attacker.example/steal"), (driver_app, CALLBACK + "/x"),
                                    ("no-such-client", CALLBACK)):
        answer = authorize(browser, client_id, code_challenge, redirect_uri=redirect_uri)
        assert answer.status_code == 400 and "Location" not in answer.headers, (client_id, redirect_uri)
        assert answer.headers["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("change, error", [
    ({"scope": f"openid {SUBMIT} vehicle-classifier/reviews.decide"}, "invalid_scope"),
    ({"scope": "email"}, "invalid_scope"),  # not the client's, and email needs openid
    ({"code_challenge_method": "plain"}, "invalid_request"),  # Cognito supports only S256
    ({"response_type": "id_token"}, "invalid_request"),
    ({"response_type": "token"}, "unauthorized_client"),  # the drivers' app allows only the code grant
])
def test_a_bad_request_with_a_registered_callback_goes_back_to_the_app_with_the_error(twin, driver_app, change, error):
    browser = Browser(twin)
    _, code_challenge = challenge()
    answer = authorize(browser, driver_app, code_challenge, **{"state": "keep-me", **change})
    assert callback(answer) == {"error": error, "state": "keep-me"}


def test_a_code_is_good_once(twin, cognito, driver_app):
    new_driver(twin, cognito, "driver-4")
    verifier, code_challenge = challenge()
    code = sign_in(Browser(twin), driver_app, "driver-4", TEMPORARY, code_challenge, new_password=CHOSEN)["code"]
    assert redeem(twin, driver_app, code, verifier).status_code == 200
    again = redeem(twin, driver_app, code, verifier)
    assert (again.status_code, again.json()) == (400, {"error": "invalid_grant"})


@pytest.mark.parametrize("verifier", ["wrong-" + "v" * 50, None])
def test_a_code_needs_its_own_verifier(twin, cognito, driver_app, verifier):
    username = new_driver(twin, cognito, f"driver-5-{'none' if verifier is None else 'wrong'}")
    _, code_challenge = challenge()
    code = sign_in(Browser(twin), driver_app, username, TEMPORARY, code_challenge, new_password=CHOSEN)["code"]
    answer = redeem(twin, driver_app, code, verifier)
    assert (answer.status_code, answer.json()) == (400, {"error": "invalid_grant"})


def test_a_code_is_redeemed_only_with_its_redirect_uri(twin, cognito, driver_app):
    new_driver(twin, cognito, "driver-6")
    verifier, code_challenge = challenge()
    code = sign_in(Browser(twin), driver_app, "driver-6", TEMPORARY, code_challenge, new_password=CHOSEN)["code"]
    answer = redeem(twin, driver_app, code, verifier, redirect_uri=CALLBACK + "/elsewhere")
    assert (answer.status_code, answer.json()) == (400, {"error": "invalid_grant"})


# ------------------------------------------------------------------ the session and signing out
def test_a_session_signs_in_again_without_the_form_until_logout(twin, cognito):
    pool = twin.outputs["UserPoolId"]
    web = "http://localhost:8765/"
    client_id = cognito.create_user_pool_client(
        UserPoolId=pool, ClientName="reviewers-web", AllowedOAuthFlowsUserPoolClient=True, AllowedOAuthFlows=["code"],
        AllowedOAuthScopes=["openid"], CallbackURLs=[web + "signed-in"], LogoutURLs=[web + "signed-out"],
        SupportedIdentityProviders=["COGNITO"])["UserPoolClient"]["ClientId"]
    new_driver(twin, cognito, "reviewer-1")
    browser = Browser(twin)
    verifier, code_challenge = challenge()
    sign_in(browser, client_id, "reviewer-1", TEMPORARY, code_challenge, new_password=CHOSEN,
            redirect_uri=web + "signed-in", scope="openid")
    again = callback(authorize(browser, client_id, code_challenge, redirect_uri=web + "signed-in", scope="openid"),
                     web + "signed-in")
    assert redeem(twin, client_id, again["code"], verifier, redirect_uri=web + "signed-in").status_code == 200
    refused = browser.get("/logout", client_id=client_id, logout_uri="https://attacker.example/")
    assert refused.status_code == 400 and "Location" not in refused.headers
    out = browser.get("/logout", client_id=client_id, logout_uri=web + "signed-out")
    assert (out.status_code, out.headers["Location"]) == (302, web + "signed-out")
    after = authorize(browser, client_id, code_challenge, redirect_uri=web + "signed-in", scope="openid")
    assert after.headers["Location"].startswith("/login?")  # signed out: the form again
