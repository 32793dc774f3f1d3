"""The upload rule's event pattern, judged by EventBridge's matching (moto) against S3's event shape.

The events follow the "Object Created" example in the Amazon S3 user guide (EventBridge message
structure): every upload of an image to the intake bucket starts a workflow, nothing else does.
"""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
from moto import mock_aws

REGION = "us-east-1"
ACCOUNT = "123456789012"


def s3_event(bucket: str, key: str, *, detail_type: str = "Object Created", source: str = "aws.s3") -> dict:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT,
        "time": "2024-06-01T12:00:00Z",
        "region": REGION,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": 48213, "etag": "b1946ac92492d2347c6235b4d2611184",
                       "sequencer": "00617F08299329D189"},
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": ACCOUNT,
            "source-ip-address": "203.0.113.15",
            "reason": "PutObject",
        },
    }


@pytest.fixture(scope="module")
def rule(stack):
    rules = stack.of_type("AWS::Events::Rule")
    assert len(rules) == 1, sorted(rules)
    return stack.properties(next(iter(rules)))


@pytest.fixture(scope="module")
def intake(stack) -> str:
    return stack.ref("IntakeBucket")


@pytest.fixture(scope="module")
def matches(rule):
    """event -> whether the rule fires, per moto's EventBridge (a rule on the default bus, SQS target).

    TestEventPattern answers too when moto implements it (5.2 returns an empty response); both must agree.
    """
    with mock_aws():
        events = boto3.client("events", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        queue = sqs.create_queue(QueueName="delivered")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        pattern = json.dumps(rule["EventPattern"])
        events.put_rule(Name="image-uploaded", EventPattern=pattern)
        events.put_targets(Rule="image-uploaded", Targets=[{"Id": "q", "Arn": queue_arn}])

        def fires(event: dict) -> bool:
            entry = {"Source": event["source"], "DetailType": event["detail-type"],
                     "Detail": json.dumps(event["detail"]), "Resources": event["resources"]}
            assert events.put_events(Entries=[entry])["FailedEntryCount"] == 0
            delivered = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
            for message in delivered:
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
            assert len(delivered) <= 1
            by_rule = bool(delivered)
            if delivered:
                assert json.loads(delivered[0]["Body"])["detail"] == event["detail"]
            tested = events.test_event_pattern(EventPattern=pattern, Event=json.dumps(event))
            if "Result" in tested:
                assert tested["Result"] == by_rule, f"TestEventPattern and rule delivery disagree on {event}"
            return by_rule

        yield fires


def test_pattern_filters_on_the_intake_bucket(rule, intake):
    # Guards the tests below: they must judge the pattern for this stack's bucket, not a literal.
    assert rule["EventPattern"]["detail"]["bucket"]["name"] == [intake]


# Keys as S3 may deliver them (URL-encoded: "a b.png" arrives as "a+b.png"), in every format phones and
# browsers send, and files that are no photo at all: each upload gets a record, a failed one if need be.
@pytest.mark.parametrize("key", ["photo.jpg", "PHOTO.JPEG", "a b.png", "a+b.png", "caf%C3%A9.jpg", "x.webp",
                                 "uploads/2024/06/bike.Png", "IMG_0001.HEIC", "shot.heif", "web.avif", "anim.gif",
                                 "scan.tif", "no-extension", "notes.txt", "archive.zip"])
def test_every_upload_to_the_intake_bucket_starts_a_workflow(matches, intake, key):
    assert matches(s3_event(intake, key))


@pytest.mark.parametrize("key", ["photos/", "a/b/c/"])
def test_folder_markers_do_not(matches, intake, key):
    assert not matches(s3_event(intake, key))


def test_uploads_to_another_bucket_do_not(matches):
    assert not matches(s3_event("someone-elses-bucket", "photo.jpg"))


@pytest.mark.parametrize("detail_type", ["Object Deleted", "Object Restore Completed", "Object Tags Added"])
def test_other_s3_events_do_not(matches, intake, detail_type):
    assert not matches(s3_event(intake, "photo.jpg", detail_type=detail_type))


def test_events_from_other_sources_do_not(matches, intake):
    # An application could put an S3-shaped event on the bus; only S3's own events count.
    assert not matches(s3_event(intake, "photo.jpg", source="scones.uploader"))
