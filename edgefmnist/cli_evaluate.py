"""``edgefmnist evaluate``: accuracy on the test set, or on a folder of real photos.

    edgefmnist evaluate models/mlp.int8.onnx --plot confusion.png
    edgefmnist evaluate --photos ../shared/photos-dev --split report --json

The command's flags are parsed in :mod:`edgefmnist.cli`; the work is done here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from edgefmnist.cli_checks import need_training_extra, warn_if_oversubscribed, warn_if_typicality_unchecked
from edgefmnist.console import print_json, say, write_stdout
from edgefmnist.contract import is_checkpoint_name, is_onnx_name
from edgefmnist.errors import EdgeFmnistError, printable

if TYPE_CHECKING:
    from edgefmnist.runtime.photo_set import Photo


def evaluate_test_set(
    model: Path | None, plot: Path | None, threads: int | None, data_dir: Path | None, json_output: bool
) -> None:
    """`evaluate` without ``--photos``: accuracy, per-class figures and the confusion matrix of
    ``model`` (an .onnx model or a .pt checkpoint; None: the shipped model) on the test set."""
    from edgefmnist.data import inputs_of_test_split, load_test_split
    from edgefmnist.metrics import evaluate_predictions, format_report
    from edgefmnist.runtime.predictor import Predictor, default_model_path

    test = load_test_split(data_dir)
    model_path = model or default_model_path()
    if plot is not None:
        check_plot_path(plot, [(model_path, f"the model {model_path}"), *inputs_of_test_split(data_dir)])
    if model is not None and is_checkpoint_name(model):
        need_training_extra()
        from edgefmnist.checkpoint import load_checkpoint
        from edgefmnist.train import predict_logits

        checkpoint = load_checkpoint(model)
        class_names, logits = checkpoint.class_names, predict_logits(checkpoint.net, test.images)
    else:
        predictor = Predictor(model_path, threads=threads)
        model, class_names, logits = predictor.path, predictor.class_names, predictor.logits(test.images)
    evaluation = evaluate_predictions(test.labels, logits.argmax(1), class_names)
    plot_failure = None
    if plot is not None:
        from edgefmnist.plots import save_confusion_matrix

        title = f"{model.name}: {100 * evaluation.accuracy:.2f} % on the test set"
        plot_failure = failure_of(lambda: save_confusion_matrix(plot, evaluation.confusion, class_names, title))
    saved_plot = {"plot": str(plot)} if plot and not plot_failure else {}
    if json_output:
        print_json({"model": str(model), **evaluation.to_dict(), **saved_plot, **plot_error(plot_failure)})
    else:
        write_stdout(format_report(evaluation, printable(str(model))))
        if saved_plot:
            write_stdout()
            say(f"confusion matrix: {plot}")
    warn_if_oversubscribed(threads)
    if plot_failure:  # the results are out: a full disk costs the plot only
        raise plot_failure


def none_read(count: int, noun: str) -> str:
    """``"none of the 3 photos could be read"``, or for one ``"the one photo could not be read"``."""
    return f"the one {noun} could not be read" if count == 1 else f"none of the {count:,} {noun}s could be read"


def failure_of(save: Callable[[], None]) -> EdgeFmnistError | None:
    """Run ``save`` (a plot's write): None when it succeeded, else its one-line error, to be raised
    once the results it would have drawn are printed."""
    try:
        save()
    except EdgeFmnistError as exc:
        return exc
    return None


def plot_error(failure: EdgeFmnistError | None) -> dict[str, str]:
    """``{"plot_error": "one line"}`` for the JSON of a run whose plot could not be written, else ``{}``."""
    return {"plot_error": str(failure)} if failure else {}


def check_plot_path(plot: Path, inputs: Iterable[tuple[Path, str]]) -> None:
    """Refuse, before any work, a ``--plot`` that cannot be written (``WriteFailed``), has an
    extension other than PNG's (``x.jpg``, ``model.onnx``: :class:`UsageError`), is one of the
    command's ``inputs`` (pairs of a path and what it is, ``EdgeFmnistError``) or is an existing
    file that is not a PNG (:class:`UsageError`), or is ``-`` (:func:`refuse_dash`), and refuse
    it without matplotlib (``EdgeFmnistError``). A device or FIFO passes, whatever its name."""
    from edgefmnist.atomic import check_writable, refuse_overwriting
    from edgefmnist.plots import need_matplotlib
    from edgefmnist.runtime.png_target import check_png_target, refuse_dash

    refuse_dash("--plot", plot)
    need_matplotlib()
    refuse_overwriting("--plot", [plot], inputs)  # first: naming the input says more
    check_png_target("--plot", plot, "the plot")
    check_writable(plot)


def selected_photos(folder: Path, photos: list[Photo], split: str, choose: bool) -> list[Photo]:
    """The photos of the ``split`` half (:func:`~edgefmnist.runtime.photo_set.select_split`).

    Raises :class:`EdgeFmnistError` when there are none, or with ``choose`` when they lack
    in-domain or out-of-domain photos (the defaults' rule needs both)."""
    from edgefmnist.runtime.photo_set import select_split

    selected = select_split(photos, split)
    if not selected:
        other = "report" if split == "choice" else "choice"
        hint = f" (all {len(photos)} are in the {other} half: give --split {other} or all)" if photos else ""
        raise EdgeFmnistError(f"{folder}: no photos in the {split} half{hint}")
    if choose and len({photo.in_domain for photo in selected}) < 2:
        lacking = "out-of-domain" if selected[0].in_domain else "in-domain"
        raise EdgeFmnistError(
            f"{folder}: --choose needs in-domain and out-of-domain photos; these have no {lacking} one"
        )
    return selected


def evaluate_photos(
    folder: Path,
    model: Path | None,
    split: str,
    thresholds: tuple[float, float],
    varied: str | None,
    choose: bool,
    plot: Path | None,
    threads: int | None,
    json_output: bool,
) -> None:
    """`evaluate --photos`: the report at ``thresholds`` (min-confidence, min-typicality), the
    sweep of the ``varied`` one ("confidence" or "typicality"; None: no sweep), and with
    ``choose`` the pair the defaults' rule picks, on one half of a photo set."""
    from edgefmnist.runtime.photo_eval import (
        choose_thresholds,
        photo_report,
        predict_photos,
        threshold_sweep,
        unread_in_domain,
    )
    from edgefmnist.runtime.photo_plot import save_photo_plot
    from edgefmnist.runtime.photo_set import LABELS_FILE, load_photo_set, photo_set_notes
    from edgefmnist.runtime.predictor import Predictor, default_model_path

    if model is not None and not is_onnx_name(model):
        raise EdgeFmnistError(f"{model}: --photos needs an exported .onnx model (its calibrated probabilities)")
    model_path = model or default_model_path()
    predictor = Predictor(model_path, threads=threads)
    photos = load_photo_set(folder, predictor.class_names)  # "Dress" is right for a model that says "DRESS"
    notes = photo_set_notes(folder, photos, [plot] if plot else [], predictor.class_names)
    if plot is not None:
        labels = [(folder / LABELS_FILE, f"the photo set's {folder / LABELS_FILE}")]
        pictures = [(photo.path, f"the photo {photo.path}") for photo in photos]
        check_plot_path(plot, [(model_path, f"the model {model_path}"), *labels, *pictures])
    selected = selected_photos(folder, photos, split, choose)
    if choose and split != "choice":
        chosen_on = "the report half" if split == "report" else "all photos"
        notes.append(
            f"--choose on {chosen_on}: figures of the photos the thresholds are chosen on overstate them; "
            "choose on --split choice, report on --split report"
        )
    if varied == "typicality" and not predictor.metadata.has_typicality_reference:
        raise EdgeFmnistError(
            f"{predictor.path}: no typicality reference in its metadata (exported before it); "
            "--sweep-typicality needs one: re-export the model"
        )
    predictions = predict_photos(predictor, selected)
    if not predictions.photos:
        first = predictions.errors[0]["error"]
        why = first if len(selected) == 1 else f"first: {first}"
        raise EdgeFmnistError(f"{folder}: {none_read(len(selected), 'photo')} ({why})")
    report = photo_report(predictions, *thresholds)
    title = f"{predictor.path.name} on {folder.name or folder} ({split})"
    head = {"model": str(predictor.path), "folder": str(folder), "split": split}
    swept = threshold_sweep(predictions, varied, *thresholds) if varied else None
    try:
        chosen = choose_thresholds(predictions) if choose else None
    except ValueError as exc:  # the photos of one kind were all unreadable
        raise EdgeFmnistError(f"{folder}: --choose: {exc}") from None
    plot_failure = (
        failure_of(lambda: save_photo_plot(plot, report, predictions, title, varied or "confidence", chosen))
        if plot
        else None
    )
    for note in notes:  # after every refusal, so that an error stays one line
        typer.echo(printable(f"edgefmnist: note: {note}"), err=True)
    warn_if_typicality_unchecked(predictor, thresholds[1])
    warn_if_oversubscribed(threads)
    saved_plot = plot if plot and not plot_failure else None
    if json_output:
        extras = {
            "sweep": swept,
            "chosen_thresholds": chosen,
            "plot": str(saved_plot) if saved_plot else None,
            **plot_error(plot_failure),
        }
        print_json({**head, **report, **{key: value for key, value in extras.items() if value}})
    else:
        write_photo_text(report, title, swept, chosen, saved_plot)
    if plot_failure:  # the results are out: a full disk costs the plot only
        raise plot_failure
    if unread := unread_in_domain(selected, predictions):
        raise EdgeFmnistError(f"{folder}: {none_read(unread, 'in-domain photo')}: no accuracy to report")


def write_photo_text(report: dict, title: str, swept: dict | None, chosen: dict | None, plot: Path | None) -> None:
    """`evaluate --photos`' text on stdout: the report, then the sweep, the chosen thresholds and
    the plot's path, each if there is one."""
    from edgefmnist.runtime.photo_eval import format_choice, format_photo_report, format_sweep

    write_stdout(format_photo_report(report, printable(title)))
    if swept:
        write_stdout("\n" + format_sweep(swept))
    if chosen:
        write_stdout("\n" + format_choice(chosen))
    if plot:
        write_stdout()
        say(f"plot: {plot}")
