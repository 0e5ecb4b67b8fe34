"""int8 quantisation of an exported fp32 model with ``onnxruntime.quantization``.

    edgefmnist export runs/cnn-best.pt --quantize static    # QDQ, per-channel, calibrated
    edgefmnist export runs/mlp-best.pt --quantize dynamic   # int8 weights, activations at run time

Static calibration uses real *training* images (never test images). The layer that
produces the logits and the softmax stay in float: quantised logits saturate at the
calibrated range, and two saturated classes tie.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from edgefmnist.runtime.predictor import INPUT_NAME, OUTPUT_NAMES

QUANT_TYPES = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
QUANTIZED_OPS = ["Conv", "Gemm", "MatMul", "Relu", "MaxPool", "Add", "Mul", "Flatten", "Reshape"]


@dataclass(frozen=True)
class QuantPreset:
    """How to quantise: recorded in the int8 model's metadata."""

    mode: str  # "dynamic" or "static"
    weight_type: str = "int8"
    activation_type: str = "int8"  # static only; dynamic activations are uint8 by onnxruntime's design
    per_channel: bool = True
    quant_format: str = "QDQ"  # static only
    calibration_images: int = 512
    calibration_method: str = "MinMax"
    calibration_seed: int = 0
    float_logits: bool = True  # static only: keep the logits layer in float

    def to_dict(self) -> dict:
        values = asdict(self)
        if self.mode == "dynamic":
            for key in ("activation_type", "quant_format", "calibration_images", "calibration_method",
                        "calibration_seed", "float_logits"):
                values.pop(key)
        return values


PRESETS = {
    "dynamic": QuantPreset(mode="dynamic", per_channel=False),
    "static": QuantPreset(mode="static"),
}


class ImageCalibrationReader(CalibrationDataReader):
    """Feeds calibration images to the static quantiser in batches of 32."""

    def __init__(self, images: np.ndarray, batch_size: int = 32) -> None:
        batches = np.array_split(images.astype(np.float32)[:, None], max(1, len(images) // batch_size))
        self._batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def pick_calibration_images(train_images: np.ndarray, preset: QuantPreset) -> np.ndarray:
    """A seeded random sample of training images."""
    rng = np.random.default_rng(preset.calibration_seed)
    picked = rng.choice(len(train_images), size=min(preset.calibration_images, len(train_images)), replace=False)
    return train_images[np.sort(picked)]


def logits_node(model_path: Path) -> str:
    """The name of the node that produces the ``logits`` output."""
    for node in onnx.load(str(model_path)).graph.node:
        if OUTPUT_NAMES[0] in node.output:
            return node.name
    raise ValueError(f"{model_path}: no node produces {OUTPUT_NAMES[0]!r}")


def quantize_model(fp32_path: Path, int8_path: Path, preset: QuantPreset, train_images: np.ndarray | None = None) -> None:
    """Write the int8 version of ``fp32_path`` to ``int8_path`` (after onnxruntime's pre-processing)."""
    if preset.mode == "static" and train_images is None:
        raise ValueError("static quantisation needs training images for calibration")
    with tempfile.TemporaryDirectory(prefix="edgefmnist-quant-") as workdir:
        prepared = Path(workdir) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))
        if preset.mode == "dynamic":
            quantize_dynamic(prepared, int8_path, per_channel=preset.per_channel,
                             weight_type=QUANT_TYPES[preset.weight_type], op_types_to_quantize=["Conv", "Gemm", "MatMul"])
            return
        quantize_static(
            prepared, int8_path,
            calibration_data_reader=ImageCalibrationReader(pick_calibration_images(train_images, preset)),
            quant_format=QuantFormat[preset.quant_format], per_channel=preset.per_channel,
            activation_type=QUANT_TYPES[preset.activation_type], weight_type=QUANT_TYPES[preset.weight_type],
            op_types_to_quantize=QUANTIZED_OPS, calibrate_method=CalibrationMethod[preset.calibration_method],
            nodes_to_exclude=[logits_node(prepared)] if preset.float_logits else [],
        )
