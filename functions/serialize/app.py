"""serialize: read the uploaded image from S3 and pass a small base64 copy down the workflow.

Input: the EventBridge S3 "Object Created" event, or the workflow state
{"s3_bucket", "s3_key", ...} (the original contract; the state machine also normalises
the EventBridge event into this shape). Output: the state plus image_data and its
description. The upload's own faults (missing, empty, too large, not an image, damaged, a bomb)
are answered as the state plus "error": {"Error": <name>, "Cause": <JSON>} under the literal key,
which only this function decodes; anything else (a bad event, S3 refusing) raises a named
exception, and Step Functions sees the class name. When this function could not answer for an upload
(it crashed or timed out, or S3 refused the read), the state machine asks it again with
{"decode_key": <state>} for that state under its literal key alone, so the failed record names the key
as uploaded.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote_plus

import boto3
from aws_lambda_powertools import Logger, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from image_normalizer import (  # the error names are the function's interface (re-exported)
    PILLOW_HARD_LIMIT,
    CorruptImageError,
    DecompressionBombError,
    EmptyImageError,
    UnsupportedImageTypeError,
    normalize,
)

DEFAULT_NAMESPACE = "SconesUnlimited"
MAX_KEY_BYTES = 1024  # S3's own limit on key length


class ConfigurationError(Exception):
    """An environment variable has an unusable value."""


class InvalidEventError(Exception):
    """The event is neither an S3 Object Created event nor {s3_bucket, s3_key}."""


class ImageNotFoundError(Exception):
    """The bucket or key does not exist (any more)."""


class ImageAccessDeniedError(Exception):
    """S3 refused this function's role the read (its s3:GetObject permission, or a bucket or key policy)."""


class ImageTooLargeError(Exception):
    """The object is bigger than MAX_IMAGE_BYTES."""


# The upload's own faults. Answered rather than raised: a raised error leaves the state machine with only
# the key as EventBridge delivered it (URL-encoded), and the record must name the literal key.
UPLOAD_FAULTS = (ImageNotFoundError, ImageTooLargeError, EmptyImageError, UnsupportedImageTypeError,
                 CorruptImageError, DecompressionBombError)


@dataclass(frozen=True)
class Settings:
    """The function's environment (template.yaml: SerializeImageFunction), read and checked once at cold start:
    a bad value fails every invocation loudly."""
    max_image_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_output_side: int = 384
    endpoint_name: str = ""  # only a metric dimension here

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Settings":
        def integer(name: str, default: int, minimum: int, maximum: int) -> int:
            raw = env.get(name)
            if raw is None or raw.strip() == "":
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ConfigurationError(f"{name}={raw!r} is not an integer") from None
            if not minimum <= value <= maximum:
                raise ConfigurationError(f"{name}={value} is outside [{minimum}, {maximum}]")
            return value

        return cls(max_image_bytes=integer("MAX_IMAGE_BYTES", cls.max_image_bytes, 1, 1024**3),
                   max_image_pixels=integer("MAX_IMAGE_PIXELS", cls.max_image_pixels, 1, PILLOW_HARD_LIMIT - 1),
                   max_output_side=integer("MAX_OUTPUT_SIDE", cls.max_output_side, 16, 1024),
                   endpoint_name=env.get("ENDPOINT_NAME", "").strip())


settings = Settings.from_env()

logger = Logger()
# A provider of our own (not the shared Metrics class state), so handlers loaded side
# by side in one process (tests, the local twin) cannot mix metrics or dimensions.
metrics = AmazonCloudWatchEMFProvider(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE)
if settings.endpoint_name:
    metrics.set_default_dimensions(EndpointName=settings.endpoint_name)

_s3 = None


def s3_client():
    """One S3 client per execution environment, created on first use."""
    global _s3
    if _s3 is None:
        _s3 = boto3.client("s3")
    return _s3


class _WorkflowState(BaseModel):
    """The state contract; unknown fields are kept and passed on."""

    model_config = ConfigDict(extra="allow", strict=True)

    s3_bucket: str = Field(min_length=3, max_length=63)
    s3_key: str = Field(min_length=1)
    s3_key_encoding: Literal["url"] | None = None


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'event'}: {error['msg']}" for error in exc.errors()
    )


def _from_eventbridge(event: dict[str, Any]) -> tuple[dict[str, Any], str, str, str]:
    try:
        parsed = parse(event=event, model=S3EventNotificationEventBridgeModel)
    except ValidationError as exc:
        raise InvalidEventError(f"malformed EventBridge S3 event: {_validation_message(exc)}") from None
    if parsed.source != "aws.s3" or parsed.detail_type != "Object Created":
        raise InvalidEventError(
            f"expected source 'aws.s3' and detail-type 'Object Created', "
            f"got {parsed.source!r} / {parsed.detail_type!r}"
        )
    # S3 URL-encodes object keys in its notifications, EventBridge ones included
    # ('a b+c.png' arrives as 'a+b%2Bc.png'); S3's API wants the literal key.
    delivered = parsed.detail.object.key
    key = unquote_plus(delivered)
    state = {"s3_bucket": parsed.detail.bucket.name, "s3_key": key, "uploaded_at": event["time"]}
    return state, parsed.detail.bucket.name, key, delivered


