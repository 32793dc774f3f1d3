"""Write the report files: ``drift.json`` (the figures) and ``report.html`` rendered from it.

The HTML page (templates/report.html, autoescaped) is self-contained (inline CSS, no scripts or remote
assets); its charts are the PNG files in the same folder, referenced by relative name, so the folder can be
copied or published as one artifact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from monitoring.reviews import accuracy_line

FLAG_TEXT = {"none": "No drift", "moderate": "Moderate drift", "significant": "Significant drift",
             "not_enough_data": "Not enough data for a drift verdict"}
FLAG_COLOUR = {"none": "#2e7d32", "moderate": "#f9a825", "significant": "#c62828", "not_enough_data": "#607d8b"}
CHART_TITLES = {
    "baseline_vs_live": "Baseline vs live distributions (what the PSIs compare)",
    "confidence_over_time": "Confidence over time",
    "class_mix_over_time": "Class mix over time",
    "low_confidence_rate_over_time": "Low-confidence rate over time",
    "outcomes_over_time": "Pipeline outcomes over time",
    "latency_over_time": "End-to-end latency over time",
}


def write_json(out: Path, document: dict) -> Path:
    path = out / "drift.json"
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def headline(document: dict) -> str:
    """One line: the verdict and the figure behind it (also printed by the CLI)."""
    verdict = document["verdict"]
    text = FLAG_TEXT[verdict["flag"]]
    if verdict["flag"] == "not_enough_data":
        return (f"{text}: {verdict['live_n']} live predictions, fewer than the {verdict['min_predictions']} needed "
                f"(largest PSI {verdict['psi_max']:.3f}, not a verdict)")
    relation = "beyond" if verdict["drift_detected"] else "within"
    return f"{text}: largest PSI {verdict['psi_max']:.3f}, {relation} the alert threshold {verdict['psi_threshold']:g}"


def write_html(out: Path, document: dict) -> Path:
    path = out / "report.html"
    path.write_text(render_html(document), encoding="utf-8")
    return path


def render_html(doc: dict) -> str:
    """The report page: each section's figures are prepared below, the page's markup is the template's."""
    capture, verdict = doc["capture"], doc["verdict"]
    return _TEMPLATE.render(
        generated_at=doc["generated_at"], first=capture["first"], last=capture["last"], since=doc.get("since"),
        colour=FLAG_COLOUR[verdict["flag"]], headline=headline(doc), warnings=doc["warnings"],
        figures=_figures_table(doc), results=_results_section(doc.get("results")),
        reviews=_reviews_section(doc.get("reviews")),
        charts=[(CHART_TITLES.get(name, name), file) for name, file in doc["charts"].items()],
        inputs=_inputs_table(doc), bad_lines=_bad_lines_table(capture), method=_method(doc),
    )


@dataclass(frozen=True)
class Table:
    """A table's text, cell by cell; the template escapes it and right-aligns numbers past the first column."""

    headers: list[str]
    rows: list[list[str]]


def _figures_table(doc: dict) -> Table:
    """Baseline against live: the class mix, both PSIs, the low-confidence rate, the counts."""
    drift, split = doc["drift"], doc["baseline"]["split"]
    rows = [[f"Predicted share: {name}", _pct(base), _pct(live), "", ""]
            for name, base, live in zip(drift["classes"], drift["baseline_class_mix"], drift["live_class_mix"])]
    rows += [
        ["Predicted class mix", "", "", f"{drift['psi_class_mix']:.4f}", drift["flag_class_mix"]],
        ["Confidence distribution", "", "", f"{drift['psi_confidence']:.4f}", drift["flag_confidence"]],
        [f"Low-confidence rate (top probability < {drift['threshold']:g})",
         _pct(drift["baseline_low_confidence_rate"]), _pct(drift["live_low_confidence_rate"]), "", ""],
        ["Predictions", str(drift["baseline_n"]), str(drift["live_n"]), "", ""],
    ]
    return Table(["Figure", f"Baseline ({split})", "Live", "PSI", "Flag"], rows)


