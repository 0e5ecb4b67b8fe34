"""Find, download, parse and verify the official Fashion-MNIST IDX files.

    edgefmnist data                 # where the data came from, and whether it verifies

Lookup order: ``--data-dir`` / ``$EDGEFMNIST_DATA``, the user cache
(``~/.cache/edgefmnist``), the Debian package (``/usr/share/datasets/fashion-mnist``), and
otherwise a download into the cache. Files may be gzipped (``NAME.gz``) or plain.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import math
import os
import re
import struct
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgefmnist import spec
from edgefmnist.atomic import write_together
from edgefmnist.errors import DataError, DownloadFailed, first_line, not_a_file_reason

ENV_DATA_DIR = "EDGEFMNIST_DATA"
ENV_MIRROR = "EDGEFMNIST_MIRROR"  # a base URL serving the four .gz files instead of the official one
DEBIAN_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
IDX_UBYTE_MAGIC = b"\x00\x00\x08"  # the first 3 bytes of any unsigned-byte IDX file
GZIP_MAGIC = b"\x1f\x8b"
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DOWNLOAD_TIMEOUT_S = 30.0
MAX_DOWNLOAD_BYTES = 32 << 20  # the largest official .gz (train-images) has 26,421,880 bytes
MAX_IDX_BYTES = 1 << 28  # the largest official file holds 47,040,000 bytes
READ_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """The per-user cache, honouring ``$XDG_CACHE_HOME`` when it is an absolute path (the XDG Base
    Directory Specification ignores a relative one), else ``~/.cache``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(base) if os.path.isabs(base) else Path.home() / ".cache") / "edgefmnist"


@dataclass(frozen=True)
class DataSource:
    """A folder holding the IDX files asked for, and how it was found."""

    folder: Path
    origin: str  # "--data-dir", "$EDGEFMNIST_DATA", "cache", "debian package", "download"


@dataclass(frozen=True)
class Split:
    """Images ``[N, 28, 28]`` and labels ``[N]``, both uint8."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class FashionMNIST:
    """The official splits, with the tutorial's validation hold-out."""

    train: Split  # training images after the validation hold-out (55,000)
    validation: Split  # the first 5,000 training images
    test: Split  # the official 10,000 test images
    source: DataSource
    sha256: dict[str, str]  # of the decompressed content, by file name


def idx_file(folder: Path, name: str) -> Path | None:
    """The path of ``name`` in ``folder``, gzipped or plain, or None.

    The official name first (``NAME.gz``, ``NAME``), then the names unpackers write: any of
    ``-``, ``.``, ``_`` between the parts and any letter case (7-Zip and WinRAR write
    ``t10k-images.idx3-ubyte``). Which file it is, the SHA-256 of its content decides.
    """
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return None
    return next((p for p in entries if normalised_idx_name(p.name) == name and p.is_file()), None)


def normalised_idx_name(file_name: str) -> str:
    """``"T10K_images.idx3-ubyte.gz"`` -> ``"t10k-images-idx3-ubyte"``: lower case, no ``.gz``, dashes between parts."""
    stem = file_name.lower().removesuffix(".gz")
    return re.sub(r"[._-]", "-", stem)


def near_misses(folder: Path, name: str) -> list[Path]:
    """Entries of ``folder`` that look meant to be ``name`` (same split and kind) but are not accepted:
    misnamed files, or entries of the right name that are no file (a folder, a dangling symlink)."""
    prefix = "-".join(name.split("-")[:2])  # "t10k-images"
    try:
        return sorted(p for p in folder.iterdir() if normalised_idx_name(p.name).startswith(prefix))
    except OSError:
        return []


ALL_SPLITS = ("train", "test")


def has_all_files(folder: Path, splits: tuple[str, ...] = ALL_SPLITS) -> bool:
    """Whether ``folder`` holds the IDX files of ``splits``; :class:`DataError` when it cannot be searched."""
    try:
        return all(idx_file(folder, name) for split in splits for name in SPLIT_FILES[split])
    except OSError as exc:  # a folder without search permission
        raise DataError(f"{folder}: cannot read ({exc.strerror or exc})") from None


