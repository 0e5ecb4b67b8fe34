"""The model file's self-description: JSON values in ONNX ``metadata_props``, and the version guard.

Export writes it (``edgefmnist export``); the runtime reads it back with ``json.loads`` to
learn the class names, input convention and precision, and refuses a model that needs a
newer onnxruntime or a newer edgefmnist than the one installed.

The optional ``calibration`` entry (models exported since temperature scaling) says what
the graph's ``probabilities`` output already applies: ``softmax(logits / temperature)``,
``T`` fitted on the validation split, with ECE/NLL before and after. A model without it
outputs a plain softmax (``T = 1``) and loads as before.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnxruntime
from edgefmnist.runtime.onnx_header import read_model_header

from edgefmnist.errors import ModelError

SCHEMA_KEY = "edgefmnist.schema"
SCHEMA_VERSION = 1
REQUIRED_KEYS = ("class_names", "input", "precision", "arch", "min_onnxruntime")

# The newest ONNX opset and IR version each onnxruntime release loads (onnxruntime's
# compatibility table). The project tests the oldest release it records, 1.17, in CI.
ORT_SUPPORT = (
    ((1, 17, 0), 20, 9),
    ((1, 18, 0), 21, 10),
    ((1, 22, 0), 23, 11),
)
OLDEST_TESTED_ORT = (1, 17, 0)


def parse_version(text: str) -> tuple[int, ...]:
    """``"1.17.3"`` -> ``(1, 17, 3)``; a suffix such as ``.dev2024`` or ``+cpu`` is ignored."""
    parts = re.findall(r"\d+", text.split("+")[0])[:3]
    return tuple(int(p) for p in parts) + (0,) * (3 - len(parts))


def format_version(version: tuple[int, ...]) -> str:
    return ".".join(str(v) for v in version)


def oldest_onnxruntime(opset: int, ir_version: int) -> str:
    """The oldest onnxruntime that loads a model of this opset and IR version (at least 1.17)."""
    for version, max_opset, max_ir in ORT_SUPPORT:
        if opset <= max_opset and ir_version <= max_ir:
            return format_version(max(version, OLDEST_TESTED_ORT))
    raise ModelError(f"opset {opset} / IR {ir_version} is newer than any onnxruntime this toolkit knows")


CALIBRATION_KEY = "calibration"


def valid_calibration(entry: object) -> bool:
    """Whether a ``calibration`` entry is ``{"method": "temperature", "temperature": finite > 0, ...}``."""
    if not isinstance(entry, dict) or entry.get("method") != "temperature":
        return False
    temperature = entry.get("temperature")
    return (
        isinstance(temperature, (int, float))
        and not isinstance(temperature, bool)
        and math.isfinite(temperature)
        and temperature > 0
    )


@dataclass(frozen=True)
class ModelMetadata:
    """The parsed ``metadata_props`` of an edgefmnist model."""

    schema: int
    class_names: tuple[str, ...]
    input: dict[str, Any]
    precision: str  # "fp32" or "int8"
    arch: str
    min_onnxruntime: str
    extra: dict[str, Any] = field(default_factory=dict)  # recipe, accuracy, hashes, parity, ...

    @property
    def calibration(self) -> dict[str, Any] | None:
        """The ``calibration`` entry (``method``, ``temperature``, ``ece_before``, ...), or None for an older model."""
        return self.extra.get(CALIBRATION_KEY)

    @property
    def temperature(self) -> float:
        """The ``T`` of the graph's ``softmax(logits / T)``: 1.0 for a model exported without calibration."""
        return float(self.calibration["temperature"]) if self.calibration else 1.0

    def to_props(self) -> dict[str, str]:
        """``metadata_props`` entries: every value JSON-encoded."""
        values = {
            SCHEMA_KEY: self.schema,
            "class_names": list(self.class_names),
            "input": self.input,
            "precision": self.precision,
            "arch": self.arch,
            "min_onnxruntime": self.min_onnxruntime,
            **self.extra,
        }
        return {key: json.dumps(value, sort_keys=True) for key, value in values.items()}

    @classmethod
    def from_props(cls, props: dict[str, str], source: Path | str) -> ModelMetadata:
        """Parse and validate; raise :class:`ModelError` naming ``source`` on any problem."""
        if SCHEMA_KEY not in props:
            raise ModelError(f"{source}: no edgefmnist metadata (was it exported with `edgefmnist export`?)")
        try:
            values = {key: json.loads(text) for key, text in props.items()}
        except json.JSONDecodeError as exc:
            raise ModelError(f"{source}: malformed metadata ({exc.msg})") from None
        schema = values.pop(SCHEMA_KEY)
        if schema != SCHEMA_VERSION:
            raise ModelError(
                f"{source}: metadata schema {schema!r} is unknown to edgefmnist "
                f"(this one reads schema {SCHEMA_VERSION}); pip install -U edgefmnist"
            )
        missing = [key for key in REQUIRED_KEYS if key not in values]
        if missing:
            raise ModelError(f"{source}: metadata lacks {', '.join(missing)}")
        names = values.pop("class_names")
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise ModelError(f"{source}: metadata class_names is not a list of names")
        if not isinstance(values["input"], dict):
            raise ModelError(f"{source}: metadata input is not an object")
        calibration = values.get(CALIBRATION_KEY)
        if calibration is not None and not valid_calibration(calibration):
            raise ModelError(
                f"{source}: metadata calibration is not a temperature > 0 ({json.dumps(calibration)[:80]})"
            )
        return cls(
            schema=schema,
            class_names=tuple(names),
            input=values.pop("input"),
            precision=str(values.pop("precision")),
            arch=str(values.pop("arch")),
            min_onnxruntime=str(values.pop("min_onnxruntime")),
            extra=values,
        )

    def check_runtime(self, source: Path | str, installed: str = onnxruntime.__version__) -> None:
        """The version guard: refuse a model that needs a newer onnxruntime."""
        if parse_version(installed) < parse_version(self.min_onnxruntime):
            raise ModelError(
                f"{source}: needs onnxruntime >= {self.min_onnxruntime}, installed {installed}; "
                f"pip install 'onnxruntime>={self.min_onnxruntime}'"
            )


def read_metadata(path: Path) -> ModelMetadata:
    """Read and validate a model's metadata without building an inference session."""
    return ModelMetadata.from_props(read_model_header(path).metadata, path)
