"""The twin's JWT check, as API Gateway's JWT authorizer makes it, on tokens signed here."""

from __future__ import annotations

import time

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey

from local.front_door.authorizer import Forbidden, JwksCache, JwtConfiguration, Unauthorized, authorize

ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_pool"
CONFIG = JwtConfiguration(ISSUER, ("team-a",))
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})


class _Answer:
    def __init__(self, body):
        self.body = body

    def raise_for_status(self):
        pass

    def json(self):
        return self.body


@pytest.fixture
def keys(monkeypatch):
    fetched = []

    def get(url, timeout):
        fetched.append(url)
        return _Answer(KeySet([KEY]).as_dict(private=False))

    monkeypatch.setattr("local.front_door.authorizer.requests.get", get)
    cache = JwksCache(lambda issuer: f"http://jwks/{issuer.rsplit('/', 1)[-1]}")
    cache.fetched = fetched
    return cache


def token(key=KEY, **claims) -> str:
    now = int(time.time())
    body = {"sub": "team-a", "client_id": "team-a", "iss": ISSUER, "token_use": "access", "iat": now,
            "exp": now + 600, "scope": "vehicle-classifier/photos.read", **claims}
    return jwt.encode({"alg": "RS256", "kid": key.kid}, body, key)


def test_a_valid_token_gives_its_claims_and_scopes(keys):
    claims, scopes = authorize(f"Bearer {token()}", CONFIG, ["vehicle-classifier/photos.read"], keys)
    assert claims["client_id"] == "team-a" and scopes == ["vehicle-classifier/photos.read"]
    assert keys.fetched == ["http://jwks/us-east-1_pool"]


def test_a_token_verified_once_is_still_refused_once_it_expires(keys):
    sent = token()
    exp = authorize(sent, CONFIG, [], keys)[0]["exp"]
    with pytest.raises(Unauthorized, match="expired"):
        authorize(sent, CONFIG, [], keys, now=exp + 1)


@pytest.mark.parametrize("claims, refusal", [
    ({"iss": "https://cognito-idp.us-east-1.amazonaws.com/another"}, "issuer"),
    ({"client_id": "team-b", "sub": "team-b"}, "audience"),
    ({"aud": "team-b"}, "audience"),  # aud, when present, is what counts
    ({"exp": 1}, "expired"),
    ({"nbf": int(time.time()) + 3600}, "not valid yet"),
])
def test_what_api_gateway_refuses_is_401(keys, claims, refusal):
    with pytest.raises(Unauthorized, match=refusal):
        authorize(token(**claims), CONFIG, [], keys)


def test_another_key_or_algorithm_is_401_and_a_missing_scope_403(keys):
    with pytest.raises(Unauthorized, match="signature"):
        authorize(token(key=RSAKey.generate_key(2048, parameters={"kid": "k1"})), CONFIG, [], keys)
    with pytest.raises(Unauthorized, match="RS256"):
        authorize(jwt.encode({"alg": "HS256"}, {"iss": ISSUER}, OctKey.import_key("s" * 32)), CONFIG, [], keys)
    with pytest.raises(Forbidden):
        authorize(token(), CONFIG, ["vehicle-classifier/photos.submit"], keys)
    with pytest.raises(Unauthorized, match="no token"):
        authorize(None, CONFIG, [], keys)


def test_a_token_issued_in_the_future_or_naming_no_key_is_401(keys):
    with pytest.raises(Unauthorized, match="not valid yet"):
        authorize(token(iat=int(time.time()) + 3600), CONFIG, [], keys)
    unnamed = jwt.encode({"alg": "RS256"}, {"iss": ISSUER, "client_id": "team-a", "exp": int(time.time()) + 60}, KEY)
    with pytest.raises(Unauthorized, match="kid"):
        authorize(unnamed, CONFIG, [], keys)
