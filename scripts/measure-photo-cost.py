#!/usr/bin/env python3
"""What the photo path costs: `edgefmnist infer --image` on a phone photo against a 28x28 image.

    .venv/bin/python scripts/measure-photo-cost.py                  # the table
    .venv/bin/python scripts/measure-photo-cost.py --json           # machine-readable
    .venv/bin/python scripts/measure-photo-cost.py --reload-libraries  # libraries loaded by the processes' faults
    taskset -c 1 .venv/bin/python scripts/measure-photo-cost.py --repeats 7 --no-48mp

A 28x28 image in dataset form goes straight to the network; a photo is loaded small
(``runtime/picture.py``, JPEG draft mode) and segmented by OpenCV's GrabCut
(``runtime/segment.py``, which is the only module that imports ``cv2``). This script measures,
on this machine:

1. **Whole processes** of the installed console script (``edgefmnist infer --image X``, or
   ``python -m edgefmnist.cli infer`` when there is none) on (a) a 28x28 PNG, test image 0 of
   Fashion-MNIST, (b) a 12 MP phone-like JPEG: a photos-dev photo upscaled to 4000x3000 with
   Gaussian noise (sigma 6), quality 90, and (c) the same at 48 MP (8000x6000; ``--no-48mp``
   skips it). Wall time and peak RSS of each child (``os.wait4``'s ``ru_maxrss``), medians of
   ``--repeats`` runs, interleaved (a, b, c, a, b, c, ...) after one discarded warm-up round,
   so a busy machine slows all of them alike. The acceptance bar: the 12 MP process costs at
   most ``BAR`` (1.5) times the PNG process, in wall time and in peak RSS. Then, where it
   goes: one process per picture walks the steps of ``infer`` (imports, model, loading,
   ``import cv2``, ``to_dataset_form``, predict) with the time and the RSS after each,
   split into anonymous memory and file-backed pages (shared libraries).
2. **import cv2**: in a fresh interpreter on its own, and on top of numpy, Pillow and
   onnxruntime (what an ``infer --image`` process pays for the first photo): time and RSS
   growth, medians of ``--repeats`` fresh processes.
3. **GrabCut's share** of an in-process ``preprocess_file`` over ``--photos`` photos-dev photos
   (round-robin over the source classes, each in sorted file order): per photo, the whole call, the loading
   (``load_picture``), ``segment.foreground_mask`` and ``segment.grabcut`` (all its calls),
   medians in ms, after a warm-up call (so no import is counted).
4. **Size on disk**: opencv-python-headless in this venv (``cv2/``, its ``.libs`` and
   ``.dist-info``, as ``du`` counts them) and the aarch64 wheel's download size (the wheel
   scripts/arm64-smoke.sh keeps in its cache, or ``--aarch64-wheel PATH``; ``--download``
   fetches it with ``pip download`` when neither is there).

The peak RSS counts the pages of shared libraries a process maps, and how many one fault maps
depends on how the page cache holds the library, so it can move with no change to the code.
On a Linux 6.18 guest with 8 MiB of readahead, a library file that was read sequentially (as
``cat`` reads it) sits in the cache in folios of up to 2 MiB, and a fault maps a whole folio;
one that processes' own faults loaded maps 64 KiB per fault. ``--reload-libraries`` first
drops from the page cache every file an ``infer`` process maps, with the whole top-level
folder in site-packages of each (``posix_fadvise`` with ``POSIX_FADV_DONTNEED``, which keeps
the pages some process maps: the script hands over, by ``exec``, to a small process that drops
them and then runs the script again), so that the measured processes' own faults load them,
as they do once the files have left the page cache (after a reboot, for instance).

Temporary pictures go to a temporary folder that is removed at the end; nothing is written
into the working tree. ``--cpu N`` pins the children to one CPU.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import NoReturn

import numpy as np
from edgefmnist.runtime.bench import ProcessRun, compiled_from_source, measure_process
from edgefmnist.runtime.photo_bench import JPEG_QUALITY, with_sensor_noise
from PIL import Image

from edgefmnist.data import default_cache_dir

BAR = 1.5  # the 12 MP JPEG process may cost at most this many times the 28x28 PNG process
PHOTOS_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "photos-dev"
ARM64_WHEELS = Path(os.environ.get("EDGEFMNIST_ARM64_DIR") or default_cache_dir() / "arm64") / "wheels"
SIZES = {"12 MP": (4000, 3000), "48 MP": (8000, 6000)}


def infer_command() -> list[str]:
    """The console script beside this interpreter, else ``python -m edgefmnist.cli``."""
    script = Path(sys.executable).parent / "edgefmnist"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "edgefmnist.cli"]


def make_png(folder: Path) -> Path:
    """Test image 0 of Fashion-MNIST (dataset form: light garment on black) as a 28x28 PNG."""
    from edgefmnist.data import load_test_split

    path = folder / "test-0.png"
    Image.fromarray(load_test_split().images[0], "L").save(path)
    return path


def make_phone_jpeg(source: Path, size: tuple[int, int], folder: Path, seed: int = 0) -> Path:
    """``source`` upscaled (bicubic) to ``size``, a phone sensor's grain added (:func:`with_sensor_noise`),
    saved as a JPEG of :data:`JPEG_QUALITY`."""
    picture = Image.open(source).convert("RGB").resize(size, Image.Resampling.BICUBIC)
    pixels = np.asarray(picture).copy()
    rng = np.random.default_rng(seed)
    for rows in range(0, pixels.shape[0], 500):  # in bands: a 48 MP float image would be 1.1 GB
        pixels[rows : rows + 500] = with_sensor_noise(pixels[rows : rows + 500].astype(np.float32), rng)
    path = folder / f"phone-{size[0]}x{size[1]}.jpg"
    Image.fromarray(pixels).save(path, quality=JPEG_QUALITY)
    return path


def measured(command: list[str], cpu: int | None, what: str) -> ProcessRun:
    """:func:`measure_process` of ``command``; exits with its last error line when it fails."""
    run = measure_process(command, cpu)
    if run.exit_code != 0:
        raise SystemExit(f"measure-photo-cost: {what} exited with {run.exit_code}: {run.last_error}")
    return run


def measure_processes(pictures: dict[str, Path], repeats: int, cpu: int | None) -> dict[str, dict]:
    """Interleaved whole-process runs of ``infer --image``; medians per picture."""
    walls: dict[str, list[float]] = {name: [] for name in pictures}
    rss: dict[str, list[float]] = {name: [] for name in pictures}
    labels: dict[str, str] = {}
    for round_ in range(repeats + 1):  # round 0 warms the page cache and is discarded
        for name, path in pictures.items():
            run = measured([*infer_command(), "infer", "--image", str(path), "--json"], cpu, f"infer --image {path}")
            labels[name] = json.loads(run.stdout)[0].get("label", "")
            if round_:
                walls[name].append(run.wall_ms / 1000)
                rss[name].append(run.peak_rss_mib)
    return {
        name: {
            "file": str(path),
            "bytes": path.stat().st_size,
            "pixels": list(Image.open(path).size),
            "label": labels[name],
            "wall_s": statistics.median(walls[name]),
            "wall_runs_s": walls[name],
            "peak_rss_mib": statistics.median(rss[name]),
            "rss_runs_mib": rss[name],
        }
        for name, path in pictures.items()
    }


IMPORT_PROBE = """
import time
def rss():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024
{before}
rss0, t0 = rss(), time.perf_counter()
import cv2
print(time.perf_counter() - t0, rss() - rss0, cv2.__version__)
"""


MAPS_PROBE = """
import json, sys
from edgefmnist.cli import main
picture, listing = sys.argv[1:]
sys.argv = ["edgefmnist", "infer", "--image", picture, "--json"]
try:
    main()
