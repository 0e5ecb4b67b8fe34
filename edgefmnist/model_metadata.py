"""The model file's self-description: the JSON values in ONNX ``metadata_props`` (schema 1).

    edgefmnist export runs/mlp.pt      # writes it (edgefmnist.export.pipeline)
    edgefmnist infer --image x.jpg     # reads it back (edgefmnist.runtime.metadata.read_metadata)

Export builds a :class:`ModelMetadata` and writes :meth:`ModelMetadata.to_props`; the runtime
parses it with :meth:`ModelMetadata.from_props` (``json.loads``, never ``eval``) to learn the
class names, input convention and weight dtype. Part of the contract (:mod:`edgefmnist.contract`):
it imports neither torch, onnx nor onnxruntime.

The optional ``calibration`` entry (models exported since temperature scaling) says what
the graph's ``probabilities`` output already applies: ``softmax(logits / temperature)``,
``T`` fitted on the validation split, with ECE/NLL before and after. A model without it
outputs a plain softmax (``T = 1``) and loads as before.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from edgefmnist import spec
from edgefmnist.contract import INPUT_DTYPE_NAMES, Dtype, parse_version
from edgefmnist.errors import ModelError, quoted

SCHEMA_KEY = "edgefmnist.schema"
SCHEMA_VERSION = 1
UPGRADE_HINT = "upgrade edgefmnist (in its checkout: git pull, then pip install .)"
REQUIRED_KEYS = ("class_names", "input", "precision", "arch", "min_onnxruntime")
CALIBRATION_KEY = "calibration"
DIGEST_KEYS = ("checkpoint_sha256", "parent_sha256")  # what the model was exported from, as hex SHA-256
# {"disabled_optimizers": [names]}: onnxruntime graph optimisers the model runs faster without
# (passed to onnxruntime.InferenceSession by the predictor; onnxruntime ignores a name it does not
# know); absent: none. No other key is allowed.
SESSION_KEY = "onnxruntime_session"
# What an int8 CNN with its first block in float records: onnxruntime's QDQ propagation would move the
# QuantizeLinear after the float MaxPool in front of it, so that the pooling runs on uint8 in NCHW, a
# slow kernel, and the conv loses its ReLU fusion. Moving a quantisation across a max is exact: only the
# speed changes (edgefmnist.export.qdq_rewrite.first_block_nodes).
FLOAT_BLOCK_DISABLED_OPTIMIZERS = ("QDQPropagationTransformer",)


def finite_number(value: object) -> TypeGuard[float]:
    """Whether a JSON value is an int or float (not a bool) and finite as a float (``10**400`` is not)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond a float
        return False


def valid_sha256(value: object) -> bool:
    """Whether a JSON value is a SHA-256 digest as :func:`edgefmnist.digest.file_sha256` writes it: 64 hex digits."""
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def refuse_constant(name: str) -> float:
    """``json.loads``'s ``parse_constant``: raise ``ValueError`` for ``NaN``, ``Infinity`` or ``-Infinity``."""
    raise ValueError(name)


def finite_float(text: str) -> float:
    """``json.loads``'s ``parse_float``: raise ``ValueError`` for a number beyond a float (``1e999``)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def valid_calibration(entry: object) -> bool:
    """Whether a ``calibration`` entry is ``{"method": "temperature", "temperature": finite > 0, ...}``."""
    if not isinstance(entry, dict) or entry.get("method") != "temperature":
        return False
    temperature = entry.get("temperature")
    return finite_number(temperature) and temperature > 0


def valid_session(entry: object) -> bool:
    """Whether an ``onnxruntime_session`` entry is ``{"disabled_optimizers": [non-empty names]}``, nothing else."""
    if not isinstance(entry, dict) or set(entry) != {"disabled_optimizers"}:
        return False
    names = entry["disabled_optimizers"]
    return isinstance(names, list) and all(isinstance(name, str) and name.strip() for name in names)


def check_quantile_table(entry: object, name: str, source: Path | str) -> None:
    """:class:`ModelError` naming ``source`` and ``calibration.{name}`` unless :func:`valid_quantiles`."""
    if not valid_quantiles(entry):
        raise ModelError(
            f"{source}: metadata calibration.{name} is not a quantile table "
            "(levels rising from 0 to 1, as many non-decreasing finite values spanning a finite, non-zero range)"
        )


def valid_quantiles(entry: object) -> bool:
    """Whether a ``max_logit_quantiles`` entry is a quantile table: ``{"levels", "values"}``,
    equal-length lists of at least two finite numbers, the levels rising from 0 to 1, the values
    non-decreasing and spread over a finite, non-zero range."""
    if not isinstance(entry, dict):
        return False
    levels, values = entry.get("levels"), entry.get("values")
    if not (isinstance(levels, list) and isinstance(values, list) and len(levels) == len(values) >= 2):
        return False
    if not all(finite_number(x) for x in (*levels, *values)):
        return False
    rising = all(a < b for a, b in zip(levels, levels[1:], strict=False)) and all(
        a <= b for a, b in zip(values, values[1:], strict=False)
    )
    spread = float(values[-1]) - float(values[0])  # ints near a float's limit: their difference may be inf
    return rising and levels[0] == 0 and levels[-1] == 1 and math.isfinite(spread) and spread > 0


def parsed_props(props: dict[str, str], source: Path | str) -> dict[str, Any]:
    """Each metadata value of ``props`` read as JSON, by key. Raises :class:`ModelError` naming
    ``source`` for malformed JSON, and for NaN, Infinity or a number too large for a float."""
    values = {}
    for key, text in props.items():
        try:
            values[key] = json.loads(text, parse_constant=refuse_constant, parse_float=finite_float)
        except json.JSONDecodeError as exc:
            raise ModelError(f"{source}: malformed metadata ({exc.msg})") from None
        except ValueError as exc:  # NaN, Infinity, 1e999: Python's json reads them, a JSON answer cannot carry them
            raise ModelError(f"{source}: malformed metadata: {key} holds {exc}, not a JSON number") from None
    return values


def check_calibration(calibration: Any, source: Path | str) -> None:
    """Raise :class:`ModelError` naming ``source`` unless ``calibration`` holds a temperature > 0 and
    well-formed typicality tables (overall and per class), where it has them."""
    if not valid_calibration(calibration):
        raise ModelError(f"{source}: metadata calibration is not a temperature > 0 ({json.dumps(calibration)[:80]})")
    if "max_logit_quantiles" in calibration:
        check_quantile_table(calibration["max_logit_quantiles"], "max_logit_quantiles", source)
    if "class_max_logit_quantiles" in calibration:
        tables = calibration["class_max_logit_quantiles"]
        if not (isinstance(tables, list) and tables):
            raise ModelError(f"{source}: metadata calibration.class_max_logit_quantiles is not a list of tables")
        for index, table in enumerate(tables):
            check_quantile_table(table, f"class_max_logit_quantiles[{index}]", source)


@dataclass(frozen=True)
class ModelMetadata:
    """The parsed ``metadata_props`` of an edgefmnist model."""

    schema: int
    class_names: tuple[str, ...]
    input: dict[str, Any]
    dtype: Dtype  # of the weights: fp32, or int8 (quantised); the file's key is "precision" (schema 1)
    arch: str
    min_onnxruntime: str
    extra: dict[str, Any] = field(default_factory=dict)  # recipe, accuracy, hashes, parity, ...

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", Dtype.parse(self.dtype, "weight dtype"))

    @property
    def precision(self) -> str:
        """The weights' dtype as a string: the former name of :attr:`dtype` (the file's key is still this)."""
        return self.dtype.value

    @property
    def calibration(self) -> dict[str, Any] | None:
        """The ``calibration`` entry (``method``, ``temperature``, ``ece_before``, ...), or None for an older model."""
        return self.extra.get(CALIBRATION_KEY)

    @property
    def temperature(self) -> float:
        """The ``T`` of the graph's ``softmax(logits / T)``: 1.0 for a model exported without calibration."""
        return float(self.calibration["temperature"]) if self.calibration else 1.0

    @property
    def max_logit_quantiles(self) -> dict[str, list[float]] | None:
        """The validation split's largest-logit quantiles (``{"levels", "values"}``, see
        :func:`edgefmnist.calibration.typicality`), or None for a model exported without them."""
        return (self.calibration or {}).get("max_logit_quantiles")

    @property
    def has_typicality_reference(self) -> bool:
        """Whether a picture's typicality can be measured: either table is in the metadata."""
        return self.class_max_logit_quantiles is not None or self.max_logit_quantiles is not None

    @property
    def class_max_logit_quantiles(self) -> list[dict[str, list[float]]] | None:
        """One such table per class, of the validation images given that class (see
        :func:`edgefmnist.calibration.class_typicality`), or None for a model exported without them.
        The predictor checks that there is one per class."""
        return (self.calibration or {}).get("class_max_logit_quantiles")

    @property
    def disabled_optimizers(self) -> list[str]:
        """onnxruntime graph optimisers to turn off for this model (see :data:`SESSION_KEY`); ``[]`` for most."""
        return list(self.extra.get(SESSION_KEY, {}).get("disabled_optimizers", []))

    @property
    def trained_on_mirror_images(self) -> bool:
        """Whether training showed images mirrored left to right (the recipe's ``augment``): then a
        mirrored picture is as familiar to the network as the picture itself."""
        recipe = self.extra.get("recipe")
        return isinstance(recipe, dict) and bool(recipe.get("augment"))

    def to_props(self) -> dict[str, str]:
        """``metadata_props`` entries: every value JSON-encoded."""
        values = {
            SCHEMA_KEY: self.schema,
            "class_names": list(self.class_names),
            "input": self.input,
            "precision": self.dtype.value,
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
        values = parsed_props(props, source)
        schema = values.pop(SCHEMA_KEY)
        if schema != SCHEMA_VERSION:
            shown = quoted(schema) if isinstance(schema, str) else schema
            raise ModelError(
                f"{source}: metadata schema {shown} is unknown to edgefmnist "
                f"(this one reads schema {SCHEMA_VERSION}); {UPGRADE_HINT}"
            )
        missing = [key for key in REQUIRED_KEYS if key not in values]
        if missing:
            raise ModelError(f"{source}: metadata lacks {', '.join(missing)}")
        names = values.pop("class_names")
        if problem := spec.class_names_problem(names):  # JSON gives a list, never a tuple
            raise ModelError(f"{source}: metadata: {problem}")
        if not isinstance(values["input"], dict):
            raise ModelError(f"{source}: metadata input is not an object")
        if values["input"].get("dtype", "float32") not in INPUT_DTYPE_NAMES:
            raise ModelError(
                f"{source}: metadata input dtype {json.dumps(values['input']['dtype'])[:80]} "
                f"is not one of {', '.join(INPUT_DTYPE_NAMES)}"
            )
        if values.get(CALIBRATION_KEY) is not None:
            check_calibration(values[CALIBRATION_KEY], source)
        if SESSION_KEY in values and not valid_session(values[SESSION_KEY]):
            raise ModelError(
                f'{source}: metadata {SESSION_KEY} is not {{"disabled_optimizers": [non-empty names]}} '
                f"({json.dumps(values[SESSION_KEY])[:80]})"
            )
        for key in DIGEST_KEYS:
            if key in values and not valid_sha256(values[key]):
                raise ModelError(f"{source}: metadata {key} is not a SHA-256 digest ({json.dumps(values[key])[:80]})")
        try:
            dtype = Dtype.parse(values.pop("precision"), "weight dtype")
        except ValueError as exc:
            raise ModelError(f"{source}: metadata {exc}") from None
        return cls(
            schema=schema,
            class_names=tuple(names),
            input=values.pop("input"),
            dtype=dtype,
            arch=str(values.pop("arch")),
            min_onnxruntime=str(values.pop("min_onnxruntime")),
            extra=values,
        )

    def check_runtime(self, source: Path | str, installed: str | None = None) -> None:
        """The version guard: raise :class:`ModelError` when ``installed`` (default: the imported
        onnxruntime's version) is older than ``min_onnxruntime``."""
        if installed is None:
            import onnxruntime

            installed = str(onnxruntime.__version__)
        if parse_version(installed) < parse_version(self.min_onnxruntime):
            raise ModelError(
                f"{source}: needs onnxruntime >= {self.min_onnxruntime}, installed {installed}; "
                f"pip install 'onnxruntime>={self.min_onnxruntime}'"
            )
