"""Graph rewrites around static QDQ quantisation that let onnxruntime pick its fastest int8 kernels.

    edgefmnist export runs/cnn.pt --quantize static     # applies them (edgefmnist.export.quantize)

Before quantisation (on the fp32 graph, exact arithmetic):

- :func:`split_pixel_normalization`, for a CNN quantised whole (preset ``float_first_block`` off;
  the shipped int8 CNN keeps its first block in float), takes its ``x * scale + shift`` off the input, so that
  the quantiser sees the normalised image as the graph input. Its uint8 quantisation with scale
  ``scale`` and zero point ``round(-shift / scale)`` (the mean pixel, 73 for Fashion-MNIST) *is*
  the raw pixel, so the int8 graph needs neither the normalisation nodes nor a QuantizeLinear.
- :func:`first_block_nodes` names the nodes from the input to the first MaxPool (the CNN's
  normalisation, first conv, ReLU and pooling), which quantisation then leaves in float: on
  x86-64 without VNNI, onnxruntime runs a 1-channel-in int8 conv (K = 9) slower than its fp32
  NCHWc conv, and the pooled output is a quarter of the conv's.

After quantisation (on the QDQ graph):

- :func:`cast_uint8_input` makes the graph input uint8 pixels and casts them to float for a
  first block left in float (exact: every pixel 0-255 is a float32).
- :func:`feed_uint8` drops the input's QuantizeLinear and makes the graph input uint8 pixels,
  dequantised with the exact scale and zero point (1 and 0 for raw pixels).
- :func:`strip_output_qdq` strips the Quantize/DequantizeLinear pair on the logits, so onnxruntime
  fuses the last layer into a QGemm with float output (the layer stays quantised).

:func:`first_block_nodes` returns ``[]`` and :func:`split_pixel_normalization` None when the graph has
no such block or normalisation; the other rewrites check the pattern they expect and raise
:class:`ValueError` when it is absent.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SHAPE_OPS = ("Flatten", "Reshape")  # ops that move uint8 pixels without arithmetic


def initializer_values(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every initializer of ``model`` as a numpy array, by name."""
    return {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}


def _consumers(model: onnx.ModelProto, tensor: str) -> list[onnx.NodeProto]:
    return [node for node in model.graph.node if tensor in node.input]


def tensor_producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    """The node of ``model``'s graph that makes each tensor, by tensor name (graph inputs and
    initializers have none)."""
    return {output: node for node in model.graph.node for output in node.output}


def producer(model: onnx.ModelProto, tensor: str) -> onnx.NodeProto | None:
    """The node of ``model``'s graph that makes ``tensor``, or None for a graph input or initializer."""
    return tensor_producers(model).get(tensor)


def _only_consumer(model: onnx.ModelProto, tensor: str, op_type: str) -> onnx.NodeProto:
    consumers = _consumers(model, tensor)
    if len(consumers) != 1 or consumers[0].op_type != op_type:
        found = [node.op_type for node in consumers]
        raise ValueError(f"{tensor!r} should feed one {op_type}, feeds {found}")
    return consumers[0]


def _scalar(values: dict[str, np.ndarray], name: str) -> float:
    if name not in values or values[name].size != 1:
        raise ValueError(f"{name!r} is not a constant scalar")
    return float(values[name].reshape(()))


def _remove_nodes(model: onnx.ModelProto, nodes: list[onnx.NodeProto]) -> None:
    kept = [node for node in model.graph.node if all(node is not gone for gone in nodes)]
    del model.graph.node[:]
    model.graph.node.extend(kept)


