"""build_report: read the inputs, compute the drift figures, write report.html, drift.json and charts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from monitoring import charts
from monitoring.baseline import Baseline, load_baseline
from monitoring.capture import read_capture
from monitoring.drift import (
    CONFIDENCE_BIN_EDGES,
    PSI_PSEUDOCOUNT,
    PSI_MODERATE,
    PSI_SIGNIFICANT,
    check_thresholds,
    compute_drift,
)
from monitoring.errors import MonitoringInputError
from monitoring.report import write_html, write_json
from monitoring.results import read_results, summarise_results
from monitoring.reviews import summarise_reviews
from monitoring.times import as_utc, format_time, parse_time
from monitoring.timeseries import capture_series, choose_bucket_seconds, results_series

DEFAULT_BASELINE = Path("training/model/baseline.json")
DEFAULT_OUT = Path("build/drift")
# Below this many live predictions there is no drift verdict, only "not enough data": the same
# minimum the template's rate alarms use (parameter MinimumPredictionsForRates, default 20).
MIN_PREDICTIONS = 20
BAD_LINE_EXAMPLES = 20
EXIT_OK = 0
EXIT_DRIFT = 3
EXIT_NOT_ENOUGH_DATA = 4
NOT_ENOUGH_DATA = "not_enough_data"


@dataclass(frozen=True)
class DriftResult:
    """What build_report produced: the whole drift.json document and where the files are."""

    document: dict
    out: Path

    @property
    def report_path(self) -> Path:
        return self.out / "report.html"

    @property
    def json_path(self) -> Path:
        return self.out / "drift.json"

    @property
    def drift_detected(self) -> bool:
        return self.document["verdict"]["drift_detected"]

    @property
    def exit_code(self) -> int:
        return self.document["verdict"]["exit_code"]


def build_report(
    capture: str | Path,
    results_table: str | None = None,
    baseline: str | Path | Baseline = DEFAULT_BASELINE,
    out: str | Path = DEFAULT_OUT,
    threshold: float | None = None,
    psi_threshold: float = PSI_SIGNIFICANT,
    since: str | datetime | None = None,
    s3_client=None,
    dynamodb_client=None,
    min_predictions: int = MIN_PREDICTIONS,
) -> DriftResult:
    """Compare live traffic in ``capture`` (folder or s3:// URI) with ``baseline``.

    ``threshold`` defaults to the baseline's ``threshold_default``, the model's own threshold (training.threshold);
    a baseline without one needs an explicit ``threshold``. With fewer than
    ``min_predictions`` live predictions the verdict is "not enough data" (exit code 4), not drift.
    Raises MonitoringInputError for unusable input, including no capture records at all.
    """
    if not isinstance(baseline, Baseline):
        baseline = load_baseline(baseline)
    if threshold is None:
        threshold = baseline.threshold_default
        if threshold is None:
            raise MonitoringInputError("the baseline names no threshold_default (the model's confidence threshold): "
                                       "pass --threshold")
    try:
        check_thresholds(threshold, psi_threshold)
    except ValueError as exc:
        raise MonitoringInputError(str(exc)) from None
    if min_predictions < 1:
        raise MonitoringInputError(f"the minimum number of predictions must be at least 1, got {min_predictions}")
    if isinstance(since, str):
        try:
            since = parse_time(since)
        except ValueError:
            raise MonitoringInputError(f"--since is not an ISO-8601 time: {since!r}") from None
    elif isinstance(since, datetime):
        # A naive datetime from a Python caller would make every comparison with the
        # (aware, UTC) capture times raise TypeError.
        since = as_utc(since)

    data = read_capture(capture, classes=baseline.classes, since=since, s3_client=s3_client)
    if not data.records:
        raise MonitoringInputError(
            f"no capture records found in {data.location} ({data.files} .jsonl files, {data.lines} lines, "
            f"{len(data.bad_lines)} bad, {data.before_since} before --since)"
            + (f"; first problem: {data.bad_lines[0].reason}" if data.bad_lines else "")
        )
    results = read_results(results_table, since=since, client=dynamodb_client) if results_table else None

    figures = compute_drift(
        baseline.probabilities,
        [r.probabilities for r in data.records],
        baseline.classes,
        threshold,
        psi_threshold,
    )
    times = [r.inference_time for r in data.records] + ([r.time for r in results.items] if results else [])
    width = choose_bucket_seconds(times)
    live_series = capture_series(data.records, baseline.classes, threshold, width)
    outcome_series = results_series(results.items, width) if results else []

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MonitoringInputError(f"cannot create the output folder {out}: {exc}") from None
    chart_files = {
        "baseline_vs_live": charts.baseline_vs_live(out, figures),
        "confidence_over_time": charts.confidence_over_time(out, data.records, live_series, width, threshold),
        "class_mix_over_time": charts.class_mix_over_time(out, live_series, width, figures),
        "low_confidence_rate_over_time": charts.low_confidence_over_time(
            out, live_series, outcome_series, width, figures
        ),
    }
    if outcome_series:
        chart_files["outcomes_over_time"] = charts.outcomes_over_time(out, outcome_series, width)
    if any(b["latency_p50"] is not None for b in outcome_series):
        chart_files["latency_over_time"] = charts.latency_over_time(out, outcome_series, width)

    results_summary = summarise_results(results) if results else None
    reviews_summary = summarise_reviews(results.items) if results else None
    document = {
        "generated_at": format_time(datetime.now(timezone.utc)),
        "since": format_time(since) if since else None,
        "verdict": _verdict(figures, min_predictions),
        "drift": figures.to_dict(),
        "capture": {
            "location": data.location,
            "files": data.files,
            "lines": data.lines,
            "records": len(data.records),
            "bad_lines": len(data.bad_lines),
            "before_since": data.before_since,
            "first": format_time(data.records[0].inference_time),
            "last": format_time(data.records[-1].inference_time),
            "bad_line_examples": [
                {"source": b.source, "line": b.line, "reason": b.reason} for b in data.bad_lines[:BAD_LINE_EXAMPLES]
            ],
        },
        "baseline": {
            "source": baseline.source,
            "split": baseline.split,
            "n": baseline.n,
            "classes": list(baseline.classes),
        },
        "results": results_summary,
        "reviews": reviews_summary,
        "bucket_seconds": width,
        "series": {"capture": live_series, "results": outcome_series},
        "charts": chart_files,
        "warnings": _warnings(len(data.bad_lines), results_summary),
        "method": {
            "statistic": "PSI = sum((live - baseline) * ln(live / baseline)) over bins",
            "smoothing": f"share = (count + {PSI_PSEUDOCOUNT:g}) / (n + {PSI_PSEUDOCOUNT:g} * bins) in every bin",
            "pseudocount": PSI_PSEUDOCOUNT,
            "min_predictions": min_predictions,
            "confidence_bin_edges": list(CONFIDENCE_BIN_EDGES),
            "psi_moderate": PSI_MODERATE,
            "psi_significant": PSI_SIGNIFICANT,
        },
    }
    write_json(out, document)
    write_html(out, document)
    return DriftResult(document=document, out=out)


def _verdict(figures, min_predictions: int) -> dict:
    """The drift verdict, or "not enough data" below ``min_predictions`` live predictions."""
    verdict = {"psi_max": figures.psi_max, "psi_threshold": figures.psi_threshold,
               "live_n": figures.live_n, "min_predictions": min_predictions}
    if figures.live_n < min_predictions:
        return {"flag": NOT_ENOUGH_DATA, "drift_detected": False, **verdict, "exit_code": EXIT_NOT_ENOUGH_DATA}
    return {"flag": figures.flag, "drift_detected": figures.drift_detected, **verdict,
            "exit_code": EXIT_DRIFT if figures.drift_detected else EXIT_OK}


def _warnings(bad_lines: int, results: dict | None) -> list[str]:
    warnings = []
    if bad_lines:
        warnings.append(f"{bad_lines} capture lines could not be used; see 'Bad capture lines' below.")
    if results and results["bad_items"]:
        warnings.append(f"{results['bad_items']} results-table items could not be used: {results['bad_item_reasons']}")
    return warnings
