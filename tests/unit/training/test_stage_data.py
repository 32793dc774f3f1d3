"""training.stage_data against tiny archives in CIFAR-100's own pickle format (no network)."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading
from pathlib import Path

import boto3
import numpy as np
import pytest
from moto import mock_aws
from PIL import Image

from training import stage_data
from training.stage_data import (
    ChecksumMismatchError,
    OutputExistsError,
    SourceFormatError,
    main,
    read_cifar,
    read_lst,
    stage,
)

FINE_NAMES = [f"class{i}" for i in range(100)]
FINE_NAMES[8], FINE_NAMES[48] = "bicycle", "motorcycle"


def _planar(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 -> CIFAR's 3072-long channel-planar row."""
    return rgb.transpose(2, 0, 1).reshape(-1)


def _random_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def make_split(fine_labels: list[int], seed: int, prefix: str) -> tuple[dict, np.ndarray]:
    images = _random_images(len(fine_labels), seed)
    batch = {
        b"batch_label": f"{prefix} batch".encode(),
        b"filenames": [f"{prefix}_{i:04d}.png".encode() for i in range(len(fine_labels))],
        b"fine_labels": list(fine_labels),
        b"coarse_labels": [label // 5 for label in fine_labels],
        b"data": np.stack([_planar(img) for img in images]),
    }
    return batch, images


TRAIN_LABELS = [8, 3, 48, 8, 48, 99, 8, 48, 8, 48, 0, 8, 48, 8, 48]  # 6 bicycles, 6 motorcycles
TEST_LABELS = [48, 8, 7, 8, 48]


def write_cifar_dir(root: Path) -> dict[str, tuple[dict, np.ndarray]]:
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    splits = {"train": make_split(TRAIN_LABELS, 1, "tr"), "test": make_split(TEST_LABELS, 2, "te")}
    for name, (batch, _) in splits.items():
        (base / name).write_bytes(pickle.dumps(batch))
    meta = {b"fine_label_names": [n.encode() for n in FINE_NAMES], b"coarse_label_names": []}
    (base / "meta").write_bytes(pickle.dumps(meta))
    return splits


@pytest.fixture()
def cifar(tmp_path):
    """(archive path, its md5, extracted dir, {split: (batch, HxWx3 images)})."""
    extracted = tmp_path / "extracted"
    splits = write_cifar_dir(extracted)
    archive = tmp_path / "cifar-100-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(extracted / "cifar-100-python", arcname="cifar-100-python")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    return archive, md5, extracted, splits


def _expected_rows(labels: list[int], prefix: str) -> list[str]:
    names = {8: "bicycle", 48: "motorcycle"}
    return [f"{i}\t{0 if f == 8 else 1}\t{names[f]}/{prefix}_{i:04d}.png"
            for i, f in enumerate(labels) if f in names]


def test_archive_is_staged_with_both_splits_pixels_and_lst_files(cifar, tmp_path, capsys):
    archive, md5, _, splits = cifar
    out = tmp_path / "staged"
    assert main(["--archive", str(archive), "--md5", md5, "--out", str(out)]) == 0

    assert (out / "train.lst").read_text().splitlines() == _expected_rows(TRAIN_LABELS, "tr")
    assert (out / "test.lst").read_text().splitlines() == _expected_rows(TEST_LABELS, "te")
    assert sorted(p.name for p in (out / "train").iterdir()) == ["bicycle", "motorcycle"]
    assert len(list((out / "train").rglob("*.png"))) == 12
    assert len(list((out / "test").rglob("*.png"))) == 4
    # Pixels survive the channel-planar -> PNG conversion exactly.
    _, train_images = splits["train"]
    with Image.open(out / "train" / "motorcycle" / "tr_0002.png") as img:
        assert img.mode == "RGB"
        assert np.array_equal(np.asarray(img), train_images[2])
    _, test_images = splits["test"]
    with Image.open(out / "test" / "bicycle" / "te_0003.png") as img:
        assert np.array_equal(np.asarray(img), test_images[3])
    assert "staged" in capsys.readouterr().out


def test_holdout_is_stratified_disjoint_and_taken_from_train_only(cifar, tmp_path):
    archive, md5, _, _ = cifar
    out = tmp_path / "staged"
    main(["--archive", str(archive), "--md5", md5, "--out", str(out), "--validation-fraction", "0.34"])
    fit = read_lst(out / "holdout" / "train.lst")
    held = read_lst(out / "holdout" / "validation.lst")
    train = read_lst(out / "train.lst")
    assert {r.relative_path for r in fit} | {r.relative_path for r in held} == {r.relative_path for r in train}
    assert not {r.relative_path for r in fit} & {r.relative_path for r in held}
    assert sorted(r.label for r in held) == [0, 0, 1, 1]  # 2 of 6 per class
    test_paths = {r.relative_path for r in read_lst(out / "test.lst")}
    assert not test_paths & {r.relative_path for r in held}

    # Same seed, same split; another seed, another split.
    again = tmp_path / "again"
    main(["--archive", str(archive), "--md5", md5, "--out", str(again), "--validation-fraction", "0.34"])
    assert (again / "holdout" / "validation.lst").read_text() == (out / "holdout" / "validation.lst").read_text()
    other = tmp_path / "other"
    main(["--archive", str(archive), "--md5", md5, "--out", str(other), "--validation-fraction", "0.34",
          "--seed", "7"])
    assert (other / "holdout" / "validation.lst").read_text() != (out / "holdout" / "validation.lst").read_text()


def test_extracted_folder_gives_the_same_result_as_the_archive(cifar, tmp_path):
    archive, md5, extracted, _ = cifar
    a, b = tmp_path / "a", tmp_path / "b"
    main(["--archive", str(archive), "--md5", md5, "--out", str(a)])
    assert main(["--archive", str(extracted), "--out", str(b)]) == 0
    for rel in ["train.lst", "test.lst", "holdout/validation.lst", "train/bicycle/tr_0000.png"]:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()


def test_local_archive_with_the_wrong_checksum_is_refused(cifar, tmp_path, capsys):
    archive, _, _, _ = cifar
    out = tmp_path / "staged"
    assert main(["--archive", str(archive), "--out", str(out)]) == 2  # default md5 is the real one
    assert "md5" in capsys.readouterr().err
    assert not out.exists()


class _ArchiveHandler(http.server.BaseHTTPRequestHandler):
    payload = b""

    def do_GET(self):  # the name http.server calls
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, *args):
        pass