def missing_files_error(folder: Path, splits: tuple[str, ...] = ALL_SPLITS) -> DataError:
    """A one-line error naming a missing folder, or the missing files of ``splits``, the near
    misses and the names accepted."""
    if not folder.is_dir():
        return DataError(
            f"{folder}: {'not a folder' if folder.exists() else 'no such folder'}, expected the Fashion-MNIST files"
        )
    missing = [name for split in splits for name in SPLIT_FILES[split] if not idx_file(folder, name)]
    found = [miss for name in missing for miss in near_misses(folder, name)]
    gz = "or .gz" if len(missing) == 1 else "each may end with .gz"
    message = f"{folder}: missing Fashion-MNIST {'file' if len(missing) == 1 else 'files'}: {', '.join(missing)} ({gz})"
    for miss in found:
        if not miss.is_file():
            message += f"; {miss.name} is {not_a_file_reason(miss)}"
    misnamed = [miss.name for miss in found if miss.is_file()]
    if misnamed:
        message += (
            f"; found {', '.join(misnamed)}, but expected NAME or NAME.gz for each NAME above"
            " (dots or underscores for the dashes are fine)"
        )
    return DataError(message)


def find_data(data_dir: Path | None = None, download: bool = True, splits: tuple[str, ...] = ALL_SPLITS) -> DataSource:
    """Locate the IDX files of ``splits`` in the documented order, downloading all four if allowed
    (the test set alone is two files: what a board needs to verify a model).

    Raises ``DataError`` when they are not found (and not downloaded), :class:`DownloadFailed`
    when the download fails."""
    explicit = [(data_dir, "--data-dir")] if data_dir else []
    if not explicit and os.environ.get(ENV_DATA_DIR):
        explicit = [(Path(os.environ[ENV_DATA_DIR]), f"${ENV_DATA_DIR}")]
    for folder, origin in explicit:
        try:
            if not has_all_files(folder, splits):
                raise missing_files_error(folder, splits)
        except DataError as exc:
            if origin == "--data-dir":
                raise
            raise DataError(f"{exc}; the folder comes from {origin}") from None
        return DataSource(folder, origin)
    for folder, origin in ((default_cache_dir(), "cache"), (DEBIAN_DATA_DIR, "debian package")):
        try:
            if has_all_files(folder, splits):
                return DataSource(folder, origin)
        except DataError:  # a place nobody named, which may not be searched: the next one is tried
            continue
    if not download:
        raise DataError(
            f"Fashion-MNIST not found in {default_cache_dir()} or {DEBIAN_DATA_DIR}; "
            "pass --data-dir, or --download to fetch it into the cache"
        )
    return DataSource(download_found_nowhere(), "download")


def download_found_nowhere() -> Path:
    """:func:`download_data` into the cache, for data found in no folder edgefmnist looks in: a
    :class:`DownloadFailed` then also says where else the data can come from."""
    try:
        return download_data(default_cache_dir())
    except DownloadFailed as exc:
        advice = "pass --data-dir or install the Debian package dataset-fashion-mnist"
        joined = f"{exc} {advice[0].upper()}{advice[1:]}" if str(exc).endswith("?") else f"{exc}; {advice}"
        raise DownloadFailed(joined) from None


def already_present(data_dir: Path | None = None) -> DataSource | None:
    """Where :func:`find_data` finds the four files without downloading, or None (what ``data --download`` asks)."""
    try:
        return find_data(data_dir, download=False)
    except DataError:
        return None


