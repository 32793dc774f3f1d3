"""Group capture records and results into time buckets for the over-time charts and drift.json."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import Iterable, Sequence

import numpy as np

from contracts.results import OUTCOMES, ResultRecord
from contracts.times import format_time
from monitoring.capture import CaptureRecord
from monitoring.results import needs_review_rate

# Bucket widths in seconds, smallest first: 1 min, 5 min, 15 min, 1 h, 6 h, 1 day, 1 week.
BUCKET_WIDTHS = (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)
MAX_BUCKETS = 48  # enough points for a trend, few enough to read on a chart


def choose_bucket_seconds(times: Iterable[datetime]) -> int:
    """The smallest width from BUCKET_WIDTHS that spans all ``times`` in MAX_BUCKETS or fewer."""
    times = list(times)
    if not times:
        return BUCKET_WIDTHS[0]
    span = (max(times) - min(times)).total_seconds()
    for width in BUCKET_WIDTHS:
        if span / width < MAX_BUCKETS:
            return width
    return BUCKET_WIDTHS[-1]


def bucket_start(time: datetime, width: int) -> datetime:
    epoch = int(time.timestamp())
    return datetime.fromtimestamp(epoch - epoch % width, tz=timezone.utc)


def _group(items, time_of, width: int) -> list[tuple[datetime, list]]:
    groups: dict[datetime, list] = defaultdict(list)
    for item in items:
        groups[bucket_start(time_of(item), width)].append(item)
    return sorted(groups.items())


def _mean_time(times: Sequence[datetime]) -> str:
    """Where a bucket's figures belong on a time axis: the mean time of its members, not its middle."""
    return format_time(datetime.fromtimestamp(float(np.mean([t.timestamp() for t in times])), tz=timezone.utc))


def capture_series(
    records: Sequence[CaptureRecord], classes: Sequence[str], threshold: float, width: int
) -> list[dict]:
    """Per bucket: count, mean confidence, share below the threshold, predictions per class."""
    series = []
    for start, group in _group(records, lambda r: r.inference_time, width):
        confidences = np.array([r.confidence for r in group])
        predicted = Counter(r.predicted_index for r in group)
        series.append(
            {
                "start": format_time(start),
                "at": _mean_time([r.inference_time for r in group]),
                "n": len(group),
                "mean_confidence": float(confidences.mean()),
                "low_confidence_rate": float(np.mean(confidences < threshold)),
                "class_counts": {name: predicted.get(i, 0) for i, name in enumerate(classes)},
            }
        )
    return series


def results_series(items: Sequence[ResultRecord], width: int) -> list[dict]:
    """Per bucket: outcome counts, needs_review rate, latency median and max, failure reasons."""
    series = []
    for start, group in _group(items, lambda r: r.time, width):
        outcomes = Counter(r.outcome for r in group)
        latencies = [r.latency_seconds for r in group if r.latency_seconds is not None]
        series.append(
            {
                "start": format_time(start),
                "at": _mean_time([r.time for r in group]),
                "n": len(group),
                "outcomes": {o: outcomes.get(o, 0) for o in OUTCOMES},
                "needs_review_rate": needs_review_rate(group),
                "latency_p50": float(np.median(latencies)) if latencies else None,
                "latency_max": float(max(latencies)) if latencies else None,
                "failure_reasons": dict(Counter(r.reason or "(no reason)" for r in group if r.outcome == "failed")),
            }
        )
    return series


def describe_width(width: int) -> str:
    """'5 min', '1 h', '1 day', '1 week' for chart legends."""
    for unit, seconds in (("week", 7 * 86400), ("day", 86400), ("h", 3600), ("min", 60)):
        if width % seconds == 0:
            return f"{width // seconds} {unit}"
    return f"{width} s"
