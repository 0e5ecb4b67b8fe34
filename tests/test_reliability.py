"""Crash-safe writes (SIGKILL mid-export, a full disk) and one predictor shared by 8 threads."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from edgefmnist.runtime.predictor import Predictor, default_model_path

from edgefmnist.errors import EdgeFmnistError

SHIPPED = default_model_path().parent
KILLS = 6  # exports killed at a random point of their run
MAX_KILL_RUNS = 12  # exports started to get them: a kill can come after a run faster than the timed one


@pytest.mark.slow
def test_sigkill_during_export_leaves_the_previous_model_intact(trained, real_data_dir: Path, tmp_path: Path) -> None:
    folder, scratch = tmp_path / "models", tmp_path / "scratch"
    folder.mkdir()
    scratch.mkdir()  # the export's temporary files: a killed process cannot remove them, so not in /tmp
    out = folder / "mlp.onnx"
    previous = (SHIPPED / "mlp.onnx").read_bytes()
    out.write_bytes(previous)
    environment = {**os.environ, "TMPDIR": str(scratch)}
    command = [
        sys.executable,
        "-m",
        "edgefmnist.cli",
        "export",
        str(trained("mlp")),
        "--out",
        str(out),
        "--data-dir",
        str(real_data_dir),
    ]
    started = time.monotonic()
    subprocess.run(command, check=True, capture_output=True, timeout=600, env=environment)  # a whole export's time
    whole = time.monotonic() - started
    finished = out.read_bytes()
    assert finished != previous  # a finished export does replace the file
    rng = random.Random(0)
    killed: list[bytes] = []  # what the final name held after each kill that landed before the export ended
    for run in range(MAX_KILL_RUNS):
        if len(killed) == KILLS:
            break
        out.write_bytes(previous)
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
        time.sleep(rng.uniform(0.2, 0.95) * whole)
        child.send_signal(signal.SIGKILL)
        code = child.wait(timeout=60)
        outcome = out.read_bytes()  # the old file, or (finished, or killed after os.replace) the whole new one
        assert outcome in (previous, finished), f"run {run}: a damaged model under the final name"
        assert sorted(p.name for p in folder.iterdir()) == ["mlp.onnx"], f"run {run}: something left behind"
        if code == -signal.SIGKILL:
            killed.append(outcome)
        else:  # the export beat the kill (a faster run than the timed one on a shared host)
            assert code == 0 and outcome == finished, f"run {run}: exit {code}"
    assert len(killed) == KILLS, f"only {len(killed)} of {MAX_KILL_RUNS} kills landed before the export ended"
    assert killed.count(previous) >= 3  # most kills landed mid-export


@pytest.mark.slow
def test_sigterm_during_export_removes_its_scratch_folder(trained, real_data_dir: Path, tmp_path: Path) -> None:
    """``timeout``, systemd and a cancelled CI job stop an export with SIGTERM: it stops as Ctrl-C does."""
    folder, scratch = tmp_path / "models", tmp_path / "scratch"
    folder.mkdir()
    scratch.mkdir()
    out = folder / "mlp.onnx"
    out.write_bytes(previous := (SHIPPED / "mlp.onnx").read_bytes())
    command = [sys.executable, "-m", "edgefmnist.cli", "export", str(trained("mlp")), "--out", str(out)]
    child = subprocess.Popen(
        [*command, "--quantize", "static", "--data-dir", str(real_data_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(scratch)},
    )

    def ours() -> list[Path]:  # onnxruntime 1.32 leaves a .ses file there too
        return list(scratch.glob("edgefmnist-*"))

    deadline = time.monotonic() + 300
    while not ours() and time.monotonic() < deadline:  # the export is under way
        time.sleep(0.05)
    assert ours(), "no scratch folder appeared"
    time.sleep(1.0)
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=120)
    assert (child.returncode, stderr.splitlines()[-1]) == (143, "edgefmnist: terminated")
    assert ours() == [] and out.read_bytes() == previous
    assert sorted(p.name for p in folder.iterdir()) == ["mlp.onnx"]


@pytest.mark.slow
def test_full_disk_during_export_leaves_the_previous_model_intact(
    trained, real_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx
    from edgefmnist.export.pipeline import export_checkpoint

    out = tmp_path / "mlp.onnx"
    out.write_bytes(previous := (SHIPPED / "mlp.onnx").read_bytes())
    real_write = os.write

    def write_until_the_disk_is_full(fd: int, data) -> int:
        if len(data) < 100_000:
            return real_write(fd, data)
        real_write(fd, bytes(data[:4096]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch:  # the disk fills during the final write into the target folder
        patch.setattr(os, "write", write_until_the_disk_is_full)
        with pytest.raises(EdgeFmnistError, match=f"{out}: cannot write \\(No space left on device\\)"):
            export_checkpoint(trained("mlp"), out, data_dir=real_data_dir)
    assert out.read_bytes() == previous and sorted(p.name for p in tmp_path.iterdir()) == ["mlp.onnx"]

    def save_until_the_disk_is_full(model, path, *args, **kwargs) -> None:
        Path(path).write_bytes(model.SerializeToString()[:4096])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    with monkeypatch.context() as patch:  # ...or earlier, while the model is staged elsewhere
        patch.setattr(onnx, "save", save_until_the_disk_is_full)
        with pytest.raises(OSError, match="No space left on device"):
            export_checkpoint(trained("mlp"), out, data_dir=real_data_dir)
    assert out.read_bytes() == previous and sorted(p.name for p in tmp_path.iterdir()) == ["mlp.onnx"]


@pytest.mark.slow
def test_an_export_stopped_while_quantising_leaves_the_previous_pair(
    trained, real_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fp32 model lands only with its int8 model: never a new fp32 beside an int8 made from the old one."""
    from edgefmnist.export import pipeline

    pair = {name: (SHIPPED / name).read_bytes() for name in ("mlp.onnx", "mlp.int8.onnx")}
    for name, data in pair.items():
        (tmp_path / name).write_bytes(data)

    def stopped(*args, **kwargs) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "quantize_model", stopped)
    with pytest.raises(KeyboardInterrupt):
        pipeline.export_checkpoint(trained("mlp"), tmp_path / "mlp.onnx", "dynamic", data_dir=real_data_dir)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == pair


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mlp.onnx", "mlp.int8.onnx", "cnn.onnx"])
def test_one_predictor_shared_by_8_threads_matches_a_sequential_run(name: str, fashion) -> None:
    predictor = Predictor(SHIPPED / name, threads=1)
    images = fashion.test.images  # all 10,000, one call per image: the per-thread hot path
    sequential = np.concatenate([predictor.run(image)[0] for image in images])
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = np.concatenate(list(pool.map(lambda image: predictor.run(image)[0], images)))
    np.testing.assert_array_equal(parallel, sequential)
    with ThreadPoolExecutor(max_workers=8) as pool:  # batches and single images mixed
        batches = list(pool.map(lambda i: predictor.run(images[i : i + 50])[0], range(0, len(images), 50)))
    assert (np.concatenate(batches).argmax(1) == sequential.argmax(1)).mean() == 1.0
