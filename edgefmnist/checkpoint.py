"""Checkpoints: a ``.pt`` file that rebuilds its model alone, loaded with ``weights_only=True``.

    edgefmnist train --out runs/mlp.pt      # writes one
    edgefmnist export runs/mlp.pt           # reads one

The file is a plain dict (tensors, numbers, strings, lists, dicts), so ``torch.load`` never
needs to unpickle code; a file that would is refused, never retried unsafely.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from edgefmnist import spec
from edgefmnist.contract import is_onnx_name
from edgefmnist.errors import CheckpointError, first_line, not_a_file_reason
from edgefmnist.nets import NetConfig, build_net
from edgefmnist.recipes import Recipe

T = TypeVar("T")

FORMAT = "edgefmnist-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """A trained network and everything known about how it was made."""

    net: nn.Module
    net_config: NetConfig
    recipe: Recipe
    class_names: tuple[str, ...] = spec.CLASS_NAMES
    data_sha256: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    seed: int = 0


def checkpoint_bytes(checkpoint: Checkpoint) -> bytes:
    """``checkpoint`` as the bytes of a ``torch.save`` archive. Made in memory (about 1.3 MB), so a
    full disk fails in the write as an ``OSError``, not inside torch's own writer (a ``RuntimeError``)."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "net_config": checkpoint.net_config.to_dict(),
        "recipe": checkpoint.recipe.to_dict(),
        "class_names": list(checkpoint.class_names),
        "data_sha256": dict(checkpoint.data_sha256),
        "metrics": dict(checkpoint.metrics),
        "history": list(checkpoint.history),
        "seed": checkpoint.seed,
        "state_dict": {k: v.detach().cpu().clone() for k, v in checkpoint.net.state_dict().items()},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def fit_problem(exc: Exception) -> str:
    """The informative line of ``exc``: under ``load_state_dict``'s heading ("Error(s) in loading
    state_dict for MLP:"), its first reason (the keys missing, a size mismatch), cut to 200 characters."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading state_dict"):
        return lines[1][:200]
    return first_line(exc)


def unpickler_reason(exc: Exception) -> str:
    """The one informative line of torch's weights-only refusal."""
    for line in str(exc).splitlines():
        if "WeightsUnpickler error" in line:
            return line.split("WeightsUnpickler error:", 1)[1].split(". ")[0].strip()[:200]
    return "unsupported content"


def check_checkpoint_file(path: Path) -> None:
    """Raise :class:`CheckpointError`, before torch reads it, when ``path`` is no file, cannot be
    read or is no ``torch.save`` archive (a zip), saying so of an ONNX model or a file named ``.onnx``."""
    if not path.is_file():
        what = not_a_file_reason(path) if os.path.lexists(path) else "no such checkpoint file"  # /dev/null, a folder
        raise CheckpointError(f"{path}: {what}")
    try:
        path.open("rb").close()  # is_zipfile says False for a file it may not read
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if zipfile.is_zipfile(path):
        return
    wanted = "give the .pt file that `edgefmnist train` wrote"
    if is_onnx_model(path):
        raise CheckpointError(f"{path}: an ONNX model, not a PyTorch checkpoint: {wanted}")
    if is_onnx_name(path):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (and named as an ONNX model): {wanted}")
    raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (not a torch.save archive)")


def is_onnx_model(path: Path) -> bool:
    """Whether ``path`` parses as a serialised ONNX model (the runtime's ``parse_model_header``)."""
    from edgefmnist.runtime.onnx_header import MAX_MODEL_BYTES, parse_model_header

    try:
        if path.stat().st_size > MAX_MODEL_BYTES:
            return False
        parse_model_header(path.read_bytes())
    except (OSError, ValueError):
        return False
    return True


def from_fields(cls: type[T], values: object, what: str) -> T:
    """The dataclass ``cls`` made from the dict ``values`` of a checkpoint's ``what`` ("recipe").

    Raises ``ValueError`` naming the missing or unknown fields, or when ``values`` is no dict."""
    if not isinstance(values, dict):
        raise ValueError(f"{what} is a {type(values).__name__}, not a dict")
    known = {item.name: item for item in fields(cls)}  # type: ignore[arg-type]  # cls is a dataclass
    required = [name for name, item in known.items() if item.default is MISSING and item.default_factory is MISSING]
    missing = [name for name in required if name not in values]
    unknown = [str(name) for name in values if name not in known]
    if missing or unknown:
        problems = [f"no {name!r}" for name in missing] + [f"an unknown field {name!r}" for name in unknown]
        raise ValueError(f"{what} has {', '.join(problems)}")
    return cls(**values)


def load_checkpoint(path: Path) -> Checkpoint:
    """Read and rebuild a checkpoint; any problem is a one-line :class:`CheckpointError`, including
    weights that hold NaN or infinity (a run that diverged) and class names that are not
    ``spec.NUM_CLASSES`` distinct names (:func:`edgefmnist.spec.class_names_problem`)."""
    path = Path(path)
    check_checkpoint_file(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused, it holds objects other than plain data "
            f"({unpickler_reason(exc)}); loading it could run code"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an edgefmnist checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {payload.get('format_version')} is not supported")
    missing = [key for key in ("net_config", "recipe", "state_dict") if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: not a whole edgefmnist checkpoint (no {', '.join(map(repr, missing))})")
    try:
        net_config = from_fields(NetConfig, payload["net_config"], "net_config")
        recipe = from_fields(Recipe, payload["recipe"], "recipe")
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: the network or recipe it describes is invalid ({first_line(exc)})") from None
    try:
        net = build_net(net_config)
        net.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the described network ({fit_problem(exc)})") from None
    if not all(torch.isfinite(weights).all() for weights in net.state_dict().values() if weights.is_floating_point()):
        raise CheckpointError(f"{path}: weights hold NaN or infinity (a training run that diverged?)")
    if problem := spec.class_names_problem(payload.get("class_names")):
        raise CheckpointError(f"{path}: {problem}")
    net.eval()
    try:
        return Checkpoint(
            net=net,
            net_config=net_config,
            recipe=recipe,
            class_names=tuple(payload["class_names"]),
            data_sha256=dict(payload["data_sha256"]),
            metrics=dict(payload["metrics"]),
            history=list(payload["history"]),
            seed=int(payload["seed"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        reason = f"no {exc}" if isinstance(exc, KeyError) else first_line(exc)
        raise CheckpointError(f"{path}: not a whole edgefmnist checkpoint ({reason})") from None
