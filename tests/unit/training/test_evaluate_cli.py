"""training.evaluate: the metrics themselves and the CLI on a folder of mixed-size images."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from training.evaluate import compute_metrics, expected_calibration_error

REPO = pathlib.Path(__file__).resolve().parents[3]
DATA = REPO.parent / "shared" / "data" / "cifar100-bikes" / "train"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data set not present at {DATA}")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "training", "evaluate", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_metrics_on_a_hand_checked_example():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8], [0.55, 0.45]])
    labels = np.array([0, 1, 1, 1, 0])
    m = compute_metrics(probs, labels, ["bicycle", "motorcycle"], threshold=0.75)
    assert m["n"] == 5 and m["accuracy"] == pytest.approx(0.8)
    assert m["confusion_matrix"]["counts"] == [[2, 0], [1, 2]]
    assert m["per_class"]["bicycle"] == {"n": 2, "precision": pytest.approx(2 / 3), "recall": 1.0,
                                         "f1": pytest.approx(0.8)}
    assert m["per_class"]["motorcycle"]["precision"] == 1.0
    assert m["per_class"]["motorcycle"]["recall"] == pytest.approx(2 / 3)
    assert m["share_above_threshold"] == pytest.approx(0.4) and m["accuracy_above_threshold"] == 1.0
    # bins (0.5,0.6]: conf .6,.55 acc 0,1 -> |0.5-0.575|; (0.6,0.7]: .7 acc 1; (0.7,0.8]: .8 acc 1; (0.8,0.9]: .9 acc 1
    expected = (2 * 0.075 + 0.3 + 0.2 + 0.1) / 5
    assert m["ece"] == pytest.approx(expected) and m["ece_bins"] == 10


def test_ece_is_zero_for_perfectly_calibrated_confidence():
    probs = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error(probs, np.array([0, 0, 0, 1])) == pytest.approx(0.0)
    assert expected_calibration_error(probs, np.array([1, 1, 1, 1])) == pytest.approx(0.75)


@needs_data
def test_cli_on_mixed_size_images_ends_with_a_json_line(tmp_path):
    from training.preprocess import stratified_split
    from training.train import list_images

    classes, items = list_images(DATA)
    held_out = stratified_split(items, 0.2)[1]  # never trained on
    for label, cls in enumerate(classes):
        folder = tmp_path / cls
        folder.mkdir()
        for i, path in enumerate([p for p, lab in held_out if lab == label][:6]):
            image = Image.open(path).convert("RGB")
            if i % 3 == 0:
                image.save(folder / path.name)  # original 32x32 PNG
            elif i % 3 == 1:
                image.resize((640, 480), Image.Resampling.BICUBIC).save(folder / f"{path.stem}.jpg", quality=92)
            else:
                image.resize((300, 300), Image.Resampling.BICUBIC).save(folder / f"{path.stem}.webp")
    (tmp_path / "motorcycle" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (tmp_path / "bicycle" / "notes.txt").write_text("ignored: not an image suffix")

    proc = run_cli("--data-dir", tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["n"] == 12 and result["unreadable"] == 1
    assert result["unreadable_files"][0]["file"].endswith("broken.jpg")
    assert result["accuracy"] >= 0.75  # chance is 0.5; ~0.95 expected on held-out images
    assert sum(map(sum, result["confusion_matrix"]["counts"])) == 12
    text = proc.stdout
    assert "accuracy" in text and "confusion matrix" in text and "10 equal-width bins" in text
    assert "evaluated 13/13" in proc.stderr


def test_cli_errors_for_missing_and_empty_dirs(tmp_path):
    proc = run_cli("--data-dir", tmp_path / "missing")
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    (tmp_path / "bicycle").mkdir()
    proc = run_cli("--data-dir", tmp_path)
    assert proc.returncode == 2 and "holds no images" in proc.stderr


def test_cli_reports_a_bad_model_dir(tmp_path):
    (tmp_path / "bicycle").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "bicycle" / "a.png")
    proc = run_cli("--data-dir", tmp_path, "--model", tmp_path / "nomodel")
    assert proc.returncode == 2 and "metadata.json" in proc.stderr
