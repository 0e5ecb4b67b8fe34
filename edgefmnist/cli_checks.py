"""Checks and warnings that several ``edgefmnist`` commands share: PyTorch present for the
training commands, ``--threads`` within the cores, ``--min-typicality`` that a model can check.

    edgefmnist infer --image shirt.jpg --threads 8    # more threads than cores: one warning line
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from edgefmnist.console import echo_unless_gone
from edgefmnist.errors import EdgeFmnistError, counted, printable

if TYPE_CHECKING:
    from edgefmnist.runtime.predictor import Predictor


def need_training_extra() -> None:
    """Fail with one clear line when torch is missing (a runtime-only install)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise EdgeFmnistError("this command needs PyTorch: pip install 'edgefmnist[train]'") from None


def warn_if_typicality_unchecked(predictor: Predictor, min_typicality: float) -> None:
    """A warning line when ``--min-typicality`` was given above 0 but the model has no typicality
    reference (exported before it), so that rule cannot fire. Called after the command's work, so
    that an error stays one line."""
    context = click.get_current_context(silent=True)
    source = context.get_parameter_source("min_typicality") if context is not None else None
    given = source is not None and source is not click.core.ParameterSource.DEFAULT
    if given and min_typicality > 0 and not predictor.metadata.has_typicality_reference:
        message = f"{predictor.path}: no typicality reference (exported before it), so --min-typicality is not checked"
        echo_unless_gone(printable(f"edgefmnist: warning: {message}"), err=True)


OVERSUBSCRIBED = {  # flag -> what taking more than the cores costs
    "--threads": "onnxruntime's threads then compete for them and can run several times slower",
    "--workers": "more pictures are then decoded at once, for more memory and no more speed",
}


def oversubscription_warning(count: int | None, flag: str = "--threads", busy: int | None = None) -> str:
    """The warning line when ``flag`` (a key of :data:`OVERSUBSCRIBED`) asks for ``count``
    threads, of which ``busy`` (default: all) can run at once, more than the cores this process
    may use, else ``""``."""
    from edgefmnist.cores import available_cores

    cores = available_cores()
    if count is None or (count if busy is None else min(count, busy)) <= cores:
        return ""
    cost = OVERSUBSCRIBED[flag]
    return f"edgefmnist: warning: {flag} {count} is more than the {counted(cores, 'core')} available; {cost}"


def warn_if_oversubscribed(threads: int | None, workers: int | None = None, pictures: int = 0) -> None:
    """:func:`oversubscription_warning` for ``--threads``, and for ``--workers`` when more than the
    cores are busy (the pool decodes at most ``pictures`` at once), on stderr, if any.
    Called once the command's flags and inputs have passed, so that an error stays one line."""
    for warning in (oversubscription_warning(threads), oversubscription_warning(workers, "--workers", pictures)):
        if warning:
            echo_unless_gone(warning, err=True)
