"""Calibrated probabilities: temperature scaling, expected calibration error and NLL (numpy only).

    edgefmnist export runs/cnn-best.pt --quantize static   # fits T, bakes softmax(logits / T) into the graph

Temperature scaling (Guo, Pleiss, Sun and Weinberger 2017, "On Calibration of Modern Neural
Networks", section 4.2): one scalar ``T > 0`` divides the logits before the softmax. It is
chosen to minimise the negative log-likelihood on held-out data, the *validation* split
(the first ``spec.VALIDATION_SIZE`` training images), never the test set. Dividing by ``T``
never changes the top-1 label, so accuracy is untouched; only the confidence moves.

The NLL of ``softmax(z / T)`` is convex in ``1 / T`` (a log-sum-exp of functions linear in
``1 / T``), hence unimodal in ``log T``; a golden-section search on ``log T`` therefore finds
the global minimum inside its bracket. No scipy needed.

The same validation logits give the reference of the *typicality* of a picture: the share of
the validation images that the model gives the picture's class whose largest logit is lower
than the picture's. The largest logit (before the softmax) is the MaxLogit
out-of-distribution score of Hendrycks, Basart, Mazeika et al. 2022 ("Scaling
Out-of-Distribution Detection for Real-World Settings"); expressing it as a quantile of the
model's own validation images puts every model on one scale, 0 to 1, and taking the quantile
within the predicted class puts every class on it too: a bag's largest logit runs higher
than a shirt's, so a hat read as Bag stands out among bags where it would not among all
images. Models exported before the class tables have the table of all images only. It helps
the shipped CNN; the MLP's logits separate hats from clothing no better either way.

This module imports only numpy, so the runtime may use it too (ECE of a model's outputs).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

ECE_BINS = 15  # Guo et al. 2017 use 15 equal-width confidence bins
TEMPERATURE_BOUNDS = (0.01, 100.0)  # the bracket searched; a fit at an edge means the data push T further
LOG_T_TOLERANCE = 1e-6  # golden-section stops when the bracket on log T is this narrow
INV_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
MIN_CLASS_IMAGES = 50  # a class given to fewer validation images gets the table of all images
# Quantile levels at which the validation split's largest logits are stored: fine where the
# unsure threshold lies (about the 1 % least typical images), coarse above.
TYPICALITY_LEVELS = (
    *(k / 1000 for k in range(20)),  # 0.000-0.019
    *(k / 100 for k in range(2, 10)),  # 0.02-0.09
    *(k / 10 for k in range(1, 11)),  # 0.1-1.0
)


def _scores_and_labels(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits or probabilities ``[N, C]`` as float64, labels ``[N]`` as int64; ValueError for other shapes, N = 0."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    if scores.ndim != 2 or labels.shape != (len(scores),) or len(scores) == 0:
        raise ValueError(
            f"expected scores [N, C] and labels [N] with N > 0, got {list(scores.shape)} and {list(labels.shape)}"
        )
    return scores, labels.astype(np.int64)


def check_temperature(temperature: float) -> float:
    """``temperature`` as a float; ``ValueError`` unless it is a finite number > 0."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return float(temperature)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / temperature)`` over the last axis, in float64.

    ``logits``: ``[N, C]`` (any float dtype). Returns ``[N, C]`` float64 rows summing to 1.
    Raises ``ValueError`` for a temperature that is not a finite number > 0.
    """
    scaled = np.asarray(logits, dtype=np.float64) / check_temperature(temperature)
    shifted = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean NLL in nats of ``softmax(logits / temperature)`` for the true ``labels``.

    ``logits``: ``[N, C]`` float; ``labels``: ``[N]`` integer class indices. Computed with a
    stable log-sum-exp in float64. Raises ``ValueError`` on mismatched shapes or a bad temperature.
    """
    logits, labels = _scores_and_labels(logits, labels)
    scaled = logits / check_temperature(temperature)
    top = scaled.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(scaled - top).sum(axis=1))
    return float(np.mean(log_norm - scaled[np.arange(len(labels)), labels]))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE of the top-1 predictions, a fraction in [0, 1] (Guo et al. 2017, equation 3).

    ``probabilities``: ``[N, C]`` rows summing to 1; ``labels``: ``[N]`` class indices.
    Confidence = the top probability; bin ``m`` (1..``bins``) holds confidences in
    ``((m - 1) / bins, m / bins]``; ECE = sum over bins of ``|B_m| / N * |acc(B_m) - conf(B_m)|``.
    Raises ``ValueError`` on mismatched shapes or ``bins < 1``.
    """
    probabilities, labels = _scores_and_labels(probabilities, labels)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    gap = np.abs(
        np.bincount(which, weights=correct, minlength=bins) - np.bincount(which, weights=confidence, minlength=bins)
    )
    return float(gap.sum() / len(labels))  # sum over bins of |B_m| * |acc - conf|, divided by N


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> float:
    """The ``T`` in ``bounds`` that minimises :func:`negative_log_likelihood` (golden-section on ``log T``).

    ``logits``: ``[N, C]`` float (the *validation* split's); ``labels``: ``[N]``. Returns a
    float > 0, never one whose NLL exceeds that of ``T = 1`` (so fitting cannot make NLL worse).
    Raises ``ValueError`` on mismatched shapes, non-finite logits or bad bounds.
    """
    logits, labels = _scores_and_labels(logits, labels)
    if not np.isfinite(logits).all():
        raise ValueError("cannot fit a temperature to non-finite logits")
    low, high = (math.log(check_temperature(b)) for b in bounds)
    if not low < high:
        raise ValueError(f"bounds must be increasing, got {bounds}")

    def loss(log_t: float) -> float:
        return negative_log_likelihood(logits, labels, math.exp(log_t))

    a, b = high - INV_GOLDEN * (high - low), low + INV_GOLDEN * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    while high - low > LOG_T_TOLERANCE:
        if loss_a <= loss_b:  # the minimum lies in [low, b]
            high, b, loss_b = b, a, loss_a
            a = high - INV_GOLDEN * (high - low)
            loss_a = loss(a)
        else:  # the minimum lies in [a, high]
            low, a, loss_a = a, b, loss_b
            b = low + INV_GOLDEN * (high - low)
            loss_b = loss(b)
    best = math.exp((low + high) / 2)
    in_bounds_one = bounds[0] <= 1.0 <= bounds[1]
    return 1.0 if in_bounds_one and loss(math.log(best)) > loss(0.0) else best


@dataclass(frozen=True)
class CalibrationFigures:
    """ECE (fraction, ``ECE_BINS`` bins) and mean NLL (nats) of one split at ``T = 1`` and at the fitted ``T``."""

    split: str  # "validation" or "test"
    images: int
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"{self.split} ECE {100 * self.ece_before:.2f} % -> {100 * self.ece_after:.2f} %, "
            f"NLL {self.nll_before:.4f} -> {self.nll_after:.4f}"
        )


def measure_calibration(logits: np.ndarray, labels: np.ndarray, temperature: float, split: str) -> CalibrationFigures:
    """ECE and NLL of ``logits`` ``[N, C]`` against ``labels`` ``[N]``, before (T = 1) and after ``temperature``."""
    return CalibrationFigures(
        split=split,
        images=len(labels),
        ece_before=expected_calibration_error(softmax(logits), labels),
        ece_after=expected_calibration_error(softmax(logits, temperature), labels),
        nll_before=negative_log_likelihood(logits, labels),
        nll_after=negative_log_likelihood(logits, labels, temperature),
    )


@dataclass(frozen=True)
class TemperatureCalibration:
    """A fitted temperature with its validation figures (and, once measured, its test figures)."""

    temperature: float
    validation: CalibrationFigures
    test: CalibrationFigures | None = None
    max_logit_quantiles: dict[str, list[float]] | None = None  # see max_logit_quantiles()
    class_max_logit_quantiles: list[dict[str, list[float]]] | None = None  # see class_max_logit_quantiles()

    def to_metadata(self) -> dict:
        """The model file's ``"calibration"`` entry: the fit on the validation split, test figures nested."""
        entry = {
            "method": "temperature",
            "temperature": self.temperature,
            "split": "validation",
            "images": self.validation.images,
            "bins": ECE_BINS,
            **{k: v for k, v in self.validation.to_dict().items() if k.startswith(("ece_", "nll_"))},
        }
        if self.max_logit_quantiles is not None:
            entry["max_logit_quantiles"] = self.max_logit_quantiles
        if self.class_max_logit_quantiles is not None:
            entry["class_max_logit_quantiles"] = self.class_max_logit_quantiles
        if self.test is not None:
            entry["test"] = {k: v for k, v in self.test.to_dict().items() if k != "split"}
        return entry

    def with_test(self, logits: np.ndarray, labels: np.ndarray) -> TemperatureCalibration:
        """A copy that also holds the figures of the test ``logits`` ``[N, C]`` at this temperature."""
        return TemperatureCalibration(
            self.temperature,
            self.validation,
            measure_calibration(logits, labels, self.temperature, "test"),
            self.max_logit_quantiles,
            self.class_max_logit_quantiles,
        )

    def summary(self) -> str:
        figures = [f.summary() for f in (self.validation, self.test) if f is not None]
        return f"temperature {self.temperature:.4f} (fitted on validation): " + "; ".join(figures)


def calibrate(validation_logits: np.ndarray, validation_labels: np.ndarray) -> TemperatureCalibration:
    """Fit ``T`` on the validation split's logits ``[N, C]`` and measure ECE/NLL there before and after;
    also keep their largest logits' quantiles, over all images and per predicted class, the
    references of :func:`typicality`.

    ``T`` is rounded to float32, the precision an ONNX graph stores it in, so the figures
    describe exactly the ``T`` the graph applies.
    """
    temperature = float(np.float32(fit_temperature(validation_logits, validation_labels)))
    overall = max_logit_quantiles(validation_logits)
    return TemperatureCalibration(
        temperature,
        measure_calibration(validation_logits, validation_labels, temperature, "validation"),
        max_logit_quantiles=overall,
        class_max_logit_quantiles=class_max_logit_quantiles(validation_logits, overall),
    )


def max_logit_quantiles(logits: np.ndarray) -> dict[str, list[float]]:
    """``{"levels", "values"}``: the largest logit of each row of ``logits`` ``[N, C]`` at the
    quantile levels ``TYPICALITY_LEVELS`` (numpy's default linear interpolation)."""
    values = np.quantile(np.asarray(logits, np.float64).max(axis=1), TYPICALITY_LEVELS)
    return {"levels": list(TYPICALITY_LEVELS), "values": [float(v) for v in np.maximum.accumulate(values)]}


def class_max_logit_quantiles(
    logits: np.ndarray, overall: dict[str, list[float]] | None = None
) -> list[dict[str, list[float]]]:
    """One :func:`max_logit_quantiles` table per class (``C`` of them) of the rows of float
    ``logits`` ``[N, C]`` whose largest logit is that class's.

    A class given to fewer than ``MIN_CLASS_IMAGES`` rows, or whose rows' largest logits are all
    equal, gets ``overall``, the table of all rows (computed when not given). With about 500
    validation images a class, a level of 0.01 rests on about 5 of them. Ranking a score within
    the predicted class is the label-conditional ("Mondrian") form of a conformal p-value (Vovk,
    Gammerman and Shafer 2005, "Algorithmic Learning in a Random World").
    ``ValueError`` for no rows.
    """
    logits = np.asarray(logits, np.float64)
    if not len(logits):
        raise ValueError("the typicality tables need at least one row of logits")
    predicted = logits.argmax(axis=1)
    overall = overall or max_logit_quantiles(logits)
    tables = []
    for k in range(logits.shape[1]):
        rows = logits[predicted == k]
        table = max_logit_quantiles(rows) if len(rows) >= MIN_CLASS_IMAGES else overall
        tables.append(table if table["values"][-1] > table["values"][0] else overall)
    return tables


def class_typicality(logits: np.ndarray, tables: list[dict[str, list[float]]]) -> np.ndarray:
    """float64 ``[N]`` in 0..1: :func:`typicality` of each row of float ``logits`` ``[N, C]``
    against the table (``tables``, from :func:`class_max_logit_quantiles`) of its predicted
    class. A row with a NaN gets NaN, which no threshold calls atypical (as with
    :func:`typicality`). ``ValueError`` when there are fewer tables than classes.
    """
    logits = np.asarray(logits, np.float64)
    if logits.ndim != 2 or len(tables) < logits.shape[1]:
        raise ValueError(f"{len(tables)} typicality tables for logits of shape {logits.shape}")
    predicted, largest = logits.argmax(axis=1), logits.max(axis=1)
    result = np.empty(len(logits))
    for k in set(predicted.tolist()):  # not np.unique, which imports numpy.ma (about 17 ms per process)
        rows = predicted == k
        result[rows] = typicality(largest[rows], tables[k])
    return result


def reference_typicality(
    logits: np.ndarray,
    class_tables: list[dict[str, list[float]]] | None,
    overall: dict[str, list[float]] | None,
) -> np.ndarray | None:
    """float64 ``[N]`` for float logits ``[N, C]``: :func:`class_typicality` with a model's class
    tables, else :func:`typicality` among all images with its ``overall`` table, else None (a
    model exported without either). ``ValueError`` as :func:`class_typicality`."""
    if class_tables is not None:
        return class_typicality(logits, class_tables)
    return None if overall is None else typicality(np.asarray(logits).max(axis=1), overall)


def typicality(max_logits: np.ndarray, quantiles: dict[str, list[float]]) -> np.ndarray:
    """float64 ``[N]`` in 0..1: for each largest logit in ``max_logits`` ``[N]``, the share of the
    reference images (``quantiles``, from :func:`max_logit_quantiles`) whose largest logit is lower,
    interpolated linearly between the stored quantiles (0 below the lowest, 1 above the highest)."""
    return np.interp(np.asarray(max_logits, np.float64), quantiles["values"], quantiles["levels"])
