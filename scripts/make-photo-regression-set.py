#!/usr/bin/env python3
"""Make tests/data/photos: the small real-photo regression set shipped with the repository.

    .venv/bin/python scripts/make-photo-regression-set.py ../shared/photos-dev tests/data/photos --force

Selection rule: from the *report* half of photos-dev (``edgefmnist.runtime.photo_set.photo_split``:
first byte of SHA-256 of the file name odd), the first PER_CLASS photos of each source class
in sorted file-name order. Each is decoded, converted to RGB, downscaled (Lanczos) to at most
LONG_SIDE pixels on its long side and saved as JPEG quality QUALITY without metadata, under the
same relative path. labels.csv keeps photos-dev's columns and rows; README.md carries the
provenance and licence note. The result is built in a temporary sibling folder and moved
into place, so an interrupted run leaves nothing half-made. Same input and Pillow version,
same bytes.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections import defaultdict
from pathlib import Path, PurePosixPath

from edgefmnist.runtime.photo_set import LABEL_COLUMNS, photo_split
from PIL import Image

from edgefmnist.atomic import staged_folder

PER_CLASS = 30
LONG_SIDE = 128
QUALITY = 85

README = """# tests/data/photos: a real-photo regression set

{count} photos ({per_class} per source class) copied from `photos-dev`, used by
`tests/test_photo_eval.py` so that accuracy on real photos cannot silently fall back:

    edgefmnist evaluate --photos tests/data/photos --json

## Provenance and licence

From photos-dev's README: the photos come from the *clothing dataset (subset)* by Alexey
Grigorev and contributors (github.com/alexeygrigorev/clothing-dataset-small), released under
**CC0 1.0** (public domain dedication): free for any use. Only its `train/` and `validation/`
splits were used; each photo was EXIF-rotated and downscaled to at most 256 px on its long
side (JPEG q90). The file name is the dataset's image id.

## What was done here

Made by `scripts/make-photo-regression-set.py` (reproducible): from the **report** half of
photos-dev only (`photo_split(name) == "report"`: the first byte of SHA-256 of the file name
is odd), so no choice made on the choice half has seen them; per source class, the first
{per_class} photos in sorted file-name order; each downscaled (Lanczos) to at most {long_side} px
on its long side and saved as JPEG quality {quality}, without metadata.

`labels.csv` has photos-dev's columns `file,source_class,accepted`: `accepted` lists the
Fashion-MNIST classes that count as right (`;`-separated); hat, shorts and skirt have none
(out of domain: the honest answer is "unsure").

| source class | accepted |
|---|---|
| t-shirt | T-shirt/top |
| pants | Trouser |
| dress | Dress |
| outwear | Coat |
| shirt | Shirt |
| shoes | Sandal; Sneaker; Ankle boot |
| longsleeve | T-shirt/top; Pullover; Shirt |
| hat, shorts, skirt | (none) |

Do not train network weights on these photos.
"""


def select_rows(rows: list[dict[str, str]], per_class: int) -> list[dict[str, str]]:
    """The first ``per_class`` report-half rows of each source class, by file name."""
    by_class: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        if photo_split(row["file"]) == "report":
            by_class[row["source_class"]].append(row)
    picked = []
    for source in sorted(by_class):
        ordered = sorted(by_class[source], key=lambda r: PurePosixPath(r["file"]).name)
        if len(ordered) < per_class:
            raise SystemExit(f"{source}: only {len(ordered)} report-half photos, need {per_class}")
        picked.extend(ordered[:per_class])
    return sorted(picked, key=lambda r: r["file"])


def downscaled_jpeg(source: Path) -> bytes:
    with Image.open(source) as image:
        image = image.convert("RGB")
        image.thumbnail((LONG_SIDE, LONG_SIDE), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=QUALITY)
    return buffer.getvalue()


def make(source: Path, out: Path, per_class: int = PER_CLASS) -> int:
    """Write the set into ``out`` (replaced as a whole); return the number of photos."""
    with open(source / "labels.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    picked = select_rows(rows, per_class)
    with staged_folder(out) as staging:
        for row in picked:
            target = staging / row["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(downscaled_jpeg(source / row["file"]))
        with open(staging / "labels.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=LABEL_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows({key: row[key] for key in LABEL_COLUMNS} for row in picked)
        (staging / "README.md").write_text(
            README.format(count=len(picked), per_class=per_class, long_side=LONG_SIDE, quality=QUALITY),
            encoding="utf-8",
        )
    return len(picked)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="photos-dev (with labels.csv)")
    parser.add_argument("out", type=Path, help="the folder to make, e.g. tests/data/photos")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.force:
        sys.exit(f"{args.out}: exists; pass --force to replace it")
    count = make(args.source, args.out)
    print(f"{args.out}: {count} photos")


if __name__ == "__main__":
    main()
