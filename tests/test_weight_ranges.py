"""MSE weight ranges: the chosen scale is the grid's least squared error, per tensor or per channel, and a
quantised graph keeps 7-bit weights and biases at input scale x weight scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from edgefmnist.export.quantize import ImageCalibrationReader
from edgefmnist.export.weight_ranges import RANGE_FRACTIONS, fit_weight_ranges, mse_fractions
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

LIMIT = 64  # 7-bit weights, as the static preset quantises them


def squared_error(weight: np.ndarray, step: float) -> float:
    return float(np.square(np.clip(np.round(weight / step), -LIMIT, LIMIT) * step - weight).sum())


def test_the_fraction_is_the_grid_point_with_the_least_squared_error() -> None:
    """20,000 Laplace weights (a trained layer's shape of tail): the largest few stretch the min-max
    scale, and clipping them to round the rest finer wins."""
    weight = np.random.default_rng(0).laplace(0, 0.05, (100, 200))
    minmax = np.abs(weight).max() / LIMIT
    errors = [squared_error(weight, minmax * f) for f in RANGE_FRACTIONS]
    fraction = mse_fractions(weight, np.full((1, 1), minmax), LIMIT)
    assert fraction.shape == (1, 1)
    assert fraction[0, 0] == RANGE_FRACTIONS[int(np.argmin(errors))] < 0.9
    assert min(errors) < 0.8 * errors[-1]


def test_per_channel_fractions_follow_each_channel() -> None:
    """A uniform row keeps (nearly) its min-max scale; a Laplace row gets a smaller one."""
    rng = np.random.default_rng(1)
    weight = np.stack([rng.uniform(-1, 1, 20_000), rng.laplace(0, 0.05, 20_000)])
    scale = np.abs(weight).max(axis=1, keepdims=True) / LIMIT
    fraction = mse_fractions(weight, scale, LIMIT)
    assert fraction.shape == (2, 1)
    assert fraction[0, 0] >= 0.95 and fraction[1, 0] < 0.9
    for row in range(2):
        errors = [squared_error(weight[row], scale[row, 0] * f) for f in RANGE_FRACTIONS]
        assert fraction[row, 0] == RANGE_FRACTIONS[int(np.argmin(errors))]


def laplace_net(path: Path) -> None:
    """Conv (8 channels, 3x3, padded) -> Relu -> Flatten -> Gemm (transB, 5 outputs) on ``image``
    ``[N, 1, 20, 20]``, with Laplace weights (3,200 per Gemm row)."""
    rng = np.random.default_rng(3)
    weights = {
        "conv.w": rng.laplace(0, 0.1, (8, 1, 3, 3)),
        "conv.b": rng.normal(0, 0.1, 8),
        "gemm.w": rng.laplace(0, 0.02, (5, 8 * 20 * 20)),
        "gemm.b": rng.normal(0, 0.1, 5),
    }
    nodes = [
        helper.make_node("Conv", ["image", "conv.w", "conv.b"], ["conv.y"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv.y"], ["relu.y"], name="relu"),
        helper.make_node("Flatten", ["relu.y"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "gemm.w", "gemm.b"], ["logits"], name="gemm", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "laplace",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 20, 20])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(value.astype(np.float32), name) for name, value in weights.items()],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def dequantized_layer(model: onnx.ModelProto, name: str) -> dict[str, np.ndarray]:
    """Weight, weight scale, bias, bias scale and input scale of layer ``name``, as stored (biases dequantised)."""
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producers = {output: node for node in model.graph.node for output in node.output}
    layer = next(node for node in model.graph.node if node.name == name)
    weight_dq, bias_dq, input_dq = (producers[tensor] for tensor in (layer.input[1], layer.input[2], layer.input[0]))
    weight_scale = values[weight_dq.input[1]].astype(np.float64)
    shape = [-1] + [1] * (values[weight_dq.input[0]].ndim - 1) if weight_scale.ndim == 1 else []
    return {
        "q": values[weight_dq.input[0]],
        "weight": values[weight_dq.input[0]] * weight_scale.reshape(shape),
        "weight_scale": weight_scale,
        "bias": values[bias_dq.input[0]] * values[bias_dq.input[1]].astype(np.float64),
        "bias_scale": values[bias_dq.input[1]].astype(np.float64),
        "input_scale": values[input_dq.input[1]].astype(np.float64),
    }


@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_fit_weight_ranges_on_a_quantised_graph(per_channel: bool, tmp_path: Path) -> None:
    """No layer's weights get worse and the Gemm's get better; they stay within 7 bits, and each bias
    stays within half a step of fp32's at a scale of input scale x weight scale."""
    fp32_path, int8_path = tmp_path / "net.onnx", tmp_path / "net.int8.onnx"
    laplace_net(fp32_path)
    images = np.random.default_rng(4).uniform(0, 1, (64, 20, 20)).astype(np.float32)
    quantize_static(
        str(fp32_path),
        str(int8_path),
        ImageCalibrationReader(images),
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        reduce_range=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        extra_options={"WeightSymmetric": True},
    )
    fp32, before, after = onnx.load(str(fp32_path)), onnx.load(str(int8_path)), onnx.load(str(int8_path))
    fractions = fit_weight_ranges(after, fp32, LIMIT)
    assert set(fractions) == {"conv", "gemm"} and fractions["gemm"] < 0.97
    exact = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in fp32.graph.initializer}
    for name in ("conv", "gemm"):
        old, new = dequantized_layer(before, name), dequantized_layer(after, name)
        assert new["q"].dtype == np.int8 and np.abs(new["q"]).max() <= LIMIT
        old_error = np.square(old["weight"] - exact[f"{name}.w"]).sum()
        new_error = np.square(new["weight"] - exact[f"{name}.w"]).sum()
        assert new_error <= old_error * (1 + 1e-9), (name, new_error, old_error)
        if name == "gemm":
            assert new_error < 0.95 * old_error, (new_error, old_error)
        np.testing.assert_allclose(new["bias_scale"], new["input_scale"] * new["weight_scale"], rtol=1e-6)
        assert np.all(np.abs(new["bias"] - exact[f"{name}.b"]) <= 0.5 * new["bias_scale"] * (1 + 1e-6))
