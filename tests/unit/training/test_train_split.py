"""training.train data handling: labels from folders, a reproducible stratified hold-out, the data hash."""

import pathlib
import random
import shutil

import pytest

from training.preprocess import stratified_split
from training.train import data_hash, list_images

DATA = pathlib.Path(__file__).resolve().parents[3].parent / "shared" / "data" / "cifar100-bikes" / "train"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data set not present at {DATA}")


def fake_items(n_per_class=(50, 30)):
    return [(pathlib.Path(f"/d/{cls}/img_{i:04d}.png"), label)
            for label, (cls, n) in enumerate(zip(("bicycle", "motorcycle"), n_per_class)) for i in range(n)]


def test_split_is_stratified_disjoint_and_complete():
    items = fake_items()
    train, val = stratified_split(items, 0.2)
    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(items)
    assert sum(1 for _, lab in val if lab == 0) == 10 and sum(1 for _, lab in val if lab == 1) == 6


def test_split_does_not_depend_on_listing_order():
    items = fake_items()
    shuffled = items[:]
    random.Random(7).shuffle(shuffled)
    assert stratified_split(items, 0.2) == stratified_split(shuffled, 0.2)


def test_split_follows_names_not_position():
    # validation membership is a property of the file: adding other files does not move it to training
    items = fake_items()
    _, val = stratified_split(items, 0.2)
    bigger = items + [(pathlib.Path(f"/d/bicycle/new_{i}.png"), 0) for i in range(5)]
    _, val_bigger = stratified_split(bigger, 0.2)
    assert len(set(val) & set(val_bigger)) >= len(val) - 2


@needs_data
def test_real_data_split_holds_out_100_per_class():
    classes, items = list_images(DATA)
    assert classes == ["bicycle", "motorcycle"]
    assert len(items) == 1000
    train, val = stratified_split(items, 0.2)
    assert len(val) == 200 and sum(lab for _, lab in val) == 100
    # labels come from folders: bike_s_* files exist in both classes (README: seven are motorcycles)
    assert any(p.name.startswith("bike_s_") and lab == 1 for p, lab in items)


def test_list_images_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_images(tmp_path / "missing")
    (tmp_path / "bicycle").mkdir()
    with pytest.raises(ValueError, match="at least two class"):
        list_images(tmp_path)
    (tmp_path / "motorcycle").mkdir()
    (tmp_path / "bicycle" / "a.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="holds no images"):
        list_images(tmp_path)


@needs_data
def test_data_hash_depends_on_content_and_label_not_location(tmp_path):
    classes, items = list_images(DATA)
    subset = [it for it in items if it[0].name < "bicycle_s_0003"][:6] + items[-4:]
    for path, label in subset:
        (tmp_path / "copy" / classes[label]).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, tmp_path / "copy" / classes[label] / path.name)
    copied_classes, copied = list_images(tmp_path / "copy")
    assert data_hash(copied, copied_classes) == data_hash(subset, classes)
    relabelled = [(p, 1 - lab) for p, lab in subset]
    assert data_hash(relabelled, classes) != data_hash(subset, classes)
