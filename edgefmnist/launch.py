"""The ``edgefmnist`` console script: it loads the CLI, so that Ctrl-C while numpy and the
rest load is the same one line and exit code 130 as Ctrl-C during a command.

    edgefmnist infer --image shirt.jpg      # runs launch.main, which runs edgefmnist.cli.main
"""

from __future__ import annotations

import sys

INTERRUPTED = 130  # the exit code of a run stopped by Ctrl-C (128 + SIGINT), as shells report it
TERMINATED = 143  # by SIGTERM (128 + 15)


def interrupted_import(exc: ImportError) -> bool:
    """Whether ``exc`` is Ctrl-C or SIGTERM (:class:`~edgefmnist.errors.Terminated`) arriving while a
    C extension initialised: pybind11 (onnxruntime) raises ``ImportError: initialization failed``
    from the signal handler's exception."""
    return isinstance(exc.__cause__, KeyboardInterrupt)


def main() -> None:
    """Import and run :func:`edgefmnist.cli.main`; exit 130 with one line when interrupted while importing."""
    try:
        from edgefmnist.cli import main as run_cli
    except (KeyboardInterrupt, ImportError) as exc:
        if isinstance(exc, ImportError) and not interrupted_import(exc):
            raise
        print("edgefmnist: interrupted", file=sys.stderr)
        sys.exit(INTERRUPTED)
    run_cli()
