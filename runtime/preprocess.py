"""Turn any reasonable picture into a Fashion-MNIST image: 28x28, dark background, object centred.

    edgefmnist infer --image shirt.jpg --save-preprocessed shirt-28.png

Fashion-MNIST was made from product photos on white: each was trimmed to its bounding box,
its longest side resized to 28 pixels, centred and negated, so the product is light on
black (Xiao, Rasul and Vollgraf 2017, "Fashion-MNIST: a Novel Image Dataset for Benchmarking
Machine Learning Algorithms", arXiv:1708.07747, section 2). A user's photo is a garment on a
floor, a bed or a hanger, under uneven light. This module turns it into the same form:

1. the picture is loaded small and upright (:mod:`edgefmnist.runtime.picture`), and
   letterbox or pillarbox bars are cut off (:mod:`edgefmnist.runtime.bars`);
2. the garment is separated from the background by GrabCut (:mod:`edgefmnist.runtime.segment`);
3. the light is measured on the background and divided out, and each pixel of the garment
   gets its contrast against the background, ``|light - luminance| / max(light, MIN_LIGHT)``: exactly the
   dataset's negation on white paper, whatever the exposure, vignetting or shadow, and the
   same for a garment lighter or darker than its floor;
4. the contrast is scaled so the garment's 99th percentile is 255 (what is outside the mask
   is 0), then trimmed, resized and centred as the dataset was.

An image already in dataset form (28x28, dark border) passes through unchanged, and never
loads OpenCV. The shipped networks are trained on Fashion-MNIST images rendered as photos and
passed through this very function (``edgefmnist.photo_render``), so they learn what it gives.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from edgefmnist.runtime.bars import picture_inside_bars
from edgefmnist.runtime.picture import ImageError, PictureSource, is_plain, load_picture, to_luminance, to_rgb_or_l
from PIL import Image

from edgefmnist import spec
from edgefmnist.errors import EdgeFmnistError, first_line

__all__ = ["ImageError", "Preprocessed", "dataset_form", "preprocess", "preprocess_file", "to_dataset_form"]

SIZE = spec.IMAGE_SIZE
DARK_BORDER = 60  # a border pixel darker than this is background in dataset form
DARK_BORDER_SHARE = 0.25  # a 28x28 image with at least this share of dark border pixels is in dataset form
# (every one of the 70,000 Fashion-MNIST images has; 8 test images have a border *mean* above 60)
SEGMENT_SIDE = 96  # the longer side, in pixels, at which the garment is segmented
MIN_CONTRAST_SPREAD = 2.0  # luminance standard deviation (0-255) below which a picture is nearly uniform
NEARLY_UNIFORM = "the picture is nearly uniform"
MIN_LIGHT = 48.0  # contrast is relative to the light, but never to less than this (dark floors)
# An object whose 99th-percentile contrast is below this is too faint to tell from a shadow or the paper's
# texture: "no object found", its pixels kept (17 of the 13,750 photo views training renders are so faint).
# Chosen on photos-dev's choice half, whose faintest in-domain photo has 0.118 (the next 0.26); every
# Fashion-MNIST image, in dataset form, has a pixel of 254 or more.
MIN_OBJECT_CONTRAST = 0.08
# The garment's 99th-percentile contrast is scaled to 255, but by at most 1 / MIN_PEAK_CONTRAST (20x):
# the noise of a nearly uniform picture is not stretched to full brightness.
MIN_PEAK_CONTRAST = 0.05
RESAMPLE = Image.Resampling.LANCZOS


@dataclass(frozen=True)
class Preprocessed:
    """A picture in Fashion-MNIST form: ``pixels`` uint8 ``[28, 28]``.

    ``nothing_found`` is why no object was found ("the picture is nearly uniform", ...), or "" when one
    was; the pixels are then all black, or, for an object too faint to tell from a shadow
    (:func:`too_faint`), what was found; either way a classifier's answer for them is meaningless.
    ``photo`` is False when the picture was already in dataset form (28x28 on a dark border: its
    pixels pass through, or are all black when it is nearly uniform), True when it was not
    (segmented and re-rendered, or a photo in which nothing was found).
    """

    pixels: np.ndarray
    nothing_found: str = ""
    photo: bool = False


def is_dataset_form(pixels: np.ndarray) -> bool:
    """28x28 with a mostly dark border: already a Fashion-MNIST image (a garment may touch two edges)."""
    return pixels.shape == (SIZE, SIZE) and float(np.mean(border(pixels) < DARK_BORDER)) >= DARK_BORDER_SHARE


def border(pixels: np.ndarray) -> np.ndarray:
    """The outermost ring of a 2-D array, as a 1-D array."""
    return np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])


def blank(reason: str, photo: bool = True) -> Preprocessed:
    """All-black pixels, "no object found" for ``reason``."""
    return Preprocessed(np.zeros((SIZE, SIZE), dtype=np.uint8), f"no object found: {reason}", photo)


def to_dataset_form(image: Image.Image) -> np.ndarray:
    """A picture (any mode, any size) -> uint8 ``[28, 28]`` in Fashion-MNIST form (:attr:`Preprocessed.pixels`)."""
    return dataset_form(image).pixels


def dataset_form(image: Image.Image) -> Preprocessed:
    """A picture (any mode, any size) in Fashion-MNIST form, noting a uniform picture, one with no
    object or a faint one (:func:`too_faint`), or one smaller than 28 pixels on its longer side (a
    thumbnail or an icon: too few pixels).

    A photo's letterbox or pillarbox bars (:func:`picture_inside_bars`) are cut off first, or
    they would be the background's only colour and the floor would pass for the garment.
    Transparency is composited first, as :func:`~edgefmnist.runtime.picture.load_picture` composites it.
    Pure: no global state is read or written, so threads may call it at once.
    """
    if not is_plain(image):
        image = to_rgb_or_l(image)
    if image.size == (SIZE, SIZE):
        pixels = to_luminance(image)
        if is_dataset_form(pixels):
            if pixels.std() < MIN_CONTRAST_SPREAD:
                return blank(NEARLY_UNIFORM, photo=False)
            return Preprocessed(pixels, too_faint(pixels.max() / 255))
    if max(image.size) < SIZE:  # fewer pixels than the network's input: nothing to find a garment in
        return blank(f"the picture is {image.width}x{image.height} pixels, smaller than {SIZE}x{SIZE}")
    from edgefmnist.runtime.segment import MIN_OBJECT_SHARE, foreground_mask, illumination

    small = segmentation_input(image)
    luminance = to_luminance(small).astype(np.float64)
    if luminance.std() < MIN_CONTRAST_SPREAD:
        return blank(NEARLY_UNIFORM)
    mask = foreground_mask(np.asarray(small))
    if mask.sum() < MIN_OBJECT_SHARE * mask.size:
        return blank("nothing stands out from the background")
    light = illumination(luminance, ~mask)
    contrast = np.abs(light - luminance) / np.maximum(light, MIN_LIGHT)
    peak = float(np.percentile(contrast[mask], 99))
    intensity = np.clip(contrast / max(peak, MIN_PEAK_CONTRAST), 0.0, 1.0) * mask
    return Preprocessed(centre(255.0 * intensity, mask), too_faint(peak), photo=True)


def too_faint(contrast: float) -> str:
    """The ``nothing_found`` reason for an object whose (99th-percentile) contrast, 0-1, is below
    ``MIN_OBJECT_CONTRAST``, else "". Its pixels are kept, as the training's photo views keep them."""
    if contrast >= MIN_OBJECT_CONTRAST:
        return ""
    return f"no object found: nothing stands out from the background (at most {100 * contrast:.0f} % contrast)"


