"""Separate a garment from its background in a photo, and measure the light that falls on it.

    edgefmnist infer --image shirt-on-the-floor.jpg     # preprocess.py calls these on every photo

The foreground is found by OpenCV's GrabCut (Rother, Kolmogorov and Blake, "GrabCut:
interactive foreground extraction using iterated graph cuts", SIGGRAPH 2004), seeded as a
photographer frames a picture: the outer band of the frame is probably background, the rest
probably object. Colour models of both are fitted and a graph cut decides every pixel, so
floors, beds, tiles and carpets are told apart from the garment by colour and texture, not
by a brightness threshold. The light is a smooth quadratic surface fitted to the background
(flat-field correction), so vignetting, a shadow band or side light divide out: once before
GrabCut, fitted to the frame's outer band, so that a shadow does not become a colour of its
own that a light garment is mistaken for; and once after it, fitted to all the background.

OpenCV (``opencv-python-headless``, aarch64 wheels on PyPI) is imported here and only here;
a 28x28 image in dataset form never loads it. Importing this module sets OpenCV's threads to
one for the whole process (``cv2.setNumThreads``, a process-wide setting): the pictures are
small, and a batch is spread over threads of its own (``--workers``).
"""

from __future__ import annotations

import cv2
import numpy as np

BANDS = (0.06, 0.0)  # of the longer side: the outer band seeded as probable background, first try and retry
ITERATIONS = 2  # GrabCut rounds; more change the mask of photos-dev's choice half little and cost ~6 ms each
MIN_OBJECT_SHARE = 0.005  # a mask smaller than this share of the picture is no object: retried with the next band
KEEP_PART = 0.05  # connected parts of the mask smaller than this share of the largest are dropped (specks)
OUTLIER_MADS = 3.0  # band pixels farther than this many median deviations from a first fit are left out of the second
MIN_FIT_PIXELS = 20  # the light's quadratic has 6 coefficients: fewer background pixels fit noise
MIN_GAIN_LIGHT = 8.0  # flat-fielding before GrabCut treats light below this (0-255) as this: no blown-up noise,
# and a black backdrop (band median 0) is left as it is instead of being multiplied by 0

cv2.setNumThreads(1)  # the images are small: threads cost more than they save, and hosts may be shared


def foreground_mask(rgb: np.ndarray) -> np.ndarray:
    """The object's mask: bool ``[H, W]`` of a uint8 ``[H, W, 3]`` RGB picture.

    The outermost pixel ring is background for certain, a band of ``BANDS[0]`` of the longer
    side probably background, the inside probably object. When the garment spills into that
    band, its colours can win the background model and leave no object (below ``MIN_OBJECT_SHARE``):
    then only the outer ring is seeded as background, and if GrabCut still finds nothing, the
    pixels whose colour stands out from the border's by Otsu's threshold are the object.
    After that, parts smaller than ``KEEP_PART`` of the largest are dropped and holes inside
    the object are filled. The colours GrabCut models are those of :func:`flatten_light`.
    """
    rgb = flatten_light(rgb)
    for band in BANDS:
        mask = grabcut(rgb, band)
        if mask.sum() >= MIN_OBJECT_SHARE * mask.size:
            break
    else:
        mask = colour_contrast_mask(rgb)
    return fill_holes(main_parts(mask))


