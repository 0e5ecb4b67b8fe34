"""Train a network on the real Fashion-MNIST, keeping the best checkpoint by validation accuracy.

    edgefmnist train --arch mlp --recipe tutorial  # the Keras tutorial, ~88 %
    edgefmnist train --arch cnn --recipe best      # the accurate option

Data stays in memory as one float tensor (raw 0-255 pixels, the network normalises), so an
epoch is a loop over index slices with no DataLoader overhead.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edgefmnist import metrics
from edgefmnist.checkpoint import Checkpoint
from edgefmnist.contract import Arch
from edgefmnist.data import FashionMNIST, Split
from edgefmnist.nets import NetConfig, build_net
from edgefmnist.recipes import Optimizer, Recipe, Schedule

EVAL_BATCH = 2000
MAX_SHIFT = 2  # pixels, for the augmenting recipes


@dataclass(frozen=True)
class EpochReport:
    """One epoch: its number (from 1), the mean training loss (the recipe's cross-entropy, nats) and
    accuracy on the training batches as trained (augmented, dropout on), the validation accuracy
    (shares, 0-1) and its wall time in seconds."""

    epoch: int
    loss: float
    train_accuracy: float
    val_accuracy: float
    seconds: float


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, 28, 28]`` -> float ``[N, 1, 28, 28]`` of raw 0-255 pixels."""
    return torch.from_numpy(images).float().unsqueeze(1)


@torch.no_grad()
def predict_logits(net: nn.Module, images: np.ndarray) -> np.ndarray:
    """float32 logits ``[N, 10]`` of ``net`` for uint8 ``[N, 28, 28]`` images; leaves ``net`` in eval mode."""
    net.eval()
    inputs = to_tensor(images)
    return torch.cat([net(inputs[i : i + EVAL_BATCH]) for i in range(0, len(inputs), EVAL_BATCH)]).numpy()


def accuracy(net: nn.Module, split: Split) -> float:
    """``net``'s accuracy on ``split`` (a share, 0-1), in evaluation mode, on the CPU."""
    return metrics.accuracy(predict_logits(net, split.images), split.labels)


def augment_batch(batch: torch.Tensor, generator: torch.Generator, per_image: bool = False) -> torch.Tensor:
    """Random horizontal flips and shifts of up to ``MAX_SHIFT`` pixels (zero padded) of ``[N, 1, 28, 28]``.

    Each image is flipped with probability 1/2. The shift (dx, dy) is drawn once and applied to
    the whole batch, unless ``per_image``: then each image gets its own (the ``photo`` CNN recipe).
    """
    n, size = len(batch), batch.shape[-1]
    flip = torch.rand(n, generator=generator) < 0.5
    batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
    padded = nn.functional.pad(batch, (MAX_SHIFT,) * 4)
    if not per_image:
        dx, dy = torch.randint(0, 2 * MAX_SHIFT + 1, (2,), generator=generator).tolist()
        return padded[..., dy : dy + size, dx : dx + size]
    dx, dy = torch.randint(0, 2 * MAX_SHIFT + 1, (2, n), generator=generator)
    rows = (dy[:, None] + torch.arange(size))[:, :, None]
    cols = (dx[:, None] + torch.arange(size))[:, None, :]
    return padded[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)


def rotate_batch(batch: torch.Tensor, generator: torch.Generator, probability: float, degrees: float) -> torch.Tensor:
    """Float32 ``[N, 1, S, S]`` (square images, on the CPU) with each image turned, with
    probability ``probability``, about its centre.

    The angle is uniform in ±``degrees`` (degrees); pixels turned in from outside are 0 (the
    dataset's background), and the rest are sampled bilinearly
    (``torch.nn.functional.grid_sample``); an image not turned is sampled at angle 0, so it
    comes back equal up to float rounding. The arguments are checked by :class:`Recipe`; a
    negative ``degrees`` raises ``RuntimeError`` (from ``torch.Tensor.uniform_``).
    """
    n = len(batch)
    turned = torch.rand(n, generator=generator) < probability
    angles = torch.empty(n).uniform_(-degrees, degrees, generator=generator).deg2rad() * turned
    cos, sin, zero = angles.cos(), angles.sin(), torch.zeros(n)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = nn.functional.affine_grid(theta, list(batch.shape), align_corners=False)
    return nn.functional.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def batches_per_epoch(images: int, batch_size: int) -> int:
    """How many batches of ``batch_size`` cover ``images`` (the last one may be short)."""
    return -(-images // batch_size)


def make_optimizer(
    net: nn.Module, recipe: Recipe, steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    """The recipe's optimizer and, for the one-cycle schedule, its scheduler (stepped once per batch).

    The schedule applies to either optimizer. One-cycle also cycles AdamW's beta1 (PyTorch's
    default); plain SGD has no momentum to cycle, so it gets the learning-rate cycle only.
    """
    optimizer: torch.optim.Optimizer
    if recipe.optimizer is Optimizer.sgd:
        optimizer = torch.optim.SGD(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    else:
        optimizer = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.schedule is Schedule.constant:
        return optimizer, None
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe.lr, total_steps=steps, cycle_momentum=recipe.optimizer is not Optimizer.sgd
    )
    return optimizer, scheduler


@dataclass(frozen=True)
class PhotoViews:
    """Each training image's photo view (float32 ``[N, 1, 28, 28]``, the image itself where it has
    none) and the odds, float ``[N]``, that it is shown instead of the image."""

    images: torch.Tensor
    odds: torch.Tensor

    @classmethod
    def of(cls, images: torch.Tensor, with_view: np.ndarray, views: np.ndarray, fraction: float) -> PhotoViews:
        """``views`` (uint8 ``[M, 28, 28]``) in place of the ``images`` at the M indices ``with_view``
        (:func:`edgefmnist.photo_dataset.photo_subset`), each shown with odds ``fraction``."""
        shown = images.clone()
        shown[torch.from_numpy(with_view)] = to_tensor(views)
        odds = torch.zeros(len(images))
        odds[torch.from_numpy(with_view)] = fraction
        return cls(shown, odds)


def batch_inputs(
    x: torch.Tensor, picked: torch.Tensor, photos: PhotoViews | None, recipe: Recipe, generator: torch.Generator
) -> torch.Tensor:
    """The batch of training images ``picked`` (``x``, float32 ``[B, 1, 28, 28]``) as the network sees
    it: some replaced by their photo views, then shifted and flipped, then turned, as ``recipe`` says."""
    if photos is not None:
        as_photo = torch.rand(len(picked), generator=generator) < photos.odds[picked]
        x = torch.where(as_photo[:, None, None, None], photos.images[picked], x)
    if recipe.augment:
        x = augment_batch(x, generator, recipe.shift_per_image)
    if recipe.rotation_probability:
        x = rotate_batch(x, generator, recipe.rotation_probability, recipe.rotation_degrees)
    return x


def train(
    arch: str,
    recipe: Recipe,
    data: FashionMNIST,
    seed: int = 0,
    on_batch: Callable[[int, int, float], None] | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    photo_images: np.ndarray | None = None,
) -> Checkpoint:
    """Train ``arch`` with ``recipe``; return the checkpoint with the best validation accuracy.

    ``on_batch(epoch, batch_index, loss)`` and ``on_epoch(report)`` drive progress display.
    ``photo_images``: uint8 ``[M, 28, 28]``, the photo views of the training images picked by
    :func:`edgefmnist.photo_dataset.photo_subset`, used when ``recipe.photo_fraction`` > 0 (built
    if missing). A picked image is replaced by its photo view with probability ``photo_fraction``.
    ``data``'s splits are uint8 ``[N, 28, 28]`` images and uint8 ``[N]`` labels. Raises ``ValueError``
    for an unknown ``arch``.
    """
    from edgefmnist.photo_dataset import photo_subset, training_photo_views

    has_view = photo_subset(len(data.train))
    if recipe.photo_fraction and photo_images is None:
        photo_images = training_photo_views(data.train.images, data.train.labels, seed)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    mean, std = recipe.pixel_mean_std
    net_config = NetConfig(arch=Arch.parse(arch, "architecture"), mean=mean, std=std, dropout=recipe.dropout)
    net = build_net(net_config)
    images, labels = to_tensor(data.train.images), torch.from_numpy(data.train.labels).long()
    photos = (
        PhotoViews.of(images, has_view, photo_images, recipe.photo_fraction)
        if recipe.photo_fraction and photo_images is not None
        else None
    )
    steps = recipe.epochs * batches_per_epoch(len(labels), recipe.batch_size)
    optimizer, scheduler = make_optimizer(net, recipe, steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)

    best_val, best_state, best_epoch = -1.0, copy.deepcopy(net.state_dict()), 0
    history: list[dict[str, float]] = []
    for epoch in range(1, recipe.epochs + 1):
        started = time.perf_counter()
        net.train()
        order = torch.randperm(len(labels), generator=generator)
        loss_sum, correct = 0.0, 0
        for index, start in enumerate(range(0, len(order), recipe.batch_size)):
            picked = order[start : start + recipe.batch_size]
            x, y = batch_inputs(images[picked], picked, photos, recipe, generator), labels[picked]
            logits = net(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            loss_sum += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            if on_batch is not None:
                on_batch(epoch, index, loss.item())
        val_accuracy = accuracy(net, data.validation)
        report = EpochReport(
            epoch, loss_sum / len(labels), correct / len(labels), val_accuracy, time.perf_counter() - started
        )
        history.append(report.__dict__.copy())
        if on_epoch is not None:
            on_epoch(report)
        if val_accuracy > best_val:
            best_val, best_state, best_epoch = val_accuracy, copy.deepcopy(net.state_dict()), epoch
        elif recipe.patience and epoch - best_epoch >= recipe.patience:
            break

    net.load_state_dict(best_state)
    net.eval()
    summary = {
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "val_accuracy": best_val,
        "test_accuracy": accuracy(net, data.test),
        "train_seconds": sum(h["seconds"] for h in history),
    }
    return Checkpoint(
        net=net,
        net_config=net_config,
        recipe=recipe,
        data_sha256=data.sha256,
        metrics=summary,
        history=history,
        seed=seed,
    )
