"""Drift statistics: population stability index (PSI) of live traffic against the baseline.

PSI compares two distributions over the same fixed bins::

    PSI = sum_i (live_i - base_i) * ln(live_i / base_i)

where ``base_i`` and ``live_i`` are the proportions in bin ``i``. It is 0 for identical
distributions and grows with the shift; it is symmetric in the two inputs.

Two distributions are compared:

* the predicted-class mix (argmax of the probabilities; one bin per class), and
* the confidence (the top probability) in ``CONFIDENCE_BIN_EDGES``.

An empty bin would make ``ln`` infinite. Rather than flooring it at a tiny constant (which turns
one missing image in a rare bin into a large PSI), both distributions are estimated from their
counts with additive smoothing: ``PSI_PSEUDOCOUNT`` (0.5, the Jeffreys prior) is added to every
bin before dividing, ``share_i = (count_i + 0.5) / (n + 0.5 * bins)``. With many records this
changes nothing; with few, an empty bin counts as half an observation, not as certainty.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

# Left-closed bins, the last one closed: [0, .5) [.5, .6) ... [.95, .99) [.99, 1].
# Top-1 confidence is at least 1/classes; a well-trained model puts most of its mass
# above 0.9, so the bins are finest there, where a loss of confidence first shows.
CONFIDENCE_BIN_EDGES: tuple[float, ...] = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
PSI_PSEUDOCOUNT = 0.5
# Conventional PSI reading: below 0.1 no drift, 0.1 to 0.25 moderate, above 0.25 significant.
PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.25
FLAGS = ("none", "moderate", "significant")


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """PSI between two proportion vectors over the same bins (each should sum to 1, none be 0)."""
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    if e.shape != a.shape or e.ndim != 1 or e.size == 0:
        raise ValueError(f"PSI needs two proportion vectors of the same length, got {e.shape} and {a.shape}")
    if (e <= 0).any() or (a <= 0).any():
        raise ValueError("PSI proportions must be positive: estimate them from counts with smoothed_shares")
    return float(np.sum((a - e) * np.log(a / e)))


def smoothed_shares(counts: Sequence[float], pseudocount: float = PSI_PSEUDOCOUNT) -> np.ndarray:
    """Per-bin shares estimated from ``counts`` with ``pseudocount`` added to every bin."""
    c = np.asarray(counts, dtype=float)
    if c.ndim != 1 or c.size == 0 or (c < 0).any():
        raise ValueError(f"counts must be a non-empty vector of non-negative numbers, got {counts!r}")
    return (c + pseudocount) / (c.sum() + pseudocount * c.size)


def psi_of_counts(expected: Sequence[float], actual: Sequence[float], pseudocount: float = PSI_PSEUDOCOUNT) -> float:
    """PSI between two histograms over the same bins, each smoothed with ``pseudocount``."""
    return psi(smoothed_shares(expected, pseudocount), smoothed_shares(actual, pseudocount))


def psi_flag(value: float) -> str:
    """'none' (< 0.1), 'moderate' (0.1 to 0.25) or 'significant' (> 0.25)."""
    if value < PSI_MODERATE:
        return "none"
    if value <= PSI_SIGNIFICANT:
        return "moderate"
    return "significant"


def class_counts(probabilities: np.ndarray, n_classes: int) -> np.ndarray:
    """Predictions per class (argmax)."""
    return np.bincount(np.argmax(probabilities, axis=1), minlength=n_classes)


def confidence_counts(confidences: np.ndarray, edges: Sequence[float] = CONFIDENCE_BIN_EDGES) -> np.ndarray:
    """Confidences per bin of ``edges``."""
    counts, _ = np.histogram(np.clip(confidences, edges[0], edges[-1]), bins=np.asarray(edges))
    return counts


def class_mix(probabilities: np.ndarray, n_classes: int) -> np.ndarray:
    """Share of predictions per class (argmax), as proportions."""
    return class_counts(probabilities, n_classes) / len(probabilities)


def confidence_bins(confidences: np.ndarray, edges: Sequence[float] = CONFIDENCE_BIN_EDGES) -> np.ndarray:
    """Share of confidences per bin of ``edges``, as proportions."""
    return confidence_counts(confidences, edges) / len(confidences)


def low_confidence_rate(confidences: np.ndarray, threshold: float) -> float:
    """Share of predictions below the review threshold (the ones routed to human review)."""
    return float(np.mean(confidences < threshold))


@dataclass(frozen=True)
class DriftFigures:
    classes: list[str]
    baseline_n: int
    live_n: int
    baseline_class_mix: list[float]
    live_class_mix: list[float]
    psi_class_mix: float
    flag_class_mix: str
    confidence_bin_edges: list[float]
    baseline_confidence_bins: list[float]
    live_confidence_bins: list[float]
    psi_confidence: float
    flag_confidence: str
    threshold: float
    baseline_low_confidence_rate: float
    live_low_confidence_rate: float
    psi_threshold: float

    @property
    def psi_max(self) -> float:
        return max(self.psi_class_mix, self.psi_confidence)

    @property
    def flag(self) -> str:
        """The worse of the two PSI flags."""
        return max(self.flag_class_mix, self.flag_confidence, key=FLAGS.index)

    @property
    def drift_detected(self) -> bool:
        """True when either PSI is beyond ``psi_threshold``: the CLI then exits 3."""
        return self.psi_max > self.psi_threshold

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(psi_max=self.psi_max, flag=self.flag, drift_detected=self.drift_detected)
        return out


def check_thresholds(threshold: float, psi_threshold: float) -> None:
    """ValueError unless the review threshold is in (0, 1] and the PSI alert threshold is positive."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if not psi_threshold > 0:
        raise ValueError(f"PSI threshold must be positive, got {psi_threshold}")


