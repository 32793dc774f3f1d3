"""filter: threshold decisions, LowConfidenceError, configuration and input checks, metrics."""

from __future__ import annotations

import pytest


def classified(inferences, **extra) -> dict:
    return {
        "s3_bucket": "scones-intake-123456789012-us-east-1",
        "s3_key": "photos/bike.png",
        "image_data": "iVBORw0KGgo=",
        "inferences": inferences,
        "label": "bicycle",
        "endpoint_name": "scones-vehicle-classifier",
        **extra,
    }


@pytest.fixture
def filter_fn(load_function):
    return load_function("filter", THRESHOLD="0.93")


def test_confident_result_passes_through_with_the_threshold(filter_fn, lambda_context):
    event = classified([0.97, 0.03], trace_id="t-9")
    result = filter_fn.lambda_handler(event, lambda_context)
    assert result == {**event, "threshold": 0.93, "audit": False}


def test_exactly_at_threshold_passes(filter_fn, lambda_context):
    assert filter_fn.lambda_handler(classified([0.93, 0.07]), lambda_context)["threshold"] == 0.93


def test_below_threshold_raises_low_confidence_error(filter_fn, lambda_context):
    with pytest.raises(filter_fn.LowConfidenceError) as caught:
        filter_fn.lambda_handler(classified([0.9299, 0.0701]), lambda_context)
    # Step Functions catches by class name; the original raise("...") produced a TypeError.
    assert type(caught.value).__name__ == "LowConfidenceError"
    assert not isinstance(caught.value, TypeError)
    message = str(caught.value)
    assert "bicycle" in message and "0.9299" in message and "0.93" in message


def test_confidence_is_the_highest_class_whatever_its_position(filter_fn, lambda_context):
    assert filter_fn.lambda_handler(classified([0.01, 0.99], label="motorcycle"), lambda_context)["threshold"] == 0.93


@pytest.mark.parametrize("raw", [None, "", "  "])
def test_no_threshold_fails_at_cold_start(load_function, raw):
    # no default in the function: the threshold is the model's, set by the stack (ConfidenceThreshold)
    with pytest.raises(Exception) as caught:
        load_function("filter", **({} if raw is None else {"THRESHOLD": raw}))
    assert type(caught.value).__name__ == "ConfigurationError" and "THRESHOLD is not set" in str(caught.value)


def test_threshold_is_configurable(load_function, lambda_context):
    filter_fn = load_function("filter", THRESHOLD="0.5")
    assert filter_fn.lambda_handler(classified([0.55, 0.45]), lambda_context)["threshold"] == 0.5


def test_label_falls_back_to_the_class_index(filter_fn, lambda_context):
    event = classified([0.2, 0.8])
    del event["label"]
    with pytest.raises(filter_fn.LowConfidenceError, match="class 1"):
        filter_fn.lambda_handler(event, lambda_context)


@pytest.mark.parametrize("raw", ["-0.1", "1.5", "abc", "nan", "inf"])
def test_bad_threshold_fails_at_cold_start_naming_the_value(load_function, raw):
    with pytest.raises(Exception) as caught:
        load_function("filter", THRESHOLD=raw)
    assert type(caught.value).__name__ == "ConfigurationError"
    assert "THRESHOLD" in str(caught.value) and raw in str(caught.value)


@pytest.mark.parametrize(
    "event",
    [
        pytest.param([0.9, 0.1], id="not-an-object"),
        pytest.param({"s3_key": "k"}, id="no-inferences"),
        pytest.param(classified([]), id="empty"),
        pytest.param(classified("0.99"), id="string"),
        pytest.param(classified([0.9, "0.1"]), id="string-item"),
        pytest.param(classified([float("nan"), 0.1]), id="nan"),
        pytest.param(classified([float("inf")]), id="inf"),
        pytest.param(classified([True, False]), id="booleans"),
        pytest.param(classified(None), id="null"),
    ],
)
def test_bad_events_raise_invalid_event_error(filter_fn, lambda_context, event):
    with pytest.raises(filter_fn.InvalidEventError):
        filter_fn.lambda_handler(event, lambda_context)


# ---------- metrics ----------


def test_classified_metric(filter_fn, lambda_context, emitted_metrics):
    emitted_metrics()
    filter_fn.lambda_handler(classified([0.99, 0.01]), lambda_context)
    assert [(m["name"], m["unit"], m["value"], m["dimensions"]["EndpointName"]) for m in emitted_metrics()] == [
        ("Classified", "Count", 1, "scones-vehicle-classifier")
    ]


def test_low_confidence_metric_is_flushed_although_the_handler_raises(filter_fn, lambda_context, emitted_metrics):
    emitted_metrics()
    with pytest.raises(filter_fn.LowConfidenceError):
        filter_fn.lambda_handler(classified([0.6, 0.4], endpoint_name="blue-green-2"), lambda_context)
    assert [(m["name"], m["value"], m["dimensions"]["EndpointName"]) for m in emitted_metrics()] == [
        ("LowConfidence", 1, "blue-green-2")
    ]


def test_endpoint_dimension_falls_back_to_the_environment(load_function, lambda_context, emitted_metrics):
    filter_fn = load_function("filter", ENDPOINT_NAME="from-env", THRESHOLD="0.93")
    event = classified([0.99, 0.01])
    del event["endpoint_name"]
    emitted_metrics()
    filter_fn.lambda_handler(event, lambda_context)
    filter_fn.lambda_handler(classified([0.99, 0.01]), lambda_context)
    assert [m["dimensions"]["EndpointName"] for m in emitted_metrics()] == ["from-env", "scones-vehicle-classifier"]


def test_audit_sample_is_a_reproducible_share_of_keys(load_function, lambda_context):
    filter_fn = load_function("filter", THRESHOLD="0.5", AUDIT_RATE="0.1")
    keys = [f"drivers/{n}.jpg" for n in range(4000)]
    audited = [k for k in keys if filter_fn.lambda_handler(classified([0.9, 0.1], s3_key=k), lambda_context)["audit"]]
    assert 0.08 < len(audited) / len(keys) < 0.12
    # The same key is always in (or out of) the sample, whatever the image and confidence.
    again = [k for k in keys if filter_fn.lambda_handler(classified([0.2, 0.8], s3_key=k), lambda_context)["audit"]]
    assert again == audited


def test_audit_rate_bounds(load_function, lambda_context):
    always = load_function("filter", AUDIT_RATE="1", THRESHOLD="0.93")
    assert always.lambda_handler(classified([0.99, 0.01]), lambda_context)["audit"]
    never = load_function("filter", AUDIT_RATE="0", THRESHOLD="0.93")
    assert not never.lambda_handler(classified([0.99, 0.01]), lambda_context)["audit"]
    with pytest.raises(Exception, match="AUDIT_RATE='2' is outside"):
        load_function("filter", AUDIT_RATE="2", THRESHOLD="0.93")


def test_low_confidence_images_are_never_counted_as_audit(load_function, lambda_context):
    filter_fn = load_function("filter", AUDIT_RATE="1", THRESHOLD="0.93")
    with pytest.raises(filter_fn.LowConfidenceError):
        filter_fn.lambda_handler(classified([0.6, 0.4]), lambda_context)
