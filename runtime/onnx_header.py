"""Read an ONNX file's IR version, opsets and ``metadata_props`` without onnx or a session.

A model that needs a newer onnxruntime cannot even be opened by the installed one, so the
version guard must read the metadata first. ModelProto's top-level fields are plain
protobuf wire format: ``ir_version`` (1), ``opset_import`` (8), ``metadata_props`` (14).
The graph (7) is read only for its initializers' external-data locations, which must stay
inside the model's folder (old onnxruntime releases would follow ``../`` or a symlink).
"""

from __future__ import annotations

import io
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edgefmnist.contract import is_onnx_name
from edgefmnist.errors import ModelError, not_a_file_reason, quoted

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5
# 1 GiB: far above any Fashion-MNIST network (the shipped files are under 1 MiB), below protobuf's 2 GiB
# message limit, and small enough that a wrong path to a huge file is refused before it is read
MAX_MODEL_BYTES = 1 << 30


@dataclass(frozen=True)
class ModelHeader:
    """What an ONNX file declares, read without onnx or onnxruntime (:func:`parse_model_header`)."""

    ir_version: int
    opsets: dict[str, int]  # domain ("" is the default ONNX domain) -> version
    metadata: dict[str, str]
    has_graph: bool
    external_data: tuple[str, ...] = ()  # locations named by the graph's initializers


class _WireError(ValueError):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _WireError("bad varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """Yield ``(field_number, value)``; value is an int or a bytes slice."""
    pos = 0
    value: int | bytes
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise _WireError("field number 0")
        if wire_type == VARINT:
            value, pos = _varint(data, pos)
        elif wire_type == LENGTH_DELIMITED:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise _WireError("truncated field")
            value, pos = data[pos : pos + size], pos + size
        elif wire_type in (FIXED64, FIXED32):
            width = 8 if wire_type == FIXED64 else 4
            if pos + width > len(data):
                raise _WireError("truncated field")
            value, pos = int.from_bytes(data[pos : pos + width], "little"), pos + width
        else:
            raise _WireError(f"wire type {wire_type}")
        yield number, value


def _string_pair(data: bytes) -> tuple[str, str]:
    pair = {number: value for number, value in _fields(data) if isinstance(value, bytes)}
    return pair.get(1, b"").decode("utf-8"), pair.get(2, b"").decode("utf-8")


def _external_locations(graph: bytes) -> list[str]:
    """``location`` of every initializer (GraphProto field 5) stored as external data (TensorProto field 13)."""
    locations = []
    for number, tensor in _fields(graph):
        if number == 5 and isinstance(tensor, bytes):
            entries = dict(
                _string_pair(entry) for field, entry in _fields(tensor) if field == 13 and isinstance(entry, bytes)
            )
            if "location" in entries:
                locations.append(entries["location"])
    return locations


def parse_model_header(data: bytes) -> ModelHeader:
    """Parse the top-level fields of a serialised ModelProto; raise ``ValueError`` if it is not one."""
    ir_version, opsets, metadata, has_graph, external = 0, {}, {}, False, []
    try:
        for number, value in _fields(data):
            if number == 1 and isinstance(value, int):
                ir_version = value
            elif number == 7 and isinstance(value, bytes):
                has_graph = True
                external += _external_locations(value)
            elif number == 8 and isinstance(value, bytes):
                entry = dict(_fields(value))
                domain = entry.get(1, b"")
                opsets[domain.decode("utf-8") if isinstance(domain, bytes) else ""] = int(entry.get(2, 0))
            elif number == 14 and isinstance(value, bytes):
                key, text = _string_pair(value)
                metadata[key] = text
    except (_WireError, UnicodeDecodeError, TypeError) as exc:
        raise ValueError(str(exc)) from None
    if not has_graph or ir_version == 0:
        raise ValueError("no graph or IR version")
    return ModelHeader(ir_version, opsets, metadata, has_graph, tuple(external))


def check_external_data(path: Path, locations: tuple[str, ...]) -> None:
    """Raise :class:`ModelError` for external data whose location is absolute or resolves (symlinks
    included) outside the model's folder."""
    folder = path.resolve().parent
    for location in locations:
        target = (folder / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(folder):
            raise ModelError(f"{path}: external data {quoted(location)} lies outside the model's folder; refused")


def is_pytorch_checkpoint(data: bytes) -> bool:
    """Whether ``data`` is what ``torch.save`` writes: a zip archive holding a ``data.pkl``."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return any(name.rsplit("/", 1)[-1] == "data.pkl" for name in archive.namelist())
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return False


def read_model_header(path: Path) -> ModelHeader:
    """:func:`parse_model_header` of a file, with one-line :class:`ModelError` messages."""
    path = Path(path)
    try:
        if path.is_dir():
            raise ModelError(f"{path}: is a directory, expected an .onnx file")
        mode, size = (info := path.stat()).st_mode, info.st_size
        if not stat.S_ISREG(mode):  # a FIFO would wait for a writer, /dev/zero never end
            raise ModelError(f"{path}: {not_a_file_reason(path)}, expected an .onnx file")
        if size > MAX_MODEL_BYTES:
            raise ModelError(f"{path}: {size:,} bytes is too large for a Fashion-MNIST model")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{path}: no such model file") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not data:
        raise ModelError(f"{path}: empty file, not an ONNX model")
    try:
        header = parse_model_header(data)
    except ValueError:
        if is_pytorch_checkpoint(data):
            out = f" --out {path.with_name(path.stem + '.exported.onnx')}" if is_onnx_name(path) else ""
            raise ModelError(
                f"{path}: a PyTorch checkpoint, not an ONNX model; export it first: edgefmnist export {path}{out}"
            ) from None
        raise ModelError(f"{path}: not an ONNX model (corrupt or truncated)") from None
    check_external_data(path, header.external_data)
    return header
