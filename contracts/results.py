"""The results table's record, one typed definition, and how to read it.

One record per uploaded image, keyed by ``bucket`` (HASH) and ``key`` (RANGE), written by the state machine:
``outcome`` ("classified" | "needs_review" | "failed"), ``label`` (the model's), ``confidence`` (N),
``probabilities`` (S, JSON), ``classes`` and ``threshold`` (what the model was judged with), ``reason``
(failed / needs_review), ``error_detail`` (failed), ``endpoint_name``, ``execution_arn``, ``sequencer`` and
``upload`` (which upload the record describes), ``uploaded_at`` and ``recorded_at`` (ISO-8601), ``audit`` (a
confident image sampled for review). A reviewer's decision (on the review page) turns needs_review into
"reviewed" or "rejected" (an audited image stays "classified") and adds ``human_label``, ``reviewer``,
``review_reason``, ``decided_at`` and ``waited_seconds``.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable
from urllib.parse import quote_plus

from boto3.dynamodb.types import TypeDeserializer

from contracts.times import parse_time

OUTCOMES = ("classified", "needs_review", "reviewed", "rejected", "failed")
SENT_TO_REVIEW = ("needs_review", "reviewed", "rejected")  # below the threshold, decided or not

_deserialize = TypeDeserializer().deserialize


class ResultRecord(dict[str, Any]):
    """One image's record. As a mapping it is the record as stored, decoded (what is printed and sent on
    as it is); its properties are the same attributes typed: times as UTC datetimes, absent ones None."""

    @property
    def bucket(self) -> str:
        return str(self.get("bucket", ""))

    @property
    def key(self) -> str:
        return str(self.get("key", ""))

    @property
    def outcome(self) -> str | None:
        return self.get("outcome")

    @property
    def label(self) -> str | None:  # the model's
        return self.get("label")

    @property
    def confidence(self) -> float | None:
        return float(self["confidence"]) if self.get("confidence") is not None else None

    @property
    def reason(self) -> str | None:
        return self.get("reason")

    @property
    def endpoint_name(self) -> str | None:
        return self.get("endpoint_name")

    @property
    def execution_arn(self) -> str | None:  # the execution that wrote the record
        return self.get("execution_arn")

    @property
    def audit(self) -> bool:
        return bool(self.get("audit"))

    @property
    def human_label(self) -> str | None:  # a reviewer's decision
        return self.get("human_label")

    @property
    def reviewer(self) -> str | None:
        return self.get("reviewer")

    @property
    def review_reason(self) -> str | None:  # below_threshold | audit
        return self.get("review_reason")

    @property
    def waited_seconds(self) -> float | None:
        return float(self["waited_seconds"]) if self.get("waited_seconds") is not None else None

    @property
    def uploaded_at(self) -> datetime | None:
        return self._time("uploaded_at")

    @property
    def recorded_at(self) -> datetime | None:
        return self._time("recorded_at")

    @property
    def decided_at(self) -> datetime | None:
        return self._time("decided_at")

    @property
    def time(self) -> datetime | None:
        """When the record was written: recorded_at, or uploaded_at when it has no recorded_at."""
        return self.recorded_at or self.uploaded_at

    @property
    def latency_seconds(self) -> float | None:
        """End to end: from the upload to the result being recorded."""
        if self.uploaded_at is None or self.recorded_at is None:
            return None
        return (self.recorded_at - self.uploaded_at).total_seconds()

    def validated(self) -> ResultRecord:
        """The record itself, once it has a known outcome and readable times; ValueError says what is wrong."""
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}")
        uploaded_at, recorded_at = self.uploaded_at, self.recorded_at  # each raises if it is not ISO-8601
        if recorded_at is None and uploaded_at is None:
            raise ValueError("no recorded_at or uploaded_at")
        _ = (self.confidence, self.decided_at, self.waited_seconds)  # read for their checks alone
        return self

    def _time(self, name: str) -> datetime | None:
        value = self.get(name)
        if value is None:
            return None
        try:
            return parse_time(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} is not ISO-8601") from None


def decode_item(raw: dict[str, Any]) -> ResultRecord:
    """A results-table item (DynamoDB's attribute values) as a record: numbers as float, the JSON attribute
    ``probabilities`` decoded."""
    item = ResultRecord((k, _deserialize(v)) for k, v in raw.items())
    for k, v in item.items():
        if isinstance(v, Decimal):
            item[k] = float(v)
    if isinstance(item.get("probabilities"), str):
        item["probabilities"] = json.loads(item["probabilities"])
    return item


def scan_results(dynamodb, table: str) -> list[ResultRecord]:
    """All records, oldest first."""
    items = [decode_item(raw) for page in dynamodb.get_paginator("scan").paginate(TableName=table)
             for raw in page["Items"]]
    return sorted(items, key=lambda i: (i.get("recorded_at", ""), i["key"]))


def get_record(dynamodb, table: str, bucket: str, key: str) -> ResultRecord | None:
    """The record of one upload, found under its key or, for a failure recorded before serialize decoded the
    key, under the key as S3's event carried it (URL-encoded)."""
    for candidate in dict.fromkeys((key, quote_plus(key, safe="/"))):
        raw = dynamodb.get_item(TableName=table, ConsistentRead=True,
                                Key={"bucket": {"S": bucket}, "key": {"S": candidate}}).get("Item")
        if raw:
            return decode_item(raw)
    return None


def get_results(dynamodb, table: str, bucket: str, keys: list[str]) -> list[ResultRecord]:
    """The records of ``keys`` that exist (BatchGetItem, 100 keys a call; unprocessed keys are left out)."""
    found = []
    for start in range(0, len(keys), 100):
        request = {"Keys": [{"bucket": {"S": bucket}, "key": {"S": k}} for k in keys[start:start + 100]],
                   "ConsistentRead": True}
        answer = dynamodb.batch_get_item(RequestItems={table: request})
        found += [decode_item(raw) for raw in answer["Responses"].get(table, [])]
    return found


def wait_for_records(dynamodb, table: str, bucket: str, keys: set[str], timeout_s: float, *,
                     progress: Callable[[int, int], None] | None = None,
                     on_found: Callable[[str], None] | None = None,
                     poll_s: float = 0.1) -> dict[str, ResultRecord]:
    """The records of ``keys`` by key, once all are in or ``timeout_s`` has passed (then some may be missing).

    Reads only the keys still missing, so waiting costs the table little however full it is.
    """
    deadline = time.monotonic() + timeout_s
    found: dict[str, ResultRecord] = {}
    pending = sorted(keys)
    while True:
        for item in get_results(dynamodb, table, bucket, pending):
            found[item["key"]] = item
            if on_found:
                on_found(item["key"])
        pending = [k for k in pending if k not in found]
        if progress:
            progress(len(found), len(keys))
        if not pending or time.monotonic() >= deadline:
            return found
        time.sleep(poll_s)
