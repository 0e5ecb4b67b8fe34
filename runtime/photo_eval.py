"""Accuracy on real photos and the "unsure" thresholds: what ``edgefmnist evaluate --photos`` does.

    edgefmnist evaluate --photos ../shared/photos-dev --split report --json
    edgefmnist evaluate --photos ../shared/photos-dev --split choice --sweep-typicality

The photo set (a ``labels.csv`` or class folders) and its two halves are read by
:mod:`edgefmnist.runtime.photo_set`: every choice (preprocessing, the thresholds) is made on
the ``choice`` half, and results are reported on the ``report`` half.

Runtime-only: numpy, onnxruntime, pillow; tqdm (a progress bar) is used when installed. The
``--plot`` figure is :mod:`edgefmnist.runtime.photo_plot`'s.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from edgefmnist.runtime.infer import (
    check_min_confidence,
    check_min_typicality,
    picture_outputs,
    picture_typicality,
    shown_decimals,
    unsure_reasons,
)
from edgefmnist.runtime.photo_set import Photo
from edgefmnist.runtime.predictor import Predictor
from edgefmnist.runtime.preprocess import preprocess

from edgefmnist import spec
from edgefmnist.errors import EdgeFmnistError, counted, printable
from edgefmnist.metrics import confusion_table

UNSURE = "unsure"
SWEEP_GRIDS = {"confidence": spec.SWEEP_THRESHOLDS, "typicality": spec.SWEEP_TYPICALITIES}
T = TypeVar("T")


def progress_bar(items: Sequence[T], description: str) -> Iterator[T]:
    """``items`` with a tqdm bar on stderr when tqdm is installed and stderr is a terminal."""
    if sys.stderr.isatty():
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            yield from tqdm(items, desc=description, unit="photo", file=sys.stderr, leave=False)
            return
    yield from items


@dataclass
class PhotoPredictions:
    """The model's outputs on a photo set: everything the reports and the sweep are computed from.

    ``probabilities`` float32 ``[M, 10]`` and ``nothing_found`` bool ``[M]`` for the M readable
    ``photos``; ``typicality`` float ``[M]`` (None for a model without the reference, see
    :func:`edgefmnist.runtime.infer.picture_typicality`); ``errors`` lists ``{"file", "error"}``
    for the unreadable ones.
    """

    class_names: tuple[str, ...]
    photos: list[Photo]
    probabilities: np.ndarray
    nothing_found: np.ndarray
    errors: list[dict[str, str]] = field(default_factory=list)
    typicality: np.ndarray | None = None

    @property
    def predicted(self) -> np.ndarray:
        """int64 ``[M]``: each photo's most probable class."""
        return self.probabilities.argmax(1) if len(self.photos) else np.zeros(0, np.int64)

    @property
    def confidence(self) -> np.ndarray:
        """float32 ``[M]``: each photo's top probability."""
        return self.probabilities.max(1) if len(self.photos) else np.zeros(0, np.float32)

    def right(self) -> np.ndarray:
        """bool ``[M]``: the forced answer (argmax) is an accepted class (always False out of domain)."""
        return np.array(
            [self.class_names[k] in p.accepted for k, p in zip(self.predicted, self.photos, strict=False)], bool
        )

    def in_domain(self) -> np.ndarray:
        """bool ``[M]``: the photo's source class has a Fashion-MNIST class."""
        return np.array([p.in_domain for p in self.photos], bool)

    def unsure(self, min_confidence: float, min_typicality: float = spec.DEFAULT_MIN_TYPICALITY) -> np.ndarray:
        typical = [None] * len(self.photos) if self.typicality is None else [float(t) for t in self.typicality]
        return np.array(
            [
                bool(unsure_reasons(float(c), min_confidence, bool(e), t, min_typicality))
                for c, e, t in zip(self.confidence, self.nothing_found, typical, strict=False)
            ],
            bool,
        )

    def sources(self) -> list[str]:
        """Source classes in order of first appearance in the sorted photos (in-domain ones first)."""
        names = list(dict.fromkeys(p.source_class for p in self.photos))
        ood = {p.source_class for p in self.photos if not p.in_domain}
        return [n for n in names if n not in ood] + [n for n in names if n in ood]


