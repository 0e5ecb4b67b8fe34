"""``edgefmnist infer``: classify pictures, or test-set images by index, and report each verdict.

    edgefmnist infer --image shirt.jpg
    edgefmnist infer --sample 0:5 --model models/mlp.int8.onnx

The command's flags are parsed in :mod:`edgefmnist.cli`; the work is done here.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from edgefmnist import spec
from edgefmnist.cli_checks import warn_if_oversubscribed, warn_if_typicality_unchecked
from edgefmnist.console import echo_unless_gone, print_json
from edgefmnist.errors import UsageError, printable

if TYPE_CHECKING:
    from edgefmnist.runtime.infer import Classified
    from edgefmnist.runtime.predictor import Predictor


def classify_and_report(
    image: list[str] | None,
    sample: str | None,
    model: Path | None,
    top_k: int,
    threads: int | None,
    save_preprocessed: str | None,
    workers: int | None,
    thresholds: tuple[float, float],
    data_dir: Path | None,
    json_output: bool,
) -> None:
    """`infer`: classify the pictures ``image`` names (paths, folders, globs, ``-``) or the test-set
    images ``sample`` picks, with ``model`` (None: the shipped model) at ``thresholds``
    (min-confidence, min-typicality), and print each result as it comes (with ``json_output``: one
    JSON list at the end). Raises :class:`UsageError` for conflicting or missing inputs and
    ``typer.Exit(1)`` when any picture could not be classified or its preprocessed image not saved."""
    from edgefmnist.runtime.infer import Classified, classify_files, parse_sample
    from edgefmnist.runtime.picture_files import find_pictures
    from edgefmnist.runtime.predictor import Predictor, default_model_path

    min_confidence, min_typicality = thresholds
    check_infer_inputs(image, sample, data_dir)
    picked = parse_sample(sample, spec.TEST_SIZE) if sample is not None else None  # before the data is looked for
    predictor = Predictor(model or default_model_path(), threads=threads)
    results: Iterable[Classified]
    if picked is not None:
        results = sample_results(predictor, picked, data_dir, save_preprocessed, top_k, thresholds)
    else:
        pictures = find_pictures(image or [])
        for path, reason in pictures.skipped.items():
            echo_unless_gone(printable(f"edgefmnist: warning: {path}: skipped, {reason}"), err=True)
        classified = classify_files(
            predictor, pictures.paths, top_k, save_preprocessed, min_confidence, workers, min_typicality
        )
        unread = [Classified(str(folder), error=f"{folder}: {reason}") for folder, reason in pictures.unread.items()]
        empty = [Classified(pattern, error=f"{pattern}: {reason}") for pattern, reason in pictures.empty.items()]
        results = itertools.chain(classified, unread, empty)
    shown = []  # with --json, printed at the end as one document; as text, each result as it comes
    failed = False
    saved_to: list[str] = []
    for result in results:
        failed = failed or bool(result.error or result.not_saved)
        saved_to += [result.saved] if result.saved else []
        if json_output:
            shown.append(result)
        else:
            report_result(result)
    if json_output:
        print_json([result.to_dict() for result in shown])
        for result in shown:
            report_result(result, line=False)
    elif saved_to:
        report_saved(saved_to, save_preprocessed or "")
    warn_if_typicality_unchecked(predictor, min_typicality)
    warn_if_oversubscribed(threads, workers, pictures=0 if picked is not None else len(pictures.paths))
    if failed:
        raise typer.Exit(1)


def check_infer_inputs(image: list[str] | None, sample: str | None, data_dir: Path | None) -> None:
    """Raise :class:`UsageError` unless ``infer`` has pictures or test-set images to classify, not
    both, ``--data-dir`` only with ``--sample``, and standard input (``-``) at most once."""
    from edgefmnist.runtime.picture_files import STDIN

    if not image and sample is None:
        raise UsageError("nothing to classify: pass --image PATH or --sample START:STOP")
    if image and sample is not None:
        raise UsageError("--image and --sample exclude each other: classify pictures or test-set images, not both")
    if image and data_dir is not None:
        raise UsageError("--data-dir is for --sample (test-set images); --image reads only its pictures")
    if (image or []).count(STDIN) > 1:
        raise UsageError("--image - given more than once: standard input holds one picture")


def sample_results(
    predictor: Predictor,
    picked: range,
    data_dir: Path | None,
    save_preprocessed: str | None,
    top_k: int,
    thresholds: tuple[float, float],
) -> list[Classified]:
    """The test-set images ``picked`` classified, each with its true label and, with
    ``save_preprocessed``, where its 28x28 PNG was saved or why not. Raises as
    :func:`edgefmnist.data.load_test_split` and :func:`~edgefmnist.runtime.infer.save_test_images` do."""
    from edgefmnist.data import inputs_of_test_split, load_test_split
    from edgefmnist.runtime.infer import classify_arrays, save_test_images

    test = load_test_split(data_dir)  # SHA-256 verified: spec.TEST_SIZE images
    outcomes = (
        save_test_images(save_preprocessed, test.images, picked, predictor.path, inputs_of_test_split(data_dir))
        if save_preprocessed is not None
        else [("", "")] * len(picked)
    )
    results = classify_arrays(
        predictor,
        test.images[picked.start : picked.stop],
        [f"test[{i}]" for i in picked],
        top_k,
        thresholds[0],
        min_typicality=thresholds[1],
    )
    for result, i, (saved, why_not) in zip(results, picked, outcomes, strict=True):
        result.true_label = predictor.class_names[test.labels[i]]
        result.saved, result.not_saved = saved, why_not
    return results


def report_saved(saved: list[str], target: str) -> None:
    """Where ``--save-preprocessed TARGET`` put the ``saved`` 28x28 PNGs, on stderr (the JSON names each)."""
    where = (
        f"preprocessed 28x28 PNG saved as {saved[0]}"
        if len(saved) == 1
        else f"{len(saved):,} preprocessed 28x28 PNGs saved in {target}"
    )
    echo_unless_gone(printable(f"edgefmnist: {where}"), err=True)


def report_result(result: Classified, line: bool = True) -> None:
    """``result``'s line on stdout (with ``line``), then its warning and errors on stderr."""
    if line and not result.error:
        echo_unless_gone(printable(result.line()))
    if result.warning:
        echo_unless_gone(printable(f"edgefmnist: warning: {result.image}: {result.warning}"), err=True)
    for problem in (result.not_saved, result.error):
        if problem:
            echo_unless_gone(printable(f"edgefmnist: error: {problem}"), err=True)
