"""Many pictures at once: parallel preprocessing in input order, bounded, batched inference, errors in place."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from edgefmnist.runtime.batch import PROBE_PICTURES, PreparedPicture, classify_in_batches, preprocess_in_order
from edgefmnist.runtime.infer import classify_files
from edgefmnist.runtime.photo_bench import build_pictures, compare_workers
from edgefmnist.runtime.predictor import Predictor, default_model_path
from edgefmnist.runtime.preprocess import Preprocessed
from PIL import Image

from edgefmnist.errors import EdgeFmnistError


class SlowPreprocess:
    """A stand-in for per-file preprocessing: random delays, a failure for names containing "bad",
    and a count of calls running at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = self.most_running = self.started = 0
        self.rng = random.Random(0)

    def __call__(self, path: Path) -> Preprocessed:
        with self.lock:
            self.running += 1
            self.started += 1
            self.most_running = max(self.most_running, self.running)
            delay = self.rng.uniform(0, 0.004)
        time.sleep(delay)
        with self.lock:
            self.running -= 1
        if "bad" in path.name:
            raise EdgeFmnistError(f"{path}: cannot identify image file")
        index = int(path.stem.split("-")[-1])
        return Preprocessed(np.full((28, 28), index % 256, np.uint8), "nothing" if index % 7 == 0 else "")


def names(count: int, bad: set[int]) -> list[Path]:
    return [Path(f"{'bad' if i in bad else 'ok'}-{i}.png") for i in range(count)]


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_results_keep_the_input_order_and_errors_stay_in_place(workers: int) -> None:
    preprocess = SlowPreprocess()
    paths = names(60, bad={0, 13, 14, 59})
    results = list(preprocess_in_order(paths, preprocess, workers=workers))
    assert [r.path for r in results] == paths
    for i, result in enumerate(results):
        if "bad" in result.path.name:
            assert result.preprocessed is None and result.error == f"{result.path}: cannot identify image file"
        else:
            assert not result.error and result.preprocessed is not None and result.preprocessed.pixels[0, 0] == i
            assert result.preprocessed.nothing_found == ("nothing" if i % 7 == 0 else "")
    assert preprocess.most_running <= workers


def test_at_most_a_window_of_pictures_is_in_flight() -> None:
    preprocess = SlowPreprocess()
    stream = preprocess_in_order(names(100, bad=set()), preprocess, workers=2, window=4)
    first = next(stream)
    assert first.path == Path("ok-0.png")
    time.sleep(0.05)  # the pool could run ahead here if it were unbounded
    assert preprocess.started <= 4
    consumed = 1 + sum(1 for _ in stream)
    assert consumed == 100 and preprocess.started == 100


def test_a_consumer_that_stops_early_does_not_wait_for_the_rest() -> None:
    preprocess = SlowPreprocess()
    stream = preprocess_in_order(names(1000, bad=set()), preprocess, workers=2)
    next(stream)
    stream.close()
    assert preprocess.started <= 4


def threads_used(paths: list[Path], slow_from: int) -> list[bool]:
    """For each picture preprocessed with the default worker count: did a pool thread do it?

    Pictures before index ``slow_from`` return at once, later ones take 5 ms; "bad" ones fail at once.
    """
    used: dict[Path, bool] = {}

    def preprocess(path: Path) -> Preprocessed:
        used[path] = threading.current_thread() is not threading.main_thread()
        if "bad" in path.name:
            raise EdgeFmnistError(f"{path}: cannot identify image file")
        if int(path.stem.split("-")[-1]) >= slow_from:
            time.sleep(0.005)
        return Preprocessed(np.zeros((28, 28), np.uint8))

    assert [r.path for r in preprocess_in_order(paths, preprocess)] == paths
    return [used[path] for path in paths]


def test_the_default_keeps_cheap_pictures_in_the_calling_thread() -> None:
    assert not any(threads_used(names(12, bad={4}), slow_from=12))


def test_the_default_starts_the_pool_once_pictures_cost_milliseconds() -> None:
    assert threads_used(names(12, bad=set()), slow_from=0) == [False] * PROBE_PICTURES + [True] * 9
    mixed = threads_used(names(20, bad=set()), slow_from=8)  # 28x28 PNGs first, then photos
    pooled_from = 8 + PROBE_PICTURES // 2 + 1  # once most of the last three were slow
    assert not any(mixed[:pooled_from]) and all(mixed[pooled_from:])


def test_failed_pictures_do_not_count_as_cheap() -> None:
    used = threads_used(names(12, bad={0, 1, 2}), slow_from=3)
    assert not any(used[:6]) and all(used[6:])


