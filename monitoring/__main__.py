"""CLI: python -m monitoring --capture DIR|s3://bucket/prefix [options].

Exit codes: 0 no drift beyond --psi-threshold, 3 drift beyond it, 4 not enough live predictions
for a verdict (fewer than --min-predictions), 2 bad usage or input (so a scheduler or CI job can
alert on 3 and page on 2).
"""

from __future__ import annotations

import argparse
import sys

from monitoring.build import (
    DEFAULT_BASELINE,
    DEFAULT_OUT,
    MIN_PREDICTIONS,
    DriftResult,
    build_report,
)
from monitoring.drift import PSI_SIGNIFICANT
from monitoring.errors import MonitoringInputError
from monitoring.report import headline
from monitoring.reviews import accuracy_line

EXIT_USAGE = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring",
        description="Drift report for the vehicle classifier: live data capture vs the training baseline.",
        epilog="Exit codes: 0 no drift beyond --psi-threshold, 3 drift beyond it, 4 not enough data for a "
               "verdict, 2 usage or input error.",
    )
    parser.add_argument("--capture", required=True, metavar="DIR|s3://bucket/prefix",
                        help="data capture folder or S3 prefix; every *.jsonl below it is read")
    parser.add_argument("--results-table", metavar="NAME", help="DynamoDB results table (optional)")
    parser.add_argument("--baseline", default=str(DEFAULT_BASELINE), metavar="PATH",
                        help="baseline.json saved at training time (default: %(default)s)")
    parser.add_argument("--threshold", type=float, metavar="P",
                        help="review threshold on the top probability (default: the baseline's "
                             "threshold_default, the model's own threshold)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), metavar="DIR",
                        help="output folder for report.html, drift.json and charts (default: %(default)s)")
    parser.add_argument("--psi-threshold", type=float, default=PSI_SIGNIFICANT, metavar="PSI",
                        help="exit 3 when either PSI is above this (default: %(default)s)")
    parser.add_argument("--min-predictions", type=int, default=MIN_PREDICTIONS, metavar="N",
                        help="fewer live predictions than this give 'not enough data' (exit 4), not a verdict "
                             "(default: %(default)s, the alarms' MinimumPredictionsForRates)")
    parser.add_argument("--since", metavar="ISO",
                        help="only traffic at or after this time, e.g. 2026-11-21T00:00:00Z")
    return parser.parse_args(argv)


def summary(result: DriftResult) -> str:
    """A short plain-text table of the figures, for the terminal and CI logs."""
    doc = result.document
    drift, capture, results = doc["drift"], doc["capture"], doc["results"]
    rows = [("", "baseline", "live", "PSI", "flag")]
    for name, base, live in zip(drift["classes"], drift["baseline_class_mix"], drift["live_class_mix"]):
        rows.append((f"predicted {name}", f"{base:.1%}", f"{live:.1%}", "", ""))
    rows.append(("class mix", "", "", f"{drift['psi_class_mix']:.3f}", drift["flag_class_mix"]))
    rows.append(("confidence", "", "", f"{drift['psi_confidence']:.3f}", drift["flag_confidence"]))
    rows.append((f"below {drift['threshold']:g}", f"{drift['baseline_low_confidence_rate']:.1%}",
                 f"{drift['live_low_confidence_rate']:.1%}", "", ""))
    rows.append(("predictions", str(drift["baseline_n"]), str(drift["live_n"]), "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             .rstrip() for row in rows]
    lines.append(f"capture: {capture['files']} files, {capture['records']} records, "
                 f"{capture['bad_lines']} bad lines, {capture['first']} to {capture['last']}")
    if results:
        outcomes = ", ".join(f"{n} {o}" for o, n in results["outcomes"].items())
        lines.append(f"results: {outcomes}")
    if doc.get("reviews"):
        lines.append(accuracy_line(doc["reviews"]))
    lines += [f"warning: {w}" for w in doc["warnings"]]
    lines.append(headline(doc))
    lines.append(f"report: {result.report_path}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = build_report(
            capture=args.capture,
            results_table=args.results_table,
            baseline=args.baseline,
            out=args.out,
            threshold=args.threshold,
            psi_threshold=args.psi_threshold,
            since=args.since,
            min_predictions=args.min_predictions,
        )
    except MonitoringInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(summary(result))
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