except SystemExit:
    pass
with open("/proc/self/maps") as maps:
    fields = [line.split(maxsplit=5) for line in maps]
with open(listing, "w") as out:
    json.dump(sorted({row[5].strip() for row in fields if len(row) == 6 and row[5].startswith("/")}), out)
"""

DROP_AND_RERUN = """
import json, os, shutil, sys
folder, script, *arguments = sys.argv[1:]
with open(os.path.join(folder, "files.json")) as listing:
    paths = json.load(listing)
shutil.rmtree(folder, ignore_errors=True)
for path in paths:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        continue
    try:
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(descriptor)
os.execv(sys.executable, [sys.executable, script, *arguments])
"""
RELOADED = "MEASURE_PHOTO_COST_LIBRARIES_DROPPED"  # set in the run that follows the drop


def files_to_reload(picture: Path, folder: Path) -> list[Path]:
    """The files an ``infer --image picture`` process maps (its interpreter, shared libraries and
    extension modules), each one under site-packages widened to every file of its top-level
    folder (``cv2/``, ``numpy.libs/``, ...), since a process may map some of them only for a while."""
    listing = folder / "mapped-files.json"
    measured([sys.executable, "-c", MAPS_PROBE, str(picture), str(listing)], None, "the mapped files")
    site_packages = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
    files: set[Path] = set()
    for path in map(Path, json.loads(listing.read_text())):
        site = next((site for site in site_packages if path.is_relative_to(site)), None)
        top = site / path.relative_to(site).parts[0] if site else path
        if top.is_dir():
            files.update(file for file in top.rglob("*") if file.is_file())
        else:
            files.add(path)
    return sorted(file for file in files if file.is_file())


def rerun_after_dropping_libraries(arguments: list[str]) -> NoReturn:
    """Drop the files an ``infer`` process maps from the page cache, then run this script again
    with ``arguments``. This process first replaces itself (``exec``) with a small one that does
    the dropping: the kernel keeps a file's pages cached while any process maps them, and this
    one maps numpy's and Pillow's libraries."""
    folder = Path(tempfile.mkdtemp(prefix="photo-cost-"))
    try:  # any photo takes the photo path: the photos-dev photo the JPEGs are made from will do
        files = files_to_reload(pick_photos(1)[0], folder)
        (folder / "files.json").write_text(json.dumps([str(path) for path in files]))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    os.environ[RELOADED] = "1"
    sys.stdout.flush()
    script = str(Path(__file__).resolve())
    os.execv(sys.executable, [sys.executable, "-S", "-c", DROP_AND_RERUN, str(folder), script, *arguments])


def measure_cv2_import(repeats: int, cpu: int | None) -> dict:
    """``import cv2`` in fresh interpreters: alone, and after numpy + Pillow + onnxruntime."""
    result: dict[str, object] = {}
    for name, before in (("alone", ""), ("after numpy, Pillow, onnxruntime", "import numpy, PIL.Image, onnxruntime")):
        times, growths = [], []
        for _ in range(repeats):
            output = measured([sys.executable, "-c", IMPORT_PROBE.format(before=before)], cpu, "import cv2").stdout
            seconds, growth, version = output.split()
            times.append(float(seconds))
            growths.append(float(growth))
        result[name] = {"ms": 1000 * statistics.median(times), "rss_growth_mib": statistics.median(growths)}
        result["version"] = version
    return result


STEP_PROBE = """
import sys, time
def rss():
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "RssAnon", "RssFile", "VmHWM")}
steps, start = [], time.perf_counter()
def step(name):
    global start
    steps.append({"step": name, "ms": 1000 * (time.perf_counter() - start), **rss()})
    start = time.perf_counter()
