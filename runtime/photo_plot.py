"""The figure of ``edgefmnist evaluate --photos --plot``: the verdicts' confusion and the coverage curve.

    edgefmnist evaluate --photos ../shared/photos-dev --split report --plot photos.png

matplotlib is imported only when a plot is drawn (``edgefmnist.plots``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from edgefmnist.runtime.photo_eval import (
    PhotoPredictions,
    confidence_text,
    threshold_figures,
    thresholds_text,
    typicality_text,
)

from edgefmnist import spec
from edgefmnist.errors import printable

# The thresholds the coverage curve runs over, and the decimals of its labels (every LABEL_EVERY-th point)
CURVE_GRIDS = {"confidence": tuple(k / 100 for k in range(100)), "typicality": tuple(k / 1000 for k in range(51))}
LABEL_DECIMALS = {"confidence": 1, "typicality": 3}
LABEL_EVERY = 10


def curve_labels(
    points: Sequence[tuple[float, float, float]], apart: float = 0.015, decimals: int = 1
) -> list[tuple[tuple[float, float], str]]:
    """Labels for ``(coverage, accuracy, threshold)`` points of a curve, in order: a run of points
    within ``apart`` of its first one in both coordinates (shares, 0..1: thresholds that change
    few answers) is labelled once, by its range of thresholds ("0.0-0.3", with ``decimals``), so
    that no labels are drawn on top of each other."""
    labels: list[tuple[tuple[float, float], str]] = []
    run: list[tuple[float, float, float]] = []
    for point in [*points, None]:
        if run and (point is None or max(abs(point[0] - run[0][0]), abs(point[1] - run[0][1])) > apart):
            thresholds = f"{run[0][2]:.{decimals}f}" + (f"-{run[-1][2]:.{decimals}f}" if len(run) > 1 else "")
            labels.append(((run[0][0], run[0][1]), thresholds))
            run = []
        if point is not None:
            run.append(point)
    return labels


@dataclass(frozen=True)
class CoverageCurve:
    """The plot's right panel: selective accuracy against coverage as the ``varied`` threshold
    (``"confidence"`` or ``"typicality"``) runs over :data:`CURVE_GRIDS`, the other one ``held``.

    ``points``: ``(coverage, selective accuracy, threshold)``, shares 0-1, where anything is
    answered, and ``empty`` why there are none ("" when there are); ``in_use`` and ``chosen``:
    ``(coverage, selective accuracy, label)`` of the report's thresholds and of the pair the
    defaults' rule picked, or None (none picked, or none of the in-domain photos answered). A
    pick whose other threshold is not the one held lies off the curve, and its label says so.
    """

    varied: str
    held: str
    points: list[tuple[float, float, float]]
    in_use: tuple[float, float, str] | None
    chosen: tuple[float, float, str] | None
    empty: str = ""


def coverage_curve(
    report: dict, predictions: PhotoPredictions, varied: str = "confidence", chosen: dict | None = None
) -> CoverageCurve:
    """The :class:`CoverageCurve` of a :func:`~edgefmnist.runtime.photo_eval.photo_report`: the other
    threshold held at the report's (min-typicality 0 for a model without the typicality reference).
    ``chosen`` is :func:`~edgefmnist.runtime.photo_eval.choose_thresholds`' pick. Raises
    ``ValueError`` for another ``varied``."""
    if varied not in CURVE_GRIDS:
        raise ValueError(f"varied must be one of {', '.join(CURVE_GRIDS)}, got {varied!r}")
    figures = report["threshold"]
    confidence, typicality = figures["min_confidence"], figures["min_typicality"]
    if varied == "confidence":
        held = "" if typicality is None else typicality_text(typicality)
        pairs = [(value, typicality or 0.0) for value in CURVE_GRIDS[varied]]
    else:
        held = confidence_text(confidence)
        pairs = [(confidence, value) for value in CURVE_GRIDS[varied]]
    points = []
    for pair in pairs:
        curve_figures = threshold_figures(predictions, *pair)
        if curve_figures["coverage"] and curve_figures["selective_accuracy"] is not None:
            value = pair[0] if varied == "confidence" else pair[1]
            points.append((curve_figures["coverage"], curve_figures["selective_accuracy"], value))
    empty = "no in-domain photos in this set" if not report["in_domain"] else "no in-domain photo is answered"
    empty = "" if points else empty
    held_key = "min_typicality" if varied == "confidence" else "min_confidence"
    off_curve = chosen is not None and (chosen[held_key] or 0.0) != (figures[held_key] or 0.0)
    chosen_point = marked_point(chosen, " (off this curve)" if off_curve else "")
    return CoverageCurve(varied, held, points, marked_point(figures), chosen_point, empty)


def marked_point(figures: dict | None, note: str = "") -> tuple[float, float, str] | None:
    """``(coverage, selective accuracy, thresholds text + note)`` of :func:`threshold_figures`, or
    None when there are none or nothing in domain is answered."""
    if not figures or not figures["coverage"] or figures["selective_accuracy"] is None:
        return None
    return figures["coverage"], figures["selective_accuracy"], thresholds_text(figures) + note


def save_photo_plot(
    path: Path,
    report: dict,
    predictions: PhotoPredictions,
    title: str,
    varied: str = "confidence",
    chosen: dict | None = None,
) -> None:
    """Two panels: the verdict confusion (source class x predicted class + unsure) as a heat map,
    and :func:`coverage_curve` with the thresholds in use, the defaults' rule's pick (``chosen``)
    and the targets marked. Needs matplotlib."""
    from edgefmnist.plots import pyplot, save_figure

    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 6.5), gridspec_kw={"width_ratios": [3, 2]})
    draw_verdicts(fig, left, report)
    left.set_title(printable(title))
    draw_curve(right, coverage_curve(report, predictions, varied, chosen))
    save_figure(fig, path)


def draw_verdicts(fig, axis, report: dict) -> None:
    """The verdict confusion as a heat map of each row's shares, with the counts in the cells."""
    counts = np.array(report["confusion"]["counts"], dtype=float).reshape(len(report["confusion"]["rows"]), -1)
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    axis.set_xticks(range(counts.shape[1]), map(printable, report["confusion"]["columns"]), rotation=45, ha="right")
    axis.set_yticks(range(counts.shape[0]), map(printable, report["confusion"]["rows"]))
    figures = report["threshold"]
    rule = f"top probability ≤ {figures['min_confidence']:.2f}"
    if figures.get("min_typicality"):  # 0 or None: no photo is unsure for its typicality
        rule += f" or typicality < {figures['min_typicality']:.3f}"
    axis.set_xlabel(f"verdict (unsure: {rule})")
    axis.set_ylabel("source class")
    for i, row in enumerate(counts):
        for j, count in enumerate(row):
            colour = "white" if shares[i, j] > 0.5 else "black"
            axis.text(j, i, str(int(count)), ha="center", va="center", fontsize=8, color=colour)
    fig.colorbar(image, ax=axis, fraction=0.046, label="share of the row")


