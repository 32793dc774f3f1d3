"""Reviewers' decisions against emulated AWS: the record, the dispatch event, ground truth, metrics, the
queue message - and the races: two reviewers at once, a re-upload, a page that stops half-way."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from moto import mock_aws

from local.moto_strict import StrictMoto

from review import decisions
from review.decisions import EFFECTS_GRACE_SECONDS, AlreadyDecided, Reviewer, Superseded, UnknownLabel
from review.ground_truth import GroundTruth, read_manifest
from review.page import ReviewService
from review.requeue import requeue
from review.waiting import WaitingImages

REGION = "us-east-1"
TABLE, INTAKE, TRUTH = "results", "intake", "ground-truth"
CLASSES = "bicycle,motorcycle"


@pytest.fixture
def aws(aws_env):
    # Atomic conditional writes, as DynamoDB makes them (moto alone lets two racing writers both win).
    with mock_aws(), StrictMoto():
        yield Stack()


class Stack:
    """The resources the review page touches, with a dispatch consumer: a rule sending our events to a queue."""

    def __init__(self):
        self.s3, self.sqs, self.dynamodb = boto3.client("s3"), boto3.client("sqs"), boto3.client("dynamodb")
        self.events, self.cloudwatch = boto3.client("events"), boto3.client("cloudwatch")
        self.dynamodb.create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "bucket", "KeyType": "HASH"}, {"AttributeName": "key", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "bucket", "AttributeType": "S"},
                                  {"AttributeName": "key", "AttributeType": "S"}])
        self.s3.create_bucket(Bucket=INTAKE)
        self.s3.create_bucket(Bucket=TRUTH)
        self.queue = self.sqs.create_queue(QueueName="review", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
        self.dispatch = self.sqs.create_queue(QueueName="dispatch")["QueueUrl"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.dispatch, AttributeNames=["QueueArn"])["Attributes"]
        arn = attributes["QueueArn"]
        self.events.put_rule(Name="dispatch", EventPattern=json.dumps({"source": ["scones.vehicle-classifier"]}))
        self.events.put_targets(Rule="dispatch", Targets=[{"Id": "q", "Arn": arn}])

    def upload(self, key: str, *, label="bicycle", confidence=0.8, reason="below_threshold", execution="e1",
               image: bytes | None = b"\x89PNG fake bytes") -> str:
        """What the state machine leaves for an image sent to review: the object, its record, its message."""
        arn = f"arn:aws:states:{REGION}:123456789012:express:classifier:{execution}:{key}"
        if image is not None:
            self.s3.put_object(Bucket=INTAKE, Key=key, Body=image)
        other = "motorcycle" if label == "bicycle" else "bicycle"
        probabilities = {label: confidence, other: round(1 - confidence, 6)}
        self.dynamodb.put_item(TableName=TABLE, Item={
            "bucket": {"S": INTAKE}, "key": {"S": key}, "execution_arn": {"S": arn}, "endpoint_name": {"S": "ep"},
            "uploaded_at": {"S": "2026-12-01T10:00:00Z"}, "label": {"S": label},
            "confidence": {"N": str(confidence)}, "probabilities": {"S": json.dumps(probabilities)},
            "classes": {"S": CLASSES}, "threshold": {"N": "0.93"},
            "outcome": {"S": "classified" if reason == "audit" else "needs_review"},
            **({"audit": {"BOOL": True}} if reason == "audit" else {})})
        self.sqs.send_message(QueueUrl=self.queue, MessageBody=json.dumps({
            "bucket": INTAKE, "key": key, "label": label, "confidence": confidence, "probabilities": probabilities,
            "classes": CLASSES, "threshold": "0.93", "endpoint_name": "ep", "execution_arn": arn,
            "uploaded_at": "2026-12-01T10:00:00Z", "reason": reason}))
        return arn

    def page(self) -> ReviewService:
        waiting = WaitingImages(self.sqs, self.queue)
        reviewer = Reviewer(self.dynamodb, self.events, self.cloudwatch, TABLE, GroundTruth(self.s3, TRUTH))
        service = ReviewService(waiting, reviewer, self.s3, "test")
        service.refresh(force=True)
        return service

    def record(self, key: str) -> dict:
        from client.results import get_record
        return get_record(self.dynamodb, TABLE, INTAKE, key)

    def dispatched(self) -> list[dict]:
        events = []
        while batch := self.sqs.receive_message(QueueUrl=self.dispatch, MaxNumberOfMessages=10).get("Messages"):
            for message in batch:
                events.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.dispatch, ReceiptHandle=message["ReceiptHandle"])
        return events

    def messages_left(self) -> int:
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["All"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def metric_sum(self, name: str) -> float:
        now = datetime.now(timezone.utc)
        points = self.cloudwatch.get_metric_statistics(
            Namespace="SconesUnlimited/VehicleClassifier", MetricName=name, StartTime=now - timedelta(hours=1),
            EndTime=now + timedelta(minutes=5), Period=3600, Statistics=["Sum"],
            Dimensions=[{"Name": "EndpointName", "Value": "ep"}, {"Name": "service", "Value": "vehicle-classifier"}])
        return sum(p["Sum"] for p in points["Datapoints"])


def test_a_decision_writes_the_record_then_publishes_keeps_ground_truth_and_deletes_the_message(aws):
    arn = aws.upload("photos/a.png", label="bicycle", confidence=0.8)
    page = aws.page()
    [image] = page.waiting.images()

    decision = page.decide(image, "motorcycle", "ana")

    record = aws.record("photos/a.png")
    assert record["outcome"] == "reviewed" and record["human_label"] == "motorcycle"
    assert record["label"] == "bicycle" and record["confidence"] == 0.8  # the model's, kept
    assert record["reviewer"] == "ana" and record["decided_by"] == "person" and record["decided_at"]
    assert record["waited_seconds"] == decision.waited_seconds >= 0 and record["effects_done_at"]
    [event] = aws.dispatched()
    assert event["detail-type"] == "Vehicle Classified"
    assert event["detail"]["label"] == "motorcycle" and event["detail"]["decided_by"] == "person"
    assert event["detail"]["model_label"] == "bicycle" and event["detail"]["execution_arn"] == arn
    [line] = list(read_manifest(aws.s3, TRUTH))
    assert line["vehicle-class"] == 1 and line["vehicle-class-metadata"]["class-name"] == "motorcycle"
    assert line["vehicle-class-metadata"]["human-annotated"] == "yes"
    assert line["vehicle-class-metadata"]["type"] == "groundtruth/image-classification"
    bucket, copy = line["source-ref"].removeprefix("s3://").split("/", 1)
    assert aws.s3.get_object(Bucket=bucket, Key=copy)["Body"].read() == b"\x89PNG fake bytes"
    assert aws.messages_left() == 0 and page.waiting.images() == []
    assert aws.metric_sum("ReviewDecisions") == 1 and aws.metric_sum("AuditDecisions") == 0


def test_unusable_rejects_the_photo_and_tells_dispatch(aws):
    aws.upload("photos/blur.png")
    page = aws.page()
    page.decide(page.waiting.images()[0], "unusable", "ana")
    assert aws.record("photos/blur.png")["outcome"] == "rejected"
    assert [e["detail-type"] for e in aws.dispatched()] == ["Photo Rejected"]
    assert [line["vehicle-class-metadata"]["class-name"] for line in read_manifest(aws.s3, TRUTH)] == ["unusable"]


def test_an_unknown_label_is_refused_and_the_image_keeps_waiting(aws):
    aws.upload("photos/a.png")
    page = aws.page()
    with pytest.raises(UnknownLabel, match="bicycle, motorcycle, unusable"):
        page.decide(page.waiting.images()[0], "car", "ana")
    assert aws.record("photos/a.png")["outcome"] == "needs_review" and aws.messages_left() == 1


def test_audit_agreement_changes_no_dispatch_and_counts_towards_accuracy(aws):
    aws.upload("photos/ok.png", label="bicycle", confidence=0.99, reason="audit", execution="e1")
    aws.upload("photos/wrong.png", label="bicycle", confidence=0.97, reason="audit", execution="e2")
    page = aws.page()
    images = {image.key: image for image in page.waiting.images()}
    page.decide(images["photos/ok.png"], "bicycle", "ana")
    page.decide(images["photos/wrong.png"], "motorcycle", "ana")

    assert aws.record("photos/ok.png")["outcome"] == "classified"  # dispatched already; stays so
    assert aws.record("photos/ok.png")["agrees_with_model"] is True
    assert aws.record("photos/wrong.png")["agrees_with_model"] is False
    [correction] = aws.dispatched()
    assert correction["detail"]["key"] == "photos/wrong.png" and correction["detail"]["correction"] is True
    assert aws.metric_sum("AuditDecisions") == 2 and aws.metric_sum("AuditAgreements") == 1


def test_two_reviewers_at_once_exactly_one_decision_wins_and_the_other_is_told(aws):
    aws.upload("photos/a.png")
    first = aws.page()
    requeue(aws.dynamodb, aws.sqs, TABLE, aws.queue)  # a second copy of the message
    second = aws.page()
    # Each page holds one copy of the message: the same image on two screens.
    assert len(first.waiting.images()) == len(second.waiting.images()) == 1
    outcomes: dict[str, object] = {}
    start = threading.Barrier(2)

    def decide(name, page, label):
        start.wait()
        try:
            outcomes[name] = page.decide(page.waiting.images()[0], label, name)
        except Exception as exc:  # any exception: every outcome is asserted below
            outcomes[name] = exc

    threads = [threading.Thread(target=decide, args=("ana", first, "bicycle")),
               threading.Thread(target=decide, args=("ben", second, "motorcycle"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    lost = [name for name, o in outcomes.items() if isinstance(o, AlreadyDecided)]
    assert len(lost) == 1, outcomes
    winner = ({"ana", "ben"} - set(lost)).pop()
    assert f"already decided by {winner}" in str(outcomes[lost[0]])
    assert aws.record("photos/a.png")["reviewer"] == winner
    assert len(aws.dispatched()) == 1 and len(list(read_manifest(aws.s3, TRUTH))) == 1
    assert aws.metric_sum("ReviewDecisions") == 1
    assert first.waiting.images() == second.waiting.images() == []  # gone from both screens
    for page in (first, second):  # the loser's copy goes once the winner's effects are done
        page.refresh(force=True)
    assert aws.messages_left() == 0  # both copies deleted, neither lost nor counted twice


def test_a_decision_on_an_image_uploaded_again_since_is_refused(aws):
    aws.upload("photos/a.png", execution="old")
    page = aws.page()
    [stale] = page.waiting.images()
    new_arn = aws.upload("photos/a.png", execution="new", label="motorcycle", confidence=0.7)
    with pytest.raises(Superseded, match="uploaded again"):
        page.decide(stale, "bicycle", "ana")
    record = aws.record("photos/a.png")
    assert record["execution_arn"] == new_arn and record["outcome"] == "needs_review" and "decided_at" not in record
    assert aws.dispatched() == []
    page.refresh(force=True)  # the new upload's message waits on its own
    assert [i.execution_arn for i in page.waiting.images()] == [new_arn]


def test_an_image_deleted_before_review_can_be_decided_but_adds_no_ground_truth(aws):
    aws.upload("photos/gone.png", image=None)
    page = aws.page()
    page.decide(page.waiting.images()[0], "unusable", "ana")
    assert aws.record("photos/gone.png")["outcome"] == "rejected"
    assert list(read_manifest(aws.s3, TRUTH)) == [] and aws.messages_left() == 0


def test_a_page_that_stops_after_writing_the_record_leaves_the_effects_to_the_next_page(aws, monkeypatch):
    aws.upload("photos/a.png")
    page = aws.page()
    image = page.waiting.images()[0]
    monkeypatch.setattr(page.reviewer, "_publish", lambda decision: (_ for _ in ()).throw(RuntimeError("crash")))
    with pytest.raises(RuntimeError):
        page.decide(image, "bicycle", "ana")
    assert aws.record("photos/a.png")["decided_at"] and "effects_done_at" not in aws.record("photos/a.png")
    page.waiting.release()  # the page is gone; its message returns to the queue
    monkeypatch.undo()
    next_page = aws.page()
    assert next_page.waiting.images() == []  # hidden: the deciding page may still finish
    assert aws.dispatched() == [] and aws.messages_left() == 1

    later = datetime.now(timezone.utc) + timedelta(seconds=EFFECTS_GRACE_SECONDS + 1)
    monkeypatch.setattr(decisions, "utc_now", lambda: later)
    next_page.refresh(force=True)  # the grace is over: the decision is abandoned; this page takes it over
    assert next_page.waiting.images() == [] and aws.messages_left() == 0
    assert [e["detail"]["label"] for e in aws.dispatched()] == ["bicycle"]
    assert aws.record("photos/a.png")["effects_done_at"] and len(list(read_manifest(aws.s3, TRUTH))) == 1


def test_requeue_sends_every_undecided_record_again(aws):
    aws.upload("photos/a.png", execution="e1")
    aws.upload("photos/b.png", execution="e2", reason="audit", confidence=0.99)
    page = aws.page()
    page.decide(next(i for i in page.waiting.images() if i.key == "photos/b.png"), "bicycle", "ana")
    page.waiting.release()
    aws.sqs.purge_queue(QueueUrl=aws.queue)  # messages lost (expired, deleted by hand)

    assert requeue(aws.dynamodb, aws.sqs, TABLE, aws.queue) == 1
    assert [i.key for i in aws.page().waiting.images()] == ["photos/a.png"]


def test_holds_are_extended_before_they_run_out_and_released_on_stop(aws):
    aws.upload("photos/a.png")
    now = [1000.0]
    waiting = WaitingImages(aws.sqs, aws.queue, lease_seconds=300, clock=lambda: now[0])
    waiting.refresh()
    [image] = waiting.images()
    now[0] += 200  # past half the hold: extended
    waiting.refresh()
    assert image.leased_at == 1200.0
    assert WaitingImages(aws.sqs, aws.queue).elsewhere() == 1  # another page sees it held
    waiting.release()
    other = WaitingImages(aws.sqs, aws.queue)
    other.refresh()
    assert [i.key for i in other.images()] == ["photos/a.png"]
