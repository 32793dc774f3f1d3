"""How fast is the shipped model, and what do ONNX export and the HTTP endpoint cost or gain?

    python -m training benchmark [--model-dir training/model] [--images N] [--seconds S] [--rounds R]

Measures, in one run on the same real CIFAR images and the same weights:

1. PyTorch eager (training.model_def.load_torch_model) - the baseline, batch 1 and batched;
2. the exported ONNX model through training.inference.Classifier, batch 1 and batched;
3. the serving endpoint (training.serving.endpoint, started in-process on an ephemeral port) over HTTP with
   boto3's invoke_endpoint, at concurrency 1 and 8.

Every row includes decoding and preprocessing (Classifier.preprocess, also for PyTorch), so rows
compare end to end from image bytes. Each measurement classifies up to N images (cycling through
the set) or stops after S seconds, after two warm-up calls; every path is measured in each of R rounds
(alternating paths, so a slow spell of a shared machine affects all of them) and its row sums the rounds.
Prints a table with per-image latency p50/p95/p99, images/s and the images/s ratio against PyTorch eager at the
same batch size (batch 1 for the HTTP rows), then one JSON line with the same figures. Timings on a shared
machine are noisy: compare ratios within one run, not absolute numbers across runs.

It also prints the float32 ceiling measured in the same run: the multiply-adds of one image through the
network, and how fast one core multiplies float32 matrices (a 1-thread 1024x1024 MatMul in ONNX Runtime,
the library that serves). No float32 runtime can classify faster than cores x that rate / (2 x
multiply-adds), so the serving rows are read against it as well as against PyTorch eager.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from training.inference import DEFAULT_MODEL_DIR, Classifier
from training.preprocess import STAGED_DATA, missing_data

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = pathlib.Path(STAGED_DATA) / "test"  # relative to REPO_ROOT; `make data` stages it
WARMUP_CALLS = 2
EAGER = "pytorch eager"
ORT_ALL_CORES = "onnxruntime all cores"  # one stream, ORT default threads
ORT_SERVING = "onnxruntime 1 thread"  # serving: one thread per run, one stream per core
CEILING_MATMUL_SIZE = 1024  # a square float32 MatMul this large runs at a core's best sustained rate


def multiply_adds(model, example) -> int:
    """Multiply-adds of one forward pass of `model` on `example`: each Conv2d and Linear, from the shapes it sees.

    Everything else in the graph (resize, activations, pooling, softmax) is a few per value, not per weight.
    """
    import torch
    from torch import nn

    total = 0

    def count(module, inputs, output) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * (module.in_channels // module.groups) * kh * kw
        else:
            total += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    return total


def float32_flops_per_core(size: int = CEILING_MATMUL_SIZE, repeats: int = 5) -> float:
    """FLOP/s of one core on a large float32 matrix product in ONNX Runtime (best of `repeats`)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    value = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [size, size]) for name in "ABC"]
    graph = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["C"])], "matmul", value[:2], value[2:])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {"A": rng.random((size, size), dtype=np.float32), "B": rng.random((size, size), dtype=np.float32)}
    session.run(None, feeds)
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        session.run(None, feeds)
        best = min(best, time.perf_counter() - began)
    return 2 * size**3 / best


@dataclass
class Result:
    name: str
    batch: int
    concurrency: int
    images: int
    seconds: float
    call_ms: list[float]  # latency of each call (a batch counts as one call)
    baseline_batch: int | None = None  # compared with PyTorch eager at this batch size (None: it is eager)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    def per_image_ms(self, q: float) -> float:
        return _percentile(self.call_ms, q) / self.batch


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def load_images(data_dir: pathlib.Path, n: int) -> list[bytes]:
    """n image files from data_dir/<class>/*, classes interleaved so every prefix is balanced."""
    if not data_dir.is_dir():
        raise FileNotFoundError(missing_data(data_dir))
    per_class = [sorted(p for p in d.iterdir() if p.is_file()) for d in sorted(data_dir.iterdir()) if d.is_dir()]
    if not any(per_class):
        raise FileNotFoundError(f"no images under {data_dir} (expected {data_dir}/<class>/*.png)")
    files = [f for group in zip(*per_class) for f in group] or [f for group in per_class for f in group]
    return [f.read_bytes() for f in files[:n]]


def measure(name: str, call: Callable[[list[bytes]], object], images: list[bytes], *, batch: int = 1,
            concurrency: int = 1, max_images: int, seconds: float) -> Result:
    """Run `call` on consecutive slices of `batch` images until max_images or `seconds` have passed."""
    print(f"  measuring {name} (batch {batch}, concurrency {concurrency}) ...", file=sys.stderr, flush=True)
    for i in range(WARMUP_CALLS):
        call(_slice(images, i * batch, batch))
    lock = threading.Lock()
    latencies: list[float] = []
    done = 0
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        nonlocal done
        while True:
            with lock:
                if done >= max_images or time.perf_counter() >= deadline:
                    return
                start_index = done
                done += batch
            began = time.perf_counter()
            call(_slice(images, start_index, batch))
            elapsed = (time.perf_counter() - began) * 1000
            with lock:
                latencies.append(elapsed)

    started = time.perf_counter()
    if concurrency == 1:
        worker()
    else:
        with ThreadPoolExecutor(concurrency, thread_name_prefix="benchmark") as pool:
            for future in [pool.submit(worker) for _ in range(concurrency)]:
                future.result()
    wall = time.perf_counter() - started
    return Result(name, batch, concurrency, len(latencies) * batch, wall, latencies)


