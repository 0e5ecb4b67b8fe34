"""Crash-safe file writes: a temp file in the target folder, fsynced, then ``os.replace``.

Every artifact the toolkit writes (checkpoints, ONNX models, plots, JSON) goes through
:func:`atomic_write` or :func:`write_bytes_atomic`, so a crash or a full disk never leaves a
half-written file under the final name and never damages the file that was there before.
Long work (an export and its validation) happens elsewhere; the target folder sees only
the final write. Where Linux offers ``O_TMPFILE``, the bytes go to an unnamed file that
vanishes if the process is killed, even by SIGKILL, and that is named only to be renamed (a
SIGKILL in the microseconds between the two leaves the complete file under its temp name). A file
replaced keeps its permission bits and, where allowed, its owner; being a new file, it is no longer
a hard link of the old one's other names.

A symlink is written through: its target gets the new bytes and the link stays. An existing
target that is not a regular file (``/dev/null``, a FIFO, a block device) is written to directly,
since renaming over it would replace the device node itself (a FIFO that nothing reads is a
failed write, not a wait for ever); a socket or a directory is refused. So is a stream: a path
through a descriptor the caller gave this process (``/dev/stdout``, ``/dev/fd/3``) is written into
that descriptor, also when it leads to a regular file (``> out.png``), which a rename would take
from the stream.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import select
import shutil
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from edgefmnist.errors import EdgeFmnistError, Terminated, UsageError, WriteFailed

TEMP_NAME_BYTES = 100  # of the target's name kept in a temp name: the whole name may take all 255 bytes allowed
MAX_SYMLINKS = 40  # links followed in one path before ELOOP, as Linux allows
DESCRIPTOR_PATH = re.compile(r"/proc/(\d+)(?:/task/\d+)?/fd/(\d+)")  # /dev/fd, /proc/self/fd resolve to these
WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def keep_attributes(fd: int, path: Path) -> None:
    """Give the new file open as ``fd`` the permission bits of the regular file at ``path`` it is to
    replace (read, write and execute; never set-user-ID or the like) and, where this process may,
    its owner and group, as ``cp`` onto an existing file keeps them; else ``0o666`` less the umask,
    as ``open`` gives. Raises ``OSError`` when the bits cannot be set."""
    try:
        info = os.stat(path)
    except OSError:
        info = None
    if info is None or not stat.S_ISREG(info.st_mode):
        os.fchmod(fd, 0o666 & ~current_umask())
        return
    with contextlib.suppress(OSError):  # EPERM: another user's file, or a group this process is not in
        os.fchown(fd, info.st_uid, info.st_gid)
    os.fchmod(fd, stat.S_IMODE(info.st_mode) & 0o777)  # after fchown, which may clear bits


def temp_prefix(path: Path) -> str:
    """``".NAME."``, the prefix of a temp file or folder beside ``path``: its name cut to
    ``TEMP_NAME_BYTES`` bytes and to its UTF-8 characters, so that a target whose name is near
    the file system's limit (255 bytes) still gets a temp name, and a temp name is always UTF-8."""
    return f".{os.fsencode(path.name)[:TEMP_NAME_BYTES].decode('utf-8', 'ignore')}."


def write_failed(path: Path, exc: OSError) -> WriteFailed | OSError:
    """A full disk, a read-only folder, ... as a one-line :class:`WriteFailed` that says what is left
    at ``path`` (the previous file, untouched, or nothing); any other OSError as it is."""
    if exc.errno in WRITE_ERRORS:
        left = "the previous file is untouched" if os.path.exists(path) else "nothing was written"
        return WriteFailed(f"{path}: cannot write ({exc.strerror or exc}); {left}")
    return exc


def open_descriptor(path: Path) -> tuple[int, int] | None:
    """``(pid, fd)`` when ``path``, followed link by link, goes through a process's open descriptor
    in ``/proc`` (``/dev/stdout`` -> ``/proc/self/fd/1``, ``/dev/fd/3``), else None."""
    current = os.path.abspath(path)
    for _ in range(MAX_SYMLINKS):
        current = os.path.join(os.path.realpath(os.path.dirname(current)), os.path.basename(current))
        if match := DESCRIPTOR_PATH.fullmatch(current):
            return int(match[1]), int(match[2])
        try:
            current = os.path.join(os.path.dirname(current), os.readlink(current))
        except (OSError, ValueError):  # not a link (or no such file, a NUL byte)
            return None
    return None


