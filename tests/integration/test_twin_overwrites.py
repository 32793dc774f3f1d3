"""A key uploaded again: the record describes the newest upload, whichever execution finishes last."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest
import requests

from sign_in_helpers import reviewer_token
from twin_helpers import put, queue_messages, sample, subscribe_to_dispatch, wait_for, wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

KEY = "overwrites/driver 7.png"


def record_of(twin, key: str) -> dict:
    (record,) = [r for r in twin.results() if r["key"] == key]
    return record


def run(twin, execution_input: dict) -> dict:
    """Start the stack's state machine as EventBridge (or a user) would, and wait for its end."""
    sfn = twin.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=twin.outputs["StateMachineArn"], name=str(uuid.uuid4()),
                              input=json.dumps(execution_input))["executionArn"]
    return wait_until(lambda: (d := sfn.describe_execution(executionArn=arn))["status"] != "RUNNING" and d)


def upload_event(twin, upload: dict) -> dict:
    """The "Object Created" event S3 sends for ``upload`` (a record's ``upload``), as EventBridge delivers it."""
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created", "source": "aws.s3",
        "account": "123456789012", "time": "2026-12-01T00:00:00Z", "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{twin.outputs['IntakeBucketName']}"],
        "detail": {"version": "0", "bucket": {"name": twin.outputs["IntakeBucketName"]}, "object": upload,
                   "reason": "PutObject"},
    }


def test_each_upload_of_a_key_is_named_and_the_last_one_is_recorded(twin):
    bicycle, motorcycle = sample("bicycle").read_bytes(), sample("motorcycle").read_bytes()
    put(twin, KEY, bicycle)
    first = wait_for(twin, {KEY})[KEY]
    first_upload = json.loads(first["upload"])
    assert first_upload["etag"] == hashlib.md5(bicycle).hexdigest() and first_upload["size"] == len(bicycle)
    assert first["sequencer"] == first_upload["sequencer"]

    put(twin, KEY, motorcycle)
    second = wait_until(lambda: (r := record_of(twin, KEY))["sequencer"] != first["sequencer"] and r)
    upload = json.loads(second["upload"])
    assert upload["etag"] == hashlib.md5(motorcycle).hexdigest()
    assert second["sequencer"] > first["sequencer"]  # S3 orders one key's uploads by it
    assert second["label"] == "motorcycle"


def test_an_older_upload_finishing_last_leaves_the_newer_record(twin):
    """EventBridge delivers out of order: the first upload's event arrives after the second's was recorded."""
    bicycle, motorcycle = sample("bicycle", 1).read_bytes(), sample("motorcycle", 1).read_bytes()
    key = "overwrites/late.png"
    put(twin, key, bicycle)
    older = wait_for(twin, {key})[key]
    put(twin, key, motorcycle)
    newer = wait_until(lambda: (r := record_of(twin, key))["sequencer"] != older["sequencer"] and r)

    # The older upload's event, as S3 sent it, processed again now (as a slow first execution would finish).
    late_event = upload_event(twin, json.loads(older["upload"]))
    dispatched = subscribe_to_dispatch(twin, "overwrites-dispatch")
    execution = run(twin, late_event)
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"])["outcome"] == "superseded"
    # It stopped at its record: no dispatch event and no review message speak for the older photo.
    late = execution["executionArn"]
    assert [e for e in dispatched() if e["detail"]["execution_arn"] == late] == []
    reviews = queue_messages(twin, "ReviewQueueUrl", 100, timeout=2, take=False)
    assert [m for m in reviews if m["body"]["execution_arn"] == late] == []
    kept = record_of(twin, key)
    assert kept["execution_arn"] == newer["execution_arn"] and kept["sequencer"] == newer["sequencer"]
    assert kept["label"] == "motorcycle"

    # The same upload's event again (EventBridge delivers at least once) may rewrite its own record.
    again = run(twin, {**late_event, "detail": {**late_event["detail"], "object": json.loads(newer["upload"])}})
    assert json.loads(again["output"])["outcome"] in ("classified", "needs_review")
    assert record_of(twin, key)["execution_arn"] == again["executionArn"]


def test_a_direct_input_records_a_new_key_but_never_replaces_an_uploads_record(twin):
    bucket = twin.outputs["IntakeBucketName"]
    put(twin, "overwrites/direct.png", sample("bicycle", 2).read_bytes())
    uploaded = wait_for(twin, {"overwrites/direct.png"})["overwrites/direct.png"]
    execution = run(twin, {"s3_bucket": bucket, "s3_key": "overwrites/direct.png"})
    assert json.loads(execution["output"])["outcome"] == "superseded"
    assert record_of(twin, "overwrites/direct.png")["execution_arn"] == uploaded["execution_arn"]

    # An object no upload event announced (e.g. copied in before the rule existed): the direct input records it.
    twin.client("s3").put_object(Bucket=bucket, Key="overwrites/unannounced.png",
                                 Body=sample("bicycle", 3).read_bytes())
    wait_for(twin, {"overwrites/unannounced.png"})
    twin.client("dynamodb").delete_item(TableName=twin.outputs["ResultsTableName"],
                                        Key={"bucket": {"S": bucket}, "key": {"S": "overwrites/unannounced.png"}})
    execution = run(twin, {"s3_bucket": bucket, "s3_key": "overwrites/unannounced.png"})
    assert json.loads(execution["output"])["outcome"] in ("classified", "needs_review")
    record = record_of(twin, "overwrites/unannounced.png")
    assert record["sequencer"] == "0" and json.loads(record["upload"]) == {"sequencer": "0"}


def test_a_repeated_execution_of_a_decided_upload_leaves_the_decision_and_announces_nothing(twin):
    """Asynchronous Express executions are at-least-once: the same upload's execution may run again after a
    person decided its photo. It must neither replace the decision nor send the photo to review again."""
    key = "overwrites/decided.png"
    put(twin, key, sample("bicycle", 0).read_bytes())  # the model says 0.85: sent to review
    waiting = wait_for(twin, {key})[key]
    assert waiting["outcome"] == "needs_review"
    # Ana decides it on the review API, as the page does.
    token, api = reviewer_token(twin, "ana"), twin.outputs["ReviewApiUrl"]
    listed = requests.get(f"{api}/reviews", headers={"Authorization": f"Bearer {token}"}, timeout=30).json()["items"]
    (photo,) = [item for item in listed if item["key"] == key]
    answer = requests.post(f"{api}/reviews/{photo['id']}", json={"label": "motorcycle"},
                           headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    decided = record_of(twin, key)
    assert (decided["outcome"], decided["human_label"], decided["reviewer"]) == ("reviewed", "motorcycle", "ana")

    dispatched = subscribe_to_dispatch(twin, "repeat-dispatch")
    repeat = upload_event(twin, json.loads(waiting["upload"]))  # the same input, started twice
    repeats = [run(twin, repeat), run(twin, repeat)]
    assert [json.loads(r["output"])["outcome"] for r in repeats] == ["superseded", "superseded"]
    assert record_of(twin, key) == decided  # the decision, its time and its effects' marks intact
    arns = {r["executionArn"] for r in repeats}
    assert [e for e in dispatched() if e["detail"].get("execution_arn") in arns] == []
    reviews = queue_messages(twin, "ReviewQueueUrl", 100, timeout=2, take=False)
    assert [m for m in reviews if m["body"]["execution_arn"] in arns] == []
