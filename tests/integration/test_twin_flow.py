"""The real template, ASL and handlers end to end on the twin, driven the way a user drives AWS: with boto3."""

from __future__ import annotations

import io
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote_plus

import pytest
from PIL import Image

from twin_helpers import SAMPLES, put, queue_messages, sample, subscribe_to_dispatch, wait_for, wait_until
from training.inference import DEFAULT_MODEL_DIR, Classifier
from training.threshold import of_model

THRESHOLD = of_model(DEFAULT_MODEL_DIR)  # the twin's ConfidenceThreshold comes from the shipped model's metadata


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.load()


def low_confidence_image(classifier: Classifier) -> bytes:
    """A half-and-half blend of a bicycle and a motorcycle: the model should not be sure of it."""
    for i in range(8):
        bike = Image.open(sample("bicycle", i)).convert("RGB")
        moto = Image.open(sample("motorcycle", i)).convert("RGB")
        buffer = io.BytesIO()
        Image.blend(bike, moto, 0.5).save(buffer, format="PNG")
        if max(classifier.predict(buffer.getvalue())) < THRESHOLD:
            return buffer.getvalue()
    raise AssertionError("no blended image below the threshold: the test needs a different ambiguous input")


def test_every_sample_image_gets_the_outcome_its_probabilities_call_for(twin, classifier):
    images = sorted(SAMPLES.rglob("*.png"))
    assert len(images) >= 20
    keys = {f"samples/{p.parent.name}/{p.name}": p for p in images}
    for key, path in keys.items():
        put(twin, key, path.read_bytes())
    records = wait_for(twin, set(keys))
    correct = 0
    for key, path in keys.items():
        record = records[key]
        expected = classifier.predict(path.read_bytes())
        # The 32x32 PNGs travel losslessly, so the endpoint saw exactly these pixels.
        assert record["probabilities"] == pytest.approx(dict(zip(classifier.classes, expected)), abs=1e-5)
        confidence = max(expected)
        assert record["confidence"] == pytest.approx(confidence, abs=1e-5)
        assert record["label"] == classifier.classes[expected.index(confidence)]
        assert record["outcome"] == ("classified" if confidence >= THRESHOLD else "needs_review")
        assert record["endpoint_name"] == twin.endpoint_name
        assert record["recorded_at"] >= record["uploaded_at"][:19]
        correct += record["label"] == path.parent.name
    assert correct >= 0.9 * len(keys), f"only {correct}/{len(keys)} sample images labelled right"


@pytest.mark.parametrize("key", ["odd names/a bike photo.png", "odd names/bike+moto+1.png",
                                 "odd names/vélo 自転車.png", "odd names/percent%2Bsign.png", "odd names/SHOUT.PNG"])
def test_awkward_keys_are_classified_under_their_exact_key(twin, key):
    put(twin, key, sample("bicycle").read_bytes())
    record = wait_for(twin, {key})[key]
    assert record["bucket"] == twin.outputs["IntakeBucketName"]
    assert record["outcome"] in ("classified", "needs_review")
    assert record["label"] == "bicycle"


@pytest.mark.parametrize("key, body, reason", [
    ("bad/not-an-image.png", b"this is a text file, not a photo", "UnsupportedImageTypeError"),
    ("bad/empty.jpg", b"", "EmptyImageError"),
    ("bad/truncated.png", None, "CorruptImageError"),
])
def test_unusable_uploads_end_as_failed_records_with_their_reason(twin, key, body, reason):
    if body is None:
        body = sample("motorcycle").read_bytes()[:200]
    put(twin, key, body)
    record = wait_for(twin, {key})[key]
    assert record["outcome"] == "failed"
    assert record["reason"] == reason
    assert "errorMessage" in json.loads(record["error_detail"])
    execution = twin.client("stepfunctions").describe_execution(executionArn=record["execution_arn"])
    assert (execution["status"], execution["error"]) == ("FAILED", "ImageFailed")


