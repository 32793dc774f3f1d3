"""The threshold that travels with a model (training.threshold), the cross-validation folds (training.cv) and
quantize's refusal of a folder the model was not validated on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from training import cv, quantize
from training import threshold as thresholds

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "training" / "model"
SAMPLES = REPO / "local" / "sample_images"


def test_choose_takes_the_lowest_threshold_whose_automatic_decisions_meet_the_precision_target():
    # confidences 0.99 (right), 0.95 (right), 0.9 (wrong), 0.8 (right), 0.6 (wrong)
    probs = np.array([[0.99, 0.01], [0.05, 0.95], [0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    labels = np.array([0, 1, 1, 1, 1])
    chosen = thresholds.choose(probs, labels, precision_target=1.0)
    assert chosen["threshold"] == 0.95 and chosen["met"]
    assert chosen["automation"] == pytest.approx(0.4) and chosen["precision"] == 1.0 and chosen["errors_automatic"] == 0
    # 3 of 4 right at 0.8 meets 0.75: lower threshold, more automation
    assert thresholds.choose(probs, labels, precision_target=0.75)["threshold"] == 0.8
    figures = thresholds.at(probs, labels, 0.8)
    assert figures["automation"] == pytest.approx(0.8) and figures["precision"] == pytest.approx(0.75)


def test_choose_says_when_no_threshold_meets_the_target():
    probs = np.array([[0.99, 0.01], [0.98, 0.02]])
    chosen = thresholds.choose(probs, np.array([1, 1]), precision_target=0.995)
    assert chosen["threshold"] == 1.0 and not chosen["met"] and chosen["automation"] == 0


def test_thresholds_are_rounded_down_and_still_scored_exactly():
    probs = np.array([[0.123456, 0.876544], [0.5, 0.5]])
    assert thresholds.choose(probs, np.array([1, 0]), 1.0)["threshold"] == 0.5  # 0.5 ties go to class 0: right
    assert thresholds.choose(np.array([[0.123456, 0.876544]]), np.array([1]), 1.0)["threshold"] == 0.8765


def test_temperature_scaling_fits_overconfident_predictions():
    rng = np.random.default_rng(0)
    n = 2000
    labels = rng.integers(0, 2, n)
    right = rng.random(n) < 0.8  # right 80 % of the time but always 99 % sure
    pred = np.where(right, labels, 1 - labels)
    probs = np.where(pred[:, None] == np.arange(2), 0.99, 0.01)
    t = thresholds.fit_temperature(probs, labels)
    assert t > 2  # softened
    scaled = thresholds.apply_temperature(probs, t)
    assert scaled.max(1).mean() == pytest.approx(0.8, abs=0.02)
    assert (scaled.argmax(1) == probs.argmax(1)).all()  # the ranking, so the automation at a precision, is unchanged


def test_the_threshold_of_a_model_is_in_its_metadata(tmp_path):
    model = shutil.copytree(SHIPPED, tmp_path / "m")
    meta = json.loads((model / "metadata.json").read_text())
    # a model exported before the threshold was stored: the threshold it was validated with
    assert thresholds.of_model(SHIPPED) == (meta.get("threshold") or {}).get("value", meta["validation"]["threshold"])
    thresholds.write(model, {"value": 0.9876})
    assert thresholds.of_model(model) == 0.9876
    assert json.loads((model / "baseline.json").read_text())["threshold_default"] == 0.9876
    meta.pop("threshold", None)
    meta["validation"].pop("threshold")
    (model / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(thresholds.MissingThresholdError, match="names no confidence threshold"):
        thresholds.of_model(model)


def test_cv_folds_are_stratified_disjoint_and_cover_every_image():
    items = [(Path(f"{cls}/img_{i}.png"), label) for label, cls in enumerate(("bicycle", "motorcycle"))
             for i in range(10 + 5 * label)]
    fold = cv.folds_of(items, 5)
    for f in range(5):
        held = [items[i][1] for i in range(len(items)) if fold[i] == f]
        assert held.count(0) == 2 and held.count(1) == 3
    assert fold == cv.folds_of(list(items), 5)  # names decide, nothing else


def test_quantize_refuses_a_folder_the_model_was_not_validated_on(tmp_path, capsys):
    code = quantize.main(["--model-dir", str(SHIPPED), "--data-dir", str(SAMPLES), "--out", str(tmp_path / "q")])
    assert code == 2 and "is not the one" in capsys.readouterr().err and not (tmp_path / "q").exists()


def test_a_fresh_stack_starts_with_the_shipped_models_threshold():
    # promote --stack and the twin set ConfidenceThreshold from the model; the template's default only matters for
    # a first `sam deploy`, which serves the shipped model: it must be that model's threshold
    import re

    text = (REPO / "template.yaml").read_text()
    default = re.search(r"\n  ConfidenceThreshold:\n(?:    .*\n)*?    Default: ([0-9.]+)\n", text)
    assert default and float(default.group(1)) == thresholds.of_model(SHIPPED)
