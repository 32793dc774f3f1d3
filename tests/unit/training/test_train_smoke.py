"""train.py end to end on a tiny folder, run the way SageMaker script mode runs it (SM_* env, script path)."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from training.inference import Classifier
from training.model_def import load_torch_model

REPO = pathlib.Path(__file__).resolve().parents[3]
DATA = REPO.parent / "shared" / "data" / "cifar100-bikes" / "train"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data set not present at {DATA}")


def tiny_dataset(root: pathlib.Path, per_class: int = 20) -> pathlib.Path:
    for cls in ("bicycle", "motorcycle"):
        (root / cls).mkdir(parents=True)
        for f in sorted((DATA / cls).glob("*.png"))[:per_class]:
            shutil.copy(f, root / cls / f.name)
    return root


@pytest.mark.slow
def test_script_mode_run_produces_a_loadable_artifact(tmp_path):
    data = tiny_dataset(tmp_path / "train")
    env = os.environ | {"SM_CHANNEL_TRAIN": str(data), "SM_MODEL_DIR": str(tmp_path / "model"),
                        "SM_OUTPUT_DATA_DIR": str(tmp_path / "output"), "SM_NUM_CPUS": "2"}
    env.pop("SM_CHANNEL_VALIDATION", None)
    # exactly what the SageMaker PyTorch container does: cwd = source dir, `python train.py --hp value`
    proc = subprocess.run([sys.executable, "train.py", "--epochs", "1", "--batch-size", "16", "--resolution", "64",
                           "--pretrained", "True"],
                          cwd=REPO / "training", env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "epoch 1/1" in proc.stdout and "val_acc" in proc.stdout

    model_dir = tmp_path / "model"
    meta = json.loads((model_dir / "metadata.json").read_text())
    assert meta["classes"] == ["bicycle", "motorcycle"]
    assert meta["data"]["n_train"] == 32 and meta["data"]["n_validation"] == 8
    assert meta["hyperparameters"]["epochs"] == 1 and meta["hyperparameters"]["resolution"] == 64
    assert meta["validation"]["n"] == 8
    assert (tmp_path / "output" / "history.json").is_file()

    clf = Classifier.load(model_dir, threads=1)
    probs = clf.predict((data / "bicycle" / sorted(os.listdir(data / "bicycle"))[0]).read_bytes())
    assert len(probs) == 2 and abs(sum(probs) - 1) < 1e-5

    baseline = json.loads((model_dir / "baseline.json").read_text())
    assert baseline["n"] == 8 and len(baseline["probabilities"]) == 8

    torch_model = load_torch_model(model_dir)
    import torch

    x = np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        eager = torch_model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(eager, clf.predict_array(x), atol=1e-4)


def test_missing_training_data_is_a_clear_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    proc = subprocess.run([sys.executable, "-m", "training", "train", "--data-dir", str(tmp_path / "nope"),
                           "--model-dir", str(tmp_path / "m")], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr
    # No --data-dir and no SM_CHANNEL_TRAIN: the data `make data` stages, relative to where it runs.
    proc = subprocess.run([sys.executable, "-m", "training", "train", "--model-dir", str(tmp_path / "m")], cwd=tmp_path,
                          env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: data directory data/staged/train does not exist")
    assert "`make data`" in proc.stderr


@pytest.mark.slow
def test_reviewed_images_join_the_training_part_only(tmp_path):
    data = tiny_dataset(tmp_path / "train")
    reviewed = tmp_path / "reviewed" / "train"
    for cls, files in (("bicycle", sorted((DATA / "bicycle").glob("*.png"))[40:45]),
                       ("motorcycle", sorted((DATA / "motorcycle").glob("*.png"))[40:43])):
        (reviewed / cls).mkdir(parents=True)
        for f in files:
            shutil.copy(f, reviewed / cls / f"reviewed-{f.name}")
    (reviewed / ".reviewed").write_text("reviewers' labels\n")
    env = os.environ | {"SM_CHANNEL_TRAIN": str(data), "SM_CHANNEL_REVIEWED": str(reviewed),
                        "SM_MODEL_DIR": str(tmp_path / "model"), "SM_NUM_CPUS": "2"}
    env.pop("SM_CHANNEL_VALIDATION", None)
    proc = subprocess.run([sys.executable, "train.py", "--epochs", "1", "--batch-size", "16", "--resolution", "32",
                           "--pretrained", "False"],
                          cwd=REPO / "training", env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "40 training (8 of them reviewers' labels) / 8 validation" in proc.stdout
    meta = json.loads((tmp_path / "model" / "metadata.json").read_text())
    assert meta["data"]["n_reviewed"] == 8 and meta["data"]["n_train"] == 40 and meta["data"]["n_validation"] == 8
    assert meta["data"]["reviewed_sha256"]

    # Passed as the training folder, reviewed images would be held out for validation: refused.
    proc = subprocess.run([sys.executable, "train.py", "--epochs", "1", "--data-dir", str(reviewed)],
                          cwd=REPO / "training", env={k: v for k, v in env.items() if k != "SM_CHANNEL_REVIEWED"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "pass it as --reviewed-dir" in proc.stderr
