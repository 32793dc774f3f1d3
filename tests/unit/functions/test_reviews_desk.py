"""Reviewers' decisions through the review function's desk (functions/reviews), against emulated AWS: the
record, the dispatch event, ground truth, metrics, the queue message, the leases - and the races: two
reviewers at once, a re-upload, an invocation that stops half-way, a poisoned message."""

from __future__ import annotations

import importlib
import io
import json
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
from botocore.config import Config
import pytest
from moto import mock_aws
from PIL import Image

from local.moto_strict import StrictMoto
from review.requeue import requeue
from training.stage_data import read_manifest

REGION = "us-east-1"
TABLE, LEASES, INTAKE, TRUTH, PREVIEWS = "results", "leases", "intake", "ground-truth", "previews"
CLASSES = "bicycle,motorcycle"


@pytest.fixture
def fn(monkeypatch):
    """The review function's modules, imported as Lambda does: from its code directory."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[3] / "functions" / "reviews"))
    return {name: importlib.import_module(name) for name in ("decisions", "desk", "leases", "previews", "waiting",
                                                             "ground_truth")}


@pytest.fixture
def aws(aws_env, fn):
    # Atomic conditional writes, as DynamoDB makes them (moto alone lets two racing writers both win).
    with mock_aws(), StrictMoto():
        yield Stack(fn)


def png(side: int = 8) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (side, side), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


class Stack:
    """The resources the review function touches, with a dispatch consumer: a rule sending our events to a queue."""

    def __init__(self, fn):
        self.fn = fn
        self.s3, self.sqs, self.dynamodb = boto3.client("s3"), boto3.client("sqs"), boto3.client("dynamodb")
        self.events = boto3.client("events")
        self.dynamodb.create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "bucket", "KeyType": "HASH"}, {"AttributeName": "key", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "bucket", "AttributeType": "S"},
                                  {"AttributeName": "key", "AttributeType": "S"}])
        self.dynamodb.create_table(
            TableName=LEASES, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "reviewer", "KeyType": "HASH"}, {"AttributeName": "id", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "reviewer", "AttributeType": "S"},
                                  {"AttributeName": "id", "AttributeType": "S"}])
        for bucket in (INTAKE, TRUTH, PREVIEWS, "elsewhere"):
            self.s3.create_bucket(Bucket=bucket)
        self.queue = self.sqs.create_queue(QueueName="review", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
        self.dispatch = self.sqs.create_queue(QueueName="dispatch")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.dispatch,
                                            AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.events.put_rule(Name="dispatch", EventPattern=json.dumps({"source": ["scones.vehicle-classifier"]}))
        self.events.put_targets(Rule="dispatch", Targets=[{"Id": "q", "Arn": arn}])

    def upload(self, key: str, *, label="bicycle", confidence=0.8, reason="below_threshold", execution="e1",
               image: bytes | None = None, deleted: bool = False, bucket: str = INTAKE) -> str:
        """What the state machine leaves for an image sent to review: the object, its record, its message."""
        arn = f"arn:aws:states:{REGION}:123456789012:express:classifier:{execution}:{key}"
        if not deleted:
            self.s3.put_object(Bucket=bucket, Key=key, Body=image if image is not None else png())
        other = "motorcycle" if label == "bicycle" else "bicycle"
        probabilities = {label: confidence, other: round(1 - confidence, 6)}
        self.dynamodb.put_item(TableName=TABLE, Item={
            "bucket": {"S": bucket}, "key": {"S": key}, "execution_arn": {"S": arn}, "endpoint_name": {"S": "ep"},
            "uploaded_at": {"S": "2026-12-01T10:00:00Z"}, "label": {"S": label},
            "confidence": {"N": str(confidence)}, "probabilities": {"S": json.dumps(probabilities)},
            "classes": {"S": CLASSES}, "threshold": {"N": "0.93"},
            "outcome": {"S": "classified" if reason == "audit" else "needs_review"},
            **({"audit": {"BOOL": True}} if reason == "audit" else {})})
        self.sqs.send_message(QueueUrl=self.queue, MessageBody=json.dumps({
            "bucket": bucket, "key": key, "label": label, "confidence": confidence, "probabilities": probabilities,
            "classes": CLASSES, "threshold": "0.93", "endpoint_name": "ep", "execution_arn": arn,
            "uploaded_at": "2026-12-01T10:00:00Z", "reason": reason}))
        return arn

    def desk(self, clock=None):
        fn = self.fn
        reviewer = fn["decisions"].Reviewer(self.dynamodb, self.events, TABLE,
                                            fn["ground_truth"].GroundTruth(self.s3, TRUTH))
        leases = fn["leases"].Leases(self.sqs, self.dynamodb, self.queue, LEASES, 300,
                                     **({"clock": clock} if clock else {}))
        signing = boto3.client("s3", config=Config(signature_version="s3v4"))  # as the function signs
        previews = fn["previews"].Previews(signing, PREVIEWS, 300, 10 * 1024 * 1024)
        return fn["desk"].ReviewDesk(leases, reviewer, previews, INTAKE, **({"clock": clock} if clock else {}))

    def listed(self, desk, reviewer="ana"):
        return [item.lease.image for item in desk.list_for(reviewer)]

    def record(self, key: str) -> dict:
        from contracts.results import get_record
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

    def leases_of(self, reviewer: str) -> int:
        return self.dynamodb.query(TableName=LEASES, KeyConditionExpression="reviewer = :r",
                                   ExpressionAttributeValues={":r": {"S": reviewer}})["Count"]


def metric_sum(emitted: list[dict], name: str) -> float:
    """The sum of a metric's values in the EMF documents the decisions printed (as CloudWatch would add them)."""
    return sum(m["value"] for m in emitted
               if m["name"] == name and m["namespace"] == "SconesUnlimited/VehicleClassifier"
               and m["dimensions"] == {"EndpointName": "ep", "service": "vehicle-classifier"})


