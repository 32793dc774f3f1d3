"""Re-drive what an outage left behind, so that it costs time, not images.

Three sources, each started again as a new execution of the stack's state machine:
- records that ended `failed` for a transient reason (the endpoint was down or throttled, Lambda or Step
  Functions had a passing fault): started with {s3_bucket, s3_key, uploaded_at, upload}, the upload the record
  describes, so the new execution may replace that record but never a newer upload's;
- the rule's dead-letter queue: upload events EventBridge could not deliver, started as they are;
- the record dead-letter queue: executions whose outcome could not be written, started with their input.
A message is deleted only after its execution has started.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from contracts.results import ResultRecord, scan_results

# Reasons that say nothing about the photo itself: trying again later can succeed.
TRANSIENT_REASONS = frozenset({
    "EndpointUnavailableError", "EndpointThrottledError", "ModelNotReadyError",
    "Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException", "Lambda.ClientExecutionTimeoutException", "Lambda.Unknown",
    "FunctionTimeout", "FunctionTimeoutOrOutOfMemory",  # a slow endpoint or a cold, busy account: try again
    "States.Timeout", "States.TaskFailed", "EventBridge.FailedEntry", "EventBridge.InternalException",
    "EventBridge.ThrottlingException", "SQS.AmazonSQSException", "SQS.SdkClientException",
    # not transient, but once the role's permission is fixed a re-run succeeds
    "ImageAccessDeniedError", "Lambda.AccessDeniedException",
})


@dataclass
class Redrive:
    failed_records: list[str] = field(default_factory=list)  # keys
    rule_dead_letters: int = 0
    record_dead_letters: int = 0

    @property
    def total(self) -> int:
        return len(self.failed_records) + self.rule_dead_letters + self.record_dead_letters


def redrive(target, *, dry_run: bool = False, log: Callable[[str], None] = lambda line: None) -> Redrive:
    sfn, sqs = target.client("stepfunctions"), target.client("sqs")
    machine = target.outputs["StateMachineArn"]
    done = Redrive()

    def start(execution_input: dict[str, Any]) -> None:
        if not dry_run:
            sfn.start_execution(stateMachineArn=machine, name=str(uuid.uuid4()), input=json.dumps(execution_input))

    for record in scan_results(target.client("dynamodb"), target.table):
        if record.outcome == "failed" and record.reason in TRANSIENT_REASONS:
            start(redrive_input(record))
            done.failed_records.append(record.key)
            log(f"failed ({record.reason}): s3://{record.bucket}/{record.key}")
    done.rule_dead_letters = _drain(sqs, target.outputs["RuleDeadLetterQueueUrl"], start, dry_run,
                                    lambda body: body)
    done.record_dead_letters = _drain(sqs, target.outputs["RecordDeadLetterQueueUrl"], start, dry_run,
                                      lambda body: body["execution_input"])
    return done


def redrive_input(record: ResultRecord) -> dict[str, Any]:
    """The state machine's input that runs a failed record's upload again."""
    execution_input = {"s3_bucket": record.bucket, "s3_key": record.key}
    if record.get("upload") and record.get("uploaded_at"):  # records written before uploads were named lack it
        execution_input |= {"uploaded_at": record["uploaded_at"], "upload": json.loads(record["upload"])}
    return execution_input


def _drain(sqs, queue_url: str, start: Callable[[dict], None], dry_run: bool,
           execution_input: Callable[[dict], dict]) -> int:
    """Start an execution for every message of ``queue_url``, deleting each once its execution has started."""
    count, seen = 0, set()
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                       VisibilityTimeout=30 if dry_run else 300).get("Messages", [])
        fresh = [m for m in messages if m["MessageId"] not in seen]
        if not fresh:
            return count
        for message in fresh:
            seen.add(message["MessageId"])
            start(execution_input(json.loads(message["Body"])))
            if not dry_run:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            count += 1
