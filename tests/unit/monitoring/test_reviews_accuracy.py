"""Accuracy against reviewers: the audit estimate and its interval, the confusion matrix, the report section."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from contracts.results import ResultRecord
from drift_report_helpers import capture_files, healthy_probabilities, write_tree
from monitoring.build import build_report
from monitoring.report import render_html
from monitoring.results import needs_review_rate
from monitoring.reviews import accuracy_line, summarise_reviews, wilson_interval

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def item(key, outcome, label, human=None, reason=None, audit=False, waited=None, minutes_ago=10):
    at = (NOW - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    raw = {"bucket": "b", "key": key, "outcome": outcome, "label": label, "confidence": 0.9,
           "uploaded_at": at, "recorded_at": at, "audit": audit}
    if human:
        raw.update(human_label=human, review_reason=reason, decided_at=at, waited_seconds=waited)
    return ResultRecord(raw).validated()


def test_wilson_interval_matches_the_textbook_values():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and low == pytest.approx(0.7225, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_audit_accuracy_uses_only_the_audit_sample_and_the_matrix_every_decision():
    items = [
        item("a1", "classified", "bicycle", "bicycle", "audit", audit=True, waited=30),
        item("a2", "classified", "bicycle", "motorcycle", "audit", audit=True, waited=60),
        item("a3", "classified", "motorcycle", "motorcycle", "audit", audit=True, waited=90),
        item("a4", "classified", "motorcycle", audit=True, minutes_ago=45),  # audited, not decided yet
        # Unsure images the model got wrong: not a random sample, so not in the accuracy figure.
        item("u1", "reviewed", "bicycle", "motorcycle", "below_threshold", waited=120),
        item("u2", "rejected", "motorcycle", "unusable", "below_threshold", waited=300),
        item("u3", "needs_review", "bicycle", minutes_ago=5),
        item("c1", "classified", "bicycle"),
    ]
    reviews = summarise_reviews(items, now=NOW)
    assert reviews["audit"]["n"] == 3 and reviews["audit"]["agreed"] == 2
    assert reviews["audit"]["accuracy"] == pytest.approx(2 / 3)
    assert reviews["audit"]["interval_95"] == pytest.approx(list(wilson_interval(2, 3)))
    assert reviews["decided"] == 5 and reviews["by_reason"] == {"audit": 3, "below_threshold": 2}
    assert {(c["model"], c["person"]): c["n"] for c in reviews["confusion"]} == {
        ("bicycle", "bicycle"): 1, ("bicycle", "motorcycle"): 2, ("motorcycle", "motorcycle"): 1,
        ("motorcycle", "unusable"): 1}
    assert reviews["waiting"] == 2 and reviews["oldest_waiting_seconds"] == 45 * 60
    assert reviews["latency_seconds"]["p50"] == 90 and reviews["latency_seconds"]["max"] == 300
    assert accuracy_line(reviews).startswith("reviewers: audit accuracy 66.7% (2/3, 95% interval 20.8% to 93.9%)")
    # Reviewed and rejected images were sent to review all the same.
    assert needs_review_rate(items) == pytest.approx(3 / 8)


def test_no_audit_decisions_gives_no_accuracy_figure():
    reviews = summarise_reviews([item("u1", "reviewed", "bicycle", "bicycle", "below_threshold", waited=5)], now=NOW)
    assert reviews["audit"]["accuracy"] is None
    assert "no audit decisions yet" in accuracy_line(reviews)


@pytest.fixture
def report_document(tmp_path, baseline_path) -> dict:
    capture = write_tree(tmp_path / "capture", capture_files(healthy_probabilities(30, seed=2)))
    return build_report(capture, baseline=baseline_path, out=tmp_path / "report").document


def test_the_report_shows_the_section_and_escapes_labels(report_document):
    items = [item("a1", "classified", "bicycle", "<b>bike</b>", "audit", audit=True, waited=3)]
    html = render_html({**report_document, "reviews": summarise_reviews(items, now=NOW)})
    assert "<h2>Accuracy against reviewers</h2>" in html
    assert "&lt;b&gt;bike&lt;/b&gt;" in html and "<b>bike</b>" not in html
