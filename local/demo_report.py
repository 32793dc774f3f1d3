"""The demo's HTML report (templates/demo_report.html): one row per image with its thumbnail, and a confidence chart.

The chart uses matplotlib's object API (``Figure``, rendered by the Agg canvas) rather than pyplot, as the drift
report's charts do, so no global backend or figure state is touched.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined
from matplotlib.figure import Figure
from PIL import Image

OUTCOME_COLOURS = {"classified": "#2e7d32", "needs_review": "#ef6c00", "failed": "#c62828", "missing": "#6a1b9a"}


def thumbnail(path: Path, size: int = 96) -> str:
    """A data: URI, so the report is one self-contained file; unreadable files get no picture."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            scale = size / max(image.size)
            resample = Image.NEAREST if scale > 1 else Image.LANCZOS  # keep 32x32 CIFAR pixels crisp
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), resample)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
    except Exception:
        return ""
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def confidence_chart(rows: list[dict], threshold: float, out: Path) -> Path:
    names = [Path(r["key"]).name for r in rows]
    values = [r["confidence"] or 0 for r in rows]
    colours = [OUTCOME_COLOURS.get(r["outcome"], "#999") for r in rows]
    fig = Figure(figsize=(max(6, len(rows) * 0.35), 3.6))
    ax = fig.subplots()
    ax.bar(range(len(rows)), values, color=colours)
    ax.axhline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set_xticks(range(len(rows)), names, rotation=75, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("confidence (top class)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = out / "confidence.png"
    fig.savefig(path, dpi=110)
    return path


def write_report(rows: list[dict], out: Path, *, threshold: float, summary: str,
                 drift_report: Path | None = None) -> Path:
    chart = confidence_chart(rows, threshold, out)
    page = _TEMPLATE.render(
        summary=summary, chart=chart.name, rows=[_row(r) for r in rows],
        drift_report=drift_report.relative_to(out).as_posix() if drift_report else None)
    path = out / "report.html"
    path.write_text(page)
    return path


def _row(record: dict) -> dict:
    """One image's line of the table, as text."""
    confidence, latency_ms = record.get("confidence"), record.get("latency_ms")
    return {"thumbnail": thumbnail(Path(record["file"])), "key": record["key"], "label": record.get("label") or "-",
            "confidence": f"{confidence:.3f}" if confidence is not None else "-",
            "outcome": record["outcome"], "colour": OUTCOME_COLOURS.get(record["outcome"], "#999"),
            "route": record["route"], "latency": f"{latency_ms / 1000:.2f} s" if latency_ms is not None else "-",
            "reason": record.get("reason") or ""}


_ENVIRONMENT = Environment(loader=PackageLoader("local", "templates"), autoescape=True, undefined=StrictUndefined,
                           trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
_TEMPLATE = _ENVIRONMENT.get_template("demo_report.html")
