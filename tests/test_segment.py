"""Foreground extraction and light measurement on photos: GrabCut's mask, its fallbacks, the light field."""

from __future__ import annotations

import numpy as np
from edgefmnist.runtime.segment import (
    colour_contrast_mask,
    fill_holes,
    flatten_light,
    foreground_mask,
    illumination,
    main_parts,
)
from helpers import paper_photo
from PIL import Image

from edgefmnist.photo_render import Lighting, silhouette


def tiled_floor(height: int, width: int) -> np.ndarray:
    """Beige tiles with dark grout, uint8 ``[H, W, 3]``."""
    floor = np.zeros((height, width, 3), np.uint8) + np.array([200, 180, 150], np.uint8)
    floor[::16], floor[:, ::16] = 90, 90
    return floor


def garment_on(floor: np.ndarray, image: np.ndarray, colour=(30, 60, 140)) -> tuple[np.ndarray, np.ndarray]:
    """A dataset image's filled outline painted in ``colour`` on ``floor``; returns the photo and the true mask."""
    height, width = floor.shape[:2]
    outline = np.asarray(Image.fromarray(silhouette(image).astype(np.uint8) * 255).resize((56, 56))) > 127
    truth = np.zeros((height, width), bool)
    top, left = (height - 56) // 2, (width - 56) // 2
    truth[top : top + 56, left : left + 56] = outline
    photo = floor.copy()
    photo[truth] = colour
    return photo, truth


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_garment_on_tiles_is_found(fashion) -> None:
    for index in range(5):
        photo, truth = garment_on(tiled_floor(96, 80), fashion.test.images[index])
        assert iou(foreground_mask(photo), truth) > 0.85, index


def test_garment_filling_the_frame_is_still_found(fashion) -> None:
    """A garment that spills into the seeded background band must not vanish."""
    photo, truth = garment_on(np.full((60, 60, 3), 235, np.uint8), fashion.test.images[1], colour=(240, 230, 210))
    mask = foreground_mask(photo)
    assert mask.sum() > 0.005 * mask.size


def test_a_light_garment_in_a_shadow_band_is_found_whole(fashion) -> None:
    """A shadow across the frame must not become a background colour that swallows a light garment.

    Test images printed on paper (the lighting suite's), with the band's edge crossing the
    garment; these five kept 3-15 % of their outline (IoU) when GrabCut modelled the
    colours of the unflattened picture.
    """
    shadow = Lighting(shadow=0.45, shadow_angle=0.0, shadow_start=0.3)
    for index in (6, 25, 45, 51, 164):
        image = fashion.test.images[index]
        photo = np.asarray(paper_photo(image, shadow).convert("RGB").resize((96, 96), Image.Resampling.BOX))
        truth = np.zeros((96, 96), bool)  # the print: 224 of 304 pixels, centred
        outline = Image.fromarray(silhouette(image).astype(np.uint8) * 255).resize((71, 71))
        truth[13:84, 13:84] = np.asarray(outline) > 127
        assert iou(foreground_mask(photo), truth) > 0.5, index


def test_flattening_divides_out_a_light_gradient_on_the_band() -> None:
    y, x = np.mgrid[0:60, 0:80]
    floor = np.repeat((120 + x)[..., None], 3, axis=-1).astype(np.uint8)  # brighter to the right
    flat = flatten_light(floor).astype(np.float64)
    assert flat.std() < 1.0 and floor.std() > 20


def test_a_garment_on_black_is_found(fashion) -> None:
    """A black backdrop (the band's median is 0) must not be flattened to nothing."""
    for colour in ((200, 200, 200), (90, 160, 40)):
        photo, truth = garment_on(np.zeros((96, 80, 3), np.uint8), fashion.test.images[0], colour=colour)
        assert iou(foreground_mask(photo), truth) > 0.85, colour
    assert (flatten_light(photo) == photo).all()


def test_colour_contrast_fallback_finds_the_odd_colour() -> None:
    photo = np.full((40, 40, 3), (10, 200, 10), np.uint8)
    photo[10:30, 12:28] = (200, 20, 20)
    mask = colour_contrast_mask(photo).astype(bool)
    assert mask[10:30, 12:28].all() and mask.sum() == 20 * 16


def test_specks_are_dropped_and_holes_filled() -> None:
    mask = np.zeros((30, 30), np.uint8)
    mask[5:25, 5:25] = 1
    mask[10:15, 10:15] = 0  # a hole
    mask[0, 29] = 1  # a speck
    cleaned = fill_holes(main_parts(mask))
    assert cleaned[5:25, 5:25].all() and not cleaned[0, 29]


def test_illumination_recovers_a_quadratic_light_field() -> None:
    y, x = np.mgrid[0:50, 0:60]
    light = 200 - 0.02 * (x - 30) ** 2 - 0.5 * y
    background = np.ones_like(light, bool)
    background[20:30, 20:40] = False  # an object hides part of the floor
    seen = light.copy()
    seen[~background] = 20
    np.testing.assert_allclose(illumination(seen, background), light, atol=1e-6)


def test_thin_strips_give_a_mask_not_an_opencv_error() -> None:
    """GrabCut asserts when its seeds leave no object pixel (an 8:1 strip at 96 px is 12 px thin)."""
    rng = np.random.default_rng(0)
    for height, width in ((1, 96), (2, 96), (12, 96), (96, 12), (96, 1)):
        strip = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        assert foreground_mask(strip).shape == (height, width)
