"""The benchmark script runs end to end with a tiny budget and reports every path (not timing)."""

from __future__ import annotations

import json
import os
import pathlib
import threading

import pytest

from training import benchmark
from training.inference import DEFAULT_MODEL_DIR

MODEL_DIR = pathlib.Path(os.environ.get("VEHICLE_MODEL_DIR", DEFAULT_MODEL_DIR))
SAMPLES = pathlib.Path(__file__).resolve().parents[3] / "local" / "sample_images"  # shipped, {class}/*.png


def test_tiny_run_prints_table_and_json(capsys):
    before = set(threading.enumerate())
    code = benchmark.main(["--model-dir", str(MODEL_DIR), "--data-dir", str(SAMPLES), "--images", "4", "--seconds", "5",
                           "--batch-size", "2", "--concurrency", "2", "--rounds", "2"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert out[0].split()[:3] == ["path", "batch", "conc"]
    report = json.loads(out[-1])
    rows = {(r["path"], r["batch"], r["concurrency"]): r for r in report["results"]}
    streams = os.cpu_count()
    assert set(rows) == {("pytorch eager", 1, 1), ("pytorch eager", 2, 1),
                         ("onnxruntime all cores", 1, 1), ("onnxruntime all cores", 2, 1),
                         ("onnxruntime 1 thread", 1, 1), ("onnxruntime 1 thread", 1, streams),
                         ("http endpoint (boto3)", 1, 1), ("http endpoint (boto3)", 1, 2)}
    for row in rows.values():
        assert row["images"] == 2 * 4 and row["images_per_s"] > 0  # 4 images in each of 2 rounds
        assert row["p50_ms_per_image"] <= row["p95_ms_per_image"]
    assert rows[("pytorch eager", 1, 1)]["ratio_vs_pytorch_eager"] == 1.0
    eager_b1 = rows[("pytorch eager", 1, 1)]
    for onnx_b1 in (rows[("onnxruntime all cores", 1, 1)], rows[("onnxruntime 1 thread", 1, streams)]):
        assert onnx_b1["baseline"] == "pytorch eager batch 1"
        assert onnx_b1["ratio_vs_pytorch_eager"] == pytest.approx(
            onnx_b1["images_per_s"] / eager_b1["images_per_s"], rel=0.02)
    assert rows[("onnxruntime all cores", 2, 1)]["baseline"] == "pytorch eager batch 2"
    assert rows[("http endpoint (boto3)", 1, 2)]["baseline"] == "pytorch eager batch 1"
    # The exported graph and PyTorch eager hold the same weights; the fixed batch-1 graph answers as the batched.
    assert report["onnx_vs_torch_max_abs_diff"] < 1e-4
    assert report["onnx_single_vs_batch_max_abs_diff"] < 1e-5
    # 8 table rows, each also in the JSON, and the endpoint it started is gone.
    assert len([line for line in out if line.startswith(("pytorch", "onnxruntime", "http"))]) == 8
    assert {t for t in threading.enumerate() if t.name.startswith("endpoint-")} - before == set()


def test_missing_data_dir_is_a_clear_error(tmp_path, capsys):
    assert benchmark.main(["--model-dir", str(MODEL_DIR), "--data-dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: data directory") and "`make data`" in err and err.count("\n") == 1


def test_images_are_interleaved_across_classes(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            (tmp_path / cls / f"{i}.png").write_bytes(f"{cls}{i}".encode())
    assert benchmark.load_images(tmp_path, 4) == [b"a0", b"b0", b"a1", b"b1"]
