"""classify: send the serialized image to the SageMaker endpoint and attach its class probabilities.

Input: the serialize output (image_data base64, content_type). Output: the input plus
inferences (one probability per CLASS_NAMES entry), probabilities ({class name: probability},
what the results table and the published event carry), label, confidence, endpoint_name,
invoked_variant and endpoint_latency_ms. Every failure is a named exception; the state
machine retries EndpointThrottledError, ModelNotReadyError and EndpointUnavailableError
with backoff and jitter, so the client itself never retries.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import boto3
from aws_lambda_powertools import Logger, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotoConnectionError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_NAMESPACE = "SconesUnlimited"
DEFAULT_CLASS_NAMES = "bicycle,motorcycle"
SUM_TOLERANCE = 1e-3  # float32 softmax outputs do not sum to exactly 1
_ENDPOINT_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")  # SageMaker's own rule


class ConfigurationError(Exception):
    """ENDPOINT_NAME or CLASS_NAMES is missing or unusable."""


class InvalidEventError(Exception):
    """The input does not carry a usable base64 image."""


class EndpointThrottledError(Exception):
    """SageMaker throttled the call (retried by the state machine)."""


class ModelNotReadyError(Exception):
    """The endpoint exists but its model is not ready yet (retried by the state machine)."""


class EndpointUnavailableError(Exception):
    """The endpoint is down, restarting or unreachable (retried by the state machine)."""


class EndpointNotFoundError(Exception):
    """No endpoint with this name exists in the account and region."""


class ModelInvocationError(Exception):
    """The model container answered with an error status."""


class EndpointRequestError(Exception):
    """SageMaker rejected the request for another reason (access, validation...)."""


class InvalidPredictionError(Exception):
    """The endpoint answered, but not with one probability per class."""


@dataclass(frozen=True)
class Settings:
    """The function's environment (template.yaml: ClassifyImageFunction), read and checked once at cold start:
    a bad value fails every invocation loudly."""
    endpoint_name: str
    class_names: tuple[str, ...]  # the endpoint's output order

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Settings":
        name = env.get("ENDPOINT_NAME", "").strip()
        if not name:
            raise ConfigurationError("ENDPOINT_NAME is not set")
        if not _ENDPOINT_NAME_PATTERN.match(name):
            raise ConfigurationError(f"ENDPOINT_NAME={name!r} is not a valid SageMaker endpoint name")
        raw = env.get("CLASS_NAMES") or DEFAULT_CLASS_NAMES
        names = tuple(part.strip() for part in raw.split(","))
        if len(names) < 2 or any(not n for n in names) or len(set(names)) != len(names):
            raise ConfigurationError(f"CLASS_NAMES={raw!r} must list at least two distinct, non-empty names")
        return cls(endpoint_name=name, class_names=names)


settings = Settings.from_env()

logger = Logger()
# A provider of our own (not the shared Metrics class state), so handlers loaded side
# by side in one process (tests, the local twin) cannot mix metrics or dimensions.
metrics = AmazonCloudWatchEMFProvider(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE)
metrics.set_default_dimensions(EndpointName=settings.endpoint_name)

# Exactly one attempt: retries belong to the state machine (backoff + jitter, visible in
# the execution history). The model answers in milliseconds; short timeouts bound each attempt, and so
# the execution's worst case, well inside the EXPRESS workflow's 5 minutes (the function's Timeout is 8 s).
# A serverless endpoint's cold start can outlast the read timeout: that attempt ends EndpointUnavailableError
# and the state machine tries again (4 retries, 1 s doubling to 8 s: about 40 s in all); a model whose cold
# start (CloudWatch ModelSetupTime) is longer needs provisioned concurrency or instances (docs/sagemaker.md).
CONNECT_TIMEOUT_S, READ_TIMEOUT_S = 2, 5
CLIENT_CONFIG = Config(retries={"total_max_attempts": 1}, connect_timeout=CONNECT_TIMEOUT_S,
                       read_timeout=READ_TIMEOUT_S)
_runtime = None


def runtime_client():
    """One sagemaker-runtime client per execution environment, created on first use."""
    global _runtime
    if _runtime is None:
        _runtime = boto3.client("sagemaker-runtime", config=CLIENT_CONFIG)
    return _runtime


class _SerializedImage(BaseModel):
    """What classify needs from the state; everything else passes through untouched."""

    model_config = ConfigDict(extra="allow", strict=True)

    image_data: str = Field(min_length=1)
    content_type: Literal["image/png", "image/jpeg", "application/x-image"] = "image/png"


def parse_event(event: Any) -> tuple[bytes, str]:
    """(image bytes, content type) from the serialize output."""
    if not isinstance(event, dict):
        raise InvalidEventError(f"event must be a JSON object, got {type(event).__name__}")
    try:
        parsed = _SerializedImage.model_validate(event)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidEventError(f"cannot classify this input: {problems}") from None
    try:
        image = base64.b64decode(parsed.image_data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidEventError(f"image_data is not valid base64: {exc}") from None
    return image, parsed.content_type


def _error_from_client_error(exc: ClientError) -> Exception:
    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    message = error.get("Message", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    where = f"endpoint {settings.endpoint_name}"
    if code == "ModelNotReadyException":  # before the 429 rule: SageMaker sends it with 429 too
        return ModelNotReadyError(f"{where}: model not ready: {message}")
    if code in ("ThrottlingException", "Throttling", "TooManyRequestsException") or status == 429:
        return EndpointThrottledError(f"{where} throttled the request: {message}")
    if code == "ModelError":
        original_status = exc.response.get("OriginalStatusCode")
        original_message = exc.response.get("OriginalMessage", message)
        return ModelInvocationError(
            f"{where}: the model container answered {original_status}: {original_message}"
            f" (logs: {exc.response.get('LogStreamArn', 'n/a')})"
        )
    if code == "ValidationError" and "not found" in message.lower():
        return EndpointNotFoundError(f"{where} does not exist: {message}")
    if code in ("ServiceUnavailable", "InternalFailure", "InternalDependencyException") or status >= 500:
        return EndpointUnavailableError(f"{where} is unavailable ({code or status}): {message}")
    return EndpointRequestError(f"{where} rejected the request ({code or status}): {message}")


def invoke(image: bytes, content_type: str) -> tuple[bytes, str | None]:
    """(response body, invoked variant); failures become the named errors above."""
    try:
        response = runtime_client().invoke_endpoint(
            EndpointName=settings.endpoint_name, ContentType=content_type, Accept="application/json", Body=image
        )
        return response["Body"].read(), response.get("InvokedProductionVariant")
    except ClientError as exc:
        raise _error_from_client_error(exc) from exc
    except ReadTimeoutError as exc:
        raise EndpointUnavailableError(
            f"endpoint {settings.endpoint_name} did not answer within {READ_TIMEOUT_S} s (a serverless endpoint "
            f"may still be starting: a cold start): {exc}") from exc
    except (BotoConnectionError, HTTPClientError) as exc:
        # Refused, reset or timed out: the endpoint (or the twin's server) is down or restarting.
        raise EndpointUnavailableError(f"endpoint {settings.endpoint_name} unreachable: {exc}") from exc


def parse_probabilities(body: bytes) -> list[float]:
    """The body must be a JSON list with one probability per class, summing to 1."""
    try:
        values = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidPredictionError(f"response is not JSON: {body[:80]!r}") from None
    if not isinstance(values, list):
        raise InvalidPredictionError(f"expected a JSON list of probabilities, got {type(values).__name__}")
    if len(values) != len(settings.class_names):
        raise InvalidPredictionError(
            f"expected {len(settings.class_names)} probabilities for {list(settings.class_names)}, got {len(values)}"
        )
    for value in values:
        # bool is an int subclass; json 'true' is not a probability.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidPredictionError(f"probability {value!r} is not a number")
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise InvalidPredictionError(f"probability {value!r} is not in [0, 1]")
    total = math.fsum(values)
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise InvalidPredictionError(f"probabilities sum to {total:.6f}, not 1")
    return [float(value) for value in values]


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    image, content_type = parse_event(event)
    logger.append_keys(s3_bucket=event.get("s3_bucket"), s3_key=event.get("s3_key"),
                       endpoint_name=settings.endpoint_name)

    started = time.perf_counter()
    try:
        body, variant = invoke(image, content_type)
        probabilities = parse_probabilities(body)
    except Exception as exc:
        logger.warning("classification failed", extra={"reason": type(exc).__name__, "detail": str(exc)})
        # Nothing else is in this invocation's metric set, so Reason can go on it directly.
        metrics.add_dimension(name="Reason", value=type(exc).__name__)
        metrics.add_metric(name="EndpointErrors", unit=MetricUnit.Count, value=1)
        raise
    latency_ms = round((time.perf_counter() - started) * 1000, 1)

    best = max(range(len(probabilities)), key=probabilities.__getitem__)
    label, confidence = settings.class_names[best], probabilities[best]
    metrics.add_metric(name="Confidence", unit=MetricUnit.NoUnit, value=confidence)
    metrics.add_metric(name="EndpointLatency", unit=MetricUnit.Milliseconds, value=latency_ms)
    with single_metric(
        name="Predictions",
        unit=MetricUnit.Count,
        value=1,
        namespace=metrics.namespace,
        default_dimensions=metrics.default_dimensions,
    ) as metric:
        metric.add_dimension(name="Label", value=label)
    logger.info(
        "classified",
        extra={"label": label, "confidence": confidence, "variant": variant, "latency_ms": latency_ms},
    )
    return {
        **event,
        "inferences": probabilities,
        "probabilities": dict(zip(settings.class_names, probabilities)),
        "label": label,
        "confidence": confidence,
        "endpoint_name": settings.endpoint_name,
        "invoked_variant": variant,
        "endpoint_latency_ms": latency_ms,
    }
