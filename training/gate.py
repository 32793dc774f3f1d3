"""The promotion gate: a candidate model replaces the live one only if it is not worse.

    python -m training gate --champion training/model --challenger build/model
    python -m training gate ... --reviewed-dir data/reviewed/train --out build/gate.json

Both models score the same labelled images: the validation part of --split-from (the hold-out train.py
takes from a training folder: per class, the first --val-fraction by sha256 of class/file name, so
neither model trained on it when both trained on that folder), plus any extra --data-dir, plus reviewers'
labels from --reviewed-dir except the photos either model trained on (metadata.json lists them). The
challenger passes when, within the tolerances, it is not worse on
- accuracy;
- automation: the share of images at or above the confidence threshold, which the workflow routes without
  a person;
- calibration: expected calibration error (lower is better).
The comparison is printed, written as JSON (stored with the model package by `python -m training sagemaker register`),
and the exit code says the verdict: 0 accepted, 3 refused, 2 bad input.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import pathlib
import sys
from dataclasses import asdict, dataclass

import numpy as np

from .evaluate import THRESHOLD_DEFAULT, DatasetError, compute_metrics, list_labelled
from .inference import Classifier, InvalidImageError, ModelLoadError
from .preprocess import REVIEWED_MARKER, STAGED_DATA, stratified_split

EXIT_ACCEPTED, EXIT_REFUSED, EXIT_USAGE = 0, 3, 2


@dataclass(frozen=True)
class Tolerances:
    """How much worse the challenger may be on each criterion (absolute)."""
    accuracy: float = 0.0
    automation: float = 0.02
    ece: float = 0.01


# (metric, which way is better, tolerance field)
CRITERIA = (("accuracy", +1, "accuracy"), ("share_above_threshold", +1, "automation"), ("ece", -1, "ece"))


def file_sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def validation_part(folder: pathlib.Path, classes: list[str], fraction: float) -> list[tuple[pathlib.Path, int]]:
    """The hold-out train.py takes from ``folder`` (the same rule: preprocess.stratified_split)."""
    return stratified_split(list_labelled(folder, classes), fraction)[1]


def reviewed_items(folder: pathlib.Path, classes: list[str], trained_on: set[str]) -> tuple[list, int]:
    """Reviewers' labels neither model trained on, and how many were left out because one did."""
    items = [(f, classes.index(d.name)) for d in sorted(folder.iterdir()) if d.is_dir() and d.name in classes
             for f in sorted(d.iterdir()) if f.is_file()]
    kept = [(f, label) for f, label in items if file_sha256(f) not in trained_on]
    return kept, len(items) - len(kept)


def predict(classifier: Classifier, items: list[tuple[pathlib.Path, int]]) -> tuple[np.ndarray, np.ndarray]:
    probs, labels = [], []
    for path, label in items:
        try:
            probs.append(classifier.predict_array(classifier.preprocess(path.read_bytes())[None])[0])
            labels.append(label)
        except (InvalidImageError, OSError):
            continue  # unreadable for both models alike: it cannot favour either
    return np.asarray(probs), np.asarray(labels)


def mcnemar_p(champion_right: np.ndarray, challenger_right: np.ndarray) -> float:
    """Exact two-sided McNemar p-value: are the two models' errors on the same images different?"""
    b = int((champion_right & ~challenger_right).sum())
    c = int((~champion_right & challenger_right).sum())
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def compare(champion_dir: pathlib.Path, challenger_dir: pathlib.Path, items: list[tuple[pathlib.Path, int]],
            threshold: float = THRESHOLD_DEFAULT, tolerances: Tolerances = Tolerances()) -> dict:
    champion, challenger = Classifier.load(champion_dir, threads=None), Classifier.load(challenger_dir, threads=None)
    if champion.classes != challenger.classes:
        raise DatasetError(f"the models' classes differ: {champion.classes} vs {challenger.classes}")
    classes = champion.classes
    p_old, y_old = predict(champion, items)
    p_new, y_new = predict(challenger, items)
    if len(y_old) == 0 or not np.array_equal(y_old, y_new):
        raise DatasetError("no image was readable by both models")
    old = compute_metrics(p_old, y_old, classes, threshold)
    new = compute_metrics(p_new, y_new, classes, threshold)
    checks = []
    for metric, better, tolerance_name in CRITERIA:
        tolerance = getattr(tolerances, tolerance_name)
        delta = new[metric] - old[metric]
        checks.append({"criterion": metric, "champion": old[metric], "challenger": new[metric],
                       "delta": round(delta, 6), "tolerance": tolerance, "passed": better * delta >= -tolerance - 1e-12})
    right_old, right_new = p_old.argmax(1) == y_old, p_new.argmax(1) == y_new
    return {
        "accepted": all(c["passed"] for c in checks),
        "checks": checks,
        "n": int(len(y_old)),
        "threshold": threshold,
        "tolerances": asdict(tolerances),
        "paired": {"only_champion_right": int((right_old & ~right_new).sum()),
                   "only_challenger_right": int((~right_old & right_new).sum()),
                   "mcnemar_p": round(mcnemar_p(right_old, right_new), 6)},
        "champion": {"model_dir": str(champion_dir), "model_sha256": champion.metadata.get("model_sha256"), **old},
        "challenger": {"model_dir": str(challenger_dir), "model_sha256": challenger.metadata.get("model_sha256"), **new},
    }


