"""The front door as other teams use it: plain HTTP against the twin's API and token endpoint.

Every route and every error class of docs/api.md: tokens (none, garbage, another pool's, expired, forged, an ID
token, one without the route's scope), teams reading only their own photos, idempotent retries, uploads the
presigned POST's policy refuses (they reach neither the bucket nor the pipeline), throttling and CORS from the
template's parameters, and the access log.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey

from local.twin import Twin, _pool_signing_key
from twin_helpers import SAMPLES, wait_until

SUBMIT, READ = "vehicle-classifier/photos.submit", "vehicle-classifier/photos.read"
PNG = (SAMPLES / "bicycle" / "bicycle_s_000147.png").read_bytes()  # a confident bicycle


@pytest.fixture(scope="module")
def cognito(twin):
    return twin.client("cognito-idp")


def token(twin: Twin, client_id: str, secret: str, **form: str) -> requests.Response:
    return requests.post(twin.outputs["TokenUrl"], auth=(client_id, secret),
                         data={"grant_type": "client_credentials", **form}, timeout=10)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture(scope="module")
def team_a(twin):
    return _team(twin, "team-a", "submit,read")


@pytest.fixture(scope="module")
def team_b(twin):
    return _team(twin, "team-b", "submit,read")


def _team(twin: Twin, name: str, scopes: str) -> dict[str, str]:
    from client.onboard import onboard_team
    from contracts.stack import twin as twin_target

    done = onboard_team(twin_target(twin.settings.port), name, scopes, on_twin=True)
    secret = twin.client("cognito-idp").describe_user_pool_client(
        UserPoolId=twin.outputs["UserPoolId"], ClientId=done.client_id)["UserPoolClient"]["ClientSecret"]
    answer = token(twin, done.client_id, secret)
    assert answer.status_code == 200, answer.text
    # Admission changes the API's authorizer, which takes effect within a second (a stack update on AWS).
    wait_until(lambda: photo_state(twin, {"token": answer.json()["access_token"]}, "0" * 32).status_code != 401,
               timeout=10)
    return {"id": done.client_id, "secret": secret, "token": answer.json()["access_token"]}


def new_photo(twin: Twin, team: dict, content_type: str = "image/png", **headers: str) -> requests.Response:
    return requests.post(f"{twin.outputs['ApiUrl']}/photos", json={"content_type": content_type},
                         headers={**bearer(team["token"]), **headers}, timeout=30)


def upload(photo: dict, body: bytes, content_type: str | None = None, **fields: str) -> requests.Response:
    form = {**photo["upload"]["fields"], **fields}
    return requests.post(photo["upload"]["url"], data=form,
                         files={"file": ("photo", body, content_type or form["Content-Type"])}, timeout=60)


def photo_state(twin: Twin, team: dict, photo_id: str, **params: str) -> requests.Response:
    return requests.get(f"{twin.outputs['ApiUrl']}/photos/{photo_id}", params=params, headers=bearer(team["token"]),
                        timeout=40)


# ------------------------------------------------------------------ the happy path and the outputs
def test_the_outputs_name_the_front_door(twin):
    for name in ("ApiUrl", "TokenUrl", "UserPoolId", "DriverAppClientId"):
        assert twin.outputs[name], name
    assert twin.outputs["TokenUrl"].endswith("/oauth2/token")


def test_a_photo_through_the_front_door_ends_in_its_outcome(twin, team_a):
    answer = new_photo(twin, team_a, **{"Idempotency-Key": str(uuid.uuid4())})
    assert answer.status_code == 201, answer.text
    photo = answer.json()
    assert answer.headers["Location"] == photo["result_url"] == f"{twin.outputs['ApiUrl']}/photos/{photo['id']}"
    assert photo["upload"]["fields"]["key"].startswith(f"api/{team_a['id']}/")
    assert photo_state(twin, team_a, photo["id"]).json()["state"] == "pending"
    assert upload(photo, PNG).status_code == 204
    state = photo_state(twin, team_a, photo["id"], wait="20")
    assert state.status_code == 200
    body = state.json()
    assert body["state"] == "classified" and body["label"] == "bicycle" and body["decided_by"] == "model"
    # The same record the pipeline wrote.
    record = twin.client("dynamodb").get_item(TableName=twin.outputs["ResultsTableName"], Key={
        "bucket": {"S": twin.outputs["IntakeBucketName"]}, "key": {"S": photo["upload"]["fields"]["key"]}})["Item"]
    assert record["outcome"]["S"] == "classified" and float(record["confidence"]["N"]) == body["confidence"]
    # Polling costs nothing new: the ETag answers 304.
    headers = {**bearer(team_a["token"]), "If-None-Match": state.headers["ETag"]}
    again = requests.get(photo["result_url"], headers=headers, timeout=10)
    assert (again.status_code, again.content) == (304, b"")


def test_an_idempotent_retry_gives_one_photo(twin, team_a):
    key = str(uuid.uuid4())
    first = new_photo(twin, team_a, **{"Idempotency-Key": key})
    second = new_photo(twin, team_a, **{"Idempotency-Key": key})
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    photos = twin.client("dynamodb").scan(TableName=twin.outputs["PhotosTableName"])["Items"]
    assert sum(p["id"]["S"] == first.json()["id"] for p in photos) == 1
    reused = new_photo(twin, team_a, "image/jpeg", **{"Idempotency-Key": key})
    assert (reused.status_code, reused.json()["error"]) == (409, "IdempotencyKeyReused")


def test_team_a_cannot_read_team_bs_photo(twin, team_a, team_b):
    photo = new_photo(twin, team_b).json()
    assert photo_state(twin, team_b, photo["id"]).status_code == 200
    refused = photo_state(twin, team_a, photo["id"])
    assert refused.status_code == 404 and photo["id"] not in json.dumps({k: v for k, v in refused.json().items()
                                                                         if k != "message"})


# ------------------------------------------------------------------ tokens API Gateway refuses
def _get_with(twin, photo_id: str, headers: dict[str, str]) -> requests.Response:
    return requests.get(f"{twin.outputs['ApiUrl']}/photos/{photo_id}", headers=headers, timeout=10)


@pytest.mark.parametrize("headers", [{}, {"Authorization": ""}, {"Authorization": "Bearer not-a-jwt"},
                                     {"Authorization": "Basic dXNlcjpwYXNz"}])
def test_no_token_or_no_jwt_is_401(twin, headers):
    answer = _get_with(twin, "0" * 32, headers)
    assert (answer.status_code, answer.json()) == (401, {"message": "Unauthorized"})
    assert answer.headers["www-authenticate"].startswith("Bearer")


def _signed(key, claims: dict, kid: str = "dummy") -> str:
    return jwt.encode({"alg": "RS256", "kid": kid}, claims, key)


def _claims(twin, client_id: str, **overrides) -> dict:
    now = int(time.time())
    issuer = f"https://cognito-idp.us-east-1.amazonaws.com/{twin.outputs['UserPoolId']}"
    return {"sub": client_id, "client_id": client_id, "token_use": "access", "scope": f"{SUBMIT} {READ}",
            "iss": issuer, "iat": now - 10, "auth_time": now - 10, "exp": now + 600, "jti": str(uuid.uuid4()),
            "version": 2, **overrides}


def test_an_expired_token_is_401(twin, team_a):
    key = _pool_signing_key(twin.outputs["UserPoolId"])
    expired = _signed(key, _claims(twin, team_a["id"], exp=int(time.time()) - 1))
    answer = _get_with(twin, "0" * 32, bearer(expired))
    assert answer.status_code == 401 and "expired" in answer.headers["www-authenticate"]


def test_a_token_signed_with_another_key_is_401(twin, team_a):
    forged = _signed(RSAKey.generate_key(2048), _claims(twin, team_a["id"]))
    assert _get_with(twin, "0" * 32, bearer(forged)).status_code == 401


def test_a_token_of_another_user_pool_is_401(twin, cognito):
    other = cognito.create_user_pool(PoolName="someone-elses")["UserPool"]["Id"]
    client = cognito.create_user_pool_client(UserPoolId=other, ClientName="theirs")["UserPoolClient"]["ClientId"]
    cognito.admin_create_user(UserPoolId=other, Username="mallory", MessageAction="SUPPRESS")
    cognito.admin_set_user_password(UserPoolId=other, Username="mallory", Password="Corr3ct-horse-battery",
                                    Permanent=True)
    tokens = cognito.admin_initiate_auth(UserPoolId=other, ClientId=client, AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                                         AuthParameters={"USERNAME": "mallory", "PASSWORD": "Corr3ct-horse-battery"})
    answer = _get_with(twin, "0" * 32, bearer(tokens["AuthenticationResult"]["AccessToken"]))
    assert answer.status_code == 401 and "issuer" in answer.headers["www-authenticate"]


def test_a_drivers_id_token_and_sign_in_access_token_carry_no_api_scope_so_403(twin, cognito):
    pool, app = twin.outputs["UserPoolId"], twin.outputs["DriverAppClientId"]
    cognito.admin_create_user(UserPoolId=pool, Username="driver-42", MessageAction="SUPPRESS")
    cognito.admin_set_user_password(UserPoolId=pool, Username="driver-42", Password="Corr3ct-horse-battery",
                                    Permanent=True)
    signed_in = cognito.admin_initiate_auth(
        UserPoolId=pool, ClientId=app, AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "driver-42", "PASSWORD": "Corr3ct-horse-battery"})
    for kind in ("IdToken", "AccessToken"):
        answer = _get_with(twin, "0" * 32, bearer(signed_in["AuthenticationResult"][kind]))
        assert (answer.status_code, answer.json()) == (403, {"message": "Forbidden"}), kind


def test_a_token_without_the_routes_scope_is_403(twin):
    reader = _team(twin, "read-only", "read")
    answer = new_photo(twin, reader)
    assert (answer.status_code, answer.json()) == (403, {"message": "Forbidden"})
    assert photo_state(twin, reader, "0" * 32).status_code == 404  # its scope's route lets it in


def test_a_client_created_by_hand_gets_tokens_at_once_but_the_api_admits_it_only_once_in_the_audience(twin, cognito):
    pool = twin.outputs["UserPoolId"]
    client = cognito.create_user_pool_client(
        UserPoolId=pool, ClientName="by-hand", GenerateSecret=True, AllowedOAuthFlowsUserPoolClient=True,
        AllowedOAuthFlows=["client_credentials"], AllowedOAuthScopes=[READ])["UserPoolClient"]
    issued = token(twin, client["ClientId"], client["ClientSecret"])
    assert issued.status_code == 200
    answer = _get_with(twin, "0" * 32, bearer(issued.json()["access_token"]))
    # As on AWS: a Cognito access token's client_id must be one of the authorizer's audience.
    assert answer.status_code == 401 and "audience" in answer.headers["www-authenticate"]
    from client.onboard import _admit_on_twin
    from contracts.stack import twin as twin_target

    _admit_on_twin(twin_target(twin.settings.port), client["ClientId"])
    wait_until(lambda: _get_with(twin, "0" * 32, bearer(issued.json()["access_token"])).status_code == 404, timeout=10)


@pytest.mark.parametrize("form, auth, status, error", [
    ({"grant_type": "client_credentials"}, ("nobody", "wrong"), 400, "invalid_client"),
    ({"grant_type": "password"}, None, 400, "unsupported_grant_type"),
    ({"grant_type": "client_credentials", "scope": "vehicle-classifier/reviews.decide"}, None, 400, "invalid_scope"),
    ({}, None, 400, "invalid_request"),
])
def test_the_token_endpoint_refuses_as_cognito_does(twin, team_a, form, auth, status, error):
    auth = auth or (team_a["id"], team_a["secret"])
    answer = requests.post(twin.outputs["TokenUrl"], data=form, auth=auth, timeout=10)
    assert (answer.status_code, answer.json()) == (status, {"error": error})


def test_a_wrong_secret_is_invalid_client(twin, team_a):
    assert token(twin, team_a["id"], team_a["secret"] + "x").json() == {"error": "invalid_client"}


# ------------------------------------------------------------------ requests the API refuses
@pytest.mark.parametrize("data, content_type, status, error", [
    ("{not json", "application/json", 400, "MalformedRequest"),
    ('"image/png"', "application/json", 400, "MalformedRequest"),
    ('{"content_type": "image/png", "key": "../mine.png"}', "application/json", 400, "MalformedRequest"),
    ('{"content_type": "application/pdf"}', "application/json", 415, "UnsupportedImageType"),
    ('{"content_type": "image/png"}', "text/plain", 415, "UnsupportedMediaType"),
    ('{"content_type": "image/png", "x": "' + "y" * 5000 + '"}', "application/json", 413, "PayloadTooLarge"),
])
def test_bad_requests_are_clear_json_errors(twin, team_a, data, content_type, status, error):
    answer = requests.post(f"{twin.outputs['ApiUrl']}/photos", data=data,
                           headers={**bearer(team_a["token"]), "Content-Type": content_type}, timeout=10)
    assert answer.status_code == status
    body = answer.json()
    assert body["error"] == error and body["message"]
    assert not any(leak in answer.text for leak in ("Traceback", "127.0.0.1", "dynamodb", "amazonaws"))


def test_unknown_routes_and_ids_are_404(twin, team_a):
    assert requests.get(f"{twin.outputs['ApiUrl']}/nothing", headers=bearer(team_a["token"]), timeout=10).json() \
        == {"message": "Not Found"}
    assert requests.delete(f"{twin.outputs['ApiUrl']}/photos", headers=bearer(team_a["token"]),
                           timeout=10).status_code == 404
    assert photo_state(twin, team_a, "not-an-id").json()["error"] == "NotFound"
    assert photo_state(twin, team_a, "f" * 32).status_code == 404
    assert photo_state(twin, team_a, "0" * 32, wait="60").status_code == 400


# ------------------------------------------------------------------ uploads S3 refuses
def _nothing_reached_the_pipeline(twin, key: str, executions_before: int) -> None:
    s3 = twin.client("s3")
    assert "Contents" not in s3.list_objects_v2(Bucket=twin.outputs["IntakeBucketName"], Prefix=key)
    time.sleep(1.5)  # an upload that got through would have started an execution by now
    executions = twin.client("stepfunctions").list_executions(stateMachineArn=twin.outputs["StateMachineArn"])
    assert len(executions["executions"]) == executions_before
    record = twin.client("dynamodb").get_item(TableName=twin.outputs["ResultsTableName"], Key={
        "bucket": {"S": twin.outputs["IntakeBucketName"]}, "key": {"S": key}})
    assert "Item" not in record


def _executions(twin) -> int:
    listed = twin.client("stepfunctions").list_executions(stateMachineArn=twin.outputs["StateMachineArn"])
    return len(listed["executions"])


def test_an_upload_one_byte_over_the_limit_is_refused_by_s3_and_never_reaches_the_pipeline(twin, team_a):
    photo = new_photo(twin, team_a).json()
    before = _executions(twin)
    answer = upload(photo, PNG + b"\0" * (photo["max_bytes"] + 1 - len(PNG)))
    assert answer.status_code == 400 and "<Code>EntityTooLarge</Code>" in answer.text
    assert upload(photo, b"").status_code == 400  # and an empty one: EntityTooSmall
    _nothing_reached_the_pipeline(twin, photo["upload"]["fields"]["key"], before)
    assert upload(photo, PNG + b"\0" * (photo["max_bytes"] - len(PNG))).status_code == 204  # exactly the limit


@pytest.mark.parametrize("tamper", [{"Content-Type": "image/jpeg"}, {"key": "photos/mine.png"},
                                    {"x-amz-meta-owner": "someone-else"}])
def test_an_upload_of_another_type_key_or_field_is_refused_by_s3(twin, team_a, tamper):
    photo = new_photo(twin, team_a).json()
    before = _executions(twin)
    answer = upload(photo, PNG, **tamper)
    assert answer.status_code == 403 and "<Code>AccessDenied</Code>" in answer.text
    assert "Invalid according to Policy" in answer.text
    _nothing_reached_the_pipeline(twin, photo["upload"]["fields"]["key"], before)


def test_an_upload_naming_its_key_twice_in_another_case_is_refused(twin, team_a):
    photo = new_photo(twin, team_a).json()
    before = _executions(twin)
    answer = upload(photo, PNG, KEY=f"api/{team_a['id']}/not-the-signed-key.png")
    assert answer.status_code == 400 and "<Code>InvalidArgument</Code>" in answer.text
    _nothing_reached_the_pipeline(twin, f"api/{team_a['id']}/not-the-signed-key.png", before)


def test_an_upload_with_a_forged_signature_is_refused(twin, team_a):
    photo = new_photo(twin, team_a).json()
    answer = upload(photo, PNG, **{"x-amz-signature": "0" * 64})
    assert answer.status_code == 403 and "SignatureDoesNotMatch" in answer.text


# ------------------------------------------------------------ the stage (test_front_door_settings.py: non-default)
def test_the_default_stack_allows_no_web_origin(twin):
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
    answer = requests.options(f"{twin.outputs['ApiUrl']}/photos", headers=preflight, timeout=10)
    assert "Access-Control-Allow-Origin" not in answer.headers


def test_every_request_is_one_json_access_log_line(twin, team_a, caplog):
    with caplog.at_level(logging.INFO, logger="twin.api"):
        photo_state(twin, team_a, "0" * 32)
        requests.get(f"{twin.outputs['ApiUrl']}/photos/{'0' * 32}", timeout=10)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "twin.api"]
    assert [(line["status"], line["routeKey"]) for line in lines[-2:]] == [("404", "GET /photos/{id}"),
                                                                          ("401", "GET /photos/{id}")]
    assert lines[-2]["clientId"] == team_a["id"] and lines[-1]["authorizerError"] == "no token"
