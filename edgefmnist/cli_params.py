"""Checks of the command line's arguments, beyond what click's types check.

    edgefmnist export m.pt/            # names a folder, expected a file path (exit 2)
    edgefmnist bench --batch 1,0       # expected comma-separated positive integers (exit 2)

Option callbacks (:func:`must_exist`, :func:`must_be_finite`, ...), the checks run on the raw
arguments before click reads them (:func:`refuse_misread_paths`), and the hint added to click's
"unexpected extra arguments" (:func:`extra_argument_hint`).
"""

from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path

import click
import typer
from click.exceptions import ClickException

from edgefmnist import contract
from edgefmnist.errors import EdgeFmnistError, UsageError, first_line, is_utf8, quoted


def must_exist(param: typer.CallbackParam, value: Path | list[Path] | None) -> Path | list[Path] | None:
    """Callback: raise :class:`EdgeFmnistError` (exit 1, as any missing input) for a path that does not exist,
    naming the option it was given to (``--data-dir /x: does not exist``)."""
    flag = f"{param.opts[0]} " if param.param_type_name == "option" else ""
    for path in value if isinstance(value, list) else [value]:
        try:
            exists = path is None or path.exists()
        except OSError as exc:  # a folder on the way that may not be searched
            raise EdgeFmnistError(f"{flag}{path}: cannot read ({exc.strerror or exc})") from None
        if not exists:
            raise EdgeFmnistError(f"{flag}{path}: does not exist")
    return value


def must_be_a_model_file(param: typer.CallbackParam, value: Path | None) -> Path | None:
    """Callback for ``evaluate``'s model: :func:`must_exist`, then ``typer.BadParameter`` (exit 2)
    for a folder, which is a photo set given without ``--photos``."""
    must_exist(param, value)
    if value is not None and value.is_dir():
        raise typer.BadParameter(f"{value} is a folder, not a model (a photo set goes in --photos)")
    return value