def test_a_decision_writes_the_record_then_publishes_keeps_ground_truth_and_deletes_the_message(aws, emitted_metrics):
    arn = aws.upload("photos/a.png", label="bicycle", confidence=0.8)
    desk = aws.desk()
    [item] = desk.list_for("ana")
    assert item.lease.image.key == "photos/a.png" and aws.leases_of("ana") == 1

    decision = desk.decide("ana", item.lease.image.id, "motorcycle")

    record = aws.record("photos/a.png")
    assert record["outcome"] == "reviewed" and record["human_label"] == "motorcycle"
    assert record["label"] == "bicycle" and record["confidence"] == 0.8  # the model's, kept
    assert record["reviewer"] == "ana" and record["decided_by"] == "person" and record["decided_at"]
    assert record["waited_seconds"] == decision.waited_seconds >= 0 and record["effects_done_at"]
    [event] = aws.dispatched()
    assert event["detail-type"] == "Vehicle Classified"
    assert event["detail"]["label"] == "motorcycle" and event["detail"]["decided_by"] == "person"
    assert event["detail"]["reviewer"] == "ana"
    assert event["detail"]["model_label"] == "bicycle" and event["detail"]["execution_arn"] == arn
    [line] = list(read_manifest(aws.s3, TRUTH, "manifest/"))
    assert line["vehicle-class"] == 1 and line["vehicle-class-metadata"]["class-name"] == "motorcycle"
    assert line["vehicle-class-metadata"]["human-annotated"] == "yes"
    assert line["vehicle-class-metadata"]["reviewer"] == "ana"
    assert line["vehicle-class-metadata"]["type"] == "groundtruth/image-classification"
    bucket, copy = line["source-ref"].removeprefix("s3://").split("/", 1)
    assert aws.s3.get_object(Bucket=bucket, Key=copy)["Body"].read() == png()
    assert aws.messages_left() == 0 and desk.list_for("ana") == [] and aws.leases_of("ana") == 0
    emitted = emitted_metrics()
    assert metric_sum(emitted, "ReviewDecisions") == 1 and metric_sum(emitted, "AuditDecisions") == 0
    assert metric_sum(emitted, "ReviewBacklog") == 0


def test_unusable_rejects_the_photo_and_tells_dispatch(aws):
    aws.upload("photos/blur.png")
    desk = aws.desk()
    desk.decide("ana", aws.listed(desk)[0].id, "unusable")
    assert aws.record("photos/blur.png")["outcome"] == "rejected"
    assert [e["detail-type"] for e in aws.dispatched()] == ["Photo Rejected"]
    assert [line["vehicle-class-metadata"]["class-name"]
            for line in read_manifest(aws.s3, TRUTH, "manifest/")] == ["unusable"]


