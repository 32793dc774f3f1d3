"""The review API on the twin's front door, driven with plain HTTP as an outsider would: who may list and decide
(no token 401, a signed-in non-reviewer 403, a driver's token 401), a decision's reviewer from the token whatever
the body says, bad input as JSON 400s, leases, previews - and the probes that beat the old local page: a forged
name, a cross-site form, a forged Host, body shapes, a poisoned queue message, direction overrides in keys."""

from __future__ import annotations

import io
import json
import re

import pytest
import requests
from PIL import Image

from local.twin import Twin, TwinSettings, free_port
from review.requeue import requeue
from sign_in_helpers import CHOSEN, Browser, challenge, redeem, reviewer_token, sign_in
from training.stage_data import read_manifest
from twin_helpers import put, sample, subscribe_to_dispatch, wait_for

pytestmark = pytest.mark.slow
RTL_KEY = "drivers/\u202egnp.exe"  # shows as "drivers/exe.png" if its direction override were obeyed


@pytest.fixture(scope="module")
def twin():
    with Twin(TwinSettings(port=free_port(), stack_name="review-api", parameters={"AuditRate": "0"})) as running:
        yield running


@pytest.fixture(scope="module")
def dispatch(twin):
    return subscribe_to_dispatch(twin, "review-api-dispatch")


@pytest.fixture(scope="module")
def unsure(twin, dispatch) -> list[str]:
    """Four photos the model is unsure of (it says 0.85 bicycle), one under a key with a direction override."""
    keys = ["review/one.png", "review/two.png", "review/three.png", RTL_KEY]
    for key in keys:
        put(twin, key, sample("bicycle", 0).read_bytes())
    assert {r["outcome"] for r in wait_for(twin, set(keys)).values()} == {"needs_review"}
    return keys


@pytest.fixture(scope="module")
def ana(twin) -> str:
    return reviewer_token(twin, "ana")


@pytest.fixture(scope="module")
def ben(twin) -> str:
    return reviewer_token(twin, "ben")


