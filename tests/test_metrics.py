"""Metrics against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from edgefmnist.metrics import accuracy, evaluate_predictions, format_report


def test_metrics_match_a_hand_computed_example() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    predictions = np.array([0, 0, 1, 1, 2, 2])
    result = evaluate_predictions(labels, predictions, ("a", "b", "c"))
    assert result.confusion == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert result.accuracy == pytest.approx(4 / 6)
    a, b, c = result.per_class
    assert (a.precision, a.recall, a.support) == (1.0, pytest.approx(2 / 3), 3)
    assert (b.precision, b.recall) == (0.5, 0.5) and b.f1 == pytest.approx(0.5)
    assert (c.precision, c.recall) == (0.5, 1.0) and c.f1 == pytest.approx(2 / 3)
    assert result.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    report = format_report(result, "m").splitlines()
    assert "macro avg" in report[-7]
    assert report[-4:] == ["             a b c", "a            2 1 0", "b            0 1 1", "c            0 0 1"]


def test_a_class_never_predicted_has_zero_precision_not_nan() -> None:
    result = evaluate_predictions(np.array([0, 1]), np.array([0, 0]), ("a", "b"))
    assert result.per_class[1].precision == 0.0 and result.per_class[1].f1 == 0.0


@pytest.mark.parametrize(("labels", "predictions"), [([0, 1], [0, 2]), ([-1, 1], [0, 1]), ([0, 2], [0, 1])])
def test_a_label_or_prediction_outside_the_classes_is_refused_not_counted_elsewhere(labels, predictions) -> None:
    with pytest.raises(ValueError, match=r"must lie in 0\.\.1"):
        evaluate_predictions(np.array(labels), np.array(predictions), ("a", "b"))


def test_accuracy_is_the_share_of_rows_whose_argmax_is_the_label() -> None:
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [-1.0, -2.0]])
    assert accuracy(scores, np.array([0, 1, 1, 1])) == 0.5