def test_an_unknown_label_is_refused_and_the_image_keeps_waiting(aws, fn):
    aws.upload("photos/a.png")
    desk = aws.desk()
    with pytest.raises(fn["decisions"].UnknownLabel, match="bicycle, motorcycle, unusable"):
        desk.decide("ana", aws.listed(desk)[0].id, "car")
    assert aws.record("photos/a.png")["outcome"] == "needs_review" and aws.messages_left() == 1
    assert [i.key for i in aws.listed(desk)] == ["photos/a.png"]  # still on ana's list


def test_audit_agreement_changes_no_dispatch_and_counts_towards_accuracy(aws, emitted_metrics):
    aws.upload("photos/ok.png", label="bicycle", confidence=0.99, reason="audit", execution="e1")
    aws.upload("photos/wrong.png", label="bicycle", confidence=0.97, reason="audit", execution="e2")
    desk = aws.desk()
    images = {image.key: image for image in aws.listed(desk)}
    desk.decide("ana", images["photos/ok.png"].id, "bicycle")
    desk.decide("ana", images["photos/wrong.png"].id, "motorcycle")

    assert aws.record("photos/ok.png")["outcome"] == "classified"  # dispatched already; stays so
    assert aws.record("photos/ok.png")["agrees_with_model"] is True
    assert aws.record("photos/wrong.png")["agrees_with_model"] is False
    [correction] = aws.dispatched()
    assert correction["detail"]["key"] == "photos/wrong.png" and correction["detail"]["correction"] is True
    emitted = emitted_metrics()
    assert metric_sum(emitted, "AuditDecisions") == 2 and metric_sum(emitted, "AuditAgreements") == 1


def test_a_photo_is_leased_to_one_reviewer_at_a_time_and_comes_back_when_the_lease_runs_out(aws):
    aws.upload("photos/a.png")
    now = [time.time()]
    desk = aws.desk(clock=lambda: now[0])
    assert [i.key for i in aws.listed(desk, "ana")] == ["photos/a.png"]
    assert aws.listed(desk, "ben") == []  # leased to ana: not shown to ben
    assert [i.key for i in aws.listed(desk, "ana")] == ["photos/a.png"]  # ana's next listing finds it again
    now[0] += 200  # past half the lease: ana's listing extends it
    assert [i.key for i in aws.listed(desk, "ana")] == ["photos/a.png"]
    assert aws.listed(desk, "ben") == []
    # ana leaves it: her lease runs out, the message is visible again, and ben's listing leases it.
    _let_leases_run_out(aws)
    now[0] += 400
    assert [i.key for i in aws.listed(desk, "ben")] == ["photos/a.png"]
    assert aws.listed(desk, "ana") == [] and aws.leases_of("ana") == 0


