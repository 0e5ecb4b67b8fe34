"""Whether a PNG output (``--save-preprocessed``, ``--plot``) may be written where it is named.

    edgefmnist infer --image shirt.jpg --save-preprocessed model.onnx   # refused: not a PNG there

A 28x28 or a plot written over a model, a checkpoint, notes or another picture would destroy
it, and a name such as ``seen.jpg`` was likely meant for another file: :func:`check_png_target`
refuses both before any work, reading no more than a file's first 26 bytes.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from edgefmnist.runtime.picture_formats import names_other_than_png

from edgefmnist.atomic import STREAM_HINT, open_descriptor, refuse_standard_stream, write_target
from edgefmnist.errors import UsageError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"  # the first 8 bytes of every PNG file (PNG specification, section 5.2)


PNG_HEAD_BYTES = 26  # the signature and the IHDR chunk up to the colour type (PNG specification, 11.2.2)


def file_head(path: Path) -> bytes:
    """The first ``PNG_HEAD_BYTES`` of the file at ``path`` (fewer for a shorter file); raises ``OSError``."""
    with open(path, "rb") as existing:
        return existing.read(PNG_HEAD_BYTES)


def not_known_png(path: Path) -> str:
    """Why a PNG written at ``path`` (symlinks followed) could destroy what is there: "an existing
    file that is not a PNG" (a model, a checkpoint, notes), or that cannot be read to tell; ""
    for a missing or empty file, a PNG, a folder, a device or a FIFO."""
    if not os.path.isfile(path):
        return ""
    try:
        head = file_head(path)
    except OSError as exc:
        return f"an existing file that cannot be read to tell whether it is a PNG ({exc.strerror or exc})"
    return "an existing file that is not a PNG" if head and head[: len(PNG_SIGNATURE)] != PNG_SIGNATURE else ""


# PNG colour types (PNG specification, section 11.2.2), as png_header gives them
PNG_GRAYSCALE = 0
PNG_COLOUR_TYPES = {PNG_GRAYSCALE: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale and alpha", 6: "RGBA"}


def png_header(path: Path) -> tuple[int, int, int, int] | None:
    """``(width, height, bit depth, colour type)`` from the IHDR chunk of the PNG file at ``path``
    (PNG specification, section 11.2.2; :data:`PNG_COLOUR_TYPES` names the types), or None for a file that
    cannot be read or does not start with a PNG's signature and IHDR."""
    try:
        head = file_head(path)
    except OSError:
        return None
    if len(head) < PNG_HEAD_BYTES or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return width, height, head[24], head[25]


def refuse_dash(flag: str, target: str | Path) -> None:
    """Raise :class:`UsageError` (exit 2) for an output named ``-``, which here would be a file of
    that name, not standard output as ``--image -`` is standard input."""
    if os.fspath(target) == "-":
        raise UsageError(f"{flag} -: would be a file named '-' (./- names one); {STREAM_HINT}")


def check_png_target(flag: str, path: Path, what: str) -> None:
    """Raise :class:`UsageError` (exit 2) unless ``what`` (``"the plot"``), a PNG, may be written
    at ``path``: a name with an extension other than PNG's (:func:`names_other_than_png`) or an
    existing file that is not a PNG, or cannot be read to tell (:func:`not_known_png`), is
    refused. An existing device or FIFO passes, whatever its name, as does a stream the caller
    gave (:func:`~edgefmnist.atomic.write_target`: ``/dev/fd/3``; another descriptor is
    refused), but not standard output or error (:func:`~edgefmnist.atomic.refuse_standard_stream`); a
    folder is left to the write's own checks."""
    refuse_standard_stream(flag, path, what)
    if open_descriptor(path):
        try:
            write_target(path)
        except UsageError as exc:  # "/dev/fd/7: descriptor 7 is not open": say which flag
            raise UsageError(f"{flag} {exc}") from None
        return
    if os.path.exists(path) and not os.path.isfile(path):
        return
    if names_other_than_png(path):
        raise UsageError(f"{flag} {path}: {what} is written as a PNG; name the file .png")
    if reason := not_known_png(path):
        raise UsageError(f"{flag} {path}: {reason}; {what} is not written over it")
