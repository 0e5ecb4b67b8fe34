"""What ``edgefmnist train`` does around the training loop: data, progress bar, artifacts.

edgefmnist train --arch mlp --recipe best --out runs/mlp-best.pt
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edgefmnist.atomic import write_text_atomic
from edgefmnist.checkpoint import save_checkpoint
from edgefmnist.data import load_fashion_mnist
from edgefmnist.nets import count_multiply_adds, count_parameters
from edgefmnist.plots import save_learning_curves
from edgefmnist.recipes import get_recipe
from edgefmnist.train import EpochReport, batches_per_epoch, train


def artifact_paths(checkpoint: Path) -> tuple[Path, Path]:
    """The history JSON and learning-curve PNG written beside a checkpoint."""
    stem = checkpoint.with_suffix("")
    return stem.with_name(stem.name + ".history.json"), stem.with_name(stem.name + ".curves.png")


def build_photo_views(train_images: np.ndarray, seed: int, quiet: bool) -> np.ndarray:
    """The photo views training uses (cached), with a progress bar while they are built."""
    from edgefmnist.photo_dataset import photo_subset, photo_views

    images = train_images[photo_subset(len(train_images))]
    with tqdm(
        total=len(images), desc="photo views", unit="image", disable=True if quiet else None, dynamic_ncols=True
    ) as bar:
        return photo_views(images, seed, on_progress=lambda done: bar.update(done - bar.n))


def run_training(
    arch: str,
    recipe_name: str,
    epochs: int | None = None,
    patience: int | None = None,
    seed: int = 0,
    data_dir: Path | None = None,
    out: Path | None = None,
    quiet: bool = False,
) -> dict:
    """Train, then write the checkpoint, history and curves; return a JSON-ready report."""
    out = out or Path("runs") / f"{arch}-{recipe_name}.pt"
    history_path, curves_path = artifact_paths(out)
    recipe = get_recipe(arch, recipe_name).with_overrides(epochs=epochs, patience=patience)
    dataset = load_fashion_mnist(data_dir)
    photo_images = build_photo_views(dataset.train.images, seed, quiet) if recipe.photo_fraction else None
    bar = tqdm(
        total=recipe.epochs * batches_per_epoch(len(dataset.train), recipe.batch_size),
        desc=f"{arch}/{recipe_name}",
        unit="batch",
        disable=True if quiet else None,
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
    save_checkpoint(out, checkpoint)
    write_text_atomic(history_path, json.dumps(checkpoint.history, indent=2))
    save_learning_curves(curves_path, checkpoint.history, f"{arch} · {recipe_name} recipe · seed {seed}")
    return {
        "arch": arch,
        "recipe": recipe.to_dict(),
        "seed": seed,
        "data": {"folder": str(dataset.source.folder), "origin": dataset.source.origin},
        "parameters": count_parameters(checkpoint.net),
        "multiply_adds": count_multiply_adds(checkpoint.net),
        "metrics": checkpoint.metrics,
        "checkpoint": str(out),
        "history": str(history_path),
        "curves": str(curves_path),
    }
