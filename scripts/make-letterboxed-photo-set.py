#!/usr/bin/env python3
"""Copy a photo set with every photo padded by bars, as a messaging app or a screenshot pads it.

    .venv/bin/python scripts/make-letterboxed-photo-set.py ../shared/photos-dev /tmp/padded --bars top-bottom
    edgefmnist evaluate --photos /tmp/padded --split report

Each photo of ``labels.csv`` is decoded upright (EXIF orientation applied), downscaled
(Lanczos) to at most LONG_SIDE pixels on its long side, centred on a canvas RATIO times as
long across the bars (``top-bottom``: a letterbox, ``left-right``: a pillarbox) in the bars'
colour, and saved in the format its name gives (JPEG at quality QUALITY) under the same
relative path and name, so each photo keeps its half of ``photo_split``. ``labels.csv`` is
copied as it is. Measures what ``edgefmnist.runtime.preprocess.picture_inside_bars``
recovers (README, "Letterbox bars").
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
from pathlib import Path

from edgefmnist.runtime.photo_eval import LABELS_FILE
from PIL import Image, ImageOps

LONG_SIDE = 640
RATIO = 1.6  # the canvas across the bars, as a multiple of the photo: bars of 18.75 % of it on each side
QUALITY = 90
COLOURS = {"black": (0, 0, 0), "white": (255, 255, 255), "grey": (40, 40, 40)}


def padded(path: Path, bars: str, colour: tuple[int, int, int]) -> Image.Image:
    """The photo at ``path``, upright and at most LONG_SIDE px, centred between two bars of ``colour``."""
    with Image.open(path) as opened:
        photo = ImageOps.exif_transpose(opened).convert("RGB")
    photo.thumbnail((LONG_SIDE, LONG_SIDE), Image.Resampling.LANCZOS)
    width, height = photo.size
    size = (width, round(height * RATIO)) if bars == "top-bottom" else (round(width * RATIO), height)
    canvas = Image.new("RGB", size, colour)
    canvas.paste(photo, ((size[0] - width) // 2, (size[1] - height) // 2))
    return canvas


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a photo set with labels.csv (photos-dev)")
    parser.add_argument("target", type=Path, help="a folder that does not exist yet")
    parser.add_argument("--bars", choices=("top-bottom", "left-right"), default="top-bottom")
    parser.add_argument("--colour", choices=tuple(COLOURS), default="black")
    args = parser.parse_args()
    labels = args.source / LABELS_FILE
    if not labels.is_file():
        sys.exit(f"{labels}: no such file (the source must be a photo set with {LABELS_FILE})")
    if args.target.exists():
        sys.exit(f"{args.target}: already exists")
    with open(labels, newline="", encoding="utf-8-sig") as handle:
        files = [row["file"] for row in csv.DictReader(handle)]
    args.target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{args.target.name}-", dir=args.target.parent))
    try:  # built beside the target and moved into place: an interrupted run leaves no half-made set
        for file in files:
            out = building / file
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                padded(args.source / file, args.bars, COLOURS[args.colour]).save(out, quality=QUALITY)
            except OSError as exc:
                sys.exit(f"{args.source / file}: cannot pad it ({exc})")
        shutil.copyfile(labels, building / LABELS_FILE)
        building.rename(args.target)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    print(f"{len(files)} photos padded with {args.colour} {args.bars} bars in {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
