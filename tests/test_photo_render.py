"""Rendering dataset images as photos, and the photo views training uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgefmnist.photo_dataset import STRIDE, photo_subset, photo_views, render_and_preprocess
from edgefmnist.photo_render import PAIR_ODDS, TURNED_ODDS, Lighting, footwear_pose, render_photo
from edgefmnist.train import augment_batch


def test_a_seed_gives_the_same_photo(fashion) -> None:
    image = fashion.test.images[0]
    first = np.asarray(render_photo(image, np.random.default_rng(7)))
    again = np.asarray(render_photo(image, np.random.default_rng(7)))
    other = np.asarray(render_photo(image, np.random.default_rng(8)))
    assert first.ndim == 3 and first.shape[2] == 3 and min(first.shape[:2]) >= 28 * 3
    np.testing.assert_array_equal(first, again)
    assert first.shape != other.shape or not np.array_equal(first, other)


def first_of_class(fashion, label: int) -> np.ndarray:
    return fashion.test.images[int(np.flatnonzero(fashion.test.labels == label)[0])]


def test_a_label_other_than_footwear_changes_nothing(fashion) -> None:
    shirt = first_of_class(fashion, 6)
    plain = np.asarray(render_photo(shirt, np.random.default_rng(3)))
    np.testing.assert_array_equal(np.asarray(render_photo(shirt, np.random.default_rng(3), label=6)), plain)


def test_footwear_poses(fashion) -> None:
    import cv2

    sneaker = first_of_class(fashion, 7)
    poses = [footwear_pose(sneaker, np.random.default_rng(seed)) for seed in range(200)]
    unchanged = [pose is sneaker for pose in poses]
    assert all(pose.dtype == np.uint8 and pose.ndim == 2 and pose.shape[0] == pose.shape[1] for pose in poses)
    pairs = []
    for pose in poses:
        count, _, stats, _ = cv2.connectedComponentsWithStats((pose > 12).astype(np.uint8))
        big = stats[1:][stats[1:, cv2.CC_STAT_AREA] > 40]
        if len(big) == 2 and all(h > w for w, h in big[:, [cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT]]):
            pairs.append(pose)
    # The sneaker lies flat (wider than tall); a pair from above is two upright shoes side by side.
    rows, cols = np.nonzero(sneaker > 12)
    assert np.ptp(cols) > np.ptp(rows)
    assert abs(np.mean(unchanged) - (1 - PAIR_ODDS - TURNED_ODDS)) < 0.1
    assert 0.5 * PAIR_ODDS < len(pairs) / len(poses) <= PAIR_ODDS + 0.1
    np.testing.assert_array_equal(footwear_pose(sneaker, np.random.default_rng(5)), poses[5])


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
    labels = fashion.train.labels[:6]
    posed = photo_views(images, seed=0, workers=1, labels=labels)
    assert not np.array_equal(posed, direct)
    np.testing.assert_array_equal(posed, render_and_preprocess(images, seed=0, first_index=0, labels=labels))
    assert len(list((tmp_path / "edgefmnist").glob("photo-renders-*.npy"))) == 2  # the labels are in the key


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
