"""Rendering dataset images as photos, and the photo views training uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgefmnist.photo_dataset import STRIDE, photo_subset, photo_views, render_and_preprocess
from edgefmnist.photo_render import Lighting, render_photo
from edgefmnist.train import augment_batch


def test_a_seed_gives_the_same_photo(fashion) -> None:
    image = fashion.test.images[0]
    first = np.asarray(render_photo(image, np.random.default_rng(7)))
    again = np.asarray(render_photo(image, np.random.default_rng(7)))
    other = np.asarray(render_photo(image, np.random.default_rng(8)))
    assert first.ndim == 3 and first.shape[2] == 3 and min(first.shape[:2]) >= 28 * 3
    np.testing.assert_array_equal(first, again)
    assert first.shape != other.shape or not np.array_equal(first, other)


def test_lighting_field() -> None:
    even = Lighting().field(40, 40)
    np.testing.assert_allclose(even, 1.0)
    assert Lighting(exposure=0.5).field(40, 40).mean() == pytest.approx(0.5)
    vignetted = Lighting(vignetting=0.4).field(40, 40)[..., 0]
    assert vignetted[0, 0] < 0.7 and vignetted[20, 20] == pytest.approx(1.0, abs=0.01)
    shadowed = Lighting(shadow=0.5, shadow_angle=0.0, shadow_start=0.3).field(40, 40)[..., 0]
    assert shadowed[:, -1].mean() < 0.6 and shadowed[:, 0].mean() > 0.99
    cast = Lighting(cast=(1.0, 1.0, 0.5)).field(4, 4)
    assert cast[..., 2].max() == pytest.approx(0.5)


def test_photo_views_are_deterministic_and_cached(fashion, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    images = fashion.train.images[:6]
    direct = render_and_preprocess(images, seed=0, first_index=0)
    assert direct.shape == (6, 28, 28) and direct.dtype == np.uint8 and direct.any()
    built = photo_views(images, seed=0, workers=1)
    np.testing.assert_array_equal(built, direct)
    cached = list((tmp_path / "edgefmnist").glob("photo-renders-*.npy"))
    assert len(cached) == 1
    np.testing.assert_array_equal(np.load(cached[0]), direct)
    np.testing.assert_array_equal(photo_views(images, seed=0, workers=1), direct)  # from the cache


def test_photo_subset() -> None:
    picked = photo_subset(55_000)
    assert len(picked) == 55_000 // STRIDE and picked[1] - picked[0] == STRIDE


def test_per_image_shift_moves_each_image_on_its_own() -> None:
    generator = torch.Generator().manual_seed(0)
    batch = torch.zeros(64, 1, 28, 28)
    batch[:, 0, 14, 14] = 1.0  # one bright pixel in the middle of each image
    shifted = augment_batch(batch, generator, per_image=True)
    positions = {tuple(torch.nonzero(image[0])[0].tolist()) for image in shifted}
    assert all(abs(r - 14) <= 2 and abs(c - 13.5) <= 2.5 for r, c in positions)  # a flip moves column 14 to 13
    assert len(positions) > 5  # a single shift for the batch would give one position (two with flips)
    assert torch.equal(shifted.sum(dim=(1, 2, 3)), torch.ones(64))