def _combine(rounds: tuple[Result, ...]) -> Result:
    """One path's rounds as one measurement: all images over all time, every call's latency."""
    first = rounds[0]
    return Result(first.name, first.batch, first.concurrency, sum(r.images for r in rounds),
                  sum(r.seconds for r in rounds), [ms for r in rounds for ms in r.call_ms])


def _slice(images: list[bytes], start: int, size: int) -> list[bytes]:
    return [images[(start + k) % len(images)] for k in range(size)]


def run(model_dir: pathlib.Path, images: list[bytes], *, max_images: int, seconds: float,
        batch_size: int, concurrency: int, rounds: int = 1) -> tuple[list[Result], dict]:
    import torch

    from training.model_def import load_torch_model
    from training.serving.endpoint import start_endpoint

    classifier = Classifier.load(model_dir)  # serving threads: one per run, one stream per core
    all_cores = Classifier.load(model_dir, threads=None)  # ORT's default: every core for each run
    torch_model = load_torch_model(model_dir).eval()
    streams = os.cpu_count() or 1

    def eager(batch: list[bytes]) -> np.ndarray:
        x = torch.from_numpy(np.stack([classifier.preprocess(image) for image in batch]))
        with torch.inference_mode():
            return torch_model(x).numpy()

    # Same weights, same arithmetic: the exported graph must agree with eager PyTorch.
    check = images[:batch_size]
    agreement = float(np.abs(np.asarray(classifier.predict_many(check)) - eager(check)).max())
    # The fixed batch-1 graph answers as the batched one does.
    single_vs_batch = float(np.abs(np.asarray([classifier.predict(i) for i in check])
                                   - np.asarray(all_cores.predict_many(check))).max())

    ceiling = {"multiply_adds_per_image": multiply_adds(torch_model, torch.zeros(1, 3, classifier.input_size,
                                                                                classifier.input_size)),
               "float32_gflops_per_core": round(float32_flops_per_core() / 1e9, 1)}
    common = {"max_images": max_images, "seconds": seconds}
    specs = [
        (EAGER, eager, {}),
        (EAGER, eager, {"batch": batch_size}),
        (ORT_ALL_CORES, lambda b: all_cores.predict(b[0]), {}),
        (ORT_ALL_CORES, all_cores.predict_many, {"batch": batch_size}),
        (ORT_SERVING, lambda b: classifier.predict(b[0]), {}),
        (ORT_SERVING, lambda b: classifier.predict(b[0]), {"concurrency": streams}),
    ]
    with start_endpoint(model_dir, host="127.0.0.1", port=0, endpoint_name="benchmark",
                        workers=max(concurrency, 1), loader=lambda _: classifier) as server:
        import boto3
        from botocore.config import Config

        local = threading.local()  # one boto3 client per thread, as one per Lambda container

        def invoke(batch: list[bytes]) -> bytes:
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = boto3.client(
                    "sagemaker-runtime", endpoint_url=server.url, region_name="us-east-1",
                    aws_access_key_id="benchmark", aws_secret_access_key="benchmark",
                    config=Config(retries={"total_max_attempts": 1}, max_pool_connections=concurrency))
            return client.invoke_endpoint(EndpointName="benchmark", ContentType="image/png",
                                          Body=batch[0])["Body"].read()

        specs.append(("http endpoint (boto3)", invoke, {}))
        if concurrency > 1:
            specs.append(("http endpoint (boto3)", invoke, {"concurrency": concurrency}))
        # Rounds alternate the paths, so a slow spell of a shared machine lands on all of them alike.
        per_round = []
        for round_number in range(1, rounds + 1):
            print(f"  round {round_number} of {rounds}", file=sys.stderr, flush=True)
            per_round.append([measure(name, call, images, **options, **common) for name, call, options in specs])
    results = [_combine(same_path) for same_path in zip(*per_round)]
    for r in results:
        if r.name != EAGER:
            r.baseline_batch = r.batch  # HTTP rows send one image per request: batch 1
    info = {"onnx_vs_torch_max_abs_diff": agreement, "torch_threads": torch.get_num_threads(),
            "onnx_single_vs_batch_max_abs_diff": single_vs_batch,
            "classes": classifier.classes, "input_size": classifier.input_size, **ceiling}
    return results, info


def _ratio(r: Result, results: list[Result]) -> float | None:
    if r.baseline_batch is None:
        return 1.0
    base = next(b for b in results if b.name == EAGER and b.batch == r.baseline_batch)
    return r.images_per_s / base.images_per_s if base.images_per_s else None


