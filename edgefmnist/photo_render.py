"""Render a Fashion-MNIST image as a phone photo of the garment: for training, and for tests.

    edgefmnist train --arch cnn --recipe photo     # trains on these renders after preprocessing

A 28x28 image is upscaled, coloured (the dataset's intensity is the product's darkness on
white), laid on a background (paper, a plain colour, a blotchy floor, tiles, stripes, carpet)
at a random place and size, lit unevenly (exposure, vignetting, a gradient, a soft shadow
band, a colour cast), slightly rotated, given sensor noise and JPEG-compressed. Every choice
is drawn from the ``numpy.random.Generator`` passed in, so a seed gives the same photo.

Footwear, which the dataset shows alone and from the side, is also posed as phones see it
(:func:`footwear_pose`): turned at an angle, or as a pair seen from above.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from edgefmnist.runtime.segment import fill_holes
from edgefmnist.spec import CLASS_NAMES

MIN_SCALE, MAX_SCALE = 3.0, 8.0  # upscaling of the 28x28 image
PRODUCT_LEVEL = 12  # a dataset pixel above this is part of the product
FOOTWEAR = tuple(CLASS_NAMES.index(name) for name in ("Sandal", "Sneaker", "Ankle boot"))
PAIR_ODDS, TURNED_ODDS = 0.35, 0.2  # a shoe is shown as a pair, or alone and turned; else as in the dataset
BACKGROUNDS = ("paper", "plain", "blotches", "tiles", "stripes", "carpet")
BACKGROUND_ODDS = (0.25, 0.2, 0.2, 0.15, 0.1, 0.1)


@dataclass(frozen=True)
class Lighting:
    """One lighting condition over the frame; each effect is off at its default."""

    exposure: float = 1.0  # multiplies everything
    vignetting: float = 0.0  # how much darker the corners are, 0-1
    gradient: float = 0.0  # relative change of light from the frame's centre to its edge
    gradient_angle: float = 0.0  # radians, direction the light increases
    shadow: float = 0.0  # how much light the shadow band takes away, 0-1
    shadow_angle: float = 0.0  # radians, the side the band lies on
    shadow_start: float = 0.3  # distance of the band's edge from the centre, in frame widths
    cast: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-channel gain (a colour cast)

    def field(self, height: int, width: int) -> np.ndarray:
        """Light multiplier ``[H, W, 3]``, float64."""
        y, x = np.mgrid[0:height, 0:width]
        x, y = x / width - 0.5, y / height - 0.5
        light = np.full((height, width), self.exposure)
        light *= 1 - self.vignetting * np.clip((x * x + y * y) / 0.5, 0, 1)
        light *= 1 + self.gradient * 2 * (x * np.cos(self.gradient_angle) + y * np.sin(self.gradient_angle))
        along = x * np.cos(self.shadow_angle) + y * np.sin(self.shadow_angle)
        light *= 1 - self.shadow / (1 + np.exp(-(along - self.shadow_start) / 0.03))
        return light[..., None] * np.asarray(self.cast)


def random_lighting(rng: np.random.Generator) -> Lighting:
    """A plausible indoor lighting: each effect present about a third of the time."""
    return Lighting(
        exposure=rng.uniform(0.4, 1.1),
        vignetting=rng.uniform(0.1, 0.45) if rng.random() < 0.4 else 0.0,
        gradient=rng.uniform(0.05, 0.25) if rng.random() < 0.4 else 0.0,
        gradient_angle=rng.uniform(0, 2 * np.pi),
        shadow=rng.uniform(0.2, 0.55) if rng.random() < 0.3 else 0.0,
        shadow_angle=rng.uniform(0, 2 * np.pi),
        shadow_start=rng.uniform(0.15, 0.45),
        cast=tuple(rng.uniform(0.9, 1.1, 3)),
    )


def silhouette(image: np.ndarray) -> np.ndarray:
    """The product's filled outline: bool ``[28, 28]`` of a uint8 dataset image."""
    mask = cv2.morphologyEx((image > PRODUCT_LEVEL).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    return fill_holes(mask)


def _turned(image: np.ndarray, angle: float, squash: float = 1.0) -> np.ndarray:
    """``image`` squashed vertically by ``squash``, rotated ``angle`` degrees, cropped to the product."""
    size = image.shape[0]
    squashed = cv2.resize(image.astype(np.float32), (size, max(1, round(size * squash))), interpolation=cv2.INTER_AREA)
    big = int(np.ceil(size * 1.5))
    canvas = np.zeros((big, big), np.float32)
    top, left = (big - squashed.shape[0]) // 2, (big - size) // 2
    canvas[top : top + squashed.shape[0], left : left + size] = squashed
    rotation = cv2.getRotationMatrix2D((big / 2 - 0.5, big / 2 - 0.5), angle, 1.0)
    rotated = cv2.warpAffine(canvas, rotation, (big, big), flags=cv2.INTER_LINEAR)
    rows, cols = np.nonzero(rotated > PRODUCT_LEVEL)
    if not len(rows):  # a faint product that the interpolation dimmed below the level
        return rotated
    return rotated[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def _on_square(parts: list[tuple[np.ndarray, int, int]], height: int, width: int) -> np.ndarray:
    """Each ``(part, top, left)`` drawn (brightest wins) on a canvas, centred in a square: uint8."""
    side = max(height, width)
    square = np.zeros((side, side), np.float32)
    top0, left0 = (side - height) // 2, (side - width) // 2
    for part, top, left in parts:
        rows, cols = slice(top0 + top, top0 + top + part.shape[0]), slice(left0 + left, left0 + left + part.shape[1])
        square[rows, cols] = np.maximum(square[rows, cols], part)
    return square.clip(0, 255).astype(np.uint8)


def footwear_pose(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uint8 ``[N, N]`` side view of a shoe -> uint8 ``[S, S]``: how a phone may see it.

    With odds ``PAIR_ODDS`` a pair seen from above, pointing away from or towards the camera:
    the side view, narrowed to 55-90 % of its height (a shoe is narrower than it is tall), turned
    about 90 degrees, beside its mirror image. With odds ``TURNED_ODDS`` the shoe alone, turned
    15-60 degrees either way, cropped to it (so S may be below N). Otherwise, and for an image
    with no product pixel (none above ``PRODUCT_LEVEL``), ``image`` itself.
    ``ValueError`` for an image that is not square.
    """
    if image.ndim != 2 or image.shape[0] != image.shape[1]:
        raise ValueError(f"footwear_pose needs a square grey image, got shape {image.shape}")
    draw = rng.random()
    if not (image > PRODUCT_LEVEL).any():
        return image
    if draw < PAIR_ODDS:
        squash, turn = rng.uniform(0.55, 0.9), rng.choice((90.0, -90.0)) + rng.uniform(-20, 20)
        left = _turned(image, turn + rng.uniform(-8, 8), squash)
        right = _turned(image, -turn + rng.uniform(-8, 8), squash)[:, ::-1]
        gap = int(rng.integers(-1, 5))
        height, width = max(left.shape[0], right.shape[0]), left.shape[1] + gap + right.shape[1]
        parts = [
            (left, int(rng.integers(0, height - left.shape[0] + 1)), 0),
            (right, int(rng.integers(0, height - right.shape[0] + 1)), left.shape[1] + gap),
        ]
        return _on_square(parts, height, width)  # the gap is at least -1, so width covers both
    if draw < PAIR_ODDS + TURNED_ODDS:
        alone = _turned(image, rng.choice((1.0, -1.0)) * rng.uniform(15, 60))
        return _on_square([(alone, 0, 0)], *alone.shape)
    return image


def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random surface, float64 ``[H, W, 3]`` in 0-255."""
    kind = rng.choice(BACKGROUNDS, p=BACKGROUND_ODDS)
    colour = rng.uniform(225, 255) - rng.uniform(0, 10, 3) if kind == "paper" else rng.uniform(0, 255, 3)
    surface = np.ones((height, width, 3)) * colour
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    if kind == "blotches":
        cell = int(rng.integers(4, 24))
        coarse = rng.normal(0, 1, (height // cell + 2, width // cell + 2))
        surface += cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)[..., None] * rng.uniform(5, 30)
    elif kind == "tiles":
        period, line, angle = int(rng.integers(20, 70)), int(rng.integers(1, 4)), rng.uniform(-np.pi / 9, np.pi / 9)
        u, v = x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)
        grout = ((u % period) < line) | ((v % period) < line)
        surface[grout] = surface[grout] * rng.uniform(0.5, 0.9) if rng.random() < 0.7 else rng.uniform(0, 255, 3)
    elif kind == "stripes":
        wavelength, angle = rng.uniform(6, 30), rng.uniform(0, np.pi)
        waves = np.sin((x * np.cos(angle) + y * np.sin(angle)) / wavelength * 2 * np.pi)
        surface += waves[..., None] * rng.uniform(5, 25) + rng.normal(0, 4, (height, width, 1))
    elif kind == "carpet":
        noisy = surface + rng.normal(0, rng.uniform(6, 20), (height, width, 1))
        surface = np.asarray(cv2.GaussianBlur(noisy, (3, 3), 0), dtype=np.float64)
    return surface


def render_photo(
    image: np.ndarray,
    rng: np.random.Generator,
    lighting: Lighting | None = None,
    surface: np.ndarray | None = None,
    angle: float | None = None,
    quality: int | None = None,
    label: int | None = None,
) -> Image.Image:
    """A uint8 ``[28, 28]`` dataset image -> an RGB photo of it (Pillow image, 84-535 px a side, or
    the size of ``surface``).

    ``label`` (the image's class) poses footwear as phones see it (:func:`footwear_pose`).
    ``lighting``, ``surface`` (a float ``[H, W, 3]`` background in 0-255, which also sets the
    frame size), ``angle`` (degrees) and ``quality`` (JPEG) default to random draws from ``rng``.
    """
    if label in FOOTWEAR:
        image = footwear_pose(image, rng)
    side = int(28 * rng.uniform(MIN_SCALE, MAX_SCALE))
    if surface is not None:
        side = min(side, *surface.shape[:2])
    darkness = cv2.resize(image.astype(np.float32), (side, side), interpolation=cv2.INTER_CUBIC).clip(0, 255) / 255
    alpha = cv2.resize(silhouette(image).astype(np.float32), (side, side), interpolation=cv2.INTER_LINEAR)[..., None]
    occupied = rng.uniform(0.5, 1.0)
    height = max(side, int(side / occupied * rng.uniform(0.9, 1.2)))
    width = max(side, int(side / occupied * rng.uniform(0.9, 1.2)))
    if surface is not None:
        height, width = surface.shape[:2]
    top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
    photo = background(rng, height, width) if surface is None else surface.astype(np.float64).copy()
    colour = rng.uniform(0, 255, 3) * (rng.uniform(0, 1) if rng.random() < 0.5 else 1.0)
    product = (255 - darkness[..., None] * (255 - colour)) * rng.uniform(0.85, 1.0)  # white where the dataset is 0
    region = photo[top : top + side, left : left + side]
    photo[top : top + side, left : left + side] = region * (1 - alpha) + product * alpha
    photo *= (lighting or random_lighting(rng)).field(height, width)
    photo += rng.normal(0, rng.uniform(0, 4), photo.shape)
    picture = Image.fromarray(photo.clip(0, 255).astype(np.uint8), "RGB")
    angle = rng.uniform(-8, 8) if angle is None and rng.random() < 0.5 else (angle or 0.0)
    if angle:
        corner = tuple(int(c) for c in np.asarray(picture)[0, 0])
        picture = picture.rotate(angle, Image.Resampling.BILINEAR, fillcolor=corner)
    encoded = io.BytesIO()
    picture.save(encoded, "JPEG", quality=int(rng.integers(55, 95)) if quality is None else quality)
    encoded.seek(0)
    with Image.open(encoded) as decoded:
        return decoded.convert("RGB")