def write_target(path: Path) -> tuple[Path, bool]:
    """The file a write to ``path`` lands in (symlinks resolved), and whether it is a special file.

    Special means it exists and is not a regular file (a character or block device, a FIFO), or
    ``path`` leads through a descriptor the caller gave this process (:func:`open_descriptor`,
    :func:`check_given_descriptor`): such a file is written to in place, under ``path`` itself.
    Raises :class:`UsageError` (exit 2) for a directory, a socket, a loop of symlinks, a
    descriptor the caller did not give, or another process's descriptor of a regular file
    (which a write by name would empty under that process).
    """
    descriptor = open_descriptor(path)
    if descriptor and descriptor[0] == os.getpid():
        check_given_descriptor(path, descriptor[1])
        return Path(path), True  # a socket or a pipe too: it is the caller's stream
    try:
        mode = os.stat(path).st_mode  # through symlinks
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # writing through would replace a link of the loop with the file
            raise UsageError(f"{path}: a loop of symlinks that leads to no file") from None
        return Path(os.path.realpath(path)), False  # missing (or unreadable): the rename path creates it or says why
    if stat.S_ISDIR(mode):
        raise UsageError(f"{path}: is a directory, expected a file path")
    if stat.S_ISSOCK(mode):
        raise UsageError(f"{path}: is a socket, expected a file path")
    if stat.S_ISREG(mode) and descriptor:
        raise UsageError(f"{path}: is another process's open file; give the file's own path")
    if not stat.S_ISREG(mode) or descriptor:  # another process's pipe or device is opened by name
        return Path(path), True
    return Path(os.path.realpath(path)), False


def check_given_descriptor(path: Path, fd: int) -> None:
    """Raise :class:`UsageError` unless ``fd``, which ``path`` leads through, is open for writing and
    was given by the caller (inherited, so without ``FD_CLOEXEC``), as a shell's ``3> file`` gives it;
    a descriptor this process opened for itself (a library's database) is not an output."""
    try:
        own = fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        access = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    except OSError:
        raise UsageError(f"{path}: descriptor {fd} is not open") from None
    if own:
        raise UsageError(f"{path}: descriptor {fd} was not given by the caller, expected a file path")
    if access not in (os.O_WRONLY, os.O_RDWR):
        raise UsageError(f"{path}: descriptor {fd} is not open for writing")


def write_in_place(path: Path, data: bytes) -> None:
    """Write ``data`` straight into the special file ``path`` (see :func:`write_target`): into this
    process's descriptor itself, after what it printed there, when ``path`` leads through one;
    else into the file opened by name. Raises :class:`WriteFailed`, also for a FIFO that nothing
    reads, which a plain open would wait on for ever."""
    descriptor = open_descriptor(path)
    try:
        if descriptor and descriptor[0] == os.getpid():
            flush_standard_streams()
            write_all(descriptor[1], data)
            return
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO: a FIFO with no reader
        os.set_blocking(fd, True)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        why = "a FIFO that nothing reads" if exc.errno == errno.ENXIO else exc.strerror or exc
        raise WriteFailed(f"{path}: cannot write ({why})") from None


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd``, however many calls it takes, waiting while a
    non-blocking descriptor is full; raises ``OSError``."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])


