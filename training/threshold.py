"""The confidence threshold that travels with a model, and the rule that picks it.

The workflow decides a photo without a person when the model's top probability is at or above the
threshold. A model's threshold is a property of that model (another calibration needs another value), so
it is stored in its metadata.json ("threshold") and everything else reads it from there:
`python -m training evaluate`, the gate, the drift monitor's baseline.json, the twin's ConfidenceThreshold
override and the stack parameter that `python -m training sagemaker promote --stack` sets.

choose() picks the lowest threshold (so the most automation) at which the decisions made alone are right
at least PRECISION_TARGET of the time on held-out images (validation or cross-validation predictions).
"""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np

PRECISION_TARGET = 0.995  # issue 20: at least 99.5 % of automatic decisions right
AUTOMATION_TARGET = 0.90  # issue 20: at least 90 % of photos decided without a person
DECIMALS = 4  # thresholds are stored rounded down to this many decimals (a stack parameter is text)


class MissingThresholdError(ValueError):
    """A model directory whose metadata.json names no threshold."""


def at(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Automation (share at or above the threshold) and precision (accuracy of those) at one threshold."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    confident = probs.max(1) >= threshold
    right = probs.argmax(1) == labels
    return {"threshold": float(threshold), "automation": float(confident.mean()),
            "precision": float(right[confident].mean()) if confident.any() else None,
            "n": int(len(labels)), "n_automatic": int(confident.sum()),
            "errors_automatic": int((confident & ~right).sum())}


def choose(probs: np.ndarray, labels: np.ndarray, precision_target: float = PRECISION_TARGET) -> dict:
    """The lowest threshold (DECIMALS decimals, >= 0.5) whose automatic decisions meet precision_target.

    Candidates are the images' own confidences rounded down; each is scored exactly, so the rounding
    never hides an error. If none meets the target the threshold is 1.0 (nearly nothing is automatic)
    and "met" is False.
    """
    probs = np.asarray(probs, dtype=np.float64)
    scale = 10 ** DECIMALS
    candidates = sorted({max(0.5, math.floor(c * scale) / scale) for c in probs.max(1)})
    for t in candidates:
        figures = at(probs, labels, t)
        if figures["precision"] is not None and figures["precision"] >= precision_target:
            return {**figures, "precision_target": precision_target, "met": True}
    return {**at(probs, labels, 1.0), "precision_target": precision_target, "met": False}


def describe(figures: dict) -> str:
    precision = figures["precision"]
    return (f"threshold {figures['threshold']:.4f}: automation {figures['automation']:.1%} "
            f"({figures['n_automatic']}/{figures['n']}) at precision "
            + (f"{precision:.4f}" if precision is not None else "-")
            + (f" ({figures['errors_automatic']} automatic errors)" if precision is not None else ""))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising the log loss of softmax(log p / T) (grid search, 0.25..4)."""
    logp = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0))
    labels = np.asarray(labels)
    best = (math.inf, 1.0)
    for t in np.exp(np.linspace(math.log(0.25), math.log(4.0), 401)):
        scaled = apply_temperature(probs, t, logp)
        loss = -np.log(np.clip(scaled[np.arange(len(labels)), labels], 1e-12, 1.0)).mean()
        best = min(best, (loss, float(t)))
    return round(best[1], 4)


def apply_temperature(probs: np.ndarray, t: float, logp: np.ndarray | None = None) -> np.ndarray:
    if logp is None:
        logp = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0))
    z = logp / t
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def of_metadata(meta: dict, where: str = "metadata.json") -> float:
    """A model's threshold: metadata "threshold.value"; models exported before it was stored name the threshold
    they were evaluated with ("validation.threshold"). MissingThresholdError if neither is there."""
    stored = meta.get("threshold")
    value = stored.get("value") if isinstance(stored, dict) else (meta.get("validation") or {}).get("threshold")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise MissingThresholdError(f"{where} names no confidence threshold in (0, 1] "
                                    f"(\"threshold\": {{\"value\": ...}}): "
                                    "pick one with `python -m training gate --pick-threshold`")
    return float(value)


def of_model(model_dir: pathlib.Path) -> float:
    """The threshold of the model in model_dir (of_metadata)."""
    meta_path = pathlib.Path(model_dir) / "metadata.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise MissingThresholdError(f"{meta_path} does not exist") from None
    return of_metadata(meta, str(meta_path))


def record(figures: dict, chosen_on: str) -> dict:
    """metadata.json's "threshold" entry for a choose() result."""
    return {"value": figures["threshold"], "precision_target": figures["precision_target"], "chosen_on": chosen_on,
            "n": figures["n"], "automation": round(figures["automation"], 6),
            "precision": None if figures["precision"] is None else round(figures["precision"], 6),
            "met": figures["met"]}


def write(model_dir: pathlib.Path, entry: dict) -> None:
    """Store a threshold entry in model_dir's metadata.json and baseline.json (the drift monitor's threshold)."""
    model_dir = pathlib.Path(model_dir)
    for name, update in (("metadata.json", lambda d: d | {"threshold": entry}),
                         ("baseline.json", lambda d: d | {"threshold_default": entry["value"]})):
        path = model_dir / name
        if path.exists():
            doc = json.loads(path.read_text())
            path.write_text(json.dumps(update(doc), indent=2 if name == "metadata.json" else None) + "\n")
