"""Small ONNX graphs and their static QDQ quantisation, shared by the tests of the int8 graph edits
(bias correction, MSE weight ranges, adaptive rounding). Imported as ``from quant_graphs import ...``;
unlike ``helpers``, it imports onnx and onnxruntime, so only the tests that need them import it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from edgefmnist.export.qdq_rewrite import initializer_values, tensor_producers
from edgefmnist.export.quantize import ImageCalibrationReader
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static


def conv_gemm_net(
    path: Path,
    weights: dict[str, np.ndarray],
    image_size: int,
    pads: tuple[int, int, int, int] = (0, 0, 0, 0),
    transposed: bool = False,
    names: tuple[str, str] = ("conv", "gemm"),
) -> None:
    """Save Conv -> Relu -> Flatten -> Gemm on ``image`` ``[N, 1, image_size, image_size]`` to ``path``.

    ``weights`` holds float ``conv.w``, ``gemm.w`` (``[outputs, K]`` with ``transposed``, i.e. ``transB``,
    else ``[K, outputs]``), ``gemm.b`` and, if the conv has a bias, ``conv.b``; ``names`` names the
    conv and the Gemm node. The output is ``logits`` ``[N, outputs]``.
    """
    conv_inputs = ["image", "conv.w", "conv.b"] if "conv.b" in weights else ["image", "conv.w"]
    nodes = [
        helper.make_node("Conv", conv_inputs, ["conv.y"], name=names[0], pads=list(pads)),
        helper.make_node("Relu", ["conv.y"], ["relu.y"], name="relu"),
        helper.make_node("Flatten", ["relu.y"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "gemm.w", "gemm.b"], ["logits"], name=names[1], transB=int(transposed)),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_gemm",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, image_size, image_size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", len(weights["gemm.b"])])],
        [numpy_helper.from_array(value.astype(np.float32), name) for name, value in weights.items()],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def quantise_qdq(
    fp32_path: Path,
    int8_path: Path,
    images: np.ndarray,
    per_channel: bool,
    weight_type: QuantType = QuantType.QInt8,
    **extra_options: object,
) -> None:
    """Write onnxruntime's static QDQ quantisation of ``fp32_path`` to ``int8_path``: uint8 activations
    calibrated on ``images`` (float32 ``[N, H, W]``), 7-bit symmetric weights of ``weight_type`` (as the
    static preset), per channel if ``per_channel``; ``extra_options`` override onnxruntime's."""
    quantize_static(
        str(fp32_path),
        str(int8_path),
        ImageCalibrationReader(images),
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        reduce_range=True,
        activation_type=QuantType.QUInt8,
        weight_type=weight_type,
        extra_options={"WeightSymmetric": True, **extra_options},
    )


def laplace_net(
    path: Path,
    transposed: bool = True,
    gemm_bias_scale: float = 0.1,
    names: tuple = ("conv", "gemm"),
    conv_bias: bool = True,
) -> None:
    """Conv (8 channels, 3x3, padded) -> Relu -> Flatten -> Gemm (5 outputs, ``transB`` if ``transposed``)
    on ``image`` ``[N, 1, 20, 20]``, with Laplace weights (3,200 per Gemm output) and normal biases
    (none for the conv unless ``conv_bias``)."""
    rng = np.random.default_rng(3)
    gemm_weight = rng.laplace(0, 0.02, (5, 8 * 20 * 20))
    weights = {
        "conv.w": rng.laplace(0, 0.1, (8, 1, 3, 3)),
        "conv.b": rng.normal(0, 0.1, 8),
        "gemm.w": gemm_weight if transposed else gemm_weight.T,
        "gemm.b": rng.normal(0, gemm_bias_scale, 5),
    }
    if not conv_bias:
        del weights["conv.b"]
    conv_gemm_net(path, weights, image_size=20, pads=(1, 1, 1, 1), transposed=transposed, names=names)


LAPLACE_IMAGES = np.random.default_rng(4).uniform(0, 1, (64, 20, 20)).astype(np.float32)


def quantised(fp32_path: Path, per_channel: bool, **options) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """``fp32_path`` and its static QDQ quantisation (7-bit symmetric int8 weights unless ``options`` say else)."""
    int8_path = fp32_path.with_suffix(".int8.onnx")
    quantise_qdq(fp32_path, int8_path, LAPLACE_IMAGES, per_channel, **options)
    return onnx.load(str(fp32_path)), onnx.load(str(int8_path))


def stored_layer(model: onnx.ModelProto, name: str) -> dict[str, np.ndarray]:
    """Layer ``name``'s stored weight, scales and bias (if it has one), the weight and bias dequantised
    along their axis."""
    values = initializer_values(model)
    producers = tensor_producers(model)
    layer = next(node for node in model.graph.node if node.name == name)
    weight_dq, input_dq = producers[layer.input[1]], producers[layer.input[0]]
    q, weight_scale = values[weight_dq.input[0]], values[weight_dq.input[1]]
    shape = [1] * q.ndim
    if weight_scale.ndim == 1:
        axis = next((helper.get_attribute_value(a) for a in weight_dq.attribute if a.name == "axis"), 1)
        shape[axis] = -1
    stored = {
        "q": q,
        "weight": q * weight_scale.astype(np.float64).reshape(shape),
        "weight_scale": weight_scale,
        "input_scale": values[input_dq.input[1]].astype(np.float64),
    }
    if len(layer.input) > 2:
        bias_dq = producers[layer.input[2]]
        stored["bias_q"], stored["bias_scale"] = values[bias_dq.input[0]], values[bias_dq.input[1]]
        stored["bias"] = stored["bias_q"] * stored["bias_scale"].astype(np.float64)
    return stored
