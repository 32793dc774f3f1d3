"""k-fold cross-validation of the training recipe: the accuracy, automation and precision to expect on new photos.

    python -m training cv --data-dir data/staged/train --folds 5 --out build/cv.json [any `train` option]

Every image is held out exactly once: per class, files are ordered by sha256("class/name") (the rule
training.preprocess.stratified_split uses) and dealt round-robin into --folds folds; each fold's network is
trained by train.py's own train_member on the other folds, with the same options `python -m training train`
takes. Printed and written as JSON: per-fold accuracy, their mean and spread, and on the out-of-fold
probabilities of all images the ECE and the threshold the precision target asks for with the automation it
gives (training.threshold) - before and after temperature scaling fitted on the out-of-fold predictions.
Nothing is exported: this measures the recipe, `train` makes the model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import sys
import time

import numpy as np
import torch

from . import threshold as thresholds
from . import train
from .evaluate import compute_metrics


def folds_of(items: list[tuple[pathlib.Path, int]], k: int) -> list[int]:
    """Fold index of each item: per class, sha256 order dealt round-robin (stratified, name-only, seed-free)."""
    fold = [0] * len(items)
    for label in sorted({lab for _, lab in items}):
        members = sorted((i for i, (_, lab) in enumerate(items) if lab == label),
                         key=lambda i: hashlib.sha256(
                             f"{items[i][0].parent.name}/{items[i][0].name}".encode()).hexdigest())
        for rank, i in enumerate(members):
            fold[i] = rank % k
    return fold


def cross_validate(args, folds: int, log=print, progress: pathlib.Path | None = None) -> dict:
    torch.set_num_threads(args.threads)
    classes, items = train.list_images(pathlib.Path(args.data_dir))
    x, y = train.load_tensors(items)
    fold = np.asarray(folds_of(items, folds))
    oof = np.zeros((len(items), len(classes)))
    per_fold, history = [], []
    started = time.perf_counter()
    for f in range(folds):
        t0 = time.perf_counter()
        tr, va = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        nets = [train.train_member(args, args.seed + m, m, x[tr], y[tr], x[va], y[va], len(classes), history)
                for m in range(args.ensemble)]
        oof[va] = train.predict_proba(nets, x[va], args.flip_tta).numpy()
        acc = float((oof[va].argmax(1) == y[va].numpy()).mean())
        per_fold.append({"fold": f, "n": len(va), "accuracy": acc, "seconds": round(time.perf_counter() - t0, 1)})
        log(f"fold {f + 1}/{folds}: accuracy {acc:.4f} on {len(va)} held-out images ({per_fold[-1]['seconds']:.0f}s)",
            flush=True)
        if progress:  # the folds so far, so that a long run's figures survive an interruption
            done = np.isin(fold, [p["fold"] for p in per_fold])
            progress.write_text(json.dumps({"per_fold": per_fold, "done": done.tolist(), "labels": y.numpy().tolist(),
                                            "probabilities": oof.round(6).tolist()}) + "\n")
    labels = y.numpy()
    accs = np.array([p["accuracy"] for p in per_fold])
    temperature = thresholds.fit_temperature(oof, labels)
    result = {"folds": folds, "n": len(items), "per_fold": per_fold,
              "accuracy_mean": float(accs.mean()), "accuracy_std": float(accs.std(ddof=1)) if folds > 1 else 0.0,
              "seconds": round(time.perf_counter() - started, 1),
              "fold_seconds_mean": float(np.mean([p["seconds"] for p in per_fold])),
              "hyperparameters": {
                  k: v for k, v in vars(args).items()
                  if k not in ("data_dir", "validation_dir", "reviewed_dir", "model_dir", "output_dir")},
              "temperature": temperature}
    for name, probs in (("raw", oof), ("temperature_scaled", thresholds.apply_temperature(oof, temperature))):
        chosen = thresholds.choose(probs, labels, args.precision_target)
        metrics = compute_metrics(probs, labels, classes, chosen["threshold"])
        result[name] = {"ece": metrics["ece"], "log_loss": metrics["log_loss"], **chosen}
    result["oof"] = {"files": [f"{classes[lab]}/{p.name}" for p, lab in items], "labels": labels.tolist(),
                     "fold": fold.tolist(), "probabilities": oof.round(6).tolist()}
    return result


def render(r: dict) -> str:
    lines = [f"{r['folds']}-fold cross-validation on {r['n']} images: accuracy {r['accuracy_mean']:.4f} "
             f"+- {r['accuracy_std']:.4f} (folds {', '.join(format(p['accuracy'], '.3f') for p in r['per_fold'])}); "
             f"{r['fold_seconds_mean']:.0f}s per fold"]
    for name in ("raw", "temperature_scaled"):
        s = r[name]
        extra = f" (T = {r['temperature']:.3f})" if name != "raw" else ""
        lines.append(f"{name}{extra}: ECE {s['ece']:.4f}, log loss {s['log_loss']:.4f}; " + thresholds.describe(s))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training cv", description=__doc__.split("\n")[0],
                                epilog="Every other option is `python -m training train`'s (its --help lists them): "
                                       "the recipe being cross-validated.")
    p.add_argument("--folds", type=int, default=5, help="k (default 5)")
    p.add_argument("--out", type=pathlib.Path, help="write the figures and out-of-fold probabilities here as JSON")
    p.add_argument("--precision-target", type=float, default=thresholds.PRECISION_TARGET,
                   help=f"precision the threshold must reach (default {thresholds.PRECISION_TARGET})")
    own, rest = p.parse_known_args(argv)
    if own.folds < 2:
        p.error("--folds must be >= 2")
    args = train.parse_args(rest)
    args.precision_target = own.precision_target
    try:
        result = cross_validate(args, own.folds, progress=own.out.with_suffix(".partial.json") if own.out else None)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render(result))
    if own.out:
        own.out.parent.mkdir(parents=True, exist_ok=True)
        own.out.write_text(json.dumps(result) + "\n")
        print(f"written: {own.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