def test_low_confidence_goes_to_the_review_queue_and_is_recorded(twin, classifier):
    key = "ambiguous/blend.png"
    put(twin, key, low_confidence_image(classifier))
    record = wait_for(twin, {key})[key]
    assert record["outcome"] == "needs_review"
    assert record["reason"] == "LowConfidenceError"
    assert record["confidence"] < THRESHOLD
    sqs = twin.client("sqs")
    messages = []
    for _ in range(10):
        batch = sqs.receive_message(QueueUrl=twin.outputs["ReviewQueueUrl"], MaxNumberOfMessages=10,
                                    WaitTimeSeconds=1).get("Messages", [])
        messages += [json.loads(m["Body"]) for m in batch]
        if any(m["key"] == key for m in messages):
            break
    review = next(m for m in messages if m["key"] == key)
    assert review["bucket"] == twin.outputs["IntakeBucketName"]
    assert review["confidence"] == pytest.approx(record["confidence"])
    assert float(review["threshold"]) == THRESHOLD
    assert review["sequencer"] == record["sequencer"]


def confident_sample(classifier: Classifier, label: str):
    for path in sorted((SAMPLES / label).glob("*.png")):
        probabilities = classifier.predict(path.read_bytes())
        if max(probabilities) >= THRESHOLD and classifier.classes[probabilities.index(max(probabilities))] == label:
            return path
    raise AssertionError(f"no sample {label} the model is confident about")


def test_confident_results_are_published_for_dispatch(twin, classifier):
    # A dispatch system subscribes on the default bus to the source the stack outputs.
    dispatched = subscribe_to_dispatch(twin, "test-dispatch")
    key = "dispatch/motorcycle.png"
    put(twin, key, confident_sample(classifier, "motorcycle").read_bytes())
    record = wait_for(twin, {key})[key]
    assert record["outcome"] == "classified"
    bodies = wait_until(lambda: [b for b in dispatched() if b["detail"]["key"] == key])
    (detail,) = [b["detail"] for b in bodies]
    assert bodies[0]["detail-type"] == "Vehicle Classified"
    assert detail["label"] == record["label"] == "motorcycle"
    assert detail["sequencer"] == record["sequencer"]  # a consumer can tell a newer upload's event from an older's
    assert detail["confidence"] == pytest.approx(record["confidence"])
    execution = twin.client("stepfunctions").describe_execution(executionArn=record["execution_arn"])
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"]) == {
        "outcome": "classified", "s3_bucket": twin.outputs["IntakeBucketName"], "s3_key": key,
        "label": "motorcycle", "confidence": pytest.approx(record["confidence"]),
        "probabilities": pytest.approx(record["probabilities"])}


def test_folder_markers_start_nothing_and_other_files_are_recorded_with_their_reason(twin):
    put(twin, "other/", b"")  # what the S3 console's "Create folder" writes
    put(twin, "other/notes.txt", b"not for the classifier")
    put(twin, "other/after-notes.png", sample("bicycle").read_bytes())
    records = wait_for(twin, {"other/notes.txt", "other/after-notes.png"})
    assert (records["other/notes.txt"]["outcome"], records["other/notes.txt"]["reason"]) == (
        "failed", "UnsupportedImageTypeError")
    time.sleep(1)
    assert "other/" not in {i["key"] for i in twin.results()}


def test_the_original_direct_input_still_works(twin):
    # A key ending in "/", which the rule leaves out, so only the direct execution below classifies this object.
    key = "direct/bike/"
    put(twin, key, sample("bicycle").read_bytes())
    sfn = twin.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=twin.outputs["StateMachineArn"], input=json.dumps(
        {"s3_bucket": twin.outputs["IntakeBucketName"], "s3_key": key}))["executionArn"]
    record = wait_for(twin, {key})[key]
    assert record["label"] == "bicycle"
    assert record["execution_arn"] == arn


