#!/usr/bin/env python3
"""Which photos the default model reads best: accuracy by background texture and by framing.

    .venv/bin/python scripts/measure-photo-conditions.py ../shared/photos-dev
    .venv/bin/python scripts/measure-photo-conditions.py ../shared/photos-dev --json

Every in-domain photo of a photo set (a ``labels.csv`` like photos-dev's, or Fashion-MNIST
class folders) is classified as ``evaluate`` classifies it (``predict_photos``, default
thresholds), and two things are measured on the picture that GrabCut segments
(``preprocess.segmentation_input``, 96 px on its longer side) with its mask
(``segment.foreground_mask``):

- **background texture**: the standard deviation (luminance levels, 0-255) of the
  flat-fielded picture (``segment.flatten_light``) over the frame's outer band
  (``segment.BANDS[0]``, 6 % of the longer side) outside the mask. The photos are put in
  three bands by the choice half's tertiles (``photo_split``): plain, middle and busy. A busy
  background is mostly wood grain, a patterned rug, tiles or clutter; the middle band holds
  many of those too.
- **framing**: how many of the frame's four edges the mask reaches (within ``EDGE_MARGIN``
  pixels): 0, 1, 2, or 3 and 4 (the garment fills the frame, or GrabCut took the floor for it).

For each half it prints the photos, the in-domain accuracy (forced answer), the share answered
at the default thresholds and the accuracy of those answers, per band, then the accuracy per
source class of busy and other photos. Unreadable photos are counted on stderr. Nothing is
written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from edgefmnist.runtime.photo_eval import PhotoPredictions, predict_photos
from edgefmnist.runtime.photo_set import load_photo_set, photo_split
from edgefmnist.runtime.picture import load_picture, to_luminance
from edgefmnist.runtime.predictor import Predictor, default_model_path
from edgefmnist.runtime.preprocess import segmentation_input
from edgefmnist.runtime.segment import BANDS, flatten_light, foreground_mask, outer_band
from PIL import Image

from edgefmnist import spec
from edgefmnist.errors import EdgeFmnistError

TERTILES = (1 / 3, 2 / 3)  # of the choice half's textures: the bounds of the plain, middle and busy bands
EDGE_MARGIN = 2  # pixels at 96 px: a mask this close to an edge reaches it
TEXTURE_BANDS = ("plain", "middle", "busy")
EDGE_BANDS = ("0 edges", "1 edge", "2 edges", "3-4 edges")


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
    """The figures of every band on both halves, as a dict (``--json`` prints it)."""
    photos = [p for p in load_photo_set(folder) if p.in_domain]
    if not photos:
        raise EdgeFmnistError(f"{folder}: no in-domain photo (a labels.csv with accepted classes, or class folders)")
    predictions = predict_photos(Predictor(model), photos, progress=lambda items, _: items)
    if predictions.errors:
        print(f"{len(predictions.errors)} unreadable photos left out", file=sys.stderr)
    if not predictions.photos:
        raise EdgeFmnistError(f"{folder}: no readable in-domain photo")
    halves = np.array([photo_split(p.path.name) for p in predictions.photos])
    if not (halves == "choice").any():
        raise EdgeFmnistError(
            f"{folder}: all {len(halves)} in-domain photos are in the report half, "
            "and the texture bands are set on the choice half"
        )
    conditions = np.array([photo_conditions(p.path) for p in predictions.photos])
    texture, edges = conditions[:, 0], conditions[:, 1]
    bounds = [float(b) for b in np.quantile(texture[halves == "choice"], TERTILES)]
    texture_band = np.digitize(texture, bounds, right=True)  # 0 plain, 1 middle, 2 busy
    edge_band = np.minimum(edges, 3).astype(int)
    sources = np.array([p.source_class for p in predictions.photos])
    result: dict = {"model": str(model), "texture_bounds": bounds, "halves": {}}
    for half in ("choice", "report"):
        inside = halves == half
        result["halves"][half] = {
            "texture": {
                name: figures(predictions, inside & (texture_band == k)) for k, name in enumerate(TEXTURE_BANDS)
            },
            "edges": {name: figures(predictions, inside & (edge_band == k)) for k, name in enumerate(EDGE_BANDS)},
            "by_source_class": {
                s: {
                    "busy": figures(predictions, inside & (texture_band == 2) & (sources == s)),
                    "others": figures(predictions, inside & (texture_band < 2) & (sources == s)),
                }
                for s in predictions.sources()
            },
        }
    return result


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def format_result(result: dict) -> str:
    low, high = result["texture_bounds"]
    lines = [f"{result['model']}: texture bands plain <= {low:.1f} < middle <= {high:.1f} < busy (levels)"]
    for half, groups in result["halves"].items():
        lines.append(f"\n{half} half: photos, accuracy, answered, accuracy of the answers")
        for kind in ("texture", "edges"):
            for name, f in groups[kind].items():
                row = f"{f['photos']:4d}  {percent(f['accuracy']):>8}  {percent(f['answered']):>8}"
                lines.append(f"  {kind} {name:10s} {row}  {percent(f['answered_accuracy']):>8}")
        for source, pair in groups["by_source_class"].items():
            busy, other = pair["busy"], pair["others"]
            lines.append(
                f"    {source:12s} busy {percent(busy['accuracy']):>8} of {busy['photos']:3d},"
                f" others {percent(other['accuracy']):>8} of {other['photos']:3d}"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "photos",
        type=Path,
        help="a photo set: a folder with a labels.csv (as ../shared/photos-dev) or Fashion-MNIST class folders",
    )
    parser.add_argument("--model", type=Path, default=None, help="an .onnx model (default: the shipped cnn.onnx)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if not args.photos.is_dir():
        sys.exit(f"{args.photos}: no such folder")
    try:
        result = measure(args.photos, args.model or default_model_path())
    except EdgeFmnistError as exc:
        sys.exit(str(exc))
    print(json.dumps(result, indent=2) if args.json else format_result(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