def draw_curve(axis, curve: CoverageCurve) -> None:
    """The coverage curve with its threshold labels, the marked points and the targets' lines."""
    axis.set_title(f"over min-{curve.varied} (labels)" + (f", {curve.held}" if curve.held else ""))
    if not curve.points:
        axis.text(0.5, 0.5, f"{curve.empty}:\nno coverage to plot", ha="center", va="center")
        axis.set_axis_off()
        return
    axis.plot([100 * p[0] for p in curve.points], [100 * p[1] for p in curve.points], marker=".", zorder=1)
    right_end = max(p[0] for p in curve.points) - 0.05
    labels = curve_labels(curve.points[::LABEL_EVERY], decimals=LABEL_DECIMALS[curve.varied])
    for (coverage, accuracy), label in labels:
        # at the curve's right end the label goes below and to the left: inside the frame, and clear
        # of the label before it, which sits above and to the right of a point up the curve
        leftwards = coverage > right_end
        axis.annotate(
            label,
            (100 * coverage, 100 * accuracy),
            fontsize=8,
            textcoords="offset points",
            xytext=(-4, -4) if leftwards else (4, 4),
            ha="right" if leftwards else "left",
            va="top" if leftwards else "baseline",
            bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
        )
    hollow_diamond = {"marker": "D", "markersize": 12, "markerfacecolor": "none", "markeredgewidth": 2}
    for point, style, name in (  # the diamond is hollow and larger: a star at the same point shows inside it
        (curve.in_use, {"marker": "*", "markersize": 13, "color": "tab:red", "zorder": 4}, "in use"),
        (curve.chosen, {**hollow_diamond, "color": "tab:green", "zorder": 3}, "the defaults' rule picks"),
    ):
        if point is not None:
            axis.plot(100 * point[0], 100 * point[1], linestyle="none", label=f"{name}: {point[2]}", **style)
    coverage_target, accuracy_target = 100 * spec.TARGET_COVERAGE, 100 * spec.TARGET_SELECTIVE_ACCURACY
    axis.axvline(coverage_target, color="grey", linestyle="--", linewidth=1, zorder=0)
    axis.axhline(
        accuracy_target,
        color="grey",
        linestyle="--",
        linewidth=1,
        zorder=0,
        label=f"targets: coverage {coverage_target:.0f} %, accuracy {accuracy_target:.0f} % "
        f"(and {100 * spec.TARGET_OOD_UNSURE:.0f} % of {spec.TARGET_OOD_CLASS}s unsure, not drawn)",
    )
    axis.margins(x=0.08, y=0.08)  # room for the labels at the curve's ends
    axis.set_xlabel("coverage: in-domain photos answered (%)")
    axis.set_ylabel("accuracy on the answered photos (%)")
    axis.grid(alpha=0.3)
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.11), fontsize=8, frameon=False)  # clear of the curve
