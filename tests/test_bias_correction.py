"""Bias correction of static int8 graphs: the expected weight-rounding error per output channel, checked
against onnxruntime running the same layer, and its effect on the shipped MLP's int8 logits."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from edgefmnist.export.bias_correction import correct_biases, expected_error
from edgefmnist.export.pipeline import onnx_outputs
from edgefmnist.export.qdq_rewrite import initializer_values, tensor_producers
from edgefmnist.export.quantize import PRESETS, ImageCalibrationReader, QuantMode, quantize_model
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantFormat, quantize_static
from quant_graphs import conv_gemm_net, quantise_qdq


def run_graph(
    nodes: list[onnx.NodeProto], initializers: dict[str, np.ndarray], feeds: dict, tmp_path: Path
) -> np.ndarray:
    """The output ``y`` of ``nodes`` in onnxruntime (float inputs in float32: its CPU Conv has no float64)."""
    graph = helper.make_graph(
        nodes,
        "layer",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in feeds],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(value, name) for name, value in initializers.items()],
    )
    path = tmp_path / "layer.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["y"], {name: value.astype(np.float32) for name, value in feeds.items()})[0]


def run_node(
    node: onnx.NodeProto, weight: np.ndarray, inputs: np.ndarray, tmp_path: Path, bias: np.ndarray | None = None
) -> np.ndarray:
    """``node`` alone with weight ``weight`` (and ``bias``) on ``inputs``."""
    attributes = {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}
    names = ["x", "w"] if bias is None else ["x", "w", "b"]
    layer = helper.make_node(node.op_type, names, ["y"], **attributes)
    initializers = {"w": weight.astype(np.float32)}
    if bias is not None:
        initializers["b"] = bias.astype(np.float32)
    return run_graph([layer], initializers, {"x": inputs}, tmp_path)


@pytest.mark.parametrize(
    ("op_type", "attributes", "weight_shape", "input_shape"),
    [
        ("Gemm", {"transB": 1}, (5, 12), (40, 12)),
        ("Gemm", {}, (12, 5), (40, 12)),
        ("Gemm", {"transB": 1, "alpha": 0.5}, (5, 12), (40, 12)),
        ("Conv", {"pads": [1, 1, 1, 1]}, (6, 3, 3, 3), (8, 3, 9, 9)),
        ("Conv", {"pads": [1, 1, 1, 1], "group": 4}, (4, 1, 3, 3), (8, 4, 7, 7)),
        ("Conv", {"strides": [2, 2], "dilations": [2, 2]}, (3, 2, 3, 3), (8, 2, 11, 11)),
    ],
    ids=["gemm-transB", "gemm", "gemm-alpha", "conv-padded", "conv-depthwise", "conv-strided-dilated"],
)
def test_expected_error_is_the_mean_output_of_the_weight_error(
    op_type: str, attributes: dict, weight_shape: tuple, input_shape: tuple, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    weight_error = rng.normal(size=weight_shape)
    inputs = rng.normal(1.0, 1.0, size=input_shape)
    node = helper.make_node(op_type, ["x", "w"], ["y"], name="layer", **attributes)
    outputs = run_node(node, weight_error, inputs, tmp_path)
    expected = outputs.mean(axis=(0, 2, 3) if op_type == "Conv" else 0)
    np.testing.assert_allclose(expected_error(node, weight_error, inputs), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"pads": [0, 0, 1, 1]}, "odd: only 2-D convolutions with symmetric pads"),
        ({"auto_pad": "SAME_UPPER"}, "odd: only 2-D convolutions with explicit pads"),
    ],
    ids=["asymmetric-pads", "auto-pad"],
)
def test_expected_error_refuses_convolutions_it_cannot_average(attributes: dict, message: str) -> None:
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="odd", **attributes)
    with pytest.raises(ValueError, match=message):
        expected_error(node, np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 5, 5)))


def test_a_graph_without_quantised_biases_is_refused(tmp_path: Path) -> None:
    """The QOperator format fuses the biases into its integer operators: nothing to correct, said plainly."""
    fp32_path, int8_path = tmp_path / "tiny.onnx", tmp_path / "tiny.qop.onnx"
    tiny_net(fp32_path)
    images = np.random.default_rng(2).uniform(0, 1, (64, 1, 8, 8)).astype(np.float32)
    quantize_static(
        str(fp32_path), str(int8_path), ImageCalibrationReader(images[:, 0]), quant_format=QuantFormat.QOperator
    )
    with pytest.raises(ValueError, match="no Conv or Gemm with a quantised bias"):
        correct_biases(onnx.load(str(int8_path)), onnx.load(str(fp32_path)), images)


@pytest.mark.slow
def test_bias_correction_brings_the_int8_mlp_closer_to_fp32(shipped_mlp: Path, fashion, tmp_path: Path) -> None:
    """On validation images (the calibration images are drawn from the training split), the corrected
    int8 MLP's logits are nearer fp32's, and its biases are all that changed."""
    corrected, plain = tmp_path / "corrected.onnx", tmp_path / "plain.onnx"
    preset = dataclasses.replace(PRESETS[QuantMode.static], adaptive_rounding=False)  # weights rounded to nearest
    quantize_model(shipped_mlp, corrected, dataclasses.replace(preset, bias_correction=True), fashion.train.images)
    quantize_model(shipped_mlp, plain, dataclasses.replace(preset, bias_correction=False), fashion.train.images)
    images = fashion.validation.images
    reference = onnx_outputs(shipped_mlp, images)[0]
    error = {path.name: float(((onnx_outputs(path, images)[0] - reference) ** 2).mean()) for path in (corrected, plain)}
    assert error["corrected.onnx"] < 0.9 * error["plain.onnx"], error

    def initializers(path: Path) -> dict[str, np.ndarray]:
        return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}

    before, after = initializers(plain), initializers(corrected)
    changed = sorted(name for name in before if not np.array_equal(before[name], after[name]))
    assert before.keys() == after.keys()
    assert changed and all(name.endswith("bias_quantized") for name in changed), changed


def tiny_net(path: Path) -> None:
    """Conv (4 channels, 3x3) -> Relu -> Flatten -> Gemm (3 outputs) on ``image`` ``[N, 1, 8, 8]``."""
    rng = np.random.default_rng(1)
    weights = {
        "conv.w": rng.normal(0, 0.5, (4, 1, 3, 3)),
        "conv.b": rng.normal(0, 0.1, 4),
        "gemm.w": rng.normal(0, 0.2, (4 * 6 * 6, 3)),  # not transposed: per-channel scales on axis 1
        "gemm.b": rng.normal(0, 0.1, 3),
    }
    conv_gemm_net(path, weights, image_size=8)


@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_each_corrected_layer_has_the_fp32_mean_output(per_channel: bool, tmp_path: Path) -> None:
    """Fed the fp32 activations of the calibration images, every corrected int8 layer (weights and bias as
    onnxruntime dequantises them) gives each output channel the fp32 layer's mean, to within a bias step
    (half a step of rounding, and float32 sums); before the correction it was many steps off."""
    fp32_path, int8_path = tmp_path / "tiny.onnx", tmp_path / "tiny.int8.onnx"
    tiny_net(fp32_path)
    images = np.random.default_rng(2).uniform(0, 1, (256, 1, 8, 8)).astype(np.float32)
    quantise_qdq(fp32_path, int8_path, images[:, 0], per_channel)
    fp32, plain = onnx.load(str(fp32_path)), onnx.load(str(int8_path))
    corrected = onnx.load(str(int8_path))
    assert set(correct_biases(corrected, fp32, images)) == {"conv", "gemm"}
    fp32_weights = {t.name: numpy_helper.to_array(t) for t in fp32.graph.initializer}
    flat = run_graph(
        list(fp32.graph.node[:3]) + [helper.make_node("Identity", ["flat"], ["y"])],
        fp32_weights,
        {"image": images},
        tmp_path,
    )
    layer_inputs = {"conv": images, "gemm": flat}
    for name, weight, bias in (("conv", "conv.w", "conv.b"), ("gemm", "gemm.w", "gemm.b")):
        node = next(n for n in fp32.graph.node if n.name == name)
        axes = (0, 2, 3) if node.op_type == "Conv" else 0
        reference = run_node(node, fp32_weights[weight], layer_inputs[name], tmp_path, fp32_weights[bias]).mean(axes)
        steps = []
        for model in (plain, corrected):
            q_weight, q_bias, bias_step = quantised_layer(model, name, tmp_path)
            mean = run_node(node, q_weight, layer_inputs[name], tmp_path, q_bias).mean(axes)
            steps.append(np.abs(mean - reference).max() / bias_step.min())
        assert steps[1] <= 1 < 5 < steps[0], (name, steps)  # half a step of rounding, float32 means


def quantised_layer(model: onnx.ModelProto, name: str, tmp_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weight and bias of the layer ``name`` as onnxruntime dequantises them, and the bias's scale."""
    initializers = initializer_values(model)
    producers = tensor_producers(model)
    layer = next(node for node in model.graph.node if node.name == name)
    values = []
    for tensor in layer.input[1:3]:
        dequantize = onnx.NodeProto()
        dequantize.CopyFrom(producers[tensor])
        dequantize.output[:] = ["y"]
        constants = {k: initializers[k] for k in dequantize.input}
        values.append(run_graph([dequantize], constants, {}, tmp_path))
    return values[0], values[1], initializers[producers[layer.input[2]].input[1]].astype(np.float64)
