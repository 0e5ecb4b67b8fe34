"""Atomic writes: symlinks are written through, special files are written in place."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from edgefmnist import atomic
from edgefmnist.atomic import (
    atomic_write,
    check_writable,
    current_umask,
    open_descriptor,
    refuse_overwriting,
    staged_folder,
    write_bytes_atomic,
    write_failed,
    write_together,
)
from edgefmnist.errors import EdgeFmnistError, UsageError, WriteFailed


def test_a_symlink_to_a_regular_file_gets_its_target_updated(tmp_path: Path) -> None:
    target = tmp_path / "real" / "model.onnx"
    target.parent.mkdir()
    target.write_bytes(b"old")
    link = tmp_path / "model.onnx"
    link.symlink_to(target)
    write_bytes_atomic(link, b"new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.onnx"]


@pytest.mark.parametrize("writer", ["bytes", "context"])
def test_missing_folders_are_made_as_mkdir_p_makes_them_so_the_name_leads_to_the_file(
    tmp_path: Path, writer: str
) -> None:
    path = tmp_path / "runs" / "new" / ".." / "model.onnx"
    check_writable(path)
    if writer == "bytes":
        write_bytes_atomic(path, b"model")
    else:
        with atomic_write(path) as tmp:
            tmp.write_bytes(b"model")
    assert path.read_bytes() == b"model" and (tmp_path / "runs" / "new").is_dir()
    (tmp_path / "notes.txt").write_text("a file, not a folder\n")
    through_a_file = tmp_path / "notes.txt" / ".." / "model.onnx"
    with pytest.raises(WriteFailed, match=r"notes.txt/../model.onnx: cannot write here \(Not a directory\)$"):
        check_writable(through_a_file)
    with pytest.raises(WriteFailed, match=r"cannot write here \(Not a directory\)$"):
        write_bytes_atomic(through_a_file, b"model")
    in_a_file = tmp_path / "notes.txt" / "model.onnx"
    with pytest.raises(WriteFailed, match=rf"^{in_a_file}: cannot write here \(Not a directory\)$"):
        write_bytes_atomic(in_a_file, b"model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "runs"]


@pytest.mark.parametrize("writer", ["bytes", "context"])
def test_a_symlink_to_dev_null_leaves_the_device_and_the_link_alone(tmp_path: Path, writer: str) -> None:
    link = tmp_path / "out.png"
    link.symlink_to("/dev/null")
    if writer == "bytes":
        write_bytes_atomic(link, b"picture")
    else:
        with atomic_write(link) as tmp:
            tmp.write_bytes(b"picture")
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_device_is_one_write_failure(tmp_path: Path) -> None:
    link = tmp_path / "out.json"
    link.symlink_to("/dev/full")
    with pytest.raises(WriteFailed, match="out.json: cannot write \\(No space left on device\\)"):  # the name given
        write_bytes_atomic(link, b"{}")
    assert link.is_symlink() and stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_a_fifo_is_written_in_place(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader, so that opening for writing does not block
    try:
        write_bytes_atomic(fifo, b"picture")
        assert os.read(reader, 100) == b"picture"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_fifo_that_nothing_reads_is_a_write_failure_not_a_wait(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(WriteFailed, match="pipe.png: cannot write \\(a FIFO that nothing reads\\)"):
        write_bytes_atomic(fifo, b"picture")  # a plain open for writing would block until a reader came
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_pipe_reached_through_dev_fd_is_written_in_place(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()  # as /dev/stdout is when standard output is piped
    os.set_inheritable(write_end, True)  # as a descriptor the caller gives is
    try:
        write_bytes_atomic(Path(f"/dev/fd/{write_end}"), b"picture")  # its resolved name, pipe:[N], is no path
        assert os.read(read_end, 100) == b"picture"
    finally:
        os.close(read_end)
        os.close(write_end)


@pytest.mark.parametrize("writer", ["bytes", "context", "link"])
def test_a_file_behind_an_open_descriptor_gets_the_bytes_in_its_stream(tmp_path: Path, writer: str) -> None:
    out = tmp_path / "out.png"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o644)  # as /dev/stdout is after `> out.png`
    os.set_inheritable(fd, True)
    try:
        os.write(fd, b"text;")
        stream = Path(f"/dev/fd/{fd}")
        if writer == "link":  # a name in a --save-preprocessed folder that leads to the stream
            (stream := tmp_path / "test-0.png").symlink_to(f"/dev/fd/{fd}")
        if writer == "context":
            with atomic_write(stream) as tmp:
                tmp.write_bytes(b"picture")
        else:
            write_bytes_atomic(stream, b"picture")
        os.write(fd, b";more")  # the stream still leads to the file: it was not renamed over
    finally:
        os.close(fd)
    assert out.read_bytes() == b"text;picture;more"
    assert open_descriptor(Path(f"/proc/self/fd/{fd}")) == (os.getpid(), fd)
    assert open_descriptor(out) is None and open_descriptor(tmp_path / "missing") is None


@pytest.mark.parametrize("writer", ["bytes", "context"])
def test_a_replaced_file_keeps_its_permissions_and_a_new_one_gets_the_umasks(tmp_path: Path, writer: str) -> None:
    def write(path: Path) -> None:
        if writer == "bytes":
            write_bytes_atomic(path, b"new")
        else:
            with atomic_write(path) as tmp:
                tmp.write_bytes(b"new")

    (old := tmp_path / "old.png").write_bytes(b"old")
    old.chmod(0o4640)  # set-user-ID is not carried to the new file
    write(old)
    write(new := tmp_path / "new.png")
    assert old.read_bytes() == b"new" and stat.S_IMODE(old.stat().st_mode) == 0o640
    assert stat.S_IMODE(new.stat().st_mode) == 0o666 & ~current_umask()


def test_a_directory_behind_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    link = tmp_path / "out.png"
    link.symlink_to(tmp_path / "folder")
    with pytest.raises(EdgeFmnistError, match="is a directory"):
        write_bytes_atomic(link, b"picture")
    assert link.is_symlink()


def test_a_staged_folder_lands_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "set"
    with pytest.raises(RuntimeError), staged_folder(target) as staging:
        (staging / "half.txt").write_text("x")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []  # nothing half-made, no staging folder left
    with staged_folder(target) as staging:
        (staging / "new.txt").write_text("x")
    with staged_folder(target) as staging:  # a second build replaces the first as a whole
        (staging / "newer.txt").write_text("y")
    assert [p.name for p in target.iterdir()] == ["newer.txt"] and list(tmp_path.iterdir()) == [target]
    assert target.stat().st_mode & 0o777 == 0o777 & ~current_umask()  # a plain mkdir's, not mkdtemp's 0700


def test_an_output_is_refused_when_it_names_an_input_under_any_name(tmp_path: Path) -> None:
    (model := tmp_path / "m.onnx").write_bytes(b"model")
    os.link(model, hard := tmp_path / "hard.onnx")
    (tmp_path / "soft.onnx").symlink_to(model)
    inputs = [(model, f"the model {model}"), (tmp_path / "missing.csv", "a missing file")]
    for target in (model, hard, tmp_path / "soft.onnx", tmp_path / "." / "m.onnx"):
        with pytest.raises(EdgeFmnistError, match=f"^--plot: {target} would overwrite the model {model}$"):
            refuse_overwriting("--plot", [tmp_path / "new.png", target], inputs)
    refuse_overwriting("--plot", [tmp_path / "new.png", tmp_path / "missing.csv", tmp_path], inputs)  # passes
    assert model.read_bytes() == b"model"


def test_a_name_at_the_file_system_limit_gets_a_temp_name(tmp_path: Path) -> None:
    from edgefmnist.atomic import check_writable

    long = tmp_path / ("é" * 100 + "a" * 51 + ".png")  # 255 bytes, the most a name may hold
    check_writable(long)
    write_bytes_atomic(long, b"x")
    with atomic_write(long) as tmp:
        tmp.write_bytes(b"y")
    assert long.read_bytes() == b"y" and os.listdir(tmp_path) == [long.name]
    with pytest.raises(WriteFailed, match="File name too long"):  # the probe's shorter name does not hide it
        check_writable(tmp_path / ("a" * 252 + ".png"))


def test_a_long_name_is_judged_by_the_folder_and_an_existing_file_passes(tmp_path: Path, monkeypatch) -> None:
    from edgefmnist.atomic import check_name_fits

    (existing := tmp_path / ("中" * 60 + ".png")).write_bytes(b"x")  # 184 bytes
    monkeypatch.setattr(os, "pathconf", lambda folder, name: 143)  # a smaller limit, as eCryptfs has
    check_name_fits(existing)  # it exists, so its name fits
    check_name_fits(tmp_path / ("中" * 50 + ".png"))  # above 143 bytes, but this folder takes it
    assert os.listdir(tmp_path) == [existing.name]  # the name was tried and removed
    with pytest.raises(WriteFailed, match="File name too long"):
        check_name_fits(tmp_path / "new" / ("a" * 200 + ".png"))  # no folder to try it in: the limit rules
    monkeypatch.setattr(os, "pathconf", lambda folder, name: -1)  # no limit
    check_name_fits(tmp_path / ("a" * 300 + ".png"))


def test_files_written_together_are_all_new_or_all_as_before(tmp_path: Path) -> None:
    (model := tmp_path / "m.onnx").write_bytes(b"old fp32")
    (blocker := tmp_path / "file").write_bytes(b"")
    new_file = tmp_path / "n.onnx"
    unwritable = blocker / "m.int8.onnx"  # inside a file: the write fails
    with pytest.raises(WriteFailed, match="cannot write"):
        write_together([(model, b"new fp32"), (new_file, b"new"), (unwritable, b"new int8")])
    assert model.read_bytes() == b"old fp32" and not new_file.exists()
    write_together([(model, b"new fp32"), (new_file, b"new")])
    assert (model.read_bytes(), new_file.read_bytes()) == (b"new fp32", b"new")


def test_a_file_that_cannot_be_restored_does_not_stop_the_others_or_hide_the_error(tmp_path: Path, monkeypatch) -> None:
    first, second = tmp_path / "a.onnx", tmp_path / "b.onnx"
    first.write_bytes(b"old a")
    second.write_bytes(b"old b")
    real = atomic.write_bytes_atomic

    def failing(path: Path, data: bytes) -> None:
        if path.name == "c.onnx" or data == b"old a":  # the third write, then the first one's restore
            raise WriteFailed(f"{path}: cannot write (No space left on device)")
        real(path, data)

    monkeypatch.setattr(atomic, "write_bytes_atomic", failing)
    with pytest.raises(WriteFailed, match=r"c\.onnx: cannot write"):
        write_together([(first, b"new a"), (second, b"new b"), (tmp_path / "c.onnx", b"new c")])
    assert (first.read_bytes(), second.read_bytes()) == (b"new a", b"old b")


@pytest.mark.parametrize("sent", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_while_files_are_written_together_waits_for_the_last(
    tmp_path: Path, monkeypatch, sent: str
) -> None:
    import signal

    from edgefmnist import atomic
    from edgefmnist.errors import Terminated

    number, raised = getattr(signal, sent), Terminated if sent == "SIGTERM" else KeyboardInterrupt
    called: list[int] = []

    def handler(received: int, frame: object) -> None:  # as Python's for SIGINT, edgefmnist.cli.main's for SIGTERM
        called.append(received)
        raise raised

    real = atomic.write_bytes_atomic

    def signalled_after_the_first(path: Path, data: bytes) -> None:
        real(path, data)
        if path.name == "a":
            signal.raise_signal(number)

    monkeypatch.setattr(atomic, "write_bytes_atomic", signalled_after_the_first)
    previous = signal.signal(number, handler)  # a background job inherits SIGINT ignored
    try:
        with pytest.raises(raised):
            write_together([(tmp_path / "a", b"1"), (tmp_path / "b", b"2")])
    finally:
        signal.signal(number, previous)
    assert called == [number]  # the held signal reached the handler it was held from, once
    assert (tmp_path / "a").read_bytes() == b"1" and (tmp_path / "b").read_bytes() == b"2"


def test_a_pair_written_through_a_dangling_link_is_undone_in_the_file_not_the_link(tmp_path: Path) -> None:
    (link := tmp_path / "m.onnx").symlink_to(tmp_path / "real" / "m.onnx")  # its folder is still to be made
    (blocker := tmp_path / "file").write_bytes(b"")
    with pytest.raises(WriteFailed):
        write_together([(link, b"new fp32"), (blocker / "m.int8.onnx", b"new int8")])
    assert link.is_symlink() and not link.exists() and not (tmp_path / "real" / "m.onnx").exists()


@pytest.mark.parametrize(
    ("opened", "why"),
    [
        ("own", "was not given by the caller"),  # a library's own file (onnxruntime's database)
        ("read-only", "is not open for writing"),
        ("closed", "is not open"),
    ],
)
def test_a_descriptor_the_caller_did_not_give_for_writing_is_refused(tmp_path: Path, opened: str, why: str) -> None:
    (held := tmp_path / "held.db").write_bytes(b"database")
    fd = os.open(held, os.O_RDONLY if opened == "read-only" else os.O_RDWR)  # O_CLOEXEC, as Python opens
    if opened == "read-only":
        os.set_inheritable(fd, True)
    if opened == "closed":
        os.close(fd)
    try:
        with pytest.raises(UsageError, match=f"/dev/fd/{fd}: descriptor {fd} {why}"):
            write_bytes_atomic(Path(f"/dev/fd/{fd}"), b"picture")
    finally:
        if opened != "closed":
            os.close(fd)
    assert held.read_bytes() == b"database"


def test_a_png_output_on_a_closed_descriptor_names_its_flag() -> None:
    from edgefmnist.runtime.png_target import check_png_target

    fd = os.open(os.devnull, os.O_WRONLY)
    os.close(fd)
    with pytest.raises(UsageError, match=rf"^--save-preprocessed /dev/fd/{fd}: descriptor {fd} is not open$"):
        check_png_target("--save-preprocessed", Path(f"/dev/fd/{fd}"), "the 28x28")


def test_another_processs_open_regular_file_is_refused_not_emptied(tmp_path: Path) -> None:
    import subprocess

    (log := tmp_path / "log.txt").write_bytes(b"its log")
    with open(log, "ab") as handle:
        holder = subprocess.Popen(["sleep", "60"], stdout=handle)
    try:
        with pytest.raises(UsageError, match="is another process's open file"):
            write_bytes_atomic(Path(f"/proc/{holder.pid}/fd/1"), b"picture")
    finally:
        holder.kill()
        holder.wait()
    assert log.read_bytes() == b"its log"


def test_a_non_blocking_pipe_gets_every_byte(tmp_path: Path) -> None:
    import threading

    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)
    os.set_blocking(write_end, False)  # as a parent may leave standard output
    data = os.urandom(1 << 20)  # far more than a pipe holds
    received = bytearray()
    reader = threading.Thread(target=read_to_the_end, args=(read_end, received), daemon=True)
    reader.start()
    try:
        write_bytes_atomic(Path(f"/dev/fd/{write_end}"), data)
    finally:
        os.close(write_end)
        reader.join(60)
        os.close(read_end)
    assert bytes(received) == data


def read_to_the_end(fd: int, received: bytearray) -> None:
    while chunk := os.read(fd, 65536):
        received.extend(chunk)


def test_a_read_only_file_is_replaced_and_stays_read_only(tmp_path: Path) -> None:
    (old := tmp_path / "old.png").write_bytes(b"old")
    old.chmod(0o444)
    with atomic_write(old) as tmp:
        assert os.stat(tmp).st_mode & stat.S_IWUSR  # writable by its owner while it is written
        tmp.write_bytes(b"new")
    assert old.read_bytes() == b"new" and stat.S_IMODE(old.stat().st_mode) == 0o444


def test_a_folder_that_cannot_be_fsynced_still_gets_the_new_file(tmp_path: Path, monkeypatch) -> None:
    real_fsync = os.fsync

    def fsync(fd: int) -> None:  # as on a file system that refuses to sync a folder
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    (old := tmp_path / "old.json").write_bytes(b"old")
    write_bytes_atomic(old, b"new")  # the rename is done: no error that would call it untouched
    write_bytes_atomic(tmp_path / "new.json", b"new")
    assert old.read_bytes() == (tmp_path / "new.json").read_bytes() == b"new"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_replaced_file_keeps_its_owner(tmp_path: Path) -> None:
    (old := tmp_path / "old.png").write_bytes(b"old")
    os.chown(old, 1234, 5678)
    write_bytes_atomic(old, b"new")
    assert (old.stat().st_uid, old.stat().st_gid) == (1234, 5678) and old.read_bytes() == b"new"


def test_ctrl_c_between_the_naming_and_the_rename_leaves_no_temp_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (old := tmp_path / "plot.png").write_bytes(b"old")

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_bytes_atomic(old, b"new")
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"] and old.read_bytes() == b"old"


@pytest.mark.parametrize("target", ["file", "fifo"])
def test_a_kill_while_a_file_is_written_leaves_no_temp_file(tmp_path: Path, target: str) -> None:
    import signal
    import subprocess
    import sys

    (folder := tmp_path / "out").mkdir()
    (scratch := tmp_path / "scratch").mkdir()
    (old := folder / "plot.png").write_bytes(b"old")
    if target == "fifo":
        old.unlink()
        os.mkfifo(old)
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from edgefmnist.atomic import atomic_write\n"
        "with atomic_write(Path(sys.argv[1])) as tmp:\n"
        "    tmp.write_bytes(b'half a plot')\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(old)], env={**os.environ, "TMPDIR": str(scratch)}, timeout=60
    )
    assert done.returncode == -signal.SIGTERM
    assert sorted(p.name for p in folder.iterdir()) == ["plot.png"] and list(scratch.iterdir()) == []
    if target == "file":
        assert old.read_bytes() == b"old"


def test_a_loop_of_symlinks_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "a.png").symlink_to("b.png")
    (tmp_path / "b.png").symlink_to("a.png")
    with pytest.raises(UsageError, match=r"a\.png: a loop of symlinks that leads to no file$"):
        write_bytes_atomic(tmp_path / "a.png", b"picture")
    assert [os.readlink(tmp_path / name) for name in ("a.png", "b.png")] == ["b.png", "a.png"]


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed-file", "named-temp-file"])
def test_a_failed_write_names_the_path_as_given_not_as_its_links_resolve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unnamed: bool
) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    monkeypatch.chdir(tmp_path)
    if not unnamed:  # as where O_TMPFILE is missing
        monkeypatch.setattr(atomic, "open_unnamed", lambda folder: None)

    def fsync(fd: int) -> None:  # as a full disk fails the fsync before the rename
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(WriteFailed) as caught:
        write_bytes_atomic(Path("link/out.png"), b"picture")
    assert str(caught.value) == "link/out.png: cannot write (No space left on device); nothing was written"
    assert list((tmp_path / "real").iterdir()) == []


def test_a_failed_write_says_what_is_left_at_its_path(tmp_path: Path) -> None:
    full = OSError(errno.ENOSPC, "No space left on device")
    (tmp_path / "old.onnx").write_bytes(b"old")
    (tmp_path / "dangling.onnx").symlink_to(tmp_path / "nowhere")  # a link, but no previous file to keep
    left = {name: str(write_failed(tmp_path / name, full)) for name in ("old.onnx", "dangling.onnx", "new.onnx")}
    assert left == {
        "old.onnx": f"{tmp_path / 'old.onnx'}: cannot write (No space left on device); the previous file is untouched",
        "dangling.onnx": f"{tmp_path / 'dangling.onnx'}: cannot write (No space left on device); nothing was written",
        "new.onnx": f"{tmp_path / 'new.onnx'}: cannot write (No space left on device); nothing was written",
    }
    other = write_failed(tmp_path / "x", OSError(errno.ENOENT, "gone"))  # not a write failure: passed on
    assert not isinstance(other, WriteFailed) and other.errno == errno.ENOENT
