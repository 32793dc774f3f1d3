"""Read SageMaker endpoint data capture: every record of every JSONL file.

SageMaker writes ``{prefix}/{endpoint}/{variant}/yyyy/mm/dd/hh/*.jsonl``; each file holds
many records, one JSON object per line::

    {"captureData": {"endpointInput": {...},
                     "endpointOutput": {"observedContentType": "application/json",
                                        "mode": "OUTPUT", "data": "[0.02, 0.98]",
                                        "encoding": "JSON"}},
     "eventMetadata": {"eventId": "...", "inferenceTime": "2026-11-21T06:12:03Z"},
     "eventVersion": "0"}

Only the output (the class probabilities) and the inference time are needed for drift;
the input image is not decoded. A line that cannot be used is recorded as a ``BadLine``
with its reason instead of stopping the read, so one torn write does not hide a day of
traffic.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterator, Sequence

from contracts.times import parse_time
from monitoring.errors import MonitoringInputError

# Probabilities printed with a few decimals do not sum to exactly 1; logits or scores
# that are not probabilities miss by far more than this.
SUM_TOLERANCE = 0.02


@dataclass(frozen=True)
class CaptureRecord:
    """One inference: when it happened and the class probabilities the endpoint returned."""

    inference_time: datetime
    probabilities: tuple[float, ...]
    event_id: str | None
    source: str  # "<file>:<line>", to trace a figure back to the raw capture

    @property
    def confidence(self) -> float:
        return max(self.probabilities)

    @property
    def predicted_index(self) -> int:
        return max(range(len(self.probabilities)), key=self.probabilities.__getitem__)


@dataclass(frozen=True)
class BadLine:
    source: str
    line: int
    reason: str


@dataclass
class CaptureData:
    location: str
    files: int = 0
    lines: int = 0  # non-blank lines read, good or bad
    records: list[CaptureRecord] = field(default_factory=list)
    bad_lines: list[BadLine] = field(default_factory=list)
    before_since: int = 0  # valid records dropped by the --since filter


class CaptureLineError(ValueError):
    """A capture line is not a usable SageMaker capture record (the message says why)."""


def read_capture(
    location: str | Path,
    *,
    classes: Sequence[str] | None = None,
    since: datetime | None = None,
    s3_client=None,
) -> CaptureData:
    """Read every record under a local folder/file or an ``s3://bucket/prefix`` URI.

    ``classes`` (from the baseline) lets outputs given as ``{class: probability}`` be
    ordered and outputs with the wrong number of classes be rejected.
    ``since`` drops records whose inferenceTime is earlier (they are counted, not bad).
    """
    location = str(location)
    if location.startswith("s3://"):
        blobs = _s3_blobs(location, s3_client)
    else:
        blobs = _local_blobs(Path(location))
    data = CaptureData(location=location)
    for source, blob in blobs:
        data.files += 1
        _parse_blob(data, source, blob, classes, since)
    data.records.sort(key=lambda r: r.inference_time)
    return data


def _local_blobs(path: Path) -> Iterator[tuple[str, bytes]]:
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(path.rglob("*.jsonl"))
    else:
        raise MonitoringInputError(f"capture location does not exist: {path}")
    for file in files:
        yield str(file), file.read_bytes()


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix")."""
    if not uri.startswith("s3://"):
        raise MonitoringInputError(f"not an S3 URI: {uri!r}")
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not bucket:
        raise MonitoringInputError(f"S3 URI has no bucket: {uri!r}")
    return bucket, prefix


def _s3_blobs(uri: str, client) -> Iterator[tuple[str, bytes]]:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_s3_uri(uri)
    # "capture" must not also match "capture-old/": list a folder, not a name prefix.
    if prefix and not prefix.endswith("/") and not prefix.endswith(".jsonl"):
        prefix += "/"
    try:
        # boto3 honours AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, which is how an emulator is used.
        # Created inside the try so a bad profile or configuration is an input error too.
        client = client or boto3.client("s3")
        keys = [
            obj["Key"]
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
            if obj["Key"].endswith(".jsonl")
        ]
        for key in sorted(keys):
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            yield f"s3://{bucket}/{key}", body
    except (BotoCoreError, ClientError) as exc:
        raise MonitoringInputError(f"cannot read capture from {uri}: {exc}") from exc


def _parse_blob(
    data: CaptureData,
    source: str,
    blob: bytes,
    classes: Sequence[str] | None,
    since: datetime | None,
) -> None:
    for number, raw in enumerate(blob.split(b"\n"), start=1):
        if not raw.strip():
            continue  # the trailing newline, or padding: not a record and not an error
        data.lines += 1
        try:
            record = parse_line(raw, f"{source}:{number}", classes)
        except CaptureLineError as exc:
            data.bad_lines.append(BadLine(source, number, str(exc)))
            continue
        if since is not None and record.inference_time < since:
            data.before_since += 1
            continue
        data.records.append(record)


