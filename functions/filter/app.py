"""filter: let confident classifications through; fail the rest with LowConfidenceError.

Input: the classify output (inferences, and label / endpoint_name when present).
Output: the input plus "threshold" and "audit". The state machine catches LowConfidenceError by
name and sends the image to the human review queue; a confident image with "audit": true is
dispatched as usual and also sent to review, so reviewers' decisions on an unbiased sample
measure the model's live accuracy.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider
from aws_lambda_powertools.utilities.typing import LambdaContext

DEFAULT_NAMESPACE = "SconesUnlimited"
# No default threshold: it belongs to the model (metadata.json) and reaches this function only as the
# stack parameter ConfidenceThreshold (template.yaml), which promotion sets from the model.
DEFAULT_AUDIT_RATE = 0.0


class ConfigurationError(Exception):
    """THRESHOLD is missing, or THRESHOLD or AUDIT_RATE is not a number in [0, 1]."""


class InvalidEventError(Exception):
    """The input has no usable inferences."""


class LowConfidenceError(Exception):
    """The best class probability is below THRESHOLD: a human should look at the image."""


def _share(env: Mapping[str, str], variable: str, default: float | None) -> float:
    """A share in [0, 1] read from env[variable]; default when unset or blank (None: it must be set)."""
    raw = env.get(variable)
    if raw is None or raw.strip() == "":
        if default is None:
            raise ConfigurationError(f"{variable} is not set (the stack sets it from ConfidenceThreshold)")
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{variable}={raw!r} is not a number") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ConfigurationError(f"{variable}={raw!r} is outside [0, 1]")
    return value


@dataclass(frozen=True)
class Settings:
    """The function's environment (template.yaml: FilterInferenceFunction), read and checked once at cold
    start: a bad value fails every invocation loudly."""
    threshold: float  # THRESHOLD: the model's confidence threshold, required
    audit_rate: float  # AUDIT_RATE: the share of confident images also sent to review

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Settings":
        return cls(threshold=_share(env, "THRESHOLD", None),
                   audit_rate=_share(env, "AUDIT_RATE", DEFAULT_AUDIT_RATE))


settings = Settings.from_env()


def is_audited(bucket: str, key: str, rate: float) -> bool:
    """Whether a confident image joins the audit sample: a fixed function of bucket and key, so the
    sample is reproducible, and independent of the image and the model, so it is unbiased."""
    digest = hashlib.sha256(f"{bucket}/{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < rate * 2**64

logger = Logger()
# A provider of our own (not the shared Metrics class state), so handlers loaded side
# by side in one process (tests, the local twin) cannot mix metrics or dimensions.
metrics = AmazonCloudWatchEMFProvider(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE)


def parse_inferences(event: Any) -> list[float]:
    if not isinstance(event, dict):
        raise InvalidEventError(f"event must be a JSON object, got {type(event).__name__}")
    inferences = event.get("inferences")
    if not isinstance(inferences, list) or not inferences:
        raise InvalidEventError(f"inferences must be a non-empty list, got {inferences!r}")
    for value in inferences:
        # bool is an int subclass; json 'true' is not a probability.
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidEventError(f"inference {value!r} is not a finite number")
    return inferences


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    inferences = parse_inferences(event)
    confidence = max(inferences)
    label = event.get("label") or f"class {inferences.index(confidence)}"
    logger.append_keys(s3_bucket=event.get("s3_bucket"), s3_key=event.get("s3_key"))

    endpoint_name = event.get("endpoint_name") or os.environ.get("ENDPOINT_NAME")
    if endpoint_name:
        metrics.add_dimension(name="EndpointName", value=str(endpoint_name))

    threshold = settings.threshold
    if confidence >= threshold:
        audit = is_audited(str(event.get("s3_bucket", "")), str(event.get("s3_key", "")), settings.audit_rate)
        metrics.add_metric(name="Classified", unit=MetricUnit.Count, value=1)
        if audit:
            metrics.add_metric(name="Audited", unit=MetricUnit.Count, value=1)
        logger.info("confident", extra={"label": label, "confidence": confidence, "threshold": threshold,
                                        "audit": audit})
        return {**event, "threshold": threshold, "audit": audit}

    metrics.add_metric(name="LowConfidence", unit=MetricUnit.Count, value=1)
    logger.info("low confidence", extra={"label": label, "confidence": confidence, "threshold": threshold})
    raise LowConfidenceError(f"{label} at confidence {confidence:.4f} is below the threshold {threshold}")
