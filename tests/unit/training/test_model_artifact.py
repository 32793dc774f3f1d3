"""The shipped artifact (training/model): metadata and baseline contracts, eager/ONNX and train/serve parity."""

import hashlib
import json
import pathlib

import numpy as np
import pytest
import torch

from training.inference import DEFAULT_MODEL_DIR, Classifier
from training.model_def import load_torch_model
from training.preprocess import stratified_split
from training.train import NATIVE_SIZE, data_hash, list_images, load_tensors

DATA = pathlib.Path(__file__).resolve().parents[3].parent / "shared" / "data" / "cifar100-bikes" / "train"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data set not present at {DATA}")


@pytest.fixture(scope="module")
def metadata():
    return json.loads((DEFAULT_MODEL_DIR / "metadata.json").read_text())


@pytest.fixture(scope="module")
def baseline():
    return json.loads((DEFAULT_MODEL_DIR / "baseline.json").read_text())


@pytest.fixture(scope="module")
def clf():
    return Classifier.load(threads=2)


@pytest.fixture(scope="module")
def validation_items():
    classes, items = list_images(DATA)
    return stratified_split(items, 0.2)[1]


def test_metadata_describes_the_model(metadata):
    model_path = DEFAULT_MODEL_DIR / metadata["model_file"]
    assert metadata["classes"] == ["bicycle", "motorcycle"]
    assert metadata["input"]["size"] == NATIVE_SIZE and metadata["input"]["shape"][1:] == [3, 32, 32]
    assert hashlib.sha256(model_path.read_bytes()).hexdigest() == metadata["model_sha256"]
    assert metadata["model_bytes"] == model_path.stat().st_size
    assert model_path.stat().st_size < 10_000_000  # the artifact stays small enough to ship in git/S3 cheaply
    for key in ("epochs", "lr", "batch_size", "resolution", "seed", "label_smoothing"):
        assert key in metadata["hyperparameters"]
    assert {"torch", "onnx", "onnxruntime"} <= set(metadata["versions"])
    assert metadata["training"]["started_at"] <= metadata["training"]["finished_at"]
    v = metadata["validation"]
    assert v["split"] == "validation" and v["n"] == 200
    assert set(v["per_class"]) == {"bicycle", "motorcycle"}
    assert np.sum(v["confusion_matrix"]["counts"]) == v["n"]


def test_shipped_model_meets_the_accuracy_target(metadata):
    assert metadata["validation"]["accuracy"] >= 0.95


@needs_data
def test_metadata_data_hash_matches_the_shared_data(metadata):
    classes, items = list_images(DATA)
    assert data_hash(items, classes) == metadata["data"]["sha256"]
    train, val = stratified_split(items, metadata["hyperparameters"]["val_fraction"])
    assert data_hash(val, classes) == metadata["data"]["validation_sha256"]
    assert data_hash(train, classes) == metadata["data"]["train_sha256"]


def test_baseline_schema(baseline, metadata):
    assert baseline["classes"] == metadata["classes"]
    assert baseline["split"] == "validation"
    assert baseline["n"] == len(baseline["labels"]) == len(baseline["probabilities"]) == metadata["validation"]["n"]
    assert set(baseline["labels"]) == {0, 1}
    probs = np.asarray(baseline["probabilities"])
    assert probs.shape == (baseline["n"], 2)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    assert 0 < baseline["threshold_default"] < 1
    accuracy = (probs.argmax(1) == np.asarray(baseline["labels"])).mean()
    assert accuracy == pytest.approx(metadata["validation"]["accuracy"], abs=1e-9)


@needs_data
def test_baseline_is_what_serving_returns_on_the_validation_images(baseline, clf, validation_items):
    assert [lab for _, lab in validation_items] == baseline["labels"]
    some = validation_items[::20]
    served = clf.predict_many([p.read_bytes() for p, _ in some])
    np.testing.assert_allclose(served, np.asarray(baseline["probabilities"])[::20], atol=1e-5)


@needs_data
def test_training_and_serving_preprocess_identically(clf, validation_items):
    some = validation_items[:5] + validation_items[-5:]
    x_train, _ = load_tensors(some)
    x_serve = np.stack([clf.preprocess(p.read_bytes()) for p, _ in some])
    assert np.array_equal(x_train.numpy(), x_serve)


def test_torch_eager_model_agrees_with_onnx(clf):
    model = load_torch_model(DEFAULT_MODEL_DIR)
    x = np.random.default_rng(3).random((6, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        eager = model(torch.from_numpy(x)).numpy()
    onnx_probs = clf.predict_array(x)
    np.testing.assert_allclose(eager, onnx_probs, atol=1e-4)
    assert eager.shape == (6, 2)


def test_load_torch_model_rejects_a_foreign_onnx_file(tmp_path, metadata):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["probabilities"])], "g",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 2])])
    onnx.save(helper.make_model(graph), str(tmp_path / "model.onnx"))
    (tmp_path / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(RuntimeError, match="lacks weights"):
        load_torch_model(tmp_path)


def test_reexporting_a_model_keeps_its_answers_and_updates_its_hashes(tmp_path):
    import shutil
    import subprocess
    import sys

    model_dir = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, model_dir)
    x = np.random.default_rng(5).random((8, 3, 32, 32), dtype=np.float32)
    before = Classifier.load(DEFAULT_MODEL_DIR).predict_array(x)
    run = subprocess.run([sys.executable, "-m", "training", "export", str(model_dir)], capture_output=True, text=True,
                         cwd=pathlib.Path(__file__).resolve().parents[3], timeout=300)
    assert run.returncode == 0, run.stderr
    assert "largest probability change" in run.stdout
    metadata = json.loads((model_dir / "metadata.json").read_text())
    baseline = json.loads((model_dir / "baseline.json").read_text())
    assert hashlib.sha256((model_dir / "model.onnx").read_bytes()).hexdigest() == metadata["model_sha256"] \
        == baseline["model_sha256"]
    np.testing.assert_allclose(Classifier.load(model_dir).predict_array(x), before, atol=1e-5)


def test_reexport_refuses_a_graph_that_answers_differently(tmp_path, monkeypatch):
    import shutil

    from training import export

    model_dir = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, model_dir)
    files = {p.name: p.read_bytes() for p in model_dir.iterdir()}
    monkeypatch.setattr(export, "REEXPORT_TOLERANCE", -1.0)  # any graph "moves" by more than -1
    with pytest.raises(RuntimeError, match="left as it was"):
        export.reexport(model_dir)
    assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == files
