"""The ``edgefmnist`` command line: one command per verb.

    edgefmnist data
    edgefmnist train --arch mlp --recipe best
    edgefmnist export runs/mlp-best.pt --quantize static
    edgefmnist verify runs/mlp-best.int8.onnx --checkpoint runs/mlp-best.pt

torch and onnx are imported inside the commands that need them, so the runtime commands
work on a board where only numpy, onnxruntime, pillow and typer are installed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import traceback
import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import click
import click.exceptions
import typer
from click.core import ParameterSource
from click.exceptions import ClickException, NoArgsIsHelpError  # typer < 0.25 runs on click

import edgefmnist
from edgefmnist import contract, spec
from edgefmnist.cli_checks import (
    need_training_extra,
    oversubscription_warning,
    warn_if_oversubscribed,
)
from edgefmnist.cli_evaluate import evaluate_photos, evaluate_test_set
from edgefmnist.cli_infer import classify_and_report
from edgefmnist.cli_params import (
    check_token,
    extra_argument_hint,
    must_be_a_model_file,
    must_be_an_address,
    must_be_finite,
    must_exist,
    parse_batches,
    refuse_misread_paths,
)
from edgefmnist.console import (
    STDOUT_CLOSED,
    echo_unless_gone,
    lost_stdout,
    print_json,
    reporting_written,
    say,
    show_progress,
    stdout_write_failed,
    write_stdout,
)
from edgefmnist.contract import Arch
from edgefmnist.errors import (
    EdgeFmnistError,
    Terminated,
    UsageError,
    ValidationFailed,
    WriteFailed,
    first_line,
    printable,
)
from edgefmnist.launch import INTERRUPTED, TERMINATED, interrupted_import
from edgefmnist.recipes import RecipeName, current_name

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # click 8.4 and later suggest the closest command themselves (NoSuchCommand); Typer would add it a second time
    suggest_commands=not hasattr(click.exceptions, "NoSuchCommand"),
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="""Fashion-MNIST from PyTorch training to a torch-free ONNX runtime on an edge board.

    Examples:

    \b
      edgefmnist infer --image shirt.jpg
      edgefmnist infer --image 'photos/*.jpg' --json
      edgefmnist evaluate --photos ../shared/photos-dev --split report
      edgefmnist serve --port 8000

    `edgefmnist COMMAND --help` says more, with examples of each command.
    """,
)


class Quantize(str, Enum):
    none = "none"
    dynamic = "dynamic"
    static = "static"


DATA_ELSEWHERE = "$EDGEFMNIST_DATA, the cache, the Debian package, or a download"


def data_dir_option(files: str, scope: str = "") -> typer.models.OptionInfo:
    """The ``--data-dir`` option of a command that reads ``files`` of the data set; ``scope`` starts
    its help (``"With --sample: "``)."""
    return typer.Option(
        "--data-dir",
        help=scoped(scope, f"folder with {files} (else {DATA_ELSEWHERE})."),
        callback=must_exist,
        file_okay=False,
        readable=False,
    )


def scoped(scope: str, text: str) -> str:
    """A help text: ``scope`` (e.g. "With --photos: ") then ``text``, or ``text`` with a capital."""
    return f"{scope}{text}" if scope else text[:1].upper() + text[1:]


TEST_FILES = "the test set's two t10k IDX files, or all four"
DataDirOption = Annotated[Path | None, data_dir_option("the four IDX files")]
TestDataDirOption = Annotated[Path | None, data_dir_option(TEST_FILES)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]


def file_option(text: str) -> Any:
    """An option naming an existing file (not a folder), checked by :func:`must_exist` before the work."""
    return typer.Option(help=text, callback=must_exist, dir_okay=False, readable=False)


ShippedModelOption = Annotated[Path | None, file_option("An exported .onnx model [default: the shipped model].")]


MIN_CONFIDENCE_HELP = "say unsure unless the top probability is above this (0: never for this reason, 1: always)."
MIN_TYPICALITY_HELP = (
    "say unsure when fewer than this share of the model's validation images of the predicted "
    "class have a lower largest logit (0: never for this reason)."
)


def unsure_threshold_option(flag: str, text: str, scope: str = "") -> Any:
    """A finite 0-1 threshold option of the unsure verdict; ``scope`` starts its help (e.g. "With --photos: ")."""
    return typer.Option(flag, min=0.0, max=1.0, callback=must_be_finite, help=scoped(scope, text))


TopKOption = Annotated[
    int, typer.Option("--top-k", min=1, max=spec.NUM_CLASSES, help="How many classes to show per picture.")
]


def count_option(text: str) -> Any:
    """An option counting threads or workers: 1 to :data:`~edgefmnist.contract.MAX_THREADS`."""
    return typer.Option(min=1, max=contract.MAX_THREADS, help=text)


MinConfidenceOption = Annotated[float, unsure_threshold_option("--min-confidence", MIN_CONFIDENCE_HELP)]
MinTypicalityOption = Annotated[float, unsure_threshold_option("--min-typicality", MIN_TYPICALITY_HELP)]
PHOTOS_ONLY = "With --photos: "


def show_version(value: bool) -> None:
    if value:
        write_stdout(f"edgefmnist {edgefmnist.__version__}")
        raise typer.Exit()


@app.callback()
def options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Fashion-MNIST from PyTorch training to a torch-free ONNX runtime on an edge board."""