def test_two_reviewers_at_once_exactly_one_decision_wins_and_the_other_is_told(aws, fn, monkeypatch, emitted_metrics):
    # The loser's copy waits this long if the winner's effects were still running when it lost (not a minute here).
    monkeypatch.setattr(fn["desk"], "IN_PROGRESS_RETRY_SECONDS", 0)
    aws.upload("photos/a.png")
    desk = aws.desk()
    [first] = aws.listed(desk, "ana")
    requeue(aws.dynamodb, aws.sqs, TABLE, aws.queue)  # a second copy of the message
    [second] = aws.listed(desk, "ben")
    assert first.id == second.id  # one photo on two screens
    outcomes: dict[str, object] = {}
    start = threading.Barrier(2)

    def decide(name, label):
        start.wait()
        try:
            outcomes[name] = desk.decide(name, first.id, label)
        except Exception as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=decide, args=("ana", "bicycle")),
               threading.Thread(target=decide, args=("ben", "motorcycle"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    lost = [name for name, o in outcomes.items() if isinstance(o, fn["decisions"].AlreadyDecided)]
    assert len(lost) == 1, outcomes
    winner = ({"ana", "ben"} - set(lost)).pop()
    assert f"already decided by {winner}" in str(outcomes[lost[0]]) and outcomes[lost[0]].status == 409
    assert aws.record("photos/a.png")["reviewer"] == winner
    assert len(aws.dispatched()) == 1 and len(list(read_manifest(aws.s3, TRUTH, "manifest/"))) == 1
    assert metric_sum(emitted_metrics(), "ReviewDecisions") == 1
    assert aws.listed(desk, "ana") == aws.listed(desk, "ben") == []  # gone from both lists
    assert aws.messages_left() == 0  # both copies deleted (the loser's by the listings), neither counted twice
    assert aws.leases_of("ana") == aws.leases_of("ben") == 0


def test_a_decision_on_an_image_uploaded_again_since_is_refused(aws, fn):
    aws.upload("photos/a.png", execution="old")
    desk = aws.desk()
    [stale] = aws.listed(desk)
    new_arn = aws.upload("photos/a.png", execution="new", label="motorcycle", confidence=0.7)
    with pytest.raises(fn["decisions"].Superseded, match="uploaded again"):
        desk.decide("ana", stale.id, "bicycle")
    record = aws.record("photos/a.png")
    assert record["execution_arn"] == new_arn and record["outcome"] == "needs_review" and "decided_at" not in record
    assert aws.dispatched() == []
    assert [i.execution_arn for i in aws.listed(desk)] == [new_arn]  # the new upload waits on its own


def test_a_photo_not_on_the_reviewers_list_cannot_be_decided(aws, fn):
    aws.upload("photos/a.png")
    desk = aws.desk()
    [image] = aws.listed(desk, "ana")
    with pytest.raises(fn["desk"].NotLeased) as refused:
        desk.decide("ben", image.id, "bicycle")  # ben never had it: he cannot decide it by its id
    assert refused.value.status == 409
    assert "decided_at" not in aws.record("photos/a.png")


def test_an_image_deleted_before_review_can_be_decided_but_adds_no_ground_truth(aws):
    aws.upload("photos/gone.png", deleted=True)
    desk = aws.desk()
    [item] = desk.list_for("ana")
    assert item.image_url is None and item.lease.preview == "deleted"
    desk.decide("ana", item.lease.image.id, "unusable")
    assert aws.record("photos/gone.png")["outcome"] == "rejected"
    assert list(read_manifest(aws.s3, TRUTH, "manifest/")) == [] and aws.messages_left() == 0


def test_an_invocation_that_stops_after_writing_the_record_leaves_the_effects_to_the_next_listing(aws, fn,
                                                                                                 monkeypatch):
    aws.upload("photos/a.png")
    desk = aws.desk()
    [image] = aws.listed(desk)
    monkeypatch.setattr(fn["decisions"].Reviewer, "_publish",
                        lambda self, decision: (_ for _ in ()).throw(RuntimeError("crash")))
    with pytest.raises(RuntimeError):
        desk.decide("ana", image.id, "bicycle")
    assert aws.record("photos/a.png")["decided_at"] and "effects_done_at" not in aws.record("photos/a.png")
    monkeypatch.undo()
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[3] / "functions" / "reviews"))
    # A listing that meets the message while the decision is young lets it come back after this (not 30 s here).
    monkeypatch.setattr(fn["desk"], "IN_PROGRESS_RETRY_SECONDS", 0)
    _let_leases_run_out(aws)  # the invocation is gone; its lease runs out and the message is visible again
    assert aws.listed(desk, "ben") == []  # not shown: the deciding invocation may still finish
    assert aws.dispatched() == [] and aws.messages_left() == 1

    later = datetime.now(timezone.utc) + timedelta(seconds=fn["decisions"].EFFECTS_GRACE_SECONDS + 1)
    monkeypatch.setattr(fn["decisions"], "utc_now", lambda: later)
    assert aws.listed(desk, "ben") == []  # the grace is over: the decision is abandoned; this listing finishes it
    assert aws.messages_left() == 0
    assert [e["detail"]["label"] for e in aws.dispatched()] == ["bicycle"]
    assert aws.record("photos/a.png")["effects_done_at"] and len(list(read_manifest(aws.s3, TRUTH, "manifest/"))) == 1


