"""Helpers shared by the test modules (imported as ``from helpers import ...``; no fixtures here).

Test modules import each other never, only this module, ``quant_graphs`` (ONNX graphs for the
int8 tests) and ``conftest``'s fixtures, so that importing one test (the fuzz test, say) pulls in
nothing it does not use: this module imports only the standard library, numpy, Pillow and
``edgefmnist.data``, never torch or onnx.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgefmnist.data import IMAGES_MAGIC, LABELS_MAGIC

REGRESSION_SET = Path(__file__).parent / "data" / "photos"  # photos-dev photos, downscaled (its README)
PHOTOS_DEV = Path(__file__).resolve().parents[2] / "shared" / "photos-dev"  # beside the checkout, where present

HEAVY_MODULES = ("torch", "onnx", "matplotlib", "rich", "pydantic")


def cli_imports_script(modules: tuple[str, ...]) -> str:
    """The CLI run as ``python -c SCRIPT ARGS...``: its last stderr line, ``IMPORTED:a,b``, names
    which of ``modules`` got imported."""
    return (
        "import sys, runpy; sys.argv = ['edgefmnist', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('edgefmnist.cli', run_name='__main__')\n"
        f"finally:\n    bad = [m for m in {modules!r} if m in sys.modules]\n"
        "    print('IMPORTED:' + ','.join(bad), file=sys.stderr)"
    )


TORCH_FREE = cli_imports_script(HEAVY_MODULES)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``edgefmnist ARGS...`` in a subprocess (this interpreter), with text output captured."""
    return subprocess.run(
        [sys.executable, "-m", "edgefmnist.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def run_with_stdout_in(target: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``edgefmnist ARGS... > TARGET`` in a subprocess whose working folder is TARGET's, stderr captured."""
    with open(target, "wb") as redirect:
        return subprocess.run(
            [sys.executable, "-m", "edgefmnist.cli", *args],
            stdout=redirect,
            stderr=subprocess.PIPE,
            text=True,
            cwd=target.parent,
            timeout=300,
        )


def run_in_process(*args: str) -> subprocess.CompletedProcess[str]:
    """``edgefmnist ARGS...`` through ``cli.main`` in this process, output captured at the file-descriptor level too.

    For refusals that need no fresh interpreter: no torch or onnxruntime start-up per call.
    """
    from edgefmnist.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    with tempfile.TemporaryFile() as native_out, tempfile.TemporaryFile() as native_err:
        saved = {fd: os.dup(fd) for fd in (1, 2)}
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(native_out.fileno(), 1)
        os.dup2(native_err.fileno(), 2)
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                try:
                    main(list(args))
                except SystemExit as exc:
                    code = exc.code
        finally:
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
        native_out.seek(0)
        native_err.seek(0)
        out = native_out.read().decode(errors="replace") + stdout.getvalue()
        err = native_err.read().decode(errors="replace") + stderr.getvalue()
    return subprocess.CompletedProcess(list(args), code if isinstance(code, int) else 1, out, err)


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    """The run exited with ``code`` and printed one ``edgefmnist: error:`` line holding every fragment."""
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgefmnist: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def idx_bytes(array: np.ndarray, magic: int | None = None, dims: tuple[int, ...] | None = None) -> bytes:
    """Serialise ``array`` as IDX; ``magic`` and ``dims`` may be forged for corrupt-file tests."""
    dims = array.shape if dims is None else dims
    magic = (IMAGES_MAGIC if array.ndim == 3 else LABELS_MAGIC) if magic is None else magic
    return struct.pack(f">I{len(dims)}I", magic, *dims) + array.astype(np.uint8).tobytes()


def write_idx(path: Path, payload: bytes, gzipped: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if gzipped else payload)
    return path


def write_synthetic_dataset(folder: Path, train: int = 200, test: int = 50, seed: int = 0) -> Path:
    """Four small, valid (but not official) IDX files."""
    rng = np.random.default_rng(seed)
    for prefix, count in (("train", train), ("t10k", test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", idx_bytes(rng.integers(0, 256, (count, 28, 28))))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", idx_bytes(rng.integers(0, 10, count)))
    return folder


def encoded(image: Image.Image, form: str = "PNG", **options: Any) -> bytes:
    """``image`` saved in ``form`` (Pillow's format name) into bytes."""
    buffer = io.BytesIO()
    image.save(buffer, form, **options)
    return buffer.getvalue()


PAPER = 240.0  # white paper under even light, 0-255


def paper_photo(image: np.ndarray, lighting: Any, angle: float = 0.0, scale: int = 8, margin: int = 40) -> Image.Image:
    """A uint8 ``[28, 28]`` dataset image printed dark on white paper, lit, rotated, saved as JPEG q90.

    ``lighting`` is an :class:`edgefmnist.photo_render.Lighting` (its ``field`` multiplies the
    photo); the garment spans ``28 * scale`` pixels inside a ``margin`` of paper on each side.
    """
    big = np.asarray(Image.fromarray(image).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC), np.float64)
    side = 28 * scale + 2 * margin
    paper = np.full((side, side), PAPER)
    paper[margin:-margin, margin:-margin] = PAPER * (1 - big / 255.0)
    photo = paper[..., None] * lighting.field(side, side)
    picture = Image.fromarray(photo.clip(0, 255).astype(np.uint8), "RGB")
    if angle:
        picture = picture.rotate(angle, Image.Resampling.BILINEAR, fillcolor=tuple(int(c) for c in photo[0, 0]))
    return Image.open(io.BytesIO(encoded(picture, "JPEG", quality=90)))


def without_typicality_reference(model: Path, out: Path, keep_overall: bool = False) -> Path:
    """Save to ``out`` a copy of the .onnx ``model`` as exported before its calibration's typicality
    tables: without ``class_max_logit_quantiles``, and unless ``keep_overall`` without ``max_logit_quantiles``."""
    import onnx

    dropped = ("class_max_logit_quantiles",) if keep_overall else ("class_max_logit_quantiles", "max_logit_quantiles")
    proto = onnx.load(str(model))
    for prop in proto.metadata_props:
        if prop.key == "calibration":
            calibration = json.loads(prop.value)
            prop.value = json.dumps({key: value for key, value in calibration.items() if key not in dropped})
    onnx.save(proto, str(out))
    return out


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: its length, type, data and CRC-32."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` grey pixels, in a few dozen bytes (a bomb's header)."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", zlib.compress(b"\0")) + png_chunk(b"IEND", b"")


def png_with_huge_text(image: Image.Image, after_pixels: bool = False) -> bytes:
    """``image`` as a PNG with a zTXt chunk that inflates to 8 MiB (past Pillow's ``MAX_TEXT_CHUNK``),
    before its pixels or after them."""
    data = encoded(image)
    text = png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"\x00" * (8 << 20)))
    at = len(data) - 12 if after_pixels else 33  # before IEND, or after the signature and IHDR
    return data[:at] + text + data[at:]


