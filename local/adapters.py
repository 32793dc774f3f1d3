"""Adapters for the two pieces moto 5 lacks, both on botocore's public event hooks.

1. Lambda code: moto runs Lambda functions only in Docker. ``LambdaInvokeBridge`` answers ``lambda:Invoke``
   calls (Step Functions' lambda:invoke integration inside moto makes them with boto3) by running the
   handler in a local worker process, before the request is sent.
2. EventBridge -> Step Functions: moto's rules deliver to SQS, logs and buses but not to state machines
   (a states target raises NotImplementedError inside moto and the event is dropped). ``StepFunctionsTargetRelay``
   rewrites a rule's Step Functions target, as it is put, into a relay SQS queue, then starts the state
   machine for every event that lands there, honouring the target's RetryPolicy, DeadLetterConfig and RoleArn
   (it starts executions with the role's temporary credentials when the twin gives it ``client_as``).

3. moto's S3 "Object Created" events carry the literal object key; S3 URL-encodes it ('a b.png' arrives
   as 'a+b.png'), so the relay encodes it the same way (and names the entity tag 'etag', as EventBridge
   does) before starting the state machine.

tests/integration/test_twin_adapters.py fails if a moto upgrade changes what these rely on.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import quote_plus, unquote

import boto3
import botocore.session
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from local.lambda_runtime import LambdaRuntime

log = logging.getLogger("twin.adapters")


class RawBody(io.BytesIO):
    """The raw HTTP body botocore reads a response from (``read`` for streams, ``stream`` for the rest)."""

    def stream(self, **_: Any):
        yield self.getvalue()


class LambdaInvokeBridge:
    """A ``before-send.lambda.Invoke`` handler: returning a response there skips the HTTP request."""

    def __init__(self, runtime: LambdaRuntime, authorize: Callable[[Any, str, str], str | None] | None = None):
        self.runtime = runtime
        # (request, action, resource) -> why IAM refuses it, or None: the check AWS makes before invoking
        self.authorize = authorize

    def install(self, session: botocore.session.Session | None = None) -> None:
        """Hook every client made from ``session`` (default: boto3's default session, which moto's Step
        Functions engine uses for its service integrations)."""
        self._events = (session or default_botocore_session()).get_component("event_emitter")
        self._events.register("before-send.lambda.Invoke", self, unique_id=self._hook_id)

    def uninstall(self) -> None:
        self._events.unregister("before-send.lambda.Invoke", unique_id=self._hook_id)

    @property
    def _hook_id(self) -> str:
        return f"local-twin-lambda-bridge-{id(self)}"

    def __call__(self, request, **_: Any) -> AWSResponse | None:
        function_name = request.url.split("/functions/", 1)[1].split("/", 1)[0]
        pool = self.runtime.find(unquote(function_name))
        if pool is None:
            return None  # not one of ours: let the request go to moto as usual
        refused = self.authorize and self.authorize(request, "lambda:InvokeFunction", pool.function.arn)
        if refused:
            headers = {"Content-Type": "application/json", "x-amzn-RequestId": str(uuid.uuid4()),
                       "x-amzn-ErrorType": "AccessDeniedException"}
            return AWSResponse(request.url, 403, headers,
                               RawBody(json.dumps({"Type": "User", "message": refused}).encode()))
        body = request.body or b"{}"
        event = json.loads(body.decode() if isinstance(body, bytes) else body or "{}")
        result = pool.invoke(event)
        headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST"}
        if result.function_error:
            headers["X-Amz-Function-Error"] = result.function_error
        payload = json.dumps(result.payload).encode()
        return AWSResponse(request.url, 200, headers, RawBody(payload))


def as_s3_sends_it(event: dict[str, Any]) -> dict[str, Any]:
    """moto puts the literal key in S3 events; S3 URL-encodes it (form encoding: space -> '+'). moto also
    spells the object's entity tag 'eTag' where EventBridge's S3 events say 'etag'."""
    detail = event.get("detail", {})
    obj = detail.get("object", {})
    if event.get("source") == "aws.s3" and isinstance(obj.get("key"), str):
        obj["key"] = quote_plus(obj["key"], safe="/")
        if "eTag" in obj:
            obj["etag"] = obj.pop("eTag")
    return event


def default_botocore_session() -> botocore.session.Session:
    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    return boto3.DEFAULT_SESSION._session


@dataclass
class _Route:
    rule: str
    queue_url: str
    state_machine_arn: str
    max_attempts: int
    max_age_s: int
    dead_letter_arn: str | None
    role_arn: str | None = None  # the target's role: EventBridge starts the execution with it


class StepFunctionsTargetRelay:
    """Delivers EventBridge rule matches to Step Functions through a relay queue moto can deliver to."""

    def __init__(self, sqs, stepfunctions, *, wait_seconds: int = 1,
                 client_as: Callable[[str], Any] | None = None):
        self._sqs = sqs
        self._sfn = stepfunctions
        # role ARN -> a Step Functions client acting with that role's credentials (None: ``stepfunctions``)
        self._client_as = client_as
        self._role_clients: dict[str, Any] = {}
        # Long polling: an empty queue answers as soon as a message arrives, or after this many seconds.
        self._wait_seconds = wait_seconds
        self.routes: list[_Route] = []
        self.started: list[dict[str, str]] = []  # {"execution_arn", "rule", "event_id"}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Any] = []

    def install(self, events_client) -> None:
        events_client.meta.events.register("before-parameter-build.events.PutTargets", self._rewrite_targets,
                                           unique_id="local-twin-sfn-relay")

    def on_started(self, listener) -> None:
        self._listeners.append(listener)

    def _rewrite_targets(self, params: dict[str, Any], **_: Any) -> None:
        for target in params.get("Targets", []):
            if ":states:" not in target["Arn"] or ":stateMachine:" not in target["Arn"]:
                continue
            queue_name = f"twin-relay-{params['Rule']}"[:80]
            queue_url = self._sqs.create_queue(QueueName=queue_name)["QueueUrl"]
            attributes = self._sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
            queue_arn = attributes["QueueArn"]
            retry = target.get("RetryPolicy", {})
            self.routes.append(_Route(
                rule=params["Rule"], queue_url=queue_url, state_machine_arn=target["Arn"],
                max_attempts=1 + int(retry.get("MaximumRetryAttempts", 185)),
                max_age_s=int(retry.get("MaximumEventAgeInSeconds", 86400)),
                dead_letter_arn=target.get("DeadLetterConfig", {}).get("Arn"), role_arn=target.get("RoleArn")))
            log.info("rule %s: Step Functions target %s relayed through SQS %s",
                     params["Rule"], target["Arn"], queue_name)
            # moto delivers the (input-transformed) event to the queue; the relay does the rest.
            target["Arn"] = queue_arn
            for key in ("RoleArn", "RetryPolicy", "DeadLetterConfig"):
                target.pop(key, None)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="twin-sfn-relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            for route in self.routes:
                self.relay_once(route, self._wait_seconds)

    def relay_once(self, route: _Route, wait_seconds: int = 0) -> int:
        try:
            messages = self._sqs.receive_message(QueueUrl=route.queue_url, MaxNumberOfMessages=10,
                                                 WaitTimeSeconds=wait_seconds,
                                                 AttributeNames=["SentTimestamp"]).get("Messages", [])
        except Exception as exc:  # the emulator is shutting down or restarting
            log.debug("relay poll failed: %s", exc)
            return 0
        for message in messages:
            self._deliver(route, message)
            self._sqs.delete_message(QueueUrl=route.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    def _starter(self, route: _Route):
        if not (self._client_as and route.role_arn):
            return self._sfn
        if route.role_arn not in self._role_clients:
            self._role_clients[route.role_arn] = self._client_as(route.role_arn)
        return self._role_clients[route.role_arn]

    def _deliver(self, route: _Route, message: dict[str, Any]) -> None:
        sent = int(message["Attributes"]["SentTimestamp"]) / 1000
        event = as_s3_sends_it(json.loads(message["Body"]))
        body = json.dumps(event)
        error: Exception | None = None
        for attempt in range(route.max_attempts):
            if time.time() - sent > route.max_age_s:
                break
            try:
                # EventBridge leaves the name to Step Functions, which makes a UUID; moto does not, so we do.
                arn = self._starter(route).start_execution(stateMachineArn=route.state_machine_arn,
                                                           name=str(uuid.uuid4()), input=body)["executionArn"]
                record = {"execution_arn": arn, "rule": route.rule, "event_id": str(event.get("id", ""))}
                self.started.append(record)
                for listener in self._listeners:
                    listener(record, event)
                return
            except ClientError as exc:
                error = exc
                if exc.response.get("Error", {}).get("Code") in ("AccessDeniedException", "AccessDenied"):
                    break  # EventBridge does not retry a refused permission: straight to the dead-letter queue
                time.sleep(min(0.1 * 2 ** attempt, 2))
        log.error("rule %s: could not start %s (%s); event sent to the dead-letter queue", route.rule,
                  route.state_machine_arn, error)
        if route.dead_letter_arn:
            name = route.dead_letter_arn.rsplit(":", 1)[1]
            url = self._sqs.get_queue_url(QueueName=name)["QueueUrl"]
            self._sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes={
                "RULE_ARN": {"DataType": "String", "StringValue": route.rule},
                "TARGET_ARN": {"DataType": "String", "StringValue": route.state_machine_arn},
                "ERROR_MESSAGE": {"DataType": "String",
                                  "StringValue": str(error or "maximum event age exceeded")[:1000]},
            })
