"""classify: sagemaker-runtime (Stubber, or a real socket) -> probabilities, named errors, metrics."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading

import pytest
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import Stubber

ENDPOINT = "scones-vehicle-classifier"
IMAGE = b"\x89PNG\r\n\x1a\n fake but opaque bytes"


def state(**overrides) -> dict:
    return {
        "s3_bucket": "scones-intake-123456789012-us-east-1",
        "s3_key": "photos/bike.png",
        "image_data": base64.b64encode(IMAGE).decode(),
        "content_type": "image/png",
        "inferences": [],
        **overrides,
    }


def body(payload) -> StreamingBody:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


@pytest.fixture
def classify(load_function):
    return load_function("classify", ENDPOINT_NAME=ENDPOINT)


@pytest.fixture
def stub(classify):
    with Stubber(classify.runtime_client()) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def expect_answer(stub, payload, variant="AllTraffic", content_type="image/png", image=IMAGE):
    response = {"Body": body(payload), "ContentType": "application/json"}
    if variant:
        response["InvokedProductionVariant"] = variant
    stub.add_response(
        "invoke_endpoint",
        response,
        expected_params={"EndpointName": ENDPOINT, "ContentType": content_type, "Accept": "application/json",
                         "Body": image},
    )


# ---------- good answers ----------


def test_good_answer_gives_label_confidence_and_keeps_the_state(classify, stub, lambda_context):
    expect_answer(stub, [0.12, 0.88], variant="Canary")
    result = classify.lambda_handler(state(trace_id="t-1"), lambda_context)
    assert result["inferences"] == [0.12, 0.88]
    assert result["probabilities"] == {"bicycle": 0.12, "motorcycle": 0.88}
    assert result["label"] == "motorcycle"
    assert result["confidence"] == 0.88
    assert result["endpoint_name"] == ENDPOINT
    assert result["invoked_variant"] == "Canary"
    assert isinstance(result["endpoint_latency_ms"], float) and result["endpoint_latency_ms"] >= 0
    assert result["trace_id"] == "t-1"
    assert result["s3_key"] == "photos/bike.png"
    assert result["image_data"] == state()["image_data"]


def test_missing_variant_is_null(classify, stub, lambda_context):
    expect_answer(stub, [0.7, 0.3], variant=None)
    result = classify.lambda_handler(state(), lambda_context)
    assert result["invoked_variant"] is None
    assert result["label"] == "bicycle"


def test_content_type_defaults_to_png_and_jpeg_is_forwarded(classify, stub, lambda_context):
    expect_answer(stub, [0.5, 0.5])
    without_type = state()
    del without_type["content_type"]
    classify.lambda_handler(without_type, lambda_context)
    expect_answer(stub, [0.5, 0.5], content_type="image/jpeg")
    classify.lambda_handler(state(content_type="image/jpeg"), lambda_context)


def test_class_names_follow_the_configuration(load_function, lambda_context):
    classify = load_function("classify", ENDPOINT_NAME=ENDPOINT, CLASS_NAMES="bicycle, motorcycle, scooter")
    with Stubber(classify.runtime_client()) as stub:
        expect_answer(stub, [0.1, 0.2, 0.7])
        result = classify.lambda_handler(state(), lambda_context)
    assert result["label"] == "scooter"
    assert result["probabilities"] == {"bicycle": 0.1, "motorcycle": 0.2, "scooter": 0.7}


def test_client_never_retries_and_has_short_timeouts(classify):
    config = classify.runtime_client().meta.config
    assert config.retries["total_max_attempts"] == 1
    assert config.connect_timeout <= 5
    # one attempt must end before the function's own Timeout (template: 8 s), so the state machine's
    # per-task timeout and retry budget hold (tests/unit/template/test_template_time_budget.py)
    assert 1 <= config.read_timeout and config.connect_timeout + config.read_timeout < 8


# ---------- endpoint failures ----------

CLIENT_ERRORS = [
    pytest.param("ThrottlingException", 400, "Rate exceeded", {}, "EndpointThrottledError", id="throttling"),
    pytest.param("TooManyRequests", 429, "slow down", {}, "EndpointThrottledError", id="http-429"),
    pytest.param("ModelNotReadyException", 429, "Model not ready", {}, "ModelNotReadyError", id="not-ready"),
    pytest.param("ServiceUnavailable", 503, "Service unavailable", {}, "EndpointUnavailableError", id="503"),
    pytest.param("InternalFailure", 500, "Internal failure", {}, "EndpointUnavailableError", id="500"),
    pytest.param(
        "ValidationError",
        400,
        f"Endpoint {ENDPOINT} of account 123456789012 not found.",
        {},
        "EndpointNotFoundError",
        id="not-found",
    ),
    pytest.param(
        "ModelError",
        424,
        "Received server error (500) from primary",
        {"OriginalStatusCode": 500, "OriginalMessage": "model crashed", "LogStreamArn": "arn:aws:logs:x"},
        "ModelInvocationError",
        id="model-error",
    ),
    pytest.param("AccessDeniedException", 403, "not authorized", {}, "EndpointRequestError", id="access-denied"),
]


@pytest.mark.parametrize("code, status, message, modeled, error_name", CLIENT_ERRORS)
def test_client_errors_map_to_named_errors(classify, stub, lambda_context, code, status, message, modeled, error_name):
    stub.add_client_error(
        "invoke_endpoint",
        service_error_code=code,
        service_message=message,
        http_status_code=status,
        modeled_fields=modeled or None,
    )
    with pytest.raises(Exception) as caught:
        classify.lambda_handler(state(), lambda_context)
    assert type(caught.value).__name__ == error_name
    assert ENDPOINT in str(caught.value)


def test_model_error_reports_the_container_status_and_message(classify, stub, lambda_context):
    stub.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        service_message="Received client error (415)",
        http_status_code=424,
        modeled_fields={"OriginalStatusCode": 415, "OriginalMessage": "unsupported content type"},
    )
    with pytest.raises(classify.ModelInvocationError, match="415.*unsupported content type"):
        classify.lambda_handler(state(), lambda_context)


@pytest.mark.parametrize(
    "error",
    [
        ReadTimeoutError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com"),
        ConnectionClosedError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com"),
        EndpointConnectionError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com"),
    ],
    ids=["read-timeout", "closed", "refused"],
)
def test_transport_failures_are_endpoint_unavailable(classify, monkeypatch, lambda_context, error):
    def fail(**_kwargs):
        raise error

    monkeypatch.setattr(classify.runtime_client(), "invoke_endpoint", fail)
    with pytest.raises(classify.EndpointUnavailableError):
        classify.lambda_handler(state(), lambda_context)


def test_an_answer_slower_than_the_read_timeout_says_so(classify, monkeypatch, lambda_context):
    """A serverless endpoint's cold start can outlast the read timeout: the attempt is retried by the state
    machine (EndpointUnavailableError), and the record's detail says what happened."""
    def slow(**_kwargs):
        raise ReadTimeoutError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com")

    monkeypatch.setattr(classify.runtime_client(), "invoke_endpoint", slow)
    timeout = classify.runtime_client().meta.config.read_timeout
    with pytest.raises(classify.EndpointUnavailableError, match=f"did not answer within {timeout} s .*cold start"):
        classify.lambda_handler(state(), lambda_context)


