"""The benchmark script runs end to end with a tiny budget and reports every path (not timing)."""

from __future__ import annotations

import json
import os
import pathlib
import threading

import pytest
import torch

from training.serving import benchmark
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
        assert row["p50_ms_per_image"] <= row["p95_ms_per_image"] <= row["p99_ms_per_image"]
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
    # The float32 ceiling is measured in the same run and stated against eager and the serving row.
    ceiling = os.cpu_count() * report["float32_gflops_per_core"] * 1e9 / (2 * report["multiply_adds_per_image"])
    assert report["ceiling_images_per_s"] == pytest.approx(ceiling, rel=1e-3)
    assert report["ceiling_ratio_vs_pytorch_eager"] == pytest.approx(ceiling / eager_b1["images_per_s"], rel=1e-2)
    served = rows[("onnxruntime 1 thread", 1, streams)]["images_per_s"]
    assert report["serving_share_of_ceiling"] == pytest.approx(served / ceiling, rel=1e-2)
    assert any(line.startswith("float32 ceiling: ") for line in out)
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


def test_multiply_adds_counts_every_convolution_and_linear_layer():
    from torch import nn

    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1),  # 8x8 out: 64*8 values, 3*3*3 each
                          nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise: 3*3 per value
                          nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 2))
    expected = 64 * 8 * 27 + 64 * 8 * 9 + 2 * 512
    assert benchmark.multiply_adds(model, torch.zeros(1, 3, 16, 16)) == expected
    assert benchmark.multiply_adds(model, torch.zeros(1, 3, 16, 16)) == expected  # its hooks are gone


def test_shipped_network_is_efficientnet_lite0_at_160_px_on_two_views():
    from training.model_def import load_torch_model

    # EfficientNet-Lite0 is about 0.4 G multiply-adds at 224 px; at 160 px that scales by (160/224)^2,
    # and the graph runs it on the image and its mirror.
    count = benchmark.multiply_adds(load_torch_model(MODEL_DIR), torch.zeros(1, 3, 32, 32))
    assert 0.35e9 < count < 0.45e9
