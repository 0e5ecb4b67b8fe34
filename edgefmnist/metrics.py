"""Classification metrics (numpy only): accuracy, per-class precision/recall/F1, confusion matrix.

edgefmnist evaluate models/mlp.onnx --plot confusion.png
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgefmnist.errors import printable


@dataclass(frozen=True)
class ClassMetrics:
    """One class's precision, recall and F1 (shares, 0-1) and its support (test images of that class)."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Evaluation:
    """A model's figures on a labelled set of ``images``: accuracy and the macro averages as shares
    (0-1), per-class figures and the confusion counts, ``[10][10]``."""

    accuracy: float
    images: int
    per_class: list[ClassMetrics]
    macro_precision: float
    macro_recall: float
    macro_f1: float
    confusion: list[list[int]]  # rows: true class, columns: predicted class

    def to_dict(self) -> dict:
        return asdict(self)


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """The share of rows of ``scores`` (logits or probabilities, ``[N, C]``) whose argmax is the label (int ``[N]``)."""
    return float(np.mean(np.asarray(scores).argmax(1) == labels))


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, classes: int) -> np.ndarray:
    """Counts, int64 ``[classes, classes]``: rows the true class, columns the predicted one.

    ``labels`` and ``predictions`` are int arrays ``[N]``; raises ``ValueError`` for a value
    outside ``0..classes-1`` (it would be counted in another cell).
    """
    for name, values in (("labels", labels), ("predictions", predictions)):
        if len(values) and (values.min() < 0 or values.max() >= classes):
            raise ValueError(f"{name} must lie in 0..{classes - 1}, found {values.min()}..{values.max()}")
    return np.bincount(labels * classes + predictions, minlength=classes * classes).reshape(classes, classes)


def evaluate_predictions(labels: np.ndarray, predictions: np.ndarray, class_names: tuple[str, ...]) -> Evaluation:
    """Metrics of ``predictions`` against ``labels`` (both int arrays ``[N]``)."""
    matrix = confusion_matrix(labels.astype(np.int64), predictions.astype(np.int64), len(class_names))
    true_positive = np.diag(matrix).astype(np.float64)
    predicted, actual = matrix.sum(0), matrix.sum(1)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    recall = np.divide(true_positive, actual, out=np.zeros_like(true_positive), where=actual > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    per_class = [
        ClassMetrics(name, float(p), float(r), float(f), int(s))
        for name, p, r, f, s in zip(class_names, precision, recall, f1, actual, strict=False)
    ]
    return Evaluation(
        float(true_positive.sum() / max(1, len(labels))),
        int(len(labels)),
        per_class,
        float(precision.mean()),
        float(recall.mean()),
        float(f1.mean()),
        matrix.tolist(),
    )


def format_report(evaluation: Evaluation, title: str) -> str:
    """A plain-text table for the terminal."""
    lines = [
        f"{title}: accuracy {100 * evaluation.accuracy:.2f} % on {evaluation.images:,} test images",
        "",
        f"{'class':<12} {'precision':>9} {'recall':>7} {'F1':>7} {'support':>8}",
    ]
    for row in evaluation.per_class:
        lines.append(
            f"{printable(row.name):<12} {row.precision:>9.3f} {row.recall:>7.3f} {row.f1:>7.3f} {row.support:>8,}"
        )
    lines.append(
        f"{'macro avg':<12} {evaluation.macro_precision:>9.3f} {evaluation.macro_recall:>7.3f} "
        f"{evaluation.macro_f1:>7.3f} {evaluation.images:>8,}"
    )
    names = [row.name for row in evaluation.per_class]
    lines += ["", "confusion: rows the true class, columns the predicted one"]
    lines += confusion_table(names, names, evaluation.confusion, first_width=12)
    return "\n".join(lines)


def confusion_table(
    rows: list[str], columns: list[str], counts: list[list[int]], first_width: int, indent: str = ""
) -> list[str]:
    """A confusion matrix as text lines: a header of ``columns``, then each of ``rows`` with its counts,
    every column as wide as its name or its widest count."""
    shown = [printable(column) for column in columns]
    widths = [max(len(column), *(len(str(row[i])) for row in counts)) for i, column in enumerate(shown)]

    def line(name: str, cells: list) -> str:
        return f"{indent}{name:<{first_width}} " + " ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))

    return [line("", shown), *(line(printable(name), row) for name, row in zip(rows, counts, strict=True))]
