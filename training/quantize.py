"""Quantize a model directory to int8: ONNX Runtime static QDQ, per-channel weights, calibrated on training images.

    python -m training quantize --model-dir training/model --data-dir data/staged/train --out build/model-int8
    python -m training gate --champion training/model --challenger build/model-int8   # the judge

--data-dir is the folder the model trained on: it is split with train.py's rule (the model's own
--val-fraction); the calibration images come from the training part only, and the written metadata's
validation figures, threshold and baseline.json from the validation part, as `train` writes them. The
validation part's data hash must match the model's metadata (else the split is not the model's).

The weights are re-exported as float32 from the model's ONNX file (training.model_def.load_torch_model),
then the 1x1 and full convolutions get int8 weights (symmetric, per output channel) and uint8 activations
(min/max over the calibration images), as QuantizeLinear/DequantizeLinear pairs that ONNX Runtime fuses
into integer kernels. Three things keep the labels (docs/model.md has the measurements):
- a convolution followed by ReLU6 has its output range fixed to [0, 6] (the Clip it feeds); calibrated
  min/max of the raw convolution output (about -130..110 after BatchNorm folding) left 6 levels for [0, 6]
  and the model at chance;
- the stem convolution and the classifier head stay float (--keep-float stem,head);
- the depthwise convolutions stay float (a few % of the multiply-adds, the most sensitive to int8).
metadata.json names the float model it came from ("derived_from"), so the gate also
checks that both models give the same labels.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import pathlib
import sys
import tempfile

import numpy as np

from . import export, inference, model_def, preprocess
from . import threshold as thresholds
from .evaluate import compute_metrics
from .train import data_hash, list_images, load_tensors

CALIBRATION_IMAGES = 256  # training images whose activations set the int8 ranges
QUANTIZED_OPS = ["Conv", "Gemm", "MatMul"]
KEEP_FLOAT = ("stem", "head", "depthwise")  # what stays float32 by default (see the module docstring)


def _constants_to_initializers(proto) -> None:
    """Constant nodes -> initializers, so the quantizer sees Clip's bounds (the exporter writes them as nodes)."""
    for node in [n for n in proto.graph.node if n.op_type == "Constant" and n.attribute[0].name == "value"]:
        tensor = node.attribute[0].t
        tensor.name = node.output[0]
        proto.graph.initializer.append(tensor)
        proto.graph.node.remove(node)


def _plan(proto, keep_float: tuple[str, ...]) -> tuple[list[str], dict]:
    """(nodes left in float, per-tensor range overrides: [0, 6] for a convolution output feeding ReLU6 only)."""
    import numpy as np

    consumers: dict[str, list] = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    compute = [n for n in proto.graph.node if n.op_type in QUANTIZED_OPS]
    exclude = []
    if "stem" in keep_float:
        exclude.append(compute[0].name)
    if "head" in keep_float:
        exclude.append(compute[-1].name)
    if "depthwise" in keep_float:
        exclude += [n.name for n in compute if any(a.name == "group" and a.i > 1 for a in n.attribute)]
    relu6 = {n.output[0]: [{"rmin": np.array(0, np.float32), "rmax": np.array(6, np.float32)}]
             for n in compute
             if n.op_type == "Conv" and [c.op_type for c in consumers.get(n.output[0], [])] == ["Clip"]}
    return exclude, relu6


class _Reader:
    """onnxruntime's CalibrationDataReader protocol: one batch of images per call, then None."""

    def __init__(self, x: np.ndarray, batch: int = 16):
        self._batches = iter([{"image": x[i:i + batch]} for i in range(0, len(x), batch)])

    def get_next(self):
        return next(self._batches, None)


