"""The runtime on arm64 under qemu (a Raspberry Pi 4's CPU): scripts/arm64-smoke.sh, run as a test.

One picture under a Raspberry Pi's /sys/class/drm (stderr must stay empty), the shipped models on
test images, and the photo path (picture loading, GrabCut, the default model) on a fixed subset of
tests/data/photos.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "arm64-smoke.sh"


@pytest.mark.slow
def test_shipped_models_predict_the_same_on_emulated_arm64() -> None:
    result = subprocess.run(
        ["bash", str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "PYTHON": sys.executable, "SAMPLES": "300", "PHOTOS_PER_CLASS": "4"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    passes = [line for line in result.stderr.splitlines() if line.startswith("PASS ")]
    assert len(passes) == 5 and "all 4 models and the photo path pass on emulated arm64" in result.stderr
    assert any(line.startswith("PASS photos (cnn.onnx, default model): 40 photos") for line in passes)
    recommended = recommended_onnxruntime()
    assert f"onnxruntime {recommended} numpy" in result.stderr
    assert "aarch64 python 3.11" in result.stderr and " cv2 " in result.stderr
    # the version the README recommends for a Pi: under a Pi's /sys/class/drm, infer writes nothing to stderr
    assert f"PASS infer --image under a Pi's /sys/class/drm (onnxruntime {recommended})" in result.stderr


def recommended_onnxruntime() -> str:
    """The onnxruntime version the README tells Pi users to pin."""
    readme = (SCRIPT.parents[1] / "README.md").read_text()
    pi_section = readme[readme.index("## On a Raspberry Pi") :]
    return re.search(r"pip install onnxruntime==([0-9.]+)", pi_section).group(1)  # type: ignore[union-attr]


def test_the_smoke_runs_the_version_the_readme_recommends() -> None:
    assert f"ORT_VERSION=${{ORT_VERSION:-{recommended_onnxruntime()}}}" in SCRIPT.read_text()
