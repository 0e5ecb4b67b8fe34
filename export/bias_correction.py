"""Bias correction of a static QDQ int8 graph: each layer's expected output error from weight rounding is
taken out of its bias.

Rounding the weights of a layer to int8 shifts the mean of its outputs: ``E[(W_q - W) x]`` per output
channel, where ``x`` runs over the layer's inputs. The shift is known from the calibration images, so the
int32 bias can absorb it. This is the analytic bias correction of Nagel et al., "Data-Free Quantization
Through Weight Equalization and Bias Correction" (ICCV 2019), section 4.2, with the input mean taken from the
fp32 activations of the calibration images instead of batch-norm statistics.

Measured on the models shipped when it was chosen (AMD EPYC Zen 3, the static preset with min-max weight
ranges and per-channel Gemm weights, the 5,000 validation images): the mean
squared difference of the int8 logits from fp32's fell from 0.042 to 0.032 for the CNN with per-tensor conv
weights and from 0.029 to 0.022 with per-channel ones; the MLP's top-1 agreement with fp32 went from 99.68 to
99.82 % (test set: 99.76 to 99.81 %).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch
from edgefmnist.export.qdq_rewrite import initializer_values, tensor_producers
from onnx import helper, numpy_helper

from edgefmnist.contract import INPUT_NAME

LAYER_OPS = ("Conv", "Gemm")  # the layers whose weights are quantised, corrected and re-rounded


def attribute(node: onnx.NodeProto, name: str, default: Any) -> Any:
    """The value of ``node``'s attribute ``name``, or ``default`` when the node has none."""
    found = next((attr for attr in node.attribute if attr.name == name), None)
    return default if found is None else helper.get_attribute_value(found)


def scale_shape(dequantize: onnx.NodeProto, scale: np.ndarray, ndim: int) -> list[int]:
    """The shape that broadcasts a DequantizeLinear's ``scale`` over its ``ndim``-dimensional input:
    all ones for one scale, ``-1`` on the node's ``axis`` (default 1) for one scale per channel."""
    shape = [1] * ndim
    if np.size(scale) > 1:
        shape[int(attribute(dequantize, "axis", 1))] = -1
    return shape


def fp32_counterpart(
    node: onnx.NodeProto, fp32: onnx.ModelProto, fp32_values: dict[str, np.ndarray], purpose: str, with_bias: bool
) -> onnx.NodeProto:
    """The node of ``fp32`` that ``node`` (a layer of the int8 graph made from it) was quantised from.

    Matched by name, which must name exactly one fp32 node, one with constant weights and, if
    ``with_bias``, a constant bias (``fp32_values``: its initializers). Raises ``ValueError``,
    prefixed with ``purpose``, otherwise.
    """
    matches = [original for original in fp32.graph.node if original.name == node.name]
    if not node.name or len(matches) != 1:
        raise ValueError(f"{purpose}: layer name {node.name!r} does not name exactly one fp32 node")
    original = matches[0]
    constants = original.input[1:3] if with_bias else original.input[1:2]
    if len(constants) < (2 if with_bias else 1) or any(name not in fp32_values for name in constants):
        what = "weights and bias" if with_bias else "weights"
        raise ValueError(f"{purpose}: {node.name}: the fp32 node has no constant {what}")
    return original


def layer_inputs(model: onnx.ModelProto, names: list[str], images: np.ndarray) -> dict[str, np.ndarray]:
    """The float32 tensors ``names`` of ``model`` (an fp32 graph, or a QDQ graph taking float input) on
    ``images`` (float32 ``[N, 1, 28, 28]``), by name."""
    if not names:  # onnxruntime runs every output for an empty list
        return {}
    tapped = onnx.ModelProto()
    tapped.CopyFrom(model)
    known = {output.name for output in tapped.graph.output}
    for name in names:
        if name not in known:
            tapped.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = onnxruntime.InferenceSession(tapped.SerializeToString(), providers=["CPUExecutionProvider"])
    values = session.run(names, {INPUT_NAME: images.astype(np.float32)})
    return dict(zip(names, values, strict=True))


