"""Fashion-MNIST as the runtime sees a photo of it: each image rendered as a photo, then preprocessed.

    edgefmnist train --arch cnn --recipe photo     # builds (or reuses) the set, then trains

The ``i``-th image passed (for training, the ``i``-th of :func:`photo_subset`'s images, not
its index in the split) is rendered with a generator seeded by ``(seed, i)``
(:func:`edgefmnist.photo_render.render_photo`) and turned back into 28x28 by the runtime's own
:func:`edgefmnist.runtime.preprocess.to_dataset_form`, so the network learns exactly what
``edgefmnist infer`` feeds it. The result is cached as ``.npy`` in the user cache, keyed by the
images, their labels (footwear is posed), the seed and the source of the rendering and
preprocessing code. GrabCut runs once
per image, so only every ``STRIDE``-th training image gets a photo view: 13,750 images, a
few minutes on two cores.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from edgefmnist.atomic import write_bytes_atomic
from edgefmnist.console import echo_unless_gone
from edgefmnist.cores import available_cores
from edgefmnist.data import default_cache_dir
from edgefmnist.errors import EdgeFmnistError, first_line, printable

CHUNK = 250  # images per worker task
STRIDE = 4  # the photo view is built for every STRIDE-th training image (GrabCut costs ~30 ms an image)


def render_and_preprocess(
    images: np.ndarray, seed: int, first_index: int, labels: np.ndarray | None = None
) -> np.ndarray:
    """uint8 ``[N, 28, 28]`` -> uint8 ``[N, 28, 28]``: each rendered as a photo and preprocessed.

    ``labels`` (int ``[N]``, the classes) let footwear be posed as phones see it; ``ValueError``
    when there are not as many labels as images.
    """
    check_labels(images, labels)
    from edgefmnist.photo_render import render_photo
    from edgefmnist.runtime.preprocess import to_dataset_form

    out = np.empty_like(images)
    for offset, image in enumerate(images):
        rng = np.random.default_rng([seed, first_index + offset])
        label = None if labels is None else int(labels[offset])
        out[offset] = to_dataset_form(render_photo(image, rng, label=label))
    return out


def check_labels(images: np.ndarray, labels: np.ndarray | None) -> None:
    """``ValueError`` unless ``labels`` is None or holds one label per image."""
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} images")


def photo_subset(count: int) -> np.ndarray:
    """Indices of the training images that get a photo view: every ``STRIDE``-th of ``count``."""
    return np.arange(0, count, STRIDE)


def training_photo_views(
    images: np.ndarray,
    labels: np.ndarray,
    seed: int = 0,
    on_progress: Callable[[int], None] | None = None,
    cache: bool = True,
) -> np.ndarray:
    """The photo views training uses: :func:`photo_views` of the :func:`photo_subset` of a training split.

    ``images`` uint8 ``[N, 28, 28]`` and ``labels`` int ``[N]``; returns uint8 ``[len(photo_subset(N)), 28, 28]``.
    """
    picked = photo_subset(len(images))
    return photo_views(images[picked], seed, on_progress=on_progress, labels=labels[picked], cache=cache)


def code_version() -> str:
    """A digest of the rendering and preprocessing source: a change to either rebuilds the cache."""
    from edgefmnist import photo_render
    from edgefmnist.runtime import bars, preprocess, segment

    source = "".join(inspect.getsource(module) for module in (photo_render, preprocess, bars, segment))
    return hashlib.sha256(source.encode()).hexdigest()[:12]


def cache_path(images: np.ndarray, seed: int, labels: np.ndarray | None = None) -> Path:
    """Where the photo views of ``images`` (and ``labels``) drawn with ``seed`` are cached: named by a
    hash of their bytes and by the rendering code's version, so a change to either builds them anew."""
    digest = hashlib.sha256(images.tobytes())
    if labels is not None:
        digest.update(np.asarray(labels, np.int64).tobytes())
    content = digest.hexdigest()[:12]
    return default_cache_dir() / f"photo-renders-{content}-seed{seed}-{code_version()}.npy"


def photo_views(
    images: np.ndarray,
    seed: int = 0,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    labels: np.ndarray | None = None,
    cache: bool = True,
) -> np.ndarray:
    """The photo view of each image given, uint8 ``[N, 28, 28]``, from the cache or built and cached
    (with ``cache`` False: built, and the cache neither read nor written).

    ``labels`` (int ``[N]``) are the images' classes, so footwear is posed as phones see it
    (``ValueError`` when there are not as many as images).
    ``on_progress(done)`` is called with the number of images finished after each chunk.
    Training passes every ``STRIDE``-th image (:func:`photo_subset`).
    """
    check_labels(images, labels)
    path = cache_path(images, seed, labels)
    cached = read_cached(path, images.shape) if cache else None
    if cached is not None:
        return cached
    workers = workers or available_cores()
    starts = range(0, len(images), CHUNK)
    out = np.empty_like(images)
    with ProcessPoolExecutor(workers, initializer=signal.signal, initargs=(signal.SIGTERM, signal.SIG_DFL)) as pool:
        futures = {
            start: pool.submit(
                render_and_preprocess,
                images[start : start + CHUNK],
                seed,
                start,
                None if labels is None else labels[start : start + CHUNK],
            )
            for start in starts
        }
        done = 0
        for start, future in futures.items():
            out[start : start + CHUNK] = future.result()
            done += len(out[start : start + CHUNK])
            if on_progress is not None:
                on_progress(done)
    if not cache:
        return out
    buffer = io.BytesIO()
    np.save(buffer, out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, buffer.getvalue())
    except (OSError, EdgeFmnistError) as exc:  # a read-only or full cache costs the next run the rebuild, not this one
        echo_unless_gone(printable(f"edgefmnist: warning: photo views not cached: {first_line(exc)}"), err=True)
    return out


def read_cached(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached photo views at ``path`` (uint8 ``shape``), or None when there are none of that
    shape: a missing, truncated or foreign file is rebuilt over, never trusted or raised."""
    try:
        cached = np.load(path, mmap_mode="r")  # a header that claims more than the file holds is a ValueError
    except (OSError, ValueError, EOFError):
        return None
    if not isinstance(cached, np.ndarray):  # an .npz archive: an open file of arrays
        cached.close()
        return None
    return np.array(cached) if cached.shape == shape and cached.dtype == np.uint8 else None
