"""The ``edgefmnist`` console script: it loads the CLI, so that Ctrl-C while numpy and the
rest load is the same one line and exit code 130 as Ctrl-C during a command.

SIGTERM (``kill``, a service manager's stop) raises :class:`Terminated` in the main thread, so
that the clean-ups a write has (its temp file, its scratch folder) run before the exit, code 143.

    edgefmnist infer --image shirt.jpg      # runs launch.main, which runs edgefmnist.cli.main
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

INTERRUPTED = 130  # the exit code of a run stopped by Ctrl-C (128 + SIGINT), as shells report it
TERMINATED = 143  # the exit code of a run stopped by SIGTERM (128 + 15), as shells report it


class Terminated(BaseException):  # noqa: N818 (named as KeyboardInterrupt is: a stop, not an error)
    """SIGTERM arrived: like ``KeyboardInterrupt``, no ``except Exception`` stops it unwinding."""


def raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def terminate_by_exception() -> None:
    """Make SIGTERM raise :class:`Terminated`, unless it is ignored (as the caller may have asked)."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, raise_terminated)


def default_termination() -> None:
    """SIGTERM kills at once again: for worker processes forked from the CLI, which have no clean-ups."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main() -> None:
    """Import and run :func:`edgefmnist.cli.main`; exit 130 (143) with one line when interrupted
    (terminated) while importing."""
    terminate_by_exception()
    try:
        from edgefmnist.cli import main as run_cli
    except KeyboardInterrupt:
        print("edgefmnist: interrupted", file=sys.stderr)
        sys.exit(INTERRUPTED)
    except Terminated:
        print("edgefmnist: terminated", file=sys.stderr)
        sys.exit(TERMINATED)
    run_cli()