def dequantized(initializers: dict[str, np.ndarray], dequantize: onnx.NodeProto) -> np.ndarray:
    """The float64 values of a DequantizeLinear of constant initializers (per tensor or per ``axis``)."""
    values = initializers[dequantize.input[0]].astype(np.float64)
    scale = initializers[dequantize.input[1]].astype(np.float64)
    zero_point = initializers[dequantize.input[2]].astype(np.float64) if len(dequantize.input) > 2 else 0.0
    shape = scale_shape(dequantize, scale, values.ndim)
    return (values - np.reshape(zero_point, shape)) * scale.reshape(shape)


def torch_layer(node: onnx.NodeProto, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A Conv or Gemm node computed in torch, in the dtype of ``x``.

    ``x`` is ``[N, C, H, W]`` for a Conv, ``[N, K]`` for a Gemm; ``weight`` is in the node's layout
    (``[C_out, C / group, k, k]``; ``[outputs, K]`` with ``transB``, else ``[K, outputs]``), ``bias``
    ``[C_out]`` or None. Returns ``[N, C_out, H', W']`` or ``[N, outputs]``; a Gemm's ``alpha`` and
    ``beta`` apply. Raises ``ValueError`` (naming the node) for a Gemm with ``transA``, and for a Conv
    that is not 2-D or uses ``auto_pad`` or asymmetric pads.
    """
    if node.op_type == "Gemm":
        if attribute(node, "transA", 0):
            raise ValueError(f"{node.name}: a Gemm with transA is not supported")
        w = weight if attribute(node, "transB", 0) else weight.T
        out = float(attribute(node, "alpha", 1.0)) * (x @ w.T)
        return out if bias is None else out + float(attribute(node, "beta", 1.0)) * bias
    pads = list(attribute(node, "pads", [0, 0, 0, 0]))
    auto_pad = attribute(node, "auto_pad", b"NOTSET")
    if weight.ndim != 4 or x.ndim != 4 or auto_pad not in (b"NOTSET", "NOTSET"):
        raise ValueError(f"{node.name}: only 2-D convolutions with explicit pads are supported")
    if len(pads) != 4 or pads[:2] != pads[2:]:
        raise ValueError(f"{node.name}: only 2-D convolutions with symmetric pads are supported, pads {pads}")
    return torch.nn.functional.conv2d(
        x,
        weight,
        bias,
        stride=tuple(attribute(node, "strides", [1, 1])),
        padding=tuple(pads[:2]),
        dilation=tuple(attribute(node, "dilations", [1, 1])),
        groups=int(attribute(node, "group", 1)),
    )


def expected_error(node: onnx.NodeProto, weight_error: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """``E[(W_q - W) x]`` per output channel, float64 ``[C_out]``, of a Conv or Gemm on ``inputs``.

    ``weight_error`` is ``W_q - W`` in the node's weight layout; ``inputs`` the node's first input on
    the calibration images (``[N, C, H, W]`` for a Conv, ``[N, K]`` for a Gemm). The mean runs over
    the images and, for a Conv, over every output position (padding included); a Gemm's ``alpha``
    scales it. Raises ``ValueError`` as :func:`torch_layer` does.
    """
    outputs = torch_layer(
        node, torch.from_numpy(inputs.astype(np.float64)), torch.from_numpy(weight_error.astype(np.float64)), None
    )
    return outputs.mean(dim=(0, 2, 3) if node.op_type == "Conv" else 0).numpy()


def bias_name(node: onnx.NodeProto) -> str:
    """The name of a Conv's or Gemm's bias input, or ``""`` when it has none."""
    return node.input[2] if len(node.input) > 2 else ""


def quantised_bias(node: onnx.NodeProto, producers: dict[str, onnx.NodeProto]) -> onnx.NodeProto | None:
    """The DequantizeLinear that makes ``node``'s bias in a QDQ graph (``producers``: the node making each
    tensor), or None when the bias is absent or a float tensor."""
    dequantize = producers.get(bias_name(node)) if bias_name(node) else None
    return dequantize if dequantize is not None and dequantize.op_type == "DequantizeLinear" else None


def quantised_weight(
    node: onnx.NodeProto, producers: dict[str, onnx.NodeProto], values: dict[str, np.ndarray], purpose: str
) -> onnx.NodeProto | None:
    """The DequantizeLinear of ``node``'s constant int8 weights in a QDQ graph, or None when ``node`` is
    not a Conv or Gemm or its weights are left in float.

    ``producers`` maps each tensor of the graph to the node that makes it, ``values`` holds the
    graph's initializers. Raises ``ValueError``, prefixed with ``purpose`` and the node's name, when
    the weights are not symmetric int8 (zero point 0).
    """
    dequantize = producers.get(node.input[1]) if node.op_type in LAYER_OPS else None
    if dequantize is None or dequantize.op_type != "DequantizeLinear" or dequantize.input[0] not in values:
        return None
    zero_point = values.get(dequantize.input[2], np.zeros(1)) if len(dequantize.input) > 2 else np.zeros(1)
    if values[dequantize.input[0]].dtype != np.int8 or np.any(zero_point != 0):
        raise ValueError(f"{purpose}: {node.name}: weights must be symmetric int8 (zero point 0)")
    return dequantize


def check_int8_weights(quantized: np.ndarray, weight: np.ndarray, limit: int, purpose: str) -> None:
    """Raise ``ValueError`` (prefixed with ``purpose``) unless the int8 weights ``quantized`` have the
    fp32 ``weight``'s shape and stay within ``+-limit``."""
    largest = int(np.abs(quantized.astype(np.int64)).max(initial=0))
    if quantized.shape != weight.shape or largest > limit:
        found = f"shape {quantized.shape}, largest magnitude {largest}"
        raise ValueError(f"{purpose}: int8 weights of shape {weight.shape} within +-{limit} expected, found {found}")


