"""Bias correction of static int8 graphs: the expected weight-rounding error per output channel, checked
against onnxruntime running the same layer, and its effect on the shipped MLP's int8 logits."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from edgefmnist.export.bias_correction import expected_error
from edgefmnist.export.pipeline import onnx_outputs
from edgefmnist.export.quantize import PRESETS, QuantMode, quantize_model
from onnx import TensorProto, helper, numpy_helper


def run_node(node: onnx.NodeProto, weight: np.ndarray, inputs: np.ndarray, tmp_path: Path) -> np.ndarray:
    """``node`` alone (weight ``weight``, no bias) in onnxruntime, in float32 (its CPU Conv has no float64)."""
    attributes = {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}
    node = helper.make_node(node.op_type, ["x", "w"], ["y"], **attributes)
    graph = helper.make_graph(
        [node],
        "layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight.astype(np.float32), "w")],
    )
    path = tmp_path / "layer.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["y"], {"x": inputs.astype(np.float32)})[0]


@pytest.mark.parametrize(
    ("op_type", "attributes", "weight_shape", "input_shape"),
    [
        ("Gemm", {"transB": 1}, (5, 12), (40, 12)),
        ("Gemm", {}, (12, 5), (40, 12)),
        ("Conv", {"pads": [1, 1, 1, 1]}, (6, 3, 3, 3), (8, 3, 9, 9)),
        ("Conv", {"pads": [1, 1, 1, 1], "group": 4}, (4, 1, 3, 3), (8, 4, 7, 7)),
        ("Conv", {"strides": [2, 2], "dilations": [2, 2]}, (3, 2, 3, 3), (8, 2, 11, 11)),
    ],
    ids=["gemm-transB", "gemm", "conv-padded", "conv-depthwise", "conv-strided-dilated"],
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


def test_expected_error_refuses_asymmetric_pads() -> None:
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="odd", pads=[0, 0, 1, 1])
    with pytest.raises(ValueError, match="odd: only 2-D convolutions with symmetric pads"):
        expected_error(node, np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 5, 5)))


@pytest.mark.slow
def test_bias_correction_brings_the_int8_mlp_closer_to_fp32(shipped_mlp: Path, fashion, tmp_path: Path) -> None:
    """On validation images (the calibration images are drawn from the training split), the corrected
    int8 MLP's logits are nearer fp32's, and its biases are all that changed."""
    corrected, plain = tmp_path / "corrected.onnx", tmp_path / "plain.onnx"
    preset = PRESETS[QuantMode.static]
    assert preset.bias_correction
    quantize_model(shipped_mlp, corrected, preset, fashion.train.images)
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