def test_throttled_twice_then_classified(twin):
    twin.endpoint.inject_fault("ThrottlingException", 2)
    key = "throttled/bike.png"
    put(twin, key, sample("bicycle").read_bytes())
    record = wait_for(twin, {key})[key]
    assert record["outcome"] in ("classified", "needs_review") and record["label"] == "bicycle"
    history = twin.client("stepfunctions").get_execution_history(executionArn=record["execution_arn"],
                                                                  maxResults=1000)["events"]
    failures = [e for e in history if e["type"] == "TaskFailed"
                and e["taskFailedEventDetails"]["error"] == "EndpointThrottledError"]
    assert len(failures) == 2


def test_one_hundred_uploads_at_once_all_get_a_record(twin):
    body = sample("motorcycle", 1).read_bytes()
    keys = {f"burst/{i:03d}.png" for i in range(100)}
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda k: put(twin, k, body), keys))
    records = wait_for(twin, keys, timeout=240)
    assert len(records) == 100
    assert {r["outcome"] for r in records.values()} <= {"classified", "needs_review"}


def test_functions_emit_metrics_and_the_endpoint_captures_data(twin):
    names = {m["Name"] for doc in twin.metrics for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"ImagesReceived", "Predictions", "Confidence", "EndpointLatency", "Classified", "LowConfidence",
            "ImagesRejected"} <= names
    predictions = [doc for doc in twin.metrics if "Predictions" in doc]
    assert all(doc["EndpointName"] == twin.endpoint_name and doc["Label"] in ("bicycle", "motorcycle")
               for doc in predictions)


def test_drift_report_reads_every_capture_record_the_twin_wrote(twin, tmp_path):
    from monitoring import build_report

    keys = {f"capture/{i}.png" for i in range(3)}
    for key in keys:
        put(twin, key, sample("bicycle", 2).read_bytes())
    wait_for(twin, keys)
    twin.endpoint.capture.flush()
    files = sorted(twin.settings.capture_dir.rglob("*.jsonl"))
    lines = sum(len(f.read_text().splitlines()) for f in files)
    assert any(len(f.read_text().splitlines()) > 1 for f in files), "expected multi-record capture files"
    result = build_report(twin.settings.capture_dir, results_table=twin.outputs["ResultsTableName"],
                          out=tmp_path, dynamodb_client=twin.client("dynamodb"))
    assert result.document["capture"]["records"] == lines
    assert result.document["results"]["items"] == len(twin.results())
    assert result.report_path.exists()


def test_an_outcome_the_table_refuses_goes_to_the_record_dead_letter_queue(twin):
    sfn = twin.client("stepfunctions")
    bucket = twin.outputs["IntakeBucketName"]
    # A direct input whose key is empty: DynamoDB refuses an empty key, so the outcome cannot be written.
    # A name, as AWS would make one: moto names every unnamed execution "None", so a second one would clash.
    arn = sfn.start_execution(stateMachineArn=twin.outputs["StateMachineArn"], name=str(uuid.uuid4()),
                              input=json.dumps({"s3_bucket": bucket, "s3_key": ""}))["executionArn"]
    # A damaged photo under a long non-Latin key: URL-encoded, its key is over DynamoDB's 1024-byte limit, but
    # serialize answers the fault with the literal key, so the failure is recorded under that.
    long_key = "photos/" + "自行车" * 40 + ".png"
    assert len(quote_plus(long_key, safe="/").encode()) > 1024 >= len(long_key.encode())
    twin.client("s3").put_object(Bucket=bucket, Key=long_key, Body=b"not an image")
    record = twin.wait_for_results({long_key}, 60)[long_key]
    assert (record["outcome"], record["reason"]) == ("failed", "UnsupportedImageTypeError")

    (letter,) = [m["body"] for m in queue_messages(twin, "RecordDeadLetterQueueUrl", 1)]
    # The execution's input as it was given (an object), so the upload can be re-driven from here.
    assert letter["execution_arn"] == arn and letter["execution_input"] == {"s3_bucket": bucket, "s3_key": ""}
    assert "DynamoDB" in letter["error"]["Error"]  # the table's refusal, kept for whoever re-drives it
    described = sfn.describe_execution(executionArn=letter["execution_arn"])
    assert described["status"] == "FAILED" and described["error"] == "RecordNotWritten"