def test_photo_bench_reports_every_worker_setting(fashion, tmp_path: Path) -> None:
    predictor = Predictor(default_model_path(), threads=1)
    paths = build_pictures(fashion.test.images, tmp_path, 12, phone=False)
    figures = compare_workers(predictor, paths, workers=2, rounds=1)
    assert figures["pictures"] == 12 and figures["workers"] == 2
    for key in ("one_worker_per_s", "all_workers_per_s", "default_per_s", "speedup", "default_speedup"):
        assert figures[key] > 0, key


def test_batches_hold_only_readable_pictures_and_keep_the_order() -> None:
    pictures = [
        PreparedPicture(Path(f"{i}.png"), error="unreadable")
        if i % 4 == 1
        else PreparedPicture(Path(f"{i}.png"), Preprocessed(np.zeros((28, 28), np.uint8)))
        for i in range(23)
    ]
    batches: list[list[str]] = []

    def classify(batch: list[PreparedPicture]) -> list[str]:
        assert all(not p.error for p in batch)
        batches.append([p.path.name for p in batch])
        return [f"label of {p.path.name}" for p in batch]

    results = list(classify_in_batches(pictures, classify, lambda p: f"error of {p.path.name}", batch_size=5))
    assert results == [f"{'error' if i % 4 == 1 else 'label'} of {i}.png" for i in range(23)]
    assert all(1 <= len(batch) <= 5 for batch in batches) and len(batches) >= 4


def test_a_folder_with_a_bad_file_is_classified_in_order_in_parallel(fashion, tmp_path: Path) -> None:
    predictor = Predictor(default_model_path(), threads=1)
    paths = []
    for i in range(40):
        path = tmp_path / f"{i:03d}.png"
        if i == 17:
            path.write_bytes(b"not a picture")
        else:
            Image.fromarray(fashion.test.images[i], "L").save(path)
        paths.append(path)
    sequential = list(classify_files(predictor, paths, workers=1))
    parallel = list(classify_files(predictor, paths, workers=3))
    assert [r.to_dict() for r in parallel] == [r.to_dict() for r in sequential]
    assert [r.image for r in parallel] == [str(p) for p in paths]
    assert parallel[17].error.startswith(str(paths[17])) and not any(r.error for r in parallel[:17] + parallel[18:])
    direct = predictor.predict(fashion.test.images[:17]).argmax(1)
    assert [r.index for r in parallel[:17]] == direct.tolist()


PEAK_RSS = """import resource, sys
from pathlib import Path
from edgefmnist.runtime.infer import classify_files
from edgefmnist.runtime.predictor import Predictor, default_model_path
results = classify_files(Predictor(default_model_path(), threads=1), sorted(Path(sys.argv[1]).iterdir()), workers=2)
errors = [r.error for r in results if r.error]
assert not errors, errors
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_kib(folder: Path) -> int:
    """Peak RSS of a fresh process that classifies every file in ``folder`` with two workers."""
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, str(folder)], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


@pytest.fixture(scope="module")
def phone_jpegs(fashion, tmp_path_factory) -> list[Path]:
    """200 12 MP JPEGs made from test images (10 distinct garments, copied)."""
    return build_pictures(fashion.test.images, tmp_path_factory.mktemp("phone"), 200, phone=True, distinct=10)


@pytest.mark.slow
def test_infer_on_200_phone_jpegs_gives_the_same_results_on_every_worker_count(phone_jpegs: list[Path]) -> None:
    """Two workers give exactly the results of one, in order, on 200 12 MP JPEGs.

    How much faster they are is measured by ``edgefmnist bench --photos`` (one worker against
    all cores, interleaved), not here: a timed test on a shared machine proves nothing.
    """
    predictor = Predictor(default_model_path(), threads=1)
    one, two = (list(classify_files(predictor, phone_jpegs, workers=workers)) for workers in (1, 2))
    assert not any(r.error for r in one)
    assert [r.to_dict() for r in two] == [r.to_dict() for r in one]


@pytest.mark.slow
def test_memory_is_bounded_by_the_pool_not_by_the_number_of_pictures(phone_jpegs: list[Path], tmp_path: Path) -> None:
    """A fresh process that classifies 200 phone JPEGs peaks within 15 % (or 40 MiB) of one that classifies 20."""
    few = tmp_path / "few"
    few.mkdir()
    for path in phone_jpegs[:20]:
        os.link(path, few / path.name)
    small, large = peak_rss_kib(few), peak_rss_kib(phone_jpegs[0].parent)
    assert large <= max(1.15 * small, small + 40 * 1024), (small, large)