def ceiling_images_per_s(info: dict, cores: int) -> float:
    """The most images/s any float32 runtime can reach on `cores` cores: every multiply-add at the MatMul rate."""
    return cores * info["float32_gflops_per_core"] * 1e9 / (2 * info["multiply_adds_per_image"])


def report(results: list[Result], info: dict, header: dict) -> str:
    lines = [f"{'path':<24} {'batch':>5} {'conc':>4} {'images':>6} {'p50 ms/img':>10} {'p95 ms/img':>10} "
             f"{'p99 ms/img':>10} {'images/s':>9} {'x eager':>8}"]
    rows = []
    for r in results:
        ratio = _ratio(r, results)
        lines.append(f"{r.name:<24} {r.batch:>5} {r.concurrency:>4} {r.images:>6} {r.per_image_ms(50):>10.2f} "
                     f"{r.per_image_ms(95):>10.2f} {r.per_image_ms(99):>10.2f} {r.images_per_s:>9.1f} {ratio:>7.2f}x")
        rows.append({"path": r.name, "batch": r.batch, "concurrency": r.concurrency, "images": r.images,
                     "seconds": round(r.seconds, 3), "p50_ms_per_image": round(r.per_image_ms(50), 3),
                     "p95_ms_per_image": round(r.per_image_ms(95), 3),
                     "p99_ms_per_image": round(r.per_image_ms(99), 3),
                     "images_per_s": round(r.images_per_s, 2),
                     "baseline": f"{EAGER} batch {r.baseline_batch or r.batch}",
                     "ratio_vs_pytorch_eager": round(ratio, 3) if ratio is not None else None})
    lines.append("x eager = images/s divided by PyTorch eager's at the same batch size (batch 1 for HTTP rows).")
    lines.append(f"ONNX vs PyTorch eager, max |difference| in probabilities: {info['onnx_vs_torch_max_abs_diff']:.2e}; "
                 f"fixed batch-1 graph vs batched: {info['onnx_single_vs_batch_max_abs_diff']:.2e}")
    eager = next(r for r in results if r.name == EAGER and r.batch == 1)
    streams = max((r for r in results if r.name == ORT_SERVING), key=lambda r: r.concurrency)
    ceiling = ceiling_images_per_s(info, header["cpus"])
    info = {**info, "ceiling_images_per_s": round(ceiling, 1),
            "ceiling_ratio_vs_pytorch_eager": round(ceiling / eager.images_per_s, 3),
            "serving_share_of_ceiling": round(streams.images_per_s / ceiling, 3)}
    lines.append(f"float32 ceiling: {info['multiply_adds_per_image'] / 1e6:.0f} M multiply-adds per image at "
                 f"{info['float32_gflops_per_core']:.1f} GFLOP/s per core (1-thread {CEILING_MATMUL_SIZE}x"
                 f"{CEILING_MATMUL_SIZE} MatMul) -> at most {ceiling:.1f} images/s on {header['cpus']} cores, "
                 f"{info['ceiling_ratio_vs_pytorch_eager']:.2f}x eager batch 1; {streams.name} x{streams.concurrency} "
                 f"reaches {info['serving_share_of_ceiling']:.0%} of it.")
    lines.append(json.dumps({"benchmark": "training.serving.benchmark", **header, **info, "results": rows}))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training benchmark", description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", default=str(DEFAULT_MODEL_DIR.relative_to(REPO_ROOT)),
                   help="model folder (default training/model, relative to the repo root)")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
                   help="folder of <class>/*.png inputs (default data/staged/test from `make data`, "
                        "relative to the repo root)")
    p.add_argument("--images", type=int, default=256, help="images per measurement (default 256)")
    p.add_argument("--seconds", type=float, default=8.0, help="time cap per measurement (default 8; 6 measurements)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size of the batched rows (default 32)")
    p.add_argument("--concurrency", type=int, default=8, help="parallel HTTP clients of the last row (default 8)")
    p.add_argument("--rounds", type=int, default=3,
                   help="times every path is measured, alternating; rows sum the rounds (default 3)")
    args = p.parse_args(argv)
    if min(args.images, args.batch_size, args.concurrency, args.rounds) < 1 or args.seconds <= 0:
        p.error("--images, --seconds, --batch-size, --concurrency and --rounds must be positive")
    model_dir = REPO_ROOT / args.model_dir  # an absolute --model-dir stays as it is
    data_dir = REPO_ROOT / args.data_dir
    try:
        images = load_images(data_dir, args.images)
    except (FileNotFoundError, NotADirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"training.serving.benchmark: {len(images)} images from {args.data_dir}, model {args.model_dir}, "
          f"{os.cpu_count()} CPUs (timings are noisy when the machine is shared)", file=sys.stderr, flush=True)
    started = time.perf_counter()
    results, info = run(model_dir, images, max_images=args.images, seconds=args.seconds,
                        batch_size=args.batch_size, concurrency=args.concurrency, rounds=args.rounds)
    header = {"model_dir": args.model_dir, "data_dir": args.data_dir, "distinct_images": len(images),
              "rounds": args.rounds,
              "cpus": os.cpu_count(), "total_seconds": round(time.perf_counter() - started, 1)}
    print(report(results, info, header), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
