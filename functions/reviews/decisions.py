"""A reviewer's decision on a waiting image: written once, then published, kept as ground truth, counted.

The record is the commit point. One conditional UpdateItem accepts the decision only while the record is
still the one the message names (same execution, so not re-uploaded since) and undecided; of two reviewers
deciding at once exactly one wins and the other is told who did. The winner then runs the effects - the
dispatch event, the ground-truth manifest line, the metrics - marks the record `effects_done_at`, and
deletes the queue message last. An invocation that dies in between leaves its message: whoever receives it
after EFFECTS_GRACE_SECONDS takes the unfinished effects over (a conditional claim, so only one does) and
runs them again; each is idempotent but the event, which a consumer may then see twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from ground_truth import GroundTruth, Label
from waiting import WaitingImage, visible

EFFECTS_GRACE_SECONDS = 60.0  # a decision's effects take well under a second; after this, its invocation is gone
UNUSABLE = "unusable"  # "not a vehicle / unusable": the photo cannot route anyone
EVENT_SOURCE = "scones.vehicle-classifier"  # template.yaml: ClassifiedEventSource
METRICS_NAMESPACE = "SconesUnlimited/VehicleClassifier"
SERVICE = "vehicle-classifier"


class DecisionError(Exception):
    """A decision that cannot be taken; the message says why, for the reviewer."""

    status = 409


class UnknownLabel(DecisionError):
    status = 400


class AlreadyDecided(DecisionError):
    """Another reviewer decided this image first."""


class Superseded(DecisionError):
    """The image was uploaded again (or its record replaced) since it was sent to review."""


class NotRecordedYet(DecisionError):
    """The review message arrived before the record was written: try again in a moment."""

    status = 503


@dataclass
class Decision:
    image: WaitingImage
    human_label: str
    reviewer: str
    decided_at: str
    waited_seconds: float
    outcome: str  # reviewed | rejected | classified (an audited image keeps its outcome)
    agrees: bool  # the person chose the model's label

    @property
    def audit(self) -> bool:
        return self.image.reason == "audit"


class State:
    """Where a review message's image stands, read from its record."""
    WAITING = "waiting"  # undecided, and still the upload the message names
    NOT_RECORDED = "not recorded"  # the message arrived before the record
    SETTLED = "settled"  # decided with every effect done, or uploaded again since: the message can go
    IN_PROGRESS = "in progress"  # decided a moment ago; the deciding invocation is running the effects
    ABANDONED = "abandoned"  # decided, effects never finished, the deciding invocation is gone


_DESERIALIZER = TypeDeserializer()