def segmentation_input(image: Image.Image) -> Image.Image:
    """The RGB picture GrabCut segments: bars cut off, the longer side resized to ``SEGMENT_SIDE`` pixels."""
    rgb = image.convert("RGB")
    rgb = rgb.crop(picture_inside_bars(np.asarray(rgb)))
    scale = SEGMENT_SIDE / max(rgb.size)
    small_size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    return rgb.resize(small_size, Image.Resampling.BILINEAR if scale > 1 else Image.Resampling.BOX)


def centre(intensity: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Crop ``intensity`` (float ``[H, W]``, 0-255) to ``mask``'s bounding box, fit it in 28x28, centre it."""
    rows, cols = np.nonzero(mask)
    crop = intensity[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    height, width = crop.shape
    scale = SIZE / max(height, width)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(crop.astype(np.float32), "F").resize(new_size, RESAMPLE)
    canvas = np.zeros((SIZE, SIZE), dtype=np.float64)
    top, left = (
        (SIZE - new_size[1] + 1) // 2,
        (SIZE - new_size[0] + 1) // 2,
    )  # odd margins: extra pixel top/left, as in the dataset
    canvas[top : top + new_size[1], left : left + new_size[0]] = np.asarray(resized)
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)


def preprocess_file(path: Path) -> np.ndarray:
    """Load ``path`` and return it in Fashion-MNIST form, uint8 ``[28, 28]`` (:attr:`Preprocessed.pixels`:
    black when nothing was found, but for a faint object's); raises as :func:`preprocess` does."""
    return preprocess(path).pixels


def preprocess(source: PictureSource, name: str | None = None) -> Preprocessed:
    """Load a picture (a path or its encoded bytes, see :func:`load_picture`) in Fashion-MNIST form.

    Thread safe. Raises :class:`EdgeFmnistError` (``ImageError`` for an unreadable picture), one
    line starting with ``"{name}: "``, for any failure, so that one picture never stops a batch.
    """
    label = name or (os.fspath(source) if isinstance(source, str | Path) else "<bytes>")
    try:
        return dataset_form(load_picture(source, name=label))
    except EdgeFmnistError:
        raise
    except Exception as exc:  # a decoder or OpenCV failure on one odd picture
        raise EdgeFmnistError(
            f"{label}: cannot preprocess this picture ({type(exc).__name__}: {first_line(exc)})"
        ) from None
