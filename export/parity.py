"""Parity between a reference model and a candidate on the same images (torch-free).

    edgefmnist verify model.onnx --checkpoint model.pt

fp32 must match its reference to ``atol`` (default ``contract.FP32_ATOL``) in every logit and
agree on every top-1 label; int8 may lose at most ``contract.MAX_INT8_ACCURACY_DROP`` of test
accuracy and must agree on ``contract.MIN_INT8_AGREEMENT`` of the images.

The ``probabilities`` output is checked too, against ``softmax(logits / T)`` with the model's
temperature ``T`` (1 for a model exported before temperature scaling): fp32 against the
*reference's* logits, within ``atol * max(1, 1 / T)`` (softmax changes by at most half the
largest logit change divided by ``T``) plus float32 rounding; int8 against its *own* logits
(its logits already differ from the reference's), within float32 rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgefmnist.calibration import softmax
from edgefmnist.contract import FP32_ATOL, MAX_INT8_ACCURACY_DROP, MIN_INT8_AGREEMENT, Dtype
from edgefmnist.verdict import Verdict

SOFTMAX_ROUNDING = 1e-6  # float32 softmax in onnxruntime vs float64 in numpy


@dataclass(frozen=True)
class ParityReport(Verdict):
    """How closely a candidate model follows its reference on the test set."""

    reference: str
    candidate: str
    dtype: Dtype  # of the candidate's weights
    images: int
    max_abs_logit_diff: float
    top1_agreement: float
    reference_accuracy: float
    candidate_accuracy: float
    failures: list[str] = field(default_factory=list)
    temperature: float | None = None  # of the candidate's softmax, when its probabilities were checked
    max_abs_probability_diff: float | None = None  # vs softmax(logits / temperature), see the module docstring

    def summary(self) -> str:
        whose = "its own" if str(self.dtype) == "int8" else "the reference's"  # see the module docstring
        probabilities = (
            ""
            if self.max_abs_probability_diff is None
            else f"max |Δprobability| {self.max_abs_probability_diff:.2e} against softmax("
            f"{whose} logits / {self.temperature:.4f}), "
        )
        return (
            f"{self.candidate} ({self.dtype}) vs {self.reference} on {self.images:,} test images: "
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
    dtype: Dtype | str,
    reference_name: str,
    candidate_name: str,
    atol: float = FP32_ATOL,
    candidate_probabilities: np.ndarray | None = None,
    temperature: float = 1.0,
) -> ParityReport:
    """Compare two ``[N, 10]`` logit arrays against each other and the true labels.

    With ``candidate_probabilities`` ``[N, 10]`` (the model's ``probabilities`` output), also
    check them against ``softmax(logits / temperature)`` as the module docstring says. Raises
    ``ValueError`` when the shapes disagree or ``dtype`` is not a :class:`Dtype`.
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
    dtype = Dtype.parse(dtype, "weight dtype")
    if dtype is Dtype.fp32:
        if not max_diff <= atol:
            failures.append(f"max |Δlogit| {max_diff:.2e} > {atol:g}")  # the tolerance as given: 5.6e-06
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
        expected = softmax(reference if dtype is Dtype.fp32 else candidate, temperature)
        probability_diff = float(np.max(np.abs(candidate_probabilities.astype(np.float64) - expected)))
        tolerance = SOFTMAX_ROUNDING + (atol * max(1.0, 1.0 / temperature) if dtype is Dtype.fp32 else 0.0)
        if not probability_diff <= tolerance:
            whose = "the reference's" if dtype is Dtype.fp32 else "its own"
            failures.append(
                f"max |Δprobability| {probability_diff:.2e} > {tolerance:.3g} "
                f"against softmax({whose} logits / {temperature:.4f})"
            )
    return ParityReport(
        reference_name,
        candidate_name,
        dtype,
        len(labels),
        max_diff,
        agreement,
        reference_accuracy,
        candidate_accuracy,
        failures,
        None if candidate_probabilities is None else temperature,
        probability_diff,
    )