def decode_item(item: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as plain values (numbers as Decimal)."""
    return {name: _DESERIALIZER.deserialize(value) for name, value in item.items()}


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Reviewer:
    """Takes decisions against one stack's table, event bus and ground-truth bucket, and counts them (EMF)."""

    def __init__(self, dynamodb, events, table: str, ground_truth: GroundTruth):
        self._dynamodb, self._events = dynamodb, events
        self._table, self._ground_truth = table, ground_truth

    def decide(self, image: WaitingImage, human_label: str, reviewer: str, now: datetime | None = None) -> Decision:
        classes = image.classes
        if human_label not in classes + [UNUSABLE]:
            raise UnknownLabel(f"label must be one of {', '.join(classes + [UNUSABLE])}, got {human_label!r}")
        now = now or utc_now()
        audit = image.reason == "audit"
        outcome = "classified" if audit else ("rejected" if human_label == UNUSABLE else "reviewed")
        decision = Decision(image, human_label, reviewer, iso(now), round(now.timestamp() - image.sent_at, 3),
                            outcome, human_label == image.label)
        values = {":arn": {"S": image.execution_arn}, ":waiting": {"S": "classified" if audit else "needs_review"},
                  ":outcome": {"S": outcome}, ":human": {"S": human_label}, ":reviewer": {"S": reviewer},
                  ":at": {"S": decision.decided_at}, ":waited": {"N": str(decision.waited_seconds)},
                  ":person": {"S": "person"}, ":why": {"S": image.reason}, ":agrees": {"BOOL": decision.agrees}}
        try:
            self._dynamodb.update_item(
                TableName=self._table, Key=self._key(image),
                ConditionExpression="execution_arn = :arn AND outcome = :waiting AND attribute_not_exists(decided_at)",
                UpdateExpression="SET outcome = :outcome, human_label = :human, reviewer = :reviewer, "
                                 "decided_at = :at, waited_seconds = :waited, decided_by = :person, "
                                 "review_reason = :why, agrees_with_model = :agrees, effects_claimed_at = :at",
                ExpressionAttributeValues=values)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raise self._refusal(image) from None
        self.finish(decision)
        return decision

    def _key(self, image: WaitingImage) -> dict[str, Any]:
        return {"bucket": {"S": image.bucket}, "key": {"S": image.key}}

    def record(self, image: WaitingImage) -> dict[str, Any] | None:
        raw = self._dynamodb.get_item(TableName=self._table, Key=self._key(image), ConsistentRead=True).get("Item")
        return decode_item(raw) if raw else None

    def _refusal(self, image: WaitingImage) -> DecisionError:
        record = self.record(image)
        if record is None:
            return NotRecordedYet("the image's record is not written yet: try again in a moment")
        if record.get("execution_arn") != image.execution_arn:
            return Superseded(f"{visible(image.key)} was uploaded again at {record.get('uploaded_at', '?')}: "
                              "this decision is refused; the new upload is classified on its own")
        if record.get("decided_at"):
            return AlreadyDecided(f"already decided by {visible(str(record.get('reviewer', 'someone')))} at "
                                  f"{record['decided_at']}: "
                                  f"{record.get('human_label')}")
        return Superseded(f"the record is {record.get('outcome')!r}, not waiting for review")

    def state(self, image: WaitingImage, now: datetime | None = None) -> str:
        record = self.record(image)
        if record is None:
            return State.NOT_RECORDED
        if record.get("execution_arn") != image.execution_arn:
            return State.SETTLED
        if not record.get("decided_at"):
            return State.WAITING if record.get("outcome") in ("needs_review", "classified") else State.SETTLED
        if record.get("effects_done_at"):
            return State.SETTLED
        claimed = datetime.fromisoformat(record.get("effects_claimed_at") or record["decided_at"])
        fresh = ((now or utc_now()) - claimed).total_seconds() < EFFECTS_GRACE_SECONDS
        return State.IN_PROGRESS if fresh else State.ABANDONED

    def take_over(self, image: WaitingImage, now: datetime | None = None) -> Decision | None:
        """Claim an abandoned decision's effects; None if another invocation claimed them first."""
        now = now or utc_now()
        stale = iso(now - timedelta(seconds=EFFECTS_GRACE_SECONDS))
        try:
            record = self._dynamodb.update_item(
                TableName=self._table, Key=self._key(image), ReturnValues="ALL_NEW",
                ConditionExpression="execution_arn = :arn AND attribute_exists(decided_at) AND "
                                    "attribute_not_exists(effects_done_at) AND effects_claimed_at < :stale",
                UpdateExpression="SET effects_claimed_at = :now",
                ExpressionAttributeValues={":arn": {"S": image.execution_arn}, ":stale": {"S": stale},
                                           ":now": {"S": iso(now)}})["Attributes"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        record = decode_item(record)
        return Decision(image, record["human_label"], record.get("reviewer", ""), record["decided_at"],
                        float(record.get("waited_seconds", 0)), record["outcome"],
                        bool(record.get("agrees_with_model")))

    def finish(self, decision: Decision) -> None:
        """The decision's effects, then the mark that they ran."""
        self._publish(decision)
        self._ground_truth.add(Label(decision.image, decision.human_label, decision.reviewer, decision.decided_at))
        self._count(decision)
        self._dynamodb.update_item(TableName=self._table, Key=self._key(decision.image),
                                   UpdateExpression="SET effects_done_at = :now",
                                   ExpressionAttributeValues={":now": {"S": iso(utc_now())}})

    def _publish(self, decision: Decision) -> None:
        # An audited image was dispatched on the model's label already: a person's agreement changes nothing,
        # a disagreement is published as a correction.
        if decision.audit and decision.agrees:
            return
        image = decision.image
        detail = {"bucket": image.bucket, "key": image.key, "label": decision.human_label,
                  "decided_by": "person", "reviewer": decision.reviewer, "review_reason": image.reason,
                  "model_label": image.label, "model_confidence": image.confidence,
                  "endpoint_name": image.endpoint_name, "execution_arn": image.execution_arn,
                  "correction": decision.audit}
        detail_type = "Photo Rejected" if decision.human_label == UNUSABLE else "Vehicle Classified"
        answer = self._events.put_events(Entries=[{"Source": EVENT_SOURCE, "DetailType": detail_type,
                                                   "Detail": json.dumps(detail), "EventBusName": "default"}])
        if answer.get("FailedEntryCount"):
            raise RuntimeError(f"EventBridge refused the dispatch event: {answer['Entries'][0].get('ErrorMessage')}")

    def _count(self, decision: Decision) -> None:
        data = [("ReviewDecisions", MetricUnit.Count, 1),
                ("DecisionLatency", MetricUnit.Seconds, decision.waited_seconds)]
        if decision.audit:
            data += [("AuditDecisions", MetricUnit.Count, 1),
                     ("AuditAgreements", MetricUnit.Count, 1 if decision.agrees else 0)]
        _emit(decision.image.endpoint_name, data)

    def count_backlog(self, endpoint_name: str, waiting: int) -> None:
        _emit(endpoint_name, [("ReviewBacklog", MetricUnit.Count, waiting)])


def _emit(endpoint_name: str, data: list[tuple[str, MetricUnit, float]]) -> None:
    """The metrics as one EMF document on stdout (CloudWatch reads them from the function's log; no API call).
    EphemeralMetrics: each call its own, so concurrent decisions never mix their dimensions."""
    metrics = EphemeralMetrics(namespace=METRICS_NAMESPACE, service=SERVICE)
    metrics.add_dimension(name="EndpointName", value=endpoint_name or "unknown")
    for name, unit, value in data:
        metrics.add_metric(name=name, unit=unit, value=value)
    metrics.flush_metrics()