@pytest.fixture()
def archive_server(cifar):
    archive, md5, _, _ = cifar
    handler = type("Handler", (_ArchiveHandler,), {"payload": archive.read_bytes()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cifar-100-python.tar.gz", md5
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_download_shows_progress_verifies_and_stages(archive_server, tmp_path, capsys):
    url, md5 = archive_server
    dl = tmp_path / "dl" / "cifar-100-python.tar.gz"
    out = tmp_path / "staged"
    assert main(["--url", url, "--md5", md5, "--download-to", str(dl), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "downloading cifar-100-python.tar.gz" in err and "100%" in err
    assert hashlib.md5(dl.read_bytes()).hexdigest() == md5
    assert sorted(os.listdir(dl.parent)) == ["cifar-100-python.tar.gz"]  # no temporary file left
    assert len(read_lst(out / "train.lst")) == 12


def test_download_with_checksum_mismatch_leaves_nothing_behind(archive_server, tmp_path, capsys):
    url, _ = archive_server
    dl = tmp_path / "dl" / "cifar-100-python.tar.gz"
    out = tmp_path / "staged"
    assert main(["--url", url, "--md5", "0" * 32, "--download-to", str(dl), "--out", str(out)]) == 2
    assert "expected 00000000000000000000000000000000" in capsys.readouterr().err
    assert os.listdir(dl.parent) == []
    assert not out.exists()
    with pytest.raises(ChecksumMismatchError):
        stage_data.download(url, dl, "0" * 32, progress=io.StringIO())


def test_from_folder_converts_rgba_and_labels_by_sorted_folder_name(tmp_path):
    src = tmp_path / "src"
    rgba = {}
    for cls, n in [("motorcycle", 2), ("bicycle", 3)]:
        (src / cls).mkdir(parents=True)
        for i in range(n):
            arr = np.full((32, 32, 4), 255, dtype=np.uint8)
            arr[..., :3] = _random_images(1, hash((cls, i)) % 1000)[0]
            Image.fromarray(arr).save(src / cls / f"{cls}_{i}.png")
            rgba[f"{cls}/{cls}_{i}.png"] = arr
    out = tmp_path / "staged"
    assert main(["--from-folder", str(src), "--out", str(out), "--validation-fraction", "0.4"]) == 0
    rows = read_lst(out / "train.lst")
    assert [(r.label, r.relative_path) for r in rows] == [
        (0, "bicycle/bicycle_0.png"), (0, "bicycle/bicycle_1.png"), (0, "bicycle/bicycle_2.png"),
        (1, "motorcycle/motorcycle_0.png"), (1, "motorcycle/motorcycle_1.png"),
    ]
    for rel, arr in rgba.items():
        with Image.open(out / "train" / rel) as img:
            assert img.mode == "RGB"
            assert np.array_equal(np.asarray(img), arr[..., :3])
    assert sorted(r.label for r in read_lst(out / "holdout" / "validation.lst")) == [0, 1]


def test_shared_training_folder_stages_when_present(tmp_path):
    shared = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "cifar100-bikes" / "train"
    if not shared.is_dir():
        pytest.skip("the shared CIFAR-100 bikes folder is not on this machine")
    counts = stage(stage_data.read_folder(shared, "train"), tmp_path / "staged", progress=io.StringIO())
    assert counts == {"train": 1000, "holdout/train": 800, "holdout/validation": 200}
    held = read_lst(tmp_path / "staged" / "holdout" / "validation.lst")
    assert sum(r.label for r in held) == 100  # stratified: 100 motorcycles, 100 bicycles


def test_existing_output_is_kept_unless_overwrite(cifar, tmp_path):
    archive, md5, _, _ = cifar
    out = tmp_path / "staged"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        stage(read_cifar(archive), out, progress=io.StringIO())
    assert (out / "precious.txt").read_text() == "mine"
    stage(read_cifar(archive), out, overwrite=True, progress=io.StringIO())
    assert not (out / "precious.txt").exists() and (out / "train.lst").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_failed_staging_leaves_no_partial_output(cifar, tmp_path):
    _, _, extracted, _ = cifar
    (extracted / "cifar-100-python" / "test").write_bytes(b"not a pickle")
    out = tmp_path / "staged"
    with pytest.raises(SourceFormatError, match="test is not a CIFAR-100 python pickle"):
        stage(read_cifar(extracted), out, progress=io.StringIO())
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_pickle_that_would_run_code_is_refused(cifar, tmp_path):
    _, _, extracted, _ = cifar

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (extracted / "cifar-100-python" / "meta").write_bytes(pickle.dumps({b"fine_label_names": Evil()}))
    with pytest.raises(SourceFormatError, match="unexpected object"):
        list(read_cifar(extracted))


def test_upload_writes_the_builtin_channel_layout(cifar, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    archive, md5, _, _ = cifar
    out = tmp_path / "staged"
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bikes")
        assert main(["--archive", str(archive), "--md5", md5, "--out", str(out),
                     "--s3-uri", "s3://bikes/data/v1", "--validation-fraction", "0.34"]) == 0
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="bikes")["Contents"]}

        def body(key):
            return s3.get_object(Bucket="bikes", Key=key)["Body"].read()

        assert body("data/v1/train_lst/train.lst") == (out / "holdout" / "train.lst").read_bytes()
        assert body("data/v1/validation_lst/validation.lst") == (out / "holdout" / "validation.lst").read_bytes()
        assert body("data/v1/test_lst/test.lst") == (out / "test.lst").read_bytes()
        for row in read_lst(out / "holdout" / "validation.lst"):
            assert body(f"data/v1/validation/{row.relative_path}") == (out / "train" / row.relative_path).read_bytes()
        assert {k for k in keys if k.startswith("data/v1/train/")} == {
            f"data/v1/train/{r.relative_path}" for r in read_lst(out / "holdout" / "train.lst")}
        assert len([k for k in keys if k.startswith("data/v1/test/")]) == 4
        assert s3.head_object(Bucket="bikes", Key="data/v1/train/bicycle/tr_0000.png")["ContentType"] == "image/png"


def test_upload_only_refuses_a_folder_that_was_not_staged(tmp_path, capsys):
    assert main(["--upload-only", "--out", str(tmp_path), "--s3-uri", "s3://bikes/x"]) == 2
    assert "is not a staged train split" in capsys.readouterr().err


def test_no_network_is_one_line_naming_the_local_archive_route(tmp_path, capsys):
    from local.twin import free_port

    url = f"http://127.0.0.1:{free_port()}/cifar-100-python.tar.gz"  # nothing listens there
    code = stage_data.main(["--url", url, "--download-to", str(tmp_path / "c.tgz"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: cannot download {url}: ") and err.count("\n") == 1
    assert "make data ARCHIVE=<path>" in err
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []
