"""``edgefmnist verify MODEL.onnx`` without a checkpoint: re-measure a model's recorded accuracy (torch-free).

    edgefmnist verify models/cnn.int8.onnx --data-dir /usr/share/datasets/fashion-mnist

Runs on a board (numpy, onnxruntime and the IDX reader only): the test accuracy measured
through the predictor must match the ``test_accuracy`` that export recorded in the model's
metadata, within ``contract.RECORDED_ACCURACY_TOLERANCE``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgefmnist.runtime.predictor import Predictor

from edgefmnist.contract import RECORDED_ACCURACY_TOLERANCE, Dtype
from edgefmnist.data import load_test_split
from edgefmnist.metrics import accuracy
from edgefmnist.model_metadata import finite_number
from edgefmnist.verdict import Verdict


@dataclass(frozen=True)
class AccuracyCheck(Verdict):
    """A model's measured test accuracy against the one its metadata records."""

    model: str
    dtype: Dtype  # of the model's weights
    images: int
    measured_accuracy: float
    recorded_accuracy: float | None
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        recorded = "none" if self.recorded_accuracy is None else f"{100 * self.recorded_accuracy:.2f} %"
        return (
            f"{self.model} ({self.dtype}): test accuracy {100 * self.measured_accuracy:.2f} % on "
            f"{self.images:,} images, recorded {recorded} — {self.verdict()}"
        )


def check_recorded_accuracy(model_path: Path, data_dir: Path | None = None) -> AccuracyCheck:
    """Measure test accuracy with the runtime alone (no torch) and compare it with the metadata.

    Raises :class:`edgefmnist.errors.ModelError` for a model the predictor cannot load and
    :class:`edgefmnist.errors.DataError` when the test set cannot be found or verified; a
    mismatch is not raised but listed in the result's ``failures``.
    """
    predictor = Predictor(model_path)
    test = load_test_split(data_dir)
    measured = accuracy(predictor.logits(test.images), test.labels)
    recorded = predictor.metadata.extra.get("test_accuracy")
    failures = []
    if not finite_number(recorded):
        recorded = None
        failures.append("the metadata records no test accuracy")
    elif abs(measured - recorded) > RECORDED_ACCURACY_TOLERANCE:
        failures.append(f"measured {100 * measured:.2f} % but the metadata claims {100 * recorded:.2f} %")
    return AccuracyCheck(str(model_path), predictor.metadata.dtype, len(test), measured, recorded, failures)
