"""Read the pipeline's results table (DynamoDB) for the drift report: every record, checked, and the outcome
figures. What a record holds is `contracts.results.ResultRecord`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from contracts.results import OUTCOMES, SENT_TO_REVIEW, ResultRecord, decode_item
from monitoring.errors import MonitoringInputError


@dataclass
class ResultsData:
    table: str
    items: list[ResultRecord] = field(default_factory=list)
    bad_items: Counter = field(default_factory=Counter)  # reason -> count
    before_since: int = 0


def read_results(table: str, *, since: datetime | None = None, client=None) -> ResultsData:
    """Scan the whole table (paginated). Items that cannot be used are counted by reason."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    data = ResultsData(table=table)
    try:
        # Inside the try: with no region configured, creating the client raises NoRegionError.
        client = client or boto3.client("dynamodb")
        for page in client.get_paginator("scan").paginate(TableName=table):
            for raw in page.get("Items", []):
                try:
                    result = decode_item(raw).validated()
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


def needs_review_rate(items: list[ResultRecord]) -> float | None:
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
