"""Shared fixtures: the real data, the shipped models, and short real trainings (helpers: tests/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefmnist.data import DEBIAN_DATA_DIR, find_data, load_fashion_mnist


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real Fashion-MNIST (the Debian package in CI)."""
    try:
        return find_data(download=False).folder
    except Exception:
        pytest.fail(f"the real Fashion-MNIST is needed: apt-get install dataset-fashion-mnist ({DEBIAN_DATA_DIR})")


@pytest.fixture(scope="session")
def fashion(real_data_dir: Path):
    return load_fashion_mnist(real_data_dir)


@pytest.fixture(scope="session")
def shipped_mlp() -> Path:
    """The shipped fp32 MLP (``mlp.int8.onnx`` beside it): a real exported model at no training cost."""
    from edgefmnist.runtime.predictor import default_model_path

    return default_model_path().with_name("mlp.onnx")


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, fashion):
    """Train-and-save, once per architecture: short ``best`` runs on the full real training set."""
    from edgefmnist.checkpoint import checkpoint_bytes
    from edgefmnist.recipes import get_recipe
    from edgefmnist.train import train

    cache: dict[str, Path] = {}

    def get(arch: str) -> Path:
        if arch not in cache:
            epochs = {"mlp": 4, "cnn": 2}[arch]
            checkpoint = train(arch, get_recipe(arch, "best").with_overrides(epochs=epochs), fashion, seed=0)
            path = tmp_path_factory.mktemp(f"trained-{arch}") / f"{arch}.pt"
            path.write_bytes(checkpoint_bytes(checkpoint))
            cache[arch] = path
        return cache[arch]

    return get


@pytest.fixture(scope="session")
def exported_mlp(trained, real_data_dir, tmp_path_factory) -> Path:
    """A short-trained MLP exported to fp32 ONNX (static int8 beside it as ``mlp.int8.onnx``)."""
    from edgefmnist.export.pipeline import export_checkpoint

    out = tmp_path_factory.mktemp("exported-mlp") / "mlp.onnx"
    export_checkpoint(trained("mlp"), out, "static", data_dir=real_data_dir)
    return out
