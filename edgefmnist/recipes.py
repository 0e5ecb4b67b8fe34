"""Training recipes: the tutorial's ``seed`` recipe, the tuned ``best`` ones and the ``photo`` ones.

A recipe is a frozen dataclass saved into every checkpoint, so a checkpoint says exactly
how it was trained. ``edgefmnist train --arch mlp --recipe best`` picks ``RECIPES[("mlp", "best")]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from edgefmnist import spec


@dataclass(frozen=True)
class Recipe:
    """How to train one network."""

    name: str
    optimizer: str  # "sgd" or "adamw"
    lr: float  # the constant rate (sgd) or the one-cycle peak (adamw)
    batch_size: int
    epochs: int
    weight_decay: float = 0.0
    schedule: str = "constant"  # "constant" or "onecycle"
    label_smoothing: float = 0.0
    dropout: float = 0.0
    standardize: bool = False  # standardise pixels with the training mean/std, else /255
    augment: bool = False  # random shifts of up to 2 pixels and horizontal flips
    shift_per_image: bool = False  # draw the augmenting shift for each image, not once per batch
    photo_fraction: float = 0.0  # share of training images replaced by their photo view (photo_dataset.py)
    patience: int = 0  # stop after this many epochs without a better validation accuracy; 0: never

    def to_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, **changes: Any) -> Recipe:
        """A copy with the given fields changed (``None`` values are ignored)."""
        kept: dict[str, Any] = {k: v for k, v in changes.items() if v is not None}
        return replace(self, **kept)

    @property
    def pixel_mean_std(self) -> tuple[float, float]:
        return (spec.PIXEL_MEAN, spec.PIXEL_STD) if self.standardize else (0.0, 1.0)


# The Keras tutorial: SGD(lr=0.01), batch 32, 30 epochs, plain sparse cross-entropy, pixels / 255.
TUTORIAL = Recipe(name="seed", optimizer="sgd", lr=0.01, batch_size=32, epochs=30)

RECIPES: dict[tuple[str, str], Recipe] = {
    ("mlp", "seed"): TUTORIAL,
    ("cnn", "seed"): TUTORIAL,
    ("mlp", "best"): Recipe(
        name="best",
        optimizer="adamw",
        lr=2e-3,
        batch_size=128,
        epochs=30,
        weight_decay=0.05,
        schedule="onecycle",
        label_smoothing=0.1,
        dropout=0.1,
        standardize=True,
    ),
    # The CNN underfits with dropout and label smoothing on top of augmentation: it goes without.
    ("cnn", "best"): Recipe(
        name="best",
        optimizer="adamw",
        lr=4e-3,
        batch_size=128,
        epochs=30,
        weight_decay=0.01,
        schedule="onecycle",
        standardize=True,
        augment=True,
    ),
    # Trained for photos: three in four of the images that have a photo view (every 4th, see
    # edgefmnist/photo_dataset.py) are shown as the runtime's preprocessing of a rendered photo
    # of them, about a fifth of all images seen; the rest are the dataset's own images.
    ("mlp", "photo"): Recipe(
        name="photo",
        optimizer="adamw",
        lr=2e-3,
        batch_size=128,
        epochs=40,
        weight_decay=0.05,
        schedule="onecycle",
        label_smoothing=0.1,
        dropout=0.1,
        standardize=True,
        photo_fraction=0.75,
    ),
    ("cnn", "photo"): Recipe(
        name="photo",
        optimizer="adamw",
        lr=4e-3,
        batch_size=128,
        epochs=40,
        weight_decay=0.01,
        schedule="onecycle",
        standardize=True,
        augment=True,
        shift_per_image=True,
        photo_fraction=0.75,
    ),
}


def get_recipe(arch: str, name: str) -> Recipe:
    try:
        return RECIPES[(arch, name)]
    except KeyError:
        raise ValueError(f"no recipe {name!r} for {arch!r}") from None
