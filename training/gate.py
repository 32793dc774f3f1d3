"""The promotion gate: a candidate model replaces the live one only if it meets the targets and is not worse.

    python -m training gate --champion training/model --challenger build/model
    python -m training gate ... --pick-threshold --reviewed-dir data/reviewed/train --out build/gate.json

Both models score the same labelled images: the validation part of --split-from (the hold-out train.py
takes from a training folder: per class, the first --val-fraction by sha256 of class/file name, so
neither model trained on it when both trained on that folder), plus any extra --data-dir, plus reviewers'
labels from --reviewed-dir except the photos either model trained on (metadata.json lists them). Each model
is scored at its own confidence threshold (metadata.json, training.threshold); --pick-threshold first picks
the challenger's on these images (the lowest meeting --precision-target) and writes it into its metadata.json
and baseline.json. The challenger passes when
- accuracy: it is not worse than the champion (exact McNemar test, refused when p < --mcnemar-alpha), and
  at least --min-accuracy;
- automation (share of images at or above its threshold, decided without a person) is at least
  --min-automation and at most --max-automation-drop below the champion's;
- precision (accuracy of those automatic decisions) is at least --precision-target;
- calibration: expected calibration error at most --max-ece and at most --max-ece-rise above the champion's;
- label agreement with the champion is at least --min-agreement, when the challenger is a compressed copy of
  the champion (metadata "derived_from" names the champion's model_sha256, e.g. an int8 model); a retrained
  model is meant to change labels, so its agreement is reported only.
The defaults are issue 20's targets. The comparison is printed, written as JSON (stored with the model package
by `python -m training sagemaker register`), and the exit code says the verdict: 0 accepted, 3 refused, 2 bad
input.
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

from . import threshold as thresholds
from .evaluate import DatasetError, compute_metrics, list_labelled
from .inference import Classifier, InvalidImageError, ModelLoadError
from .preprocess import REVIEWED_MARKER, STAGED_DATA, stratified_split

EXIT_ACCEPTED, EXIT_REFUSED, EXIT_USAGE = 0, 3, 2


@dataclass(frozen=True)
class Targets:
    """What a challenger must reach (absolute) and how much worse than the champion it may be (relative)."""
    min_accuracy: float = 0.98
    min_automation: float = thresholds.AUTOMATION_TARGET
    precision_target: float = thresholds.PRECISION_TARGET
    max_ece: float = 0.02
    min_agreement: float = 0.995
    mcnemar_alpha: float = 0.05
    max_automation_drop: float = 0.02
    max_ece_rise: float = 0.01


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


def _check(criterion: str, champion, challenger, passed: bool, rule: str) -> dict:
    return {"criterion": criterion, "champion": champion, "challenger": challenger, "passed": bool(passed),
            "rule": rule}


def compare(champion_dir: pathlib.Path, challenger_dir: pathlib.Path, items: list[tuple[pathlib.Path, int]],
            targets: Targets = Targets(), pick_threshold: bool = False) -> dict:
    champion, challenger = Classifier.load(champion_dir, threads=None), Classifier.load(challenger_dir, threads=None)
    if champion.classes != challenger.classes:
        raise DatasetError(f"the models' classes differ: {champion.classes} vs {challenger.classes}")
    classes = champion.classes
    p_old, y_old = predict(champion, items)
    p_new, y_new = predict(challenger, items)
    if len(y_old) == 0 or not np.array_equal(y_old, y_new):
        raise DatasetError("no image was readable by both models")
    # what these images would pick for the challenger; with --pick-threshold it becomes its threshold
    picked = thresholds.choose(p_new, y_new, targets.precision_target)
    if pick_threshold:
        thresholds.write(challenger_dir, thresholds.record(picked, f"the gate's images ({len(y_new)})"))
    t_old = thresholds.of_model(champion_dir)
    t_new = thresholds.of_model(challenger_dir)
    old = compute_metrics(p_old, y_old, classes, t_old)
    new = compute_metrics(p_new, y_new, classes, t_new)
    right_old, right_new = p_old.argmax(1) == y_old, p_new.argmax(1) == y_new
    p_value = mcnemar_p(right_old, right_new)
    agreement = float((p_old.argmax(1) == p_new.argmax(1)).mean())
    derived = (challenger.metadata.get("derived_from") or {}).get("model_sha256")
    is_derived = derived is not None and derived == champion.metadata.get("model_sha256")
    t = targets
    worse = int((right_old & ~right_new).sum()) > int((~right_old & right_new).sum())
    checks = [
        _check("accuracy vs champion", old["accuracy"], new["accuracy"], not (worse and p_value < t.mcnemar_alpha),
               f"not worse: McNemar p = {p_value:.3g} (refused below {t.mcnemar_alpha} when worse)"),
        _check("accuracy", old["accuracy"], new["accuracy"], new["accuracy"] >= t.min_accuracy, f">= {t.min_accuracy}"),
        _check("automation", old["share_above_threshold"], new["share_above_threshold"],
               new["share_above_threshold"] >= t.min_automation, f">= {t.min_automation}"),
        _check("automation vs champion", old["share_above_threshold"], new["share_above_threshold"],
               new["share_above_threshold"] >= old["share_above_threshold"] - t.max_automation_drop - 1e-12,
               f"at most {t.max_automation_drop} below the champion's"),
        _check("precision", old["accuracy_above_threshold"], new["accuracy_above_threshold"],
               (new["accuracy_above_threshold"] or 0.0) >= t.precision_target, f">= {t.precision_target}"),
        _check("ece", old["ece"], new["ece"], new["ece"] <= t.max_ece + 1e-12, f"<= {t.max_ece}"),
        _check("ece vs champion", old["ece"], new["ece"], new["ece"] <= old["ece"] + t.max_ece_rise + 1e-12,
               f"at most {t.max_ece_rise} above the champion's"),
    ]
    if is_derived:
        checks.append(_check("label agreement", 1.0, agreement, agreement >= t.min_agreement,
                             f">= {t.min_agreement} (a compressed copy of the champion)"))
    return {
        "accepted": all(c["passed"] for c in checks),
        "checks": checks,
        "n": int(len(y_old)),
        "thresholds": {"champion": t_old, "challenger": t_new, "picked_on_these_images": picked,
                       "written": pick_threshold},
        "targets": asdict(targets),
        "label_agreement": round(agreement, 6),
        "paired": {"only_champion_right": int((right_old & ~right_new).sum()),
                   "only_challenger_right": int((~right_old & right_new).sum()),
                   "mcnemar_p": round(p_value, 6)},
        "champion": {"model_dir": str(champion_dir), "model_sha256": champion.metadata.get("model_sha256"), **old},
        "challenger": {"model_dir": str(challenger_dir), "model_sha256": challenger.metadata.get("model_sha256"),
                       "derived_from_champion": is_derived, **new},
    }


def render(result: dict) -> str:
    def fmt(v):
        return f"{v:>10.4f}" if isinstance(v, (int, float)) else f"{'-':>10}"
    th = result["thresholds"]
    lines = [f"thresholds: champion {th['champion']}, challenger {th['challenger']}"
             + (" (picked on these images and written)" if th["written"] else
                f" (these images would pick {th['picked_on_these_images']['threshold']})"),
             f"{'criterion':<24}{'champion':>10}{'challenger':>11}  {'verdict':<8}rule"]
    for c in result["checks"]:
        lines.append(f"{c['criterion']:<24}{fmt(c['champion'])}{fmt(c['challenger']):>11}  "
                     f"{'ok' if c['passed'] else 'MISSED':<8}{c['rule']}")
    paired = result["paired"]
    lines.append(f"{result['n']} images ({result['sources']}); only the champion right on "
                 f"{paired['only_champion_right']}, only the challenger on {paired['only_challenger_right']} "
                 f"(McNemar p = {paired['mcnemar_p']:.3g}); label agreement {result['label_agreement']:.4f}")
    lines.append("ACCEPTED: the challenger meets every target" if result["accepted"] else
                 "REFUSED: the challenger misses " + ", ".join(c["criterion"] for c in result["checks"]
                                                               if not c["passed"]))
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser, champion: bool = True) -> None:
    """The gate's data and tolerance options (shared with `python -m training sagemaker promote`)."""
    if champion:
        p.add_argument("--champion", type=pathlib.Path, default=pathlib.Path("training/model"),
                       help="the live model's directory (default: the shipped training/model)")
    p.add_argument("--challenger", type=pathlib.Path, required=True, help="the candidate's directory, e.g. build/model")
    p.add_argument("--split-from", type=pathlib.Path, default=pathlib.Path(STAGED_DATA) / "train",
                   help="training folder whose validation hold-out both models are scored on "
                        "(default: data/staged/train)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="the hold-out share train.py used (default 0.2)")
    p.add_argument("--data-dir", type=pathlib.Path, action="append", default=[],
                   help="another labelled folder neither model trained on ({class}/*); repeatable")
    p.add_argument("--reviewed-dir", type=pathlib.Path,
                   help="reviewers' labels (stage_data --from-manifest): the photos neither model trained on count")
    p.add_argument("--pick-threshold", action="store_true",
                   help="pick the challenger's threshold on these images and write it into its metadata.json first")
    d = Targets()
    for name in ("min_accuracy", "min_automation", "precision_target", "max_ece", "min_agreement", "mcnemar_alpha",
                 "max_automation_drop", "max_ece_rise"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(d, name),
                       help=f"default {getattr(d, name)}")


def run(args: argparse.Namespace, champion: pathlib.Path) -> dict:
    """The comparison the options ask for; raises DatasetError, ModelLoadError, MissingThresholdError or
    FileNotFoundError."""
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
    targets = Targets(**{name: getattr(args, name) for name in Targets.__dataclass_fields__})
    result = compare(champion, args.challenger, items, targets, args.pick_threshold)
    result["sources"] = ", ".join(sources)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training gate", description=__doc__.splitlines()[0])
    add_arguments(p)
    p.add_argument("--out", type=pathlib.Path, help="write the comparison here as JSON")
    args = p.parse_args(argv)
    try:
        result = run(args, args.champion)
    except (DatasetError, ModelLoadError, thresholds.MissingThresholdError, FileNotFoundError) as exc:
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
