"""The front door's handlers (functions/photos: POST /photos in submit.py, GET /photos/{id} in status.py), called
with API Gateway payload 2.0 events as the JWT authorizer passes them, against moto's S3 and DynamoDB."""

from __future__ import annotations

import base64
import json
import time

import pytest

from photo_requests import OWNER_A, OWNER_B, PHOTOS, Context
from photo_requests import get as get_answer
from photo_requests import post as post_answer
from photo_requests import record as _record


def _parts(answer: dict) -> tuple[int, dict | None, dict]:
    return answer["statusCode"], json.loads(answer["body"]) if answer.get("body") else None, answer.get("headers", {})


def post(submit, load_event, body, owner=OWNER_A, headers=None):
    return _parts(post_answer(submit, load_event, body, owner, headers))


def get(status, load_event, photo_id, owner=OWNER_A, headers=None, query=None):
    return _parts(get_answer(status, load_event, photo_id, owner, headers, query))


def test_the_sample_submit_event_answers_a_photo_with_a_presigned_post_that_fixes_key_type_and_size(submit, load_event):
    answer = submit.lambda_handler(load_event("photos_submit.json"), Context())
    assert answer["statusCode"] == 201
    photo = json.loads(answer["body"])
    assert set(photo) == {"id", "upload", "expires_at", "result_url", "max_bytes"}
    assert photo["result_url"] == f"http://127.0.0.1:4593/photos/{photo['id']}" == answer["headers"]["Location"]
    fields = photo["upload"]["fields"]
    owner = load_event("photos_submit.json")["requestContext"]["authorizer"]["jwt"]["claims"]["sub"]
    assert fields["key"] == f"api/{owner}/{photo['id']}.png" and fields["Content-Type"] == "image/png"
    policy = json.loads(base64.b64decode(fields["policy"]))
    assert {"Content-Type": "image/png"} in policy["conditions"]
    assert ["content-length-range", 1, 1000] in policy["conditions"]
    assert {"key": fields["key"]} in policy["conditions"]
    # The same Idempotency-Key from the same caller is the same photo.
    again = submit.lambda_handler(load_event("photos_submit.json"), Context())
    assert json.loads(again["body"])["id"] == photo["id"]


def test_the_sample_status_event_of_an_unknown_photo_is_404(status, load_event):
    answer = status.lambda_handler(load_event("photos_status.json"), Context())
    assert answer["statusCode"] == 404
    assert json.loads(answer["body"])["error"] == "NotFound"


def test_idempotency_keys_are_per_caller_and_bound_to_the_request(submit, load_event):
    headers = {"idempotency-key": "retry-me"}
    _, first, _ = post(submit, load_event, {"content_type": "image/jpeg"}, headers=headers)
    _, again, _ = post(submit, load_event, {"content_type": "image/jpeg"}, headers=headers)
    _, other_caller, _ = post(submit, load_event, {"content_type": "image/jpeg"}, owner=OWNER_B, headers=headers)
    assert first["id"] == again["id"] != other_caller["id"]
    code, error, _ = post(submit, load_event, {"content_type": "image/png"}, headers=headers)
    assert (code, error["error"]) == (409, "IdempotencyKeyReused")
    _, without_key_1, _ = post(submit, load_event, {"content_type": "image/jpeg"})
    _, without_key_2, _ = post(submit, load_event, {"content_type": "image/jpeg"})
    assert without_key_1["id"] != without_key_2["id"]


@pytest.mark.parametrize("body, headers, code, error", [
    ("not json", {}, 400, "MalformedRequest"),
    ("[1, 2]", {}, 400, "MalformedRequest"),
    ({}, {}, 400, "MalformedRequest"),
    ({"content_type": 7}, {}, 400, "MalformedRequest"),
    ({"content_type": "image/png", "key": "mine.png"}, {}, 400, "MalformedRequest"),
    ({"content_type": "text/plain"}, {}, 415, "UnsupportedImageType"),
    ({"content_type": "image/svg+xml"}, {}, 415, "UnsupportedImageType"),
    ({"content_type": "image/png"}, {"content-type": "text/plain"}, 415, "UnsupportedMediaType"),
    ({"content_type": "image/png", "pad": "x" * 2000}, {}, 413, "PayloadTooLarge"),
    ({"content_type": "image/png"}, {"idempotency-key": ""}, 400, "MalformedRequest"),
    ({"content_type": "image/png"}, {"idempotency-key": "k" * 256}, 400, "MalformedRequest"),
])
def test_a_bad_request_is_a_json_error_with_its_status_and_no_photo(submit, aws, load_event, body, headers, code,
                                                                    error):
    answer_code, answer, _ = post(submit, load_event, body, headers=headers)
    assert (answer_code, answer["error"]) == (code, error)
    assert answer["message"] and "Traceback" not in answer["message"]
    assert aws.scan(TableName=PHOTOS)["Count"] == 0


