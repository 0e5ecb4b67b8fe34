"""What ``edgefmnist train`` does around the training loop: data, progress bar, artifacts.

    edgefmnist train --arch mlp --recipe best --out runs/mlp-best.pt
    edgefmnist train --arch cnn --recipe photo --dry-run     # one batch of each phase, nothing written

A dry run (as pytorch/examples' ``--dry-run``) finds and verifies the data, then runs one
epoch on one batch of each phase: one training batch (photo views built for it alone), one
evaluation batch of the validation split and one of the test split. It checks that a recipe,
the data and the training loop work together, in seconds, and writes no checkpoint, history,
curves or cached photo views (the data is downloaded to the cache when it is found nowhere, as in
any run).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edgefmnist.atomic import check_writable, refuse_overwriting, refuse_standard_stream, write_together
from edgefmnist.checkpoint import checkpoint_bytes
from edgefmnist.contract import CHECKPOINT_SUFFIX, is_checkpoint_name
from edgefmnist.data import FashionMNIST, Split, inputs_of_data, load_fashion_mnist
from edgefmnist.errors import UsageError
from edgefmnist.nets import count_multiply_adds, count_parameters
from edgefmnist.plots import learning_curves_png
from edgefmnist.recipes import get_recipe
from edgefmnist.train import EVAL_BATCH, EpochReport, batches_per_epoch, train


def artifact_paths(checkpoint: Path) -> tuple[Path, Path]:
    """The history JSON and learning-curve PNG written beside a checkpoint."""
    stem = checkpoint.with_suffix("")
    return stem.with_name(stem.name + ".history.json"), stem.with_name(stem.name + ".curves.png")


def build_photo_views(train: Split, seed: int, cache: bool = True) -> np.ndarray:
    """The photo views training uses (cached unless ``cache`` is False), with a progress bar on a terminal
    while they are built."""
    from edgefmnist.photo_dataset import photo_subset, training_photo_views

    total = len(photo_subset(len(train)))
    with tqdm(total=total, desc="photo views", unit="image", disable=None, dynamic_ncols=True) as bar:
        return training_photo_views(
            train.images, train.labels, seed, on_progress=lambda done: bar.update(done - bar.n), cache=cache
        )


def one_batch_of_each(dataset: FashionMNIST, batch_size: int) -> FashionMNIST:
    """The first ``batch_size`` training images and the first evaluation batch of validation and test."""

    def head(split: Split, count: int) -> Split:
        return Split(split.images[:count], split.labels[:count])

    return dataclasses.replace(
        dataset,
        train=head(dataset.train, batch_size),
        validation=head(dataset.validation, EVAL_BATCH),
        test=head(dataset.test, EVAL_BATCH),
    )


def run_training(
    arch: str,
    recipe_name: str,
    epochs: int | None = None,
    patience: int | None = None,
    seed: int = 0,
    data_dir: Path | None = None,
    out: Path | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Train, then write the checkpoint, history and curves; return a JSON-ready report.

    The output paths are checked for writing before the data is loaded (also in a dry run).
    With ``dry_run``: one epoch on one batch of each phase (module docstring), nothing written;
    the report's ``checkpoint``, ``history`` and ``curves`` are None. Raises ``ValueError`` for an
    unknown architecture or recipe, :class:`DataError` when the data cannot be found or verified,
    :class:`EdgeFmnistError` when an artifact's path leads to one of the data set's files (checked
    once the data is found), and :class:`WriteFailed` when an artifact cannot be written
    (:class:`UsageError` when ``out`` is a device or a FIFO, is not named ``NAME.pt`` in any case, or
    ``out`` or an artifact path is a directory).
    """
    out = out or Path("runs") / f"{arch}-{recipe_name}.pt"
    history_path, curves_path = artifact_paths(out)
    recipe = get_recipe(arch, recipe_name).with_overrides(epochs=epochs, patience=patience)
    written = {
        out: "the checkpoint (its history and curves go beside it)",
        history_path: "the history",
        curves_path: "the learning curves",
    }
    for path, what in written.items():
        refuse_standard_stream("--out", path, what)
    if not is_checkpoint_name(out):  # not a file of another kind or format, nor "-"
        raise UsageError(f"--out {out}: the checkpoint is a PyTorch file; name it NAME{CHECKPOINT_SUFFIX}")
    for path, what in written.items():
        check_writable(path, regular=what)
    dataset = load_fashion_mnist(data_dir)
    refuse_overwriting("--out", list(written), inputs_of_data(data_dir))  # a name that leads to an IDX file
    if dry_run:
        recipe = recipe.with_overrides(epochs=1)
        dataset = one_batch_of_each(dataset, recipe.batch_size)
    photo_images = build_photo_views(dataset.train, seed, cache=not dry_run) if recipe.photo_fraction else None
    bar = tqdm(
        total=recipe.epochs * batches_per_epoch(len(dataset.train), recipe.batch_size),
        desc=f"{arch}/{recipe_name}",
        unit="batch",
        disable=None,  # a bar on a terminal only
        dynamic_ncols=True,
        leave=True,
    )
    postfix: dict[str, str] = {}

    def on_batch(epoch: int, index: int, loss: float) -> None:
        bar.update(1)
        if index % 50 == 0:
            postfix.update(epoch=f"{epoch}/{recipe.epochs}", loss=f"{loss:.3f}")
            bar.set_postfix(postfix, refresh=False)

    def on_epoch(report: EpochReport) -> None:
        postfix.update(train=f"{100 * report.train_accuracy:.1f}%", val=f"{100 * report.val_accuracy:.2f}%")
        bar.set_postfix(postfix)

    try:
        checkpoint = train(
            arch, recipe, dataset, seed=seed, on_batch=on_batch, on_epoch=on_epoch, photo_images=photo_images
        )
    finally:
        bar.close()
    if not dry_run:  # the three together: a failed write (a full disk) leaves none of them new
        curves = learning_curves_png(checkpoint.history, f"{arch} · {recipe_name} recipe · seed {seed}")
        history = json.dumps(checkpoint.history, indent=2).encode()
        write_together([(out, checkpoint_bytes(checkpoint)), (history_path, history), (curves_path, curves)])
    return {
        "dry_run": dry_run,
        "arch": arch,
        "recipe": recipe.to_dict(),
        "seed": seed,
        "data": {"folder": str(dataset.source.folder), "origin": dataset.source.origin},
        "images": {"train": len(dataset.train), "validation": len(dataset.validation), "test": len(dataset.test)},
        "parameters": count_parameters(checkpoint.net),
        "multiply_adds": count_multiply_adds(checkpoint.net),
        "metrics": checkpoint.metrics,
        "checkpoint": None if dry_run else str(out),
        "history": None if dry_run else str(history_path),
        "curves": None if dry_run else str(curves_path),
    }
