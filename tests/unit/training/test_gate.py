"""The promotion gate on real models and photos: the shipped model against a weaker candidate (refused) and
an equal one (accepted), the tolerances, and reviewers' labels a model trained on left out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from test_sagemaker_launch import write_tiny_model
from training import gate

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "training" / "model"
SAMPLES = REPO / "local" / "sample_images"  # 24 labelled photos neither model trained on


def run(tmp_path, *args: str) -> tuple[int, dict]:
    out = tmp_path / "gate.json"
    code = gate.main(["--split-from", str(SAMPLES), "--val-fraction", "1", "--out", str(out), *args])
    return code, json.loads(out.read_text()) if out.exists() else {}


def test_a_weaker_candidate_is_refused_with_the_comparison(tmp_path, capsys):
    weak = write_tiny_model(tmp_path / "weak")  # mean colour -> class: a poor vehicle classifier
    code, result = run(tmp_path, "--champion", str(SHIPPED), "--challenger", str(weak))
    assert code == gate.EXIT_REFUSED and result["accepted"] is False and result["n"] == 24
    accuracy = next(c for c in result["checks"] if c["criterion"] == "accuracy")
    assert accuracy["champion"] > accuracy["challenger"] and not accuracy["passed"]
    assert result["champion"]["accuracy"] == accuracy["champion"]  # the full metrics are kept for the registry
    out = capsys.readouterr().out
    assert "REFUSED: the challenger is worse on accuracy" in out and "WORSE" in out


def test_an_equal_candidate_is_accepted(tmp_path):
    twin = shutil.copytree(SHIPPED, tmp_path / "same")
    code, result = run(tmp_path, "--champion", str(SHIPPED), "--challenger", str(twin))
    assert code == gate.EXIT_ACCEPTED and result["accepted"]
    assert all(c["delta"] == 0 and c["passed"] for c in result["checks"])
    assert result["paired"] == {"only_champion_right": 0, "only_challenger_right": 0, "mcnemar_p": 1.0}


def test_tolerances_decide_how_much_worse_is_allowed(tmp_path):
    weak = write_tiny_model(tmp_path / "weak")
    code, result = run(tmp_path, "--champion", str(SHIPPED), "--challenger", str(weak), "--max-accuracy-drop", "1",
                       "--max-automation-drop", "1", "--max-ece-rise", "1")
    assert code == gate.EXIT_ACCEPTED and result["tolerances"] == {"accuracy": 1.0, "automation": 1.0, "ece": 1.0}


def test_reviewed_photos_a_model_trained_on_are_left_out(tmp_path, capsys):
    reviewed = tmp_path / "reviewed"
    for cls in ("bicycle", "motorcycle"):
        shutil.copytree(SAMPLES / cls, reviewed / cls)
    (reviewed / ".reviewed").write_text("")
    challenger = shutil.copytree(SHIPPED, tmp_path / "challenger")
    meta = json.loads((challenger / "metadata.json").read_text())
    trained = sorted(gate.file_sha256(p) for p in (reviewed / "bicycle").glob("*.png"))
    meta.setdefault("data", {})["reviewed_files_sha256"] = trained
    (challenger / "metadata.json").write_text(json.dumps(meta))
    code, result = run(tmp_path, "--challenger", str(challenger), "--champion", str(SHIPPED),
                       "--reviewed-dir", str(reviewed))
    assert code == gate.EXIT_ACCEPTED
    assert result["n"] == 24 + 12  # the 12 reviewed motorcycles; the 12 bicycles the challenger trained on are out
    assert "12 reviewed (12 left out: a model trained on them)" in capsys.readouterr().out


def test_an_unmarked_folder_is_not_taken_for_reviewers_labels(tmp_path, capsys):
    code, _ = run(tmp_path, "--challenger", str(SHIPPED), "--reviewed-dir", str(SAMPLES))
    assert code == gate.EXIT_USAGE and "not a staged folder of reviewers' labels" in capsys.readouterr().err


def test_mcnemar_exact_p_value():
    right = np.array([True] * 10)
    assert gate.mcnemar_p(right, right) == 1.0
    # 6 images only the champion got right, none only the challenger: p = 2 * 0.5^6
    champion = np.array([True] * 6 + [True] * 4)
    challenger = np.array([False] * 6 + [True] * 4)
    assert gate.mcnemar_p(champion, challenger) == pytest.approx(2 / 64)