def call(twin: Twin, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
    headers = kwargs.pop("headers", {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, twin.outputs["ReviewApiUrl"] + path, headers=headers, timeout=30, **kwargs)


def listing(twin: Twin, token: str) -> dict:
    answer = call(twin, "GET", "/reviews", token)
    assert answer.status_code == 200, answer.text
    return answer.json()


def record_of(twin: Twin, key: str) -> dict:
    return {r["key"]: r for r in twin.results()}[key]


# ------------------------------------------------------------------ the page
def test_the_page_is_public_holds_no_data_and_runs_no_inline_script(twin):
    answer = requests.get(twin.outputs["ReviewPageUrl"], timeout=30)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "'unsafe-inline'" not in policy
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", answer.text, flags=re.S)
    assert scripts == [""] and ' src="review/review.js"' in answer.text  # one script, from a file
    assert not re.search(r"\son[a-z]+=", answer.text)  # no inline event handlers
    assert f'content="{twin.outputs["ReviewClientId"]}"' in answer.text
    assert requests.get(twin.outputs["ReviewPageUrl"] + "/review.js", timeout=30).status_code == 200
    assert requests.get(twin.outputs["ReviewPageUrl"] + "/app.py", timeout=30).status_code == 404


# ------------------------------------------------------------------ who may list and decide
def test_without_a_token_nothing_is_listed_or_decided(twin, unsure):
    assert call(twin, "GET", "/reviews").status_code == 401
    assert call(twin, "POST", "/reviews/0123", json={"label": "bicycle"}).status_code == 401
    assert call(twin, "GET", "/reviews", "not-a-token").status_code == 401


def test_a_signed_in_person_outside_the_reviewers_group_is_refused(twin, unsure):
    carl = reviewer_token(twin, "carl", reviewer=False)
    answer = call(twin, "GET", "/reviews", carl)
    assert answer.status_code == 403
    assert answer.json() == {"error": "Forbidden", "message": "carl is signed in but not a reviewer: an operations "
                                                              "lead adds reviewers to the reviewers group"}
    assert call(twin, "POST", "/reviews/0123", carl, json={"label": "bicycle"}).status_code == 403


def test_a_drivers_token_is_not_let_into_the_review_api(twin, unsure):
    verifier, code_challenge = challenge()
    pool, cognito = twin.outputs["UserPoolId"], twin.client("cognito-idp")
    cognito.admin_create_user(UserPoolId=pool, Username="driver-9", TemporaryPassword="Temp0rary-password",
                              MessageAction="SUPPRESS")
    app = twin.outputs["DriverAppClientId"]
    back = sign_in(Browser(twin), app, "driver-9", "Temp0rary-password", code_challenge, new_password=CHOSEN)
    token = redeem(twin, app, back["code"], verifier).json()["access_token"]
    assert call(twin, "GET", "/reviews", token).status_code == 401  # another client's token: not this audience


# ------------------------------------------------------------------ listing, leases, previews
def test_a_reviewer_lists_the_waiting_photos_leased_to_them_with_small_previews(twin, unsure, ana, ben):
    listing(twin, ana)  # a listing makes a few previews; the page's next listing (10 s on) the rest
    answer = listing(twin, ana)
    assert answer["reviewer"] == "ana"
    items = answer["items"]
    assert len(items) == len(unsure)
    for item in items:
        assert {"id", "key", "label", "confidence", "reason", "image_url"} <= set(item)
        assert item["label"] == "bicycle" and 0.5 < item["confidence"] < 0.93 and item["reason"] == "below_threshold"
        preview = requests.get(item["image_url"], timeout=30)
        assert preview.status_code == 200 and preview.headers["content-type"] == "image/jpeg"
        with Image.open(io.BytesIO(preview.content)) as shown:
            assert max(shown.size) <= 512
    # Leased to ana: ben is shown none of them meanwhile, and ana's next listing shows the same ones.
    assert listing(twin, ben)["items"] == []
    assert [i["id"] for i in listing(twin, ana)["items"]] == [i["id"] for i in items]


def test_a_key_with_a_direction_override_is_listed_visibly_escaped(twin, unsure, ana):
    keys = [item["key"] for item in listing(twin, ana)["items"]]
    assert r"drivers/\u202egnp.exe" in keys
    assert not any("\u202e" in key for key in keys)


# ------------------------------------------------------------------ deciding
def _item(twin: Twin, token: str, key: str) -> dict:
    return next(item for item in listing(twin, token)["items"] if item["key"] == key)


def test_the_reviewer_is_the_tokens_user_whatever_the_body_says(twin, unsure, ana, dispatch):
    item = _item(twin, ana, "review/one.png")
    answer = call(twin, "POST", f"/reviews/{item['id']}", ana,
                  json={"label": "motorcycle", "reviewer": "ben", "decided_by": "model"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["reviewer"] == "ana" and answer.json()["outcome"] == "reviewed"
    record = record_of(twin, "review/one.png")
    assert record["reviewer"] == "ana" and record["human_label"] == "motorcycle" and record["decided_by"] == "person"
    [event] = [e for e in dispatch() if e["detail"]["key"] == "review/one.png"]
    assert event["detail"]["reviewer"] == "ana"
    [line] = [line for line in read_manifest(twin.client("s3"), twin.outputs["GroundTruthBucketName"], "manifest/")
              if line["vehicle-class-metadata"]["original-source-ref"].endswith("/review/one.png")]
    assert line["vehicle-class-metadata"]["reviewer"] == "ana"
    assert "review/one.png" not in [i["key"] for i in listing(twin, ana)["items"]]


@pytest.mark.parametrize("body, says", [
    ("this is not json", "the body is not JSON"),
    ("[\"bicycle\"]", "the body must be a JSON object"),
    ("\"bicycle\"", "the body must be a JSON object"),
    ("{}", "label must be one of bicycle, motorcycle, unusable"),
    ('{"label": "car"}', "label must be one of bicycle, motorcycle, unusable"),
    ('{"label": ["bicycle"]}', "label must be one of bicycle, motorcycle, unusable"),
    ('{"label": null}', "label must be one of bicycle, motorcycle, unusable"),
    ('{"label": "bicycle", "pad": "' + "x" * 2000 + '"}', "the body is over 1024 bytes"),
    ('{"label": "bicycle", "pad": "' + "\u00e9" * 600 + '"}', "the body is over 1024 bytes"),  # 1,200 bytes
    (b'{"label": "\xff\xfe"}', "the body is not UTF-8 JSON"),
])
def test_bad_input_is_a_clear_json_400_and_decides_nothing(twin, unsure, ana, body, says):
    item = _item(twin, ana, "review/two.png")
    answer = call(twin, "POST", f"/reviews/{item['id']}", ana, data=body,
                  headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "BadRequest" and says in answer.json()["message"]
    assert "decided_at" not in record_of(twin, "review/two.png")


def test_a_photo_not_leased_to_the_reviewer_is_a_409_and_a_malformed_id_a_404(twin, unsure, ana, ben):
    item = _item(twin, ana, "review/two.png")
    answer = call(twin, "POST", f"/reviews/{item['id']}", ben, json={"label": "bicycle"})
    assert answer.status_code == 409 and "not on your list" in answer.json()["message"]
    answer = call(twin, "POST", f"/reviews/{'0' * 32}", ana, json={"label": "bicycle"})
    assert answer.status_code == 409  # a photo id, but of no photo on ana's list
    answer = call(twin, "POST", f"/reviews/{'x' * 2000}", ana, json={"label": "bicycle"})
    assert answer.status_code == 404 and answer.json()["error"] == "NotFound"  # not even a photo id
    assert "decided_at" not in record_of(twin, "review/two.png")


def test_a_second_decision_on_a_photo_is_a_409_naming_who_decided_it(twin, unsure, ana, ben):
    requeue(twin.client("dynamodb"), twin.client("sqs"), twin.outputs["ResultsTableName"],
            twin.outputs["ReviewQueueUrl"])  # second copies: ben's listing leases them
    on_bens = _item(twin, ben, "review/three.png")
    on_anas = _item(twin, ana, "review/three.png")
    assert on_anas["id"] == on_bens["id"]
    assert call(twin, "POST", f"/reviews/{on_anas['id']}", ana, json={"label": "bicycle"}).status_code == 200
    answer = call(twin, "POST", f"/reviews/{on_bens['id']}", ben, json={"label": "motorcycle"})
    assert answer.status_code == 409 and answer.json()["error"] == "Conflict"
    assert answer.json()["message"].startswith("already decided by ana at ")
    assert record_of(twin, "review/three.png")["human_label"] == "bicycle"


# ------------------------------------------------------------------ the old page's probes
def test_a_cross_site_form_post_decides_nothing(twin, unsure, ana):
    """The old page took a form token from one GET; here a decision needs the bearer token, which another site's
    form (or a rebinding DNS name) cannot add: browsers send no Authorization header of their own."""
    item = _item(twin, ana, "review/two.png")
    for content_type, data in (("application/x-www-form-urlencoded", "label=bicycle"),
                               ("text/plain", '{"label": "bicycle"}')):
        answer = call(twin, "POST", f"/reviews/{item['id']}", data=data,
                      headers={"Content-Type": content_type, "Origin": "https://evil.example"})
        assert answer.status_code == 401
    assert "decided_at" not in record_of(twin, "review/two.png")


def test_a_forged_host_header_gets_nothing_without_a_token(twin, unsure):
    answer = call(twin, "GET", "/reviews", headers={"Host": "rebound.evil.example"})
    assert answer.status_code == 401 and "review/two.png" not in answer.text


def test_a_poisoned_message_naming_another_bucket_is_refused_not_served(twin, unsure, ana):
    secret_bucket = "someone-elses-bucket"
    s3 = twin.client("s3")
    s3.create_bucket(Bucket=secret_bucket)
    s3.put_object(Bucket=secret_bucket, Key="payroll.png", Body=sample("bicycle", 0).read_bytes())
    twin.client("sqs").send_message(QueueUrl=twin.outputs["ReviewQueueUrl"], MessageBody=json.dumps({
        "bucket": secret_bucket, "key": "payroll.png", "label": "bicycle", "confidence": 0.5,
        "probabilities": {"bicycle": 0.5, "motorcycle": 0.5}, "classes": "bicycle,motorcycle",
        "execution_arn": "arn:aws:states:us-east-1:123456789012:express:x:poisoned", "reason": "below_threshold"}))
    for token in (ana, reviewer_token(twin, "dora")):
        assert all(item["key"] != "payroll.png" for item in listing(twin, token)["items"])


def test_an_error_behind_the_api_names_no_endpoint_or_service_text(twin, unsure, ana):
    """A failing AWS call (the leases table gone) is a 502 that says so, and no more."""
    dynamodb = twin.client("dynamodb")
    leases = next(t for t in dynamodb.list_tables()["TableNames"] if "-ReviewLeasesTable-" in t)
    described = dynamodb.describe_table(TableName=leases)["Table"]
    dynamodb.delete_table(TableName=leases)
    try:
        answer = call(twin, "GET", "/reviews", ana)
        assert answer.status_code == 502
        assert answer.json() == {"error": "BadGateway",
                                 "message": "a service the review API depends on failed; try again in a moment"}
        assert "127.0.0.1" not in answer.text and "ResourceNotFound" not in answer.text
    finally:
        dynamodb.create_table(TableName=leases, KeySchema=described["KeySchema"], BillingMode="PAY_PER_REQUEST",
                              AttributeDefinitions=described["AttributeDefinitions"])
