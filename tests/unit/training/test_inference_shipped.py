"""The shipped model (training/model) through training.inference: the serving path."""

import io
import pathlib
import threading

import numpy as np
import pytest
from PIL import Image

from training.inference import DEFAULT_MODEL_DIR, Classifier, InvalidImageError, ModelLoadError

DATA = pathlib.Path(__file__).resolve().parents[3].parent / "shared" / "data" / "cifar100-bikes" / "train"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data set not present at {DATA}")


@pytest.fixture(scope="module")
def clf():
    return Classifier.load(threads=2)


def validation_sample(per_class: int = 20):
    """The first images of the held-out validation split (never trained on)."""
    from training.preprocess import stratified_split
    from training.train import list_images

    _, items = list_images(DATA)
    _, val = stratified_split(items, 0.2)
    return [it for it in val if it[1] == 0][:per_class] + [it for it in val if it[1] == 1][:per_class]


def test_shipped_model_contract(clf):
    assert DEFAULT_MODEL_DIR == pathlib.Path(__file__).resolve().parents[3] / "training" / "model"
    assert clf.classes == ["bicycle", "motorcycle"]
    assert clf.metadata["input"]["size"] == 32


@needs_data
def test_predicts_most_held_out_images_correctly(clf):
    sample = validation_sample()
    probs = np.asarray(clf.predict_many([p.read_bytes() for p, _ in sample]))
    labels = np.asarray([lab for _, lab in sample])
    assert probs.shape == (40, 2)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    accuracy = (probs.argmax(1) == labels).mean()
    assert accuracy >= 0.9, accuracy  # chance is 0.5; the model scores ~0.97 on the full split


@needs_data
def test_predict_many_equals_predict_one_by_one(clf):
    images = [p.read_bytes() for p, _ in validation_sample(3)]
    batched = clf.predict_many(images)
    single = [clf.predict(im) for im in images]
    np.testing.assert_allclose(batched, single, atol=1e-5)


@needs_data
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_large_photo_gets_about_the_same_probabilities_as_the_original(clf, fmt):
    """A 1000x700 upscaled copy is squeezed back to 32x32 (whole image, antialiased): same answer."""
    sample = validation_sample(6)
    diffs, agree = [], 0
    for path, _ in sample:
        small = Image.open(path).convert("RGB")
        buf = io.BytesIO()
        small.resize((1000, 700), Image.Resampling.BICUBIC).save(buf, fmt, **({"quality": 95} if fmt != "PNG" else {}))
        p_small, p_big = clf.predict(path.read_bytes()), clf.predict(buf.getvalue())
        diffs.append(abs(p_small[0] - p_big[0]))
        agree += int(np.argmax(p_small) == np.argmax(p_big))
    # the round trip blurs by a few grey levels; cropping or a non-antialiased resize would move far more
    assert np.mean(diffs) < 0.05, diffs
    assert agree >= len(sample) - 1, diffs


def test_concurrent_predictions_match_sequential(clf):
    rng = np.random.default_rng(1)
    batches = [rng.random((4, 3, 32, 32), dtype=np.float32) for _ in range(8)]
    expected = [clf.predict_array(b) for b in batches]
    results = [None] * len(batches)

    def work(i):
        results[i] = clf.predict_array(batches[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_bad_inputs_raise_named_errors(clf):
    with pytest.raises(ValueError, match="expected a batch of shape"):
        clf.predict_array(np.zeros((2, 3, 64, 64), dtype=np.float32))
    good = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(good, "PNG")
    with pytest.raises(InvalidImageError, match="image 1"):
        clf.predict_many([good.getvalue(), b"garbage"])
    assert clf.predict_many([]) == []


def test_loading_a_missing_or_broken_model_dir_fails_clearly(tmp_path):
    with pytest.raises(ModelLoadError, match="no metadata.json"):
        Classifier.load(tmp_path)
    (tmp_path / "metadata.json").write_text(
        '{"model_file": "model.onnx", "classes": ["a", "b"], "input": {"size": 32}}')
    with pytest.raises(ModelLoadError, match="does not exist"):
        Classifier.load(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelLoadError, match="cannot load"):
        Classifier.load(tmp_path)


def test_a_serving_load_opens_one_session_and_a_batch_opens_the_other():
    clf = Classifier.load(DEFAULT_MODEL_DIR)
    assert list(clf._sessions) == ["batch"]  # the fixed batch-1 session: all the endpoint ever uses
    x = np.random.default_rng(1).random((3, 3, 32, 32), dtype=np.float32)
    single = np.concatenate([clf.predict_array(x[i:i + 1]) for i in range(3)])
    assert list(clf._sessions) == ["batch"]
    np.testing.assert_allclose(clf.predict_array(x), single, atol=1e-5)
    assert set(clf._sessions) == {"batch", None}


def test_a_model_whose_batch_axis_has_another_name_still_gets_a_fixed_session(monkeypatch):
    from training import inference

    monkeypatch.setattr(inference, "BATCH_DIM", "axis-name-of-another-exporter")
    clf = Classifier.load(DEFAULT_MODEL_DIR)
    # The first session's override named nothing, so it is the free-batch one; the fixed one uses the real name.
    assert set(clf._sessions) == {None, "batch"}
    x = np.random.default_rng(2).random((2, 3, 32, 32), dtype=np.float32)
    one_by_one = np.concatenate([clf.predict_array(x[:1]), clf.predict_array(x[1:])])
    np.testing.assert_allclose(clf.predict_array(x), one_by_one, atol=1e-5)