def predict_photos(
    predictor: Predictor,
    photos: Sequence[Photo],
    progress: Callable[[Sequence[Photo], str], Iterable[Photo]] = progress_bar,
) -> PhotoPredictions:
    """Preprocess each photo (the per-photo cost), then run the model once on the whole batch.

    The outputs are ``infer``'s (:func:`edgefmnist.runtime.infer.picture_outputs`).

    An unreadable photo is recorded in ``errors`` and left out; nothing is cached on disk.
    """
    kept, pixels, empty, was_photo, errors = [], [], [], [], []
    for photo in progress(photos, "photos"):
        try:
            refuse_fifo_or_socket(photo.path)
            picture = preprocess(photo.path)
        except EdgeFmnistError as exc:
            errors.append({"file": str(photo.path), "error": str(exc)})
            continue
        kept.append(photo)
        pixels.append(picture.pixels)
        empty.append(bool(picture.nothing_found))
        was_photo.append(picture.photo)
    classes = len(predictor.class_names)
    logits, probabilities = (
        picture_outputs(predictor, np.stack(pixels), was_photo)
        if pixels
        else (np.zeros((0, classes), np.float32), np.zeros((0, classes), np.float32))
    )
    typical = picture_typicality(predictor, logits)
    return PhotoPredictions(tuple(predictor.class_names), kept, probabilities, np.array(empty, bool), errors, typical)


def unread_in_domain(selected: Sequence[Photo], predictions: PhotoPredictions) -> int:
    """The number of in-domain photos among ``selected`` when every one of them was unreadable, else 0:
    the report then has no accuracy, and ``evaluate`` exits 1 after printing it."""
    in_domain = sum(photo.in_domain for photo in selected)
    classified = sum(photo.in_domain for photo in predictions.photos)
    return in_domain if in_domain and not classified else 0


def refuse_fifo_or_socket(path: Path) -> None:
    """Raise :class:`EdgeFmnistError` for a FIFO or a socket listed as a photo: reading one would
    wait for a writer forever. (``infer --image`` reads a FIFO, as ``cat`` would: ``<(...)``.)"""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing or unreadable: loading it says why
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        raise EdgeFmnistError(f"{path}: a {'FIFO' if stat.S_ISFIFO(mode) else 'socket'}, not a regular file")


def _share(mask: np.ndarray, of: np.ndarray) -> float | None:
    """``mask`` true among the ``of`` rows, or None when there are none."""
    total = int(of.sum())
    return float((mask & of).sum() / total) if total else None


def threshold_figures(
    predictions: PhotoPredictions, min_confidence: float, min_typicality: float = spec.DEFAULT_MIN_TYPICALITY
) -> dict:
    """Coverage, selective accuracy and out-of-domain unsure rates at one pair of thresholds."""
    unsure, inside, right = (
        predictions.unsure(min_confidence, min_typicality),
        predictions.in_domain(),
        predictions.right(),
    )
    answered = inside & ~unsure
    sources = np.array([p.source_class for p in predictions.photos])
    ood_sources = [s for s in predictions.sources() if not inside[sources == s].any()]
    return {
        "min_confidence": min_confidence,
        "min_typicality": min_typicality if predictions.typicality is not None else None,
        "coverage": _share(~unsure, inside),
        "selective_accuracy": _share(right, answered),
        "ood_unsure_rate": _share(unsure, ~inside),
        "ood_unsure": {s: _share(unsure, sources == s) for s in ood_sources},
    }