def colour_contrast_mask(rgb: np.ndarray) -> np.ndarray:
    """uint8 0/1 ``[H, W]``: pixels farther from the border's median colour than Otsu's threshold."""
    ring = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).astype(np.float64)
    distance = np.linalg.norm(rgb.astype(np.float64) - np.median(ring, axis=0), axis=-1)
    scaled = (255 * distance / max(distance.max(), 1e-9)).astype(np.uint8)
    _, mask = cv2.threshold(scaled, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return mask


def outer_band(shape: tuple[int, ...], band: float) -> np.ndarray:
    """bool ``[H, W]``: the frame's outer band, ``band`` of the longer side wide (at least the outermost ring)."""
    height, width = shape[:2]
    pixels = max(1, round(band * max(height, width)))
    inside = np.zeros((height, width), bool)
    inside[pixels:-pixels, pixels:-pixels] = True
    return ~inside


def flatten_light(rgb: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W, 3]`` RGB with the light fitted to its outer band (:func:`illumination`) divided out.

    The band's median brightness is kept (at least ``MIN_GAIN_LIGHT``, so that a black
    backdrop is not scaled to nothing). The light is fitted twice, the second time without the
    band pixels that stray more than ``OUTLIER_MADS`` median deviations from the first fit, so
    tile grout, a pattern or a garment's edge in the band do not pass for shade. This is what a
    photographer's framing allows before the garment is known: the band is mostly background,
    so vignetting, a gradient or a shadow band across the frame is mostly removed before GrabCut
    models colours.
    """
    luminance = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float64)
    band = outer_band(luminance.shape, BANDS[0])
    deviation = np.abs(luminance - illumination(luminance, band))
    inliers = band & (deviation <= max(OUTLIER_MADS * float(np.median(deviation[band])), 1.0))
    level = max(float(np.median(luminance[band])), MIN_GAIN_LIGHT)
    gain = level / np.maximum(illumination(luminance, inliers), MIN_GAIN_LIGHT)
    return np.clip(rgb * gain[..., None] + 0.5, 0, 255).astype(np.uint8)


def grabcut(rgb: np.ndarray, band: float) -> np.ndarray:
    """GrabCut's object mask, uint8 0/1 ``[H, W]``, seeded with a background band of ``band`` of the longer side."""
    height, width = rgb.shape[:2]
    seeds = np.where(outer_band(rgb.shape, band), cv2.GC_PR_BGD, cv2.GC_PR_FGD).astype(np.uint8)
    seeds[0], seeds[-1], seeds[:, 0], seeds[:, -1] = (cv2.GC_BGD,) * 4
    # OpenCV's GMM arrays: 5 components of a weight, a mean (3) and a covariance (9) each
    # (GMM::componentsCount and modelSize in OpenCV's modules/imgproc/src/grabcut.cpp)
    background_model, foreground_model = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.setRNGSeed(0)  # GrabCut seeds its colour models by k-means from OpenCV's (per-thread) RNG
    try:
        cv2.grabCut(
            np.ascontiguousarray(rgb),
            seeds,
            None,
            background_model,
            foreground_model,
            ITERATIONS,
            cv2.GC_INIT_WITH_MASK,
        )
    except cv2.error:  # no pixel left on one side of the seeds (a strip a few pixels thin): no object
        return np.zeros((height, width), np.uint8)
    return ((seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)).astype(np.uint8)


def main_parts(mask: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W]`` 0/1 mask -> the same with connected parts below ``KEEP_PART`` of the largest removed."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= KEEP_PART * areas.max())
    return np.isin(labels, keep).astype(np.uint8)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """uint8 0/1 mask -> bool mask with every region not reachable from the border set."""
    outside = np.pad(mask, 1)
    cv2.floodFill(outside, None, (0, 0), 1)
    return mask.astype(bool) | (outside[1:-1, 1:-1] == 0)


def illumination(luminance: np.ndarray, background: np.ndarray) -> np.ndarray:
    """The light over the picture: float64 ``[H, W]`` from a least-squares quadratic fit to the background.

    ``luminance``: float ``[H, W]`` in 0-255; ``background``: bool ``[H, W]``. With fewer than
    ``MIN_FIT_PIXELS`` background pixels the field is flat at the median luminance.
    """
    height, width = luminance.shape
    y, x = np.mgrid[0:height, 0:width]
    x, y = x / width - 0.5, y / height - 0.5
    terms = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1).reshape(-1, 6)
    picked = background.ravel()
    if picked.sum() < MIN_FIT_PIXELS:
        return np.full(luminance.shape, float(np.median(luminance)))
    chosen = terms[picked]  # the normal equations: a 6x6 solve, where an SVD of all the rows held the GIL for long
    coefficients, *_ = np.linalg.lstsq(chosen.T @ chosen, chosen.T @ luminance.ravel()[picked], rcond=None)
    return (terms @ coefficients).reshape(height, width)
