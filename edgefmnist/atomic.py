"""Crash-safe file writes: a temp file in the target folder, fsynced, then ``os.replace``.

Every artifact the toolkit writes (checkpoints, ONNX models, plots, JSON) goes through
:func:`atomic_write` or :func:`write_bytes_atomic`, so a crash or a full disk never leaves a
half-written file under the final name and never damages the file that was there before.
Long work (an export and its validation) happens elsewhere; the target folder sees only
the final write. Where Linux offers ``O_TMPFILE``, :func:`write_bytes_atomic` writes to an
unnamed file that vanishes if the process is killed, and names it only to rename it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgefmnist.errors import EdgeFmnistError, WriteFailed

WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_failed(path: Path, exc: OSError) -> WriteFailed | OSError:
    """A full disk, a read-only folder, ... as a one-line :class:`WriteFailed`; any other OSError as it is."""
    if exc.errno in WRITE_ERRORS:
        return WriteFailed(f"{path}: cannot write ({exc.strerror or exc}); the previous file is untouched")
    return exc


def check_writable(path: Path) -> None:
    """Fail early, writing nothing, when ``path`` cannot be written later.

    Creates and removes a probe file in the nearest folder that exists (``path``'s missing folders
    are made only by the real write). Raises :class:`EdgeFmnistError` when ``path`` is a directory
    and :class:`WriteFailed` when its folder cannot hold a new file.
    """
    path = Path(path)
    if path.is_dir():
        raise EdgeFmnistError(f"{path}: is a directory, expected a file path")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
    except OSError as exc:
        raise WriteFailed(f"{path}: cannot write here ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success move it into place, else delete it."""
    path = Path(path)
    if path.is_dir():
        raise EdgeFmnistError(f"{path}: is a directory, expected a file path")
    folder = path.parent  # Path("x").parent is Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise WriteFailed(f"{path}: cannot write here ({exc.strerror or exc})") from None
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; give the usual permissions
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_failed(path, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; unnamed until complete where the system allows."""
    path = Path(path)
    if not write_unnamed_then_rename(path, data):
        with atomic_write(path) as tmp:
            tmp.write_bytes(data)


def write_unnamed_then_rename(path: Path, data: bytes) -> bool:
    """Write ``data`` to an ``O_TMPFILE`` in ``path``'s folder, then name it and rename it onto ``path``.

    Returns False, having written nothing, where that is not possible (no ``O_TMPFILE``, a
    missing or unwritable folder, ``path`` a directory): :func:`atomic_write` then does the work.
    """
    folder = path.parent  # Path("x").parent is Path(".")
    if path.is_dir() or not hasattr(os, "O_TMPFILE") or not folder.is_dir():
        return False
    try:
        fd = os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o666 & ~current_umask())
    except OSError:
        return False
    tmp = folder / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        folder_fd = os.open(folder, os.O_RDONLY)
        try:  # a dir fd makes Python use linkat(AT_SYMLINK_FOLLOW), which names the unnamed file
            os.link(f"/proc/self/fd/{fd}", tmp.name, dst_dir_fd=folder_fd, follow_symlinks=True)
            os.replace(tmp.name, path.name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
            os.fsync(folder_fd)
        finally:
            os.close(folder_fd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_failed(path, exc) from None
    finally:
        os.close(fd)
    return True


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))
