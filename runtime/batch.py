"""Many picture files at once: decode and preprocess on every core, run the model in batches.

    edgefmnist infer --image photos/              # a folder of phone photos
    edgefmnist infer --image 'shop/*.jpg' --workers 2

Decoding a phone-size JPEG and separating its garment (GrabCut) costs tens of milliseconds per
picture, the model tens of microseconds per image. So the pictures are preprocessed by a pool
of worker threads (Pillow's decoder and OpenCV's GrabCut release the GIL for most of their
work, so threads run in parallel, share the one model session and cost no process start-up),
and the 28x28 results are classified ``batch_size`` at a time.

Memory stays bounded whatever the number of files: at most ``window`` pictures (twice the
workers) are submitted at a time, each worker holds one picture while it decodes it (JPEGs
at reduced scale, :mod:`edgefmnist.runtime.picture`), and what waits for the model is
28x28 uint8 images (784 bytes each), at most ``batch_size`` of them.

Threads pay only when a picture costs milliseconds. A 28x28 PNG in dataset form costs a
fraction of one, nearly all of it Python holding the GIL, and two threads handing it back and
forth ran at 0.66x one thread. So by default pictures are preprocessed in the calling thread
and timed, and the pool takes over the rest as soon as the last ``PROBE_PICTURES`` readable
ones took ``PARALLEL_ABOVE_SECONDS`` or more (median): a folder of photos starts it at the
third picture, a folder of 28x28 PNGs never, and a mixed folder when its photos begin.

Results come back in the input order; a picture that cannot be read or preprocessed becomes
its own one-line error and the others go on.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from edgefmnist.runtime.preprocess import Preprocessed

from edgefmnist.cores import available_cores
from edgefmnist.errors import EdgeFmnistError

DEFAULT_BATCH_SIZE = 64
PROBE_PICTURES = 3  # the default's decision looks at the last this many readable pictures
PARALLEL_ABOVE_SECONDS = 0.002  # their median time from which the default starts the pool on every core
Result = TypeVar("Result")


def default_workers() -> int:
    """Preprocessing threads: the cores this process may run on."""
    return available_cores()


@dataclass(frozen=True)
class PreparedPicture:
    """One picture after preprocessing: its :class:`Preprocessed` form, or the error that stopped it."""

    path: Path
    preprocessed: Preprocessed | None = None
    error: str = ""  # the one-line reason the picture could not be preprocessed

    def form(self) -> Preprocessed:
        """The preprocessed form; raises ``ValueError`` for a picture that failed (its ``error``)."""
        if self.preprocessed is None:
            raise ValueError(f"{self.path} was not preprocessed: {self.error}")
        return self.preprocessed


Preprocess = Callable[[Path], Preprocessed]


def prepare(path: Path, preprocess: Preprocess) -> PreparedPicture:
    """``preprocess(path)`` as a :class:`PreparedPicture`; an :class:`EdgeFmnistError` becomes its ``error``."""
    try:
        picture = preprocess(path)
    except EdgeFmnistError as exc:
        return PreparedPicture(path, error=str(exc))
    return PreparedPicture(path, picture)


def preprocess_in_order(
    paths: Iterable[Path], preprocess: Preprocess, workers: int | None = None, window: int | None = None
) -> Generator[PreparedPicture, None, None]:
    """``preprocess(path)`` of every path on ``workers`` threads, yielded in the order of ``paths``.

    ``preprocess`` returns a :class:`Preprocessed` (pixels, "nothing found" reason, photo flag) and raises
    :class:`EdgeFmnistError` for a picture it cannot handle (that picture's ``error``; any other
    exception is a bug and propagates). At most ``window`` (default ``2 * workers``) pictures
    are submitted and not yet yielded. One worker runs everything in the calling thread.
    ``workers=None`` preprocesses in the calling thread, timing each picture, until the last
    ``PROBE_PICTURES`` readable pictures took ``PARALLEL_ABOVE_SECONDS`` or more (median); the
    rest then go to :func:`default_workers` threads. Pictures that fail (fast, whatever their
    size) are not timed.
    """
    remaining = iter(paths)
    if workers is None:
        recent: deque[float] = deque(maxlen=PROBE_PICTURES)
        for path in remaining:
            started = time.perf_counter()
            picture = prepare(path, preprocess)
            if not picture.error:
                recent.append(time.perf_counter() - started)
            yield picture
            if len(recent) == PROBE_PICTURES and statistics.median(recent) >= PARALLEL_ABOVE_SECONDS:
                break
        else:
            return
        workers = default_workers()
    if workers == 1:
        for path in remaining:
            yield prepare(path, preprocess)
        return
    window = max(workers, window or 2 * workers)
    pending: deque[Future[PreparedPicture]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edgefmnist-preprocess") as pool:
        try:
            for path in remaining:
                pending.append(pool.submit(prepare, path, preprocess))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # a consumer that stops early (or an exception) must not wait for the rest
            for future in pending:
                future.cancel()


def classify_in_batches(
    pictures: Iterable[PreparedPicture],
    classify: Callable[[list[PreparedPicture]], list[Result]],
    failed: Callable[[PreparedPicture], Result],
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[Result]:
    """One result per picture, in order.

    ``classify`` gets the pictures that have pixels, up to ``batch_size`` at once, and returns one
    result for each; ``failed`` makes the result of a picture with an ``error``.
    """
    ready: list[PreparedPicture] = []
    waiting: list[PreparedPicture] = []  # in order: the errors keep their place between classified pictures
    for picture in pictures:
        waiting.append(picture)
        if not picture.error:
            ready.append(picture)
        if len(waiting) >= batch_size:
            yield from _flush(waiting, ready, classify, failed)
            waiting, ready = [], []
    yield from _flush(waiting, ready, classify, failed)


def _flush(
    waiting: list[PreparedPicture],
    ready: list[PreparedPicture],
    classify: Callable[[list[PreparedPicture]], list[Result]],
    failed: Callable[[PreparedPicture], Result],
) -> Iterator[Result]:
    classified = iter(classify(ready) if ready else [])
    for picture in waiting:
        yield failed(picture) if picture.error else next(classified)
