"""Fault injection (local/faults.py): the state machine's own DynamoDB, SQS and EventBridge calls fail, and
each upload still ends in exactly one true record - or, when the record cannot be written at all, in the
record dead-letter queue with an alarm's worth of evidence."""

from __future__ import annotations

import contextlib
import json
import dataclasses
import os
import signal

import pytest

from local.faults import Fault, FaultError
from twin_helpers import queue_messages, sample, wait_for, wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


def upload(twin, key: str, photo) -> None:
    twin.client("s3").put_object(Bucket=twin.outputs["IntakeBucketName"], Key=key, Body=photo.read_bytes())


def finished(twin, record: dict) -> dict:
    """The execution that wrote ``record``, once it has ended: its dispatch or review message comes after the record."""
    sfn = twin.client("stepfunctions")
    return wait_until(lambda: (d := sfn.describe_execution(executionArn=record["execution_arn"]))["status"] != "RUNNING"
                      and d)


def test_a_throttled_record_write_is_retried_and_the_record_is_true(twin):
    twin.faults.add(Fault.parse("dynamodb:PutItem:2"))
    before = twin.faults.injected.get("dynamodb:PutItem", 0)
    upload(twin, "faults/throttled.png", sample("bicycle", 2))
    record = wait_for(twin, {"faults/throttled.png"})["faults/throttled.png"]
    assert record["outcome"] == "classified" and record["label"] == "bicycle"
    assert twin.faults.injected["dynamodb:PutItem"] - before == 2 and twin.faults.remaining() == 0


def test_a_record_that_cannot_be_written_lands_in_the_dead_letter_queue(twin):
    twin.faults.add(Fault.parse("dynamodb:PutItem:4"))  # the first try and all 3 retries
    upload(twin, "faults/unwritable.png", sample("bicycle", 3))
    messages = queue_messages(twin, "RecordDeadLetterQueueUrl", 1)
    assert messages, "nothing reached the record dead-letter queue"
    body = messages[0]["body"]
    assert body["error"]["Error"] == "DynamoDB.ProvisionedThroughputExceededException"
    assert body["execution_input"]["detail"]["object"]["key"] == "faults/unwritable.png"
    assert twin.faults.remaining() == 0


def test_a_failed_review_message_is_retried(twin):
    twin.faults.add(Fault.parse("sqs:SendMessage:2"))
    upload(twin, "faults/unsure.png", sample("bicycle", 0))  # 0.85: below the threshold
    record = wait_for(twin, {"faults/unsure.png"})["faults/unsure.png"]
    assert record["outcome"] == "needs_review"
    assert json.loads(finished(twin, record)["output"])["review_message_id"]  # sent on the third try, after the record
    assert twin.faults.remaining() == 0


def test_a_dispatch_entry_the_bus_refused_is_retried(twin):
    twin.faults.add(Fault.parse("events:PutEvents:1:partial"))
    upload(twin, "faults/dispatch.png", sample("motorcycle", 2))
    record = wait_for(twin, {"faults/dispatch.png"})["faults/dispatch.png"]
    assert finished(twin, record)["status"] == "SUCCEEDED"
    assert wait_for(twin, {"faults/dispatch.png"})["faults/dispatch.png"]["outcome"] == "classified"
    assert twin.faults.remaining() == 0


def test_a_dispatch_that_never_goes_out_leaves_a_failed_record(twin):
    """The record is written before the event; an event the bus refuses on every try rewrites it as failed."""
    twin.faults.add(Fault.parse("events:PutEvents:4:partial"))  # the first try and all 3 retries
    upload(twin, "faults/undispatched.png", sample("motorcycle", 2))
    first = wait_for(twin, {"faults/undispatched.png"})["faults/undispatched.png"]
    assert finished(twin, first)["status"] == "FAILED"
    record = wait_for(twin, {"faults/undispatched.png"})["faults/undispatched.png"]
    assert record["outcome"] == "failed" and record["execution_arn"] == first["execution_arn"]
    assert record["reason"] == "EventBridge.FailedEntry" and twin.faults.remaining() == 0
    assert json.loads(record["upload"])["sequencer"] == record["sequencer"]  # a re-drive may replace it


@contextlib.contextmanager
def stuck_past_its_timeout(twin, function: str):
    """The function's warm workers stop answering (SIGSTOP), as a function stuck past its (shortened, 0.5 s)
    Timeout does; the runtime kills each at its deadline and starts a fresh one for the next invocation."""
    pool = twin.function_pool(function)
    configured = pool.function
    pool.function = dataclasses.replace(configured, timeout_s=0.5)
    stuck = pool.pids()
    for pid in stuck:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        pool.function = configured
        for pid in stuck:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def test_a_function_that_times_out_is_recorded_as_function_timeout(twin):
    with stuck_past_its_timeout(twin, "FilterInferenceFunction"):
        upload(twin, "faults/timeout.png", sample("motorcycle", 3))
        record = wait_for(twin, {"faults/timeout.png"})["faults/timeout.png"]
    assert record["outcome"] == "failed" and record["reason"] == "FunctionTimeout"
    assert "timed out" in record["error_detail"]


def test_an_upload_serialize_could_not_answer_for_is_recorded_under_its_literal_key(twin):
    """Only serialize decodes EventBridge's URL-encoded key; when it times out, the state machine asks it again
    for the key alone (a fresh worker answers), so the failed record names the key as uploaded."""
    key = "faults/my bike+1 (ça) 100%.png"
    with stuck_past_its_timeout(twin, "SerializeImageFunction"):
        upload(twin, key, sample("bicycle", 1))
        record = wait_for(twin, {key})[key]
    assert record["outcome"] == "failed" and record["reason"] == "FunctionTimeout"
    assert [r["key"] for r in twin.results() if r["key"].startswith("faults/my")] == [key]  # no encoded twin


@pytest.mark.parametrize("text", ["dynamodb:GetItem:1", "events:PutEvents:1", "sqs:SendMessage:zero",
                                  "sqs:SendMessage:0", "dynamodb:PutItem"])
def test_faults_the_twin_cannot_inject_are_refused_in_one_line(text):
    with pytest.raises(FaultError, match="--fault"):
        Fault.parse(text)
