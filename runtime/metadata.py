"""Read a model's self-description before any session is built, and guard the onnxruntime version.

    edgefmnist infer --model models/mlp.onnx --image x.jpg     # the predictor reads it first

The schema itself (:class:`ModelMetadata`) is part of the contract and lives in
:mod:`edgefmnist.model_metadata`; this module reads it from the file with the torch- and
onnx-free header parser. The oldest onnxruntime that loads the model is derived from the
file's own opset and IR version (:func:`edgefmnist.contract.oldest_onnxruntime`); the
metadata's ``min_onnxruntime`` can only raise it, so a model whose metadata understates what
its graph needs is refused with a clear line instead of failing inside onnxruntime.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from edgefmnist.runtime.onnx_header import ModelHeader, read_model_header

from edgefmnist.contract import format_version, oldest_onnxruntime, parse_version
from edgefmnist.errors import ModelError
from edgefmnist.model_metadata import CALIBRATION_KEY, SCHEMA_KEY, SCHEMA_VERSION, UPGRADE_HINT, ModelMetadata

__all__ = ["CALIBRATION_KEY", "SCHEMA_KEY", "SCHEMA_VERSION", "ModelMetadata", "needed_onnxruntime", "read_metadata"]


def needed_onnxruntime(header: ModelHeader, source: Path | str) -> str:
    """The oldest onnxruntime that loads a graph of the header's default-domain opset and IR version.

    Raises :class:`ModelError` when the graph is newer than every release the contract knows.
    """
    opset = header.opsets.get("", header.opsets.get("ai.onnx", 0))
    needed = oldest_onnxruntime(opset, header.ir_version)
    if needed is None:
        raise ModelError(
            f"{source}: opset {opset} / IR {header.ir_version} is newer than any onnxruntime this toolkit knows; "
            f"{UPGRADE_HINT}"
        )
    return format_version(needed)


def read_metadata(path: Path) -> ModelMetadata:
    """Read and validate a model's metadata without building an inference session.

    ``min_onnxruntime`` of the result is the later of the recorded one and the one the graph's
    opset and IR version need. Raises :class:`ModelError` for a file that is missing, not ONNX,
    lacks valid edgefmnist metadata, or is newer than any known onnxruntime.
    """
    header = read_model_header(path)
    metadata = ModelMetadata.from_props(header.metadata, path)
    needed = needed_onnxruntime(header, path)
    if parse_version(needed) > parse_version(metadata.min_onnxruntime):
        metadata = dataclasses.replace(metadata, min_onnxruntime=needed)
    return metadata
