"""The files `infer --image` arguments name (picture_files.py): folders, globs, dot names, unreadable folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from edgefmnist.runtime.picture_files import find_pictures


def test_folder_extensions_are_exactly_those_pillow_and_the_heif_plugin_open(tmp_path: Path) -> None:
    """All but PostScript, which is not run, and MPEG video, which Pillow only sizes."""
    from edgefmnist.runtime.picture_formats import picture_extensions, register_heif_plugin
    from PIL import Image, ImageFile

    def is_stub(factory: object) -> bool:
        return isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile)

    assert register_heif_plugin() is not None  # pi-heif is part of the base install
    Image.init()
    opened = {
        ext
        for ext, fmt in Image.registered_extensions().items()
        if fmt in Image.OPEN and not is_stub(Image.OPEN[fmt][0]) and fmt not in ("EPS", "MPEG")
    }
    assert picture_extensions() == opened
    assert {".jpg", ".jpeg", ".jfif", ".jpe", ".png", ".webp", ".avif", ".heic", ".heif", ".tif"} <= opened
    saved_only_or_stub = {ext for ext in Image.registered_extensions() if ext not in opened}  # .pdf, .h5, .grib, ...
    assert {".pdf", ".h5"} <= saved_only_or_stub
    names = [f"x{ext}" for ext in sorted(opened)] + [f"y{ext}" for ext in sorted(saved_only_or_stub)]
    names += ["notes.txt", "README", "X.HEIC"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    found = find_pictures([str(tmp_path)])
    kept = {p.name for p in found.paths}
    assert kept == {f"x{ext}" for ext in opened} | {"X.HEIC"}
    assert {p.name for p in found.skipped} == set(names) - kept
    globbed = find_pictures([str(tmp_path / "*")])
    assert globbed == found  # a folder and a glob treat every file alike


def test_folders_and_globs_leave_out_dot_names_and_globs_take_any_depth_with_two_stars(tmp_path: Path) -> None:
    for name in ("top.jpg", "._top.jpg", ".hidden.jpg", "2024/a.jpg", "2024/07/b.jpg", ".cache/c.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")  # a macOS ._ file is metadata named like a picture
    folder = find_pictures([str(tmp_path)])
    assert folder.paths == [tmp_path / "top.jpg"] and set(folder.skipped) == {tmp_path / "2024"}
    assert find_pictures([str(tmp_path / "*")]) == folder
    deep = find_pictures([str(tmp_path / "**" / "*.jpg")])
    assert deep.paths == [tmp_path / "2024" / "07" / "b.jpg", tmp_path / "2024" / "a.jpg", tmp_path / "top.jpg"]
    assert find_pictures([str(tmp_path / "**")]).skipped == {}  # the folders it matches are searched, not skipped
    in_folders = find_pictures([f"{tmp_path}/*/"])  # a glob ending with / names folders: their files, as a folder's
    assert in_folders.paths == [tmp_path / "2024" / "a.jpg"] and set(in_folders.skipped) == {tmp_path / "2024" / "07"}
    (tmp_path / "2024" / "07" / "up").symlink_to("..")  # loops: glob.glob's ** would take 2**40 paths through them
    (tmp_path / "2024" / "07" / "top").symlink_to("../..")
    os.link(tmp_path / "top.jpg", tmp_path / "zz-hard.jpg")
    looped = find_pictures([str(tmp_path / "**" / "*.jpg"), str(tmp_path / "top.jpg"), f"{tmp_path}/./top.jpg"])
    assert looped.paths == deep.paths  # each file once, under the first name that reached it (zz-hard.jpg is top.jpg)
    spelled = find_pictures([str(tmp_path / "**" / ".cache" / "*.jpg"), str(tmp_path / "**" / "._*.jpg")])
    assert spelled.paths == [tmp_path / ".cache" / "c.jpg", tmp_path / "._top.jpg"]  # dot names the pattern spells
    assert find_pictures([str(tmp_path / "**" / ".*" / "*")]).paths == [tmp_path / ".cache" / "c.jpg"]  # as bash
    (tmp_path / ".cache" / ".d.jpg").write_bytes(b"")
    dot_files = find_pictures([str(tmp_path / "**" / ".*.jpg")]).paths  # dot files, not inside dot folders (bash)
    assert dot_files == [tmp_path / "._top.jpg", tmp_path / ".hidden.jpg"]


def test_a_two_star_walk_names_the_folders_it_may_not_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("2024/a.jpg", "2024/locked/b.jpg", "2025/locked/c.jpg", ".cache/locked/d.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    real_scandir = os.scandir

    def scandir(path=".", *args):  # as for folders without read permission: pathlib's glob passes over them
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path, *args)

    monkeypatch.setattr(os, "scandir", scandir)
    reason = "cannot read (Permission denied), so the pictures inside were not searched"
    found = find_pictures([str(tmp_path / "**" / "*.jpg")])
    assert found.paths == [tmp_path / "2024" / "a.jpg"]
    assert found.unread == {tmp_path / "2024" / "locked": reason, tmp_path / "2025" / "locked": reason}
    assert found.skipped == {}
    below_2024 = find_pictures([str(tmp_path / "2024*" / "**" / "*.jpg")])  # 2025/ is not searched: not named
    assert below_2024.unread == {tmp_path / "2024" / "locked": reason}
    spelled = find_pictures([str(tmp_path / "**" / ".cache" / "**" / "*.jpg")])  # dot folders where spelled
    assert spelled.paths == [] and (tmp_path / ".cache" / "locked") in spelled.unread
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "2024").symlink_to(tmp_path / "2024")  # followed above the ** level, as the glob does
    (tmp_path / "links" / "2024" / "loop").symlink_to(tmp_path / "links")  # not below it
    linked = find_pictures([str(tmp_path / "links" / "*" / "**" / "*.jpg")])
    assert linked.paths == [tmp_path / "links" / "2024" / "a.jpg"]
    assert linked.unread == {tmp_path / "links" / "2024" / "locked": reason}


def test_a_two_star_glob_under_a_missing_folder_is_one_error(tmp_path: Path) -> None:
    patterns = [str(tmp_path / "nothing" / "**"), str(tmp_path / "nothing" / "**" / "*.jpg")]
    found = find_pictures(patterns)
    assert (found.paths, found.unread) == ([], {})
    assert found.empty == {pattern: "no files match" for pattern in patterns}


def test_a_two_star_walk_names_a_folder_it_may_list_but_not_enter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a.jpg", "closed/b.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    real_stat = Path.stat

    def stat(self: Path, **kwargs):  # as for a file in a folder without search permission (the tests may run as root)
        if self.parent.name == "closed":
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    found = find_pictures([str(tmp_path / "**" / "*.jpg")])
    assert found.paths == [tmp_path / "a.jpg"] and found.empty == {}
    assert found.unread == {
        tmp_path / "closed": "cannot read (Permission denied), so the pictures inside were not searched"
    }


def test_a_tree_too_deep_for_a_two_star_walk_is_one_error_line(tmp_path: Path) -> None:
    folder = str(tmp_path)
    for _ in range(1100):  # pathlib's walk recurses once a folder: Python's limit is 1,000 frames
        folder += "/d"
        os.mkdir(folder)  # one at a time: mkdir(parents=True) recurses too
    Path(folder, "z.jpg").write_bytes(b"")
    try:
        found = find_pictures([str(tmp_path / "**" / "*.jpg")])
        assert found.paths == [] and found.empty == {str(tmp_path / "**" / "*.jpg"): "too many folders deep to search"}
    finally:  # one at a time again: pytest's clean-up of old temp folders would recurse as deep
        os.remove(Path(folder, "z.jpg"))
        while folder != str(tmp_path):
            os.rmdir(folder)
            folder = os.path.dirname(folder)


def test_a_url_is_named_as_given_and_as_a_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Path() would show https://example.com/x.jpg as https:/example.com/x.jpg: no such file."""
    monkeypatch.chdir(tmp_path)
    found = find_pictures(["https://example.com/x.jpg", "HTTP://example.com/"])
    assert found.paths == []
    assert list(found.empty) == ["https://example.com/x.jpg", "HTTP://example.com/"]
    assert all(reason.startswith("a URL, not a file") for reason in found.empty.values())
    (tmp_path / "https:" / "example.com").mkdir(parents=True)  # a folder so named is still a folder
    (tmp_path / "https:" / "example.com" / "x.jpg").write_bytes(b"")
    assert find_pictures(["https://example.com/x.jpg"]).paths == [Path("https://example.com/x.jpg")]


def test_a_file_named_with_a_trailing_slash_is_not_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the system refuses ``cat shirt.jpg/`` (ENOTDIR); Path() would drop the slash."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shirt.jpg").write_bytes(b"")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.png").write_bytes(b"")
    (tmp_path / "-").write_bytes(b"")  # ./- names a file called -, but not ./-/
    found = find_pictures(["shirt.jpg/", "gone.jpg/", "photos/", "./-/", "-/"])
    assert found.paths == [Path("photos/a.png")]
    assert found.empty == {"shirt.jpg/": "not a folder", "gone.jpg/": "no such folder"} | dict.fromkeys(
        ("./-/", "-/"), "not a folder"
    )
