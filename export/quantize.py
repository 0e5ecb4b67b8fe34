"""int8 quantisation of an exported fp32 model with ``onnxruntime.quantization``.

    edgefmnist export runs/cnn-best.pt --quantize static    # QDQ, uint8 pixels in, calibrated
    edgefmnist export runs/mlp-best.pt --quantize dynamic   # int8 weights, activations at run time

Static calibration uses real *training* images (never test images). The static preset is
the form onnxruntime runs fastest (graph rewrites in :mod:`edgefmnist.export.qdq_rewrite`):

- uint8 activations and a uint8 pixel input: raw pixels are their own quantisation (scale 1,
  zero point 0), so no QuantizeLinear runs on the input;
- the CNN's first block (normalisation, the 1 -> 16 channel conv, ReLU, max-pool) left in float,
  read through a Cast of the uint8 pixels and quantised after the pooling: onnxruntime runs it
  as one fp32 NCHWc conv block, faster than the int8 forms of a 1-channel-in conv measured on x86-64
  without VNNI (the predictor turns off the QDQ propagation that would move the quantisation
  in front of the pooling, as the model's metadata asks:
  :data:`edgefmnist.model_metadata.FLOAT_BLOCK_DISABLED_OPTIMIZERS`);
- the logits layer quantised too, as a QGemm with float output: the Quantize/DequantizeLinear
  pair on the logits is stripped, so the logits do not saturate at a calibrated range; the
  softmax stays in float;
- every weight per tensor, with its scale set by MSE (:mod:`edgefmnist.export.weight_ranges`)
  rather than by ``max |W|``;
- each weight rounded up or down by AdaRound (:mod:`edgefmnist.export.adaround`), to keep
  each layer's outputs on the calibration images nearest fp32's, instead of to nearest.

  Top-1 agreement with fp32 on the 5,000 validation images (used to choose) and the 10,000
  test images, AMD EPYC Zen 3, for the CNN shipped before random rotations (the one trained
  with them, first block in float: 99.68 / 99.62 as exported on an EPYC with AVX-512 VNNI):

  ==================================================  ===============  ===============
  weights                                             MLP val / test   CNN val / test
  ==================================================  ===============  ===============
  min-max, per channel for Gemm only, bias-corrected  99.82 / 99.81    99.28 / 99.24
  min-max, per tensor, bias-corrected                 99.62 / 99.67    99.18 / 99.00
  MSE, per channel for Gemm only, bias-corrected      99.80 / 99.85    99.30 / 99.35
  MSE, per channel for Conv only, bias-corrected      --               99.22 / 99.08
  MSE, per tensor, bias-corrected                     99.74 / 99.76    99.38 / 99.37
  MSE, per tensor, AdaRound 2,000 steps, bias-corr.   --               99.20 / 99.41
  MSE, per tensor, AdaRound 2,000 steps               --               99.38 / 99.64
  MSE, per tensor, AdaRound 10,000 steps, bias-corr.  --               99.46 / 99.55
  MSE, per tensor, AdaRound 10,000 steps              99.72 / 99.79    99.64 / 99.56
  **the same, the CNN's first block in float**        99.72 / 99.79    99.62 / 99.67
  ==================================================  ===============  ===============

  The CNN rows above the last were measured with the first conv quantised too. The last two
  rows are the only ones that keep both models at their agreement goals (MLP 99.7 %, CNN
  99.5 %) on the validation split; the float first block is kept for its speed (README,
  "The static int8 graph"). For the MLP alone, rounding to nearest with
  bias correction agreed on one validation image more. With calibration seed 0, bias
  correction on top of AdaRound lowered the CNN's validation agreement (AdaRound's
  objective already includes the mean output error), so it is off in this preset.
  Per-tensor weights run the MLP's first QGemm faster at batch 1 (the MLP int8 file took
  0.58x the batch-1 time of ``benchmarks/mlp.int8.previous.onnx`` through the predictor,
  against 0.68x with per-channel Gemm weights, in the same interleaved blocks). For the models shipped before,
  entropy or percentile calibration and 2,048-4,096 calibration images moved the agreement
  by at most 0.1 point; for the CNN with MSE ranges and bias correction, percentile
  calibration or 2,048 images gave 99.37-99.39 % on the test set. When a model fails
  validation, export retries with every weight per channel
  (:func:`edgefmnist.export.pipeline.preset_and_fallback`). Bias correction
  (:mod:`edgefmnist.export.bias_correction`) stays available as a preset field.

Static int8 weights are 7-bit (``reduce_range=True``), so that the integer layers give the same
sums on every CPU (the CNN's float first block can differ in its last bits between CPUs' fp32
kernels, so a pooled value on a rounding boundary may be quantised one step apart).
onnxruntime runs QDQ int8 activations as uint8 on x86-64 (it adds 128 to their
zero points) and multiplies them with int8 weights; on AVX2 or AVX-512 without VNNI its U8S8
kernels use ``vpmaddubsw``, which adds two u8 x s8 products into a *saturating int16*
(2 x 255 x 127 = 64,770 > 32,767). VNNI x86 and Arm accumulate in int32 and never saturate.
onnxruntime's quantisation docs, "Data type selection" -> "When and why do I need to try
U8U8?" (https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html),
name this and recommend ``reduce_range`` or U8U8. With weights in [-64, 64] the pair is at
most 2 x 255 x 64 = 32,640, so no input can saturate and the int32 sums are the same on
VNNI, AVX2-only and Arm CPUs; activations stay 8-bit (their calibrated range is a different
clipping, the same on every CPU). Measured on an AMD EPYC (Zen 3, AVX2, no VNNI), CNN:
91.38 % with 8-bit weights under graph optimisation "all" vs 92.75 % under "basic" (which runs
the Q/DQ pairs in float, without the fused integer kernels); with 7-bit weights 92.73 % under
both, the same label for all 10,000 test images, at the same batch-1 latency (within noise).
On 2,000 test images its logits there equal, bit for bit, those of an emulated Cortex-A72
(qemu, onnxruntime 1.27, as scripts/arm64-smoke.sh runs it); with 8-bit weights they differed by
up to 6.1 and on 4 % of the labels. U8U8 cures it too (92.75 %) but was ~10 % slower there.
The dynamic preset keeps 8-bit weights: on that EPYC 7-bit weights lowered its agreement with
fp32 (CNN 99.60 -> 99.09 %).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from edgefmnist.export.adaround import round_adaptively
from edgefmnist.export.bias_correction import correct_biases
from edgefmnist.export.qdq_rewrite import (
    cast_uint8_input,
    feed_uint8,
    first_block_nodes,
    producer,
    split_pixel_normalization,
    strip_output_qdq,
)
from edgefmnist.export.weight_ranges import fit_weight_ranges
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization import QuantFormat as OrtQuantFormat
from onnxruntime.quantization.shape_inference import quant_pre_process

from edgefmnist.contract import INPUT_DTYPE_NAMES, INPUT_NAME, OUTPUT_NAMES, Choice

QUANT_TYPES = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}


class QuantMode(Choice):
    """onnxruntime's two ways to quantise a float model to int8."""

    dynamic = "dynamic"  # int8 weights; activations quantised at run time (onnxruntime's quantize_dynamic)
    static = "static"  # int8 weights and activations, ranges calibrated on training images (quantize_static)


