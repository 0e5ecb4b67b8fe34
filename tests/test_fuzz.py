"""Fuzzing: random and mutated bytes into the image loader, the IDX parser and the model loader.

Only the documented errors may come out: :class:`ImageError`, :class:`DataError` and
:class:`ModelError` (all :class:`EdgeFmnistError`, printed by the CLI as one line). Pictures are
held to :class:`ImageError`, though ``preprocess`` turns any other failure into one line too: a
decoder or OpenCV failure that only that catch-all reports is a bug to find. A hang
fails through hypothesis' deadline. CI runs a bounded number of inputs per target; `make
fuzz` sets ``EDGEFMNIST_FUZZ_SECONDS`` and keeps each target busy that long, printing how
many inputs it tried.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from edgefmnist.runtime.predictor import Predictor, default_model_path
from edgefmnist.runtime.preprocess import ImageError, preprocess_file
from helpers import encoded, idx_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edgefmnist.data import load_idx_images, load_idx_labels
from edgefmnist.errors import DataError, ModelError

FUZZ_SECONDS = float(os.environ.get("EDGEFMNIST_FUZZ_SECONDS", "0"))  # per target; 0: one bounded round
EXAMPLES = int(os.environ.get("EDGEFMNIST_FUZZ_EXAMPLES", "300"))
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES, deadline=5000, database=None, derandomize=False, suppress_health_check=list(HealthCheck)
)


def image_seeds() -> list[bytes]:
    pixels = np.kron(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4, np.ones((4, 4), np.uint8))
    image = Image.fromarray(pixels)
    return [
        encoded(image, "PNG"),
        encoded(image.convert("RGBA"), "PNG"),
        encoded(image, "JPEG", quality=80),
        encoded(image.convert("P"), "GIF"),
        encoded(image, "BMP"),
        encoded(image, "TIFF"),
        encoded(image, "WEBP"),
    ]


def idx_seeds() -> list[bytes]:
    images = idx_bytes(np.random.default_rng(0).integers(0, 256, (3, 28, 28)))
    labels = idx_bytes(np.array([0, 9, 4]))
    return [images, labels, gzip.compress(images), gzip.compress(labels)]


def model_seeds() -> list[bytes]:
    return [(default_model_path().parent / name).read_bytes() for name in ("cnn.int8.onnx", "cnn.onnx")]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """Random bytes, or a seed truncated, bit-flipped, overwritten or spliced."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=2048))
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "overwrite", "splice", "truncate", "header"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[position : position + len(chunk)] = chunk
        elif kind == "splice":
            data[position:position] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "truncate":
            del data[position:]
        else:  # the first bytes hold magic numbers, sizes and counts
            data[: min(len(data), 24)] = draw(st.binary(min_size=0, max_size=24))
    return bytes(data)


def documented_outcome(target: Callable[[Path], object], path: Path, allowed: tuple[type[Exception], ...]) -> None:
    """Run ``target`` on ``path``: success or an ``allowed`` error pass, anything else propagates."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a "nothing found" warning is a documented outcome
        try:
            target(path)
        except allowed:
            pass


def fuzz(
    target: Callable[[Path], object], seeds: list[bytes], suffix: str, allowed: tuple[type[Exception], ...]
) -> int:
    """Feed mutated bytes (as a file) to ``target`` for one round, or for FUZZ_SECONDS; return inputs tried."""
    tried = 0
    with tempfile.TemporaryDirectory(prefix="edgefmnist-fuzz-") as folder:
        path = Path(folder) / f"input{suffix}"

        @FUZZ_SETTINGS
        @given(mutated(seeds))
        def one_input(data: bytes) -> None:
            nonlocal tried
            tried += 1
            path.write_bytes(data)
            documented_outcome(target, path, allowed)

        deadline = time.monotonic() + FUZZ_SECONDS
        one_input()
        while time.monotonic() < deadline:
            one_input()
    return tried


def report(name: str, tried: int, started: float) -> None:
    print(f"\nfuzz {name}: {tried:,} inputs in {time.monotonic() - started:.0f} s, no undocumented exception, no hang")


def load_image(path: Path) -> None:
    pixels = preprocess_file(path)
    assert pixels.shape == (28, 28) and pixels.dtype == np.uint8


def load_idx(path: Path) -> None:
    for loader in (load_idx_images, load_idx_labels):
        try:
            loader(path)
        except DataError:
            pass


def load_model(path: Path) -> None:
    probabilities = Predictor(path, threads=1).predict(np.zeros((1, 28, 28), np.uint8))
    assert probabilities.shape == (1, 10)


CORPUS = Path(__file__).parent / "fuzz_corpus"  # inputs that once escaped as undocumented exceptions
TARGETS = {".png": (load_image, ImageError), ".idx": (load_idx, DataError), ".onnx": (load_model, ModelError)}


@pytest.mark.parametrize("found", sorted(p.name for p in CORPUS.iterdir()))
def test_inputs_fuzzing_once_found_give_documented_errors(found: str, tmp_path: Path) -> None:
    for suffix, (target, allowed) in TARGETS.items():
        path = tmp_path / f"input{suffix}"
        path.write_bytes((CORPUS / found).read_bytes())
        documented_outcome(target, path, (allowed,))


@pytest.mark.slow  # 300 inputs per target: about 20 s of CPU; the corpus replay above stays in the fast set
@pytest.mark.parametrize(
    "name, target, seeds, suffix, allowed",
    [
        ("image loader", load_image, image_seeds, ".png", (ImageError,)),
        ("IDX parser", load_idx, idx_seeds, ".idx", (DataError,)),
        ("model loader", load_model, model_seeds, ".onnx", (ModelError,)),
    ],
)
def test_fuzz(name: str, target, seeds, suffix: str, allowed) -> None:
    started = time.monotonic()
    tried = fuzz(target, seeds(), suffix, allowed)
    assert tried >= EXAMPLES // 2
    report(name, tried, started)
