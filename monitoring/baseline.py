"""Load the training-time baseline: the model's probabilities on the held-out validation split.

Written by training as ``training/model/baseline.json``::

    {"classes": ["bicycle", "motorcycle"], "split": "validation", "n": 200,
     "labels": [0, 1, ...], "probabilities": [[p0, p1], ...], "threshold_default": 0.93}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from monitoring.errors import MonitoringInputError


@dataclass(frozen=True)
class Baseline:
    classes: tuple[str, ...]
    probabilities: tuple[tuple[float, ...], ...]
    split: str = "validation"
    threshold_default: float | None = None
    source: str = ""

    @property
    def n(self) -> int:
        return len(self.probabilities)


def load_baseline(path: str | Path) -> Baseline:
    path = Path(path)
    if not path.is_file():
        raise MonitoringInputError(
            f"baseline not found: {path} (training writes training/model/baseline.json; pass --baseline)"
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MonitoringInputError(f"baseline {path} is not JSON: {exc}") from None
    return baseline_from_dict(doc, source=str(path))


def baseline_from_dict(doc: dict, source: str = "") -> Baseline:
    """Validate a baseline document; every problem is a MonitoringInputError naming the field."""
    where = f"baseline {source}" if source else "baseline"
    if not isinstance(doc, dict):
        raise MonitoringInputError(f"{where} must be a JSON object")
    classes = doc.get("classes")
    if not (isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) and c for c in classes)):
        raise MonitoringInputError(f"{where}: 'classes' must list at least two class names")
    if len(set(classes)) != len(classes):
        raise MonitoringInputError(f"{where}: 'classes' has duplicates: {classes}")
    rows = doc.get("probabilities")
    if not isinstance(rows, list) or not rows:
        raise MonitoringInputError(f"{where}: 'probabilities' must be a non-empty list of rows")
    for i, row in enumerate(rows):
        if not (
            isinstance(row, list)
            and len(row) == len(classes)
            and all(isinstance(p, (int, float)) and not isinstance(p, bool) and math.isfinite(p) for p in row)
        ):
            raise MonitoringInputError(
                f"{where}: probabilities[{i}] must hold {len(classes)} numbers (one per class), got {row!r}"
            )
    if "n" in doc and doc["n"] != len(rows):
        raise MonitoringInputError(f"{where}: 'n' is {doc['n']} but there are {len(rows)} probability rows")
    threshold = doc.get("threshold_default")
    if threshold is not None and not (isinstance(threshold, (int, float)) and 0.0 < threshold <= 1.0):
        raise MonitoringInputError(f"{where}: 'threshold_default' must be in (0, 1], got {threshold!r}")
    return Baseline(
        classes=tuple(classes),
        probabilities=tuple(tuple(float(p) for p in row) for row in rows),
        split=str(doc.get("split", "validation")),
        threshold_default=float(threshold) if threshold is not None else None,
        source=source,
    )
