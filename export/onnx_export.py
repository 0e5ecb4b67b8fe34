"""PyTorch network -> ONNX graph: raw-pixel input ``image``, outputs ``logits`` and ``probabilities``.

    edgefmnist export runs/mlp-best.pt --opset 17

``probabilities = softmax(logits / temperature)``: the graph divides by a scalar initializer
named ``temperature`` (1.0 here; export fits and writes it, :mod:`edgefmnist.export.temperature`).

Uses the TorchScript-based exporter: it writes opset 17 / IR 8, which onnxruntime 1.17 and
later load (the dynamo exporter's graphs start at opset 18 / IR 10, which 1.17 cannot).
BatchNorm is folded into the convolutions by constant folding, and the MLP's pixel
normalisation into its first layer (:func:`edgefmnist.nets.fold_normalization`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from edgefmnist import spec
from edgefmnist.contract import DEFAULT_OPSET, INPUT_NAME, MAX_OPSET, MIN_OPSET, OUTPUT_NAMES, TEMPERATURE_NAME
from edgefmnist.errors import ModelError, first_line
from edgefmnist.model_metadata import ModelMetadata
from edgefmnist.nets import fold_normalization


class WithProbabilities(nn.Module):
    """Adds the output ``softmax(logits / temperature)`` beside the raw logits.

    ``temperature`` is a buffer, so the exported ``Div`` reads it from an initializer of
    that name, which :func:`edgefmnist.export.temperature.set_temperature` rewrites.
    """

    def __init__(self, net: nn.Module, temperature: float = 1.0) -> None:
        super().__init__()
        self.net = net
        self.register_buffer(TEMPERATURE_NAME, torch.tensor(float(temperature)))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(image)
        return logits, torch.softmax(logits / self.temperature, dim=1)


def export_onnx(net: nn.Module, path: Path, opset: int = DEFAULT_OPSET, temperature: float = 1.0) -> None:
    """Write ``net`` (in eval mode) as ONNX with a dynamic batch axis: input float32 ``[N, 1, 28, 28]``,
    outputs ``logits`` and ``probabilities`` float32 ``[N, 10]``, the softmax dividing by ``temperature``.
    Raises :class:`ModelError` for an opset outside ``MIN_OPSET``..``MAX_OPSET``."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ModelError(f"--opset {opset}: supported opsets are {MIN_OPSET}-{MAX_OPSET}")
    net = fold_normalization(net.eval())
    example = torch.zeros(1, *spec.INPUT_SHAPE)
    batch_axis = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            WithProbabilities(net, temperature),
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={INPUT_NAME: batch_axis, OUTPUT_NAMES[0]: batch_axis, OUTPUT_NAMES[1]: batch_axis},
            do_constant_folding=True,
        )


def opset_of(model: onnx.ModelProto) -> int:
    """The model's default-domain (``ai.onnx``) opset; :class:`ModelError` when it imports none."""
    version = next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), None)
    if version is None:
        raise ModelError(f"graph {model.graph.name!r} imports no ai.onnx opset")
    return version


def prune_unused_opsets(model: onnx.ModelProto) -> None:
    """Drop opset imports no node uses (the quantiser stamps ``ai.onnx.ml``, which old runtimes refuse)."""
    used = {node.domain or "" for node in model.graph.node} | {""}
    kept = [entry for entry in model.opset_import if (entry.domain or "") in used or entry.domain == "ai.onnx"]
    del model.opset_import[:]
    model.opset_import.extend(kept)


def finalize_model(path: Path, metadata: ModelMetadata) -> None:
    """Write ``metadata_props``, prune unused opsets, then run the full checker on the result."""
    model = onnx.load(str(path))
    prune_unused_opsets(model)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, metadata.to_props())
    model.producer_name = "edgefmnist"
    onnx.save(model, str(path))
    check_model(path)


def check_model(path: Path) -> None:
    """``onnx.checker`` (full check) and strict shape inference; a failure is a :class:`ModelError`."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
        onnx.shape_inference.infer_shapes(onnx.load(str(path)), strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ModelError(f"{path}: the ONNX checker rejects it ({first_line(exc)})") from None