@app.command()
def data(
    data_dir: DataDirOption = None,
    download: Annotated[
        bool,
        typer.Option(
            "--download",
            help=(
                "Download into the cache (~/.cache/edgefmnist) unless the data is already found "
                "(without it, nothing is downloaded); $EDGEFMNIST_MIRROR overrides the address."
            ),
        ),
    ] = False,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="Download again into the cache, replacing the files there (implies --download)."
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Find the Fashion-MNIST files, verify their SHA-256, and say where they came from.

    Only --download fetches them; the other commands download them when they are found nowhere.

    Examples:

    \b
      edgefmnist data --data-dir /usr/share/datasets/fashion-mnist
      edgefmnist data --download --json
    """
    from edgefmnist.data import (
        ENV_DATA_DIR,
        already_present,
        default_cache_dir,
        download_data,
        download_found_nowhere,
        load_fashion_mnist,
    )

    download = download or replace
    present = already_present(data_dir) if download and not replace else None
    downloaded = download and present is None
    if downloaded:
        searched_everywhere = not (replace or data_dir or os.environ.get(ENV_DATA_DIR))
        if searched_everywhere:
            data_dir = download_found_nowhere()
        else:
            data_dir = download_data(default_cache_dir(), replace=replace)
    dataset = load_fashion_mnist(data_dir, download=False)  # downloaded above, or only looked for
    report = {
        "folder": str(dataset.source.folder),
        "origin": "download" if downloaded else dataset.source.origin,
        "downloaded": downloaded,
        "verified": True,
        "train": len(dataset.train),
        "validation": len(dataset.validation),
        "test": len(dataset.test),
        "sha256": dataset.sha256,
    }
    if json_output:
        print_json(report)
        return
    if present is not None:
        write_stdout("Already present, nothing downloaded (--replace downloads a fresh copy into the cache).")
    say(f"Fashion-MNIST in {report['folder']} ({report['origin']}): SHA-256 verified")
    write_stdout(
        f"  train {report['train']:,} · validation {report['validation']:,} (first 5,000 training images)"
        f" · test {report['test']:,}"
    )


@app.command()
def train(
    arch: Annotated[Arch, typer.Option(help="Network: the tutorial MLP or the small CNN.")] = Arch.mlp,
    recipe: Annotated[
        RecipeName,
        typer.Option(
            help=(
                "tutorial: the Keras tutorial's; best: the tuned recipe; photo: best, partly on the dataset "
                "rendered as photos and preprocessed as infer does (seed: the tutorial's former name)."
            )
        ),
    ] = RecipeName.best,
    epochs: Annotated[int | None, typer.Option(min=1, help="Override the recipe's epoch count.")] = None,
    patience: Annotated[
        int | None, typer.Option(min=0, help="Stop after N epochs without a better validation accuracy (0: never).")
    ] = None,
    seed: Annotated[
        int, typer.Option(min=0, max=contract.MAX_SEED, help="Random seed (weights, shuffling, augmentation).")
    ] = 0,
    data_dir: DataDirOption = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Checkpoint path [default: runs/ARCH-RECIPE.pt].", dir_okay=False, readable=False),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="One batch of each phase (train, validation, test), one epoch; writes nothing."),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Train on the real Fashion-MNIST; keep the best epoch by validation accuracy.

    Writes the checkpoint, its history (.history.json) and learning curves (.curves.png).
    --dry-run checks that the recipe, the data and the loop work, in seconds, and writes nothing.

    Examples:

    \b
      edgefmnist train --arch mlp --recipe tutorial
      edgefmnist train --arch cnn --recipe best --out runs/cnn.pt
      edgefmnist train --arch cnn --recipe photo --dry-run
    """
    need_training_extra()
    from edgefmnist.training_run import run_training

    recipe, deprecation = current_name(recipe)
    if deprecation is not None:
        typer.echo(f"edgefmnist: warning: {deprecation}", err=True)
    report = run_training(
        arch.value,
        recipe.value,
        epochs=epochs,
        patience=patience,
        seed=seed,
        data_dir=data_dir,
        out=out,
        dry_run=dry_run,
    )
    if dry_run:
        if json_output:
            print_json(report)
            return
        write_stdout(
            f"{arch.value}/{recipe.value}: dry run passed, one batch of each phase "
            f"({', '.join(f'{name} {count}' for name, count in report['images'].items())} images); nothing written"
        )
        return
    with reporting_written([report["checkpoint"], report["history"], report["curves"]]):
        if json_output:
            print_json(report)
            return
        metrics = report["metrics"]
        write_stdout(
            f"{arch.value}/{recipe.value}: test accuracy {100 * metrics['test_accuracy']:.2f} % "
            f"(validation {100 * metrics['val_accuracy']:.2f} %, "
            f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']}, "
            f"{metrics['train_seconds']:.0f} s)"
        )
        say(f"  checkpoint {report['checkpoint']}")
        say(f"  history    {report['history']}")
        say(f"  curves     {report['curves']}")


@app.command()
def export(
    checkpoint: Annotated[
        Path,
        typer.Argument(
            help="A checkpoint written by `edgefmnist train`.", callback=must_exist, dir_okay=False, readable=False
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            help="fp32 model path [default: the checkpoint's name with .onnx].", dir_okay=False, readable=False
        ),
    ] = None,
    quantize: Annotated[
        Quantize, typer.Option(help="Also write NAME.int8.onnx: dynamic (int8 weights) or static (QDQ, calibrated).")
    ] = Quantize.none,
    opset: Annotated[
        int,
        typer.Option(
            min=contract.MIN_OPSET,
            max=contract.MAX_OPSET,
            help=f"ONNX opset ({contract.DEFAULT_OPSET} and older load on onnxruntime {contract.OLDEST_TESTED_ORT[0]}."
            f"{contract.OLDEST_TESTED_ORT[1]} and later).",
        ),
    ] = contract.DEFAULT_OPSET,
    atol: Annotated[
        float,
        typer.Option(
            min=0.0, callback=must_be_finite, help="Largest |logit difference| allowed between fp32 ONNX and PyTorch."
        ),
    ] = contract.FP32_ATOL,
    data_dir: DataDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Export a checkpoint to ONNX (and int8), validated on the full test set before it lands.

    Fails (exit 3, nothing replaced) when fp32 differs from PyTorch by more than --atol or
    disagrees on any image, or when int8 loses more accuracy or agrees on fewer images than
    the limits of `edgefmnist.contract` (README, "Export"); --json then prints the report of
    each model checked, the failed one last, with "written": false.

    Each model's probabilities are calibrated: softmax(logits / T), T fitted on the
    5,000 validation images (temperature scaling), recorded with ECE before and after.

    Examples:

    \b
      edgefmnist export runs/mlp-best.pt --quantize static
      edgefmnist export runs/cnn-best.pt --json
    """
    need_training_extra()
    from edgefmnist.export.pipeline import export_checkpoint

    try:
        results = export_checkpoint(checkpoint, out, quantize.value, opset, atol, data_dir, progress=show_progress)
    except ValidationFailed as failure:
        if json_output:  # each model's report, the failed one last, as verify --json prints one
            print_json(failure.reports)
        raise
    with reporting_written([result.path for result in results]):
        if json_output:
            print_json([result.to_dict() for result in results])
            return
        for result in results:
            say(f"{result.path} ({result.dtype}, {result.size_bytes / 1024:.0f} KiB)")
            say(f"  {result.parity.summary()}")
            say(f"  {result.calibration.summary()}")


@app.command()
def verify(
    model: Annotated[
        Path, typer.Argument(help="An exported .onnx model.", callback=must_exist, dir_okay=False, readable=False)
    ],
    checkpoint: Annotated[Path | None, file_option("The PyTorch checkpoint to compare with (needs torch).")] = None,
    atol: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            callback=must_be_finite,
            help=f"With --checkpoint: largest |logit difference| for an fp32 model [default: {contract.FP32_ATOL}].",
        ),
    ] = None,
    data_dir: TestDataDirOption = None,
    json_output: JsonOption = False,
) -> None:
    """Check a model on the real test set; exit 0 only when it passes.

    With --checkpoint: the parity report of the model against the checkpoint (PyTorch vs ONNX, an
    int8 model too, which export also compares with its fp32 model). Without (on a board, no
    torch): the measured test accuracy must match the one recorded in the model.

    Examples:

    \b
      edgefmnist verify runs/mlp-best.int8.onnx --checkpoint runs/mlp-best.pt
      edgefmnist verify models/mlp.onnx --json
    """
    from edgefmnist.verdict import Verdict

    result: Verdict
    if checkpoint is None and atol is not None:
        raise UsageError("--atol applies only with --checkpoint (a board-side verify compares accuracies)")
    if checkpoint is None:
        from edgefmnist.runtime.verify import check_recorded_accuracy

        result = check_recorded_accuracy(model, data_dir)
    else:
        from edgefmnist.runtime.metadata import read_metadata

        if atol is not None and read_metadata(model).dtype is not contract.Dtype.fp32:
            raise UsageError(
                f"--atol applies to an fp32 model; {model.name} is int8, held to its top-1 agreement and "
                "accuracy against the checkpoint"
            )
        need_training_extra()
        from edgefmnist.export.pipeline import verify_against_checkpoint

        result = verify_against_checkpoint(model, checkpoint, contract.FP32_ATOL if atol is None else atol, data_dir)
    if json_output:
        paths = {"model": str(model), **({"checkpoint": str(checkpoint)} if checkpoint else {})}
        print_json({**paths, **result.to_dict()})
    else:
        say(result.summary())
    result.raise_if_failed(str(model), summary_shown=True)  # on stdout above: the error line names the failures


@app.command()
def infer(
    image: Annotated[
        list[str] | None,
        typer.Option(
            "--image",
            help="A picture, a folder of pictures, a glob pattern, or - for a picture on standard input "
            "(./- for a file called -; repeatable).",
        ),
    ] = None,
    sample: Annotated[
        str | None,
        typer.Option(
            help="Classify test-set images by index: START:STOP (0:5, :5, 9990:) or one INDEX (7), with the true class."
        ),
    ] = None,
    model: ShippedModelOption = None,
    top_k: TopKOption = contract.DEFAULT_TOP_K,
    threads: Annotated[
        int | None,
        count_option(f"onnxruntime intra-op threads [default: cores, at most {contract.MAX_DEFAULT_THREADS}]."),
    ] = None,
    save_preprocessed: Annotated[
        str | None,
        typer.Option(
            help=(
                "Save the 28x28 image the model sees, as PNG: the file TARGET for one picture (.png or no extension); "
                "a folder when it ends with /, exists as a folder, or several pictures are given and it has no "
                "extension such as .jpg (names never collide)."
            )
        ),
    ] = None,
    workers: Annotated[
        int | None,
        count_option(
            "Pictures preprocessed in parallel "
            "[default: the available cores when a picture takes 2 ms or more, else 1]."
        ),
    ] = None,
    min_confidence: MinConfidenceOption = spec.DEFAULT_MIN_CONFIDENCE,
    min_typicality: MinTypicalityOption = spec.DEFAULT_MIN_TYPICALITY,
    data_dir: Annotated[Path | None, data_dir_option(TEST_FILES, "With --sample: ")] = None,
    json_output: JsonOption = False,
) -> None:
    """Classify pictures of clothing (torch-free): any size, format, background.

    The verdict is "unsure" when the top probability is not above --min-confidence, when the
    picture is less typical than --min-typicality, or when no object was found:
    `hat.jpg: unsure (T-shirt/top 0.38, Bag 0.21)` (--top-k 2); JSON gets "unsure": true,
    "unsure_reasons" (the rules that fired: no_object, low_confidence, atypical; only when
    unsure), the typicality, and keeps the best guess.
    Unsure is an answer (exit 0). Exit code 1 when any image could not be classified or its
    --save-preprocessed image not written (the others are still printed and saved); 130 after
    Ctrl-C, 143 after SIGTERM.

    Examples:

    \b
      edgefmnist infer --image shirt.jpg
      edgefmnist infer --image 'photos/*.jpg' --top-k 2 --json
      edgefmnist infer --image photos/ --save-preprocessed seen/
      rpicam-still -o - | edgefmnist infer --image -
      edgefmnist infer --image hat.jpg --min-confidence 0.7
      edgefmnist infer --image hat.jpg --min-typicality 0.02
      edgefmnist infer --sample 0:5 --model models/mlp.int8.onnx
    """
    classify_and_report(
        image,
        sample,
        model,
        top_k,
        threads,
        save_preprocessed,
        workers,
        (min_confidence, min_typicality),
        data_dir,
        json_output,
    )


class PhotoSplit(str, Enum):
    choice = "choice"
    report = "report"
    all = "all"


@app.command()
def evaluate(
    model: Annotated[
        Path | None,
        typer.Argument(
            help="An .onnx model or a .pt checkpoint [default: the shipped model].",
            callback=must_be_a_model_file,
            readable=False,
        ),
    ] = None,
    model_option: Annotated[
        Path | None,
        typer.Option(
            "--model", help="The model, as an option (same as MODEL).", callback=must_be_a_model_file, readable=False
        ),
    ] = None,
    photos: Annotated[
        Path | None,
        typer.Option(
            "--photos",
            help="Evaluate on real photos instead: DIR/labels.csv or one sub-folder per class.",
            callback=must_exist,
            file_okay=False,
            readable=False,
        ),
    ] = None,
    split: Annotated[
        PhotoSplit | None,
        typer.Option(
            help=(
                "With --photos: the photos whose file-name hash puts them in this half "
                "(choice: for choosing, report: for reporting) [default: all]."
            )
        ),
    ] = None,
    min_confidence: Annotated[
        float, unsure_threshold_option("--min-confidence", MIN_CONFIDENCE_HELP, PHOTOS_ONLY)
    ] = spec.DEFAULT_MIN_CONFIDENCE,
    min_typicality: Annotated[
        float, unsure_threshold_option("--min-typicality", MIN_TYPICALITY_HELP, PHOTOS_ONLY)
    ] = spec.DEFAULT_MIN_TYPICALITY,
    sweep: Annotated[
        bool,
        typer.Option(
            "--sweep",
            help="With --photos: list min-confidence 0.30-0.95 (at --min-typicality) and name the smallest "
            "that meets the targets.",
        ),
    ] = False,
    sweep_typicality: Annotated[
        bool,
        typer.Option(
            "--sweep-typicality",
            help="With --photos: the same over min-typicality 0-0.05 (at --min-confidence).",
        ),
    ] = False,
    choose: Annotated[
        bool,
        typer.Option(
            "--choose",
            help="With --photos: pick min-confidence and min-typicality over both sweeps' grids by the rule the "
            "defaults were chosen by: the least shortfall from the coverage and hat targets, then the most "
            "answers right (--min-confidence and --min-typicality still set the report).",
        ),
    ] = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Write the confusion matrix as a PNG heat map (with --photos: plus accuracy vs coverage); "
            "needs matplotlib.",
            dir_okay=False,
            readable=False,
        ),
    ] = None,
    threads: Annotated[int | None, count_option("onnxruntime intra-op threads.")] = None,
    data_dir: Annotated[Path | None, data_dir_option(TEST_FILES, "Without --photos: ")] = None,
    json_output: JsonOption = False,
) -> None:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix on the real test set,
    or (--photos DIR) on real photos.

    An ONNX model needs only the runtime; a .pt checkpoint needs PyTorch.

    With --photos: in-domain accuracy (forced answer), recall and unsure rate per source
    class, the confusion with an unsure column, and at --min-confidence and --min-typicality the
    coverage, the accuracy on answered photos and the unsure rate on out-of-domain photos (e.g. hats).
    Choose on --split choice, report on --split report. Unreadable photos are counted.

    Examples:

    \b
      edgefmnist evaluate models/mlp.int8.onnx --plot confusion.png
      edgefmnist evaluate models/cnn.pt --json
      edgefmnist evaluate --photos ../shared/photos-dev --split report --plot photos.png
      edgefmnist evaluate --photos ../shared/photos-dev --split choice --sweep
      edgefmnist evaluate --photos ../shared/photos-dev --split choice --sweep-typicality
      edgefmnist evaluate --photos ../shared/photos-dev --split choice --choose
    """
    if model is not None and model_option is not None:
        raise UsageError("give the model once: as MODEL or as --model")
    model = model or model_option
    if sweep and sweep_typicality:
        raise UsageError("give only one of --sweep and --sweep-typicality")
    varied = "confidence" if sweep else "typicality" if sweep_typicality else None
    if photos is not None:
        if data_dir is not None:
            raise UsageError("--data-dir is for the test set; --photos reads only its photo set")
        thresholds = (min_confidence, min_typicality)
        chosen_split = (split or PhotoSplit.all).value
        evaluate_photos(photos, model, chosen_split, thresholds, varied, choose, plot, threads, json_output)
        return
    photo_only = {
        "--sweep": sweep,
        "--choose": choose,
        "--sweep-typicality": sweep_typicality,
        "--split": split is not None,
        "--min-confidence": min_confidence != spec.DEFAULT_MIN_CONFIDENCE,
        "--min-typicality": min_typicality != spec.DEFAULT_MIN_TYPICALITY,
    }
    for flag, given in photo_only.items():
        if given:
            raise UsageError(f"{flag} needs --photos DIR (the test set is scored by its forced answers)")
    evaluate_test_set(model, plot, threads, data_dir, json_output)


@app.command()
def bench(
    models: Annotated[
        list[Path] | None,
        typer.Argument(
            help="ONNX models and/or .pt checkpoints [default: every shipped model].",
            callback=must_exist,
            dir_okay=False,
            readable=False,
        ),
    ] = None,
    batch: Annotated[
        str, typer.Option(help=f"Batch sizes for throughput, comma-separated (at most {contract.MAX_BENCH_BATCH:,}).")
    ] = ",".join(map(str, contract.BENCH_BATCHES)),
    threads: Annotated[int, count_option("Intra-op threads for every engine.")] = 1,
    runs: Annotated[int, typer.Option(min=10, help="Timed batch-1 calls per row.")] = contract.BENCH_RUNS,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed calls before timing.")] = contract.BENCH_WARMUP,
    reference: Annotated[
        list[Path] | None,
        file_option(
            "An earlier model file run plainly beside the model of its architecture and precision (repeatable)."
        ),
    ] = None,
    photos: Annotated[
        bool,
        typer.Option(
            "--photos", help="Also pictures/s of infer on 28x28 PNGs and 12 MP JPEGs: 1 worker, all, default."
        ),
    ] = False,
    data_dir: TestDataDirOption = None,
    json_output: JsonOption = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the table as Markdown (for a README).")] = False,
) -> None:
    """Accuracy and speed of every model variant side by side, against plain onnxruntime.

    Rows: each ONNX model through edgefmnist's predictor and through plain
    InferenceSession.run; each .pt checkpoint through PyTorch (when installed). Columns:
    size, test accuracy, batch-1 latency p50/p90/p99, throughput per batch size, cold start
    and peak memory of a fresh process, and ratios against plain onnxruntime, the --reference
    file and (int8) the fp32 model. The models of one network take turns in the same timing
    blocks; each ratio is the median of the blocks' ratios. Ends with the CPU, its int8
    instructions and a recommendation.

    Examples:

    \b
      edgefmnist bench
      edgefmnist bench models/mlp.onnx models/mlp.int8.onnx --threads 4 --markdown
      edgefmnist bench --batch 1,64 --runs 500 --json > bench.json
      edgefmnist bench --reference benchmarks/mlp.int8.previous.onnx --photos
    """
    import importlib.util

    from edgefmnist.data import load_test_split
    from edgefmnist.runtime.bench import (
        BenchSettings,
        check_names,
        check_references,
        format_table,
        run_bench,
        shipped_models,
        to_json,
    )
    from edgefmnist.runtime.picture_files import each_file_once

    if json_output and markdown:
        raise UsageError("--json and --markdown exclude each other: choose one output format")
    settings = BenchSettings(batches=parse_batches(batch), threads=threads, runs=runs, warmup=warmup)
    torch_available = importlib.util.find_spec("torch") is not None
    benched = each_file_once(models) if models else shipped_models(torch_available)  # a symlink's file once
    check_names([*benched, *(reference or [])])
    references = check_references(benched, reference or [])  # before the data is loaded
    report = run_bench(
        benched,
        load_test_split(data_dir),
        settings,
        torch_available,
        progress=show_progress,
        references=references,
        photos=photos,
    )
    warn_if_oversubscribed(threads)
    echo_unless_gone(to_json(report) if json_output else format_table(report, markdown=markdown))


@app.command()
def serve(
    model: ShippedModelOption = None,
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on; 0.0.0.0 exposes the service on the network.", callback=must_be_an_address
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free port).")] = 8000,
    threads: Annotated[
        int | None,
        count_option(
            f"Worker threads classifying in parallel [default: cores, at most {contract.MAX_DEFAULT_THREADS}]."
        ),
    ] = None,
    queue: Annotated[
        int, typer.Option(min=0, help="Requests admitted beyond busy workers; then 503.")
    ] = contract.SERVE_QUEUE,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="EDGEFMNIST_TOKEN",
            help="Require 'Authorization: Bearer TOKEN' on /v1/* and /metrics (better from the environment: "
            "a command line shows in ps).",
        ),
    ] = None,
    max_body_mb: Annotated[
        float,
        typer.Option(
            "--max-body-mb",
            min=0.001,
            max=contract.MAX_BODY_MB,
            callback=must_be_finite,
            help="Request body limit, MiB.",
        ),
    ] = contract.SERVE_BODY_MB,
    upload_timeout: Annotated[
        float,
        typer.Option(
            min=0.1,
            callback=must_be_finite,
            help="Seconds a client has to send a request's headers (else the connection is closed), "
            "then its whole body (else 408).",
        ),
    ] = contract.SERVE_UPLOAD_SECONDS,
    top_k: TopKOption = contract.DEFAULT_TOP_K,
    min_confidence: MinConfidenceOption = spec.DEFAULT_MIN_CONFIDENCE,
    min_typicality: MinTypicalityOption = spec.DEFAULT_MIN_TYPICALITY,
) -> None:
    """Serve the model over HTTP: a JSON API, Prometheus metrics and a page for a phone at /.

    Needs the serve extra: pip install 'edgefmnist[serve]'. Stops on SIGTERM or Ctrl-C after
    answering every request already received (exit 0).

    Examples:

    \b
      edgefmnist serve
      export EDGEFMNIST_TOKEN="$(cat ~/.edgefmnist-token)"
      edgefmnist serve --host 0.0.0.0
      curl -F file=@shirt.jpg http://127.0.0.1:8000/v1/classify
    """
    from_flag = click.get_current_context().get_parameter_source("token") is ParameterSource.COMMANDLINE
    check_token(token if from_flag else None, None if from_flag else os.environ.get("EDGEFMNIST_TOKEN"))
    try:
        from edgefmnist.runtime.serve_gate import ServeSettings
        from edgefmnist.runtime.server import serve as run_server
    except ImportError as exc:
        raise EdgeFmnistError(
            f"serve needs the serve extra ({exc.name} is missing): pip install 'edgefmnist[serve]'"
        ) from None
    from edgefmnist.runtime.predictor import Predictor, default_model_path, default_threads

    workers = threads or default_threads()
    settings = ServeSettings(
        threads=workers,
        queue=queue,
        max_body=round(max_body_mb * 1024 * 1024),
        upload_seconds=upload_timeout,
        token=token,
        top_k=top_k,
        min_confidence=min_confidence,
        min_typicality=min_typicality,
    )
    warnings = [warning] if (warning := oversubscription_warning(threads)) else []
    run_server(Predictor(model or default_model_path(), threads=1), settings, host, port, warnings=warnings)


