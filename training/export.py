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
import tempfile
import warnings

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

try:
    from . import inference, model_def
    from . import threshold as thresholds
    from .evaluate import compute_metrics
except ImportError:  # SageMaker script mode: run from inside training/
    import inference
    import model_def
    import threshold as thresholds
    from evaluate import compute_metrics

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
        # the mirror image (torch.flip) exports as a step -1 Slice, which only ONNX Runtime folds
        warnings.filterwarnings("ignore", "Constant folding - Only steps=1", UserWarning)
        torch.onnx.export(graph, (dummy,), str(path), dynamo=False, opset_version=OPSET,
                          input_names=["image"], output_names=["probabilities"],
                          dynamic_axes={"image": {0: inference.BATCH_DIM}, "probabilities": {0: inference.BATCH_DIM}},
                          do_constant_folding=True)
    proto = onnx.load(str(path))
    names = {t.name for t in proto.graph.initializer}
    missing = [k for k in graph.state_dict() if k not in names]
    if missing:
        raise RuntimeError(f"ONNX export renamed/folded weights {missing[:5]}; load_torch_model would break")
    _fold_pads_into_convs(proto)
    _compress_weights(proto, weights_dtype)
    proto.producer_name = "scones-vehicle-classifier"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _fold_pads_into_convs(proto: onnx.ModelProto) -> None:
    """Give each stride-2 convolution its asymmetric TF "SAME" padding as the Conv's own `pads`.

    PyTorch's Conv2d pads both sides alike, so those layers export as a zero Pad -> Conv. ONNX
    Runtime runs a Pad outside its blocked (NCHWc) convolution layout, with a layout change on each
    side: a tenth of the batch-1 time for 5 layers. Same arithmetic: the padded values are zeros
    either way.
    """
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    folded = []
    for node in proto.graph.node:
        if node.op_type != "Pad":
            continue
        mode = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "mode"), b"constant")
        value = node.input[2] if len(node.input) > 2 else ""
        readers = consumers[node.output[0]]
        if mode != b"constant" or value or len(readers) != 1 or readers[0].op_type != "Conv":
            raise RuntimeError(f"export: cannot fold {node.name!r} (mode {mode!r}) into a convolution")
        pads = [int(v) for v in _constant_value(proto, node.input[1])]
        begins, ends = pads[:4], pads[4:]
        if begins[:2] != [0, 0] or ends[:2] != [0, 0] or min(pads) < 0:
            raise RuntimeError(f"export: {node.name!r} pads batch or channel axes, or crops: {pads}")
        conv = readers[0]
        conv_pads = next(a for a in conv.attribute if a.name == "pads")
        if any(conv_pads.ints):
            raise RuntimeError(f"export: {conv.name!r} already pads; {node.name!r} would double it")
        conv_pads.ints[:] = begins[2:] + ends[2:]  # ONNX Conv order: (top, left, bottom, right)
        conv.input[0] = node.input[0]
        folded.append(node)
    for node in folded:
        proto.graph.node.remove(node)
    _remove_unused_nodes(proto)


def _constant_value(proto: onnx.ModelProto, name: str) -> np.ndarray:
    """The value of a tensor computed from constants only (the exporter's pad-amount arithmetic)."""
    from onnx.reference import ReferenceEvaluator

    producers = {out: node for node in proto.graph.node for out in node.output}
    initializers = {t.name: t for t in proto.graph.initializer}
    graph_inputs = {i.name for i in proto.graph.input}
    needed, nodes, inits, seen = [name], [], [], set()
    while needed:
        tensor = needed.pop()
        if tensor in seen or not tensor:
            continue
        seen.add(tensor)
        if tensor in initializers:
            inits.append(initializers[tensor])
        elif tensor in graph_inputs or tensor not in producers:
            raise RuntimeError(f"export: {name!r} depends on the input {tensor!r}, not on constants only")
        else:
            nodes.append(producers[tensor])
            needed.extend(producers[tensor].input)
    order = {id(node): i for i, node in enumerate(proto.graph.node)}
    nodes = sorted({id(n): n for n in nodes}.values(), key=lambda n: order[id(n)])
    sub = helper.make_graph(nodes, "constant", [], [helper.make_tensor_value_info(name, TensorProto.UNDEFINED, None)],
                            initializer=inits)
    model = helper.make_model(sub, opset_imports=proto.opset_import)
    return np.asarray(ReferenceEvaluator(model).run(None, {})[0])


