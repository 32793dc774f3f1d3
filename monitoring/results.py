"""Read the pipeline's results table (DynamoDB) and summarise the outcomes.

One item per uploaded image, keyed by ``bucket`` (HASH) and ``key`` (RANGE), written by
the state machine: ``outcome`` ("classified" | "needs_review" | "failed"), ``label`` (the
model's), ``confidence`` (N), ``probabilities`` (S, JSON), ``reason`` (failed / needs_review),
``endpoint_name``, ``uploaded_at`` and ``recorded_at`` (ISO-8601), ``audit`` (a confident image
sampled for review). A reviewer's decision (on the review page) turns needs_review into "reviewed"
or "rejected" (an audited image stays "classified") and adds ``human_label``, ``review_reason``,
``decided_at`` and ``waited_seconds``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from monitoring.errors import MonitoringInputError
from monitoring.times import parse_time

OUTCOMES = ("classified", "needs_review", "reviewed", "rejected", "failed")
SENT_TO_REVIEW = ("needs_review", "reviewed", "rejected")  # below the threshold, decided or not


@dataclass(frozen=True)
class ResultItem:
    bucket: str
    key: str
    outcome: str
    time: datetime  # recorded_at, or uploaded_at when the item has no recorded_at
    label: str | None = None
    confidence: float | None = None
    reason: str | None = None
    endpoint_name: str | None = None
    uploaded_at: datetime | None = None
    recorded_at: datetime | None = None
    audit: bool = False
    human_label: str | None = None  # a reviewer's decision
    review_reason: str | None = None  # below_threshold | audit
    decided_at: datetime | None = None
    waited_seconds: float | None = None

    @property
    def latency_seconds(self) -> float | None:
        """End to end: from the upload to the result being recorded."""
        if self.uploaded_at is None or self.recorded_at is None:
            return None
        return (self.recorded_at - self.uploaded_at).total_seconds()


@dataclass
class ResultsData:
    table: str
    items: list[ResultItem] = field(default_factory=list)
    bad_items: Counter = field(default_factory=Counter)  # reason -> count
    before_since: int = 0


def read_results(table: str, *, since: datetime | None = None, client=None) -> ResultsData:
    """Scan the whole table (paginated). Items that cannot be used are counted by reason."""
    import boto3
    from boto3.dynamodb.types import TypeDeserializer
    from botocore.exceptions import BotoCoreError, ClientError

    deserializer = TypeDeserializer()
    data = ResultsData(table=table)
    try:
        # Inside the try: with no region configured, creating the client raises NoRegionError.
        client = client or boto3.client("dynamodb")
        for page in client.get_paginator("scan").paginate(TableName=table):
            for raw in page.get("Items", []):
                item = {k: deserializer.deserialize(v) for k, v in raw.items()}
                try:
                    result = parse_item(item)
                except ValueError as exc:
                    data.bad_items[str(exc)] += 1
                    continue
                if since is not None and result.time < since:
                    data.before_since += 1
                    continue
                data.items.append(result)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise MonitoringInputError(f"results table not found: {table}") from None
        raise MonitoringInputError(f"cannot scan results table {table}: {exc}") from exc
    except BotoCoreError as exc:
        raise MonitoringInputError(f"cannot scan results table {table}: {exc}") from exc
    data.items.sort(key=lambda r: r.time)
    return data


def parse_item(item: dict) -> ResultItem:
    """Build a ResultItem from a deserialised DynamoDB item; ValueError says what is wrong."""
    outcome = item.get("outcome")
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    uploaded_at = _optional_time(item, "uploaded_at")
    recorded_at = _optional_time(item, "recorded_at")
    time = recorded_at or uploaded_at
    if time is None:
        raise ValueError("no recorded_at or uploaded_at")
    confidence = item.get("confidence")
    return ResultItem(
        bucket=str(item.get("bucket", "")),
        key=str(item.get("key", "")),
        outcome=outcome,
        time=time,
        label=item.get("label"),
        confidence=float(confidence) if confidence is not None else None,
        reason=item.get("reason"),
        endpoint_name=item.get("endpoint_name"),
        uploaded_at=uploaded_at,
        recorded_at=recorded_at,
        audit=bool(item.get("audit")),
        human_label=item.get("human_label"),
        review_reason=item.get("review_reason"),
        decided_at=_optional_time(item, "decided_at"),
        waited_seconds=float(item["waited_seconds"]) if item.get("waited_seconds") is not None else None,
    )


def _optional_time(item: dict, name: str) -> datetime | None:
    value = item.get(name)
    if value is None:
        return None
    try:
        return parse_time(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} is not ISO-8601") from None


def needs_review_rate(items: list[ResultItem]) -> float | None:
    """Sent to review (decided since or not) / scored images: failed items never got a confidence."""
    scored = [r for r in items if r.outcome != "failed"]
    if not scored:
        return None
    return sum(r.outcome in SENT_TO_REVIEW for r in scored) / len(scored)


def summarise_results(data: ResultsData) -> dict:
    """Figures for drift.json and the report: outcome mix, review rate, failures, latency."""
    items = data.items
    latencies = np.array([r.latency_seconds for r in items if r.latency_seconds is not None])
    outcome_counts = Counter(r.outcome for r in items)
    return {
        "table": data.table,
        "items": len(items),
        "bad_items": sum(data.bad_items.values()),
        "bad_item_reasons": dict(data.bad_items),
        "before_since": data.before_since,
        "outcomes": {o: outcome_counts.get(o, 0) for o in OUTCOMES},
        "needs_review_rate": needs_review_rate(items),
        "failure_reasons": dict(
            Counter(r.reason or "(no reason)" for r in items if r.outcome == "failed").most_common()
        ),
        "latency_seconds": (
            {
                "n": int(latencies.size),
                "p50": float(np.percentile(latencies, 50)),
                "p95": float(np.percentile(latencies, 95)),
                "max": float(latencies.max()),
            }
            if latencies.size
            else None
        ),
    }
