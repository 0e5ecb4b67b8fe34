"""``edgefmnist bench --photos``: pictures per second of ``infer`` on files, one worker against all cores.

    edgefmnist bench --photos                 # 28x28 PNGs and 12 MP phone-size JPEGs

The pictures are built from Fashion-MNIST test images in a temporary folder: the images
themselves as 28x28 PNGs (dataset form: no segmentation), and the same garments as phone
photos (:func:`phone_jpeg`: dark on a light floor under uneven light, with sensor noise,
4000x3000, JPEG quality 90), which take the whole photo path (reduced-scale decode, GrabCut,
light correction). Each folder is classified with :func:`edgefmnist.runtime.infer.classify_files`
(preprocessing, batched inference, results in order), in turn with one worker, with every
available core and with the default (which times the first pictures and uses every core only
when they cost milliseconds), ``rounds`` times; the figures are medians and the speed-ups are
the medians of the per-round ratios to one worker.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
from edgefmnist.runtime.batch import default_workers
from edgefmnist.runtime.infer import classify_files
from edgefmnist.runtime.predictor import Predictor
from PIL import Image

PHONE_SIZE = (4000, 3000)  # 12 MP, a phone camera's 4:3 frame
NOISE_SIGMA = 6.0  # sensor noise, in 0-255 steps
JPEG_QUALITY = 90
GARMENT_SHARE = 0.7  # the garment's square covers this share of the frame's shorter side


def phone_jpeg(pixels: np.ndarray, path: Path, size: tuple[int, int] = PHONE_SIZE, seed: int = 0) -> Path:
    """A Fashion-MNIST image (uint8 ``[28, 28]``) as a phone photo of ``size`` (width, height) at ``path``.

    The garment is the image negated (dark on a light floor, as Fashion-MNIST's products were
    on white), enlarged bicubically, lit by a left-to-right gradient (0.75-1.0), with Gaussian
    noise of :data:`NOISE_SIGMA` and a slight warm cast; saved as a JPEG of :data:`JPEG_QUALITY`.
    """
    width, height = size
    side = int(GARMENT_SHARE * min(size))
    garment = np.asarray(Image.fromarray(255 - pixels, "L").resize((side, side), Image.Resampling.BICUBIC))
    canvas = np.full((height, width), 255, np.uint8)
    top, left = (height - side) // 2, (width - side) // 2
    canvas[top : top + side, left : left + side] = garment
    light = np.linspace(0.75, 1.0, width, dtype=np.float32)
    rng = np.random.default_rng(seed)
    photo = np.empty((height, width, 3), np.uint8)
    for rows in range(0, height, 500):  # in bands: the whole frame in float32 would be 144 MB
        band = canvas[rows : rows + 500].astype(np.float32) * light
        photo[rows : rows + 500] = with_sensor_noise(band[..., None] * np.array([1.0, 0.97, 0.92], np.float32), rng)
    Image.fromarray(photo, "RGB").save(path, quality=JPEG_QUALITY)
    return path


def with_sensor_noise(band: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """float32 pixels (0-255) plus Gaussian noise of :data:`NOISE_SIGMA`, rounded to uint8 (same shape).

    Callers pass a frame in bands of rows: a 12 MP frame in float32 would be 144 MB."""
    noisy = band + rng.normal(0.0, NOISE_SIGMA, band.shape).astype(np.float32)
    return np.clip(noisy + 0.5, 0, 255).astype(np.uint8)


def build_pictures(
    images: np.ndarray, folder: Path, count: int, phone: bool, distinct: int = 8, size: tuple[int, int] = PHONE_SIZE
) -> list[Path]:
    """``count`` picture files in ``folder`` made from ``images`` (uint8 ``[N, 28, 28]``), in order.

    PNGs are the images themselves; phone JPEGs (:func:`phone_jpeg`) are made from the first
    ``distinct`` images and copied, since making a 12 MP JPEG costs more than classifying it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if not phone:
        paths = [folder / f"test-{i:04d}.png" for i in range(count)]
        for path, pixels in zip(paths, images, strict=False):
            Image.fromarray(pixels, "L").save(path)
        return paths
    originals = [phone_jpeg(images[i], folder / f"original-{i}.jpg", size, seed=i) for i in range(distinct)]
    paths = [folder / f"phone-{i:04d}.jpg" for i in range(count)]
    for i, path in enumerate(paths):
        shutil.copyfile(originals[i % distinct], path)
    for original in originals:
        original.unlink()
    return paths


def pictures_per_second(predictor: Predictor, paths: list[Path], workers: int | None) -> float:
    """Pictures per second of ``classify_files`` on ``paths`` with ``workers`` threads (None: the default)."""
    start = time.perf_counter()
    list(classify_files(predictor, paths, workers=workers))  # the results come as they are classified
    return len(paths) / (time.perf_counter() - start)


def compare_workers(predictor: Predictor, paths: list[Path], workers: int, rounds: int = 3) -> dict[str, float]:
    """One worker, ``workers`` and the default in turn, ``rounds`` times: median pictures/s and speed-ups."""
    single, parallel, default = [], [], []
    for _ in range(rounds):
        single.append(pictures_per_second(predictor, paths, 1))
        parallel.append(pictures_per_second(predictor, paths, workers))
        default.append(pictures_per_second(predictor, paths, None))
    return {
        "pictures": len(paths),
        "workers": workers,
        "one_worker_per_s": round(float(np.median(single)), 1),
        "all_workers_per_s": round(float(np.median(parallel)), 1),
        "speedup": round(float(np.median(np.array(parallel) / np.array(single))), 2),
        "default_per_s": round(float(np.median(default)), 1),
        "default_speedup": round(float(np.median(np.array(default) / np.array(single))), 2),
    }


def photo_bench(model: Path, images: np.ndarray, scratch: Path, pngs: int = 1000, jpegs: int = 60) -> dict:
    """The ``--photos`` section: 28x28 PNGs and 12 MP JPEGs made from ``images``, under ``scratch``."""
    predictor = Predictor(model, threads=1)
    workers = default_workers()
    return {
        "model": model.name,
        "png_28x28": compare_workers(predictor, build_pictures(images, scratch / "png", pngs, phone=False), workers),
        "jpeg_12mp": compare_workers(predictor, build_pictures(images, scratch / "jpeg", jpegs, phone=True), workers),
    }
