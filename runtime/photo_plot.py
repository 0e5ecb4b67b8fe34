"""The figure of ``edgefmnist evaluate --photos --plot``: the verdicts' confusion and the coverage curve.

    edgefmnist evaluate --photos ../shared/photos-dev --split report --plot photos.png

matplotlib is imported only when a plot is drawn (``edgefmnist.plots``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from edgefmnist.runtime.photo_eval import PhotoPredictions, threshold_figures

from edgefmnist.errors import printable


def curve_labels(
    points: Sequence[tuple[float, float, float]], apart: float = 0.015
) -> list[tuple[tuple[float, float], str]]:
    """Labels for ``(coverage, accuracy, threshold)`` points of a curve, in order: a run of points
    within ``apart`` of its first one in both coordinates (shares, 0..1: thresholds that change
    few answers) is labelled once, by its range of thresholds ("0.0-0.3"), so that no labels are
    drawn on top of each other."""
    labels: list[tuple[tuple[float, float], str]] = []
    run: list[tuple[float, float, float]] = []
    for point in [*points, None]:
        if run and (point is None or max(abs(point[0] - run[0][0]), abs(point[1] - run[0][1])) > apart):
            thresholds = f"{run[0][2]:.1f}" + (f"-{run[-1][2]:.1f}" if len(run) > 1 else "")
            labels.append(((run[0][0], run[0][1]), thresholds))
            run = []
        if point is not None:
            run.append(point)
    return labels


def save_photo_plot(path: Path, report: dict, predictions: PhotoPredictions, title: str) -> None:
    """Two panels: the verdict confusion (source class x predicted class + unsure) as a heat map,
    and selective accuracy against coverage over min-confidence 0..0.99 (min-typicality held at
    the report's). Needs matplotlib."""
    from edgefmnist.plots import pyplot, save_figure

    plt = pyplot()
    counts = np.array(report["confusion"]["counts"], dtype=float).reshape(len(report["confusion"]["rows"]), -1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 6.5), gridspec_kw={"width_ratios": [3, 2]})
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    image = left.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    left.set_xticks(range(counts.shape[1]), map(printable, report["confusion"]["columns"]), rotation=45, ha="right")
    left.set_yticks(range(counts.shape[0]), map(printable, report["confusion"]["rows"]))
    figures = report["threshold"]
    rule = f"top probability ≤ {figures['min_confidence']:.2f}"
    if figures.get("min_typicality") is not None:
        rule += f" or typicality < {figures['min_typicality']:.3f}"
    left.set_xlabel(f"verdict (unsure: {rule})")
    left.set_ylabel("source class")
    for i, row in enumerate(counts):
        for j, count in enumerate(row):
            left.text(
                j,
                i,
                str(int(count)),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if shares[i, j] > 0.5 else "black",
            )
    fig.colorbar(image, ax=left, fraction=0.046, label="share of the row")
    left.set_title(printable(title))
    held = report["threshold"]["min_typicality"] or 0.0
    curve = [threshold_figures(predictions, t / 100, held) for t in range(0, 100)]
    points = [
        (c["coverage"], c["selective_accuracy"], c["min_confidence"])
        for c in curve
        if c["coverage"] and c["selective_accuracy"] is not None
    ]
    if points:
        right.plot([100 * p[0] for p in points], [100 * p[1] for p in points], marker=".")
        for (coverage, accuracy), label in curve_labels(points[::10]):
            right.annotate(
                label, (100 * coverage, 100 * accuracy), fontsize=8, textcoords="offset points", xytext=(4, 4)
            )
        right.margins(x=0.08, y=0.08)  # room for the labels at the curve's ends
    right.set_xlabel("coverage: in-domain photos answered (%)")
    right.set_ylabel("accuracy on the answered photos (%)")
    right.set_title(f"over min-confidence (labels), min-typicality {held:g}")
    right.grid(alpha=0.3)
    save_figure(fig, path)
