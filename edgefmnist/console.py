"""What the command line prints: results on stdout, notes on stderr, and what happens when stdout fails.

    edgefmnist infer --image 'photos/*.jpg' | head -3     # the reader leaves: no error, every picture done
    edgefmnist infer --image x.jpg > /dev/full             # one line naming standard output, exit 1

Results go to stdout through :func:`write_stdout`, which names standard output in its one-line
error; :func:`echo_unless_gone` lets a command finish its work when stdout cannot take more, and
leaves the failure in ``lost_stdout`` for :func:`edgefmnist.cli.main` to report last.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence

import typer

from edgefmnist.errors import WriteFailed, first_line, printable


def print_json(value: object) -> None:
    echo_unless_gone(json.dumps(value, indent=2))


def say(line: str) -> None:
    """One line of a report on stdout, through :func:`printable`: a file name in it that holds
    a newline or a terminal code cannot break the line or forge another. Raises :class:`WriteFailed`
    as :func:`write_stdout` does."""
    write_stdout(printable(line))


STDOUT_CLOSED = "standard output is closed: nowhere to print the result"
lost_stdout: list[str] = []  # the first reason stdout stopped taking this run's output, for main to report


def write_stdout(text: str = "") -> None:
    """Print ``text`` and a newline on stdout.

    Raises :class:`WriteFailed`, one line that names standard output, when it cannot take the
    text: closed (``>&-``; Python then has no ``sys.stdout``) or a failed write (``> /dev/full``,
    a full disk), as ``ls`` fails on a write error rather than exit 0 with its output lost.
    ``BrokenPipeError`` (the reader has gone) is passed on, for :func:`echo_unless_gone`.
    """
    if sys.stdout is None:
        raise WriteFailed(STDOUT_CLOSED)
    try:
        typer.echo(text)
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise stdout_write_failed(exc) from None


def stdout_write_failed(exc: OSError) -> WriteFailed:
    """The one-line error for a write to stdout that failed with ``exc`` (``> /dev/full``)."""
    return WriteFailed(f"standard output: cannot write ({exc.strerror or first_line(exc)})")


def echo_unless_gone(text: str, err: bool = False) -> None:
    """Print ``text`` (on stdout through :func:`write_stdout`) without stopping the work when the
    stream cannot take it, so that the command still finishes (every picture saved and reported):

    - the reader has gone (``| head -3``, a closed terminal): the text is dropped, no error;
    - stdout fails (``> /dev/full``): the text is dropped, and :func:`main` reports the first
      failure (``lost_stdout``) when the work is done, with exit code 1.
    """
    try:
        if err:
            typer.echo(text, err=True)
        else:
            write_stdout(text)
    except BrokenPipeError:
        stream = sys.stderr if err else sys.stdout
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
    except WriteFailed as exc:
        if not lost_stdout:
            lost_stdout.append(str(exc))


@contextlib.contextmanager
def reporting_written(paths: Sequence[object]) -> Iterator[None]:
    """Around the report of files already written (a model, a checkpoint): when stdout fails, its
    one-line error (raised, or left in ``lost_stdout``) also says that they were written, so that
    a script that reads the exit code alone is not told that the work was lost."""
    written = f"written all the same: {', '.join(map(str, paths))}"
    try:
        yield
    except WriteFailed as exc:
        raise WriteFailed(f"{exc}; {written}") from None
    if lost_stdout and not lost_stdout[0].endswith(written):
        lost_stdout[0] += f"; {written}"


def show_progress(line: str) -> None:
    """A status line on stderr, only for a person at a terminal (like tqdm's bars)."""
    if sys.stderr.isatty():
        typer.echo(printable(f"… {line}"), err=True)
