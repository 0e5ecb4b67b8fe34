"""multipart/form-data bodies parsed in memory (python-multipart's streaming parser), for ``edgefmnist serve``.

    curl -F file=@shirt.jpg -F file=@hat.png http://127.0.0.1:8000/v1/classify/batch

Starlette's own form parser spools file parts larger than 1 MiB to temporary files; the
service never writes an upload to disk, so it parses the body it already holds (bounded by
the body limit) with ``python_multipart.MultipartParser`` and keeps each file in its own buffer
(a ``bytearray``), with no copy of the body or of the file.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from python_multipart.multipart import MultipartParser, parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

# The parser logs a warning for each malformed body before raising; the client gets the reason
# in its 400 answer, so the service's stderr would only repeat what any client can send.
logging.getLogger("python_multipart.multipart").setLevel(logging.ERROR)


# What python-multipart's messages (by their start) mean to a client; another is passed on as it is.
PARSER_MESSAGES = (
    (
        ("Found invalid character", "Found 0-length header", "Did not find LF"),
        "a part's headers are malformed",
    ),
    (("Did not find CRLF after boundary", "Did not find - at end of boundary"), "a boundary in the body is malformed"),
)


def parser_message(exc: Exception, body_offset: Callable[[int], int], parser: MultipartParser | None) -> str:
    """A parser error as a client reads it: what is wrong and at which byte of the body (the
    parser's ``offset`` mapped by ``body_offset``), else its own first line. A part's headers
    beyond ``parser``'s limits (python-multipart's ``max_header_count`` and ``max_header_size``)
    are named with the limit."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    offset = getattr(exc, "offset", None)
    at = f" (byte {body_offset(offset)})" if isinstance(offset, int) and offset >= 0 else ""
    if text.startswith("Maximum header count") and parser is not None:
        return f"a part has more than {parser.max_header_count} headers{at}"
    if text.startswith("Maximum header size") and parser is not None:
        return f"a part's header line is longer than {parser.max_header_size} bytes{at}"
    for starts, meaning in PARSER_MESSAGES:
        if text.startswith(starts):
            return meaning + at
    return text


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data."""


class TooManyParts(MultipartError):
    """The body has more parts than the caller takes."""


def first_boundary_line(body: bytes | bytearray, boundary: bytes) -> re.Match[bytes]:
    """The body's first boundary line: ``--`` and the boundary at the start of the body or of a
    line (after CRLF, or a bare LF as lenient mail readers take it), followed by ``--`` or by
    the end of its line after any spaces or tabs (RFC 2046, 5.1.1: a preamble may come before
    it, and transport padding after it). Group 1 is the delimiter, group 2 what follows it.

    Raises :class:`MultipartError` when the body has no such line, when it has the delimiter
    only within a line before its closing line, or when the first line ends with a bare LF
    (multipart lines end with CRLF).
    """
    name = boundary.decode("utf-8", "replace")
    line = re.search(rb"(?:^|\n)(--" + re.escape(boundary) + rb")(--|[ \t]*\r?\n)", body)
    if line is None:
        raise MultipartError(f"no line of the body is the boundary that Content-Type gives ('--{name}')")
    if line[2] == b"--" and (inline := body.find(b"--" + boundary)) < line.start(1):  # only a closing line
        raise MultipartError(f"the '--{name}' at byte {inline} does not start a line, as a boundary line must")
    if line[2].endswith(b"\n") and not line[2].endswith(b"\r\n"):
        raise MultipartError(
            f"the first boundary line ends with a bare LF (byte {line.end() - 1}): lines end with CRLF"
        )
    return line


def parser_input(body: bytes | bytearray, boundary: bytes) -> tuple[bytes | bytearray, Callable[[int], int]]:
    """The body as python-multipart takes it, from its first boundary line on and that line
    without padding (see :func:`first_boundary_line`, which raises :class:`MultipartError`),
    and the map from an offset in it to the same byte's offset in ``body``. A body that already
    starts so (as clients send it) is returned itself, not copied."""
    line = first_boundary_line(body, boundary)
    start, end = line.start(1), line.end()
    head = b"--" + boundary + b"\r\n"
    if start == 0 and (line[2] == b"--" or end == len(head)):
        return body, lambda offset: offset
    if line[2] == b"--":
        return body[start:], lambda offset: start + offset
    return head + body[end:], lambda offset: start + offset if offset < len(head) else end + offset - len(head)


def parse_multipart(
    body: bytes | bytearray, content_type: str, field: str, max_parts: int
) -> list[tuple[str, bytes | bytearray]]:
    """The parts of form field ``field`` in ``body``, as ``(filename or field, its bytes)`` in order.

    ``content_type`` is the request's header, with its ``boundary`` parameter. Parts of
    other fields, a preamble before the first boundary line and padding after it are skipped.
    Raises :class:`MultipartError` for a missing boundary or first boundary line (see
    :func:`first_boundary_line`), a part without ``Content-Disposition`` or with more or longer
    headers than python-multipart takes (8 lines of at most 4,224 bytes, its defaults), a body
    that ends before its closing boundary, and
    :class:`TooManyParts` as soon as the body holds more than ``max_parts`` parts of any field
    (a body of many tiny parts costs far more to parse than one of the same size).
    """
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise MultipartError("Content-Type has no boundary")
    collector = FieldParts(field, max_parts)
    parser: MultipartParser | None = None
    body_offset: Callable[[int], int] = int
    try:
        parser = MultipartParser(boundary, collector.callbacks())  # refuses a boundary of more than 256 bytes
        data_in, body_offset = parser_input(body, boundary)
        parser.write(data_in)  # type: ignore[arg-type]  # it takes any bytes-like buffer it can find() in
        parser.finalize()
    except MultipartError:
        raise
    except Exception as exc:  # python-multipart's FormParserError, MultipartParseError and friends
        raise MultipartError(parser_message(exc, body_offset, parser)) from None
    if not collector.finished:
        raise MultipartError("the body ends before its closing boundary")
    return collector.parts


class FieldParts:
    """python-multipart's callbacks, collecting the parts of form field ``field`` as
    ``(filename or field, its bytes)``; raises :class:`TooManyParts` at part ``max_parts`` + 1
    of any field and :class:`MultipartError` for a part without ``Content-Disposition``."""

    def __init__(self, field: str, max_parts: int) -> None:
        self.field, self.max_parts = field, max_parts
        self.parts: list[tuple[str, bytes | bytearray]] = []
        self.count = 0
        self.finished = False
        self.headers: dict[bytes, bytes] = {}
        self.header_field, self.header_value, self.data = bytearray(), bytearray(), bytearray()

    def callbacks(self) -> MultipartCallbacks:
        """The callbacks by the names ``MultipartParser`` takes them."""
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self.count += 1
        if self.count > self.max_parts:
            raise TooManyParts(f"more than {self.max_parts} parts")
        self.headers.clear()
        self.data.clear()

    def on_header_field(self, chunk: bytes, start: int, end: int) -> None:
        self.header_field.extend(chunk[start:end])

    def on_header_value(self, chunk: bytes, start: int, end: int) -> None:
        self.header_value.extend(chunk[start:end])

    def on_header_end(self) -> None:
        self.headers[bytes(self.header_field).lower()] = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()

    def on_part_data(self, chunk: bytes, start: int, end: int) -> None:
        self.data.extend(memoryview(chunk)[start:end])  # a slice of bytes would copy the part once more

    def on_part_end(self) -> None:
        disposition = self.headers.get(b"content-disposition")
        if disposition is None:
            raise MultipartError("a part has no Content-Disposition header")
        _, params = parse_options_header(disposition)
        name = params.get(b"name", b"").decode("utf-8", "replace")
        if name == self.field:
            filename = params.get(b"filename", b"").decode("utf-8", "replace")
            self.parts.append((filename or name, self.data))  # the part's own buffer, not a copy of it
        self.data = bytearray()

    def on_end(self) -> None:
        self.finished = True
