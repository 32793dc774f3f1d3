"""Write the report files: ``drift.json`` (the figures) and ``report.html`` rendered from it.

The HTML page is self-contained (inline CSS, no scripts or remote assets); its charts are
the PNG files in the same folder, referenced by relative name, so the folder can be
copied or published as one artifact.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

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

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1000px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem} .muted{color:#666}
.verdict{padding:1rem 1.2rem;border-radius:6px;color:#fff;font-size:1.25rem;margin:1rem 0}
table{border-collapse:collapse;margin:.5rem 0 1.5rem} th,td{border:1px solid #ddd;padding:.35rem .6rem;text-align:left}
th{background:#f5f5f5} td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #eee;margin:.3rem 0 1.2rem} code{background:#f5f5f5;padding:0 .2rem}
.warn{background:#fff8e1;border-left:4px solid #f9a825;padding:.5rem .8rem;margin:.4rem 0}
"""


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
    drift, capture, baseline = doc["drift"], doc["capture"], doc["baseline"]
    verdict = doc["verdict"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>Drift report: vehicle classifier</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Drift report: vehicle classifier</h1>",
        f'<p class="muted">Generated {_e(doc["generated_at"])}. Live traffic '
        f"{_e(capture['first'])} to {_e(capture['last'])}"
        + (f" (since {_e(doc['since'])})" if doc.get("since") else "")
        + ".</p>",
        f'<div class="verdict" style="background:{FLAG_COLOUR[verdict["flag"]]}">{_e(headline(doc))}</div>',
    ]
    parts += [f'<div class="warn">{_e(w)}</div>' for w in doc["warnings"]]

    parts.append("<h2>Figures</h2>")
    rows = [
        (f"Predicted share: {_e(name)}", _pct(b), _pct(l), "", "")
        for name, b, l in zip(drift["classes"], drift["baseline_class_mix"], drift["live_class_mix"])
    ]
    rows.append(("Predicted class mix", "", "", f"{drift['psi_class_mix']:.4f}", drift["flag_class_mix"]))
    rows.append(("Confidence distribution", "", "", f"{drift['psi_confidence']:.4f}", drift["flag_confidence"]))
    rows.append(
        (
            f"Low-confidence rate (top probability &lt; {drift['threshold']:g})",
            _pct(drift["baseline_low_confidence_rate"]),
            _pct(drift["live_low_confidence_rate"]),
            "",
            "",
        )
    )
    rows.append(("Predictions", str(drift["baseline_n"]), str(drift["live_n"]), "", ""))
    parts.append(_table(["Figure", f"Baseline ({_e(baseline['split'])})", "Live", "PSI", "Flag"], rows, raw_first=True))

    results = doc.get("results")
    if results:
        parts.append(f"<h2>Pipeline results (table <code>{_e(results['table'])}</code>)</h2>")
        latency = results["latency_seconds"] or {}
        rows = [(o.replace("_", " "), str(n)) for o, n in results["outcomes"].items()]
        rows.append(("needs_review rate (of scored images)", _pct(results["needs_review_rate"])))
        for name in ("p50", "p95", "max"):
            rows.append((f"end-to-end latency {name}", f"{latency[name]:.2f} s" if name in latency else "n/a"))
        parts.append(_table(["Figure", "Value"], rows))
        if results["failure_reasons"]:
            parts.append("<h3>Failure reasons</h3>")
            parts.append(_table(["Reason", "Count"], [(r, str(n)) for r, n in results["failure_reasons"].items()]))

    reviews = doc.get("reviews")
    if reviews:
        parts += _reviews_section(reviews)

    parts.append("<h2>Charts</h2>")
    for name, file in doc["charts"].items():
        parts.append(f"<h3>{_e(CHART_TITLES.get(name, name))}</h3>")
        parts.append(f'<img src="{_e(file)}" alt="{_e(CHART_TITLES.get(name, name))}">')

    parts.append("<h2>Inputs</h2>")
    parts.append(
        _table(
            ["Input", "Detail"],
            [
                ("Data capture", f"{capture['location']}: {capture['files']} files, {capture['lines']} lines, "
                 f"{capture['records']} records used, {capture['bad_lines']} bad lines, "
                 f"{capture['before_since']} before --since"),
                ("Baseline", f"{baseline['source'] or '(in memory)'}: {baseline['n']} {baseline['split']} predictions, "
                 f"classes {', '.join(baseline['classes'])}"),
                ("Results table", results["table"] if results else "not read (no --results-table)"),
            ],
        )
    )
    if capture["bad_line_examples"]:
        parts.append(f"<h3>Bad capture lines (first {len(capture['bad_line_examples'])})</h3>")
        parts.append(
            _table(
                ["File:line", "Reason"],
                [(f"{b['source']}:{b['line']}", b["reason"]) for b in capture["bad_line_examples"]],
            )
        )

    method = doc["method"]
    parts += [
        "<h2>Method</h2>",
        f"<p>Population stability index: <code>{_e(method['statistic'])}</code>, over the predicted-class "
        f"mix (one bin per class) and the top-class confidence in the bins "
        f"<code>{_e(', '.join(f'{e:g}' for e in method['confidence_bin_edges']))}</code> (left-closed, the last "
        f"closed). Both distributions are estimated from counts with additive smoothing, "
        f"<code>{_e(method['smoothing'])}</code>, so an empty bin counts as half an observation rather than "
        f"as impossible. Reading: below {method['psi_moderate']:g} no "
        f"drift, {method['psi_moderate']:g} to {method['psi_significant']:g} moderate, above "
        f"{method['psi_significant']:g} significant. The alert (exit code 3) fires when either PSI is above "
        f"{verdict['psi_threshold']:g}; with fewer than {method['min_predictions']} live predictions there is no "
        f"verdict (exit code 4).</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _reviews_section(reviews: dict) -> list[str]:
    """Accuracy against reviewers: the audit estimate, the confusion matrix, review latency."""
    parts = ["<h2>Accuracy against reviewers</h2>", f"<p>{_e(accuracy_line(reviews))}.</p>"]
    audit, latency = reviews["audit"], reviews["latency_seconds"] or {}
    rows = [("Audit decisions (confident images sampled by key)", str(audit["n"])),
            ("Audit accuracy (reviewer chose the model's label)", _pct(audit["accuracy"])),
            ("95% interval (Wilson)", " to ".join(_pct(v) for v in audit["interval_95"]) if audit["interval_95"] else "n/a"),
            ("Decisions, all reasons", str(reviews["decided"])),
            ("Waiting for a decision", str(reviews["waiting"]))]
    if reviews["oldest_waiting_seconds"] is not None:
        rows.append(("Oldest waiting", f"{reviews['oldest_waiting_seconds'] / 60:.1f} min"))
    for name in ("p50", "p95", "max"):
        rows.append((f"Time to decision {name}", f"{latency[name]:.1f} s" if name in latency else "n/a"))
    parts.append(_table(["Figure", "Value"], rows))
    if reviews["confusion"]:
        models = sorted({c["model"] for c in reviews["confusion"]})
        people = sorted({c["person"] for c in reviews["confusion"]})
        counts = {(c["model"], c["person"]): c["n"] for c in reviews["confusion"]}
        parts.append("<h3>Decided images: model's label (rows) against the reviewer's (columns)</h3>")
        parts.append(_table(["Model \\ reviewer"] + [_e(p) for p in people],
                            [[m] + [str(counts.get((m, p), 0)) for p in people] for m in models]))
    return parts


def _e(value) -> str:
    return escape(str(value))


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _table(headers, rows, raw_first: bool = False) -> str:
    """An HTML table; every cell is escaped except the first column when ``raw_first``
    (used for labels built here that carry an entity)."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            text = cell if (raw_first and i == 0) else _e(cell)
            cls = ' class="num"' if i > 0 and _looks_numeric(cell) else ""
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>" + "".join(body) + "</table>"


def _looks_numeric(cell: str) -> bool:
    return bool(cell) and (cell[0].isdigit() or cell[0] == "-")