def prune_initializers(model: onnx.ModelProto) -> None:
    """Drop initializers that no node reads any more."""
    used = {name for node in model.graph.node for name in node.input}
    kept = [tensor for tensor in model.graph.initializer if tensor.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def split_pixel_normalization(model: onnx.ModelProto) -> tuple[float, float] | None:
    """Remove ``Add(Mul(input, scale), shift)`` at the input; return ``(scale, shift)``, or None when the
    input is not read by one ``Mul``. Raises ``ValueError`` when that ``Mul`` is not followed by one
    ``Add`` or either constant is not a scalar initializer.

    The nodes reading the normalised tensor read the graph input instead, which from then on
    means the *normalised* image (float32 ``[N, 1, 28, 28]``).
    """
    graph_input = model.graph.input[0].name
    consumers = _consumers(model, graph_input)
    if len(consumers) != 1 or consumers[0].op_type != "Mul":
        return None
    mul = consumers[0]
    add = _only_consumer(model, mul.output[0], "Add")
    values = initializer_values(model)
    scale = _scalar(values, mul.input[1] if mul.input[0] == graph_input else mul.input[0])
    shift = _scalar(values, add.input[1] if add.input[0] == mul.output[0] else add.input[0])
    for node in _consumers(model, add.output[0]):
        node.input[:] = [graph_input if name == add.output[0] else name for name in node.input]
    _remove_nodes(model, [mul, add])
    prune_initializers(model)
    return scale, shift


def first_block_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes from the graph input through its first MaxPool, holding exactly one Conv; else ``[]``.

    The nodes must form a chain, each read only by the next (e.g. Mul, Add, Conv, Relu, MaxPool),
    and have names (quantisation excludes them by name). ``[]`` when the input feeds several nodes,
    a node is unnamed, a second Conv comes before the MaxPool, or there is no such MaxPool.
    """
    names, tensor, convs = [], model.graph.input[0].name, 0
    while len(consumers := _consumers(model, tensor)) == 1 and len(consumers[0].output) == 1:
        node = consumers[0]
        convs += node.op_type == "Conv"
        if not node.name or convs > 1:
            return []
        names.append(node.name)
        if node.op_type == "MaxPool":
            return names if convs == 1 else []
        tensor = node.output[0]
    return []


def cast_uint8_input(model: onnx.ModelProto) -> None:
    """Make the graph input uint8 ``[N, 1, 28, 28]`` pixels, cast to float32 for the nodes that read it.

    ``ValueError`` unless the input is float32 and read by some node.
    """
    graph_input = model.graph.input[0]
    if graph_input.type.tensor_type.elem_type != TensorProto.FLOAT or not _consumers(model, graph_input.name):
        raise ValueError(f"the graph input {graph_input.name!r} is not a float32 tensor that nodes read")
    cast_output = f"{graph_input.name}_float"
    for node in _consumers(model, graph_input.name):
        node.input[:] = [cast_output if name == graph_input.name else name for name in node.input]
    cast = helper.make_node("Cast", [graph_input.name], [cast_output], to=TensorProto.FLOAT, name=cast_output)
    model.graph.node.insert(0, cast)
    graph_input.type.tensor_type.elem_type = TensorProto.UINT8


def feed_uint8(model: onnx.ModelProto, scale: float, zero_point: int, tolerance: float = 0.01) -> None:
    """Make the graph input uint8 and drop its QuantizeLinear; its DequantizeLinear gets ``scale``, ``zero_point``.

    The QuantizeLinear must read the input directly or through :data:`SHAPE_OPS` (which then
    run on uint8), and its calibrated parameters must lie within ``tolerance`` (relative scale,
    one zero-point step) of the given ones: a sanity check that the quantiser saw raw pixels.
    Raises ``ValueError`` when the graph does not have that pattern or those parameters.
    """
    graph_input = model.graph.input[0]
    tensor, path = graph_input.name, []
    while True:
        consumers = _consumers(model, tensor)
        if len(consumers) != 1:
            raise ValueError(f"{tensor!r} should feed one node, feeds {[node.op_type for node in consumers]}")
        if consumers[0].op_type not in SHAPE_OPS:
            break
        path.append(tensor)
        tensor = consumers[0].output[0]
    quantize = consumers[0]
    if quantize.op_type != "QuantizeLinear":
        raise ValueError(f"the input reaches a {quantize.op_type}, not a QuantizeLinear")
    values = initializer_values(model)
    calibrated_scale = _scalar(values, quantize.input[1])
    calibrated_zero_point = values[quantize.input[2]]
    if calibrated_zero_point.dtype != np.uint8:
        raise ValueError(f"the input quantises to {calibrated_zero_point.dtype}, not uint8")
    if abs(calibrated_scale / scale - 1) > tolerance or abs(int(calibrated_zero_point) - zero_point) > 1:
        raise ValueError(
            f"the input was calibrated to scale {calibrated_scale}, zero point {int(calibrated_zero_point)}; "
            f"expected {scale}, {zero_point}"
        )
    scale_name, zero_point_name = f"{graph_input.name}_uint8_scale", f"{graph_input.name}_uint8_zero_point"
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(scale, np.float32), scale_name),
            numpy_helper.from_array(np.array(zero_point, np.uint8), zero_point_name),
        ]
    )
    for dequantize in _consumers(model, quantize.output[0]):
        if dequantize.op_type != "DequantizeLinear":
            raise ValueError(f"the input's QuantizeLinear feeds a {dequantize.op_type}")
        dequantize.input[:] = [tensor, scale_name, zero_point_name]
    _remove_nodes(model, [quantize])
    graph_input.type.tensor_type.elem_type = TensorProto.UINT8
    moved = {*path[1:], tensor}  # tensors between the input and the old QuantizeLinear are uint8 now
    kept_info = [info for info in model.graph.value_info if info.name not in moved]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept_info)
    prune_initializers(model)


def strip_output_qdq(model: onnx.ModelProto, logits: str) -> None:
    """Remove ``QuantizeLinear -> DequantizeLinear`` in front of the ``logits`` output, in place: the
    quantised layer then writes float logits. Raises ``ValueError`` when that pair is not there."""
    dequantize = producer(model, logits)
    quantize = None if dequantize is None else producer(model, dequantize.input[0])
    if dequantize is None or dequantize.op_type != "DequantizeLinear" or quantize is None:
        raise ValueError(f"{logits!r} is not dequantised from a QuantizeLinear")
    if quantize.op_type != "QuantizeLinear" or len(_consumers(model, quantize.input[0])) != 1:
        raise ValueError(f"{logits!r}: expected a QuantizeLinear read only by its DequantizeLinear")
    layer = producer(model, quantize.input[0])
    if layer is None:
        raise ValueError(f"{logits!r}: no node computes it")
    layer.output[:] = [logits if name == quantize.input[0] else name for name in layer.output]
    _remove_nodes(model, [quantize, dequantize])
    prune_initializers(model)