def compute_drift(
    baseline_probabilities: Sequence[Sequence[float]],
    live_probabilities: Sequence[Sequence[float]],
    classes: Sequence[str],
    threshold: float,
    psi_threshold: float = PSI_SIGNIFICANT,
) -> DriftFigures:
    check_thresholds(threshold, psi_threshold)
    base = np.asarray(baseline_probabilities, dtype=float)
    live = np.asarray(live_probabilities, dtype=float)
    for name, rows in (("baseline", base), ("live", live)):
        if rows.ndim != 2 or rows.shape[0] == 0 or rows.shape[1] != len(classes):
            raise ValueError(f"{name} probabilities must be a non-empty (n, {len(classes)}) table, got {rows.shape}")
    base_conf, live_conf = base.max(axis=1), live.max(axis=1)
    base_mix, live_mix = class_mix(base, len(classes)), class_mix(live, len(classes))
    base_bins, live_bins = confidence_bins(base_conf), confidence_bins(live_conf)
    psi_mix = psi_of_counts(class_counts(base, len(classes)), class_counts(live, len(classes)))
    psi_conf = psi_of_counts(confidence_counts(base_conf), confidence_counts(live_conf))
    return DriftFigures(
        classes=list(classes),
        baseline_n=len(base),
        live_n=len(live),
        baseline_class_mix=base_mix.tolist(),
        live_class_mix=live_mix.tolist(),
        psi_class_mix=psi_mix,
        flag_class_mix=psi_flag(psi_mix),
        confidence_bin_edges=list(CONFIDENCE_BIN_EDGES),
        baseline_confidence_bins=base_bins.tolist(),
        live_confidence_bins=live_bins.tolist(),
        psi_confidence=psi_conf,
        flag_confidence=psi_flag(psi_conf),
        threshold=float(threshold),
        baseline_low_confidence_rate=low_confidence_rate(base_conf, threshold),
        live_low_confidence_rate=low_confidence_rate(live_conf, threshold),
        psi_threshold=float(psi_threshold),
    )
