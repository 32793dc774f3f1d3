"""Every sample in events/ goes through its handler, so `sam local invoke -e` samples stay valid.

The samples chain: serialize(serialize_eventbridge.json) gives classify.json's image,
classify(classify.json) with the endpoint's answer gives filter.json, filter accepts
filter.json and rejects filter_low_confidence.json.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws

REPO_ROOT = Path(__file__).resolve().parents[3]
EVENTS_DIR = REPO_ROOT / "events"
ENDPOINT = "vehicle-classifier"  # the twin's endpoint: `sam local invoke` runs these against `make local`
SAMPLES = REPO_ROOT / "local" / "sample_images"

# sample file -> the serialize/classify output its image comes from (serialize inputs only)
SERIALIZE_SAMPLES = {
    "serialize_eventbridge.json": "classify.json",
    "statemachine.json": "filter_low_confidence.json",
    "serialize_legacy.json": "classify.json",
}
OTHER_SAMPLES = {"classify.json", "filter.json", "filter_low_confidence.json"}
API_SAMPLES = {"photos_submit.json", "photos_status.json"}  # exercised in test_photos_handlers.py


def test_every_sample_event_is_exercised_here():
    on_disk = {path.name for path in EVENTS_DIR.glob("*.json")}
    assert on_disk == set(SERIALIZE_SAMPLES) | OTHER_SAMPLES | API_SAMPLES


def _target(event: dict) -> tuple[str, str]:
    if "detail" in event:
        return event["detail"]["bucket"]["name"], event["detail"]["object"]["key"]
    return event["s3_bucket"], event["s3_key"]


@pytest.mark.parametrize("sample, image_source", sorted(SERIALIZE_SAMPLES.items()))
def test_serialize_samples(load_function, load_event, lambda_context, sample, image_source):
    event = load_event(sample)
    expected = load_event(image_source)
    bucket, key = _target(event)
    image = base64.b64decode(expected["image_data"])
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key=key, Body=image)
        serialize = load_function("serialize", ENDPOINT_NAME=ENDPOINT)
        result = serialize.lambda_handler(event, lambda_context)
    assert (result["s3_bucket"], result["s3_key"]) == (bucket, key)
    # Re-serializing the sample's own (lossless) output reproduces it byte for byte.
    assert result["image_data"] == expected["image_data"]
    assert result["inferences"] == []
    if "detail" in event:
        assert result["uploaded_at"] == event["time"]


@pytest.mark.parametrize(
    "sample, source",
    [("classify.json", "bicycle/bicycle_s_000147.png"),
     ("filter_low_confidence.json", "motorcycle/minibike_s_000967.png")],
)
def test_samples_were_made_by_serialize_from_the_shipped_sample_images(
    load_function, load_event, lambda_context, sample, source
):
    # The `sam local invoke` walkthrough (docs/twin.md) uploads these files to the twin under the samples' keys.
    original = SAMPLES / source
    assert load_event(sample)["s3_key"] == "photos/" + original.name
    expected = load_event(sample)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=expected["s3_bucket"])
        s3.put_object(Bucket=expected["s3_bucket"], Key=expected["s3_key"], Body=original.read_bytes())
        serialize = load_function("serialize")
        state = {key: expected[key] for key in ("s3_bucket", "s3_key", "uploaded_at")}
        result = serialize.lambda_handler(state, lambda_context)
    # Everything serialize produces matches the sample (classify filled inferences later).
    assert {key: value for key, value in result.items() if key != "inferences"} == {
        key: expected[key] for key in result if key != "inferences"
    }


def test_classify_sample_gives_the_filter_sample(load_function, load_event, lambda_context):
    event = load_event("classify.json")
    expected = load_event("filter.json")
    classify = load_function("classify", ENDPOINT_NAME=ENDPOINT)
    answer = json.dumps(expected["inferences"]).encode()
    with Stubber(classify.runtime_client()) as stub:
        stub.add_response(
            "invoke_endpoint",
            {"Body": StreamingBody(io.BytesIO(answer), len(answer)), "InvokedProductionVariant": "AllTraffic"},
            expected_params={
                "EndpointName": ENDPOINT,
                "ContentType": event["content_type"],
                "Accept": "application/json",
                "Body": base64.b64decode(event["image_data"]),
            },
        )
        result = classify.lambda_handler(event, lambda_context)
    measured = result.pop("endpoint_latency_ms")
    assert isinstance(measured, float)
    expected.pop("endpoint_latency_ms")
    assert result == expected


def test_filter_sample_is_confident(load_function, load_event, lambda_context):
    event = load_event("filter.json")
    filter_fn = load_function("filter", THRESHOLD="0.93")
    assert filter_fn.lambda_handler(event, lambda_context) == {**event, "threshold": filter_fn.settings.threshold,
                                                               "audit": False}


def test_filter_low_confidence_sample_goes_to_review(load_function, load_event, lambda_context):
    filter_fn = load_function("filter", THRESHOLD="0.93")
    with pytest.raises(filter_fn.LowConfidenceError, match="motorcycle"):
        filter_fn.lambda_handler(load_event("filter_low_confidence.json"), lambda_context)