def parse_line(raw: bytes | str, source: str = "", classes: Sequence[str] | None = None) -> CaptureRecord:
    """Parse one capture line; raises CaptureLineError saying what is wrong with it."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        obj = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CaptureLineError(f"not a JSON line: {exc}") from None
    if not isinstance(obj, dict):
        raise CaptureLineError("line is not a JSON object")

    # Any JSON type can sit where an object belongs; .get on it would end the whole read.
    capture = obj.get("captureData")
    output = capture.get("endpointOutput") if isinstance(capture, dict) else None
    if not isinstance(output, dict):
        raise CaptureLineError("no captureData.endpointOutput (is the capture mode Input only?)")
    metadata = obj.get("eventMetadata")
    if not isinstance(metadata, dict):
        metadata = {}
    try:
        inference_time = parse_time(metadata.get("inferenceTime"))
    except (TypeError, ValueError):
        raise CaptureLineError(
            f"missing or invalid eventMetadata.inferenceTime: {metadata.get('inferenceTime')!r}"
        ) from None

    payload = _decode_payload(output)
    probabilities = _probabilities(payload, classes)
    return CaptureRecord(
        inference_time=inference_time,
        probabilities=probabilities,
        event_id=metadata.get("eventId"),
        source=source,
    )


def _decode_payload(output: dict):
    """Return the endpoint's response body as a Python value (JSON) or list of floats (CSV)."""
    encoding = str(output.get("encoding", "")).upper()
    data = output.get("data")
    content_type = str(output.get("observedContentType", "")).lower()
    if encoding == "BASE64":
        try:
            data = base64.b64decode(data, validate=True).decode("utf-8")
        except (binascii.Error, TypeError, ValueError):
            raise CaptureLineError("endpointOutput.data is not valid BASE64 of UTF-8 text") from None
        # After decoding, the body is whatever the model returned: CSV or JSON.
        encoding = "CSV" if "csv" in content_type else "JSON"
    if encoding == "CSV":
        if not isinstance(data, str):
            raise CaptureLineError("CSV endpointOutput.data is not a string")
        try:
            return [float(cell) for cell in data.strip().split(",")]
        except ValueError:
            raise CaptureLineError(f"CSV endpointOutput.data is not numbers: {data[:80]!r}") from None
    if encoding == "JSON":
        if not isinstance(data, str):
            return data  # some writers embed the JSON value instead of its text
        try:
            return json.loads(data)
        except json.JSONDecodeError:
            raise CaptureLineError(f"JSON endpointOutput.data does not parse: {data[:80]!r}") from None
    raise CaptureLineError(f"unsupported endpointOutput.encoding {output.get('encoding')!r}")


def _probabilities(payload, classes: Sequence[str] | None) -> tuple[float, ...]:
    """Accept ``[p0, p1]``, ``[[p0, p1]]`` (a batch of one) or ``{"probabilities": ...}``
    where the value is a list or a ``{class: probability}`` mapping."""
    if isinstance(payload, dict):
        if "probabilities" not in payload:
            raise CaptureLineError("endpoint output object has no 'probabilities'")
        payload = payload["probabilities"]
        if isinstance(payload, dict):
            if classes is None:
                raise CaptureLineError("output maps classes to probabilities but no class list is known")
            missing = [c for c in classes if c not in payload]
            if missing or len(payload) != len(classes):
                raise CaptureLineError(
                    f"output classes {sorted(payload)} do not match the baseline's {list(classes)}"
                )
            payload = [payload[c] for c in classes]
    if isinstance(payload, list) and len(payload) == 1 and isinstance(payload[0], list):
        payload = payload[0]
    if not isinstance(payload, list) or not all(_is_number(v) for v in payload):
        raise CaptureLineError(f"endpoint output is not a list of probabilities: {str(payload)[:80]}")
    values = tuple(float(v) for v in payload)
    if len(values) < 2:
        raise CaptureLineError(f"expected one probability per class, got {len(values)} value(s)")
    if classes is not None and len(values) != len(classes):
        raise CaptureLineError(f"got {len(values)} probabilities for {len(classes)} classes")
    if any(not 0.0 <= v <= 1.0 for v in values) or abs(sum(values) - 1.0) > SUM_TOLERANCE:
        raise CaptureLineError(f"values are not probabilities (each in [0,1], sum 1): {list(values)}")
    return values


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

