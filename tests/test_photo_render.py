"""Rendering dataset images as photos, and the photo views training uses."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from edgefmnist import photo_dataset
from edgefmnist.photo_dataset import STRIDE, photo_subset, photo_views, render_and_preprocess
from edgefmnist.photo_render import (
    FOOTWEAR,
    PAIR_ODDS,
    PRODUCT_LEVEL,
    TURNED_ODDS,
    Lighting,
    footwear_pose,
    render_photo,
)
from edgefmnist.train import augment_batch, rotate_batch


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


def principal_angle(image: np.ndarray) -> float:
    """Degrees between the product's long axis and the horizontal, from its second moments."""
    import cv2

    moments = cv2.moments((image > PRODUCT_LEVEL).astype(np.uint8), binaryImage=True)
    return float(np.degrees(0.5 * np.arctan2(2 * moments["mu11"], moments["mu20"] - moments["mu02"])))


def test_footwear_poses(fashion) -> None:
    import cv2

    sneaker = first_of_class(fashion, 7)
    assert abs(principal_angle(sneaker)) < 10  # the dataset's side view lies flat
    poses = [footwear_pose(sneaker, np.random.default_rng(seed)) for seed in range(200)]
    draws = np.array([np.random.default_rng(seed).random() for seed in range(200)])  # the pose's first draw
    assert all(pose.dtype == np.uint8 and pose.ndim == 2 and pose.shape[0] == pose.shape[1] for pose in poses)
    upright_pairs, turned = 0, []
    for pose, draw in zip(poses, draws, strict=True):
        _, _, stats, _ = cv2.connectedComponentsWithStats((pose > PRODUCT_LEVEL).astype(np.uint8))
        parts = stats[1:][stats[1:, cv2.CC_STAT_AREA] > 40][:, [cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT]]
        if draw < PAIR_ODDS:  # two upright shoes side by side (they may touch)
            assert len(parts) in (1, 2) and all(height > width for width, height in parts)
            upright_pairs += len(parts) == 2
        elif draw < PAIR_ODDS + TURNED_ODDS:
            assert len(parts) == 1
            turn = (principal_angle(pose) - principal_angle(sneaker) + 90) % 180 - 90
            turned.append(abs(turn))
        else:
            assert pose is sneaker
    assert upright_pairs >= 0.6 * np.sum(draws < PAIR_ODDS)
    assert len(turned) > 20 and all(8 < angle < 68 for angle in turned), sorted(turned)  # turned 15-60 degrees
    np.testing.assert_array_equal(footwear_pose(sneaker, np.random.default_rng(5)), poses[5])


def test_footwear_pose_refuses_a_non_square_image_and_keeps_a_blank_one() -> None:
    with pytest.raises(ValueError, match="square"):
        footwear_pose(np.zeros((28, 20), np.uint8), np.random.default_rng(0))
    blank = np.zeros((28, 28), np.uint8)
    assert all(footwear_pose(blank, np.random.default_rng(seed)) is blank for seed in range(20))


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
    assert set(FOOTWEAR) & set(labels.tolist())  # some footwear among them
    monkeypatch.setattr(photo_dataset, "CHUNK", 2)  # several chunks, each with its own labels
    posed = photo_views(images, seed=0, workers=1, labels=labels)
    for i in range(6):
        alone = render_and_preprocess(images[i : i + 1], seed=0, first_index=i, labels=labels[i : i + 1])
        np.testing.assert_array_equal(posed[i], alone[0])
    assert len(list((tmp_path / "edgefmnist").glob("photo-renders-*.npy"))) == 2  # the labels are in the key
    with pytest.raises(ValueError, match="5 labels for 6 images"):
        photo_views(images, seed=0, workers=1, labels=labels[:5])


def test_a_bad_cache_file_is_rebuilt_over_and_a_failed_cache_write_only_warns(
    fashion, tmp_path, monkeypatch, capfd
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    images = fashion.train.images[:3]
    direct = render_and_preprocess(images, seed=0, first_index=0)
    path = photo_dataset.cache_path(images, 0)
    path.parent.mkdir(parents=True)
    huge = io.BytesIO()
    np.lib.format.write_array_header_1_0(huge, {"descr": "|u1", "fortran_order": False, "shape": (1 << 40, 28, 28)})
    archive = io.BytesIO()
    np.savez(archive, views=direct)
    for bad in (b"", b"\x93NUMPY truncated", np.lib.format.magic(1, 0) + b"\x00", huge.getvalue(), archive.getvalue()):
        path.write_bytes(bad)
        np.testing.assert_array_equal(photo_views(images, seed=0, workers=1), direct)
        np.testing.assert_array_equal(np.load(path), direct)  # the rebuild replaced it
    path.unlink()

    def full_disk(*args) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(photo_dataset, "write_bytes_atomic", full_disk)
    np.testing.assert_array_equal(photo_views(images, seed=0, workers=1), direct)
    assert not path.exists()
    assert capfd.readouterr().err == "edgefmnist: warning: photo views not cached: [Errno 28] No space left on device\n"


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


def test_rotation_turns_the_chosen_share_of_images_by_at_most_the_angle() -> None:
    generator = torch.Generator().manual_seed(0)
    batch = torch.zeros(400, 1, 28, 28)
    batch[:, 0, 4:24, 13:15] = 255.0  # a vertical bar through the centre
    turned = rotate_batch(batch, generator, probability=0.5, degrees=10)
    moved = (turned - batch).abs().amax(dim=(1, 2, 3)) > 1
    assert 0.4 < moved.float().mean() < 0.6  # about half are turned, the rest are left as they were
    torch.testing.assert_close(turned[~moved], batch[~moved], rtol=0, atol=1e-3)
    rows = torch.arange(28.0)[:, None]
    cols = torch.arange(28.0)[None, :]
    tilts = []
    for image in turned[moved]:  # the bar's tilt: the slope of its columns against its rows
        weight = image[0] / image[0].sum()
        row_mean, col_mean = (weight * rows).sum(), (weight * cols).sum()
        assert abs(float(row_mean) - 13.5) < 0.3 and abs(float(col_mean) - 13.5) < 0.3  # turned about the centre
        slope = (weight * (rows - row_mean) * (cols - col_mean)).sum() / (weight * (rows - row_mean) ** 2).sum()
        tilts.append(float(torch.rad2deg(torch.atan(slope))))
    assert max(abs(t) for t in tilts) <= 10.5
    assert min(tilts) < -8 and max(tilts) > 8  # both ways, out to nearly the largest angle
    torch.testing.assert_close(rotate_batch(batch, generator, probability=0.0, degrees=10), batch, rtol=0, atol=1e-3)
