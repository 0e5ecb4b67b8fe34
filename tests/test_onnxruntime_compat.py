"""The exported models load and give the same results on the oldest onnxruntime they record (1.17)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from edgefmnist.export.pipeline import export_checkpoint
from edgefmnist.runtime.metadata import read_metadata
from edgefmnist.runtime.predictor import Predictor

OLD_ORT = "1.17.3"
RUN_OLD = textwrap.dedent(
    """
    import sys, numpy as np, onnxruntime
    assert onnxruntime.__version__ == sys.argv[1], onnxruntime.__version__
    images = np.load(sys.argv[2])
    for model in sys.argv[3:]:
        session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
        dtype = np.uint8 if session.get_inputs()[0].type == "tensor(uint8)" else np.float32
        np.save(model + ".logits.npy", session.run(["logits"], {"image": images.astype(dtype)})[0])
    """
)


@pytest.mark.slow
def test_models_run_on_onnxruntime_1_17(trained, real_data_dir, fashion, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"onnxruntime=={OLD_ORT}", "numpy<2"], check=True)

    models = [
        result.path
        for arch in ("mlp", "cnn")
        for result in export_checkpoint(
            trained(arch), tmp_path / f"{arch}.onnx", "static", atol=5e-4, data_dir=real_data_dir
        )
    ]
    assert {read_metadata(m).min_onnxruntime for m in models} == {"1.17.0"}
    images = fashion.test.images[:1000, None]  # uint8 pixels: each model gets the dtype its input asks for
    np.save(tmp_path / "images.npy", images)
    script = tmp_path / "run_old.py"
    script.write_text(RUN_OLD)
    subprocess.run([str(python), str(script), OLD_ORT, str(tmp_path / "images.npy"), *map(str, models)], check=True)

    for model in models:
        old = np.load(f"{model}.logits.npy")
        new = Predictor(model).logits(images)
        if read_metadata(model).dtype == "fp32":
            np.testing.assert_allclose(old, new, atol=1e-4)
            assert (old.argmax(1) == new.argmax(1)).all()
        else:  # int8 kernels may round differently between releases
            assert np.mean(old.argmax(1) == new.argmax(1)) >= 0.99
