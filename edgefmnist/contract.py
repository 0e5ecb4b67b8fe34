"""The model's interface, defined once: names, dtypes, opsets, tolerances, thresholds, shipped files.

    edgefmnist export runs/mlp.pt --opset 17 --atol 1e-4   # the defaults come from here
    python -m edgefmnist.contract                          # the shipped file names (Makefile, scripts)

Training, export, validation, the runtime and the CLI defaults all read these values; nothing
else defines them. Like :mod:`edgefmnist.spec` (the facts about Fashion-MNIST itself), this
module imports only the standard library and numpy, never torch, onnx or onnxruntime, so a
board without torch imports it too.
"""

from __future__ import annotations

import re
import sys
from enum import Enum
from pathlib import PurePath
from typing import TypeVar

import numpy as np

from edgefmnist import spec

# ---- the graph's signature -------------------------------------------------------------------
INPUT_NAME = "image"  # [batch, 1, 28, 28] raw 0-255 pixels, float32 or uint8 (normalisation is in the graph)
INPUT_DTYPE = np.float32  # of fp32 models; int8 models take the uint8 pixels themselves
# onnxruntime's names of the input types a model may take, and their numpy dtypes
INPUT_DTYPES: dict[str, np.dtype] = {"tensor(float)": np.dtype(np.float32), "tensor(uint8)": np.dtype(np.uint8)}
INPUT_DTYPE_NAMES = tuple(dtype.name for dtype in INPUT_DTYPES.values())  # "float32", "uint8": as metadata names them
INPUT_LAYOUT = "NCHW"
LOGITS_NAME = "logits"  # float32 [batch, 10], raw
PROBABILITIES_NAME = "probabilities"  # float32 [batch, 10], softmax(logits / temperature)
OUTPUT_NAMES = (LOGITS_NAME, PROBABILITIES_NAME)
TEMPERATURE_NAME = "temperature"  # the scalar float initializer the softmax divides by


class Choice(str, Enum):
    """A closed set of names (a ``str`` enum that prints as its value), parsed with a clear error."""

    def __str__(self) -> str:
        return str(self.value)

    @classmethod
    def parse(cls: type[ChoiceT], value: object, what: str) -> ChoiceT:
        """``value`` (a member or its string) as a member; ``ValueError`` naming ``what`` and the choices."""
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(member.value for member in cls)
            raise ValueError(f"unknown {what} {value!r}; expected one of {choices}") from None

    @staticmethod
    def plain(value: object) -> object:
        """A member's string, anything else unchanged (for JSON and ``torch.save(weights_only)``)."""
        return value.value if isinstance(value, Enum) else value


ChoiceT = TypeVar("ChoiceT", bound=Choice)


class Arch(Choice):
    """The network architectures (:mod:`edgefmnist.nets`)."""

    mlp = "mlp"  # the Keras tutorial's 784-300-100-10
    cnn = "cnn"  # three conv-BN-ReLU-pool blocks and a small head


class Dtype(Choice):
    """The numeric type of a model's weights: an fp32 export or its int8 quantisation."""

    fp32 = "fp32"
    int8 = "int8"


# ---- opsets and the onnxruntime releases that load them ----------------------------------------
# The newest ONNX opset and IR version each onnxruntime release loads, from onnxruntime's
# compatibility table (https://onnxruntime.ai/docs/reference/compatibility.html). The project
# tests the oldest release it lists, 1.17, in CI.
ORT_SUPPORT: tuple[tuple[tuple[int, int, int], int, int], ...] = (
    ((1, 17, 0), 20, 9),
    ((1, 18, 0), 21, 10),
    ((1, 22, 0), 23, 11),
)
OLDEST_TESTED_ORT = ORT_SUPPORT[0][0]
MIN_OPSET = 13  # per-channel int8 quantisation (QuantizeLinear with an axis) needs opset 13
MAX_OPSET = ORT_SUPPORT[0][1]  # the newest opset the oldest supported onnxruntime loads
# TorchScript exporter at 17 writes IR 8, which onnxruntime 1.17 loads; the dynamo exporter's
# graphs start at opset 18 / IR 10, which 1.17 cannot.
DEFAULT_OPSET = 17

# ---- validation thresholds (export, verify) ---------------------------------------------------
FP32_ATOL = 1e-4  # largest |logit difference| between fp32 ONNX and PyTorch on any test image
MAX_INT8_ACCURACY_DROP = 0.005  # int8 may lose at most 0.5 points of test accuracy against fp32
MIN_INT8_AGREEMENT = 0.99  # and must give fp32's top-1 label on at least 99 % of the test images
RECORDED_ACCURACY_TOLERANCE = 0.001  # verify on a board: 10 of 10,000 images, for CPUs that round differently

# ---- the shipped models (package edgefmnist.pretrained, folder models/) -------------------------
PRETRAINED_PACKAGE = "edgefmnist.pretrained"
SHIPPED_ARCHES = tuple(arch.value for arch in Arch)
CHECKPOINT_SUFFIX = ".pt"
FP32_SUFFIX = ".onnx"
INT8_SUFFIX = ".int8.onnx"
DEFAULT_MODEL_NAME = "cnn.onnx"  # the default of `infer` and `evaluate`

