"""`make demo` end to end on a few images: its printed table, results.json and report agree."""

from __future__ import annotations

import json
import shutil

import pytest

from twin_helpers import SAMPLES

from local import demo


def test_demo_table_matches_results_json_and_report(tmp_path, capsys):
    images = tmp_path / "images"
    for label in ("bicycle", "motorcycle"):
        (images / label).mkdir(parents=True)
        for path in sorted((SAMPLES / label).glob("*.png"))[:2]:
            shutil.copy(path, images / label / path.name)
    (images / "not-a-photo.png").write_bytes(b"plain text")
    out = tmp_path / "out"

    assert demo.main(["--images", str(images), "--out", str(out)]) == 0

    printed = capsys.readouterr().out
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == 5
    table = {line.split()[0]: line.split() for line in printed.splitlines() if line.startswith("demo/")}
    for row in rows:
        assert {"key", "outcome", "label", "confidence"} <= set(row)
        cells = table[row["key"]]
        assert cells[1] == (row["label"] or "-")
        assert cells[2] == (f"{row['confidence']:.3f}" if row["confidence"] is not None else "-")
        assert cells[3] == {"classified": "near" if row["label"] == "bicycle" else "far",
                            "needs_review": "review", "failed": "failed"}[row["outcome"]]
        assert len(cells) == (6 if row["outcome"] == "classified" else 5)  # "near bay" / "far bay"
    failed = next(r for r in rows if r["key"] == "demo/not-a-photo.png")
    assert (failed["outcome"], failed["reason"]) == ("failed", "UnsupportedImageTypeError")
    assert "5 images:" in printed and "0 without outcome" in printed
    table_and_summary = [line for line in printed.splitlines()
                         if line.startswith(("demo/", "image ", "5 images:", "upload to record"))]
    assert len(table_and_summary) == 8 and max(map(len, table_and_summary)) <= 80

    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4  # a thumbnail for every readable image
    assert (out / "confidence.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "drift" / "report.html").exists()


@pytest.mark.slow
@pytest.mark.parametrize("shift, flag, exit_code", [(None, "none", 0), ("dark", "significant", 3)])
def test_demo_samples_show_no_drift_and_darkened_copies_show_drift(tmp_path, capsys, shift, flag, exit_code):
    out = tmp_path / "out"
    assert demo.main(["--out", str(out)] + (["--shift", shift] if shift else [])) == 0

    verdict = json.loads((out / "drift" / "drift.json").read_text())["verdict"]
    assert verdict["live_n"] == 24 and verdict["min_predictions"] == 20
    assert (verdict["flag"], verdict["exit_code"]) == (flag, exit_code)
    printed = capsys.readouterr().out
    assert ("drift: No drift:" in printed) == (shift is None)
    assert ("drift: Significant drift:" in printed) == (shift is not None)