def _let_leases_run_out(aws) -> None:
    """What time does to every lease: its messages become visible again."""
    for item in aws.dynamodb.scan(TableName=LEASES)["Items"]:
        for receipt in item["receipts"]["L"]:
            aws.sqs.change_message_visibility(QueueUrl=aws.queue, ReceiptHandle=receipt["S"], VisibilityTimeout=0)


def test_requeue_sends_every_undecided_record_again(aws):
    aws.upload("photos/a.png", execution="e1")
    aws.upload("photos/b.png", execution="e2", reason="audit", confidence=0.99)
    desk = aws.desk()
    desk.decide("ana", next(i for i in aws.listed(desk) if i.key == "photos/b.png").id, "bicycle")
    aws.sqs.purge_queue(QueueUrl=aws.queue)  # messages lost (expired, deleted by hand)
    aws.dynamodb.delete_table(TableName=LEASES)
    aws.dynamodb.create_table(
        TableName=LEASES, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "reviewer", "KeyType": "HASH"}, {"AttributeName": "id", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "reviewer", "AttributeType": "S"},
                              {"AttributeName": "id", "AttributeType": "S"}])

    assert requeue(aws.dynamodb, aws.sqs, TABLE, aws.queue) == 1
    assert [i.key for i in aws.listed(desk)] == ["photos/a.png"]


def test_a_message_naming_another_bucket_is_refused_never_fetched_or_shown(aws):
    aws.upload("photos/secret.png", bucket="elsewhere")
    aws.upload("photos/a.png", execution="e2")
    desk = aws.desk()
    assert [i.key for i in aws.listed(desk)] == ["photos/a.png"]
    assert aws.s3.list_objects_v2(Bucket=PREVIEWS)["KeyCount"] == 1  # only the intake photo's preview
    assert aws.messages_left() == 2  # left for the dead-letter queue and its alarm, not deleted


def test_a_preview_is_made_once_bounded_and_shown_through_a_short_lived_url(aws, fn):
    big = io.BytesIO()
    Image.new("RGB", (4000, 3000), (10, 120, 200)).save(big, format="JPEG", quality=90)
    aws.upload("photos/phone.jpg", image=big.getvalue())
    desk = aws.desk()
    [item] = desk.list_for("ana")
    assert "X-Amz-Expires=300" in item.image_url and item.image_url.startswith(f"https://{PREVIEWS}.s3.")
    [preview] = aws.s3.list_objects_v2(Bucket=PREVIEWS)["Contents"]
    with Image.open(io.BytesIO(aws.s3.get_object(Bucket=PREVIEWS, Key=preview["Key"])["Body"].read())) as shown:
        assert max(shown.size) == fn["previews"].PREVIEW_SIDE and shown.format == "JPEG"
    made = []
    monkey = fn["previews"].Previews.make
    fn["previews"].Previews.make = lambda self, image: made.append(image) or monkey(self, image)
    try:
        desk.list_for("ana")
    finally:
        fn["previews"].Previews.make = monkey
    assert made == []  # the next listing reuses it


def test_a_listing_makes_a_few_previews_and_the_next_listing_the_rest(aws, fn):
    keys = [f"photos/{n}.png" for n in range(5)]
    for n, key in enumerate(keys):
        aws.upload(key, execution=f"e{n}")
    desk = aws.desk()
    first = desk.list_for("ana")
    made = fn["desk"].PREVIEWS_PER_LISTING
    assert [item.image_url is not None for item in first] == [True] * made + [False] * (len(keys) - made)
    assert {item.lease.preview for item in first[made:]} == {""}  # not made yet: the page says so
    assert all(item.image_url for item in desk.list_for("ana"))


def test_keys_and_names_are_shown_with_control_and_direction_characters_escaped(fn):
    visible = fn["waiting"].visible
    assert visible("photos/\u202egnp.exe") == r"photos/\u202egnp.exe"  # right-to-left override: shown, not obeyed
    assert visible("a\x1b[31mred\x07") == r"a\u001b[31mred\u0007"  # no terminal escapes in logs
    assert visible("a\u200fb\u2066c\nd") == r"a\u200fb\u2066c\u000ad"
    assert visible(r"typed \u202e by hand") == r"typed \\u202e by hand"  # an escape typed in a key stays apart
    assert visible("vélo 🚲/ok.png") == "vélo 🚲/ok.png"
