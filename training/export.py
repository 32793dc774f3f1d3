"""Write a trained model directory: model.onnx, metadata.json, baseline.json.

- model.onnx: the fused ProbabilityGraph; input "image" (N, 3, S, S) float32 in [0, 1], output
  "probabilities" (N, C). Weights may be stored as float16 or per-channel int8 and are restored
  to float32 by Cast/Mul nodes that onnxruntime folds at load time (see _compress_weights).
- metadata.json: classes, input contract, architecture, metrics, hyper-parameters, data hash,
  versions, sha256 of model.onnx.
- baseline.json: the exported model's probabilities on every validation image, computed through
  training.inference (exactly what serving returns); the drift monitor compares against it.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import pathlib
import platform
import warnings

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

try:
    from . import inference, model_def
    from .evaluate import THRESHOLD_DEFAULT, compute_metrics
except ImportError:  # SageMaker script mode: run from inside training/
    import inference
    import model_def
    from evaluate import THRESHOLD_DEFAULT, compute_metrics

MODEL_FILE = "model.onnx"
OPSET = 17
MIN_COMPRESS_ELEMENTS = 16  # tiny tensors (shape constants etc.) stay as they are
WEIGHT_DTYPES = ("float32", "float16", "int8")


def sha256_file(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export_onnx(nets: list[model_def.VehicleNet], path: pathlib.Path, input_size: int, flip_tta: bool,
                weights_dtype: str = "float16") -> None:
    """Fuse BatchNorm, export the probability graph to ONNX, store the weights as weights_dtype."""
    fused = [copy.deepcopy(net).eval().fuse() for net in nets]
    graph = model_def.ProbabilityGraph(fused, flip_tta).eval()
    dummy = torch.rand(2, 3, input_size, input_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The TorchScript-based exporter (dynamo=False) needs no onnxscript and keeps parameter names
    # as initializer names, which load_torch_model relies on.
    with warnings.catch_warnings():
        # spatial sizes are fixed by the input contract, so shape-dependent Python branches are
        # meant to be traced as constants; only the batch axis is dynamic
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # deliberate: the TorchScript exporter needs no onnxscript (see comment above)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(graph, (dummy,), str(path), dynamo=False, opset_version=OPSET,
                          input_names=["image"], output_names=["probabilities"],
                          dynamic_axes={"image": {0: inference.BATCH_DIM}, "probabilities": {0: inference.BATCH_DIM}},
                          do_constant_folding=True)
    proto = onnx.load(str(path))
    names = {t.name for t in proto.graph.initializer}
    missing = [k for k in graph.state_dict() if k not in names]
    if missing:
        raise RuntimeError(f"ONNX export renamed/folded weights {missing[:5]}; load_torch_model would break")
    _compress_weights(proto, weights_dtype)
    proto.producer_name = "scones-vehicle-classifier"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _compress_weights(proto: onnx.ModelProto, dtype: str) -> None:
    """Store float32 weights compactly; small Cast/Mul nodes restore float32 under the original names.

    onnxruntime constant-folds those nodes when it loads the model, so inference still runs in
    float32 at full speed; only the file shrinks. float16 halves it; int8 (symmetric, one scale per
    output channel, for conv/linear weights; biases stay float16) quarters it.
    """
    if dtype == "float32":
        return
    if dtype not in WEIGHT_DTYPES:
        raise ValueError(f"weight dtype must be one of {WEIGHT_DTYPES}, got {dtype!r}")
    restore = []
    for tensor in list(proto.graph.initializer):  # a snapshot: scales are appended while we go
        if tensor.data_type != TensorProto.FLOAT or int(np.prod(tensor.dims)) < MIN_COMPRESS_ELEMENTS:
            continue
        name, weights = tensor.name, numpy_helper.to_array(tensor)
        # int8 only for the 1x1 convolutions and the linear layer (~95% of the weights); depthwise
        # and stem kernels are tiny and quantize worst, so they stay float16
        pointwise = weights.ndim == 2 or (weights.ndim == 4 and weights.shape[2:] == (1, 1))
        if dtype == "int8" and pointwise:
            peak = np.abs(weights.reshape(len(weights), -1)).max(1)
            # all-zero (dead) channels exist in the pretrained net: keep their scale positive
            scale = np.maximum(peak / 127.0, np.finfo(np.float32).tiny).astype(np.float32)
            scale = scale.reshape((-1,) + (1,) * (weights.ndim - 1))
            q = np.clip(np.rint(weights / scale), -127, 127).astype(np.int8)
            tensor.CopyFrom(numpy_helper.from_array(q, name + model_def.INT8_SUFFIX))
            proto.graph.initializer.append(numpy_helper.from_array(scale, name + model_def.SCALE_SUFFIX))
            restore += [helper.make_node("Cast", [tensor.name], [name + ".f32"], to=TensorProto.FLOAT),
                        helper.make_node("Mul", [name + ".f32", name + model_def.SCALE_SUFFIX], [name])]
        else:
            tensor.CopyFrom(numpy_helper.from_array(weights.astype(np.float16), name + model_def.FP16_SUFFIX))
            restore.append(helper.make_node("Cast", [tensor.name], [name], to=TensorProto.FLOAT))
    nodes = list(proto.graph.node)
    del proto.graph.node[:]
    proto.graph.node.extend(restore + nodes)


def predict_files(classifier: inference.Classifier, files: list[pathlib.Path], batch_size: int = 32) -> np.ndarray:
    out = []
    for start in range(0, len(files), batch_size):
        out.extend(classifier.predict_many([f.read_bytes() for f in files[start:start + batch_size]]))
    return np.asarray(out, dtype=np.float64)


def write_model_dir(model_dir: pathlib.Path, nets: list[model_def.VehicleNet], *, classes: list[str],
                    input_size: int, flip_tta: bool, architecture: dict, hyperparameters: dict,
                    data: dict, val_files: list[pathlib.Path], val_labels: list[int], training: dict,
                    weights_dtype: str = "float16") -> dict:
    """Export everything serving needs into model_dir; returns the metadata written."""
    model_dir = pathlib.Path(model_dir)
    model_path = model_dir / MODEL_FILE
    export_onnx(nets, model_path, input_size, flip_tta, weights_dtype)
    metadata = {
        "model_file": MODEL_FILE,
        "format": "onnx",
        "opset": OPSET,
        "classes": classes,
        "input": {
            "name": "image", "shape": ["N", 3, input_size, input_size], "dtype": "float32", "range": [0.0, 1.0],
            "size": input_size, "layout": "NCHW", "channel_order": "RGB",
        },
        "output": {"name": "probabilities", "shape": ["N", len(classes)], "meaning": "softmax probabilities in `classes` order"},
        "preprocessing": (
            "decode (JPEG/PNG/WEBP/GIF/BMP/TIFF) -> EXIF transpose -> RGB (alpha composited on white) -> "
            f"resize whole image to {input_size}x{input_size} with PIL Lanczos (antialiased) -> float32 CHW / 255. "
            f"Inside the graph: bilinear upsample to {architecture['resolution']}px, "
            f"(x - {architecture['mean']}) / {architecture['std']}, "
            + ("average of softmax over the image and its horizontal mirror." if flip_tta else "softmax.")
        ),
        "normalization": {"inside_graph": True, "mean": architecture["mean"], "std": architecture["std"]},
        "architecture": architecture | {"flip_tta": flip_tta, "ensemble": len(nets)},
        "weights_dtype": weights_dtype,
        "compute_dtype": "float32",
        "hyperparameters": hyperparameters,
        "data": data,
        "training": training,
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": _ort_version(),
                     "numpy": np.__version__, "python": platform.python_version()},
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    # metadata must exist before Classifier.load can open the directory for the baseline pass
    _write_json(model_dir / "metadata.json", metadata)
    classifier = inference.Classifier.load(model_dir)
    probs = predict_files(classifier, val_files)
    metadata["validation"] = {"split": "validation"} | compute_metrics(probs, np.asarray(val_labels), classes)
    metadata["model_sha256"] = sha256_file(model_path)
    metadata["model_bytes"] = model_path.stat().st_size
    _write_json(model_dir / "metadata.json", metadata)
    baseline = {
        "classes": classes, "split": "validation", "n": len(val_files), "labels": [int(v) for v in val_labels],
        "probabilities": [[round(float(p), 6) for p in row] for row in probs],
        "threshold_default": THRESHOLD_DEFAULT,
        "model_sha256": metadata["model_sha256"],
    }
    _write_json(model_dir / "baseline.json", baseline, indent=None)
    return metadata


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _write_json(path: pathlib.Path, obj: dict, indent: int | None = 2) -> None:
    path.write_text(json.dumps(obj, indent=indent) + "\n")
