"""Classify picture files: what ``edgefmnist infer`` does (torch-free).

    edgefmnist infer --image shirt.jpg --image 'photos/*.png' --top-k 3 --json
    edgefmnist infer --image hat.jpg --min-confidence 0.6

The verdict is "unsure" when the top (calibrated) probability is not above the threshold
(``spec.DEFAULT_MIN_CONFIDENCE`` unless given) or when the picture is uniform: an honest
answer for pictures outside what Fashion-MNIST covers. Unsure is an answer, not an error.
"""

from __future__ import annotations

import glob
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from edgefmnist.runtime.batch import Preprocessed, classify_in_batches, preprocess_in_order
from edgefmnist.runtime.predictor import Predictor
from edgefmnist.runtime.preprocess import NothingFound, preprocess_file

from edgefmnist import spec
from edgefmnist.errors import EdgeFmnistError, first_line

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def is_unsure(probability: float, min_confidence: float, nothing_found: bool = False) -> bool:
    """The verdict rule: unsure when nothing was found or ``probability <= min_confidence``.

    So ``min_confidence=0`` never says unsure about a real object (a top probability of 10
    classes is at least 0.1) and ``min_confidence=1`` always does.
    """
    return nothing_found or probability <= min_confidence


@dataclass
class Classified:
    """The result for one picture: a prediction (possibly unsure), or the one-line reason it failed.

    ``label``/``probability``/``top_k`` hold the model's best guess even when ``unsure`` is set.
    """

    image: str
    label: str = ""
    index: int = -1
    probability: float = 0.0
    top_k: list[dict] = field(default_factory=list)
    warning: str = ""
    error: str = ""
    true_label: str = ""  # known for test-set samples only
    unsure: bool = False

    def to_dict(self) -> dict:
        if self.error:
            return {"image": self.image, "error": self.error}
        result = {
            "image": self.image,
            "label": self.label,
            "index": self.index,
            "probability": self.probability,
            "unsure": self.unsure,
            "top_k": self.top_k,
        }
        optional = {"warning": self.warning, "true_label": self.true_label}
        return {**result, **{key: value for key, value in optional.items() if value}}

    def line(self) -> str:
        """``shirt.jpg: Shirt 0.91 (T-shirt/top 0.06, Pullover 0.02)``, or when unsure
        ``hat.jpg: unsure (T-shirt/top 0.38, Bag 0.21)`` (all of the top k in the parentheses)."""
        shown = self.top_k if self.unsure else self.top_k[1:]
        others = ", ".join(f"{entry['label']} {entry['probability']:.2f}" for entry in shown)
        verdict = "unsure" if self.unsure else f"{self.label} {self.probability:.2f}"
        line = f"{self.image}: {verdict}" + (f" ({others})" if others else "")
        if self.true_label:
            mark = "?" if self.unsure else "✓" if self.true_label == self.label else "✗"
            line += f"  [true: {self.true_label} {mark}]"
        return line


