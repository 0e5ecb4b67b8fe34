"""The runtime on arm64 under qemu (a Raspberry Pi 4's CPU): scripts/arm64-smoke.sh, run as a test.

The shipped models on test images, and the photo path (picture loading, GrabCut, the default
model) on a fixed subset of tests/data/photos.
"""

from __future__ import annotations

import os
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
    assert "aarch64 python 3.11" in result.stderr and "onnxruntime 1.27.0" in result.stderr and " cv2 " in result.stderr