step("interpreter")
import edgefmnist.cli
from edgefmnist.runtime.predictor import Predictor, default_model_path
from edgefmnist.runtime.picture import load_picture
from edgefmnist.runtime.preprocess import to_dataset_form
step("imports (cli, runtime: onnxruntime, numpy, Pillow)")
predictor = Predictor(default_model_path()); step("load the default model")
picture = load_picture(sys.argv[1]); step("load_picture")
if picture.size != (28, 28):
    import cv2; step("import cv2")
pixels = to_dataset_form(picture)
path_taken = " (GrabCut, light, centre)" if "cv2" in sys.modules else " (dataset form: unchanged)"
step("to_dataset_form" + path_taken)
predictor.predict(pixels[None]); step("predict")
import json; print(json.dumps(steps))
"""


def measure_steps(picture: Path, cpu: int | None) -> list[dict]:
    """Where a process's time and memory go: each step of ``infer --image`` with its RSS after
    it (VmRSS, split into anonymous memory and file-backed pages such as shared libraries)."""
    output = measured([sys.executable, "-c", STEP_PROBE, str(picture)], cpu, f"the steps on {picture}").stdout
    return json.loads(output)


def pick_photos(count: int) -> list[Path]:
    """``count`` photos-dev photos: round-robin over the source classes, each in sorted file order."""
    folders = [sorted(Path(f).glob("*.jpg")) for f in sorted(glob.glob(str(PHOTOS_DEV / "*/")))]
    picked = [photos[i] for i in range(max(map(len, folders), default=0)) for photos in folders if i < len(photos)]
    return picked[:count]


def measure_grabcut_share(photos: list[Path]) -> dict:
    """Per-photo ms of ``preprocess_file`` and of its loading, foreground mask and GrabCut calls."""
    from edgefmnist.runtime import preprocess, segment

    spent = {"load_picture": 0.0, "foreground_mask": 0.0, "grabcut": 0.0}

    def timed(name, function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start

        return wrapper

    # preprocess_file looks these up at call time (module globals; segment is imported in the call).
    originals = (preprocess.load_picture, segment.foreground_mask, segment.grabcut)
    preprocess.load_picture = timed("load_picture", originals[0])
    segment.foreground_mask = timed("foreground_mask", originals[1])
    segment.grabcut = timed("grabcut", originals[2])
    rows = []
    try:
        preprocess.preprocess_file(photos[0])  # warm-up: no import counted
        for photo in photos:
            for name in spent:
                spent[name] = 0.0
            start = time.perf_counter()
            preprocess.preprocess_file(photo)
            rows.append({"total": time.perf_counter() - start, **spent})
    finally:
        preprocess.load_picture, segment.foreground_mask, segment.grabcut = originals
    median = {name: 1000 * statistics.median(row[name] for row in rows) for name in rows[0]}
    share = statistics.median(row["grabcut"] / row["total"] for row in rows)
    mask_share = statistics.median(row["foreground_mask"] / row["total"] for row in rows)
    return {"photos": len(rows), "median_ms": median, "grabcut_share": share, "foreground_mask_share": mask_share}


def du_bytes(paths: list[Path]) -> int:
    """Disk usage as ``du`` counts it (allocated blocks), of files and folders, hard links once."""
    seen, total = set(), 0
    for root in paths:
        walk = [(str(root.parent), [], [root.name])] if root.is_file() else os.walk(root)
        for folder, _, files in walk:
            for name in files:
                stat = os.lstat(os.path.join(folder, name))
                if (stat.st_dev, stat.st_ino) not in seen:
                    seen.add((stat.st_dev, stat.st_ino))
                    total += stat.st_blocks * 512
    return total


def opencv_sizes(aarch64_wheel: Path | None, download: bool) -> dict:
    """Installed size of opencv-python-headless here; size of its aarch64 wheel."""
    import cv2

    site = Path(cv2.__file__).resolve().parent.parent
    parts = {path.name: du_bytes([path]) for path in [site / "cv2", *sorted(site.glob("opencv*"))]}
    result = {"site_packages": str(site), "installed_bytes": sum(parts.values()), "parts_bytes": parts}
    wheel = aarch64_wheel
    if wheel is None:
        cached = sorted(ARM64_WHEELS.glob("opencv_python_headless-*aarch64*.whl"))
        wheel = cached[-1] if cached else None
    if wheel is None and download:
        folder = Path(tempfile.mkdtemp(prefix="opencv-aarch64-"))
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "-d",
                str(folder),
                "--platform",
                "manylinux_2_28_aarch64",
                "--platform",
                "manylinux2014_aarch64",
                "--python-version",
                "3.11",
                "--implementation",
                "cp",
                "--only-binary=:all:",
                f"opencv-python-headless=={cv2.__version__}",
            ],
            check=True,
        )
        wheel = next(folder.glob("*.whl"))
    if wheel is not None:
        result["aarch64_wheel"] = {"file": wheel.name, "bytes": wheel.stat().st_size}
    return result


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def print_table(report: dict) -> None:
    processes = report["processes"]
    base = processes["28x28 PNG"]
    print(
        f"`edgefmnist infer --image X` as a whole process, medians of {report['repeats']} interleaved runs"
        + (f" (pinned to CPU {report['cpu']})" if report["cpu"] is not None else "")
        + ":\n"
    )
    print("| picture | file | wall | peak RSS | label |")
    print("|---|---|---|---|---|")
    for name, row in processes.items():
        ratio = (
            ""
            if row is base
            else (f" ({row['wall_s'] / base['wall_s']:.2f}x)", f" ({row['peak_rss_mib'] / base['peak_rss_mib']:.2f}x)")
        )
        print(
            f"| {name} ({row['pixels'][0]}x{row['pixels'][1]}) | {mib(row['bytes'])} "
            f"| {row['wall_s']:.3f} s{ratio[0] if ratio else ''} "
            f"| {row['peak_rss_mib']:.1f} MiB{ratio[1] if ratio else ''} | {row['label']} |"
        )
    if report["compiled_from_source"]:
        print(
            "\nno cached bytecode: every process compiled edgefmnist's modules from source (PYTHONDONTWRITEBYTECODE "
            "on a checkout), a cost both pictures pay, so the ratios are lower than an install's"
        )
    if report["libraries_reloaded"]:
        print("\nthe files an infer process maps were dropped from the page cache first (--reload-libraries)")
    bar = report["bar"]
    print(
        f"\nbar (12 MP JPEG <= {BAR}x the PNG): wall {bar['wall_ratio']:.2f}x, peak RSS {bar['rss_ratio']:.2f}x: "
        + ("MET" if bar["met"] else "MISSED")
    )
    for name, steps in report["steps"].items():
        print(f"\nwhere a {name} process goes (one run; RSS after each step, MiB):\n")
        print("| step | ms | RSS | anon | file-backed |")
        print("|---|---|---|---|---|")
        for row in steps:
            print(
                f"| {row['step']} | {row['ms']:.0f} | {row['VmRSS']:.1f} "
                f"| {row['RssAnon']:.1f} | {row['RssFile']:.1f} |"
            )
    imp = report["import_cv2"]
    base_import = imp["after numpy, Pillow, onnxruntime"]
    print(
        f"\nimport cv2 {imp['version']} (fresh processes, medians): alone {imp['alone']['ms']:.0f} ms "
        f"(+{imp['alone']['rss_growth_mib']:.1f} MiB RSS); after numpy, Pillow, onnxruntime "
        f"{base_import['ms']:.0f} ms (+{base_import['rss_growth_mib']:.1f} MiB)"
    )
    share = report.get("grabcut")
    if share:
        m = share["median_ms"]
        print(
            f"\npreprocess_file in-process on {share['photos']} photos-dev photos, "
            f"median ms per photo: total {m['total']:.1f}, "
            f"load_picture {m['load_picture']:.1f}, foreground_mask {m['foreground_mask']:.1f}, "
            f"grabcut {m['grabcut']:.1f}; "
            f"GrabCut's share {100 * share['grabcut_share']:.0f} % "
            f"(foreground_mask {100 * share['foreground_mask_share']:.0f} %)"
        )
    size = report["opencv_size"]
    parts = ", ".join(f"{name} {mib(n)}" for name, n in size["parts_bytes"].items())
    print(f"\nopencv-python-headless installed here: {mib(size['installed_bytes'])} ({parts})")
    if "aarch64_wheel" in size:
        print(f"aarch64 wheel download: {mib(size['aarch64_wheel']['bytes'])} ({size['aarch64_wheel']['file']})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5, help="measured runs per picture (after one warm-up round)")
    parser.add_argument("--photos", type=int, default=80, help="photos-dev photos for GrabCut's share (0: skip)")
    parser.add_argument("--no-48mp", dest="with_48mp", action="store_false", help="skip the 48 MP JPEG")
    parser.add_argument("--cpu", type=int, default=None, help="pin every child process to this CPU")
    parser.add_argument("--aarch64-wheel", type=Path, default=None, help="the aarch64 opencv wheel to size")
    parser.add_argument("--download", action="store_true", help="pip-download the aarch64 wheel if none is cached")
    parser.add_argument(
        "--reload-libraries",
        action="store_true",
        help="first drop the files an infer process maps from the page cache, so its own faults load them",
    )
    parser.add_argument("--json", dest="json_output", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: at least 1 run per picture is needed for a median")
    if args.photos < 0:
        parser.error(f"--photos {args.photos}: a count of photos, 0 or more")
    if args.cpu is not None and args.cpu not in os.sched_getaffinity(0):
        parser.error(f"--cpu {args.cpu}: not a CPU this process may run on ({sorted(os.sched_getaffinity(0))})")
    if not PHOTOS_DEV.is_dir():
        parser.error(f"{PHOTOS_DEV}: no such folder (the phone-like JPEGs are made from a photos-dev photo)")
    if args.reload_libraries and RELOADED not in os.environ:
        rerun_after_dropping_libraries(sys.argv[1:] if argv is None else argv)

    folder = Path(tempfile.mkdtemp(prefix="photo-cost-"))
    try:
        source = pick_photos(1)[0]
        pictures = {"28x28 PNG": make_png(folder), "12 MP JPEG": make_phone_jpeg(source, SIZES["12 MP"], folder)}
        if args.with_48mp:
            pictures["48 MP JPEG"] = make_phone_jpeg(source, SIZES["48 MP"], folder)
        processes = measure_processes(pictures, args.repeats, args.cpu)
        steps = {name: measure_steps(pictures[name], args.cpu) for name in ("28x28 PNG", "12 MP JPEG")}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    base, phone = processes["28x28 PNG"], processes["12 MP JPEG"]
    wall_ratio, rss_ratio = phone["wall_s"] / base["wall_s"], phone["peak_rss_mib"] / base["peak_rss_mib"]
    report = {
        "command": infer_command(),
        "repeats": args.repeats,
        "cpu": args.cpu,
        "source_photo": str(source),
        "processes": processes,
        "steps": steps,
        "bar": {
            "limit": BAR,
            "wall_ratio": wall_ratio,
            "rss_ratio": rss_ratio,
            "met": wall_ratio <= BAR and rss_ratio <= BAR,
        },
        "compiled_from_source": compiled_from_source(),
        "libraries_reloaded": RELOADED in os.environ,
        "import_cv2": measure_cv2_import(args.repeats, args.cpu),
        "grabcut": measure_grabcut_share(pick_photos(args.photos)) if args.photos else None,
        "opencv_size": opencv_sizes(args.aarch64_wheel, args.download),
    }
    if args.json_output:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