def download_data(folder: Path, base_url: str | None = None, replace: bool = False) -> Path:
    """Download the four official ``.gz`` files into ``folder``, verifying each (:func:`downloaded_name`).

    From ``base_url``, else ``$EDGEFMNIST_MIRROR``, else the official address. A file already
    in ``folder`` is kept unless ``replace``. The new files are written together
    (:func:`write_together`) once every one has verified, so a failure saves none of them.
    Raises ``DataError`` when the address is not a URL, a download fails, is larger than
    ``MAX_DOWNLOAD_BYTES`` or is not the official file.
    """
    base_url = base_url or os.environ.get(ENV_MIRROR) or spec.DOWNLOAD_URL
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    downloads = []
    for name in spec.DOWNLOAD_MD5:
        target = folder / f"{name}.gz"
        if target.is_file() and not replace:
            continue
        url = f"{base_url}{name}.gz"
        payload = fetch(url)
        got = downloaded_name(payload)
        if got != name:
            if payload[:2] != GZIP_MAGIC:
                reason = "not a gzip file: a mirror serves the official .gz files"
            elif got is None:
                reason = "checksum mismatch (neither its MD5 nor its content's SHA-256 is the official one)"
            else:
                reason = f"holds the official {got}, not {name} (swapped or misnamed on the mirror?)"
            raise DataError(f"{url}: {reason}; nothing was saved")
        downloads.append((target, payload))
    write_together(downloads)
    return folder


def downloaded_name(payload: bytes) -> str | None:
    """Which official file the ``.gz`` ``payload`` is: by the upstream file's MD5 (``spec.DOWNLOAD_MD5``),
    else by the SHA-256 of its content (``spec.IDX_SHA256``), as a mirror that compressed the
    same content anew serves it (the Debian package's files). None for anything else, a file
    that is not gzip included. Decompresses at most ``MAX_IDX_BYTES`` and a header."""
    if (name := official_name(hashlib.md5(payload).hexdigest(), spec.DOWNLOAD_MD5)) is not None:
        return name
    if payload[:2] != GZIP_MAGIC:
        return None
    stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        content = stream.decompress(payload, MAX_IDX_BYTES + 64)
    except zlib.error:
        return None
    if not stream.eof or stream.unused_data:  # cut short (no CRC), or more after the end
        return None
    return official_name(hashlib.sha256(content).hexdigest(), spec.IDX_SHA256)


