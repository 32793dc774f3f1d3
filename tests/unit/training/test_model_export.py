"""training.export + training.model_def: BatchNorm fusion, weight storage types, eager reload."""

import json

import numpy as np
import pytest
import torch

from training import export, model_def
from training.inference import Classifier


@pytest.fixture(scope="module")
def trained_looking_net():
    """A small-resolution net whose BatchNorm statistics are not the identity (as after training)."""
    torch.manual_seed(0)
    net = model_def.VehicleNet(2, resolution=32)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return net.eval()


def write_dir(tmp_path, net, dtype):
    model_dir = tmp_path / dtype
    export.export_onnx([net], model_dir / export.MODEL_FILE, 32, flip_tta=True, weights_dtype=dtype)
    metadata = {"model_file": export.MODEL_FILE, "classes": ["bicycle", "motorcycle"], "input": {"size": 32},
                "architecture": {"resolution": 32, "mean": 0.5, "std": 0.5, "flip_tta": True, "ensemble": 1}}
    (model_dir / "metadata.json").write_text(json.dumps(metadata))
    return model_dir


@pytest.mark.parametrize("dtype,tolerance", [("float32", 1e-5), ("float16", 5e-3), ("int8", 5e-2)])
def test_exported_graph_matches_the_trained_network(tmp_path, trained_looking_net, dtype, tolerance):
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = model_def.ProbabilityGraph([trained_looking_net]).eval()(x).numpy()
    model_dir = write_dir(tmp_path, trained_looking_net, dtype)
    served = Classifier.load(model_dir, threads=1).predict_array(x.numpy())
    np.testing.assert_allclose(served, reference, atol=tolerance)
    # the eager reload reads the same stored weights, so it matches onnxruntime tightly in every mode
    with torch.no_grad():
        eager = model_def.load_torch_model(model_dir)(x).numpy()
    np.testing.assert_allclose(eager, served, atol=1e-5)


def test_weight_storage_shrinks_the_file(tmp_path, trained_looking_net):
    sizes = {d: (write_dir(tmp_path, trained_looking_net, d) / export.MODEL_FILE).stat().st_size
             for d in export.WEIGHT_DTYPES}
    assert sizes["float16"] < 0.55 * sizes["float32"]
    assert sizes["int8"] < 0.35 * sizes["float32"]


def test_flip_tta_makes_predictions_mirror_invariant(trained_looking_net):
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    graph = model_def.ProbabilityGraph([trained_looking_net], flip_tta=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(graph(x), graph(x.flip(3)), atol=1e-6, rtol=0)


def test_pretrained_weights_load_into_the_rebuilt_architecture():
    net = model_def.VehicleNet(2)
    model_def.load_pretrained(net)  # raises if any key or shape does not fit
    source = torch.load(model_def.pretrained_weights_path(), map_location="cpu", weights_only=True)
    torch.testing.assert_close(net.state_dict()["blocks.15.project.conv.weight"],
                               source["_blocks.15._project_conv.weight"])


def test_unknown_weight_dtype_is_refused(tmp_path, trained_looking_net):
    with pytest.raises(ValueError, match="weight dtype"):
        export.export_onnx([trained_looking_net], tmp_path / "m.onnx", 32, True, weights_dtype="bfloat16")


@pytest.mark.parametrize("size,kernel,stride", [(160, 3, 2), (80, 5, 2), (81, 5, 2), (40, 5, 1), (5, 1, 1), (1, 3, 2)])
def test_planned_padding_is_tf_same(size, kernel, stride):
    """The padding fixed at construction is TensorFlow's "SAME" (the pretrained weights assume it)."""
    torch.manual_seed(0)
    layer = model_def.ConvBNAct(4, 6, kernel, stride, in_size=size).eval()
    x = torch.rand(2, 4, size, size)
    out_size = -(-size // stride)
    total = max((out_size - 1) * stride + kernel - size, 0)
    before, after = total // 2, total - total // 2  # TF puts the odd pixel after
    with torch.no_grad():
        expected = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (before, after, before, after)),
                                              layer.conv.weight, stride=stride)
        expected = torch.nn.functional.relu6(layer.bn(expected))
        got = layer(x)
    assert got.shape[-2:] == (out_size, out_size)
    torch.testing.assert_close(got, expected)


def test_exported_graph_pads_inside_its_convolutions(tmp_path, trained_looking_net):
    """No Pad nodes (ONNX Runtime would leave its fast conv layout around each); stride-2 Convs pad unevenly."""
    import onnx

    proto = onnx.load(str(write_dir(tmp_path, trained_looking_net, "float32") / export.MODEL_FILE))
    ops = [node.op_type for node in proto.graph.node]
    assert "Pad" not in ops and ops.count("Conv") == 49
    pads = [list(next(a.ints for a in n.attribute if a.name == "pads"))
            for n in proto.graph.node if n.op_type == "Conv"]
    assert [0, 0, 1, 1] in pads  # 3x3 stride 2 on an even size: the extra pixel after, as TF "SAME"
