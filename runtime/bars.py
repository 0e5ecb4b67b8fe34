"""Find a photo's letterbox or pillarbox bars, so that preprocessing can cut them off.

    edgefmnist infer --image padded-to-a-square.jpg    # preprocess.py calls this on every photo

A photo padded to a square by a messaging app, or shown whole on a phone and screenshotted,
has black, white or grey bars above and below it or beside it. Left in, they are the
background's only colour for GrabCut, and the floor passes for the garment. The rules and
what they were measured on: docs/real-photos.md, "Letterbox bars".
"""

from __future__ import annotations

import numpy as np

BAR_TOLERANCE = 12  # a bar pixel is within this (0-255, every channel) of the bar's colour
MIN_BAR = 0.05  # of the side across the bars: a thinner run of lines (a tile's grout, a wall's edge) is no bar
BAR_SHARE = 0.7  # a line of the frame is part of a bar when this share of it is the bar's colour (a phone's
# status bar, its clock and icons, or its gesture bar take the rest)
PICTURE_SHARE = 0.9  # the picture starts at a line where at least this share differs from the bar's colour
PICTURE_CONTRAST = (36, 0.5)  # and at least this share differs by more than this: a shadow's soft edge does not
BAR_COLOUR_INSIDE = 0.1  # bars are trimmed only from a picture with less than this share of their colour
CAMERA_ASPECTS = (1.0, 5 / 4, 4 / 3, 3 / 2, 16 / 9)  # longer side / shorter side of a camera's picture
ASPECT_TOLERANCE = 0.03  # relative: the picture inside bars is found to a line or two
MIN_PICTURE_SIDE = 48  # pixels: a smaller picture inside bars is no padded photo
BAR_EDGE = 2  # lines of blur (resampling, JPEG ringing) allowed between a bar's last line and the picture's first


def picture_inside_bars(rgb: np.ndarray) -> tuple[int, int, int, int]:
    """The box ``(left, top, right, bottom)`` of uint8 ``[H, W, 3]`` RGB without letterbox or pillarbox bars.

    A bar is a run of rows (or columns) mostly (``BAR_SHARE``) of one neutral colour, within
    ``BAR_TOLERANCE``, at least ``MIN_BAR`` of the side, at an edge, ending within ``BAR_EDGE``
    lines at the line where the picture starts: one that differs from the bar's colour almost
    everywhere (``PICTURE_SHARE``) and by far in much of it (``PICTURE_CONTRAST``). Bars are cut
    off in pairs (above and below, or beside), around a picture where their colours are rare
    (below ``BAR_COLOUR_INSIDE``) and which has a camera's shape (:func:`is_camera_picture`). A
    photo padded whole to a square, as messaging apps pad it, or shown whole on a phone's screen
    and screenshotted, has such bars. A floor or a backdrop around a garment does not: the line
    where the garment starts is still mostly background, a shadow's soft edge is not sharp, a
    dark night beyond a lit floor is one band, not a pair, and a garment spanning the frame
    leaves its backdrop's colour in the rest, or is not shaped like a photo. The whole frame
    when there are no such bars, or when less than a quarter of a side would be left.
    """
    height, width = rgb.shape[:2]
    columns = rgb.transpose(1, 0, 2)
    whole = (0, 0, width, height)
    (top, top_colour), (bottom, bottom_colour) = bar_lines(rgb), bar_lines(rgb[::-1])
    (left, left_colour), (right, right_colour) = bar_lines(columns), bar_lines(columns[::-1])
    if not (top and bottom) or 4 * (height - top - bottom) < height:  # a pair, or none
        top = bottom = 0
    if not (left and right) or 4 * (width - left - right) < width:
        left = right = 0
    box = (left, top, width - right, height - bottom)
    if box == whole or not is_camera_picture(box):
        return whole
    colours = ([top_colour, bottom_colour] if top else []) + ([left_colour, right_colour] if left else [])
    inside = rgb[top : height - bottom, left : width - right]
    return whole if any(colour_share(inside, colour) >= BAR_COLOUR_INSIDE for colour in colours) else box


def is_camera_picture(box: tuple[int, int, int, int]) -> bool:
    """Whether ``(left, top, right, bottom)`` has a camera's shape: an aspect ratio of ``CAMERA_ASPECTS``
    (within ``ASPECT_TOLERANCE``) and at least ``MIN_PICTURE_SIDE`` pixels on each side."""
    sides = sorted((box[2] - box[0], box[3] - box[1]))
    if sides[0] < MIN_PICTURE_SIDE:
        return False
    return any(abs(sides[1] / sides[0] / aspect - 1) <= ASPECT_TOLERANCE for aspect in CAMERA_ASPECTS)


def close_to(rgb: np.ndarray, colour: np.ndarray, tolerance: int = BAR_TOLERANCE) -> np.ndarray:
    """bool ``[...]``: the pixels of uint8 ``[..., 3]`` RGB within ``tolerance`` of ``colour`` in every channel."""
    return np.abs(rgb.astype(np.int16) - colour).max(axis=-1) <= tolerance


def colour_share(rgb: np.ndarray, colour: np.ndarray, tolerance: int = BAR_TOLERANCE) -> float:
    """The share of the pixels of uint8 ``[..., 3]`` RGB that are :func:`close_to` ``colour``."""
    return float(close_to(rgb, colour, tolerance).mean())


def bar_lines(rgb: np.ndarray) -> tuple[int, np.ndarray]:
    """How many rows of uint8 ``[H, W, 3]`` RGB, from row 0 down, are a bar (see :func:`picture_inside_bars`),
    and the bar's colour (int16 ``[3]``, the median of row 0)."""
    colour = np.median(rgb[0], axis=0).astype(np.int16)
    if int(colour.max() - colour.min()) > BAR_TOLERANCE:
        return 0, colour  # not black, white or grey, as padding is
    alike = close_to(rgb, colour).mean(axis=1)  # per row
    run = int(np.argmin(alike >= BAR_SHARE)) if alike.min() < BAR_SHARE else 0
    if run < MIN_BAR * len(alike):
        return 0, colour
    for line in range(run, min(run + BAR_EDGE + 1, len(alike))):
        if 1 - alike[line] >= PICTURE_SHARE and picture_starts(rgb[line], colour):
            return line, colour
    return 0, colour


def picture_starts(line: np.ndarray, colour: np.ndarray) -> bool:
    """Whether a line (uint8 ``[W, 3]``) that differs from a bar's ``colour`` almost everywhere is a picture's
    edge: much of it differs by far (``PICTURE_CONTRAST``), which a shadow's soft edge does not."""
    contrast, share = PICTURE_CONTRAST
    return 1 - colour_share(line, colour, contrast) >= share
