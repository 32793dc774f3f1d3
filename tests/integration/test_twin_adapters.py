"""The twin's adapters against the real moto server: they fail if a moto upgrade changes what they rely on.

- moto's Step Functions engine must still call Lambda through boto3, so the before-send hook can answer;
- moto's EventBridge must still drop Step Functions targets (else the relay is obsolete) and still deliver
  S3 "Object Created" events to SQS targets, which the relay consumes.
"""

from __future__ import annotations

import json
import textwrap
import time

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from local.adapters import LambdaInvokeBridge, StepFunctionsTargetRelay
from local.lambda_runtime import LambdaRuntime, LocalFunction
from local.twin import free_port

ROLE = "arn:aws:iam::123456789012:role/test"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:plate-reader"


@pytest.fixture(scope="module")
def moto_url():
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws(moto_url, monkeypatch):
    monkeypatch.setenv("MOTO_PORT", moto_url.rsplit(":", 1)[1])  # where moto's engine sends its own calls
    requests.post(f"{moto_url}/moto-api/reset", timeout=5).raise_for_status()
    requests.post(f"{moto_url}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}},
                  timeout=5).raise_for_status()
    return lambda service: boto3.client(service, endpoint_url=moto_url, region_name="us-east-1",
                                        aws_access_key_id="k", aws_secret_access_key="s")


@pytest.fixture
def runtime(tmp_path, moto_url, monkeypatch):
    code = tmp_path / "plate_reader"
    code.mkdir()
    (code / "app.py").write_text(textwrap.dedent('''
        import os, sys, time

        class PlateNotReadableError(Exception):
            pass

        def handler(event, context):
            if "sleep" in event:
                time.sleep(event["sleep"])
            if "fail" in event:
                raise PlateNotReadableError("cannot read " + event["fail"])
            print("handled", event["n"])
            return {"doubled": event["n"] * 2, "mine": os.environ.get("ONLY_MINE"),
                    "parent": os.environ.get("PARENT_ONLY"), "name": context.function_name,
                    "time_left": context.get_remaining_time_in_millis(), "cwd": os.getcwd(), "path0": sys.path[0]}
    '''))
    monkeypatch.setenv("PARENT_ONLY", "must not leak into the function")
    output: list[str] = []
    rt = LambdaRuntime(base_env={"PATH": "/usr/bin:/bin", "AWS_ENDPOINT_URL": moto_url},
                       on_output=lambda name, line: output.append(line))
    rt.add(LocalFunction(name="plate-reader", arn=FUNCTION_ARN, code_dir=code, handler="app.handler",
                         environment={"ONLY_MINE": "yes"}, timeout_s=2, memory_mb=128))
    rt.output = output
    yield rt
    rt.close()


def run(sfn, definition: dict, payload: dict) -> dict:
    arn = sfn.create_state_machine(name=f"sm-{time.monotonic_ns()}", definition=json.dumps(definition),
                                   roleArn=ROLE)["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps(payload))["executionArn"]
    for _ in range(200):
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.05)
    raise AssertionError("execution did not finish")


INVOKE = {
    "StartAt": "Read",
    "States": {
        "Read": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                 "Parameters": {"FunctionName": FUNCTION_ARN, "Payload.$": "$"}, "OutputPath": "$.Payload",
                 "Catch": [{"ErrorEquals": ["PlateNotReadableError"], "ResultPath": "$.error", "Next": "Caught"}],
                 "End": True},
        "Caught": {"Type": "Pass", "End": True},
    },
}


def test_step_functions_lambda_tasks_run_local_handlers(aws, runtime, tmp_path):
    bridge = LambdaInvokeBridge(runtime)
    bridge.install()
    try:
        done = run(aws("stepfunctions"), INVOKE, {"n": 21})
    finally:
        bridge.uninstall()
    assert done["status"] == "SUCCEEDED", done
    output = json.loads(done["output"])
    assert output["doubled"] == 42
    assert output["name"] == "plate-reader"
    assert 0 < output["time_left"] <= 2000
    # Only the function's own environment and folder, as in Lambda.
    assert output["mine"] == "yes" and output["parent"] is None
    assert output["cwd"] == str(tmp_path / "plate_reader") == output["path0"]
    assert "handled 21" in runtime.output


def test_handler_exceptions_reach_the_state_machine_by_class_name(aws, runtime):
    bridge = LambdaInvokeBridge(runtime)
    bridge.install()
    try:
        done = run(aws("stepfunctions"), INVOKE, {"fail": "XY-123"})
    finally:
        bridge.uninstall()
    output = json.loads(done["output"])
    assert done["status"] == "SUCCEEDED"
    assert output["error"]["Error"] == "PlateNotReadableError"
    assert json.loads(output["error"]["Cause"])["errorMessage"] == "cannot read XY-123"