def photo_report(
    predictions: PhotoPredictions,
    min_confidence: float = spec.DEFAULT_MIN_CONFIDENCE,
    min_typicality: float = spec.DEFAULT_MIN_TYPICALITY,
) -> dict:
    """Everything ``evaluate --photos`` reports, as JSON-ready values.

    ``accuracy`` is the forced-answer accuracy on in-domain photos (the unsure verdict
    ignored). ``confusion`` counts verdicts: rows are source classes, columns the Fashion-MNIST
    classes plus ``unsure`` (an unsure photo counts there, not under its best guess);
    ``forced_confusion`` counts best guesses only.
    """
    check_min_confidence(min_confidence)
    check_min_typicality(min_typicality)
    names = predictions.class_names
    unsure, inside, right = (
        predictions.unsure(min_confidence, min_typicality),
        predictions.in_domain(),
        predictions.right(),
    )
    predicted = predictions.predicted
    sources = predictions.sources()
    source_of = np.array([p.source_class for p in predictions.photos])
    verdict = np.where(unsure, len(names), predicted)
    confusion = [np.bincount(verdict[source_of == s], minlength=len(names) + 1).tolist() for s in sources]
    forced = [np.bincount(predicted[source_of == s], minlength=len(names)).tolist() for s in sources]
    per_source = []
    for s in sources:
        rows = source_of == s
        per_source.append(
            {
                "source_class": s,
                "photos": int(rows.sum()),
                "in_domain": bool(inside[rows].any()),
                "recall": _share(right, rows) if inside[rows].any() else None,
                "unsure_rate": _share(unsure, rows),
            }
        )
    unreadable = len(predictions.errors)
    return {
        "photos": len(predictions.photos) + unreadable,
        "classified": len(predictions.photos),
        "unreadable": unreadable,
        "errors": predictions.errors,
        "in_domain": int(inside.sum()),
        "out_of_domain": int((~inside).sum()),
        "accuracy": _share(right, inside),
        "per_source": per_source,
        "confusion": {"rows": sources, "columns": [*names, UNSURE], "counts": confusion},
        "forced_confusion": {"rows": sources, "columns": list(names), "counts": forced},
        "threshold": threshold_figures(predictions, min_confidence, min_typicality),
    }


def target_ood_unsure(figures: dict, ood_class: str) -> float | None:
    """The unsure rate in :func:`threshold_figures` that the OOD target applies to: ``ood_class``'s
    photos', else (no such photo) all out-of-domain photos'."""
    return figures["ood_unsure"].get(ood_class, figures["ood_unsure_rate"])


def _meets(value: float | None, target: float) -> bool:
    return value is not None and value >= target


def threshold_sweep(
    predictions: PhotoPredictions,
    varied: str = "confidence",
    min_confidence: float = spec.DEFAULT_MIN_CONFIDENCE,
    min_typicality: float = spec.DEFAULT_MIN_TYPICALITY,
    ood_class: str = spec.TARGET_OOD_CLASS,
) -> dict:
    """Coverage, selective accuracy and OOD unsure rates over one threshold's grid, the other held,
    and the smallest value that meets all of ``spec.TARGET_*`` (``chosen`` is None when none does).

    ``varied`` is ``"confidence"`` (``spec.SWEEP_THRESHOLDS``, at ``min_typicality``) or
    ``"typicality"`` (``spec.SWEEP_TYPICALITIES``, at ``min_confidence``). The OOD target applies
    to ``ood_class`` photos (hats); without any, to all OOD photos. Raises ``ValueError`` for
    another ``varied``.
    """
    if varied not in SWEEP_GRIDS:
        raise ValueError(f"varied must be one of {', '.join(SWEEP_GRIDS)}, got {varied!r}")
    targets = {
        "selective_accuracy": spec.TARGET_SELECTIVE_ACCURACY,
        "coverage": spec.TARGET_COVERAGE,
        "target_ood_unsure": spec.TARGET_OOD_UNSURE,  # of the row's target_ood_unsure, not its ood_unsure
    }
    check_min_confidence(min_confidence)
    check_min_typicality(min_typicality)
    rows = []
    for value in SWEEP_GRIDS[varied]:
        pair = (value, min_typicality) if varied == "confidence" else (min_confidence, value)
        figures = threshold_figures(predictions, *pair)
        ood = target_ood_unsure(figures, ood_class)
        met = {
            "selective_accuracy": _meets(figures["selective_accuracy"], targets["selective_accuracy"]),
            "coverage": _meets(figures["coverage"], targets["coverage"]),
            "target_ood_unsure": _meets(ood, targets["target_ood_unsure"]),
        }
        rows.append({**figures, "target_ood_unsure": ood, "met": met, "all_met": all(met.values())})
    chosen = next((row[f"min_{varied}"] for row in rows if row["all_met"]), None)
    ood_name = ood_class if any(ood_class in row["ood_unsure"] for row in rows) else "out-of-domain"
    return {"targets": {**targets, "ood_class": ood_name}, "varied": varied, "rows": rows, "chosen": chosen}


