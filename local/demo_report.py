"""The demo's HTML report: one row per image with its thumbnail, and a confidence chart."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: render straight to PNG
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

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
    fig, ax = plt.subplots(figsize=(max(6, len(rows) * 0.35), 3.6))
    ax.bar(range(len(rows)), values, color=colours)
    ax.axhline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set_xticks(range(len(rows)), names, rotation=75, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("confidence (top class)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = out / "confidence.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(rows: list[dict], out: Path, *, threshold: float, summary: str,
                 drift_report: Path | None = None) -> Path:
    chart = confidence_chart(rows, threshold, out)
    body = []
    for r in rows:
        thumb = thumbnail(Path(r["file"]))
        confidence = f"{r['confidence']:.3f}" if r.get("confidence") is not None else "-"
        latency = f"{r['latency_ms'] / 1000:.2f} s" if r.get("latency_ms") is not None else "-"
        colour = OUTCOME_COLOURS.get(r["outcome"], "#999")
        picture = f'<img src="{thumb}" alt="">' if thumb else ""
        body.append(
            f"<tr><td>{picture}</td><td>{html.escape(r['key'])}</td>"
            f"<td>{html.escape(r.get('label') or '-')}</td><td>{confidence}</td>"
            f"<td style='color:{colour};font-weight:bold'>{html.escape(r['outcome'])}</td>"
            f"<td>{html.escape(r['route'])}</td><td>{latency}</td>"
            f"<td>{html.escape(r.get('reason') or '')}</td></tr>")
    drift_link = (f"<p>Drift against the training baseline: <a href='{html.escape(drift_report.relative_to(out).as_posix())}'>"
                  f"drift report</a></p>" if drift_report else "")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Vehicle classifier - local demo</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left}} img{{image-rendering:pixelated}}</style>
</head><body>
<h1>Vehicle classifier - local demo</h1>
<p>{html.escape(summary)}</p>
<p><img src="{chart.name}" alt="confidence per image with the threshold line"></p>
{drift_link}
<table><tr><th></th><th>image</th><th>vehicle</th><th>confidence</th><th>outcome</th><th>route</th><th>latency</th><th>reason</th></tr>
{''.join(body)}
</table></body></html>
"""
    path = out / "report.html"
    path.write_text(page)
    return path
