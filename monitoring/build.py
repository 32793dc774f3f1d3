"""build_report: read the inputs, compute the drift figures, write report.html, drift.json and charts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from contracts.times import as_utc, format_time, parse_time
from monitoring import charts
from monitoring.baseline import Baseline, load_baseline
from monitoring.capture import CaptureData, read_capture
from monitoring.drift import (
    CONFIDENCE_BIN_EDGES,
    PSI_MODERATE,
    PSI_PSEUDOCOUNT,
    PSI_SIGNIFICANT,
    DriftFigures,
    check_thresholds,
    compute_drift,
)
from monitoring.errors import MonitoringInputError
from monitoring.report import write_html, write_json
from monitoring.results import ResultsData, read_results, summarise_results
from monitoring.reviews import summarise_reviews
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
    _check_settings(threshold, psi_threshold, min_predictions)
    since = _since(since)

    data = _read_capture(capture, baseline, since, s3_client)
    results = read_results(results_table, since=since, client=dynamodb_client) if results_table else None

    figures = compute_drift(baseline.probabilities, [r.probabilities for r in data.records], baseline.classes,
                            threshold, psi_threshold)
    series = _Series.of(data, results, baseline, threshold)

    out = _output_folder(Path(out))
    chart_files = _draw_charts(out, figures, data, series, threshold)

    results_summary = summarise_results(results) if results else None
    document = {
        "generated_at": format_time(datetime.now(timezone.utc)),
        "since": format_time(since) if since else None,
        "verdict": _verdict(figures, min_predictions),
        "drift": figures.to_dict(),
        "capture": _capture_section(data),
        "baseline": {
            "source": baseline.source,
            "split": baseline.split,
            "n": baseline.n,
            "classes": list(baseline.classes),
        },
        "results": results_summary,
        "reviews": summarise_reviews(results.items) if results else None,
        "bucket_seconds": series.width,
        "series": {"capture": series.capture, "results": series.results},
        "charts": chart_files,
        "warnings": _warnings(len(data.bad_lines), results_summary),
        "method": _method(min_predictions),
    }
    write_json(out, document)
    write_html(out, document)
    return DriftResult(document=document, out=out)


def _check_settings(threshold: float, psi_threshold: float, min_predictions: int) -> None:
    try:
        check_thresholds(threshold, psi_threshold)
    except ValueError as exc:
        raise MonitoringInputError(str(exc)) from None
    if min_predictions < 1:
        raise MonitoringInputError(f"the minimum number of predictions must be at least 1, got {min_predictions}")


def _since(since: str | datetime | None) -> datetime | None:
    """--since as an aware UTC time, whether given as ISO-8601 text or as a datetime."""
    if isinstance(since, str):
        try:
            return parse_time(since)
        except ValueError:
            raise MonitoringInputError(f"--since is not an ISO-8601 time: {since!r}") from None
    if isinstance(since, datetime):
        # A naive datetime from a Python caller would make every comparison with the
        # (aware, UTC) capture times raise TypeError.
        return as_utc(since)
    return since


def _read_capture(capture: str | Path, baseline: Baseline, since: datetime | None, s3_client) -> CaptureData:
    """The capture records; none at all is an input error that says what was read and why nothing was usable."""
    data = read_capture(capture, classes=baseline.classes, since=since, s3_client=s3_client)
    if not data.records:
        raise MonitoringInputError(
            f"no capture records found in {data.location} ({data.files} .jsonl files, {data.lines} lines, "
            f"{len(data.bad_lines)} bad, {data.before_since} before --since)"
            + (f"; first problem: {data.bad_lines[0].reason}" if data.bad_lines else "")
        )
    return data


@dataclass(frozen=True)
class _Series:
    """Live traffic in time buckets of one width: the capture's predictions and the results table's outcomes."""

    width: int
    capture: list[dict]
    results: list[dict]

    @classmethod
    def of(cls, data: CaptureData, results: ResultsData | None, baseline: Baseline, threshold: float) -> _Series:
        times = [r.inference_time for r in data.records] + ([r.time for r in results.items] if results else [])
        width = choose_bucket_seconds(times)
        return cls(width=width, capture=capture_series(data.records, baseline.classes, threshold, width),
                   results=results_series(results.items, width) if results else [])


def _output_folder(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MonitoringInputError(f"cannot create the output folder {out}: {exc}") from None
    return out


def _draw_charts(out: Path, figures: DriftFigures, data: CaptureData, series: _Series, threshold: float) -> dict:
    """Every chart the data allows, as {name: file name in ``out``}."""
    width = series.width
    chart_files = {
        "baseline_vs_live": charts.baseline_vs_live(out, figures),
        "confidence_over_time": charts.confidence_over_time(out, data.records, series.capture, width, threshold),
        "class_mix_over_time": charts.class_mix_over_time(out, series.capture, width, figures),
        "low_confidence_rate_over_time": charts.low_confidence_over_time(
            out, series.capture, series.results, width, figures
        ),
    }
    if series.results:
        chart_files["outcomes_over_time"] = charts.outcomes_over_time(out, series.results, width)
    if any(b["latency_p50"] is not None for b in series.results):
        chart_files["latency_over_time"] = charts.latency_over_time(out, series.results, width)
    return chart_files


def _capture_section(data: CaptureData) -> dict:
    return {
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
    }


def _method(min_predictions: int) -> dict:
    """How the figures were computed, stated in the document itself."""
    return {
        "statistic": "PSI = sum((live - baseline) * ln(live / baseline)) over bins",
        "smoothing": f"share = (count + {PSI_PSEUDOCOUNT:g}) / (n + {PSI_PSEUDOCOUNT:g} * bins) in every bin",
        "pseudocount": PSI_PSEUDOCOUNT,
        "min_predictions": min_predictions,
        "confidence_bin_edges": list(CONFIDENCE_BIN_EDGES),
        "psi_moderate": PSI_MODERATE,
        "psi_significant": PSI_SIGNIFICANT,
    }


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