# ---- CLI defaults -----------------------------------------------------------------------------
DEFAULT_TOP_K = 3
MAX_DEFAULT_THREADS = 4  # intra-op threads when not given: the cores available, at most 4 (a Pi 4 or 5)
# The most threads or workers a flag takes: beyond any edge board's cores. More threads than cores
# only slow these small networks down, and each costs a session's start: on 2 cores, evaluate took
# 0.5 s with 2 threads, 2.1 s with 64 and 117 s with 1,024.
MAX_THREADS = 64
MAX_SEED = 2**64 - 1  # the largest seed torch.manual_seed takes (numpy's default_rng takes any non-negative one)
BENCH_BATCHES = (1, 32, 256)  # one picture (infer), a small batch, a throughput batch
MAX_BODY_MB = 4096  # serve's request body limit at most, MiB: every body is held in memory while it is read
SERVE_BODY_MB = 20.0  # serve's request body limit by default, MiB
SERVE_QUEUE = 32  # serve's requests admitted beyond the busy workers by default
SERVE_UPLOAD_SECONDS = 30.0  # serve's time for a request's head, then its whole body, by default
MAX_BENCH_BATCH = spec.TEST_SIZE  # a larger batch repeats its images, and outgrows a board's memory
BENCH_RUNS = 2000  # timed batch-1 calls per row
BENCH_WARMUP = 200  # untimed calls first: the session's first runs allocate and plan
BENCH_BLOCKS = 20  # the runners being compared take turns this many times; ratios are medians over the blocks


def is_checkpoint_name(path: PurePath) -> bool:
    """Whether ``path`` is named as a PyTorch checkpoint (``.pt``, in any case)."""
    return path.suffix.lower() == CHECKPOINT_SUFFIX


def is_onnx_name(path: PurePath) -> bool:
    """Whether ``path`` is named as an ONNX model (``.onnx``, in any case)."""
    return path.suffix.lower() == FP32_SUFFIX


def shipped_names(checkpoints: bool = True) -> tuple[str, ...]:
    """File names of the shipped models, per architecture: checkpoint (if asked), fp32, int8."""
    suffixes = ((CHECKPOINT_SUFFIX,) if checkpoints else ()) + (FP32_SUFFIX, INT8_SUFFIX)
    return tuple(f"{arch}{suffix}" for arch in SHIPPED_ARCHES for suffix in suffixes)


def int8_name(fp32_name: str) -> str:
    """``mlp.onnx`` -> ``mlp.int8.onnx`` (``MLP.ONNX`` -> ``MLP.int8.onnx``): where export writes the
    int8 model of an fp32 one."""
    stem = fp32_name[: -len(FP32_SUFFIX)] if fp32_name.lower().endswith(FP32_SUFFIX) else fp32_name
    return stem + INT8_SUFFIX


def parse_version(text: str) -> tuple[int, int, int]:
    """``"1.17.3"`` -> ``(1, 17, 3)``; a suffix such as ``.dev2024`` or ``+cpu`` is ignored."""
    parts = [int(p) for p in re.findall(r"\d+", text.split("+")[0])[:3]]
    parts += [0] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def format_version(version: tuple[int, ...]) -> str:
    """``(1, 17, 0)`` -> ``"1.17.0"``."""
    return ".".join(str(v) for v in version)


def oldest_onnxruntime(opset: int, ir_version: int) -> tuple[int, int, int] | None:
    """The oldest onnxruntime (at least 1.17) that loads a graph of this opset and IR version.

    None when the graph is newer than every release in :data:`ORT_SUPPORT`.
    """
    for version, max_opset, max_ir in ORT_SUPPORT:
        if opset <= max_opset and ir_version <= max_ir:
            return max(version, OLDEST_TESTED_ORT)
    return None


def to_model_input(images: np.ndarray, dtype: np.dtype | type = INPUT_DTYPE) -> np.ndarray:
    """uint8 or float pixels ``[N, 28, 28]``, ``[N, 1, 28, 28]`` or one ``[28, 28]`` -> NCHW of ``dtype``.

    ``dtype`` is float32 or uint8 (what the model's input takes, :data:`INPUT_DTYPES`); for uint8,
    float pixels are rounded to the nearest integer and clipped to 0-255. Raises ``ValueError``
    for any other shape.
    """
    array = np.asarray(images)
    if array.ndim == 2:
        array = array[None]
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4 or array.shape[1:] != spec.INPUT_SHAPE:
        raise ValueError(f"expected images of shape [N, 28, 28], got {list(array.shape)}")
    if np.dtype(dtype) == np.uint8 and array.dtype != np.uint8:
        array = np.clip(np.rint(array.astype(np.float32, copy=False)), 0, 255)
    return np.ascontiguousarray(array, dtype=dtype)


if __name__ == "__main__":
    print(" ".join(shipped_names(checkpoints="--onnx" not in sys.argv[1:])))
