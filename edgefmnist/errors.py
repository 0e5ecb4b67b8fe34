"""Errors meant for people: the CLI prints their message as one line and exits with ``exit_code``.

Exit codes (README, "Command line"): 1 bad input, 2 bad flags (:class:`UsageError`, as the
command line's own usage errors), 3 a parity or accuracy check failed (:class:`ValidationFailed`);
130 after Ctrl-C and 143 after SIGTERM (:class:`Terminated`).
"""

from __future__ import annotations

import stat
from pathlib import Path

NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
CONTROL_ESCAPES = {
    **{code: NAMED_ESCAPES.get(chr(code), f"\\x{code:02x}") for code in [*range(0x20), *range(0x7F, 0xA0)]},
    **{code: f"\\u{code:04x}" for code in (0x2028, 0x2029)},  # line and paragraph separators
    **{code: f"\\u{code:04x}" for code in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]},  # bidi overrides
    **{code: f"\\x{code - 0xDC00:02x}" for code in range(0xDC80, 0xDD00)},  # a name's undecodable byte
    ord("\\"): "\\\\",  # so that an escape is never a name's own text
}  # a file name may hold any of them; a message with them escaped stays one line, and a terminal's codes inert


def printable(text: str) -> str:
    """``text`` with its control characters (C0, DEL, C1, the Unicode line separators and the
    bidirectional embeddings, overrides and isolates, which reorder what follows) written as
    escapes (``"a\\nb"`` for a newline), a backslash doubled, and an undecodable byte of a file
    name (Python's ``surrogateescape``, U+DC80-U+DCFF) as ``\\xNN``: so a message naming a file
    stays on one line, and reads back unambiguously, whatever the name holds."""
    return text.translate(CONTROL_ESCAPES)


def quoted(text: str) -> str:
    """``'text'``: a name or a value set apart in a message line, which :func:`printable` then
    escapes with the rest of the line (``repr`` would escape a backslash twice). A quote inside
    is left as it is: the line is read by people, and names the value whole."""
    return f"'{text}'"


def is_utf8(name: str) -> bool:
    """False for a file name holding a byte that is not UTF-8 (``os.fsdecode``'s surrogate escapes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def not_a_file_reason(path: Path) -> str:
    """What ``path``, found to be no regular file, is, for a one-line message: "a folder", "a FIFO,
    not a regular file" (a socket, a device), "a dangling symlink", "vanished while listed" (gone
    since its folder was read) or "cannot be read (REASON)" (a symlink loop, a folder on the way
    that may not be searched). One ``stat`` that follows symlinks; nothing is raised."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "a dangling symlink" if path.is_symlink() else "vanished while listed"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO, not a regular file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a regular file"
    return "a device, not a regular file"


def counted(count: int, noun: str) -> str:
    """``"1 core"``, ``"2 cores"``, ``"1,200 photos"``: a count and a noun that takes a plain ``s`` in the plural."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception message, for one-line errors."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()[:300]
    return type(exc).__name__


class EdgeFmnistError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 1


class UsageError(EdgeFmnistError):
    """A flag value the command cannot use, or flags that conflict (exit code 2)."""

    exit_code = 2


class WriteFailed(EdgeFmnistError):
    """An output could not be written (a full disk, a read-only folder, a closed or full standard output, ...);
    a file it would have replaced is untouched."""


class DataError(EdgeFmnistError):
    """A data file is missing, corrupt, or not the official Fashion-MNIST."""


class DownloadFailed(DataError):
    """A download could not be made: no network, a refused connection, an HTTP error."""


class CheckpointError(EdgeFmnistError):
    """A checkpoint cannot be read or does not describe a known network."""


class ModelError(EdgeFmnistError):
    """An ONNX model is missing, corrupt, or not a model this toolkit can run."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, systemd, a cancelled CI job), raised where the program is, so
    that it stops as Ctrl-C stops it: temp files removed, files that belong together kept together."""


class ValidationFailed(EdgeFmnistError):
    """A parity check between two models did not pass; ``reports`` are the checked models' reports
    as JSON-ready values, the failed one last (``[]`` when none was given), for a ``--json`` caller."""

    exit_code = 3

    def __init__(self, message: str, reports: list[dict] | None = None) -> None:
        super().__init__(message)
        self.reports = reports or []
