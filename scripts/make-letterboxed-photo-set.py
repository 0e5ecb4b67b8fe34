#!/usr/bin/env python3
"""Copy a photo set with every photo padded by bars, as a messaging app pads it or a phone's screenshot shows it.

    .venv/bin/python scripts/make-letterboxed-photo-set.py ../shared/photos-dev /tmp/padded --bars top-bottom
    edgefmnist evaluate --photos /tmp/padded --split report

Each photo of the set's ``labels.csv`` is loaded as ``evaluate`` loads it (``load_picture``:
upright, transparency on white, at most LONG_SIDE pixels on its long side), centred on a
canvas RATIO times as long across the bars (``top-bottom``: a letterbox, ``left-right``: a
pillarbox) in the bars' colour, or (``screen``) fitted to the width of a SCREEN phone screen
in portrait, with a status bar's clock and icons on top and a gesture bar below. It is saved
as JPEG quality QUALITY under the same relative path and name, so each photo keeps its half
of ``photo_split``. ``labels.csv`` is copied as it is; a set that lists a photo outside its
folder is refused. The copy is built beside the target and moved into place, so an
interrupted run leaves nothing. Measures what
``edgefmnist.runtime.bars.picture_inside_bars`` recovers (docs/real-photos.md, "Letterbox bars").
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from pathlib import Path

from edgefmnist.runtime.photo_set import LABELS_FILE, load_photo_set
from edgefmnist.runtime.picture import load_picture
from PIL import Image, ImageDraw, ImageFont, ImageOps

from edgefmnist.atomic import staged_folder
from edgefmnist.errors import EdgeFmnistError

LONG_SIDE = 640
RATIO = 1.6  # the canvas across the bars, as a multiple of the photo: bars of 18.75 % of it on each side
QUALITY = 90
COLOURS = {"black": (0, 0, 0), "white": (255, 255, 255), "grey": (40, 40, 40)}
SCREEN = (1080, 2340)  # pixels, a 19.5:9 phone screen in portrait


def padded(path: Path, bars: str, colour: tuple[int, int, int]) -> Image.Image:
    """The photo at ``path`` as ``evaluate`` loads it, at most LONG_SIDE px, centred between two bars of ``colour``
    (``bars="screen"``: :func:`screenshot`)."""
    if bars == "screen":
        return screenshot(load_picture(path, max_side=SCREEN[0]).convert("RGB"), colour)
    photo = load_picture(path, max_side=LONG_SIDE).convert("RGB")
    width, height = photo.size
    size = (width, round(height * RATIO)) if bars == "top-bottom" else (round(width * RATIO), height)
    canvas = Image.new("RGB", size, colour)
    canvas.paste(photo, ((size[0] - width) // 2, (size[1] - height) // 2))
    return canvas


def screenshot(photo: Image.Image, colour: tuple[int, int, int]) -> Image.Image:
    """``photo`` fitted to a SCREEN in ``colour`` (to its width, unless taller), centred, under a status bar
    (a clock, four icons) and above a gesture bar, both in the opposite grey level."""
    width, height = SCREEN
    fitted = ImageOps.contain(photo, SCREEN, Image.Resampling.LANCZOS)
    screen = Image.new("RGB", SCREEN, colour)
    screen.paste(fitted, ((width - fitted.width) // 2, (height - fitted.height) // 2))
    ink = (255, 255, 255) if sum(colour) < 3 * 128 else (0, 0, 0)
    draw = ImageDraw.Draw(screen)
    draw.text((60, 20), "12:34", fill=ink, font=ImageFont.load_default(size=40))
    for icon in range(4):
        draw.rectangle((880 + 45 * icon, 30, 910 + 45 * icon, 60), fill=ink)
    draw.rounded_rectangle((400, height - 40, 680, height - 28), 6, fill=ink)
    return screen


def pad_set(source: Path, building: Path, bars: str, colour: tuple[int, int, int]) -> int:
    """Write the padded copy of ``source`` into ``building``; return the number of photos."""
    photos = load_photo_set(source)
    for photo in photos:
        out = building / os.path.relpath(photo.path, source)
        if not out.resolve().is_relative_to(building.resolve()):
            raise EdgeFmnistError(f"{source / LABELS_FILE}: {photo.path} is outside the photo set's folder")
        out.parent.mkdir(parents=True, exist_ok=True)
        padded(photo.path, bars, colour).save(out, "JPEG", quality=QUALITY)
    shutil.copyfile(source / LABELS_FILE, building / LABELS_FILE)
    return len(photos)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a photo set with labels.csv (photos-dev)")
    parser.add_argument("target", type=Path, help="a folder that does not exist yet")
    parser.add_argument("--bars", choices=("top-bottom", "left-right", "screen"), default="top-bottom")
    parser.add_argument("--colour", choices=tuple(COLOURS), default="black")
    args = parser.parse_args()
    if not (args.source / LABELS_FILE).is_file():
        sys.exit(f"{args.source / LABELS_FILE}: no such file (the source must be a photo set with {LABELS_FILE})")
    if args.target.exists():
        sys.exit(f"{args.target}: already exists")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds through staged_folder's clean-up
    try:
        with staged_folder(args.target) as building:
            count = pad_set(args.source, building, args.bars, COLOURS[args.colour])
    except EdgeFmnistError as exc:
        sys.exit(str(exc))
    except OSError as exc:
        sys.exit(f"{exc.filename or args.target}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        sys.exit(130)
    print(f"{count} photos padded with {args.colour} {args.bars} bars in {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