def render(result: dict) -> str:
    lines = [f"{'criterion':<24}{'champion':>10}{'challenger':>12}{'delta':>9}{'tolerance':>11}  verdict"]
    for c in result["checks"]:
        lines.append(f"{c['criterion']:<24}{c['champion']:>10.4f}{c['challenger']:>12.4f}{c['delta']:>+9.4f}"
                     f"{c['tolerance']:>11.3f}  {'ok' if c['passed'] else 'WORSE'}")
    paired = result["paired"]
    lines.append(f"{result['n']} images ({result['sources']}); only the champion right on "
                 f"{paired['only_champion_right']}, only the challenger on {paired['only_challenger_right']} "
                 f"(McNemar p = {paired['mcnemar_p']:.3g})")
    lines.append("ACCEPTED: the challenger is not worse" if result["accepted"] else
                 "REFUSED: the challenger is worse on " + ", ".join(c["criterion"] for c in result["checks"]
                                                                     if not c["passed"]))
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser, champion: bool = True) -> None:
    """The gate's data and tolerance options (shared with `python -m training sagemaker promote`)."""
    if champion:
        p.add_argument("--champion", type=pathlib.Path, default=pathlib.Path("training/model"),
                       help="the live model's directory (default: the shipped training/model)")
    p.add_argument("--challenger", type=pathlib.Path, required=True, help="the candidate's directory, e.g. build/model")
    p.add_argument("--split-from", type=pathlib.Path, default=pathlib.Path(STAGED_DATA) / "train",
                   help="training folder whose validation hold-out both models are scored on (default: data/staged/train)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="the hold-out share train.py used (default 0.2)")
    p.add_argument("--data-dir", type=pathlib.Path, action="append", default=[],
                   help="another labelled folder neither model trained on ({class}/*); repeatable")
    p.add_argument("--reviewed-dir", type=pathlib.Path,
                   help="reviewers' labels (stage_data --from-manifest): the photos neither model trained on count")
    p.add_argument("--threshold", type=float, default=THRESHOLD_DEFAULT, help="the workflow's confidence threshold")
    p.add_argument("--max-accuracy-drop", type=float, default=Tolerances.accuracy)
    p.add_argument("--max-automation-drop", type=float, default=Tolerances.automation)
    p.add_argument("--max-ece-rise", type=float, default=Tolerances.ece)


def run(args: argparse.Namespace, champion: pathlib.Path) -> dict:
    """The comparison the options ask for; raises DatasetError, ModelLoadError or FileNotFoundError."""
    classes = Classifier.load(champion, threads=1).classes
    items = validation_part(args.split_from, classes, args.val_fraction)
    sources = [f"{len(items)} validation from {args.split_from}"]
    for folder in args.data_dir:
        extra = list_labelled(folder, classes)
        items += extra
        sources.append(f"{len(extra)} from {folder}")
    if args.reviewed_dir:
        if not (args.reviewed_dir / REVIEWED_MARKER).exists():
            raise DatasetError(f"{args.reviewed_dir} is not a staged folder of reviewers' labels "
                               "(python -m training stage-data --from-manifest)")
        trained_on = set()
        for model in (champion, args.challenger):
            meta = json.loads((model / "metadata.json").read_text())
            trained_on |= set(meta.get("data", {}).get("reviewed_files_sha256") or [])
        extra, left_out = reviewed_items(args.reviewed_dir, classes, trained_on)
        items += extra
        sources.append(f"{len(extra)} reviewed ({left_out} left out: a model trained on them)")
    result = compare(champion, args.challenger, items, args.threshold,
                     Tolerances(args.max_accuracy_drop, args.max_automation_drop, args.max_ece_rise))
    result["sources"] = ", ".join(sources)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training gate", description=__doc__.splitlines()[0])
    add_arguments(p)
    p.add_argument("--out", type=pathlib.Path, help="write the comparison here as JSON")
    args = p.parse_args(argv)
    try:
        result = run(args, args.champion)
    except (DatasetError, ModelLoadError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(render(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"comparison: {args.out}")
    return EXIT_ACCEPTED if result["accepted"] else EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