def silence_pillow_user_warnings() -> None:
    """Drop Pillow's ``UserWarning``s (a corrupt EXIF block, a truncated tag) for this process.

    They describe metadata the picture is classified without, and would break the one-line
    stderr. Set once by the command line, the host application; the library never touches the
    process-wide warning filters.
    """
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL(\.|$)")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: every error becomes one line on stderr and a non-zero exit. A reader that
    closes the output early, as ``head`` does, is no error: ``infer`` and ``--json`` output finish
    their work (:func:`echo_unless_gone`); other output ends the command silently, with exit code 1.
    A stdout that is closed refuses every command but ``serve`` at once; one that fails on a write
    (a full disk) is one line naming standard output, and exit code 1. SIGTERM stops a command
    as Ctrl-C does (temp files removed), with exit code 143."""
    silence_pillow_user_warnings()
    terminated: list[int] = []

    def on_sigterm(number: int, frame: object) -> None:
        terminated.append(number)
        raise Terminated

    in_main_thread = threading.current_thread() is threading.main_thread()  # where handlers can be set
    previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm) if in_main_thread else None
    lost_stdout.clear()
    args = sys.argv[1:] if argv is None else argv
    try:
        if sys.stdout is None and not is_serve(args):  # even --help has nowhere to go
            raise WriteFailed(STDOUT_CLOSED)
        refuse_misread_paths(args, app)
        code = app(args=argv, prog_name="edgefmnist", standalone_mode=False)
    except NoArgsIsHelpError as exc:  # `edgefmnist` alone, or a command without its arguments: the help
        echo_unless_gone(exc.format_message())
        code = 1 if lost_stdout else exc.exit_code  # help that could not be shown: a failed write, as for --help
    except ClickException as exc:  # bad flags, missing files named on the command line (exit 2)
        typer.echo(printable(f"edgefmnist: error: {exc.format_message()}{extra_argument_hint(exc, argv)}"), err=True)
        code = exc.exit_code
    except EdgeFmnistError as exc:
        typer.echo(printable(f"edgefmnist: error: {exc}"), err=True)
        code = exc.exit_code
    except OSError as exc:  # an unexpected file-system failure: still one line
        where = f"{exc.filename}: " if exc.filename else ""
        reason = f"{where}{exc.strerror or first_line(exc)}"
        if exc.filename is None and printing_help(exc):
            reason = str(stdout_write_failed(exc))
        typer.echo(printable(f"edgefmnist: error: {reason}"), err=True)
        code = 1
    except (KeyboardInterrupt, typer.Abort):
        code = INTERRUPTED
    except ImportError as exc:  # onnxruntime, say, importing when the signal came
        if not interrupted_import(exc):
            raise
        code = INTERRUPTED
    if code == INTERRUPTED and terminated:  # typer turns a KeyboardInterrupt into exit code 130 itself
        code = TERMINATED
    if code in (INTERRUPTED, TERMINATED):
        typer.echo(f"edgefmnist: {'terminated' if code == TERMINATED else 'interrupted'}", err=True)
    code = code if isinstance(code, int) else 0
    if lost_stdout:
        typer.echo(printable(f"edgefmnist: error: {lost_stdout[0]}"), err=True)
        code = code or 1
    if in_main_thread and previous_sigterm is not None:  # None: a handler set outside Python
        signal.signal(signal.SIGTERM, previous_sigterm)
    if code in (INTERRUPTED, TERMINATED) and runs_picture_threads(args) and argv is None:  # see exit_at_once
        exit_at_once(code)
    sys.exit(code)


def exit_at_once(code: int) -> NoReturn:
    """Exit with ``code`` now (after flushing what was printed), without joining the worker
    threads, for a command stopped by Ctrl-C or SIGTERM that runs pictures on threads, run as a
    program. A thread may still be in OpenCV: ``infer`` and ``evaluate`` interrupted while their
    threads were being joined (CPython then marks a running thread as stopped, so the
    interpreter's exit does not wait for it) aborted at exit with SIGABRT, 1 time in 5; and after
    a second Ctrl-C, ``serve`` has answered 503 to what was in progress, but a classification
    still running would hold the process until it ends (seconds for a large batch), and a third
    Ctrl-C meanwhile gives the interpreter's traceback and SIGABRT. The threads only read and
    compute: every file written is the main thread's, finished or removed by then."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):  # no, a broken or a closed stream
            stream.flush()
    os._exit(code)


def printing_help(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while click printed a command's help (in the ``show_help``
    callback of its ``--help`` option), which goes to stdout; not merely with ``--help`` among the
    arguments, where it may be an option's value (``--plot --help``)."""
    return any(
        frame.f_code.co_name == "show_help" and frame.f_globals.get("__name__", "").startswith("click")
        for frame, _ in traceback.walk_tb(exc.__traceback__)
    )


def command_run(args: list[str]) -> str:
    """The command ``args`` run (``"infer"``), or "" for none or for a command's help."""
    return args[0] if args and not {"-h", "--help"} & set(args) else ""


def runs_picture_threads(args: list[str]) -> bool:
    """Whether ``args`` run ``infer``, ``evaluate`` or ``serve`` (not their help): the commands that
    preprocess pictures on worker threads."""
    return command_run(args) in ("infer", "evaluate", "serve")


def is_serve(args: list[str]) -> bool:
    """Whether ``args`` run ``serve`` (not its help), the one command that prints nothing on stdout:
    its answers go over HTTP and its log to stderr."""
    return command_run(args) == "serve"


if __name__ == "__main__":
    main()
