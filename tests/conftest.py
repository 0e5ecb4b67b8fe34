"""Shared fixtures: synthetic IDX files for parser tests, the real data, and short real trainings."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from edgefmnist.data import DEBIAN_DATA_DIR, IMAGES_MAGIC, LABELS_MAGIC, find_data, load_fashion_mnist


def idx_bytes(array: np.ndarray, magic: int | None = None, dims: tuple[int, ...] | None = None) -> bytes:
    """Serialise ``array`` as IDX; ``magic`` and ``dims`` may be forged for corrupt-file tests."""
    dims = array.shape if dims is None else dims
    magic = (IMAGES_MAGIC if array.ndim == 3 else LABELS_MAGIC) if magic is None else magic
    return struct.pack(f">I{len(dims)}I", magic, *dims) + array.astype(np.uint8).tobytes()


def write_idx(path: Path, payload: bytes, gzipped: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if gzipped else payload)
    return path


def write_synthetic_dataset(folder: Path, train: int = 200, test: int = 50, seed: int = 0) -> Path:
    """Four small, valid (but not official) IDX files."""
    rng = np.random.default_rng(seed)
    for prefix, count in (("train", train), ("t10k", test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", idx_bytes(rng.integers(0, 256, (count, 28, 28))))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", idx_bytes(rng.integers(0, 10, count)))
    return folder


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
def trained(tmp_path_factory: pytest.TempPathFactory, fashion):
    """Train-and-save, once per architecture: short ``best`` runs on the full real training set."""
    from edgefmnist.checkpoint import save_checkpoint
    from edgefmnist.recipes import get_recipe
    from edgefmnist.train import train

    cache: dict[str, Path] = {}

    def get(arch: str) -> Path:
        if arch not in cache:
            epochs = {"mlp": 4, "cnn": 2}[arch]
            checkpoint = train(arch, get_recipe(arch, "best").with_overrides(epochs=epochs), fashion, seed=0)
            path = tmp_path_factory.mktemp(f"trained-{arch}") / f"{arch}.pt"
            save_checkpoint(path, checkpoint)
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