def must_be_finite(value: float | None) -> float | None:
    """Option callback: raise ``typer.BadParameter`` (exit 2) for nan or an infinity, which no range check catches."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def must_be_an_address(value: str) -> str:
    """Option callback: ``value`` without surrounding spaces and without the brackets of an IPv6
    literal (``[::1]`` -> ``::1``, as URLs write it); raise ``typer.BadParameter`` (exit 2) for an
    empty or blank host name, a URL (``http://127.0.0.1``), a host with a port (``localhost:8080``,
    ``[::1]:8080``: a bare IPv6 address has two colons or more), brackets not around the whole, or a
    name that IDNA cannot encode (an empty label, ``a..b``, or one over 63 characters)."""
    value = value.strip()
    if "/" in value:
        raise typer.BadParameter(
            f"{quoted(value)} is a URL: give the address alone (127.0.0.1), and the port with --port"
        )
    if value.count(":") == 1 or (value.startswith("[") and "]:" in value):
        raise typer.BadParameter(f"{quoted(value)} holds a port: give the address alone, and the port with --port")
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1].strip()
    if "[" in value or "]" in value:
        raise typer.BadParameter(f"{quoted(value)}: brackets go around a whole IPv6 address, [::1]")
    if not value:
        raise typer.BadParameter("needs an address (127.0.0.1, 0.0.0.0 or a host name), not an empty or blank string")
    try:
        value.encode("idna")  # as socket.getaddrinfo encodes a host name (RFC 3490)
    except UnicodeError as exc:
        raise typer.BadParameter(f"{quoted(value)} is not a host name ({first_line(exc)})") from None
    return value


def parse_batches(text: str) -> tuple[int, ...]:
    """``"1,32,256"`` -> ``(1, 32, 256)``, sorted and once each; :class:`UsageError` for anything but
    ASCII digits and commas, for 0, or for more than ``contract.MAX_BENCH_BATCH``."""
    parts = text.split(",")
    shown = text if len(text) <= 40 else f"{text[:40]}..."
    if not all(re.fullmatch(r"[0-9]+", part) and part.strip("0") for part in parts):
        raise UsageError(f"--batch {quoted(shown)}: expected comma-separated positive integers such as 1,32,256")
    longest = len(str(contract.MAX_BENCH_BATCH))  # int() refuses 4,300 digits: compare lengths first
    if any(len(part.lstrip("0")) > longest or int(part) > contract.MAX_BENCH_BATCH for part in parts):
        raise UsageError(f"--batch {quoted(shown)}: at most {contract.MAX_BENCH_BATCH:,} images a batch (the test set)")
    return tuple(sorted({int(part) for part in parts}))


def check_token(flag: str | None, variable: str | None) -> None:
    """Raise :class:`UsageError` for a token that no client could send, from ``--token`` (``flag``)
    or else from ``$EDGEFMNIST_TOKEN`` (``variable``, its raw value: click reads an empty one as
    unset): an empty or blank one, one with white space at an end, which HTTP strips from a
    header's value, one holding a control character, which a header's value cannot hold
    (RFC 9110, section 5.5), or one that is not ASCII, which browsers send as Latin-1 bytes
    (the Fetch standard's byte strings) and curl as UTF-8."""
    given, source = (flag, "--token") if flag is not None else (variable, "$EDGEFMNIST_TOKEN")
    if given is None:
        return
    if not given.strip():
        raise UsageError(f"{source} is empty: give a secret, or leave it out to serve without a token")
    if given != given.strip():
        raise UsageError(f"{source} has white space at an end, which a client's Authorization header cannot carry")
    if not is_utf8(given):
        raise UsageError(f"{source} holds a byte that is not UTF-8: give the secret as UTF-8 text")
    if any(ord(character) < 32 or ord(character) == 127 for character in given):
        raise UsageError(f"{source} holds a control character, which a client's Authorization header cannot carry")
    if not given.isascii():
        foreign = next(c for c in given if not c.isascii())
        raise UsageError(
            f"{source} holds {quoted(foreign)}, which is not ASCII: a browser sends it "
            "in a header as other bytes than curl does, so the page could never use it; give an ASCII secret"
        )


def extra_argument_hint(exc: ClickException, argv: list[str] | None) -> str:
    """A hint after click's "Got unexpected extra arguments (A B)" from ``infer`` when the extra
    arguments look like pictures: every one an existing file (the shell expanded an unquoted
    ``--image`` pattern), or one a file or named with a picture extension (several pictures after
    one ``--image``, or pictures named without it). Names are read from click's message, split at spaces."""
    given = sys.argv[1:] if argv is None else argv
    message = exc.format_message()
    extra = message[message.find("(") + 1 : message.rfind(")")].split()
    if not (message.startswith("Got unexpected extra argument") and "infer" in given and extra):
        return ""
    from edgefmnist.runtime.picture_formats import picture_extensions

    looks_like_pictures = any(
        Path(name).suffix.lower() in picture_extensions() or Path(name).is_file() for name in extra
    )
    all_files = all(Path(name).is_file() for name in extra)  # as the shell expands an unquoted pattern
    if looks_like_pictures and not any(arg == "--image" or arg.startswith("--image=") for arg in given):
        named = " ".join(f"--image {name}" for name in extra[:2])
        quote = ", or quote a pattern: --image 'photos/*.jpg'" if all_files and len(extra) > 1 else ""
        return f" (name each picture with --image: {named}{quote})"
    repeat = "--image a.jpg --image b.jpg"
    if all_files:
        return (
            " (an unquoted pattern is expanded by the shell: quote it, --image 'photos/*.jpg', "
            f"give the folder, or repeat {repeat})"
        )
    if looks_like_pictures:
        return f" (each picture takes its own --image: {repeat})"
    return ""


def refuse_misread_paths(argv: list[str], app: typer.Typer) -> None:
    """Raise :class:`UsageError` for a path that click would read as another one.

    An empty string (``--out ""``, ``--out=``, ``export ""``) is read as ``.``, the current
    folder: a command would then write beside or read all of it. A file path that names a folder
    (``--plot newdir/``, ``export m.pt/``, ``--out runs/.``) loses its ``/`` or ``.`` and names a
    file. The command's parameters of click's ``Path`` type are looked up, with ``infer``'s
    ``--image`` and ``--save-preprocessed`` (paths given as text, where a trailing ``/`` names a
    folder); arguments after ``--`` are left to click. ``app`` is the command line they are given to.
    """
    if not any(arg == "" or arg.endswith("=") or names_a_folder(arg) for arg in argv):
        return  # the usual case, without building the commands (tens of milliseconds)
    command = typer.main.get_command(app)
    chosen = command.commands.get(argv[0]) if argv and isinstance(command, click.Group) else None
    if chosen is None:
        return
    paths = {"--image", "--save-preprocessed"} if argv[0] == "infer" else set()
    takes_value: set[str] = set()
    files: set[str] = set()
    for param in chosen.params:
        if isinstance(param, click.Option) and not param.is_flag:
            takes_value.update(param.opts)
            if isinstance(param.type, click.Path):
                paths.update(param.opts)
                files.update(param.opts if not param.type.dir_okay else ())
    path_arguments = [p for p in chosen.params if isinstance(p, click.Argument) and isinstance(p.type, click.Path)]
    path_argument = bool(path_arguments)
    file_argument = path_argument and not any(p.type.dir_okay for p in path_arguments)  # type: ignore[attr-defined]
    for before, arg in zip(argv, argv[1:], strict=False):
        if arg == "--":
            return
        flag, equals, value = arg.partition("=")
        if equals and not value and flag in paths:
            raise UsageError(f"{flag} needs a path, not an empty string")
        if arg == "" and before in paths:
            raise UsageError(f"{before} needs a path, not an empty string")
        if arg == "" and before not in takes_value and path_argument:
            raise UsageError("an empty argument where a path is expected")
        flag, value = (flag, value) if equals and arg.startswith("-") else (before, arg)
        if flag in files and names_a_folder(value):
            raise UsageError(f"{flag} {value}: names a folder, expected a file path")
        positional = before not in takes_value and not arg.startswith("-")
        if positional and file_argument and names_a_folder(arg):
            raise UsageError(f"{arg}: names a folder, expected a file path")


def names_a_folder(path: str) -> bool:
    """Whether ``path`` ends as only a folder's path can (``/``, ``/.``, ``/..``, or is ``.`` or ``..``)
    but is no folder yet: an existing folder is click's to refuse ("is a directory")."""
    return (path.endswith(("/", "/.", "/..")) or path in (".", "..")) and not os.path.isdir(path)