def test_a_photo_is_pending_then_its_record_with_etag_and_304(submit, status, aws, load_event):
    _, photo, _ = post(submit, load_event, {"content_type": "image/png"})
    code, state, headers = get(status, load_event, photo["id"])
    assert (code, state["state"]) == (200, "pending")
    _record(aws, photo["upload"]["fields"]["key"], outcome="classified", label="bicycle", confidence=0.99)
    code, state, headers = get(status, load_event, photo["id"], headers={"if-none-match": headers["ETag"]})
    assert code == 200
    assert state == {"id": photo["id"], "submitted_at": state["submitted_at"],
                     "recorded_at": "2026-12-04T15:00:01+00:00", "state": "classified", "label": "bicycle",
                     "model_label": "bicycle", "confidence": 0.99, "decided_by": "model"}
    code, body, again = get(status, load_event, photo["id"], headers={"if-none-match": headers["ETag"]})
    assert (code, body, again["ETag"]) == (304, None, headers["ETag"])


@pytest.mark.parametrize("record, expected", [
    ({"outcome": "needs_review", "label": "motorcycle", "confidence": 0.6, "reason": "LowConfidenceError"},
     {"state": "needs_review", "reason": "LowConfidenceError", "model_label": "motorcycle"}),
    ({"outcome": "reviewed", "label": "motorcycle", "confidence": 0.6, "human_label": "bicycle", "reviewer": "ana",
      "decided_at": "2026-12-04T15:05:00+00:00"},
     {"state": "classified", "label": "bicycle", "decided_by": "person", "reviewer": "ana"}),
    ({"outcome": "rejected", "label": "motorcycle", "confidence": 0.6, "human_label": "unusable", "reviewer": "ana"},
     {"state": "failed", "reason": "RejectedByReviewer", "decided_by": "person"}),
    ({"outcome": "failed", "reason": "CorruptImageError"}, {"state": "failed", "reason": "CorruptImageError"}),
])
def test_each_outcome_reads_as_its_state_and_who_decided(submit, status, aws, load_event, record, expected):
    _, photo, _ = post(submit, load_event, {"content_type": "image/png"})
    _record(aws, photo["upload"]["fields"]["key"], **record)
    _, state, _ = get(status, load_event, photo["id"])
    assert expected.items() <= state.items()


def test_another_callers_photo_and_malformed_ids_are_404(submit, status, load_event):
    _, photo, _ = post(submit, load_event, {"content_type": "image/png"})
    assert get(status, load_event, photo["id"], owner=OWNER_B)[0] == 404
    for odd in ("../../etc/passwd", "a\\b", "id with spaces"):
        code, body, _ = get(status, load_event, odd)
        assert (code, body["error"]) == (404, "NotFound"), odd
    assert get(status, load_event, photo["id"].upper())[0] == 404


@pytest.mark.parametrize("wait", ["-1", "21", "soon", "nan"])
def test_wait_outside_0_to_20_seconds_is_400(submit, status, load_event, wait):
    _, photo, _ = post(submit, load_event, {"content_type": "image/png"})
    code, error, _ = get(status, load_event, photo["id"], query={"wait": wait})
    assert (code, error["error"]) == (400, "MalformedRequest")


def test_wait_holds_a_pending_photo_until_the_deadline(submit, status, load_event):
    _, photo, _ = post(submit, load_event, {"content_type": "image/png"})
    started = time.monotonic()
    code, state, _ = get(status, load_event, photo["id"], query={"wait": "1"})
    assert (code, state["state"]) == (200, "pending")
    assert time.monotonic() - started >= 0.5


def test_an_upload_never_made_reads_expired_after_the_pipelines_time_budget(status):
    photo = {"id": "a" * 32, "created_at": "2026-12-04T15:00:00Z", "upload_expires_at": "2026-12-04T15:05:00Z"}
    deadline = status._epoch(photo["upload_expires_at"])
    assert status.describe(photo, None, deadline + 60)["state"] == "pending"
    assert status.describe(photo, None, deadline + status.EXPIRED_AFTER_SECONDS + 1)["state"] == "expired"


def test_if_none_match_takes_lists_weak_tags_and_star(submit, status, load_event):
    _, photo, _ = post(submit, load_event, {"content_type": "image/png"})
    etag = get(status, load_event, photo["id"])[2]["ETag"]
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        assert get(status, load_event, photo["id"], headers={"if-none-match": header})[0] == 304, header
    assert get(status, load_event, photo["id"], headers={"if-none-match": '"other"'})[0] == 200


@pytest.mark.parametrize("body, content_type, code", [
    (b"\xff\xd8\xff\xe0 a JPEG sent as the body", "image/jpeg", 415),
    (b"\xff\xfe not UTF-8", "application/json", 400),
    (b'{"content_type": "image/png"}', "application/json", 201),
])
def test_a_body_api_gateway_base64_encoded_is_read_or_refused_never_a_500(submit, load_event, body, content_type, code):
    event = load_event("photos_submit.json")
    event["headers"]["content-type"] = content_type
    event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    assert submit.lambda_handler(event, Context())["statusCode"] == code
