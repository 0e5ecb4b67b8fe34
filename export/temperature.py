"""The temperature inside an exported graph: ``probabilities = Softmax(Div(logits, temperature))``.

    edgefmnist export runs/cnn-best.pt --quantize static   # fp32 and int8 each get their own T

:func:`edgefmnist.export.onnx_export.export_onnx` writes the ``Div`` with a scalar float
initializer named ``temperature`` (1.0); export then fits ``T`` on the finished graph's own
validation logits (:mod:`edgefmnist.calibration`) and writes it here. The ``logits`` output
stays the raw logits, so logit parity with PyTorch is unaffected, and the int8 model's
``Div`` and ``Softmax`` stay float (neither is in the quantiser's op list).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from edgefmnist.export.qdq_rewrite import producer
from onnx import numpy_helper

from edgefmnist.calibration import check_temperature
from edgefmnist.contract import OUTPUT_NAMES, TEMPERATURE_NAME
from edgefmnist.errors import ModelError


def _softmax_node(model: onnx.ModelProto) -> onnx.NodeProto:
    softmax = producer(model, OUTPUT_NAMES[1])
    if softmax is None or softmax.op_type != "Softmax":
        raise ModelError(f"graph {model.graph.name!r}: {OUTPUT_NAMES[1]!r} is not the output of a Softmax")
    return softmax


def temperature_divide(model: onnx.ModelProto) -> onnx.NodeProto | None:
    """The ``Div(logits, T)`` node feeding the ``Softmax`` that makes ``probabilities``.

    None if the ``Softmax`` reads ``logits`` directly.

    (onnxruntime's optimiser drops a division by exactly 1, and exports before temperature
    scaling had none.) Raises :class:`ModelError` for any other graph shape.
    """
    softmax = _softmax_node(model)
    if softmax.input[0] == OUTPUT_NAMES[0]:
        return None
    divide = producer(model, softmax.input[0])
    if divide is None or divide.op_type != "Div" or divide.input[0] != OUTPUT_NAMES[0]:
        raise ModelError(f"graph {model.graph.name!r}: no Div(logits, temperature) before the softmax")
    return divide


def set_temperature(path: Path, temperature: float) -> None:
    """Rewrite the model at ``path`` in place so that ``probabilities = softmax(logits / temperature)``.

    The ``Div`` reads its own scalar float32 initializer named ``temperature`` (a constant the
    optimiser shared with other nodes under another name is left to them; one already named
    ``temperature`` is replaced, for every node that reads it); a graph whose softmax reads the logits
    directly gets the ``Div`` inserted. Raises :class:`ModelError` for a graph of another
    shape and ``ValueError`` for a temperature that is not a finite number > 0.
    """
    check_temperature(temperature)
    model = onnx.load(str(path))
    divide = temperature_divide(model)
    if divide is None:
        softmax = _softmax_node(model)
        divide = onnx.helper.make_node(
            "Div", [OUTPUT_NAMES[0], TEMPERATURE_NAME], ["logits_over_temperature"], name="temperature_scaling"
        )
        softmax.input[0] = divide.output[0]
        nodes = list(model.graph.node)
        nodes.insert(nodes.index(softmax), divide)
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    old = divide.input[1]
    divide.input[1] = TEMPERATURE_NAME
    still_used = any(old in node.input for node in model.graph.node)
    kept = [i for i in model.graph.initializer if i.name != TEMPERATURE_NAME and (still_used or i.name != old)]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    model.graph.initializer.append(numpy_helper.from_array(np.array(temperature, np.float32), TEMPERATURE_NAME))
    onnx.save(model, str(path))
