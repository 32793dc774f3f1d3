"""Evaluate a model directory on a folder of labelled images of any size.

    python -m training evaluate --data-dir DIR [--model training/model] [--batch-size 32]

DIR holds one sub-folder per class named as in the model's metadata (bicycle/, motorcycle/);
images may be any size and format the serving path accepts. Prints accuracy, per-class
precision/recall, the confusion matrix, the expected calibration error and, at the model's own
confidence threshold (metadata.json, training.threshold), the automation (share of images decided
without a person) and the precision of those decisions; then ONE JSON line (stdout) with all figures.
Unreadable images are counted, listed and skipped.
Progress goes to stderr. Uses training.inference, i.e. exactly the serving path.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

try:
    from .inference import DEFAULT_MODEL_DIR, Classifier, InvalidImageError, ModelLoadError
    from .threshold import MissingThresholdError, of_metadata
    from .preprocess import IMAGE_SUFFIXES, REVIEWED_MARKER, STAGED_DATA, missing_data
except ImportError:  # run from inside training/
    from inference import DEFAULT_MODEL_DIR, Classifier, InvalidImageError, ModelLoadError
    from threshold import MissingThresholdError, of_metadata
    from preprocess import IMAGE_SUFFIXES, REVIEWED_MARKER, STAGED_DATA, missing_data

ECE_BINS = 10


class DatasetError(ValueError):
    """The evaluation folder is missing, empty or has no class folders the model knows."""


def list_labelled(data_dir: pathlib.Path, classes: list[str]) -> list[tuple[pathlib.Path, int]]:
    if not data_dir.is_dir():
        raise DatasetError(missing_data(data_dir))
    if (data_dir / REVIEWED_MARKER).exists():
        raise DatasetError(f"{data_dir} holds reviewers' labels, which are training data only: they were chosen "
                           "for being hard or audited, so no score on them describes the model - "
                           "evaluate on a test split")
    items = []
    for index, name in enumerate(classes):
        folder = data_dir / name
        if folder.is_dir():
            items += [(f, index) for f in sorted(folder.iterdir())
                      if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    if not items:
        raise DatasetError(f"{data_dir} holds no images in class folders {', '.join(c + '/' for c in classes)} "
                           f"(suffixes {', '.join(sorted(IMAGE_SUFFIXES))})")
    return items


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE over equal-width confidence bins: sum_b |b|/n * |accuracy(b) - mean confidence(b)|."""
    confidence, correct = probs.max(1), probs.argmax(1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    # right-closed bins so confidence 1.0 lands in the last bin; 0.5 (the 2-class minimum) in bin 4
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def compute_metrics(probs: np.ndarray, labels: np.ndarray, classes: list[str], threshold: float) -> dict:
    """All figures we report for a labelled set at a confidence threshold; also in metadata.json (training.export).

    share_above_threshold is the automation (decided without a person), accuracy_above_threshold the
    precision of those automatic decisions."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    pred = probs.argmax(1)
    k = len(classes)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (labels, pred), 1)
    per_class = {}
    for i, name in enumerate(classes):
        tp, support, predicted = confusion[i, i], confusion[i].sum(), confusion[:, i].sum()
        precision = tp / predicted if predicted else None
        recall = tp / support if support else None
        f1 = (2 * precision * recall / (precision + recall)) if precision and recall else (0.0 if support else None)
        per_class[name] = {"n": int(support), "precision": _round(precision), "recall": _round(recall),
                           "f1": _round(f1)}
    confidence = probs.max(1)
    confident = confidence >= threshold
    eps = 1e-12
    return {
        "n": int(len(labels)),
        "accuracy": _round((pred == labels).mean()),
        "per_class": per_class,
        "confusion_matrix": {"rows": "true class", "columns": "predicted class", "classes": classes,
                             "counts": confusion.tolist()},
        "ece": _round(expected_calibration_error(probs, labels)),
        "ece_bins": ECE_BINS,
        "log_loss": _round(-np.log(np.clip(probs[np.arange(len(labels)), labels], eps, 1.0)).mean()),
        "mean_confidence": _round(confidence.mean()),
        "threshold": threshold,
        "share_above_threshold": _round(confident.mean()),
        "accuracy_above_threshold": _round((pred[confident] == labels[confident]).mean()) if confident.any() else None,
    }


def _round(value, digits: int = 6):
    return None if value is None else round(float(value), digits)


def evaluate(data_dir: pathlib.Path, model_dir: pathlib.Path, batch_size: int = 32, log=sys.stderr) -> dict:
    classifier = Classifier.load(model_dir, threads=None)  # one stream of batches: every core for each run
    threshold = of_metadata(classifier.metadata, str(model_dir / "metadata.json"))
    items = list_labelled(data_dir, classifier.classes)
    probs, labels, unreadable = [], [], []
    started, last_report = time.perf_counter(), time.perf_counter()
    for start in range(0, len(items), batch_size):
        arrays, batch_labels = [], []
        for path, label in items[start:start + batch_size]:
            try:
                arrays.append(classifier.preprocess(path.read_bytes()))
                batch_labels.append(label)
            except (InvalidImageError, OSError) as exc:
                unreadable.append({"file": str(path), "error": str(exc)})
        if arrays:
            probs.extend(classifier.predict_array(np.stack(arrays)))
            labels.extend(batch_labels)
        done = min(start + batch_size, len(items))
        if time.perf_counter() - last_report > 2 or done == len(items):
            print(f"evaluated {done}/{len(items)} images ({time.perf_counter() - started:.1f}s)", file=log, flush=True)
            last_report = time.perf_counter()
    if not labels:
        raise DatasetError(f"none of the {len(items)} images in {data_dir} could be read")
    result = compute_metrics(np.asarray(probs), np.asarray(labels), classifier.classes, threshold)
    result |= {"unreadable": len(unreadable), "unreadable_files": unreadable,
               "data_dir": str(data_dir), "model_dir": str(model_dir),
               "model_sha256": classifier.metadata.get("model_sha256")}
    return result


def render(result: dict) -> str:
    classes = result["confusion_matrix"]["classes"]
    width = max(len(c) for c in classes) + 2
    lines = [f"images: {result['n']} evaluated, {result['unreadable']} unreadable (skipped)",
             f"accuracy: {result['accuracy']:.4f}",
             f"{'class':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'n':>6}"]
    def fmt(v):
        return f"{v:>10.4f}" if v is not None else f"{'-':>10}"
    for name, s in result["per_class"].items():
        lines.append(f"{name:<{width}}{fmt(s['precision'])}{fmt(s['recall'])}{fmt(s['f1'])}{s['n']:>6}")
    lines.append("confusion matrix (rows = true, columns = predicted):")
    lines.append(" " * width + "".join(f"{c:>{width}}" for c in classes))
    for name, row in zip(classes, result["confusion_matrix"]["counts"]):
        lines.append(f"{name:<{width}}" + "".join(f"{v:>{width}}" for v in row))
    lines.append(f"expected calibration error ({result['ece_bins']} equal-width bins): {result['ece']:.4f}")
    above = result["accuracy_above_threshold"]
    automatic = round(result["share_above_threshold"] * result["n"])
    lines.append(f"at the model's threshold {result['threshold']}: automation {result['share_above_threshold']:.1%} "
                 f"({automatic}/{result['n']} decided without a person), precision "
                 + (f"{above:.4f}" if above is not None else "-") + " (accuracy of those decisions)")
    for item in result["unreadable_files"]:
        lines.append(f"unreadable: {item['file']}: {item['error']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training evaluate",
                                description="Evaluate the classifier on DIR/{class}/* images.")
    p.add_argument("--data-dir", type=pathlib.Path, default=pathlib.Path(STAGED_DATA) / "test",
                   help="folder of {class}/* images (default: data/staged/test from `make data`)")
    p.add_argument("--model", type=pathlib.Path, default=DEFAULT_MODEL_DIR,
                   help="model directory (or its model.onnx); default: the shipped training/model")
    p.add_argument("--batch-size", type=int, default=32,
                   help="images per onnxruntime call (memory grows ~15 MB per image)")
    args = p.parse_args(argv)
    model_dir = args.model.parent if args.model.is_file() else args.model
    if args.batch_size < 1:
        p.error("--batch-size must be >= 1")
    try:
        result = evaluate(args.data_dir, model_dir, args.batch_size)
    except (DatasetError, ModelLoadError, MissingThresholdError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render(result))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