def _from_state(event: dict[str, Any]) -> tuple[dict[str, Any], str, str, str | None]:
    try:
        parsed = _WorkflowState.model_validate(event)
    except ValidationError as exc:
        raise InvalidEventError(f"malformed workflow state: {_validation_message(exc)}") from None
    state, key, delivered = dict(event), parsed.s3_key, None
    # The state machine copies EventBridge's key as delivered (URL-encoded; ASL cannot decode) and says
    # so with s3_key_encoding; from here on the state carries the literal key.
    if state.pop("s3_key_encoding", None) == "url":
        delivered, key = key, unquote_plus(key)
        state["s3_key"] = key
    return state, parsed.s3_bucket, key, delivered


def parse_event(event: Any) -> tuple[dict[str, Any], str, str, str | None]:
    """(state to pass on, bucket, literal key, the key as the event delivered it when it was decoded)
    from either accepted event shape."""
    if not isinstance(event, dict):
        raise InvalidEventError(f"event must be a JSON object, got {type(event).__name__}")
    if "detail-type" in event or "detail" in event:
        state, bucket, key, delivered = _from_eventbridge(event)
    elif "s3_bucket" in event or "s3_key" in event:
        state, bucket, key, delivered = _from_state(event)
    else:
        raise InvalidEventError(
            "expected an EventBridge S3 'Object Created' event or {s3_bucket, s3_key}; "
            f"got fields {sorted(event)}"
        )
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidEventError(f"s3_key is longer than {MAX_KEY_BYTES} bytes")
    return state, bucket, key, delivered


def _exists(bucket: str, key: str) -> bool | None:
    """Whether the object is there (None: S3 would not say, e.g. it refused the read)."""
    try:
        s3_client().head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        return False if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound") else None
    return True


def decode_key(request: dict[str, Any]) -> dict[str, Any]:
    """The state of ``request["decode_key"]`` with its literal key: the decoded one, unless only the key exactly
    as delivered exists (as when reading the image). Nothing else of the state changes."""
    state, bucket, key, delivered = parse_event(request["decode_key"])
    if delivered is not None and delivered != key and _exists(bucket, key) is False and _exists(bucket, delivered):
        key = delivered
    logger.info("key decoded for a failed upload", extra={"s3_bucket": bucket, "s3_key": key})
    return {**state, "s3_key": key}


def read_image(bucket: str, key: str) -> bytes:
    """The object's bytes, refusing empty and oversized objects before downloading them."""
    where = f"s3://{bucket}/{key}"
    try:
        response = s3_client().get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "NoSuchBucket", "404"):
            raise ImageNotFoundError(f"{where} does not exist ({code})") from None
        if code in ("AccessDenied", "403"):
            # Without s3:ListBucket S3 answers a missing key with 403 too; the template grants it, so this is
            # the role (or a bucket policy) refusing the read itself.
            raise ImageAccessDeniedError(f"{where}: S3 refused this function's role the read ({code}); "
                                         "check its s3:GetObject permission") from None
        raise
    body = response["Body"]
    size = response["ContentLength"]
    metrics.add_metric(name="ImageBytes", unit=MetricUnit.Bytes, value=size)
    if size == 0:
        body.close()
        raise EmptyImageError(f"{where} is empty (0 bytes)")
    if size > settings.max_image_bytes:
        body.close()
        raise ImageTooLargeError(f"{where} is {size} bytes; the limit (MAX_IMAGE_BYTES) is {settings.max_image_bytes}")
    return body.read()


def _reject(exc: Exception) -> None:
    """Log a refused upload and count it by reason (ImagesRejected)."""
    reason = type(exc).__name__
    logger.warning("image rejected", extra={"reason": reason, "detail": str(exc)})
    with single_metric(
        name="ImagesRejected",
        unit=MetricUnit.Count,
        value=1,
        namespace=metrics.namespace,
        default_dimensions=metrics.default_dimensions,
    ) as metric:
        metric.add_dimension(name="Reason", value=reason)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    if isinstance(event, dict) and set(event) == {"decode_key"}:
        return decode_key(event)
    return _serialize(event, context)


@metrics.log_metrics
def _serialize(event: Any, context: LambdaContext) -> dict[str, Any]:
    metrics.add_metric(name="ImagesReceived", unit=MetricUnit.Count, value=1)
    try:
        state, bucket, key, delivered = parse_event(event)
        logger.append_keys(s3_bucket=bucket, s3_key=key)
        try:
            data = read_image(bucket, key)
        except ImageNotFoundError:
            # AWS does not settle whether EventBridge's S3 events always URL-encode the key: when the decoded
            # key is not there, the key exactly as delivered may be ('a+b.png' sent literally).
            if delivered is None or delivered == key:
                raise
            data = read_image(bucket, delivered)
            key = state["s3_key"] = delivered
            logger.append_keys(s3_key=key)
        image = normalize(data, max_pixels=settings.max_image_pixels, max_side=settings.max_output_side, name=f"s3://{bucket}/{key}")
    except UPLOAD_FAULTS as exc:
        _reject(exc)
        name = type(exc).__name__
        return {**state, "s3_bucket": bucket, "s3_key": key,
                "error": {"Error": name, "Cause": json.dumps({"errorType": name, "errorMessage": str(exc)})}}
    except Exception as exc:
        _reject(exc)
        raise

    encoded = base64.b64encode(image.data).decode("ascii")
    logger.info(
        "image serialized",
        extra={
            "source_format": image.source_format,
            "source_bytes": len(data),
            "content_type": image.content_type,
            "width": image.width,
            "height": image.height,
            "base64_chars": len(encoded),
        },
    )
    return {
        **state,
        "s3_bucket": bucket,
        "s3_key": key,
        "image_data": encoded,
        "content_type": image.content_type,
        "width": image.width,
        "height": image.height,
        "source_bytes": len(data),
        "source_format": image.source_format,
        "inferences": [],
    }
