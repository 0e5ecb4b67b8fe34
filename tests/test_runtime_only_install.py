"""A board's install: only the base dependencies (no torch, no onnx), and `infer`/`evaluate` work."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_infer_and_evaluate_in_a_venv_without_torch(
    shipped_mlp: Path, fashion, real_data_dir: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, str(REPO)], check=True)
    check = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.util as u; print([m for m in ('torch', 'onnx') if u.find_spec(m)])",
        ],
        capture_output=True,
        text=True,
    )
    assert check.stdout.strip() == "[]"

    Image.fromarray(fashion.test.images[0]).save(tmp_path / "boot.png")
    cli = str(venv / "bin" / "edgefmnist")
    infer = subprocess.run(
        [cli, "infer", "--image", str(tmp_path / "boot.png"), "--json"], capture_output=True, text=True
    )
    assert infer.returncode == 0, infer.stderr  # the default model, from the installed package
    assert json.loads(infer.stdout)[0]["label"] == "Ankle boot"
    evaluate = subprocess.run(
        [cli, "evaluate", str(shipped_mlp), "--json", "--data-dir", str(real_data_dir)], capture_output=True, text=True
    )
    assert evaluate.returncode == 0, evaluate.stderr
    assert json.loads(evaluate.stdout)["accuracy"] > 0.8
    # Commands that need PyTorch say so in one line, given inputs that exist (so no other check answers first).
    checkpoint = shutil.copy(shipped_mlp.with_name("mlp.pt"), tmp_path / "mlp.pt")
    for command in (["export", str(checkpoint)], ["train", "--epochs", "1"], ["evaluate", str(checkpoint)]):
        refused = subprocess.run([cli, *command], capture_output=True, text=True, cwd=tmp_path)
        assert refused.returncode == 1, refused.stderr
        assert (
            refused.stderr.strip() == "edgefmnist: error: this command needs PyTorch: pip install 'edgefmnist[train]'"
        )
    serve = subprocess.run([cli, "serve", "--port", "0"], capture_output=True, text=True, timeout=120)
    assert serve.returncode == 1 and serve.stderr.count("\n") == 1, serve.stderr
    assert "pip install 'edgefmnist[serve]'" in serve.stderr


@pytest.mark.slow
def test_the_wheel_carries_the_onnx_models_but_not_the_checkpoints(tmp_path: Path) -> None:
    import shutil
    import zipfile

    source = tmp_path / "source"  # a copy, so that the build leaves nothing in the working tree
    shutil.copytree(
        REPO, source, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "tests", "*.egg-info", "build")
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            ".",
        ],
        cwd=source,
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("edgefmnist-*.whl")
    names = {Path(name).name for name in zipfile.ZipFile(wheel).namelist() if "/pretrained/" in name}
    assert {"mlp.onnx", "mlp.int8.onnx", "cnn.onnx", "cnn.int8.onnx", "README.md"} <= names
    assert not [name for name in names if name.endswith(".pt")]