def flush_standard_streams() -> None:
    """Flush ``sys.stdout`` and ``sys.stderr``, so that bytes written to their descriptors come after their text."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):  # closed, or None under pythonw
            stream.flush()


def check_writable(path: Path, regular: str | None = None) -> None:
    """Fail early, writing nothing, when ``path`` cannot be written later.

    A special file (a device, a FIFO) is written in place and passes, unless ``regular`` names
    the file (a file written beside a command's output, as train's history beside its
    checkpoint): such a file is one of its own, and a FIFO there would hold the command, its
    work done, until a reader came. Otherwise a probe file is created and removed in the nearest
    existing folder of the write's target (``path``'s missing folders are made only by the real
    write), and the target's name must fit (:func:`check_name_fits`). Raises :class:`UsageError`
    when ``path`` is a directory or a socket, or special where ``regular`` is given, and
    :class:`WriteFailed` when its folder cannot hold a new file or a file stands on the way
    (``notes.txt/../x.onnx``, which the kernel does not resolve).
    """
    check_name_fits(path)
    if not os.path.isdir(nearest_existing(Path(path).parent)):  # "notes.txt/../x": the kernel finds no folder
        raise WriteFailed(f"{path}: cannot write here ({os.strerror(errno.ENOTDIR)})")
    target, special = write_target(Path(path))
    if special and regular:
        raise UsageError(f"{path}: not a regular file, where {regular} is written")
    if not special:
        check_folder_takes_files(target.parent, path)


def check_folder_takes_files(folder: Path, shown: Path) -> None:
    """Raise :class:`WriteFailed` naming ``shown`` when a probe file cannot be created and removed in
    ``folder``, or in its nearest existing folder when it is still to be made."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".edgefmnist.", suffix=".probe", dir=nearest_existing(folder))
    except OSError as exc:
        raise WriteFailed(f"{shown}: cannot write here ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def nearest_existing(folder: Path) -> Path:
    """``folder`` if it exists, else its nearest existing ancestor (where its missing folders would be made)."""
    while not os.path.exists(folder) and folder != folder.parent:  # False, not an error, for a name too long
        folder = folder.parent
    return folder


def longest_name(folder: Path) -> int | None:
    """The most bytes a file name may hold in ``folder`` (``NAME_MAX``), or None when the system
    does not say (no limit, or it cannot be asked)."""
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return None
    return limit if limit > 0 else None


def check_name_fits(path: Path) -> None:
    """Raise :class:`WriteFailed` when the file ``path`` names is new and its name, or the name of a
    folder to be made for it, is longer than its folder allows, before any work (the temp file a
    write goes through has a shorter name).

    A name above :func:`longest_name` is created for a moment and removed when its folder
    exists, since some file systems count characters, not bytes (NTFS, SMB); else it is refused.
    """
    target = Path(os.path.realpath(path))
    if os.path.exists(target):  # its name fits (a folder or a device there is the write's to refuse)
        return
    existing = nearest_existing(target.parent)
    limit = longest_name(existing)
    too_long = WriteFailed(f"{path}: cannot write here ({os.strerror(errno.ENAMETOOLONG)})")
    missing_folders = target.parent.relative_to(existing).parts  # to be made: each name must fit too
    if limit is not None and any(len(os.fsencode(name)) > limit for name in missing_folders):
        raise too_long
    if limit is None or len(os.fsencode(target.name)) <= limit:
        return
    if not os.path.isdir(target.parent):
        raise too_long
    try:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise too_long from None
        return  # any other reason is the write probe's to report
    os.unlink(target)


STREAM_HINT = "a stream goes through a descriptor: /dev/fd/3 after 3> file, or 3>&1 >/dev/null"
STANDARD_STREAMS = {
    1: "standard output, where the results are printed",
    2: "standard error, where warnings are printed",
}


def standard_stream(path: str | Path) -> str | None:
    """Which standard stream's file ``path`` names (``/dev/stdout``, ``/dev/stderr``; ``out.png``
    after ``> out.png``), as :data:`STANDARD_STREAMS` says it, or None; ``/dev/null`` is none."""
    try:
        target = os.stat(path)
    except (OSError, ValueError):  # no such file, a NUL byte
        return None
    null = os.stat(os.devnull)
    if (target.st_dev, target.st_ino) == (null.st_dev, null.st_ino):
        return None
    for fd, stream in STANDARD_STREAMS.items():
        try:
            opened = os.fstat(fd)
        except OSError:  # closed
            continue
        if (target.st_dev, target.st_ino) == (opened.st_dev, opened.st_ino):
            return stream
    return None


def refuse_standard_stream(flag: str, target: str | Path, what: str) -> None:
    """Raise :class:`UsageError` (exit 2) when ``target`` is standard output or standard error
    (:func:`standard_stream`): ``what`` (a PNG, a model) would be mixed into what is printed there."""
    if stream := standard_stream(target):
        raise UsageError(f"{flag} {target}: {stream}, would mix {what} into them; {STREAM_HINT}")


def file_identity(path: Path) -> tuple[int, int] | None:
    """``(device, inode)`` of the regular file ``path`` names, else None (nothing there, a folder,
    a device): two names of one file, symlinks and hard links included, have the same."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):  # no such file; a name with a NUL byte
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISREG(info.st_mode) else None


def refuse_overwriting(
    option: str, targets: Iterable[Path], inputs: Iterable[tuple[Path, str]], made_from: Sequence[str] = ()
) -> None:
    """Raise :class:`EdgeFmnistError` when one of ``targets``, the files an ``option`` would write,
    is under any name (:func:`file_identity`) the file of one of ``inputs``: pairs of a path and
    what it is, as the message names it (``"the model m.onnx"``) -> ``--plot: m.onnx would
    overwrite the model m.onnx``. ``made_from`` names what each target is written from, when
    that is one of several (``seen/a.png, made from a.jpg, would overwrite the picture seen/a.png``)."""
    known: dict[tuple[int, int], str] = {}
    for path, what in inputs:
        key = file_identity(path)
        if key is not None:
            known.setdefault(key, what)
    for index, target in enumerate(targets):
        key = file_identity(target)
        if key is not None and key in known:
            origin = f", made from {made_from[index]}," if index < len(made_from) else ""
            raise EdgeFmnistError(f"{option}: {target}{origin} would overwrite {known[key]}")


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
    """Yield a temp path to write; on success move it onto ``path``, else delete it.

    ``path``'s missing folders are made first (:func:`make_missing_folders`). The temp path is an
    unnamed file in ``path``'s folder (:func:`open_unnamed`), opened by its ``/proc/self/fd/N``
    name, so a kill leaves nothing; where that is not possible, a named temp file beside ``path``.
    For a special file (see :func:`write_target`) the unnamed file is in the temp folder and its
    bytes are then written into the file. Raises :class:`UsageError` for a directory or a socket,
    :class:`WriteFailed` when the disk is full or the folder is read-only.
    """
    make_missing_folders(path)
    given = Path(path)  # errors name it as given, not as the symlinks resolve it
    path, special = write_target(given)
    folder = Path(tempfile.gettempdir()) if special else path.parent  # Path("x").parent is Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteFailed(f"{given}: cannot write here ({exc.strerror or exc})") from None
    fd = open_unnamed(folder)
    if fd is None:
        with named_temp_file(path, folder, special, given) as tmp:
            yield tmp
        return
    unnamed = Path(f"/proc/self/fd/{fd}")
    try:
        yield unnamed
        if special:
            write_in_place(path, unnamed.read_bytes())
        else:
            name_and_rename(fd, path)
    except OSError as exc:
        raise write_failed(given, exc) from None
    finally:
        os.close(fd)


def make_missing_folders(path: Path) -> None:
    """Make the missing folders of ``path`` as given, as ``mkdir -p`` makes them (``a/new/../x.onnx``
    makes ``a/new``, so that the name leads to the file once written); raises :class:`WriteFailed`
    when a file stands where a folder must be (``notes.txt/x.onnx``). A folder symlink that leads
    nowhere is left to the write, which makes its target's folders (a ``..`` after such a link
    then names another folder than the write's)."""
    folder = Path(path).parent
    if os.path.isdir(folder):
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:  # a name on the way that is no folder
        if not os.path.islink(exc.filename):
            raise WriteFailed(f"{path}: cannot write here ({os.strerror(errno.ENOTDIR)})") from None
    except OSError as exc:
        raise WriteFailed(f"{path}: cannot write here ({exc.strerror or exc})") from None


@contextlib.contextmanager
def named_temp_file(path: Path, folder: Path, special: bool, given: Path) -> Iterator[Path]:
    """:func:`atomic_write` where no unnamed file can be made: a ``mkstemp`` file in ``folder``.
    Errors name ``given``, the path as the caller gave it, as :func:`atomic_write`'s do."""
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=folder)
    except OSError as exc:
        raise WriteFailed(f"{given}: cannot write here ({exc.strerror or exc})") from None
    tmp = Path(tmp_name)
    try:
        yield tmp
        if special:
            write_in_place(path, tmp.read_bytes())
        else:
            keep_attributes(fd, path)
            os.fsync(fd)
            os.replace(tmp, path)
            fsync_folder(folder)
    except OSError as exc:
        raise write_failed(given, exc) from None
    finally:
        os.close(fd)
        tmp.unlink(missing_ok=True)


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable, where the system allows it."""
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def staged_folder(path: Path) -> Iterator[Path]:
    """Yield a new folder beside ``path`` to fill; on success move it onto ``path`` (a folder there is
    replaced as a whole), else delete it, so an interrupted build leaves nothing half-made.

    The folder gets a plain ``mkdir``'s permissions, not ``mkdtemp``'s 0700. Raises ``OSError``
    when the folder cannot be made or moved.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=temp_prefix(path), dir=path.parent))
    try:
        yield staging
        staging.chmod(0o777 & ~current_umask())
        if path.exists():
            shutil.rmtree(path)
        staging.rename(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; unnamed until complete where the system allows.

    A special file (a device, a FIFO) is written in place; else missing folders are made and
    errors raised as :func:`atomic_write` makes and raises them.
    """
    target, special = write_target(Path(path))
    if special:
        write_in_place(target, data)
        return
    with atomic_write(path) as tmp:  # the path as given: its missing folders are made as named
        fd = os.open(tmp, os.O_WRONLY)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)


def write_together(files: Sequence[tuple[Path, bytes]]) -> None:
    """Write each ``(path, bytes)`` of ``files`` with :func:`write_bytes_atomic`, in order, as one step.

    For files that belong together (a model and the int8 model made from it): Ctrl-C (SIGINT)
    waits until every file is written, and when a write fails, the files written before it get
    their previous bytes back (or are removed when they are new), so the set is not left half new
    (but for a file that cannot be restored either: it stays new, and the others are still
    restored). Raises the write's error as :func:`write_bytes_atomic` does.
    """
    targets = [Path(os.path.realpath(path)) for path, _ in files]  # a symlink's file, which the write lands in
    previous = [target.read_bytes() if target.is_file() else None for target in targets]
    with interrupts_deferred():
        written = 0
        try:
            for path, data in files:
                write_bytes_atomic(path, data)
                written += 1
        except BaseException:
            for target, old in zip(targets[:written], previous, strict=False):
                with contextlib.suppress(Exception):  # the disk may refuse this one too: restore the rest
                    restore(target, old)
            raise


def restore(target: Path, previous: bytes | None) -> None:
    """Put ``previous`` back into ``target``, or remove ``target`` when it was new (``previous`` None)."""
    if previous is None:
        target.unlink(missing_ok=True)  # the new file, not a link that led to it
    else:
        write_bytes_atomic(target, previous)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT (Ctrl-C) and SIGTERM until the block ends, then raise ``KeyboardInterrupt``
    (or :class:`~edgefmnist.errors.Terminated`) if one came.

    In the main thread only (where Python runs signal handlers), and for each signal only while
    it has a Python handler (not ignored, as SIGINT in a background job, nor left to the
    system, as SIGTERM outside :func:`edgefmnist.cli.main`).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    held = [number for number, handler in handlers.items() if callable(handler)]
    received: list[int] = []
    for number in held:
        signal.signal(number, lambda number, frame: received.append(number))
    try:
        yield
    finally:
        for number in held:
            signal.signal(number, handlers[number])
    if received:  # the first signal, now to its own handler (main's records a SIGTERM for exit 143)
        first = signal.Signals(received[0])
        handler = handlers[first]
        if callable(handler):
            handler(first, None)
        raise Terminated if first == signal.SIGTERM else KeyboardInterrupt


def open_unnamed(folder: Path) -> int | None:
    """An ``O_TMPFILE`` descriptor (read and write, mode 0600) for a file in ``folder`` that has no
    name until :func:`name_and_rename`, or None where the system or file system has none."""
    if not hasattr(os, "O_TMPFILE"):
        return None
    try:
        return os.open(folder, os.O_TMPFILE | os.O_RDWR, 0o600)
    except OSError:
        return None


def name_and_rename(fd: int, path: Path) -> None:
    """Put the unnamed file open as ``fd`` at ``path``: its attributes (:func:`keep_attributes`),
    fsync, a temp name in ``path``'s folder, then ``os.replace`` onto ``path``. Raises the
    ``OSError`` (a full disk, a read-only folder) after removing the temp name."""
    folder = path.parent
    tmp = folder / f"{temp_prefix(path)}{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        keep_attributes(fd, path)
        os.fsync(fd)
        folder_fd = os.open(folder, os.O_RDONLY)
        try:  # a dir fd makes Python use linkat(AT_SYMLINK_FOLLOW), which names the unnamed file
            os.link(f"/proc/self/fd/{fd}", tmp.name, dst_dir_fd=folder_fd, follow_symlinks=True)
            os.replace(tmp.name, path.name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
            with contextlib.suppress(OSError):  # the new file is in place; make it durable where allowed
                os.fsync(folder_fd)
        finally:
            os.close(folder_fd)
    except BaseException:  # an OSError, or Ctrl-C or SIGTERM between the naming and the rename
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))