class QuantFormat(Choice):
    """onnxruntime's two static formats: QuantizeLinear/DequantizeLinear pairs, or fused integer operators."""

    QDQ = "QDQ"
    QOperator = "QOperator"


QUANTIZED_OPS = ["Conv", "Gemm", "MatMul", "Relu", "MaxPool", "Add", "Mul", "Flatten", "Reshape"]


@dataclass(frozen=True)
class QuantPreset:
    """How to quantise: recorded in the int8 model's metadata."""

    mode: QuantMode
    weight_type: str = "int8"
    activation_type: str = "int8"  # static only; dynamic activations are uint8 by onnxruntime's design
    per_channel: bool = True  # every weight per output channel; else only those of per_channel_ops
    per_channel_ops: tuple[str, ...] = ()  # static only: op types whose weights are per output channel
    quant_format: QuantFormat = QuantFormat.QDQ  # static only
    calibration_images: int = 512  # 2,048-4,096 moved the agreement by at most 0.1 point (module docstring)
    calibration_method: str = "MinMax"
    calibration_seed: int = 0
    float_logits: bool = True  # static only: keep the logits layer in float (else a QGemm with float output)
    # 7-bit weights: no int16 saturation in x86 AVX2/AVX-512 (non-VNNI) U8S8 kernels (module docstring).
    # False is onnxruntime's default, and what a model whose metadata lacks this key was made with.
    reduce_range: bool = False
    # static only (edgefmnist.export.qdq_rewrite): "uint8" takes the raw pixels as uint8, with the
    # input's QuantizeLinear gone. Absent from older models' metadata: float32 input.
    input_dtype: str = "float32"
    # static only: the nodes from the input through the first MaxPool (a CNN's normalisation, first conv,
    # ReLU and pooling) stay in float, read through a Cast from the uint8 input; the MLP has no such block.
    # Absent from older models' metadata: quantised with the rest.
    float_first_block: bool = False
    # static only (edgefmnist.export.bias_correction): each layer's expected weight-rounding error taken
    # out of its int32 bias. Absent from older models' metadata: not corrected.
    bias_correction: bool = False
    # static only (edgefmnist.export.weight_ranges): weight scales that minimise the squared rounding and
    # clipping error instead of covering max |W|. Absent from older models' metadata: min-max scales.
    mse_weight_ranges: bool = False
    # static only (edgefmnist.export.adaround): each weight rounded up or down to keep the layer's outputs
    # closest to fp32, learned on the calibration images. Absent from older models' metadata: nearest.
    adaptive_rounding: bool = False
    adaptive_rounding_iterations: int = 10_000  # Adam steps per layer

    def __post_init__(self) -> None:
        """Parse the enum fields (strings accepted); ``ValueError`` for an unknown mode, format, type,
        method or input dtype, or fewer than one calibration image."""
        object.__setattr__(self, "mode", QuantMode.parse(self.mode, "quantisation mode"))
        object.__setattr__(self, "quant_format", QuantFormat.parse(self.quant_format, "quantisation format"))
        for name in ("weight_type", "activation_type"):
            if getattr(self, name) not in QUANT_TYPES:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; expected one of {', '.join(QUANT_TYPES)}")
        if self.input_dtype not in INPUT_DTYPE_NAMES:
            raise ValueError(
                f"unknown input_dtype {self.input_dtype!r}; expected one of {', '.join(INPUT_DTYPE_NAMES)}"
            )
        if self.calibration_images < 1:
            raise ValueError(f"calibration_images must be at least 1, not {self.calibration_images}")
        if self.calibration_method not in CalibrationMethod.__members__:
            raise ValueError(
                f"unknown calibration method {self.calibration_method!r}; "
                f"expected one of {', '.join(CalibrationMethod.__members__)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain values, as the int8 model's metadata records them (static-only fields left out for dynamic)."""
        values = {key: Choice.plain(value) for key, value in asdict(self).items()}
        if self.mode is QuantMode.dynamic:
            for key in (
                "activation_type",
                "quant_format",
                "calibration_images",
                "calibration_method",
                "calibration_seed",
                "float_logits",
                "input_dtype",
                "float_first_block",
                "per_channel_ops",
                "bias_correction",
                "mse_weight_ranges",
                "adaptive_rounding",
                "adaptive_rounding_iterations",
            ):
                values.pop(key)
        return values


PRESETS = {
    QuantMode.dynamic: QuantPreset(mode=QuantMode.dynamic, per_channel=False),
    QuantMode.static: QuantPreset(
        mode=QuantMode.static,
        activation_type="uint8",
        per_channel=False,
        float_logits=False,
        reduce_range=True,
        input_dtype="uint8",
        float_first_block=True,
        mse_weight_ranges=True,
        adaptive_rounding=True,
    ),
}


class ImageCalibrationReader(CalibrationDataReader):
    """Feeds calibration images to the static quantiser in ``N // 32`` batches of near-equal size
    (``np.array_split``: 32 to 63 images each, or one batch below 32). ``images``: ``[N, 28, 28]``
    pixels, any real dtype; each batch is float32 ``[n, 1, 28, 28]``."""

    def __init__(self, images: np.ndarray, batch_size: int = 32) -> None:
        batches = np.array_split(images.astype(np.float32)[:, None], max(1, len(images) // batch_size))
        self._batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def pick_calibration_images(train_images: np.ndarray, preset: QuantPreset) -> np.ndarray:
    """``preset.calibration_images`` training images (uint8 ``[N, 28, 28]`` in, the same dtype out,
    ``[min(N, calibration_images), 28, 28]``), drawn without replacement with ``preset.calibration_seed``."""
    rng = np.random.default_rng(preset.calibration_seed)
    picked = rng.choice(len(train_images), size=min(preset.calibration_images, len(train_images)), replace=False)
    return train_images[np.sort(picked)]


def logits_node(model_path: Path) -> str:
    """The name of the node that produces the ``logits`` output; raises ``ValueError`` when none does."""
    node = producer(onnx.load(str(model_path)), OUTPUT_NAMES[0])
    if node is None:
        raise ValueError(f"{model_path}: no node produces {OUTPUT_NAMES[0]!r}")
    return node.name


def per_channel_overrides(model: onnx.ModelProto, op_types: tuple[str, ...]) -> dict[str, list[dict[str, int]]]:
    """onnxruntime's ``TensorQuantOverrides`` that quantise the weights of ``op_types`` per output channel.

    The output-channel axis of a Gemm weight is 0 with ``transB=1`` (PyTorch's export), else 1;
    of a Conv weight 0.
    """
    overrides = {}
    for node in model.graph.node:
        if node.op_type not in op_types:
            continue
        transposed = any(attr.name == "transB" and attr.i == 1 for attr in node.attribute)
        overrides[node.input[1]] = [{"axis": 0 if node.op_type == "Conv" or transposed else 1}]
    return overrides


def quantize_model(
    fp32_path: Path, int8_path: Path, preset: QuantPreset, train_images: np.ndarray | None = None
) -> QuantPreset:
    """Write the int8 version of ``fp32_path`` to ``int8_path`` (after onnxruntime's pre-processing).

    Returns the preset as applied: ``float_first_block`` is False for a graph without such a block
    (the MLP). ``train_images`` (uint8 ``[N, 28, 28]``) are needed for static quantisation; raises
    :class:`ValueError` without them, or when a rewrite of the preset does not fit the graph.
    """
    if preset.mode is QuantMode.static and train_images is None:
        raise ValueError("static quantisation needs training images for calibration")
    with tempfile.TemporaryDirectory(prefix="edgefmnist-quant-") as workdir:
        prepared = Path(workdir) / "prepared.onnx"
        if preset.mode is QuantMode.dynamic:
            quant_pre_process(str(fp32_path), str(prepared))
            quantize_dynamic(
                prepared,
                int8_path,
                per_channel=preset.per_channel,
                reduce_range=preset.reduce_range,
                weight_type=QUANT_TYPES[preset.weight_type],
                op_types_to_quantize=["Conv", "Gemm", "MatMul"],
            )
            return preset
        assert train_images is not None
        model = onnx.load(str(fp32_path))
        input_scale, input_zero_point = 1.0, 0  # raw pixels 0-255 are their own uint8 quantisation
        keep_float = preset.float_first_block and bool(first_block_nodes(model))
        split = preset.input_dtype == "uint8" and not keep_float  # a float first block keeps its normalisation
        normalization = split_pixel_normalization(model) if split else None
        calibration = pick_calibration_images(train_images, preset).astype(np.float32)
        if normalization is not None:  # the graph now starts from the normalised image
            input_scale, shift = normalization
            input_zero_point = int(round(-shift / input_scale))
            calibration = input_scale * (calibration - input_zero_point)  # what the uint8 pixels dequantise to
        rewritten = Path(workdir) / "rewritten.onnx"
        onnx.save(model, str(rewritten))
        quant_pre_process(str(rewritten), str(prepared))
        prepared_model = onnx.load(str(prepared))
        in_float = first_block_nodes(prepared_model) if keep_float else []  # the names quantisation sees
        if keep_float and not in_float:
            raise ValueError("onnxruntime's pre-processing changed the first block; it cannot stay in float")
        quantize_static(
            prepared,
            int8_path,
            calibration_data_reader=ImageCalibrationReader(calibration),
            quant_format=OrtQuantFormat[preset.quant_format.value],
            per_channel=preset.per_channel,
            reduce_range=preset.reduce_range,
            activation_type=QUANT_TYPES[preset.activation_type],
            weight_type=QUANT_TYPES[preset.weight_type],
            op_types_to_quantize=QUANTIZED_OPS,
            calibrate_method=CalibrationMethod[preset.calibration_method],
            nodes_to_exclude=in_float + ([logits_node(prepared)] if preset.float_logits else []),
            # Pinned rather than left to onnxruntime's defaults: symmetric weights (zero point 0,
            # |q| <= 64 with reduce_range), asymmetric activations (all 256 levels after a ReLU).
            extra_options={
                "WeightSymmetric": True,
                "ActivationSymmetric": False,
                "TensorQuantOverrides": per_channel_overrides(prepared_model, preset.per_channel_ops),
            },
        )
        model = onnx.load(str(int8_path))
        refine_int8(model, prepared_model, preset, calibration, bool(in_float), (input_scale, input_zero_point))
        onnx.save(model, str(int8_path))
        return replace(preset, float_first_block=keep_float)


def refine_int8(
    model: onnx.ModelProto,
    prepared_model: onnx.ModelProto,
    preset: QuantPreset,
    calibration: np.ndarray,
    kept_float_block: bool,
    input_quantisation: tuple[float, int],
) -> None:
    """Apply ``preset``'s rewrites to onnxruntime's static int8 ``model``, in place: MSE weight ranges,
    AdaRound and bias correction (each against ``prepared_model``, the fp32 graph quantisation saw,
    on the ``calibration`` images, float32 ``[N, 28, 28]``), the uint8 input (cast to float when
    ``kept_float_block``, the graph's first block having stayed in float, else fed as the quantised
    input of ``input_quantisation``, its scale and zero point) and float logits."""
    limit = 64 if preset.reduce_range else 127
    if preset.mse_weight_ranges:
        fit_weight_ranges(model, prepared_model, limit)
    if preset.adaptive_rounding:
        round_adaptively(
            model,
            prepared_model,
            calibration[:, None],
            limit,
            preset.adaptive_rounding_iterations,
            preset.calibration_seed,
        )
    if preset.bias_correction:
        correct_biases(model, prepared_model, calibration[:, None])
    if preset.input_dtype == "uint8" and kept_float_block:
        cast_uint8_input(model)
    elif preset.input_dtype == "uint8":
        feed_uint8(model, *input_quantisation)
    if not preset.float_logits:
        strip_output_qdq(model, OUTPUT_NAMES[0])
