"""Accuracy against reviewers: what people's decisions say about the model in production.

The audit sample (a fixed share of confident images, chosen by a hash of the key, independent of the image)
gives an unbiased estimate of the accuracy of automatic decisions: the share of audited images on which the
reviewer chose the model's label, with a Wilson score 95 % interval. Images sent to review for low
confidence are not a random sample, so they appear only in the confusion matrix (model's label against the
person's, for every decided image) and in the review latency.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timezone

import numpy as np

from contracts.results import ResultRecord

Z_95 = 1.959964


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (sound near 0 and 1 and for small n)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarise_reviews(items: list[ResultRecord], now: datetime | None = None) -> dict:
    now = now or datetime.now(timezone.utc)
    decided = [r for r in items if r.human_label is not None]
    audited = [r for r in decided if r.review_reason == "audit"]
    agreed = sum(r.human_label == r.label for r in audited)
    low, high = wilson_interval(agreed, len(audited))
    waiting = [r for r in items if r.human_label is None and (r.outcome == "needs_review" or r.audit)]
    waits = np.array([r.waited_seconds for r in decided if r.waited_seconds is not None])
    confusion = Counter((r.label or "?", r.human_label) for r in decided)
    return {
        "decided": len(decided),
        "by_reason": dict(Counter(r.review_reason or "below_threshold" for r in decided)),
        "audit": {"n": len(audited), "agreed": agreed,
                  "accuracy": agreed / len(audited) if audited else None,
                  "interval_95": [low, high] if audited else None},
        "confusion": [{"model": model, "person": person, "n": n} for (model, person), n in sorted(confusion.items())],
        "latency_seconds": ({"p50": float(np.percentile(waits, 50)), "p95": float(np.percentile(waits, 95)),
                             "max": float(waits.max())} if waits.size else None),
        "waiting": len(waiting),
        "oldest_waiting_seconds": (max((now - r.time).total_seconds() for r in waiting) if waiting else None),
    }


def accuracy_line(reviews: dict) -> str:
    """One line for the terminal: the audit accuracy and its interval, or why there is none."""
    audit = reviews["audit"]
    if not audit["n"]:
        return f"reviewers: {reviews['decided']} decisions, no audit decisions yet (no accuracy estimate)"
    low, high = audit["interval_95"]
    return (f"reviewers: audit accuracy {audit['accuracy']:.1%} ({audit['agreed']}/{audit['n']}, 95% interval "
            f"{low:.1%} to {high:.1%}); {reviews['decided']} decisions, {reviews['waiting']} waiting")
