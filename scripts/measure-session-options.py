"""Which onnxruntime session and run options speed up the predictor: each against the defaults, interleaved.

    taskset -c 1 .venv/bin/python scripts/measure-session-options.py models/mlp.int8.onnx models/cnn.int8.onnx

For each model, six variants of the predictor's single-image onnxruntime call (IOBinding with
pre-bound buffers through ``predictor.bound_run``, 1 thread; without the predictor's own copies
in and out; without the graph optimisers the model's metadata turns off, as the predictor): the
CPU memory arena on or off (``SessionOptions.enable_cpu_mem_arena``), each
with run options None (onnxruntime's Python binding then builds default ones per call), built
once (what the predictor passes), or built once with the run config key
``disable_synchronize_execution_providers=1``. They take turns in 40 blocks of 100 calls; each
block's median is divided by that of onnxruntime's defaults (arena on, run options None) in the
same round, and the table gives the median ratio with the 10th-90th percentile of the blocks.
Then batch-256 throughput with the arena on and off (8 rounds of 3 calls, same ratios).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from edgefmnist.runtime.bench import time_calls
from edgefmnist.runtime.metadata import read_metadata
from edgefmnist.runtime.predictor import (
    INPUT_DTYPES,
    INPUT_NAME,
    OUTPUT_NAMES,
    SingleImageBinding,
    open_session,
)

from edgefmnist.data import load_test_split
from edgefmnist.errors import EdgeFmnistError, printable


def session(path: str, arena: bool) -> ort.InferenceSession:
    return open_session(Path(path), read_metadata(Path(path)), 1, arena=arena)


def run_options(kind: str) -> ort.RunOptions | None:
    """None, run options built once (``"once"``), or built once with the synchronisation skipped (``"sync off"``)."""
    if kind == "none":
        return None
    options = ort.RunOptions()
    if kind == "sync off":
        options.add_run_config_entry("disable_synchronize_execution_providers", "1")
    return options


def single_image_call(path: str, image: np.ndarray, arena: bool, options_kind: str) -> Callable[[object], object]:
    sess = session(path, arena)
    dtype = np.dtype(INPUT_DTYPES[sess.get_inputs()[0].type])
    binding = SingleImageBinding(sess, 10, dtype, run_options(options_kind))
    binding.image[...] = image
    return lambda _: binding.run_bound()  # bench.time_calls' runner; the binding's buffers must outlive the calls


def ratios(samples: dict[str, list[float]], base: str) -> dict[str, str]:
    out = {}
    for name, values in samples.items():
        r = np.array(values) / np.array(samples[base])
        out[name] = (
            f"{np.median(values):9.1f}  {np.median(r):.3f} [{np.percentile(r, 10):.3f}-{np.percentile(r, 90):.3f}]"
        )
    return out


def main(paths: list[str]) -> None:
    images = load_test_split().images
    for path in paths:
        calls = {
            f"arena={arena!s:5} run options={kind:8}": single_image_call(path, images[0], arena, kind)
            for arena in (True, False)
            for kind in ("none", "once", "sync off")
        }
        timed = time_calls(calls, dict.fromkeys(calls, images[:1]), calls=40 * 100, warmup=500, blocks=40)
        samples = {name: [float(np.median(block)) / 1000 for block in blocks] for name, blocks in timed.items()}
        print(f"{path}: batch-1 µs, ratio to arena on, run options None [10th-90th percentile of 40 blocks]")
        for name, text in ratios(samples, next(iter(calls))).items():
            print(f"  {name}  {text}")
        batch = np.resize(images, (256, 28, 28))[:, None]
        sessions = {f"arena={arena}": session(path, arena) for arena in (True, False)}
        throughput: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(8):
            for name, sess in sessions.items():
                inputs = {INPUT_NAME: batch.astype(INPUT_DTYPES[sess.get_inputs()[0].type])}
                times = []
                for _ in range(3):
                    began = time.perf_counter()
                    sess.run([OUTPUT_NAMES[0]], inputs)
                    times.append(time.perf_counter() - began)
                throughput[name].append(256 / float(np.median(times)))
        print(f"{path}: batch-256 images/s, ratio to the arena on")
        for name, text in ratios(throughput, "arena=True").items():
            print(f"  {name:11s}  {text}")


def parse_args(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="+", metavar="MODEL", help="ONNX models to time, e.g. models/mlp.int8.onnx")
    args = parser.parse_args(argv)
    for path in args.models:
        try:
            read_metadata(Path(path))
        except EdgeFmnistError as exc:  # a missing file, not an ONNX model, not one of ours
            parser.error(printable(str(exc)))
    return args.models


if __name__ == "__main__":
    main(parse_args())