def correct_biases(int8: onnx.ModelProto, fp32: onnx.ModelProto, images: np.ndarray) -> dict[str, float]:
    """Take each Conv's and Gemm's expected weight-rounding error out of its int32 bias, in place.

    ``int8`` is the QDQ graph that onnxruntime's ``quantize_static`` made from ``fp32`` (same node
    names; weights and biases as DequantizeLinear of initializers); ``images`` are the calibration
    inputs of ``fp32`` (float32 ``[N, 1, 28, 28]``). Layers without a bias or left in float (the
    logits layer when the preset's ``float_logits`` is set) are left as they are; corrected biases
    are clipped to the int32 range, as onnxruntime's quantiser clips them.
    Returns the largest ``|E[(W_q - W) x]|`` of each corrected layer, by node name. Raises
    ``ValueError`` when no layer has a quantised bias (e.g. the QOperator format), or when a layer
    has no counterpart of the same unique name with constant weights and bias in ``fp32``.
    """
    fp32_nodes = {node.name: node for node in fp32.graph.node}
    fp32_values, int8_values = initializer_values(fp32), initializer_values(int8)
    producers = tensor_producers(int8)
    layers = [
        node
        for node in int8.graph.node
        if node.op_type in LAYER_OPS
        and getattr(producers.get(node.input[1]), "op_type", "") == "DequantizeLinear"
        and quantised_bias(node, producers) is not None
    ]
    if not layers:
        raise ValueError("bias correction: no Conv or Gemm with a quantised bias (it needs the QDQ format)")
    for node in layers:
        fp32_counterpart(node, fp32, fp32_values, "bias correction", with_bias=True)
    inputs = layer_inputs(fp32, [fp32_nodes[node.name].input[0] for node in layers], images)
    corrected, replaced = {}, {}
    int32 = np.iinfo(np.int32)
    for node in layers:
        original = fp32_nodes[node.name]
        weight_error = dequantized(int8_values, producers[node.input[1]]) - fp32_values[original.input[1]]
        error = expected_error(node, weight_error, inputs[original.input[0]])
        beta = float(attribute(node, "beta", 1.0)) if node.op_type == "Gemm" else 1.0
        bias = producers[bias_name(node)]  # DequantizeLinear(int32 bias, scale = input scale x weight scale)
        scale = int8_values[bias.input[1]].astype(np.float64)
        exact = fp32_values[bias_name(original)].astype(np.float64) - error / beta
        quantized = np.clip(np.round(exact / scale), int32.min, int32.max).astype(np.int32)
        replaced[bias.input[0]] = numpy_helper.from_array(quantized, bias.input[0])
        corrected[node.name] = float(np.abs(error).max())
    for tensor in int8.graph.initializer:
        if tensor.name in replaced:
            tensor.CopyFrom(replaced[tensor.name])
    return corrected