def expand_images(patterns: list[str]) -> list[Path]:
    """Files as given, image files inside directories, and glob matches, in order, without repeats."""
    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not images:
                raise EdgeFmnistError(f"{path}: a folder with no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            found.extend(images)
        elif not path.exists() and glob.has_magic(pattern):
            matches = sorted(Path(p) for p in glob.glob(pattern))
            if not matches:
                raise EdgeFmnistError(f"{pattern}: no files match")
            found.extend(matches)
        else:
            found.append(path)  # a missing file is reported per image
    return list(dict.fromkeys(found))


def top_k(probabilities: np.ndarray, class_names: tuple[str, ...], k: int) -> list[dict]:
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [{"label": class_names[i], "probability": float(probabilities[i])} for i in order]


def check_min_confidence(min_confidence: float) -> float:
    """Return ``min_confidence``; raise :class:`EdgeFmnistError` unless it lies in 0..1."""
    if not 0.0 <= min_confidence <= 1.0:
        raise EdgeFmnistError(f"--min-confidence {min_confidence}: expected a probability between 0 and 1")
    return min_confidence


def classify_arrays(
    predictor: Predictor,
    images: np.ndarray,
    names: list[str],
    k: int,
    min_confidence: float = spec.DEFAULT_MIN_CONFIDENCE,
    nothing_found: list[str] | None = None,
) -> list[Classified]:
    """Classify uint8 images ``[N, 28, 28]`` in one call.

    ``nothing_found[i]``, when not empty, is preprocessing's :class:`NothingFound` message for
    image i: it becomes the result's warning and makes the verdict unsure.
    """
    check_min_confidence(min_confidence)
    probabilities = predictor.predict(images)
    empty = nothing_found or [""] * len(names)
    results = []
    for name, row, reason in zip(names, probabilities, empty, strict=False):
        best = int(row.argmax())
        results.append(
            Classified(
                name,
                predictor.class_names[best],
                best,
                float(row[best]),
                top_k(row, predictor.class_names, k),
                warning=reason,
                unsure=is_unsure(float(row[best]), min_confidence, bool(reason)),
            )
        )
    return results


def preprocess_noting_emptiness(path: Path) -> tuple[np.ndarray, str]:
    """``preprocess_file(path)`` and its :class:`NothingFound` message ("" when an object was found).

    Returns uint8 ``[28, 28]`` and the message; raises :class:`EdgeFmnistError` for an unreadable
    file, and for any other failure of preprocessing, so that one picture never stops a batch.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NothingFound)
        try:
            pixels = preprocess_file(path)
        except EdgeFmnistError:
            raise
        except Exception as exc:  # a decoder or OpenCV failure on one odd picture
            raise EdgeFmnistError(
                f"{path}: cannot preprocess this picture ({type(exc).__name__}: {first_line(exc)})"
            ) from None
    return pixels, next((str(w.message) for w in caught if issubclass(w.category, NothingFound)), "")


def classify_files(
    predictor: Predictor,
    paths: list[Path],
    k: int = 3,
    save_preprocessed: Path | None = None,
    min_confidence: float = spec.DEFAULT_MIN_CONFIDENCE,
    workers: int | None = None,
) -> list[Classified]:
    """Classify each file, in order; a file that cannot be read gets an ``error`` instead of a prediction.

    Pictures are preprocessed on ``workers`` threads (default: the available cores) and classified
    in batches (:mod:`edgefmnist.runtime.batch`).
    """

    def classify(pictures: list[Preprocessed]) -> list[Classified]:
        pixels = np.stack([picture.pixels for picture in pictures if picture.pixels is not None])
        names = [str(picture.path) for picture in pictures]
        results = classify_arrays(
            predictor, pixels, names, k, min_confidence, [picture.nothing_found for picture in pictures]
        )
        if save_preprocessed is not None:
            for picture, image in zip(pictures, pixels, strict=True):
                save_png(preprocessed_path(save_preprocessed, picture.path, len(paths)), image)
        return results

    pictures = preprocess_in_order(paths, preprocess_noting_emptiness, workers)
    return list(
        classify_in_batches(pictures, classify, lambda picture: Classified(str(picture.path), error=picture.error))
    )


def preprocessed_path(target: Path, source: Path, count: int) -> Path:
    """One image: ``target`` is the file; several: a folder that gets ``NAME.png`` for each."""
    return target if count == 1 else target / f"{source.stem}.png"


def save_png(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    from edgefmnist.atomic import atomic_write

    with atomic_write(path) as tmp:
        Image.fromarray(pixels, "L").save(tmp, format="PNG")


def parse_sample(text: str, size: int) -> range:
    """``"0:5"`` -> ``range(0, 5)``; ``"7"`` -> ``range(7, 8)``; bounds checked against ``size``."""
    try:
        start, colon, stop = text.partition(":")
        first = int(start) if start else 0
        last = (int(stop) if stop else size) if colon else first + 1
    except ValueError:
        raise EdgeFmnistError(f"--sample {text}: expected START:STOP, e.g. 0:5") from None
    if not 0 <= first < last <= size:
        raise EdgeFmnistError(f"--sample {text}: indices must lie within 0:{size}")
    return range(first, last)
