"""The per-call floor: what onnxruntime costs per call for a graph of one trivial node.

    edgefmnist bench          # its "per-call floor" line

A model's batch-1 latency is this floor plus the work of its own nodes, so the floor shows how
much of each figure is onnxruntime's overhead (input checks, the executor, output allocation)
rather than arithmetic. The graph is ``probabilities = Relu(image)`` on float32 ``[1, 10]``,
written here as ONNX protobuf bytes (the runtime does not depend on the ``onnx`` package), and
run the two ways the predictor can: ``InferenceSession.run`` with a feed dict, and IOBinding
with pre-bound buffers.

Field numbers are those of onnx.proto (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto):
ModelProto ir_version 1, graph 7, opset_import 8; GraphProto node 1, name 2, input 11, output 12;
NodeProto input 1, output 2, op_type 4; ValueInfoProto name 1, type 2; TypeProto tensor_type 1;
Tensor elem_type 1, shape 2; TensorShapeProto dim 1; Dimension dim_value 1;
OperatorSetIdProto version 2.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnxruntime

FLOAT = 1  # TensorProto.FLOAT
IR_VERSION = 8  # onnxruntime 1.17 loads IR <= 9
OPSET = 17
SHAPE = (1, 10)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    """One protobuf field: a varint (wire type 0) for an int, length-delimited (type 2) for bytes."""
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _value_info(name: str) -> bytes:
    dims = b"".join(_field(1, _field(1, size)) for size in SHAPE)
    tensor = _field(1, FLOAT) + _field(2, dims)
    return _field(1, name.encode()) + _field(2, _field(1, tensor))


def one_node_model(op_type: str = "Relu") -> bytes:
    """A serialised ONNX model ``probabilities = op_type(image)`` on float32 ``[1, 10]``."""
    node = _field(1, b"image") + _field(2, b"probabilities") + _field(4, op_type.encode())
    graph = (
        _field(1, node)
        + _field(2, b"floor")
        + _field(11, _value_info("image"))
        + _field(12, _value_info("probabilities"))
    )
    return _field(1, IR_VERSION) + _field(7, graph) + _field(8, _field(2, OPSET))


def floor_runners(threads: int) -> dict[str, Callable[[], object]]:
    """No-argument calls of the one-node graph: ``run`` (feed dict) and ``iobinding`` (bound buffers)."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(one_node_model(), options, providers=["CPUExecutionProvider"])
    image = np.zeros(SHAPE, np.float32)
    output = np.zeros(SHAPE, np.float32)
    binding = session.io_binding()
    binding.bind_cpu_input("image", image)
    binding.bind_output("probabilities", "cpu", 0, np.float32, list(SHAPE), output.ctypes.data)
    return {
        "run": lambda: session.run(None, {"image": image}),
        "iobinding": lambda: session.run_with_iobinding(binding),
    }
