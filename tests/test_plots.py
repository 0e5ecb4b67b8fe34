"""The figures of `evaluate --plot`: the test set's heat map; with `--photos`, the verdicts and the coverage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgefmnist.runtime.photo_eval import PhotoPredictions, choose_thresholds, photo_report
from edgefmnist.runtime.photo_plot import CURVE_GRIDS, coverage_curve, curve_labels, draw_verdicts, save_photo_plot
from helpers import blob_photo, coats_and_hats, run_in_process

from edgefmnist import spec
from edgefmnist.plots import pyplot


def test_the_curve_runs_over_the_swept_threshold_and_marks_the_pair_in_use_and_the_pick() -> None:
    predictions = coats_and_hats()
    report = photo_report(predictions, 0.3, 0.002)
    over_confidence = coverage_curve(report, predictions)
    assert over_confidence.held == "min-typicality 0.002"
    assert [p[2] for p in over_confidence.points] == [t for t in CURVE_GRIDS["confidence"] if t < 0.9]  # 0.9: none
    assert {(p[0], p[1]) for p in over_confidence.points} == {(1.0, 0.6), (0.6, 1.0)}  # the four wrong go at 0.52
    assert over_confidence.in_use == (1.0, 0.6, "min-confidence 0.30, min-typicality 0.002")
    assert over_confidence.chosen is None

    chosen = choose_thresholds(predictions)
    over_typicality = coverage_curve(report, predictions, "typicality", chosen)
    assert over_typicality.held == "min-confidence 0.30"
    assert [p[2] for p in over_typicality.points] == list(CURVE_GRIDS["typicality"])
    assert {(p[0], p[1]) for p in over_typicality.points} == {(1.0, 0.6)}  # the coats are typical (0.5)
    assert over_typicality.chosen == (0.6, 1.0, "min-confidence 0.55, min-typicality 0.002 (off this curve)")
    on_the_curve = coverage_curve(report, predictions, "confidence", chosen)  # its min-typicality is held
    assert on_the_curve.chosen == (0.6, 1.0, "min-confidence 0.55, min-typicality 0.002")
    with pytest.raises(ValueError, match="varied must be one of"):
        coverage_curve(report, predictions, "energy")


def test_a_set_with_nothing_answered_in_domain_has_no_curve_and_says_so(tmp_path: Path) -> None:
    predictions = coats_and_hats()
    hats = PhotoPredictions(
        spec.CLASS_NAMES, predictions.photos[10:], predictions.probabilities[10:], np.zeros(5, bool)
    )
    report = photo_report(hats, 0.3, 0.002)
    curve = coverage_curve(report, hats)
    assert (curve.points, curve.in_use, curve.held) == ([], None, "")  # no typicality reference: none held
    assert curve.empty == "no in-domain photos in this set"
    save_photo_plot(tmp_path / "hats.png", report, hats, "hats")
    assert (tmp_path / "hats.png").read_bytes().startswith(b"\x89PNG")
    nothing_found = PhotoPredictions(spec.CLASS_NAMES, predictions.photos, predictions.probabilities, np.ones(15, bool))
    blank = coverage_curve(photo_report(nothing_found, 0.3), nothing_found)  # every photo unsure at any threshold
    assert (blank.points, blank.empty) == ([], "no in-domain photo is answered")


@pytest.mark.parametrize(
    ("options", "varied", "chosen"),
    [((), "confidence", False), (("--sweep-typicality",), "typicality", False), (("--choose",), "confidence", True)],
)
def test_evaluate_plots_the_sweep_it_was_asked_for_and_the_pick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: tuple[str, ...], varied: str, chosen: bool
) -> None:
    for k in range(3):
        blob_photo(tmp_path / "Coat" / f"{k}.jpg", k)
    blob_photo(tmp_path / "hat" / "x.jpg", 3)
    drawn: list[tuple[str, dict | None]] = []
    monkeypatch.setattr(
        "edgefmnist.runtime.photo_plot.save_photo_plot",
        lambda path, report, predictions, title, varied, chosen: drawn.append((varied, chosen)),
    )
    result = run_in_process("evaluate", "--photos", str(tmp_path), "--plot", str(tmp_path / "p.png"), *options)
    assert result.returncode == 0, result.stderr
    assert [(v, c is not None) for v, c in drawn] == [(varied, chosen)]


@pytest.mark.parametrize(("min_typicality", "rule"), [(0.002, "or typicality < 0.002"), (0.0, ""), (None, "")])
def test_the_verdicts_axis_names_the_typicality_rule_only_when_it_can_call_a_photo_unsure(
    min_typicality: float | None, rule: str
) -> None:
    predictions = coats_and_hats()
    report = photo_report(predictions, 0.3, 0.002)
    report["threshold"]["min_typicality"] = min_typicality
    plt = pyplot()
    fig, axis = plt.subplots()
    draw_verdicts(fig, axis, report)
    plt.close(fig)
    assert axis.get_xlabel() == f"verdict (unsure: top probability ≤ 0.30{' ' + rule if rule else ''})"


def test_curve_labels_name_a_run_of_thresholds_that_change_nothing_once() -> None:
    points = [(0.70, 0.74, 0.0), (0.70, 0.74, 0.1), (0.705, 0.741, 0.2), (0.62, 0.75, 0.3), (0.50, 0.80, 0.4)]
    assert curve_labels(points) == [((0.70, 0.74), "0.0-0.2"), ((0.62, 0.75), "0.3"), ((0.50, 0.80), "0.4")]
    assert curve_labels(points[3:], decimals=3) == [((0.62, 0.75), "0.300"), ((0.50, 0.80), "0.400")]
    assert curve_labels([]) == []


def test_the_test_set_heat_map_colours_tens_of_confusions_beside_hundreds_right() -> None:
    from edgefmnist.plots import confusion_figure

    confusion = (900 * np.eye(10, dtype=int)).tolist()
    confusion[6][0] = 80  # Shirt read as T-shirt/top, as such confusions go
    figure = confusion_figure(confusion, spec.CLASS_NAMES, "title")
    figure.canvas.draw()
    image, bar = figure.axes[0].images[0], figure.axes[1]
    pyplot().close(figure)
    assert image.norm(80) > 0.6  # on a linear scale 80 / 900 would be nearly white
    assert image.norm(1) > 0.05  # a single image is tinted
    assert image.get_array().mask[0][1]  # an empty cell is white
    assert [label.get_text() for label in bar.get_yticklabels()] == ["1", "10", "100"]  # plain, no TeX