def _results_section(results: dict | None) -> dict | None:
    """The pipeline's outcomes from the results table: counts, review rate, latency, failure reasons."""
    if not results:
        return None
    latency = results["latency_seconds"] or {}
    rows = [[outcome.replace("_", " "), str(n)] for outcome, n in results["outcomes"].items()]
    rows.append(["needs_review rate (of scored images)", _pct(results["needs_review_rate"])])
    rows += [[f"end-to-end latency {name}", f"{latency[name]:.2f} s" if name in latency else "n/a"]
             for name in ("p50", "p95", "max")]
    failures = [[reason, str(n)] for reason, n in results["failure_reasons"].items()]
    return {"table": results["table"], "figures": Table(["Figure", "Value"], rows),
            "failures": Table(["Reason", "Count"], failures) if failures else None}


def _reviews_section(reviews: dict | None) -> dict | None:
    """Accuracy against reviewers: the audit estimate, the confusion matrix, review latency."""
    if not reviews:
        return None
    audit, latency = reviews["audit"], reviews["latency_seconds"] or {}
    interval = " to ".join(_pct(v) for v in audit["interval_95"]) if audit["interval_95"] else "n/a"
    rows = [["Audit decisions (confident images sampled by key)", str(audit["n"])],
            ["Audit accuracy (reviewer chose the model's label)", _pct(audit["accuracy"])],
            ["95% interval (Wilson)", interval],
            ["Decisions, all reasons", str(reviews["decided"])],
            ["Waiting for a decision", str(reviews["waiting"])]]
    if reviews["oldest_waiting_seconds"] is not None:
        rows.append(["Oldest waiting", f"{reviews['oldest_waiting_seconds'] / 60:.1f} min"])
    rows += [[f"Time to decision {name}", f"{latency[name]:.1f} s" if name in latency else "n/a"]
             for name in ("p50", "p95", "max")]
    return {"summary": accuracy_line(reviews), "figures": Table(["Figure", "Value"], rows),
            "confusion": _confusion_table(reviews["confusion"])}


def _confusion_table(confusion: list[dict]) -> Table | None:
    """The model's label (rows) against the reviewer's (columns), over every decided image."""
    if not confusion:
        return None
    models = sorted({c["model"] for c in confusion})
    people = sorted({c["person"] for c in confusion})
    counts = {(c["model"], c["person"]): c["n"] for c in confusion}
    return Table(["Model \\ reviewer", *people], [[m, *(str(counts.get((m, p), 0)) for p in people)] for m in models])


def _inputs_table(doc: dict) -> Table:
    capture, baseline, results = doc["capture"], doc["baseline"], doc.get("results")
    read = (f"{capture['location']}: {capture['files']} files, {capture['lines']} lines, "
            f"{capture['records']} records used, {capture['bad_lines']} bad lines, "
            f"{capture['before_since']} before --since")
    compared = (f"{baseline['source'] or '(in memory)'}: {baseline['n']} {baseline['split']} predictions, "
                f"classes {', '.join(baseline['classes'])}")
    table = results["table"] if results else "not read (no --results-table)"
    return Table(["Input", "Detail"], [["Data capture", read], ["Baseline", compared], ["Results table", table]])


def _bad_lines_table(capture: dict) -> Table:
    return Table(["File:line", "Reason"], [[f"{b['source']}:{b['line']}", b["reason"]]
                                           for b in capture["bad_line_examples"]])


def _method(doc: dict) -> dict:
    """The figures the method paragraph quotes, formatted."""
    method = doc["method"]
    return {"statistic": method["statistic"], "smoothing": method["smoothing"],
            "bin_edges": ", ".join(f"{e:g}" for e in method["confidence_bin_edges"]),
            "moderate": f"{method['psi_moderate']:g}", "significant": f"{method['psi_significant']:g}",
            "psi_threshold": f"{doc['verdict']['psi_threshold']:g}", "min_predictions": method["min_predictions"]}


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _looks_numeric(cell: str) -> bool:
    return bool(cell) and (cell[0].isdigit() or cell[0] == "-")


_ENVIRONMENT = Environment(loader=PackageLoader("monitoring", "templates"), autoescape=True, undefined=StrictUndefined,
                           trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
_ENVIRONMENT.tests["numeric"] = _looks_numeric
_TEMPLATE = _ENVIRONMENT.get_template("report.html")