def _remove_unused_nodes(proto: onnx.ModelProto) -> None:
    """Drop nodes whose outputs nothing reads (the folded pads' amount computations)."""
    needed = {o.name for o in proto.graph.output}
    keep = []
    for node in reversed(proto.graph.node):  # ONNX nodes are topologically sorted
        if any(name in needed for name in node.output):
            keep.append(node)
            needed.update(node.input)
    del proto.graph.node[:]
    proto.graph.node.extend(reversed(keep))


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
                    weights_dtype: str = "float16", precision_target: float = thresholds.PRECISION_TARGET) -> dict:
    """Export everything serving needs into model_dir; returns the metadata written.

    metadata["threshold"] is picked on the validation images (training.threshold.choose)."""
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
        "output": {"name": "probabilities", "shape": ["N", len(classes)],
                   "meaning": "softmax probabilities in `classes` order"},
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
    # the threshold travels with the model: the lowest one meeting the precision target on validation
    chosen = thresholds.choose(probs, np.asarray(val_labels), precision_target)
    metadata["threshold"] = thresholds.record(chosen, f"validation ({len(val_files)} images)")
    metadata["validation"] = {"split": "validation"} | compute_metrics(probs, np.asarray(val_labels), classes,
                                                                       chosen["threshold"])
    metadata["model_sha256"] = sha256_file(model_path)
    metadata["model_bytes"] = model_path.stat().st_size
    _write_json(model_dir / "metadata.json", metadata)
    baseline = {
        "classes": classes, "split": "validation", "n": len(val_files), "labels": [int(v) for v in val_labels],
        "probabilities": [[round(float(p), 6) for p in row] for row in probs],
        "threshold_default": chosen["threshold"],
        "model_sha256": metadata["model_sha256"],
    }
    _write_json(model_dir / "baseline.json", baseline, indent=None)
    return metadata


REEXPORT_TOLERANCE = 1e-5  # largest allowed change of any probability when a model is exported again


def reexport(model_dir: pathlib.Path, out_dir: pathlib.Path | None = None, *, samples: int = 64) -> dict:
    """Export a model directory's weights again with this exporter; same weights, same arithmetic.

    For models written before an exporter improvement (e.g. the convolutions' own padding, which
    ONNX Runtime runs faster). Writes model.onnx and updates metadata.json / baseline.json (hash,
    size, versions) in out_dir (default: in place), after checking on `samples` random inputs that
    no probability moved by more than REEXPORT_TOLERANCE. Returns what it measured.
    """
    model_dir = pathlib.Path(model_dir)
    out_dir = pathlib.Path(out_dir) if out_dir is not None else model_dir
    metadata = json.loads((model_dir / "metadata.json").read_text())
    baseline = json.loads((model_dir / "baseline.json").read_text())
    graph = model_def.load_torch_model(model_dir)
    size = int(metadata["input"]["size"])
    x = np.random.default_rng(0).random((samples, 3, size, size), dtype=np.float32)
    before = inference.Classifier.load(model_dir, threads=None).predict_array(x)
    old_bytes = (model_dir / metadata["model_file"]).stat().st_size
    with tempfile.TemporaryDirectory(dir=out_dir.parent if out_dir.parent.exists() else None) as tmp:
        staged = pathlib.Path(tmp)
        export_onnx(list(graph.nets), staged / MODEL_FILE, size, graph.flip_tta,
                    metadata.get("weights_dtype", "float32"))
        metadata |= {"model_file": MODEL_FILE, "model_sha256": sha256_file(staged / MODEL_FILE),
                     "model_bytes": (staged / MODEL_FILE).stat().st_size,
                     "versions": metadata.get("versions", {}) | {"torch": torch.__version__, "onnx": onnx.__version__,
                                                                 "onnxruntime": _ort_version()},
                     "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        _write_json(staged / "metadata.json", metadata)
        after = inference.Classifier.load(staged, threads=None).predict_array(x)
        moved = float(np.abs(after - before).max())
        if moved > REEXPORT_TOLERANCE:
            raise RuntimeError(f"the re-exported graph moves a probability by {moved:.2e} (> {REEXPORT_TOLERANCE}); "
                               f"{model_dir} is left as it was")
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in ("metadata.json", MODEL_FILE):
            (staged / name).replace(out_dir / name)
    _write_json(out_dir / "baseline.json", baseline | {"model_sha256": metadata["model_sha256"]}, indent=None)
    return {"max_abs_change": moved, "bytes_before": old_bytes, "bytes_after": metadata["model_bytes"],
            "model_sha256": metadata["model_sha256"]}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m training export",
                                description="Export a trained model directory again with this version's exporter "
                                            "(same weights; checks the probabilities do not move).")
    p.add_argument("model_dir", help="a model directory written by training.train (metadata.json, model.onnx, "
                                     "baseline.json)")
    p.add_argument("--out", help="write here instead of in place")
    args = p.parse_args(argv)
    try:
        result = reexport(pathlib.Path(args.model_dir), pathlib.Path(args.out) if args.out else None)
    except (FileNotFoundError, KeyError, ValueError, RuntimeError, inference.ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"re-exported {args.model_dir} -> {args.out or args.model_dir}: largest probability change "
          f"{result['max_abs_change']:.1e}, {result['bytes_before']:,} -> {result['bytes_after']:,} bytes, "
          f"sha256 {result['model_sha256'][:12]}")
    return 0


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _write_json(path: pathlib.Path, obj: dict, indent: int | None = 2) -> None:
    path.write_text(json.dumps(obj, indent=indent) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