def blob_photo(path: Path, seed: int = 0, size: tuple[int, int] = (80, 60)) -> Path:
    """A small JPEG: a dark blob on a light, noisy background (not a uniform picture)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(200, 256, (size[1], size[0], 3), dtype=np.uint8)
    pixels[10:50, 20:60] = rng.integers(0, 80, (40, 40, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def coats_and_hats() -> Any:
    """The model's outputs (``PhotoPredictions``) on ten coats, six right and sure (0.9) and four
    wrong (Bag 0.52), and five hats, sure (Bag 0.9) but atypical (typicality 0.001, the coats 0.5)."""
    from edgefmnist.runtime.photo_eval import PhotoPredictions
    from edgefmnist.runtime.photo_set import Photo

    from edgefmnist import spec

    coat, bag = spec.CLASS_NAMES.index("Coat"), spec.CLASS_NAMES.index("Bag")
    photos = [Photo(Path(f"c{k}.jpg"), "coat", ("Coat",)) for k in range(10)]
    photos += [Photo(Path(f"h{k}.jpg"), "hat", ()) for k in range(5)]
    probabilities = np.full((15, 10), 0.01, np.float32)
    probabilities[:6, coat] = probabilities[10:, bag] = 0.9
    probabilities[6:10, bag] = 0.52
    typicality = np.array([0.5] * 10 + [0.001] * 5)
    return PhotoPredictions(spec.CLASS_NAMES, photos, probabilities, np.zeros(15, bool), [], typicality)