def test_without_the_bridge_moto_cannot_run_the_handler(aws, runtime):
    done = run(aws("stepfunctions"), INVOKE, {"n": 1})
    assert done["status"] == "FAILED"


def test_a_timed_out_invocation_is_reported_and_the_next_one_gets_a_fresh_worker(runtime):
    pool = runtime.find(FUNCTION_ARN)
    timed_out = pool.invoke({"sleep": 5, "n": 1})
    assert timed_out.function_error == "Unhandled"
    assert timed_out.payload["errorType"] == "Sandbox.Timedout"
    assert pool.invoke({"n": 2}).payload["doubled"] == 4


def _intake(aws) -> tuple[str, str]:
    s3 = aws("s3")
    s3.create_bucket(Bucket="intake")
    s3.put_bucket_notification_configuration(Bucket="intake",
                                             NotificationConfiguration={"EventBridgeConfiguration": {}})
    sm = aws("stepfunctions").create_state_machine(
        name="echo", roleArn=ROLE,
        definition=json.dumps({"StartAt": "Echo", "States": {"Echo": {"Type": "Pass", "End": True}}}))
    return "intake", sm["stateMachineArn"]


def _rule(events, targets: list[dict]) -> None:
    events.put_rule(Name="uploads", EventPattern=json.dumps(
        {"source": ["aws.s3"], "detail-type": ["Object Created"], "detail": {"bucket": {"name": ["intake"]}}}))
    events.put_targets(Rule="uploads", Targets=targets)


def test_moto_still_drops_events_for_step_functions_targets(aws):
    bucket, sm_arn = _intake(aws)
    _rule(aws("events"), [{"Id": "sfn", "Arn": sm_arn, "RoleArn": ROLE}])
    aws("s3").put_object(Bucket=bucket, Key="a.png", Body=b"x")
    time.sleep(0.5)
    # If this fails, moto delivers to state machines itself and StepFunctionsTargetRelay can go.
    assert aws("stepfunctions").list_executions(stateMachineArn=sm_arn)["executions"] == []


def test_relay_starts_the_state_machine_with_the_s3_event(aws):
    bucket, sm_arn = _intake(aws)
    events, sfn = aws("events"), aws("stepfunctions")
    relay = StepFunctionsTargetRelay(aws("sqs"), sfn)
    relay.install(events)
    _rule(events, [{"Id": "sfn", "Arn": sm_arn, "RoleArn": ROLE,
                    "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 60}}])
    relay.start()
    try:
        aws("s3").put_object(Bucket=bucket, Key="photos/a b+c.png", Body=b"x")
        for _ in range(100):
            if relay.started:
                break
            time.sleep(0.05)
    finally:
        relay.stop()
    assert len(relay.started) == 1
    described = sfn.describe_execution(executionArn=relay.started[0]["execution_arn"])
    event = json.loads(described["input"])
    assert event["detail-type"] == "Object Created"
    assert event["detail"]["bucket"]["name"] == "intake"
    # URL-encoded, as S3 sends it (moto's own event carries the literal key).
    assert event["detail"]["object"]["key"] == "photos/a+b%2Bc.png"


def test_relay_sends_undeliverable_events_to_the_dead_letter_queue(aws):
    bucket, _ = _intake(aws)
    events, sqs = aws("events"), aws("sqs")
    dlq_url = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    missing = "arn:aws:states:us-east-1:123456789012:stateMachine:deleted"
    relay = StepFunctionsTargetRelay(sqs, aws("stepfunctions"))
    relay.install(events)
    _rule(events, [{"Id": "sfn", "Arn": missing, "RoleArn": ROLE, "DeadLetterConfig": {"Arn": dlq_arn},
                    "RetryPolicy": {"MaximumRetryAttempts": 1, "MaximumEventAgeInSeconds": 60}}])
    aws("s3").put_object(Bucket=bucket, Key="b.png", Body=b"x")
    assert relay.relay_once(relay.routes[0]) == 1
    messages = sqs.receive_message(QueueUrl=dlq_url, MessageAttributeNames=["All"], WaitTimeSeconds=1)["Messages"]
    assert json.loads(messages[0]["Body"])["detail"]["object"]["key"] == "b.png"
    assert messages[0]["MessageAttributes"]["TARGET_ARN"]["StringValue"] == missing
    assert relay.started == []
