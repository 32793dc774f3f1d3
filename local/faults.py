"""Fault injection for the twin: make the state machine's own service calls fail, N times.

    python -m local --fault dynamodb:PutItem:3          # the next 3 PutItem calls answer a throttling error
    python -m local --fault sqs:SendMessage:2           # the next 2 SendMessage calls fail (HTTP 500)
    python -m local --fault events:PutEvents:1:partial  # the next PutEvents succeeds but its entry fails

The faults hit what the Step Functions engine calls (its record, review-queue and dispatch steps), not the
clients of a user or a test: they are answered on botocore's public ``before-send`` hook of the session
moto's engine makes its clients from (as the Lambda bridge in local/adapters.py is), before any request
leaves, so moto never sees them. The state machine then meets them as it would on AWS: DynamoDB's error
code as ``DynamoDB.<code>``, SQS's as ``SQS.AmazonSQSException``, a PutEvents entry that failed as
``EventBridge.FailedEntry``. A whole PutEvents call that fails is not offered: moto's engine reports it as
``States.Runtime``, which AWS would not, so a test of it would test moto.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import botocore.session
from botocore.awsrequest import AWSResponse

from local.adapters import RawBody, default_botocore_session

# (service, operation) -> what a full failure answers: status, error code, protocol's content type
FULL_FAILURES = {
    ("dynamodb", "PutItem"): (400, "ProvisionedThroughputExceededException", "application/x-amz-json-1.0"),
    ("sqs", "SendMessage"): (500, "InternalError", "application/x-amz-json-1.0"),
}
PARTIAL_FAILURES = {("events", "PutEvents")}
# botocore names its events after the service id, which for EventBridge is not the client's name.
EVENT_SERVICE = {"dynamodb": "dynamodb", "sqs": "sqs", "events": "eventbridge"}


class FaultError(ValueError):
    """A fault description the twin cannot inject."""


@dataclass
class Fault:
    service: str
    operation: str
    times: int
    partial: bool = False

    @classmethod
    def parse(cls, text: str) -> "Fault":
        parts = text.split(":")
        if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] != "partial"):
            raise FaultError(f"--fault takes service:Operation:times[:partial], got {text!r}")
        try:
            times = int(parts[2])
        except ValueError:
            raise FaultError(f"--fault {text!r}: times must be a whole number") from None
        fault = cls(parts[0].lower(), parts[1], times, len(parts) == 4)
        known = PARTIAL_FAILURES if fault.partial else FULL_FAILURES
        if (fault.service, fault.operation) not in known or times < 1:
            choices = [f"{s}:{o}:N" for s, o in FULL_FAILURES] + [f"{s}:{o}:N:partial" for s, o in PARTIAL_FAILURES]
            raise FaultError(f"--fault {text!r}: the twin injects {', '.join(choices)} (N >= 1)")
        return fault


class FaultInjector:
    """``before-send`` handlers answering the next calls of an operation with a failure."""

    def __init__(self):
        self._pending: list[Fault] = []
        self._lock = threading.Lock()
        self.injected: dict[str, int] = {}  # "service:Operation" -> failures answered

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._pending.append(Fault(fault.service, fault.operation, fault.times, fault.partial))

    def remaining(self) -> int:
        with self._lock:
            return sum(f.times for f in self._pending)

    def install(self, session: botocore.session.Session | None = None) -> None:
        self._events = (session or default_botocore_session()).get_component("event_emitter")
        for service, operation in [*FULL_FAILURES, *PARTIAL_FAILURES]:
            self._events.register(f"before-send.{EVENT_SERVICE[service]}.{operation}", self,
                                  unique_id=self._hook_id(service, operation))

    def uninstall(self) -> None:
        for service, operation in [*FULL_FAILURES, *PARTIAL_FAILURES]:
            self._events.unregister(f"before-send.{EVENT_SERVICE[service]}.{operation}",
                                    unique_id=self._hook_id(service, operation))

    def _hook_id(self, service: str, operation: str) -> str:
        return f"local-twin-faults-{service}-{operation}-{id(self)}"

    def __call__(self, request, event_name: str, **_: Any) -> AWSResponse | None:
        _, event_service, operation = event_name.split(".")
        service = next(name for name, hooked in EVENT_SERVICE.items() if hooked == event_service)
        with self._lock:
            fault = next((f for f in self._pending if (f.service, f.operation) == (service, operation)), None)
            if fault is None:
                return None  # no fault pending: the call goes to moto as usual
            fault.times -= 1
            if fault.times == 0:
                self._pending.remove(fault)
            key = f"{service}:{operation}"
            self.injected[key] = self.injected.get(key, 0) + 1
        if fault.partial:
            body = {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure",
                                                         "ErrorMessage": "fault injected by the twin"}]}
            return AWSResponse(request.url, 200, {"Content-Type": "application/x-amz-json-1.1"},
                               RawBody(json.dumps(body).encode()))
        status, code, content_type = FULL_FAILURES[(service, operation)]
        body = {"__type": code, "message": f"fault injected by the twin ({code})"}
        return AWSResponse(request.url, status, {"Content-Type": content_type, "x-amzn-RequestId": "injected"},
                           RawBody(json.dumps(body).encode()))