def fetch(url: str, limit: int = MAX_DOWNLOAD_BYTES) -> bytes:
    """The body at ``url``, read a chunk at a time.

    Raises ``DataError`` for an address that is not a URL or more than ``limit`` bytes, and
    :class:`DownloadFailed` for a failed download.
    """
    chunks, size = [], 0
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            while chunk := response.read(READ_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise DataError(
                        f"{url}: more than {limit:,} bytes, larger than any Fashion-MNIST .gz file; "
                        "refused, nothing was saved"
                    )
                chunks.append(chunk)
    except ValueError as exc:  # http.client.InvalidURL too
        raise DataError(
            f"{url}: not a download address ({first_line(exc)}); "
            f"${ENV_MIRROR} must be a base URL such as http://host/fashion-mnist/"
        ) from None
    except urllib.error.HTTPError as exc:  # the server answered: not a question of being offline
        raise DownloadFailed(f"{url}: download failed (HTTP {exc.code} {exc.reason})") from None
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadFailed(f"{url}: download failed ({reason}); are you offline?") from None
    return b"".join(chunks)


def _read_exactly(stream: io.BufferedIOBase, size: int, path: Path, what: str) -> bytes:
    """``size`` bytes, read a chunk at a time so that a header that lies costs no memory."""
    chunks, remaining = [], size
    while remaining:
        chunk = stream.read(min(remaining, READ_CHUNK))
        if not chunk:
            raise DataError(f"{path}: truncated {what} ({size - remaining} of {size} bytes)")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_idx(path: Path, expected_magic: int) -> tuple[tuple[int, ...], bytes]:
    """Read an IDX file (gzipped or plain): its dimensions and exactly the bytes they declare.

    A ``.gz`` name holding plain IDX bytes (a browser decompressed the download but kept the
    name) is read as plain; the SHA-256 check of the content still decides whether it is official.

    Never reads more than the header declares plus one byte, so a gzip bomb costs nothing.
    Raises :class:`DataError` (one line naming ``path``) for a missing or unreadable file, a wrong
    magic number, a truncated file or one holding more than its header declares.
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            start = raw.read(4)
        gzipped = start[:2] == GZIP_MAGIC
        if path.suffix == ".gz" and not gzipped and start[:3] != IDX_UBYTE_MAGIC:
            raise DataError(f"{path}: not a gzip file, nor an IDX file that was already decompressed")
        opener = gzip.open if gzipped else open
        with opener(path, "rb") as stream:
            header = _read_exactly(stream, 4, path, "header")
            magic = struct.unpack(">I", header)[0]
            if magic >> 8 == expected_magic >> 8 and magic != expected_magic:
                raise DataError(f"{path}: {idx_kind(magic & 0xFF)}, expected {idx_kind(expected_magic & 0xFF)}")
            if magic != expected_magic:
                raise DataError(f"{path}: bad IDX magic number 0x{magic:08x}, expected 0x{expected_magic:08x}")
            ndim = magic & 0xFF
            dims = struct.unpack(f">{ndim}I", _read_exactly(stream, 4 * ndim, path, "header"))
            size = math.prod(dims)
            if size > MAX_IDX_BYTES:
                raise DataError(f"{path}: the header declares {size:,} bytes of data, more than any Fashion-MNIST file")
            payload = _read_exactly(stream, size, path, "data")
            if stream.read(1):
                raise DataError(f"{path}: more data than the header declares ({dims})")
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    return dims, payload


def idx_kind(dimensions: int) -> str:
    """``"labels (1 dimension)"``, ``"images (3 dimensions)"``, or the count alone for other IDX arrays."""
    count = f"{dimensions} dimension{'' if dimensions == 1 else 's'}"
    kind = {1: "labels", 3: "images"}.get(dimensions)
    return f"{kind} ({count})" if kind else count


def load_idx_images(path: Path) -> np.ndarray:
    """Images as uint8 ``[N, 28, 28]``; raises :class:`DataError` as :func:`read_idx` does, or for images not 28x28."""
    dims, payload = read_idx(path, IMAGES_MAGIC)
    if dims[1:] != (spec.IMAGE_SIZE, spec.IMAGE_SIZE):
        raise DataError(f"{path}: images are {dims[1]}x{dims[2]}, expected {spec.IMAGE_SIZE}x{spec.IMAGE_SIZE}")
    return np.frombuffer(payload, dtype=np.uint8).reshape(dims).copy()


def load_idx_labels(path: Path) -> np.ndarray:
    """Labels as uint8 ``[N]``, each in 0-9; raises :class:`DataError` as :func:`read_idx` does, or for
    a label above 9."""
    dims, payload = read_idx(path, LABELS_MAGIC)
    labels = np.frombuffer(payload, dtype=np.uint8).reshape(dims).copy()
    if labels.size and labels.max() >= spec.NUM_CLASSES:
        raise DataError(f"{path}: label {labels.max()} out of range 0-{spec.NUM_CLASSES - 1}")
    return labels


def split_files(folder: Path, split: str) -> list[Path]:
    """The IDX files of ``"train"`` or ``"test"`` in ``folder`` (images, labels) that are there."""
    return [path for path in (idx_file(folder, name) for name in SPLIT_FILES[split]) if path is not None]


def load_split(folder: Path, split: str) -> tuple[Split, dict[str, str]]:
    """Load ``"train"`` or ``"test"`` from ``folder`` and check each file's SHA-256 against the official one.

    Returns the split and the SHA-256 of each file's content, by official name. Raises
    :class:`DataError` for missing, malformed, swapped or unofficial files."""
    paths = split_files(folder, split)
    if len(paths) < len(SPLIT_FILES[split]):
        raise missing_files_error(folder, (split,))
    images, labels = load_idx_images(paths[0]), load_idx_labels(paths[1])
    checksums: dict[str, str] = {}
    for name, array in zip(SPLIT_FILES[split], (images, labels), strict=False):
        header = struct.pack(f">I{array.ndim}I", IMAGES_MAGIC if array.ndim == 3 else LABELS_MAGIC, *array.shape)
        checksums[name] = hashlib.sha256(header + array.tobytes()).hexdigest()
    official = {name: checksums[name] == spec.IDX_SHA256[name] for name in checksums}
    for name, path in zip(SPLIT_FILES[split], paths, strict=False):
        if not official[name] and (other := official_name(checksums[name], spec.IDX_SHA256)):
            raise DataError(f"{path}: holds the official {other}, not {name} (files swapped or misnamed?)")
    if len(images) != len(labels):
        raise DataError(f"{paths[1]}: {len(labels):,} labels, but {paths[0].name} holds {len(images):,} {split} images")
    for name, path in zip(SPLIT_FILES[split], paths, strict=False):
        if not official[name]:
            raise DataError(f"{path}: SHA-256 {checksums[name][:16]}… is not the official Fashion-MNIST content")
    return Split(images, labels), checksums


def official_name(digest: str, digests: dict[str, str]) -> str | None:
    """The official file whose hex ``digest`` is in ``digests`` (``spec.IDX_SHA256``, of each file's
    content, or ``spec.DOWNLOAD_MD5``, of each upstream ``.gz``), or None."""
    return next((name for name, known in digests.items() if known == digest), None)


def load_fashion_mnist(data_dir: Path | None = None, download: bool = True) -> FashionMNIST:
    """Find and load all splits; the validation set is the first 5,000 training images.

    Raises :class:`DataError` when the files are missing (and ``download`` is False), unreadable or
    not the official content, and :class:`DownloadFailed` when they must be downloaded and cannot be.
    """
    source = find_data(data_dir, download=download)
    train, train_sha = load_found_split(source, "train")
    test, test_sha = load_found_split(source, "test")
    hold_out = spec.VALIDATION_SIZE
    return FashionMNIST(
        train=Split(train.images[hold_out:], train.labels[hold_out:]),
        validation=Split(train.images[:hold_out], train.labels[:hold_out]),
        test=test,
        source=source,
        sha256={**train_sha, **test_sha},
    )


def load_test_split(data_dir: Path | None = None) -> Split:
    """Only the official test set (what evaluation and parity checks need), found as :func:`find_data`
    finds it (downloaded only when no folder is given and none holds it)."""
    source = find_data(data_dir, splits=("test",))
    return load_found_split(source, "test")[0]


def load_found_split(source: DataSource, split: str) -> tuple[Split, dict[str, str]]:
    """:func:`load_split` from where :func:`find_data` found it; a file in the cache that is
    corrupt or not the official content says how to download it again."""
    try:
        return load_split(source.folder, split)
    except DataError as exc:
        if source.origin not in ("cache", "download"):
            raise
        raise DataError(f"{exc} (in the cache: edgefmnist data --replace downloads it again)") from None


SPLIT_TITLES = {"train": "training set", "test": "test set"}


def inputs_of_data(data_dir: Path | None = None, splits: tuple[str, ...] = ALL_SPLITS) -> list[tuple[Path, str]]:
    """The IDX files of ``splits`` as :func:`edgefmnist.atomic.refuse_overwriting` takes inputs,
    once :func:`load_fashion_mnist` or :func:`load_test_split` has found them:
    ``(path, "the test set's PATH")``."""
    folder = find_data(data_dir, download=False, splits=splits).folder
    return [(path, f"the {SPLIT_TITLES[split]}'s {path}") for split in splits for path in split_files(folder, split)]


def inputs_of_test_split(data_dir: Path | None = None) -> list[tuple[Path, str]]:
    """The test set's files as :func:`inputs_of_data` gives them."""
    return inputs_of_data(data_dir, ("test",))
