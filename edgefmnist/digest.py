"""SHA-256 of files, as recorded in model metadata (torch-free).

    edgefmnist export runs/mlp.pt --quantize static   # records checkpoint_sha256 and the int8 model's parent_sha256

Export records the hash of the checkpoint a model came from and, for an int8 model, of its
fp32 parent; ``verify --checkpoint`` and the shipped-model test compare them with the files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