def choose_thresholds(predictions: PhotoPredictions, ood_class: str = spec.TARGET_OOD_CLASS) -> dict:
    """The pair of thresholds that the defaults' rule picks (``spec.DEFAULT_MIN_CONFIDENCE``'s comment).

    Over every pair of ``spec.SWEEP_THRESHOLDS`` x ``spec.SWEEP_TYPICALITIES`` (the confidence
    grid alone for a model without the typicality reference): the smallest summed shortfall of
    the coverage and of the ``ood_class`` unsure rate (all out-of-domain photos when there is no
    such class) below their targets, then the highest accuracy on the answered photos, then the
    smallest min-confidence and min-typicality. Returns :func:`threshold_figures` of that pair
    with ``shortfall``. ``ValueError`` when no photo is in domain or none is out of domain
    (there would be nothing to weigh coverage or the unsure rate against).
    """
    inside = predictions.in_domain()
    if not inside.any() or inside.all():
        raise ValueError("choosing thresholds needs in-domain and out-of-domain photos")
    typicalities = spec.SWEEP_TYPICALITIES if predictions.typicality is not None else (spec.DEFAULT_MIN_TYPICALITY,)
    best: tuple[tuple[float, float, float, float], dict] | None = None
    for min_confidence in spec.SWEEP_THRESHOLDS:
        for min_typicality in typicalities:
            figures = threshold_figures(predictions, min_confidence, min_typicality)
            ood = target_ood_unsure(figures, ood_class) or 0.0
            shortfall = max(0.0, spec.TARGET_COVERAGE - figures["coverage"]) + max(0.0, spec.TARGET_OOD_UNSURE - ood)
            key = (round(shortfall, 9), -(figures["selective_accuracy"] or 0.0), min_confidence, min_typicality)
            if best is None or key < best[0]:
                best = key, {**figures, "shortfall": shortfall}
    assert best is not None  # the grids are not empty
    return best[1]


