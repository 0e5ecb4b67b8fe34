"""Small ONNX graphs and their static QDQ quantisation, shared by the tests of the int8 graph edits
(bias correction, MSE weight ranges). Imported as ``from quant_graphs import ...``; unlike ``helpers``,
it imports onnx and onnxruntime, so only the tests that need them import it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
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
