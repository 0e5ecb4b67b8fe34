"""``edgefmnist bench``: accuracy and speed of every model variant, side by side, on this CPU.

    edgefmnist bench                                  # the shipped models (+ PyTorch when installed)
    edgefmnist bench models/mlp.onnx models/mlp.int8.onnx --batch 1,32,256 --threads 1 --json

Every ONNX model is measured twice in the same run: through edgefmnist's :class:`Predictor`
and the plain way (``InferenceSession.run`` with a feed dict; default session options but
the same thread count), so each figure of the predictor has a ratio against plain
onnxruntime. Both get the same input arrays, in the dtype the model's input asks for
(float32, or uint8 pixels). A ``--reference`` model (the int8 files of an earlier release,
kept under ``benchmarks/``) runs plain, in the same timing blocks as the model of the same
architecture and precision, which gets a ratio against it. All the ONNX models of one
architecture (fp32, int8, their references) take turns in the same timing blocks, so an int8
model's ratio to its fp32 model is measured side by side too. Latency is wall time per call
(``time.perf_counter_ns``) after a warm-up; throughput is the batch size over the median
call time; cold start is a fresh Python process (import, load, first inference), timed from
outside, with its peak resident memory. The per-call floor is a one-node graph
(:mod:`edgefmnist.runtime.call_floor`) through ``run`` and through IOBinding.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime
from edgefmnist.runtime.call_floor import floor_runners
from edgefmnist.runtime.machine import machine_info
from edgefmnist.runtime.metadata import read_metadata
from edgefmnist.runtime.picture_files import each_file_once
from edgefmnist.runtime.predictor import INPUT_NAME, Predictor, default_model_path

from edgefmnist.contract import (
    BENCH_BATCHES,
    BENCH_BLOCKS,
    BENCH_RUNS,
    BENCH_WARMUP,
    int8_name,
    is_checkpoint_name,
    is_onnx_name,
    shipped_names,
)
from edgefmnist.data import Split
from edgefmnist.errors import EdgeFmnistError, UsageError, counted, is_utf8, printable
from edgefmnist.metrics import accuracy

REPORT_SCHEMA = 1
ACCURACY_MARGIN = 0.005  # the recommendation: fastest variant within 0.5 points of the best


@dataclass(frozen=True)
class BenchSettings:
    """How ``bench`` measures: batch sizes, intra-op threads, timed and untimed calls, fresh processes."""

    batches: tuple[int, ...] = BENCH_BATCHES
    threads: int = 1
    runs: int = BENCH_RUNS  # timed batch-1 calls per row (throughput runs scale with it)
    warmup: int = BENCH_WARMUP
    cold_starts: int = 3  # fresh processes per row; the median is reported


@dataclass
class BenchRow:
    """One model's row of ``bench``: accuracy (share, 0-1), latency (µs), throughput (images/s), cold
    start (ms), peak memory (MiB) and in-block ratios to other rows (``p50``: this row's time over the
    other's, below 1 is faster; ``throughput_B``: this row's throughput over the other's)."""

    model: str  # file name
    path: str
    engine: str
    precision: str
    size_bytes: int
    accuracy: float
    latency_us: dict[str, float]  # batch 1: p50, p90, p99
    throughput: dict[int, float]  # images/s per batch size
    cold_start_ms: float
    peak_rss_mib: float
    vs_plain: dict[str, float] = field(default_factory=dict)  # edgefmnist / plain onnxruntime
    vs_reference: dict[str, float] = field(default_factory=dict)  # edgefmnist / plain onnxruntime on the reference
    vs_fp32: dict[str, float] = field(default_factory=dict)  # int8 edgefmnist / fp32 edgefmnist, same architecture
    fp32: str = ""  # the fp32 model (path) this int8 row's vs_fp32 compares with
    reference: str = ""  # the reference file this row's vs_reference compares with; for a reference row, "self"
    per_block: dict[str, list[float]] = field(default_factory=dict)  # "p50" (ns) and "throughput_B" in each block
    reference_path: str = ""  # the path of ``reference`` (not in the JSON)

    def to_dict(self) -> dict:
        values = asdict(self)
        del values["per_block"], values["reference_path"]
        values["throughput"] = {str(batch): value for batch, value in self.throughput.items()}
        return values


Runner = Callable[[np.ndarray], np.ndarray]  # [N, 1, 28, 28] in the model's input dtype -> logits [N, 10]


def input_dtype(path: Path) -> np.dtype:
    """What a model's input takes: uint8 when its metadata says so, else float32 (and for checkpoints)."""
    if not is_onnx_name(path):
        return np.dtype(np.float32)
    return np.dtype(read_metadata(path).input.get("dtype", "float32"))


def edgefmnist_runner(path: Path, threads: int) -> Runner:
    """An ONNX model through :class:`Predictor` (its single-image binding for one image)."""
    predictor = Predictor(path, threads=threads)
    return lambda images: predictor.run(images)[0]


def plain_runner(path: Path, threads: int) -> Runner:
    """An ONNX model through a plain ``onnxruntime.InferenceSession``, as its documentation shows it."""
    options = onnxruntime.SessionOptions()  # the defaults, but for the thread count (the same on both sides)
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda images: session.run(None, {INPUT_NAME: images})[0]


def pytorch_runner(path: Path, threads: int) -> Runner:
    """A checkpoint (``.pt``) in PyTorch eval mode, logits and softmax as the ONNX graphs compute them."""
    import torch

    from edgefmnist.checkpoint import load_checkpoint

    torch.set_num_threads(threads)
    net = load_checkpoint(path).net.eval()

    def run(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits = net(torch.from_numpy(images))
            torch.softmax(logits, dim=1)  # the ONNX models compute probabilities too
            return logits.numpy()

    return run


RUNNERS = {"edgefmnist": edgefmnist_runner, "onnxruntime": plain_runner, "pytorch": pytorch_runner}

# A fresh process per cold start: import, load, one inference.
COLD_START = {
    "edgefmnist": "import numpy as np\nfrom edgefmnist.runtime.predictor import Predictor\n"
    "Predictor(path, threads=threads).run(np.zeros((28, 28), np.uint8))",
    "onnxruntime": "import numpy as np, onnxruntime as ort\n"
    "options = ort.SessionOptions(); options.intra_op_num_threads = threads\n"
    "session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])\n"
    "dtype = np.uint8 if session.get_inputs()[0].type == 'tensor(uint8)' else np.float32\n"
    "session.run(None, {'image': np.zeros((1, 1, 28, 28), dtype)})",
    "pytorch": "import torch\nfrom pathlib import Path\nfrom edgefmnist.checkpoint import load_checkpoint\n"
    "torch.set_num_threads(threads)\nnet = load_checkpoint(Path(path)).net.eval()\n"
    "with torch.inference_mode(): net(torch.zeros(1, 1, 28, 28))",
}
CHILD_PROLOGUE = "import sys\npath, threads = sys.argv[1], int(sys.argv[2])\n"

# Run as ``python -S`` (os, sys and time only, about 10 MiB): a child's ru_maxrss starts at the
# launcher's RSS at fork time, which must stay below any measured process's.
LAUNCHER = """import os, sys, time
cpu = int(sys.argv[1])
if cpu >= 0:
    os.sched_setaffinity(0, {cpu})
start = time.perf_counter_ns()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
wall_ms = (time.perf_counter_ns() - start) / 1e6
sys.stderr.write(f"\\n{wall_ms} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}\\n")
"""

# The whole-process comparison for `edgefmnist infer`: the least a Python script can do.
BARE_INFER_SCRIPT = """import sys
import numpy as np
import onnxruntime
from PIL import Image
session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
dtype = np.uint8 if session.get_inputs()[0].type == "tensor(uint8)" else np.float32
image = np.asarray(Image.open(sys.argv[2]).convert("L"), dtype=dtype)[None, None]
print(int(session.run(None, {"image": image})[0].argmax()))
"""


def percentiles_us(samples_ns: list[int]) -> dict[str, float]:
    p50, p90, p99 = np.percentile(samples_ns, [50, 90, 99]) / 1000
    return {"p50": round(float(p50), 2), "p90": round(float(p90), 2), "p99": round(float(p99), 2)}


def time_calls(
    runners: Mapping[str, Callable[[np.ndarray], object]],
    images: dict[str, np.ndarray],
    calls: int,
    warmup: int,
    blocks: int = BENCH_BLOCKS,
) -> dict[str, list[list[int]]]:
    """Nanoseconds of each of ``calls`` runs per runner, block by block, after ``warmup`` untimed ones.

    The runners take turns in ``blocks`` blocks (fewer when there are fewer calls), so that a noisy
    moment on a shared machine hits all of them alike and their ratio stays fair.
    """
    for name, run in runners.items():
        for _ in range(warmup):
            run(images[name])
    samples: dict[str, list[list[int]]] = {name: [] for name in runners}
    clock = time.perf_counter_ns
    blocks = max(1, min(blocks, calls))
    for index in range(blocks):
        for name, run in runners.items():
            block, inputs = [], images[name]
            for _ in range(calls // blocks + (index < calls % blocks)):
                start = clock()
                run(inputs)
                block.append(clock() - start)
            samples[name].append(block)
    return samples


def flat(blocks: list[list[int]]) -> list[int]:
    return [sample for block in blocks for sample in block]


@dataclass(frozen=True)
class ProcessRun:
    """One fresh process, measured: ``wall_ms`` from fork to exit, ``peak_rss_mib`` its own
    ``ru_maxrss`` (MiB), its ``exit_code`` (negative: killed by that signal; None: the launcher
    failed), its ``stdout`` and the last line of its ``stderr``."""

    wall_ms: float
    peak_rss_mib: float
    exit_code: int | None
    stdout: str
    last_error: str


def measure_process(command: list[str], cpu: int | None = None) -> ProcessRun:
    """Run ``command`` (on CPU ``cpu`` alone, if given) in a fresh process and measure it.

    A small launcher forks the process and reads its rusage: Linux carries a parent's memory
    high-water mark across fork and exec, so a child of this (large) process would report this
    process's peak instead of its own. It runs in the temp folder, as ``python -c`` and ``-m``
    put the working folder first on ``sys.path``: in a checkout installed with ``pip install .``,
    the checkout's ``edgefmnist/`` folder (which lacks ``runtime``) would shadow the installed
    package. Paths in ``command`` must be absolute.
    """
    launcher = [sys.executable, "-S", "-c", LAUNCHER, str(-1 if cpu is None else cpu), *command]
    done = subprocess.run(
        launcher, capture_output=True, text=True, errors="backslashreplace", cwd=tempfile.gettempdir()
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    try:
        wall_ms, peak_kib, exit_code = lines[-1].split()
        measured = float(wall_ms), int(peak_kib) / 1024, int(exit_code)  # Linux reports KiB
    except (IndexError, ValueError):
        return ProcessRun(0.0, 0.0, None, done.stdout, lines[-1] if lines else "no output")
    return ProcessRun(*measured, done.stdout, lines[-2] if len(lines) > 1 else "no output")


def run_process(command: list[str], what: str) -> tuple[float, float]:
    """Wall milliseconds and peak RSS (MiB) of one fresh process (:func:`measure_process`).

    Raises :class:`EdgeFmnistError` with the last line of its stderr when it fails."""
    run = measure_process(command)
    if run.exit_code != 0:
        raise EdgeFmnistError(f"benchmark process failed ({what}): {run.last_error}")
    return run.wall_ms, run.peak_rss_mib


def median_of_runs(command: list[str], runs: int, what: str) -> dict[str, float]:
    """Median wall ms and the largest peak RSS over ``runs`` fresh processes."""
    measured = [run_process(command, what) for _ in range(runs)]
    return {
        "wall_ms": round(float(np.median([wall for wall, _ in measured])), 1),
        "peak_rss_mib": round(max(peak for _, peak in measured), 1),
    }


def cold_start(engine: str, path: Path, settings: BenchSettings) -> dict[str, float]:
    """Import, load and one inference with ``engine`` in fresh processes: median ``wall_ms``, top ``peak_rss_mib``."""
    code = CHILD_PROLOGUE + COLD_START[engine]
    command = [sys.executable, "-c", code, os.path.abspath(path), str(settings.threads)]
    return median_of_runs(command, settings.cold_starts, f"{engine} cold start on {path}")


def accuracy_of(run: Runner, test: Split, dtype: np.dtype, batch_size: int = 1000) -> float:
    """Test accuracy of ``run`` fed the test images as ``dtype`` ``[N, 1, 28, 28]``, ``batch_size`` at a time."""
    images = test.images.astype(dtype)[:, None]
    logits = np.concatenate([run(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    return accuracy(logits, test.labels)


def precision_of(path: Path, engine: str) -> str:
    return "fp32" if engine == "pytorch" else read_metadata(path).precision


def runner_name(path: Path, engine: str) -> str:
    """The key of a model's runner in a timing group; ``engine`` "reference" is plain onnxruntime on a reference."""
    return f"{path} via {engine}"


def measure(
    models: list[tuple[Path, tuple[str, ...]]], test: Split, settings: BenchSettings, references: list[Path]
) -> list[BenchRow]:
    """One row per (model, engine) of one architecture, and one per matching reference (plain
    onnxruntime): accuracy on the full test set, batch-1 latency and throughput per batch size,
    all timed in the same blocks so that their ratios are fair, and cold start."""
    pairs = [(path, engine) for path, engines in models for engine in engines]
    pairs += [(reference, "reference") for reference in references]
    timed = {runner_name(path, engine): (path, engine) for path, engine in pairs}
    runners = {
        name: (plain_runner if engine == "reference" else RUNNERS[engine])(path, settings.threads)
        for name, (path, engine) in timed.items()
    }
    dtypes = {name: input_dtype(path) for name, (path, _) in timed.items()}
    single = {name: test.images[:1].astype(dtype)[:, None] for name, dtype in dtypes.items()}
    timings = {1: time_calls(runners, single, settings.runs, settings.warmup)}
    for batch in settings.batches:
        if batch != 1:
            resized = np.resize(test.images, (batch, *test.images.shape[1:]))[:, None]
            images = {name: resized.astype(dtype) for name, dtype in dtypes.items()}
            calls = max(3 * BENCH_BLOCKS, 4 * settings.runs // batch)
            timings[batch] = time_calls(runners, images, calls, warmup=3)
    rows = []
    for name, run in runners.items():
        source, kind = timed[name]
        engine = "onnxruntime" if kind == "reference" else kind
        started = cold_start(engine, source, settings)
        per_block = {"p50": [float(np.median(block)) for block in timings[1][name]]}
        for batch in settings.batches:
            per_block[f"throughput_{batch}"] = [batch / float(np.median(block)) for block in timings[batch][name]]
        rows.append(
            BenchRow(
                model=source.name,
                path=str(source),
                engine=engine,
                precision=precision_of(source, engine),
                size_bytes=source.stat().st_size,
                accuracy=accuracy_of(run, test, dtypes[name]),
                latency_us=percentiles_us(flat(timings[1][name])),
                throughput={
                    batch: round(batch / (float(np.median(flat(timings[batch][name]))) / 1e9), 1)
                    for batch in settings.batches
                },
                cold_start_ms=started["wall_ms"],
                peak_rss_mib=started["peak_rss_mib"],
                reference="self" if kind == "reference" else "",
                per_block=per_block,
            )
        )
    compare_within_group(dict(zip(runners, rows, strict=True)), models, references)
    return rows


def ratios(row: BenchRow, base: BenchRow) -> dict[str, float]:
    """``row``'s batch-1 p50 and throughput per batch size over ``base``'s, ``{"p50", "throughput_B"}``:
    the median over the timing blocks of the two rows' ratio in each block (both rows were timed
    in the same blocks), so that a slow stretch of the machine cancels out of every ratio."""
    return {
        key: round(float(np.median(np.divide(values, base.per_block[key]))), 3) for key, values in row.per_block.items()
    }


def compare_within_group(
    rows: dict[str, BenchRow], models: list[tuple[Path, tuple[str, ...]]], references: list[Path]
) -> None:
    """Fill the ratios of each edgefmnist row against rows timed in the same blocks: ``vs_reference``
    (plain onnxruntime on the reference file of its precision) and, for int8, ``vs_fp32`` (edgefmnist
    on its fp32 parent: the fp32 model that export wrote it beside, ``mlp.onnx`` for ``mlp.int8.onnx``,
    else the group's first fp32 model), naming the file compared with in ``reference`` and ``fp32``.
    ``rows`` are keyed by :func:`runner_name`."""
    ours = {path: rows[runner_name(path, "edgefmnist")] for path, engines in models if "edgefmnist" in engines}
    fp32 = [path for path, row in ours.items() if row.precision == "fp32"]
    for path, row in ours.items():
        reference = matching_reference(path, references)
        if reference is not None:
            row.reference, row.reference_path = reference.name, str(reference)
            row.vs_reference = ratios(row, rows[runner_name(reference, "reference")])
        if row.precision == "int8" and fp32:
            parent = next((model for model in fp32 if is_int8_of(path, model)), fp32[0])
            row.fp32, row.vs_fp32 = str(parent), ratios(row, ours[parent])


def is_int8_of(int8: Path, fp32: Path) -> bool:
    """Whether ``int8`` is where export writes the int8 model of ``fp32`` (names compared in any case)."""
    return int8.parent == fp32.parent and int8.name.lower() == int8_name(fp32.name).lower()


def compare_with_plain(rows: list[BenchRow]) -> None:
    """Fill ``vs_plain`` of each edgefmnist row from the plain-onnxruntime row of the same model."""
    plain = {row.path: row for row in rows if row.engine == "onnxruntime" and row.reference != "self"}
    for row in rows:
        base = plain.get(row.path)
        if row.engine == "edgefmnist" and base is not None:
            row.vs_plain = ratios(row, base)


def name_clashes_by_path(rows: list[BenchRow]) -> None:
    """Name each row whose file name another file shares (``a/mlp.onnx``, ``b/mlp.onnx``) by its path,
    and so each row's ``reference`` that names such a file."""
    paths: dict[str, set[str]] = {}
    for row in rows:
        paths.setdefault(row.model, set()).add(row.path)
    for row in rows:
        if len(paths[row.model]) > 1:
            row.model = row.path
        if len(paths.get(row.reference, ())) > 1:
            row.reference = row.reference_path


def shown_name(rows: list[BenchRow], path: Path) -> str:
    """How the rows name the file at ``path``: its name, or its path when another benched file shares
    the name (:func:`name_clashes_by_path`)."""
    return next((row.model for row in rows if row.path == str(path)), path.name)


def comparable_p50(row: BenchRow, candidates: dict[str, BenchRow]) -> float:
    """``row``'s batch-1 p50 for choosing between models (µs). An int8 row timed beside its fp32 model
    counts as that model's p50 times their in-block ratio (``vs_fp32``), so that the pair compares as
    the shared blocks measured it, not as their pooled p50s (which a change of load between blocks
    can tilt)."""
    parent = candidates.get(row.fp32)
    if parent is None or not row.vs_fp32:
        return row.latency_us["p50"]
    return parent.latency_us["p50"] * row.vs_fp32["p50"]


def recommend(rows: list[BenchRow], margin: float = ACCURACY_MARGIN) -> dict | None:
    """The fastest edgefmnist variant (batch-1 p50, see :func:`comparable_p50`) within ``margin`` of
    the best accuracy."""
    candidates = {row.path: row for row in rows if row.engine == "edgefmnist"}  # references are not candidates
    if not candidates:
        return None
    most_accurate = max(candidates.values(), key=lambda row: row.accuracy)
    best = most_accurate.accuracy
    eligible = [row for row in candidates.values() if row.accuracy >= best - margin]
    fastest = min(eligible, key=lambda row: comparable_p50(row, candidates))
    paired = any(row.fp32 in candidates and row.vs_fp32 for row in eligible)
    return {
        "model": fastest.model,
        "path": fastest.path,
        "precision": fastest.precision,
        "accuracy": fastest.accuracy,
        "p50_us": fastest.latency_us["p50"],
        "rule": f"fastest batch-1 p50{' (int8 against its fp32 model by their in-block ratio)' if paired else ''} "
        f"within {100 * margin:.1f} points of the best accuracy ({most_accurate.model}, {100 * best:.2f} %)",
    }


def infer_overhead(model: Path, test: Split, settings: BenchSettings) -> dict:
    """Whole-process ``edgefmnist infer --image`` against a bare numpy+Pillow+onnxruntime script."""
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="edgefmnist-bench-") as folder:
        image = Path(folder) / "test0.png"
        Image.fromarray(test.images[0]).save(image)
        bare = Path(folder) / "bare.py"
        bare.write_text(BARE_INFER_SCRIPT)
        model_path = os.path.abspath(model)
        commands = {
            "bare": [sys.executable, str(bare), model_path, str(image)],
            "infer": [sys.executable, "-m", "edgefmnist.cli", "infer", "--image", str(image), "--model", model_path],
        }
        figures = {
            name: median_of_runs(command, max(5, settings.cold_starts), f"{name} process on {model}")
            for name, command in commands.items()
        }
    return {
        "model": model.name,
        "bare_script": figures["bare"],
        "edgefmnist_infer": figures["infer"],
        "extra_ms": round(figures["infer"]["wall_ms"] - figures["bare"]["wall_ms"], 1),
        "extra_mib": round(figures["infer"]["peak_rss_mib"] - figures["bare"]["peak_rss_mib"], 1),
        "compiled_from_source": compiled_from_source(),
    }


def compiled_from_source() -> bool:
    """Whether every ``edgefmnist`` process compiles its modules from source: no cached bytecode
    (``__pycache__``) beside them, as with ``PYTHONDONTWRITEBYTECODE`` set on a source checkout.
    That adds about 40 ms to each start on a 2-core AMD EPYC."""
    import importlib.util

    from edgefmnist.runtime import infer

    return not os.path.exists(importlib.util.cache_from_source(infer.__file__))


def shipped_models(torch_available: bool) -> list[Path]:
    """The shipped models, each architecture's checkpoint (with torch), fp32 and int8 model."""
    folder = default_model_path().parent
    return [folder / name for name in shipped_names(checkpoints=torch_available) if (folder / name).is_file()]


def plan(models: list[Path], torch_available: bool) -> Iterator[tuple[Path, tuple[str, ...]]]:
    """(model, engines): each ONNX model through edgefmnist and plain onnxruntime; checkpoints through PyTorch."""
    for path in models:
        if not is_checkpoint_name(path):
            yield path, ("edgefmnist", "onnxruntime")
        elif torch_available:
            yield path, ("pytorch",)
        else:
            raise EdgeFmnistError(f"{path}: benchmarking a checkpoint needs PyTorch: pip install 'edgefmnist[train]'")


def timing_groups(models: list[Path], torch_available: bool) -> list[list[tuple[Path, tuple[str, ...]]]]:
    """:func:`plan` in timing groups: the ONNX models of one architecture (fp32 and int8) together,
    so that they are timed in the same blocks, in the order first met; each checkpoint alone."""
    groups: dict[str, list[tuple[Path, tuple[str, ...]]]] = {}
    for path, engines in plan(models, torch_available):
        key = read_metadata(path).arch if is_onnx_name(path) else str(path)
        groups.setdefault(key, []).append((path, engines))
    return list(groups.values())


def check_names(models: Iterable[Path]) -> None:
    """Raise :class:`EdgeFmnistError` for a model whose path holds a byte that is not UTF-8:
    the plain onnxruntime and PyTorch baselines, in this process and in fresh ones, open models by
    text path, as a user's script would."""
    for model in models:
        if not is_utf8(str(model)):
            raise EdgeFmnistError(f"{model}: the path holds a byte that is not UTF-8, which the baselines cannot open")


def check_references(models: list[Path], references: list[Path]) -> list[Path]:
    """The ``--reference`` files, each once (the same file under two spellings counts once), after
    refusing, with :class:`UsageError`, a file that is also a model to bench, two files of one
    network and precision, and a file with no model of its network and precision to compare with.
    Reads only the files' metadata (:class:`ModelError` for one that is not an edgefmnist model)."""
    unique = {reference.resolve(): reference for reference in each_file_once(references)}
    benched = {model.resolve() for model in models}
    kinds = {(meta.arch, meta.precision) for meta in (read_metadata(m) for m in models if is_onnx_name(m))}
    seen: dict[tuple[str, str], Path] = {}
    for resolved, reference in unique.items():
        if resolved in benched:
            raise UsageError(f"--reference {reference}: also given as a model to bench; give it once")
        metadata = read_metadata(reference)
        kind = (metadata.arch, metadata.precision)
        if kind in seen:
            raise UsageError(
                f"--reference {reference} and {seen[kind]}: both {kind[1]} {kind[0]}; "
                "give one reference per network and precision"
            )
        if kind not in kinds:
            raise UsageError(f"--reference {reference}: no {kind[1]} {kind[0]} model given to compare it with")
        seen[kind] = reference
    return list(unique.values())


def matching_reference(path: Path, references: list[Path]) -> Path | None:
    """The reference of the same architecture and precision as the ONNX model ``path``, if any."""
    if not is_onnx_name(path):
        return None
    wanted = read_metadata(path)
    for reference in references:
        metadata = read_metadata(reference)
        if (metadata.arch, metadata.precision) == (wanted.arch, wanted.precision):
            return reference
    return None


def call_floor(settings: BenchSettings) -> dict[str, dict[str, float]]:
    """Batch-1 latency of the one-node graph through ``run`` and IOBinding, interleaved."""

    def ignoring_input(call: Callable[[], object]) -> Callable[[np.ndarray], object]:
        return lambda _images: call()

    runners = {name: ignoring_input(call) for name, call in floor_runners(settings.threads).items()}
    empty = dict.fromkeys(runners, np.zeros(0))
    return {
        name: percentiles_us(flat(blocks))
        for name, blocks in time_calls(runners, empty, settings.runs, settings.warmup).items()
    }


def run_bench(
    models: list[Path],
    test: Split,
    settings: BenchSettings,
    torch_available: bool,
    progress: Callable[[str], None] = lambda _: None,
    references: list[Path] | None = None,
    photos: bool = False,
) -> dict:
    """The whole report (see docs/performance.md, "Benchmark JSON")."""
    references = check_references(models, references or [])
    rows = []
    for group in timing_groups(models, torch_available):
        matched = (matching_reference(path, references) for path, _ in group)
        wanted = [reference for reference in dict.fromkeys(matched) if reference is not None]
        engines = dict.fromkeys(engine for _, names in group for engine in names)
        beside = f" beside {', '.join(reference.name for reference in wanted)}" if wanted else ""
        progress(f"{', '.join(path.name for path, _ in group)} via {' and '.join(engines)}{beside}")
        rows += measure(group, test, settings, wanted)
    compare_with_plain(rows)
    name_clashes_by_path(rows)
    progress("the per-call floor (a one-node graph)")
    floor = call_floor(settings)
    onnx_models = [path for path in models if is_onnx_name(path)]
    progress("edgefmnist infer vs a bare script")
    overhead = infer_overhead(onnx_models[0], test, settings) if onnx_models else None
    if overhead:
        overhead["model"] = shown_name(rows, onnx_models[0])
    report = {
        "schema": REPORT_SCHEMA,
        "machine": machine_info(),
        "settings": {
            **asdict(settings),
            "batches": list(settings.batches),
            "baseline": "InferenceSession.run, feed dict, default session options with the same intra-op thread count",
        },
        "rows": [row.to_dict() for row in rows],
        "recommendation": recommend(rows),
        "infer_overhead": overhead,
        "call_floor_us": floor,
    }
    if photos and onnx_models:
        from edgefmnist.runtime.photo_bench import photo_bench

        progress("infer on picture files: one worker against all cores")
        with tempfile.TemporaryDirectory(prefix="edgefmnist-photos-") as scratch:
            photo_figures = photo_bench(onnx_models[0], test.images, Path(scratch))
        report["photos"] = {**photo_figures, "model": shown_name(rows, onnx_models[0])}
    return report


def format_table(report: dict, markdown: bool = False) -> str:
    """The report as an aligned text table, or a Markdown table for a README, with its notes below.
    A column no row has a figure in (``p50 vs ref`` without ``--reference``) is left out."""
    batches = report["settings"]["batches"]
    lines = [table_header(batches)] + [table_cells(row, batches) for row in report["rows"]]
    if len(lines) > 1:
        shown = [i for i in range(len(lines[0])) if any(cells[i] for cells in lines[1:])]
        lines = [[cells[i] for i in shown] for cells in lines]
    notes = table_notes(report)
    if markdown:
        table = [
            "| " + " | ".join(lines[0]) + " |",
            "|" + "|".join("---" if i < 3 else "---:" for i in range(len(lines[0]))) + "|",
        ]
        table += ["| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |" for cells in lines[1:]]
        return "\n".join(table + [""] + [f"- {note}" for note in notes])
    widths = [max(len(cells[i]) for cells in lines) for i in range(len(lines[0]))]
    table = [
        "  ".join(
            cell.rjust(w) if i >= 3 else cell.ljust(w) for i, (cell, w) in enumerate(zip(cells, widths, strict=False))
        )
        for cells in lines
    ]
    return "\n".join(table + [""] + notes)


def table_header(batches: list[int]) -> list[str]:
    """The table's column titles for the benched batch sizes."""
    return [
        "model",
        "engine",
        "precision",
        "KiB",
        "accuracy %",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "p50 vs plain",
        *[f"img/s @{b}" for b in batches],
        f"@{max(batches)} vs plain",
        "p50 vs ref",
        f"@{max(batches)} vs ref",
        "p50 vs fp32",
        "cold start ms",
        "peak MiB",
    ]


def table_cells(row: dict, batches: list[int]) -> list[str]:
    """One JSON row as the table's cells, in :func:`table_header`'s order; a missing ratio is blank."""
    ratios, previous, fp32 = row["vs_plain"], row.get("vs_reference", {}), row.get("vs_fp32", {})
    return [
        printable(row["model"]),
        row["engine"],
        row["precision"],
        f"{row['size_bytes'] / 1024:,.0f}",
        f"{100 * row['accuracy']:.2f}",
        *(f"{row['latency_us'][p]:,.1f}" for p in ("p50", "p90", "p99")),
        f"{ratios['p50']:.2f}x" if ratios else "",
        *(f"{row['throughput'][str(b)]:,.0f}" for b in batches),
        f"{ratios[f'throughput_{max(batches)}']:.2f}x" if ratios else "",
        f"{previous['p50']:.2f}x" if previous else "",
        f"{previous[f'throughput_{max(batches)}']:.2f}x" if previous else "",
        f"{fp32['p50']:.2f}x" if fp32 else "",
        f"{row['cold_start_ms']:,.0f}",
        f"{row['peak_rss_mib']:.0f}",
    ]


def table_notes(report: dict) -> list[str]:
    """The lines under the table: the machine, references, call floor, photo rates, pick and infer's cost."""
    machine = report["machine"]
    notes = [
        f"{machine['cpu']} ({machine['arch']}, {counted(machine['cores'], 'core')}; "
        f"{', '.join(machine['flags']) or 'no listed flags'}; int8 dot product: "
        f"{'yes' if machine['int8_dot_product'] else 'no'}), onnxruntime {machine['onnxruntime']}, "
        f"{counted(report['settings']['threads'], 'thread')}"
    ]
    references = {printable(row["model"]) for row in report["rows"] if row.get("reference") == "self"}
    if references:
        notes.append(
            f"ref: plain onnxruntime on {', '.join(sorted(references))} (an earlier release's files), "
            "timed in the same blocks as the model it is the reference of"
        )
    floor = report.get("call_floor_us")
    if floor:
        notes.append(
            f"per-call floor (a one-node graph): {floor['run']['p50']:.1f} µs through `run`, "
            f"{floor['iobinding']['p50']:.1f} µs through IOBinding (p50)"
        )
    for name, label in (("png_28x28", "28x28 PNGs"), ("jpeg_12mp", "12 MP phone JPEGs")):
        photos = report.get("photos", {}).get(name)
        if photos:
            notes.append(
                f"`infer` on {photos['pictures']} {label}: {photos['one_worker_per_s']:,.1f} pictures/s with one "
                f"worker, {photos['all_workers_per_s']:,.1f} with {photos['workers']} ({photos['speedup']:.2f}x), "
                f"{photos['default_per_s']:,.1f} by default ({photos['default_speedup']:.2f}x)"
            )
    if report["recommendation"]:
        pick = report["recommendation"]
        notes.append(printable(f"recommended here: {pick['model']}, the {pick['rule']}"))
    if report["infer_overhead"]:
        cost = report["infer_overhead"]
        notes.append(
            f"`edgefmnist infer --image` costs {cost['extra_ms']:+.0f} ms and {cost['extra_mib']:+.1f} MiB "
            f"over a bare numpy+Pillow+onnxruntime script ({cost['edgefmnist_infer']['wall_ms']:.0f} vs "
            f"{cost['bare_script']['wall_ms']:.0f} ms)"
            + (
                "; its modules were compiled from source at every start (no cached bytecode)"
                if cost.get("compiled_from_source")
                else ""
            )
        )
    return notes


def to_json(report: dict) -> str:
    return json.dumps(report, indent=2)