def quantize(model_dir: pathlib.Path, data_dir: pathlib.Path, out_dir: pathlib.Path,
             calibration_images: int = CALIBRATION_IMAGES, keep_float: tuple[str, ...] = KEEP_FLOAT, log=print) -> dict:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    model_dir, out_dir = pathlib.Path(model_dir), pathlib.Path(out_dir)
    metadata = json.loads((model_dir / "metadata.json").read_text())
    classes, items = list_images(data_dir)
    if classes != metadata["classes"]:
        raise ValueError(f"{data_dir} has classes {classes}, the model {metadata['classes']}")
    fraction = float(metadata.get("hyperparameters", {}).get("val_fraction", 0.2))
    train_items, val_items = preprocess.stratified_split(items, fraction)
    expected = metadata.get("data", {}).get("validation_sha256")
    if expected and data_hash(val_items, classes) != expected:
        raise ValueError(f"the validation part of {data_dir} is not the one {model_dir} was validated on "
                         "(data hash differs): pass the folder the model trained on")
    # calibration: an even spread of training images (every k-th in name order), never validation ones
    step = max(1, len(train_items) // calibration_images)
    calib = train_items[::step][:calibration_images]
    x_calib, _ = load_tensors(calib)
    graph = model_def.load_torch_model(model_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fp32, prepped = pathlib.Path(tmp) / "fp32.onnx", pathlib.Path(tmp) / "prepped.onnx"
        export.export_onnx(list(graph.nets), fp32, int(metadata["input"]["size"]), graph.flip_tta, "float32")
        proto = onnx.load(str(fp32))
        _constants_to_initializers(proto)
        onnx.save(proto, str(fp32))
        quant_pre_process(str(fp32), str(prepped), skip_optimization=True, skip_symbolic_shape=True)
        exclude, relu6 = _plan(onnx.load(str(prepped)), keep_float)
        quantize_static(str(prepped), str(out_dir / export.MODEL_FILE), _Reader(x_calib.numpy()),
                        quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QUInt8, op_types_to_quantize=QUANTIZED_OPS,
                        nodes_to_exclude=exclude, calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"TensorQuantOverrides": relu6})
    model_path = out_dir / export.MODEL_FILE
    new = {k: v for k, v in metadata.items() if k not in ("validation", "threshold", "model_sha256", "model_bytes")}
    new |= {"weights_dtype": "int8 (per-channel, symmetric)", "compute_dtype": "int8 (uint8 activations, QDQ)",
            "derived_from": {"model_sha256": metadata.get("model_sha256"), "model_bytes": metadata.get("model_bytes"),
                             "method": "onnxruntime quantize_static, QDQ, per-channel int8 weights, MinMax "
                                       f"calibration on {len(calib)} training images, ReLU6 outputs [0, 6]",
                             "float": sorted(keep_float), "n_float_nodes": len(exclude),
                             "calibration_sha256": data_hash(calib, classes), "n_calibration": len(calib)},
            "preprocessing": metadata["preprocessing"] + " Conv/Gemm/MatMul run in int8.",
            "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    (out_dir / "metadata.json").write_text(json.dumps(new, indent=2) + "\n")
    classifier = inference.Classifier.load(out_dir, threads=None)
    probs = export.predict_files(classifier, [p for p, _ in val_items])
    labels = np.asarray([lab for _, lab in val_items])
    chosen = thresholds.choose(probs, labels)
    new["threshold"] = thresholds.record(chosen, f"validation ({len(val_items)} images)")
    new["validation"] = {"split": "validation"} | compute_metrics(probs, labels, classes, chosen["threshold"])
    new["model_sha256"] = export.sha256_file(model_path)
    new["model_bytes"] = model_path.stat().st_size
    (out_dir / "metadata.json").write_text(json.dumps(new, indent=2) + "\n")
    baseline = {"classes": classes, "split": "validation", "n": len(val_items), "labels": labels.tolist(),
                "probabilities": [[round(float(p), 6) for p in row] for row in probs],
                "threshold_default": chosen["threshold"], "model_sha256": new["model_sha256"]}
    (out_dir / "baseline.json").write_text(json.dumps(baseline) + "\n")
    v = new["validation"]
    log(f"int8 model {model_path} ({new['model_bytes'] / 1e6:.2f} MB, "
        f"float {metadata.get('model_bytes', 0) / 1e6:.2f} MB): "
        f"validation accuracy {v['accuracy']:.4f}, ECE {v['ece']:.4f}; " + thresholds.describe(chosen))
    return new


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training quantize", description=__doc__.split("\n")[0])
    p.add_argument("--model-dir", type=pathlib.Path, default=inference.DEFAULT_MODEL_DIR,
                   help="the float model (default: the shipped training/model)")
    p.add_argument("--data-dir", type=pathlib.Path, default=pathlib.Path(preprocess.STAGED_DATA) / "train",
                   help="the folder the model trained on (default: data/staged/train from `make data`)")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("build/model-int8"))
    p.add_argument("--calibration-images", type=int, default=CALIBRATION_IMAGES)
    p.add_argument("--keep-float", default=",".join(KEEP_FLOAT),
                   help=f"comma-separated parts left in float32, of {', '.join(KEEP_FLOAT)} (default: all three; "
                        "'' quantizes every convolution)")
    args = p.parse_args(argv)
    keep = tuple(k for k in args.keep_float.split(",") if k)
    if set(keep) - set(KEEP_FLOAT):
        p.error(f"--keep-float takes {', '.join(KEEP_FLOAT)}, got {args.keep_float!r}")
    if args.calibration_images < 1:
        p.error("--calibration-images must be >= 1")
    try:
        quantize(args.model_dir, args.data_dir, args.out, args.calibration_images, keep)
    except (FileNotFoundError, ValueError, inference.ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