def test_refused_connection_through_the_standard_endpoint_setting(load_function, lambda_context):
    # The local twin points the SDK at its server with AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME;
    # nothing listening there must read as "endpoint down", which the state machine retries.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    classify = load_function("classify", ENDPOINT_NAME=ENDPOINT, AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=f"http://127.0.0.1:{port}")
    with pytest.raises(classify.EndpointUnavailableError, match=str(port)):
        classify.lambda_handler(state(), lambda_context)


def test_a_dropped_connection_is_tried_exactly_once(load_function, lambda_context):
    accepted = []
    stop = threading.Event()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.05)

    def accept_and_drop():
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            accepted.append(1)
            connection.recv(65536)
            connection.close()  # no HTTP response at all

    thread = threading.Thread(target=accept_and_drop, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        classify = load_function("classify", ENDPOINT_NAME=ENDPOINT, AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=url)
        with pytest.raises(classify.EndpointUnavailableError):
            classify.lambda_handler(state(), lambda_context)
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()
    assert len(accepted) == 1


# ---------- bad predictions ----------

BAD_BODIES = [
    pytest.param(b"not json at all", id="not-json"),
    pytest.param({"predictions": [0.5, 0.5]}, id="object-not-list"),
    pytest.param([1.0], id="too-short"),
    pytest.param([0.2, 0.3, 0.5], id="too-long"),
    pytest.param(b"[NaN, 0.5]", id="nan"),
    pytest.param(b"[Infinity, 0.0]", id="infinity"),
    pytest.param([0.6, 0.6], id="sum-above-one"),
    pytest.param([0.3, 0.3], id="sum-below-one"),
    pytest.param([1.2, -0.2], id="out-of-range"),
    pytest.param(["0.5", "0.5"], id="strings"),
    pytest.param([True, False], id="booleans"),
]


@pytest.mark.parametrize("payload", BAD_BODIES)
def test_bad_bodies_raise_invalid_prediction(classify, stub, lambda_context, payload):
    expect_answer(stub, payload)
    with pytest.raises(classify.InvalidPredictionError):
        classify.lambda_handler(state(), lambda_context)


def test_sum_tolerance_accepts_float32_rounding(classify, stub, lambda_context):
    expect_answer(stub, [0.3333334, 0.6666668])
    assert classify.lambda_handler(state(), lambda_context)["label"] == "motorcycle"


# ---------- bad input and configuration ----------

BAD_EVENTS = [
    pytest.param([], id="not-an-object"),
    pytest.param({"s3_bucket": "b", "s3_key": "k"}, id="no-image-data"),
    pytest.param(state(image_data=""), id="empty-image-data"),
    pytest.param(state(image_data="***not base64***"), id="not-base64"),
    pytest.param(state(image_data=12), id="image-data-not-string"),
    pytest.param(state(content_type="image/gif"), id="unsupported-content-type"),
]


@pytest.mark.parametrize("event", BAD_EVENTS)
def test_bad_events_raise_invalid_event_error(classify, stub, lambda_context, event):
    with pytest.raises(classify.InvalidEventError):
        classify.lambda_handler(event, lambda_context)


@pytest.mark.parametrize(
    "env, named",
    [
        ({}, "ENDPOINT_NAME"),
        ({"ENDPOINT_NAME": "has spaces"}, "ENDPOINT_NAME"),
        ({"ENDPOINT_NAME": ENDPOINT, "CLASS_NAMES": "bicycle"}, "CLASS_NAMES"),
        ({"ENDPOINT_NAME": ENDPOINT, "CLASS_NAMES": "bicycle,,motorcycle"}, "CLASS_NAMES"),
        ({"ENDPOINT_NAME": ENDPOINT, "CLASS_NAMES": "bicycle,bicycle"}, "CLASS_NAMES"),
    ],
)
def test_bad_configuration_fails_at_cold_start(load_function, env, named):
    with pytest.raises(Exception) as caught:
        load_function("classify", **env)
    assert type(caught.value).__name__ == "ConfigurationError"
    assert named in str(caught.value)


# ---------- metrics ----------


def test_success_metrics(classify, stub, lambda_context, emitted_metrics):
    emitted_metrics()
    expect_answer(stub, [0.9, 0.1])
    result = classify.lambda_handler(state(), lambda_context)
    metrics = {m["name"]: m for m in emitted_metrics()}
    assert set(metrics) == {"Predictions", "Confidence", "EndpointLatency"}
    assert metrics["Predictions"]["value"] == 1 and metrics["Predictions"]["unit"] == "Count"
    assert metrics["Predictions"]["dimensions"]["Label"] == "bicycle"
    assert metrics["Confidence"]["value"] == 0.9 and metrics["Confidence"]["unit"] == "None"
    assert metrics["EndpointLatency"]["unit"] == "Milliseconds"
    assert metrics["EndpointLatency"]["value"] == result["endpoint_latency_ms"]
    for metric in metrics.values():
        assert metric["dimensions"]["EndpointName"] == ENDPOINT
        assert metric["namespace"] == "SconesTest"
    assert "Label" not in metrics["Confidence"]["dimensions"]


def test_failure_metric_names_the_reason(classify, stub, lambda_context, emitted_metrics):
    emitted_metrics()
    stub.add_client_error("invoke_endpoint", service_error_code="ThrottlingException", http_status_code=400)
    with pytest.raises(classify.EndpointThrottledError):
        classify.lambda_handler(state(), lambda_context)
    metrics = emitted_metrics()
    assert [(m["name"], m["value"], m["dimensions"]["Reason"], m["dimensions"]["EndpointName"]) for m in metrics] == [
        ("EndpointErrors", 1, "EndpointThrottledError", ENDPOINT)
    ]
