"""PNG charts for the drift report.

Uses matplotlib's object API (``Figure`` rendered by the Agg canvas) rather than pyplot,
so no global backend or figure state is touched: the local twin can call the report
from a process that has a GUI backend or none at all.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Sequence

import matplotlib.dates as mdates
from matplotlib.figure import Figure

from contracts.times import parse_time
from monitoring.capture import CaptureRecord
from monitoring.drift import DriftFigures
from monitoring.timeseries import describe_width

# Colours per outcome match their meaning: good, needs a human, broken.
OUTCOME_COLOURS = {"classified": "#2e7d32", "needs_review": "#f9a825", "reviewed": "#1565c0", "rejected": "#6d4c41",
                   "failed": "#c62828"}
BASELINE_COLOUR = "#607d8b"
LIVE_COLOUR = "#1565c0"


def _time_axes(title: str, ylabel: str):
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("time (UTC)")
    ax.grid(alpha=0.3)
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    return fig, ax


def _starts(series: Sequence[dict]):
    return [parse_time(b["start"]) for b in series]


def _ats(series: Sequence[dict]):
    """Each bucket's mean time: a bucket's mean is drawn where its points are."""
    return [parse_time(b["at"]) for b in series]


def _fit_x(ax, series: Sequence[dict], width: int) -> None:
    """Span the buckets shown, with a margin. Left to itself, matplotlib stretches one bucket over years."""
    starts = _starts(series)
    if starts:
        margin = timedelta(seconds=width * 0.25)
        ax.set_xlim(min(starts) - margin, max(starts) + timedelta(seconds=width) + margin)


def _save(fig: Figure, out: Path, name: str) -> str:
    fig.savefig(out / name, dpi=100)
    return name


def confidence_over_time(out: Path, records: Sequence[CaptureRecord], series, width: int, threshold: float) -> str:
    fig, ax = _time_axes("Confidence of each prediction", "top-class probability")
    ax.scatter([r.inference_time for r in records], [r.confidence for r in records],
               s=8, alpha=0.35, color=LIVE_COLOUR, label="prediction")
    ax.plot(_ats(series), [b["mean_confidence"] for b in series],
            color="black", marker="o", ms=3, label=f"mean per {describe_width(width)}")
    _fit_x(ax, series, width)
    ax.axhline(threshold, color=OUTCOME_COLOURS["needs_review"], linestyle="--",
               label=f"review threshold {threshold:g}")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, out, "confidence_over_time.png")


def class_mix_over_time(out: Path, series, width: int, figures: DriftFigures) -> str:
    fig, ax = _time_axes("Predicted class mix", "share of predictions")
    starts = _starts(series)
    bottom = [0.0] * len(series)
    bar_width = timedelta(seconds=width * 0.9)
    for i, name in enumerate(figures.classes):
        shares = [b["class_counts"][name] / b["n"] for b in series]
        ax.bar(starts, shares, width=bar_width, bottom=bottom, align="edge",
               label=f"{name} (baseline {figures.baseline_class_mix[i]:.0%})")
        bottom = [b + s for b, s in zip(bottom, shares)]
    ax.set_ylim(0, 1)
    _fit_x(ax, series, width)
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, out, "class_mix_over_time.png")


def low_confidence_over_time(out: Path, series, results_series, width: int, figures: DriftFigures) -> str:
    fig, ax = _time_axes(f"Share below the review threshold ({figures.threshold:g})", "rate")
    ax.plot(_ats(series), [b["low_confidence_rate"] for b in series],
            color=LIVE_COLOUR, marker="o", ms=3, label="data capture: confidence < threshold")
    reviewed = [b for b in results_series if b["needs_review_rate"] is not None]
    if reviewed:
        ax.plot(_ats(reviewed), [b["needs_review_rate"] for b in reviewed],
                color=OUTCOME_COLOURS["needs_review"], marker="s", ms=3, label="results table: needs_review")
    ax.axhline(figures.baseline_low_confidence_rate, color=BASELINE_COLOUR, linestyle="--",
               label=f"baseline ({figures.baseline_low_confidence_rate:.1%})")
    ax.set_ylim(0, 1.02)
    _fit_x(ax, series + reviewed, width)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, out, "low_confidence_rate_over_time.png")


def outcomes_over_time(out: Path, results_series, width: int) -> str:
    fig, ax = _time_axes("Pipeline outcomes", "images")
    starts = _starts(results_series)
    bottom = [0] * len(results_series)
    for outcome, colour in OUTCOME_COLOURS.items():
        counts = [b["outcomes"][outcome] for b in results_series]
        ax.bar(starts, counts, width=timedelta(seconds=width * 0.9), bottom=bottom,
               align="edge", color=colour, label=outcome)
        bottom = [b + c for b, c in zip(bottom, counts)]
    _fit_x(ax, results_series, width)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, out, "outcomes_over_time.png")


def latency_over_time(out: Path, results_series, width: int) -> str:
    fig, ax = _time_axes("End-to-end latency (upload to result recorded)", "seconds")
    timed = [b for b in results_series if b["latency_p50"] is not None]
    starts = _ats(timed)
    ax.plot(starts, [b["latency_p50"] for b in timed], marker="o", ms=3, color=LIVE_COLOUR, label="median")
    ax.plot(starts, [b["latency_max"] for b in timed], marker="^", ms=3, color="#c62828",
            linestyle=":", label="max")
    ax.set_ylim(bottom=0)
    _fit_x(ax, timed, width)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, out, "latency_over_time.png")


def baseline_vs_live(out: Path, figures: DriftFigures) -> str:
    """The two distributions the PSIs compare, side by side."""
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    mix_ax, conf_ax = fig.subplots(1, 2, width_ratios=[1, 2.2])
    _grouped_bars(mix_ax, figures.classes, figures.baseline_class_mix, figures.live_class_mix, figures)
    mix_ax.set_title(f"Predicted class mix  PSI {figures.psi_class_mix:.3f} ({figures.flag_class_mix})")
    edges = figures.confidence_bin_edges
    labels = [f"{lo:g}–{hi:g}" for lo, hi in zip(edges[:-1], edges[1:])]
    _grouped_bars(conf_ax, labels, figures.baseline_confidence_bins, figures.live_confidence_bins, figures)
    conf_ax.set_title(f"Confidence  PSI {figures.psi_confidence:.3f} ({figures.flag_confidence})")
    conf_ax.set_xlabel("top-class probability bin")
    return _save(fig, out, "baseline_vs_live.png")


def _grouped_bars(ax, labels, baseline, live, figures: DriftFigures) -> None:
    positions = range(len(labels))
    ax.bar([p - 0.2 for p in positions], baseline, width=0.4, color=BASELINE_COLOUR,
           label=f"baseline (n={figures.baseline_n})")
    ax.bar([p + 0.2 for p in positions], live, width=0.4, color=LIVE_COLOUR, label=f"live (n={figures.live_n})")
    ax.set_xticks(list(positions), labels, fontsize=8)
    ax.set_ylabel("share")
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
