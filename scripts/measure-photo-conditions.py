#!/usr/bin/env python3
"""Which photos the default model reads best: accuracy by background and by framing.

    .venv/bin/python scripts/measure-photo-conditions.py ../shared/photos-dev
    .venv/bin/python scripts/measure-photo-conditions.py ../shared/photos-dev --json

Every in-domain photo of the set is classified as ``evaluate`` classifies it
(``predict_photos``, default thresholds), and two things are measured on the picture that
GrabCut segments (``preprocess.segmentation_input``, 96 px on its longer side) with its mask
(``segment.foreground_mask``):

- **background texture**: the standard deviation (luminance levels, 0-255) of the
  flat-fielded picture (``segment.flatten_light``) over the frame's outer band
  (``segment.BANDS[0]``, 6 % of the longer side) outside the mask. Plain paper, a sheet or a
  painted wall give a few levels; wood grain, tiles, carpet and clutter give tens. A photo is
  *busy* when its texture is above ``BUSY_SHARE`` of the choice half's photos, a threshold
  chosen on the choice half (``photo_split``) and applied to both halves.
- **framing**: how many of the frame's four edges the mask reaches (within ``EDGE_MARGIN``
  pixels). A garment that reaches two or more is cut off or lies on a background that
  GrabCut took for part of it.

A photo is *plain and framed* when it is not busy and its mask reaches at most one edge. For
each half, the script prints the in-domain accuracy (forced answer), the share answered at the
default thresholds and the accuracy of those answers, for plain-and-framed photos and the
others, then per source class. Nothing is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from edgefmnist.runtime.photo_eval import PhotoPredictions, load_photo_set, photo_split, predict_photos
from edgefmnist.runtime.picture import load_picture, to_luminance
from edgefmnist.runtime.predictor import Predictor, default_model_path
from edgefmnist.runtime.preprocess import segmentation_input
from edgefmnist.runtime.segment import BANDS, flatten_light, foreground_mask, outer_band
from PIL import Image

from edgefmnist import spec
from edgefmnist.errors import EdgeFmnistError

BUSY_SHARE = 2 / 3  # a photo whose texture is above this share of the choice half's is busy
EDGE_MARGIN = 2  # pixels at 96 px: a mask this close to an edge reaches it
MAX_EDGES = 1  # a framed photo's mask reaches at most this many edges


def background_texture(rgb: np.ndarray, mask: np.ndarray) -> float:
    """Luminance standard deviation (0-255) of flat-fielded uint8 ``[H, W, 3]`` over the outer band outside ``mask``."""
    luminance = to_luminance(Image.fromarray(flatten_light(rgb))).astype(np.float64)
    band = outer_band(mask.shape, BANDS[0]) & ~mask
    return float(luminance[band].std()) if band.any() else 0.0


def edges_reached(mask: np.ndarray) -> int:
    """How many of the four edges of bool ``[H, W]`` ``mask`` it reaches, within ``EDGE_MARGIN`` pixels."""
    m = EDGE_MARGIN
    return int(mask[:m].any()) + int(mask[-m:].any()) + int(mask[:, :m].any()) + int(mask[:, -m:].any())


def photo_conditions(path: Path) -> tuple[float, int]:
    """(background texture, edges reached) of the photo at ``path``, measured as the photo path segments it."""
    rgb = np.asarray(segmentation_input(load_picture(path)))
    mask = foreground_mask(rgb)
    return background_texture(rgb, mask), edges_reached(mask)


def figures(predictions: PhotoPredictions, chosen: np.ndarray) -> dict:
    """Photos, accuracy, share answered and accuracy of the answers among the ``chosen`` (bool ``[M]``) photos."""
    right = predictions.right()[chosen]
    answered = ~predictions.unsure(spec.DEFAULT_MIN_CONFIDENCE, spec.DEFAULT_MIN_TYPICALITY)[chosen]
    return {
        "photos": int(chosen.sum()),
        "accuracy": float(right.mean()) if right.size else None,
        "answered": float(answered.mean()) if answered.size else None,
        "answered_accuracy": float(right[answered].mean()) if answered.any() else None,
    }


def measure(folder: Path, model: Path) -> dict:
    photos = [p for p in load_photo_set(folder) if p.in_domain]
    predictions = predict_photos(Predictor(model), photos, progress=lambda items, _: items)
    conditions = np.array([photo_conditions(p.path) for p in predictions.photos])
    texture, edges = conditions[:, 0], conditions[:, 1]
    halves = np.array([photo_split(p.path.name) for p in predictions.photos])
    if not (halves == "choice").any():
        raise EdgeFmnistError(f"{folder}: no readable in-domain photo in the choice half, where 'busy' is set")
    busy_above = float(np.quantile(texture[halves == "choice"], BUSY_SHARE))
    good = (texture <= busy_above) & (edges <= MAX_EDGES)
    sources = np.array([p.source_class for p in predictions.photos])
    result: dict = {"model": str(model), "busy_texture_above": busy_above, "halves": {}}
    for half in ("choice", "report"):
        inside = halves == half
        result["halves"][half] = {
            "plain_and_framed": figures(predictions, inside & good),
            "others": figures(predictions, inside & ~good),
            "busy": figures(predictions, inside & (texture > busy_above)),
            "reaching_two_or_more_edges": figures(predictions, inside & (edges > MAX_EDGES)),
            "by_source_class": {
                s: {
                    "plain_and_framed": figures(predictions, inside & good & (sources == s)),
                    "others": figures(predictions, inside & ~good & (sources == s)),
                }
                for s in predictions.sources()
            },
        }
    return result


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def format_result(result: dict) -> str:
    lines = [f"{result['model']}: busy means a background texture above {result['busy_texture_above']:.1f} levels"]
    for half, groups in result["halves"].items():
        lines.append(f"\n{half} half: photos, accuracy, answered, accuracy of the answers")
        for name in ("plain_and_framed", "others", "busy", "reaching_two_or_more_edges"):
            f = groups[name]
            row = f"{f['photos']:4d}  {percent(f['accuracy']):>8}  {percent(f['answered']):>8}"
            lines.append(f"  {name.replace('_', ' '):28s} {row}  {percent(f['answered_accuracy']):>8}")
        for source, pair in groups["by_source_class"].items():
            good, other = pair["plain_and_framed"], pair["others"]
            lines.append(
                f"    {source:12s} plain and framed {percent(good['accuracy']):>8} of {good['photos']:3d},"
                f" others {percent(other['accuracy']):>8} of {other['photos']:3d}"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path, help="a photo set: labels.csv or class folders (photos-dev)")
    parser.add_argument("--model", type=Path, default=None, help="an .onnx model (default: the shipped cnn.onnx)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    try:
        result = measure(args.photos, args.model or default_model_path())
    except EdgeFmnistError as exc:
        sys.exit(str(exc))
    print(json.dumps(result, indent=2) if args.json else format_result(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