def format_choice(chosen: dict, ood_class: str = spec.TARGET_OOD_CLASS) -> str:
    """One line: the pair :func:`choose_thresholds` picked and its figures."""
    ood_name = ood_class if ood_class in chosen["ood_unsure"] else "out-of-domain"
    ood_text = f"{ood_name} unsure {_percent(target_ood_unsure(chosen, ood_class))}"
    return (
        f"the defaults' rule picks {thresholds_text(chosen)}: coverage {_percent(chosen['coverage'])}, "
        f"{ood_text}, selective accuracy {_percent(chosen['selective_accuracy'])} "
        f"(summed shortfall from the coverage and unsure targets: {chosen['shortfall']:.4f})"
    )


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def format_photo_report(report: dict, title: str) -> str:
    """A plain-text summary for the terminal."""

    def pct(value: float | None) -> str:
        return "    —" if value is None else f"{100 * value:5.1f}"

    figures = report["threshold"]
    lines = [
        f"{title}: {counted(report['photos'], 'photo')} ({report['in_domain']:,} in domain, "
        f"{report['out_of_domain']:,} out of domain, {report['unreadable']:,} unreadable)",
        f"  accuracy (forced answer, in domain)  {_percent(report['accuracy'])}",
        f"  at {thresholds_text(figures)}: coverage {_percent(figures['coverage'])}, "
        f"selective accuracy {_percent(figures['selective_accuracy'])}, "
        f"unsure on out-of-domain {_percent(figures['ood_unsure_rate'])}",
        "",
        f"  {'source class':<14} {'photos':>6} {'recall %':>9} {'unsure %':>9}",
    ]
    for row in report["per_source"]:
        lines.append(
            f"  {printable(row['source_class']):<14} {row['photos']:>6} "
            f"{pct(row['recall']):>9} {pct(row['unsure_rate']):>9}"
            + ("" if row["in_domain"] else "  (out of domain: unsure is right)")
        )
    lines += ["", "  confusion: rows source class, columns the verdict"]
    confusion = report["confusion"]
    lines += confusion_table(confusion["rows"], confusion["columns"], confusion["counts"], first_width=14, indent="  ")
    for error in report["errors"]:
        lines.append(printable(f"  unreadable: {error['error']}"))
    return "\n".join(lines)


def thresholds_text(figures: dict) -> str:
    """``min-confidence 0.40, min-typicality 0.011`` (no typicality for a model without the reference):
    two and three decimals, or every decimal a threshold has (``0.557``, ``0.0125``)."""
    text = confidence_text(figures["min_confidence"])
    if figures.get("min_typicality") is not None:
        text += f", {typicality_text(figures['min_typicality'])}"
    return text


def confidence_text(min_confidence: float) -> str:
    """``min-confidence 0.40``: two decimals, or every decimal it has (``0.557``)."""
    return f"min-confidence {min_confidence:.{shown_decimals(min_confidence)}f}"


def typicality_text(min_typicality: float) -> str:
    """``min-typicality 0.011``: three decimals, or every decimal it has (``0.0125``)."""
    return f"min-typicality {min_typicality:.{max(3, shown_decimals(min_typicality))}f}"


def format_sweep(sweep: dict) -> str:
    """The sweep as a table, and the threshold it names."""
    targets, varied = sweep["targets"], sweep["varied"]
    held = "min_typicality" if varied == "confidence" else "min_confidence"
    held_value = sweep["rows"][0][held] if sweep["rows"] else None
    lines = [
        f"targets: selective accuracy >= {targets['selective_accuracy']:.2f}, coverage >= {targets['coverage']:.2f}, "
        f"{targets['ood_class']} unsure >= {targets['target_ood_unsure']:.2f} (the target OOD column)",
        f"varied: min-{varied}" + ("" if held_value is None else f"; held: {held.replace('_', '-')} {held_value:g}"),
        "",
        f"{'threshold':>9} {'coverage':>9} {'sel. acc':>9} {'OOD unsure':>11} {'target OOD':>11}  met",
    ]
    for row in sweep["rows"]:
        met = ", ".join(name for name, ok in row["met"].items() if ok) or "none"
        cells = [row["coverage"], row["selective_accuracy"], row["ood_unsure_rate"], row["target_ood_unsure"]]
        text = ["—" if v is None else f"{v:.3f}" for v in cells]
        digits = 2 if varied == "confidence" else 3
        lines.append(
            f"{row[f'min_{varied}']:>9.{digits}f} {text[0]:>9} {text[1]:>9} {text[2]:>11} {text[3]:>11}  "
            + ("ALL" if row["all_met"] else met)
        )
    chosen = sweep["chosen"]
    lines += [
        "",
        f"smallest min-{varied} meeting all targets: {chosen:g}"
        if chosen is not None
        else "no threshold meets all targets",
    ]
    return "\n".join(lines)
