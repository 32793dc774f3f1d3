"""Helpers shared by the twin's integration tests."""

from __future__ import annotations

import json
import time
from pathlib import Path

from local.twin import ROOT, Twin

SAMPLES = ROOT / "local" / "sample_images"


def wait_for(twin: Twin, keys: set[str], timeout: float = 90) -> dict[str, dict]:
    """The results-table items of ``keys`` once all are recorded (fails the test on timeout)."""
    found = twin.wait_for_results(keys, timeout)
    missing = sorted(keys - set(found))
    if missing:
        raise AssertionError(f"no outcome recorded within {timeout}s for {len(missing)} keys: {missing[:5]}")
    return found


def sample(label: str, index: int = 0) -> Path:
    return sorted((SAMPLES / label).glob("*.png"))[index]


def put(twin: Twin, key: str, body: bytes) -> None:
    """Upload to the intake bucket, as a driver's app would."""
    twin.client("s3").put_object(Bucket=twin.outputs["IntakeBucketName"], Key=key, Body=body)


def wait_until(check, timeout: float = 60, poll: float = 0.2):
    """The first truthy value of ``check()`` (fails the test after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"not within {timeout}s")


def queue_messages(twin: Twin, queue_output: str, count: int, timeout: float = 60, *, take: bool = True) -> list[dict]:
    """Up to ``count`` messages of the queue a stack output names, each with its parsed "body"; ``take`` deletes
    them (False leaves them for a re-drive to find)."""
    sqs, url, found = twin.client("sqs"), twin.outputs[queue_output], []
    deadline = time.monotonic() + timeout
    while len(found) < count and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                           MessageAttributeNames=["All"],
                                           VisibilityTimeout=30 if take else 0).get("Messages", []):
            found.append({**message, "body": json.loads(message["Body"])})
            if take:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return found


def subscribe_to_dispatch(twin: Twin, name: str):
    """A dispatch system's view: a queue that a rule fills with every event of the stack's source on the default bus.

    Returns a reader: each call takes what has arrived and returns every event received so far (parsed).
    """
    sqs, events = twin.client("sqs"), twin.client("events")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=name, EventPattern=json.dumps({"source": [twin.outputs["ClassifiedEventSource"]]}))
    events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": arn}])
    received: list[dict] = []

    def read() -> list[dict]:
        while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
            for message in batch:
                received.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return received
    return read
