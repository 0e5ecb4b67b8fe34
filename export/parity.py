"""Parity between a reference model and a candidate on the same images (torch-free).

    edgefmnist verify model.onnx --checkpoint model.pt

fp32 must match its reference to ``atol`` in every logit and agree on every top-1 label;
int8 may lose at most ``MAX_INT8_ACCURACY_DROP`` points and must agree on
``MIN_INT8_AGREEMENT`` of the images.

The ``probabilities`` output is checked too, against ``softmax(logits / T)`` with the model's
temperature ``T`` (1 for a model exported before temperature scaling): fp32 against the
*reference's* logits, within ``atol * max(1, 1 / T)`` (softmax changes by at most half the
largest logit change divided by ``T``) plus float32 rounding; int8 against its *own* logits
(its logits already differ from the reference's), within float32 rounding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from edgefmnist.runtime.predictor import Predictor

from edgefmnist.calibration import softmax
from edgefmnist.data import load_test_split

DEFAULT_ATOL = 1e-4
MAX_INT8_ACCURACY_DROP = 0.005  # 0.5 points
MIN_INT8_AGREEMENT = 0.99
SOFTMAX_ROUNDING = 1e-6  # float32 softmax in onnxruntime vs float64 in numpy
RECORDED_ACCURACY_TOLERANCE = 0.001  # 10 of 10,000 images, for CPUs that round differently


class Verdict:
    """Pass/fail from a list of failures, shared by the check results below."""

    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}

    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL: " + "; ".join(self.failures)


@dataclass(frozen=True)
class ParityReport(Verdict):
    """How closely a candidate model follows its reference on the test set."""

    reference: str
    candidate: str
    precision: str  # of the candidate: "fp32" or "int8"
    images: int
    max_abs_logit_diff: float
    top1_agreement: float
    reference_accuracy: float
    candidate_accuracy: float
    failures: list[str] = field(default_factory=list)
    temperature: float | None = None  # of the candidate's softmax, when its probabilities were checked
    max_abs_probability_diff: float | None = None  # vs softmax(logits / temperature), see the module docstring

    def summary(self) -> str:
        probabilities = (
            ""
            if self.max_abs_probability_diff is None
            else f"max |Δprobability| {self.max_abs_probability_diff:.1e} at T {self.temperature:.4f}, "
        )
        return (
            f"{self.candidate} ({self.precision}) vs {self.reference} on {self.images:,} test images: "
            f"max |Δlogit| {self.max_abs_logit_diff:.2e}, {probabilities}"
            f"top-1 agreement {100 * self.top1_agreement:.2f} %, "
            f"accuracy {100 * self.candidate_accuracy:.2f} % vs {100 * self.reference_accuracy:.2f} % "
            f"— {self.verdict()}"
        )


def compare_logits(
    reference: np.ndarray,
    candidate: np.ndarray,
    labels: np.ndarray,
    *,
    precision: str,
    reference_name: str,
    candidate_name: str,
    atol: float = DEFAULT_ATOL,
    candidate_probabilities: np.ndarray | None = None,
    temperature: float = 1.0,
) -> ParityReport:
    """Compare two ``[N, 10]`` logit arrays against each other and the true labels.

    With ``candidate_probabilities`` ``[N, 10]`` (the model's ``probabilities`` output), also
    check them against ``softmax(logits / temperature)`` as the module docstring says.
    """
    if reference.shape != candidate.shape or len(labels) != len(reference):
        raise ValueError(f"shape mismatch: {reference.shape} vs {candidate.shape} for {len(labels)} labels")
    reference_top1, candidate_top1 = reference.argmax(1), candidate.argmax(1)
    max_diff = float(np.max(np.abs(reference.astype(np.float64) - candidate.astype(np.float64))))
    agreement = float(np.mean(reference_top1 == candidate_top1))
    reference_accuracy = float(np.mean(reference_top1 == labels))
    candidate_accuracy = float(np.mean(candidate_top1 == labels))
    failures = []
    if not np.isfinite(candidate).all():
        failures.append("non-finite logits")
    if precision == "fp32":
        if not max_diff <= atol:
            failures.append(f"max |Δlogit| {max_diff:.2e} > {atol:.0e}")
        if agreement < 1.0:
            failures.append(f"top-1 agreement {100 * agreement:.2f} % < 100 %")
    else:
        if reference_accuracy - candidate_accuracy > MAX_INT8_ACCURACY_DROP:
            failures.append(
                f"accuracy drop {100 * (reference_accuracy - candidate_accuracy):.2f} points > "
                f"{100 * MAX_INT8_ACCURACY_DROP:.1f}"
            )
        if agreement < MIN_INT8_AGREEMENT:
            failures.append(f"top-1 agreement {100 * agreement:.2f} % < {100 * MIN_INT8_AGREEMENT:.0f} %")
    probability_diff = None
    if candidate_probabilities is not None:
        expected = softmax(reference if precision == "fp32" else candidate, temperature)
        probability_diff = float(np.max(np.abs(candidate_probabilities.astype(np.float64) - expected)))
        tolerance = SOFTMAX_ROUNDING + (atol * max(1.0, 1.0 / temperature) if precision == "fp32" else 0.0)
        if not probability_diff <= tolerance:
            whose = "the reference's" if precision == "fp32" else "its own"
            failures.append(
                f"max |Δprobability| {probability_diff:.2e} > {tolerance:.1e} "
                f"against softmax({whose} logits / {temperature:.4f})"
            )
    return ParityReport(
        reference_name,
        candidate_name,
        precision,
        len(labels),
        max_diff,
        agreement,
        reference_accuracy,
        candidate_accuracy,
        failures,
        None if candidate_probabilities is None else temperature,
        probability_diff,
    )


@dataclass(frozen=True)
class AccuracyCheck(Verdict):
    """A model's measured test accuracy against the one its metadata records."""

    model: str
    precision: str
    images: int
    measured_accuracy: float
    recorded_accuracy: float | None
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        recorded = "none" if self.recorded_accuracy is None else f"{100 * self.recorded_accuracy:.2f} %"
        return (
            f"{self.model} ({self.precision}): test accuracy {100 * self.measured_accuracy:.2f} % on "
            f"{self.images:,} images, recorded {recorded} — {self.verdict()}"
        )


def check_recorded_accuracy(model_path: Path, data_dir: Path | None = None) -> AccuracyCheck:
    """Measure test accuracy with the runtime alone (no torch) and compare it with the metadata."""
    predictor = Predictor(model_path)
    test = load_test_split(data_dir)
    measured = float(np.mean(predictor.logits(test.images).argmax(1) == test.labels))
    recorded = predictor.metadata.extra.get("test_accuracy")
    failures = []
    if not isinstance(recorded, (int, float)):
        recorded = None
        failures.append("the metadata records no test accuracy")
    elif abs(measured - recorded) > RECORDED_ACCURACY_TOLERANCE:
        failures.append(f"measured {100 * measured:.2f} % but the metadata claims {100 * recorded:.2f} %")
    return AccuracyCheck(str(model_path), predictor.metadata.precision, len(test), measured, recorded, failures)
