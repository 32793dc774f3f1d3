"""Endpoint data capture in SageMaker's own JSONL format, to a local folder or to S3.

SageMaker Model Monitor's data capture writes one JSON object per line:

    {"captureData": {"endpointInput":  {"observedContentType": "image/png", "mode": "INPUT",
                                        "data": "<base64>", "encoding": "BASE64"},
                     "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                                        "data": "[0.02, 0.98]", "encoding": "JSON"}},
     "eventMetadata": {"eventId": "<uuid>", "inferenceId": "<optional>", "inferenceTime": "2026-01-01T12:00:00Z"},
     "eventVersion": "0"}

into objects named ``{destination}/{endpoint}/{variant}/yyyy/mm/dd/hh/{MM-SS-mmm}-{uuid}.jsonl`` (UTC),
many records per object. This module reproduces that so the captured data can be read by the same
tools (Model Monitor, Athena, the twin's results view) whether it came from AWS or the local twin.

Records are buffered in memory and written as one object per file: a file is closed when it
reaches ``max_file_bytes``, when it is ``max_file_seconds`` old (a background thread checks), when
the hour partition changes, and on ``close()`` - so nothing sampled is lost on a clean stop.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import pathlib
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

log = logging.getLogger(__name__)

CAPTURE_MODES = ("Input", "Output", "InputAndOutput")  # CaptureOption.CaptureMode values
EVENT_VERSION = "0"


class CaptureError(RuntimeError):
    """Captured records could not be written to the destination."""


@dataclass(frozen=True)
class CaptureConfig:
    """What SageMaker's DataCaptureConfig says, plus the local writer's rollover limits.

    destination: a local folder or ``s3://bucket/prefix`` (DestinationS3Uri).
    sampling_percentage: 0-100, share of invocations captured (InitialSamplingPercentage).
    mode: "Input", "Output" or "InputAndOutput" (CaptureOptions).
    json_content_types / csv_content_types: bodies of these types are stored as text with
        encoding JSON / CSV; anything else (images) as BASE64 - the SageMaker Python SDK's defaults.
    """

    destination: str
    sampling_percentage: int = 100
    mode: str = "InputAndOutput"
    json_content_types: tuple[str, ...] = ("application/json",)
    csv_content_types: tuple[str, ...] = ("text/csv",)
    max_file_bytes: int = 16 * 1024 * 1024
    max_file_seconds: float = 60.0
    seed: int | None = None  # for reproducible sampling

    def __post_init__(self) -> None:
        if not str(self.destination):
            raise ValueError("capture destination must be a local folder or an s3://bucket/prefix URI")
        if str(self.destination).startswith("s3://") and not _split_s3_uri(str(self.destination))[0]:
            raise ValueError(f"capture destination {self.destination!r} has no bucket name")
        if isinstance(self.sampling_percentage, bool) or not isinstance(self.sampling_percentage, int) \
                or not 0 <= self.sampling_percentage <= 100:
            raise ValueError(f"sampling_percentage must be an integer 0-100, got {self.sampling_percentage!r}")
        if self.mode not in CAPTURE_MODES:
            raise ValueError(f"capture mode must be one of {CAPTURE_MODES}, got {self.mode!r}")
        if self.max_file_bytes <= 0 or self.max_file_seconds <= 0:
            raise ValueError("max_file_bytes and max_file_seconds must be positive")


def _split_s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    return bucket, prefix.strip("/")


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def encode_payload(body: bytes, content_type: str | None, config: CaptureConfig) -> tuple[str, str]:
    """(data, encoding) for one captured body, as SageMaker stores it."""
    media = _media_type(content_type)
    if media in config.json_content_types or media in config.csv_content_types:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            pass  # declared text but is not: keep it lossless
        else:
            return text, "JSON" if media in config.json_content_types else "CSV"
    return base64.b64encode(body).decode("ascii"), "BASE64"


def decode_payload(section: dict) -> bytes:
    """The original body bytes of a captured endpointInput / endpointOutput section."""
    if section["encoding"] == "BASE64":
        return base64.b64decode(section["data"])
    return section["data"].encode("utf-8")


class _LocalSink:
    def __init__(self, root: str) -> None:
        self.root = pathlib.Path(root)

    def put(self, key: str, data: bytes) -> str:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # readers never see a half-written file
        return str(path)


class _S3Sink:
    def __init__(self, uri: str, client=None) -> None:
        self.bucket, self.prefix = _split_s3_uri(uri)
        if client is None:
            import boto3  # honours AWS_ENDPOINT_URL_S3, so an emulator can stand in for S3

            client = boto3.client("s3")
        self.client = client

    def put(self, key: str, data: bytes) -> str:
        full_key = f"{self.prefix}/{key}" if self.prefix else key
        self.client.put_object(Bucket=self.bucket, Key=full_key, Body=data, ContentType="application/jsonl")
        return f"s3://{self.bucket}/{full_key}"


@dataclass
class _OpenFile:
    key: str
    hour: str
    opened: float
    lines: list[bytes] = field(default_factory=list)
    size: int = 0


class CaptureWriter:
    """Samples invocations and writes them as SageMaker capture files. Thread-safe."""

    def __init__(self, config: CaptureConfig, endpoint_name: str, variant: str, *,
                 s3_client=None, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.endpoint_name = endpoint_name
        self.variant = variant
        self._clock = clock
        self._rng = random.Random(config.seed)
        dest = str(config.destination)
        self._sink = _S3Sink(dest, s3_client) if dest.startswith("s3://") else _LocalSink(dest)
        self._lock = threading.Lock()
        self._current: _OpenFile | None = None
        self._pending: list[_OpenFile] = []  # closed files not yet written (a write failed)
        self.records_captured = 0
        self.files_written: list[str] = []
        self._closed = False
        self._wake = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name=f"capture-{endpoint_name}", daemon=True)
        self._flusher.start()

    # -- recording -------------------------------------------------------------------------
    def sampled(self) -> bool:
        """Whether the next invocation should be captured (drawn per invocation, like SageMaker)."""
        pct = self.config.sampling_percentage
        if pct >= 100:
            return True
        if pct <= 0:
            return False
        with self._lock:
            return self._rng.random() * 100 < pct

    def record(self, *, input_body: bytes, input_content_type: str | None, output_body: bytes,
               output_content_type: str | None, inference_id: str | None = None,
               when: float | None = None) -> dict:
        """Append one capture record (call only for sampled invocations); returns the record."""
        when = self._clock() if when is None else when
        stamp = datetime.fromtimestamp(when, tz=timezone.utc)
        capture: dict = {}
        if self.config.mode in ("Input", "InputAndOutput"):
            data, encoding = encode_payload(input_body, input_content_type, self.config)
            capture["endpointInput"] = {"observedContentType": input_content_type or "", "mode": "INPUT",
                                        "data": data, "encoding": encoding}
        if self.config.mode in ("Output", "InputAndOutput"):
            data, encoding = encode_payload(output_body, output_content_type, self.config)
            capture["endpointOutput"] = {"observedContentType": output_content_type or "", "mode": "OUTPUT",
                                         "data": data, "encoding": encoding}
        metadata = {"eventId": str(uuid.uuid4())}
        if inference_id:
            metadata["inferenceId"] = inference_id
        metadata["inferenceTime"] = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
        record = {"captureData": capture, "eventMetadata": metadata, "eventVersion": EVENT_VERSION}
        line = json.dumps(record, separators=(",", ":")).encode("utf-8") + b"\n"
        hour = stamp.strftime("%Y/%m/%d/%H")
        with self._lock:
            if self._closed:
                raise CaptureError("capture writer is closed")
            if self._current is not None and self._current.hour != hour:
                self._roll_locked()
            if self._current is None:
                name = f"{stamp:%M-%S}-{stamp.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
                self._current = _OpenFile(key=f"{self.endpoint_name}/{self.variant}/{hour}/{name}",
                                          hour=hour, opened=time.monotonic())
            self._current.lines.append(line)
            self._current.size += len(line)
            self.records_captured += 1
            full = self._current.size >= self.config.max_file_bytes
            if full:
                self._roll_locked()
        if full:
            self._wake.set()  # write it from the flusher thread, not on the request path
        return record

    # -- writing ---------------------------------------------------------------------------
    def _roll_locked(self) -> None:
        if self._current is not None and self._current.lines:
            self._pending.append(self._current)
        self._current = None

    def _write_pending(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        failed: list[_OpenFile] = []
        for f in batch:
            try:
                where = self._sink.put(f.key, b"".join(f.lines))
            except Exception as exc:  # keep the records; the next flush retries
                log.warning("capture: writing %s failed (%s); will retry", f.key, exc)
                failed.append(f)
            else:
                self.files_written.append(where)
                log.debug("capture: wrote %d records to %s", len(f.lines), where)
        if failed:
            with self._lock:
                self._pending[:0] = failed
            raise CaptureError(f"{sum(len(f.lines) for f in failed)} capture records not written "
                               f"to {self.config.destination}: see the warnings above")

    def _flush_loop(self) -> None:
        interval = min(1.0, self.config.max_file_seconds / 2)
        while True:
            self._wake.wait(interval)
            self._wake.clear()
            with self._lock:
                if self._closed:
                    return
                cur = self._current
                if cur is not None and time.monotonic() - cur.opened >= self.config.max_file_seconds:
                    self._roll_locked()
            try:
                self._write_pending()
            except CaptureError:
                pass  # already logged; retried on the next tick and on close()

    def flush(self) -> None:
        """Close the open file and write everything buffered so far."""
        with self._lock:
            self._roll_locked()
        self._write_pending()

    def close(self) -> None:
        """Stop the background flusher and write every buffered record. Raises CaptureError
        if some records could not be written."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._roll_locked()
        self._wake.set()
        self._flusher.join()
        self._write_pending()


def iter_capture_records(destination: str, endpoint_name: str | None = None, *,
                         s3_client=None) -> Iterator[dict]:
    """Every capture record under a destination (optionally one endpoint), oldest file first."""
    dest = str(destination)
    sub = f"{endpoint_name}/" if endpoint_name else ""
    if dest.startswith("s3://"):
        if s3_client is None:
            import boto3

            s3_client = boto3.client("s3")
        bucket, prefix = _split_s3_uri(dest)
        full_prefix = f"{prefix}/{sub}" if prefix else sub
        keys = []
        for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=full_prefix):
            keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".jsonl")]
        blobs = (s3_client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in sorted(keys))
    else:
        root = pathlib.Path(dest) / sub if sub else pathlib.Path(dest)
        blobs = (p.read_bytes() for p in sorted(root.rglob("*.jsonl")))
    for blob in blobs:
        for line in blob.splitlines():
            if line.strip():
                yield json.loads(line)
