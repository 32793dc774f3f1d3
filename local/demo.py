"""`make demo`: the whole event-driven flow on the local twin, the way a user would drive it.

Starts the twin, uploads every image under --images to the intake bucket with boto3, waits until each
has a recorded outcome, prints the routing table, writes build/demo/results.json, an HTML report and the
drift report for the demo's own traffic, then stops the twin. Exits 1 if any image has no outcome.
``--shift dark`` (or ``blur``) uploads darkened or blurred copies instead, to show a real drift detection.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from datetime import datetime
from pathlib import Path
from statistics import median

from client.console import Progress, format_columns
from client.submit import IMAGE_SUFFIXES
from contracts.labels import BICYCLE, MOTORCYCLE
from monitoring import build_report
from monitoring.report import headline
from local.demo_report import write_report
from local.shifted_images import SHIFTS, write_shifted_copies
from local.twin import ROOT, Twin, TwinSettings, free_port

DEFAULT_IMAGES = ROOT / "local" / "sample_images"
# Bicycles take nearby orders, motorcycles far ones; everything else waits for a person.
LOADING_BAYS = {BICYCLE: "near bay", MOTORCYCLE: "far bay"}


def find_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise SystemExit(f"--images {folder}: not a folder")
    images = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise SystemExit(f"--images {folder}: no {'/'.join(IMAGE_SUFFIXES)} files in it")
    return images


def expected_label(path: Path, root: Path) -> str | None:
    """The folder an image sits in names its class when it is one of ours (bicycle/, motorcycle/)."""
    parent = path.relative_to(root).parts[0] if len(path.relative_to(root).parts) > 1 else None
    return parent if parent in LOADING_BAYS else None


def routing_table(rows: list[dict]) -> str:
    """One line per image; the route says the outcome (a bay when classified, else review or failed)."""
    lines = [("image", "vehicle", "conf", "route", "latency")]
    for r in rows:
        confidence = f"{r['confidence']:.3f}" if r.get("confidence") is not None else "-"
        latency = f"{r['latency_ms'] / 1000:.2f}s" if r.get("latency_ms") is not None else "-"
        lines.append((r["key"], r.get("label") or "-", confidence, r["route"], latency))
    return format_columns(lines)


def summary_lines(rows: list[dict]) -> list[str]:
    """The run in a few lines of at most 80 columns."""
    counts = {o: sum(r["outcome"] == o for r in rows) for o in ("classified", "needs_review", "failed", "missing")}
    lines = [f"{len(rows)} images: {counts['classified']} classified, {counts['needs_review']} to review, "
             f"{counts['failed']} failed, {counts['missing']} without outcome"]
    labelled = [r for r in rows if r["expected"] and r["outcome"] == "classified"]
    if labelled:
        correct = sum(r["label"] == r["expected"] for r in labelled)
        lines.append(f"{correct}/{len(labelled)} classified images routed to the right bay")
    latencies = sorted(r["latency_ms"] for r in rows if r["latency_ms"] is not None)
    if latencies:
        lines.append(f"upload to record: median {median(latencies) / 1000:.2f}s, max {latencies[-1] / 1000:.2f}s")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local demo", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES,
                        help="folder of images (default: the shipped samples)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "demo")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for all outcomes")
    parser.add_argument("--shift", choices=sorted(SHIFTS),
                        help="upload darkened or blurred copies of the images: the drift report should detect it")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("\ninterrupted: the twin is stopped and nothing is left running.", file=sys.stderr)
        return 130


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    images = find_images(args.images)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.shift:
        shifted = write_shifted_copies(images, args.images, args.shift, args.out / f"shifted-{args.shift}")
        print(f"made {args.shift} copies of {len(images)} images in {shifted}", flush=True)
        args.images, images = shifted, find_images(shifted)
    capture_dir = args.out / "capture"
    for old in capture_dir.rglob("*.jsonl") if capture_dir.exists() else []:
        old.unlink()  # the drift report is about this run's traffic only
    log_path = args.out / "twin.log"
    # The twin's own log goes to a file; the terminal gets the progress and the table.
    log_file = logging.FileHandler(log_path, mode="w")
    log_file.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(log_file)
    root.setLevel(logging.INFO)

    print(f"starting the local twin (log: {log_path}) ...", flush=True)
    twin = Twin(TwinSettings(port=free_port(), stack_name="scones-demo", capture_dir=capture_dir))
    try:
        twin.start()
        bucket = twin.outputs["IntakeBucketName"]
        s3 = twin.client("s3")
        print(f"uploading {len(images)} images from {args.images} to s3://{bucket}/demo/ ...", flush=True)
        uploaded: dict[str, tuple[Path, float]] = {}
        for path in images:
            key = "demo/" + path.relative_to(args.images).as_posix()
            uploaded[key] = (path, time.time())
            s3.upload_file(str(path), bucket, key)
        progress = Progress("outcomes recorded", len(uploaded))
        records = twin.wait_for_results(set(uploaded), args.timeout, progress=lambda done, _: progress.update(done))
        progress.close()
        rows = []
        for key, (path, sent_at) in uploaded.items():
            item = records.get(key)
            row = {"key": key, "file": str(path), "expected": expected_label(path, args.images)}
            if item is None:
                row.update(outcome="missing", label=None, confidence=None, route="-", latency_ms=None)
            else:
                recorded = datetime.fromisoformat(item["recorded_at"].replace("Z", "+00:00")).timestamp()
                row.update(outcome=item["outcome"], label=item.get("label"), confidence=item.get("confidence"),
                           probabilities=item.get("probabilities"), reason=item.get("reason"),
                           route=LOADING_BAYS.get(item.get("label"), "?") if item["outcome"] == "classified"
                           else ("review" if item["outcome"] == "needs_review" else "failed"),
                           latency_ms=round((recorded - sent_at) * 1000, 1))
            rows.append(row)

        print()
        print(routing_table(rows))
        summary = summary_lines(rows)

        results_path = args.out / "results.json"
        results_path.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        metric_lines = len(twin.metrics)
        twin.endpoint.stop()  # flushes the data capture for the drift report
        drift = drift_report(twin, capture_dir, args.out / "drift")
        threshold = float(twin.deployment.stack.parameters["ConfidenceThreshold"])
        report_path = write_report(rows, args.out, threshold=threshold, summary="; ".join(summary),
                                   drift_report=drift.report_path if drift else None)
    finally:
        twin.stop()
        root.removeHandler(log_file)
        log_file.close()

    wall = time.monotonic() - started
    print()
    print("\n".join(summary))
    print(f"{metric_lines} EMF metric documents from the functions (log: {log_path})")
    if drift:
        print(f"drift: {headline(drift.document)}")
        for warning in drift.document.get("warnings", []):
            print(f"  note: {warning}")
    print(f"results: {results_path}\nreport:  {report_path}")
    if drift:
        print(f"drift:   {drift.report_path}")
    print(f"wall time: {wall:.1f}s")
    return 1 if any(r["outcome"] == "missing" for r in rows) else 0


def drift_report(twin: Twin, capture_dir: Path, out: Path):
    from monitoring.errors import MonitoringInputError

    try:
        return build_report(capture_dir, results_table=twin.outputs["ResultsTableName"], out=out,
                            dynamodb_client=twin.client("dynamodb"))
    except MonitoringInputError as exc:
        print(f"drift report skipped: {exc}")
        return None


if __name__ == "__main__":
    sys.exit(main())
