"""Photo sets: the fixed split into halves, class folders and labels.csv, and their one-line errors."""

from __future__ import annotations

import os
import re
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from edgefmnist.runtime.photo_set import (
    PhotoSetError,
    class_named,
    load_photo_set,
    photo_set_notes,
    photo_split,
    select_split,
)
from helpers import PHOTOS_DEV, REGRESSION_SET, assert_one_line_error, blob_photo, run_in_process

# The split


def test_the_split_is_a_fixed_hash_of_the_file_name() -> None:
    # pinned: the halves must never move (choices made on one half would leak into the other)
    assert photo_split("dress/b6111cee-12de-4c9f-8a84-200313eb8a1d.jpg") == "report"
    assert photo_split("t-shirt/e7118519-3e7d-431a-9d22-2cedd6da1e1d.jpg") == "choice"
    assert photo_split("/anywhere/else/e7118519-3e7d-431a-9d22-2cedd6da1e1d.jpg") == "choice"  # the name only
    # a name that is not UTF-8: its bytes are hashed (its Latin-1 text encoded as UTF-8 would hash to "choice")
    assert photo_split(os.fsdecode(b"cr\xe8me.jpg")) == "report"
    # composed and decomposed spellings of one name (as macOS may store it) are one photo, in one half
    assert photo_split(unicodedata.normalize("NFD", "café.jpg")) == photo_split("café.jpg") == "choice"
    names = [f"{i:08x}.jpg" for i in range(2000)]
    assert 0.45 < np.mean([photo_split(n) == "choice" for n in names]) < 0.55


def test_labels_csv_finds_a_name_stored_in_another_unicode_form(tmp_path: Path) -> None:
    """A photo set copied from macOS holds decomposed names (NFD) that a labels.csv lists composed."""
    stored = unicodedata.normalize("NFD", "été/robe_é.jpg")
    blob_photo(tmp_path / stored, 0)
    (tmp_path / "labels.csv").write_text("file,source_class,accepted\nété/robe_é.jpg,dress,Dress\n")
    assert [str(photo.path) for photo in load_photo_set(tmp_path)] == [str(tmp_path / stored)]
    (tmp_path / "labels.csv").write_text("file,source_class,accepted\nété/robe_è.jpg,dress,Dress\n")
    assert [photo.path.name for photo in load_photo_set(tmp_path)] == ["robe_è.jpg"]  # no such photo: listed as given


def test_labels_csv_keeps_the_spaces_of_a_name_that_has_them(tmp_path: Path) -> None:
    for name in (" lead.jpg", "trail.jpg ", "plain.jpg"):
        blob_photo(tmp_path / "x.jpg", 0)
        (tmp_path / "x.jpg").rename(tmp_path / name)
    (tmp_path / "labels.csv").write_text(
        'file,source_class,accepted\n" lead.jpg",coat,Coat\n"trail.jpg ",coat,Coat\n plain.jpg ,coat,Coat\n'
    )
    assert sorted(photo.path.name for photo in load_photo_set(tmp_path)) == [" lead.jpg", "plain.jpg", "trail.jpg "]


def test_missing_names_read_each_folder_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Looking for another Unicode form of a missing name lists its folder once per photo set, and an
    ASCII name (the same in every form) not at all: thousands of missing rows stay cheap."""
    from edgefmnist.runtime import photo_set

    rows = "".join(f"été/{i}.jpg,coat,Coat\nplain/{i}.jpg,coat,Coat\n" for i in range(50))
    (tmp_path / "été").mkdir()
    (tmp_path / "labels.csv").write_text("file,source_class,accepted\n" + rows)
    listed = []
    real = os.listdir

    def listdir(path):
        listed.append(path)
        return real(path)

    monkeypatch.setattr(photo_set.os, "listdir", listdir)
    assert len(load_photo_set(tmp_path)) == 100 and listed == [tmp_path / "été"]


def test_a_picture_scored_through_a_listed_link_is_not_counted_as_unscored(tmp_path: Path) -> None:
    blob_photo(tmp_path / "real.jpg")
    (tmp_path / "link.jpg").symlink_to("real.jpg")
    os.link(tmp_path / "real.jpg", tmp_path / "hard.jpg")
    blob_photo(tmp_path / "other.jpg")
    (tmp_path / "labels.csv").write_text("file,source_class,accepted\nlink.jpg,coat,Coat\n")
    assert photo_set_notes(tmp_path, load_photo_set(tmp_path)) == [
        f"{tmp_path / 'labels.csv'}: not scored: 1 picture below {tmp_path} that it does not list"
    ]


def test_the_split_halves_photos_dev() -> None:
    if not (PHOTOS_DEV / "labels.csv").is_file():
        pytest.skip(f"no {PHOTOS_DEV}")
    photos = load_photo_set(PHOTOS_DEV)
    choice, report = select_split(photos, "choice"), select_split(photos, "report")
    assert len(choice) + len(report) == len(photos) == 1200 and not {p.path for p in choice} & {p.path for p in report}
    assert 0.45 < len(choice) / len(photos) < 0.55
    assert select_split(photos, "all") == photos


def test_the_regression_set_is_the_report_half() -> None:
    photos = load_photo_set(REGRESSION_SET)
    assert len(photos) == 300 and all(photo_split(p.path.name) == "report" for p in photos)
    assert sum(not p.in_domain for p in photos) == 90  # hat, shorts, skirt
    assert all(p.path.is_file() for p in photos)


def test_the_regression_sets_choice_half_is_empty_and_the_error_says_where_its_photos_are() -> None:
    result = run_in_process("evaluate", "--photos", str(REGRESSION_SET), "--split", "choice", "--choose")
    assert_one_line_error(
        result,
        1,
        f"{REGRESSION_SET}: no photos in the choice half (all 300 are in the report half: give --split report",
    )


# Loading photo sets


def test_folder_per_class_loading(tmp_path: Path) -> None:
    for folder, seed in (("T-shirt_top", 0), ("ankle-boot", 1), ("Trouser", 2), ("unknown", 3), ("hat", 4)):
        blob_photo(tmp_path / folder / f"{folder}.jpg", seed)
    (tmp_path / "Trouser" / "notes.txt").write_text("not a photo")
    photos = {p.path.parent.name: p for p in load_photo_set(tmp_path)}
    assert set(photos) == {"T-shirt_top", "ankle-boot", "Trouser", "unknown", "hat"}
    assert photos["T-shirt_top"].accepted == ("T-shirt/top",) and photos["T-shirt_top"].source_class == "T-shirt/top"
    assert photos["ankle-boot"].accepted == ("Ankle boot",)
    assert photos["unknown"].accepted == () and not photos["unknown"].in_domain
    assert photos["hat"].source_class == "hat" and not photos["hat"].in_domain
    assert class_named("t_shirt_top") == "T-shirt/top" and class_named("t-shirt") is None
    (tmp_path / "empty").mkdir()  # adds no photo: not worth a note
    assert photo_set_notes(tmp_path, load_photo_set(tmp_path)) == [
        f"{tmp_path}: 2 folders named after no Fashion-MNIST class, so out of domain "
        "(only 'unsure' is right there): 'hat', 'unknown'",
        f"{tmp_path}: not scored, as no picture files: 1 item in the class folders: "
        "'Trouser/notes.txt' (not a picture format)",
    ]
    (tmp_path / "Trouser" / "notes.txt").unlink()
    blob_photo(tmp_path / "loose.jpg")
    blob_photo(tmp_path / "Trouser" / "more" / "deeper" / "nested.jpg")
    blob_photo(tmp_path / ".thumbnails" / "t.jpg")  # a viewer's cache is no class
    (tmp_path / "Trouser" / "._Trouser.jpg").write_bytes(b"\0\5\26\7")  # macOS metadata named like a picture
    assert {p.path.name for p in load_photo_set(tmp_path)} == {f"{name}.jpg" for name in photos}
    assert photo_set_notes(tmp_path, load_photo_set(tmp_path))[1] == (
        f"{tmp_path}: not scored: 2 pictures beside the class folders or below them"
    )
    (tmp_path / "labels.csv").write_text("file,source_class,accepted\nloose.jpg,coat,Coat\n")
    assert photo_set_notes(tmp_path, load_photo_set(tmp_path)) == [  # labels.csv says what each photo is
        f"{tmp_path / 'labels.csv'}: not scored: 6 pictures below {tmp_path} that it does not list"
    ]
    (tmp_path / "labels.csv").unlink()
    (tmp_path / "Trouser" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    os.mkfifo(tmp_path / "hat" / "pipe.jpg")
    for name in ("a.txt", "b.txt"):
        (tmp_path / "unknown" / name).write_text("notes")
    assert photo_set_notes(tmp_path, load_photo_set(tmp_path))[-1] == (
        f"{tmp_path}: not scored, as no picture files: 4 items in the class folders: "
        "'Trouser/gone.jpg' (a dangling symlink), 'hat/pipe.jpg' (a FIFO, not a regular file), "
        "'unknown/a.txt' (not a picture format), ..."
    )
    (tmp_path / "Dress").symlink_to(tmp_path / "moved" / "Dress")  # a class folder that has gone
    assert photo_set_notes(tmp_path, load_photo_set(tmp_path))[-2] == (
        f"{tmp_path}: not scored: 1 dangling symlink where a class folder may have been: 'Dress'"
    )
    (tmp_path / "Dress").unlink()
    (tmp_path / "labels.csv").write_text("file,source_class,accepted\nloose.jpg,coat,Coat\n")
    listed = [str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*.jpg") if "/." not in str(path)]
    listed = [name for name in listed if (tmp_path / name).is_file()]
    (tmp_path / "labels.csv").write_text("file,source_class,accepted\n" + "".join(f"{n},hat,\n" for n in listed))
    assert photo_set_notes(tmp_path, load_photo_set(tmp_path)) == []


def test_class_folders_take_the_same_extensions_as_infer(tmp_path: Path) -> None:
    for name in ("a.heic", "b.avif", "c.jfif", "d.JPE", "notes.txt"):
        (tmp_path / "Coat" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "Coat" / name).write_bytes(b"")
    names = {p.path.name for p in load_photo_set(tmp_path)}
    assert names == {"a.heic", "b.avif", "c.jfif", "d.JPE"}


@pytest.mark.parametrize("mark", ["", "\ufeff"], ids=["plain", "byte-order mark"])  # as spreadsheets save "CSV UTF-8"
def test_labels_csv_loading_with_out_of_domain_rows(tmp_path: Path, mark: str) -> None:
    blob_photo(tmp_path / "a" / "one.jpg")
    blob_photo(tmp_path / "a" / "two.jpg", 1)
    (tmp_path / "labels.csv").write_text(  # an empty field beyond the header's (a trailing comma) is ignored
        f"{mark}file,source_class,accepted\na/one.jpg,longsleeve,t-shirt/top;PULLOVER; Shirt;shirt\na/two.jpg,hat,,\n",
        encoding="utf-8",
    )
    one, two = load_photo_set(tmp_path)
    assert one.path == tmp_path / "a" / "one.jpg" and one.accepted == ("T-shirt/top", "Pullover", "Shirt")
    assert one.in_domain and one.source_class == "longsleeve"
    assert two.accepted == () and not two.in_domain and two.source_class == "hat"


def test_source_classes_are_read_ignoring_case_and_reported_as_first_spelt(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        blob_photo(tmp_path / name)
    (tmp_path / "labels.csv").write_text("file,source_class,accepted\na.jpg,Hat,\nb.jpg,hat,\nc.jpg,HAT ,\n")
    assert [p.source_class for p in load_photo_set(tmp_path)] == ["Hat", "Hat", "Hat"]
    (tmp_path / "labels.csv").write_text("file,source_class,accepted\na.jpg,Pants,Trouser\nb.jpg,pants,\n")
    with pytest.raises(PhotoSetError, match="line 3: source class 'Pants' has accepted classes on line 2"):
        load_photo_set(tmp_path)


def test_labels_that_list_one_photo_under_two_names_are_refused(tmp_path: Path) -> None:
    blob_photo(tmp_path / "a" / "x.jpg", 0)
    os.link(tmp_path / "a" / "x.jpg", tmp_path / "a" / "hard.jpg")
    (tmp_path / "a" / "soft.jpg").symlink_to("x.jpg")
    for other in ("hard.jpg", "soft.jpg"):
        (tmp_path / "labels.csv").write_text(f"file,source_class,accepted\na/x.jpg,coat,Coat\na/{other},coat,Coat\n")
        with pytest.raises(
            PhotoSetError, match=rf"line 3: 'a/{other}' is the file of 'a/x.jpg' on line 2, under another"
        ):
            load_photo_set(tmp_path)


def test_class_folders_that_hold_one_photo_under_two_names_are_refused(tmp_path: Path) -> None:
    """The folders are read in sorted order; the later name is the one refused."""
    photo = tmp_path / "Shirt" / "x.jpg"
    blob_photo(photo, 0)
    for make, name, first, second in [
        (lambda path: os.link(photo, path), "Coat/hard.jpg", "Coat/hard.jpg", "Shirt/x.jpg"),
        (lambda path: path.symlink_to("../Shirt/x.jpg"), "Dress/soft.jpg", "Dress/soft.jpg", "Shirt/x.jpg"),
        (lambda path: os.link(photo, path), "Shirt/y.jpg", "Shirt/x.jpg", "Shirt/y.jpg"),
    ]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        make(tmp_path / name)
        result = run_in_process("evaluate", "--photos", str(tmp_path))
        assert_one_line_error(result, 1, f"{tmp_path / second}: the file of {tmp_path / first}, under another name")
        (tmp_path / name).unlink()
    (tmp_path / "Coat").rmdir()
    (tmp_path / "Coat").symlink_to("Shirt")  # a class folder linked to another
    with pytest.raises(PhotoSetError, match=r"Shirt/x\.jpg: the file of .*Coat/x\.jpg, under another name"):
        load_photo_set(tmp_path)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("file,source_class\nx.jpg,hat\n", "missing accepted"),
        ("file;source_class;accepted\nx.jpg;hat;\n", "separated by ';': separate the columns with commas"),
        ("file\tsource_class\taccepted\nx.jpg\that\t\n", "separated by a tab: separate the columns with commas"),
        ("file,source_class,accepted\nx\0.jpg,hat,\n", "line 2: the file name holds a NUL byte"),
        ("file,source_class,accepted\nx.jpg,hat,Hat\n", "'Hat' is not a Fashion-MNIST class"),
        ("file,source_class,accepted\n,hat,\n", "empty file name"),
        (
            "file,source_class,accepted\na/x.jpg,coat,Coat\nb.jpg,hat,\na//x.jpg,dress,Dress\n",
            "line 4: 'a//x.jpg' is listed again, first on line 2",
        ),
        ("file,source_class,accepted\n", "a header and no rows"),
        ("", "empty file, expected a header row file,source_class,accepted"),
        ("\n\r\n", "empty file, expected a header row file,source_class,accepted"),
        ("\nfile,source_class,accepted\nx.jpg,hat,\n", "line 1 is blank, expected the header row"),
        (" \t\nfile,source_class,accepted\nx.jpg,hat,\n", "line 1 is blank, expected the header row"),
        ("file,source_class,accepted\nx.jpg,dress\n", "line 2: too few fields, no accepted"),
        ("file,source_class,accepted\n\n\nx.jpg,hat,\nx.jpg\n", "line 5: too few fields, no source_class, accepted"),
        ('file,source_class,accepted\n"x.jpg,hat,\ny.jpg,dress,Dress\n', "line 2: a quote"),
        ('file,source_class,accepted\nx.jpg,hat,\n"y.jpg,hat,', "line 3: a quote"),
        ('file,source_class,accepted\nx.jpg,hat,\n\n\n"y.jpg,hat,\nz.jpg,hat,\n', "line 5: a quote"),  # after blanks
        (
            'file,source_class,accepted\nx.jpg,shirt,"Shirt\ny.jpg,shirt,Shirt\n',
            "line 2: a quote",
        ),  # in the last column
        ('file,source_class,accepted\nw.jpg,shirt,"Sh"irt\nx.jpg,shirt,"Shirt\ny.jpg,shirt,Shirt\n', "line 3: a quote"),
        ("file,source_class,accepted\nx.jpg,shoes,Sandal,Sneaker\n", "line 2: more fields than the header names"),
        ('file,source_class,accepted\nx.jpg,shoes,"Sandal,Sneaker"\n', "separate the classes in accepted with ';'"),
        ("file,source_class,accepted,\nx.jpg,shoes,Sandal,Sneaker\n", "line 2: more fields than the header names"),
        ("file,source_class,accepted,,\nx.jpg,shoes,Sandal,Sneaker,\n", "line 2: more fields than the header names"),
        ("file,source_class,accepted,accepted\nx.jpg,shoes,Sandal,Sneaker\n", "the header names accepted twice"),
        ("file,source_class,accepted\nx.jpg,shoes, ; ;\n", "line 2: accepted ' ; ;' names no class"),
        ("file,source_class,accepted\nx.jpg, ,Trouser\n", "line 2: empty source_class"),
        (
            "file,source_class,accepted\na.jpg,pants,Trouser\nb.jpg,hat,\nd.jpg,pants,\n",
            "line 4: source class 'pants' has accepted classes on line 2 and none on line 4",
        ),
        (
            "file,source_class,accepted\na.jpg,pants,\nd.jpg,pants,Trouser\n",
            "line 3: source class 'pants' has accepted classes on line 3 and none on line 2",
        ),
    ],
)
def test_bad_labels_csv(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(PhotoSetError, match=fragment):
        load_photo_set(tmp_path)
    assert_one_line_error(
        run_in_process("evaluate", "--photos", str(tmp_path)), 1, str(tmp_path / "labels.csv"), fragment
    )


@pytest.mark.parametrize("name, shown", [("Sh\\irt", "Sh\\\\irt"), ("Sh\x1birt", "Sh\\x1birt")])
def test_a_name_in_a_labels_csv_error_is_escaped_once(tmp_path: Path, name: str, shown: str) -> None:
    (tmp_path / "labels.csv").write_text(f"file,source_class,accepted\nx.jpg,shirt,{name}\n")
    with pytest.raises(PhotoSetError) as caught:
        load_photo_set(tmp_path)
    assert f"line 2: '{name}' is not a Fashion-MNIST class" in str(caught.value)  # the CLI escapes it
    result = run_in_process("evaluate", "--photos", str(tmp_path))
    assert_one_line_error(result, 1, f"line 2: '{shown}' is not a Fashion-MNIST class")


def test_a_labels_csv_that_is_not_utf8_is_named_by_its_line(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_bytes("file,source_class,accepted\na.jpg,hat,\nb\xe9.jpg,hat,\n".encode("latin-1"))
    with pytest.raises(PhotoSetError, match="labels.csv: line 3: not UTF-8 text"):
        load_photo_set(tmp_path)
    (tmp_path / "labels.csv").write_text("file,source_class,accepted\n", encoding="utf-16")  # Excel's "Unicode text"
    with pytest.raises(PhotoSetError, match="labels.csv: line 1: not UTF-8 text"):
        load_photo_set(tmp_path)


def test_a_header_is_read_ignoring_case_and_spaces(tmp_path: Path) -> None:
    blob_photo(tmp_path / "a" / "one.jpg")
    (tmp_path / "labels.csv").write_text("File , Source_Class,ACCEPTED\na/one.jpg,pants,Trouser\n")
    (one,) = load_photo_set(tmp_path)
    assert (one.path, one.source_class, one.accepted) == (tmp_path / "a" / "one.jpg", "pants", ("Trouser",))


def test_a_labels_csv_that_is_no_file_is_refused_not_replaced_by_the_folder_names(tmp_path: Path) -> None:
    blob_photo(tmp_path / "Trouser" / "one.jpg")
    labels = tmp_path / "labels.csv"
    for make, reason in [
        (lambda: labels.symlink_to(tmp_path / "gone.csv"), "a dangling symlink"),
        (labels.mkdir, "a folder"),
        (lambda: os.mkfifo(labels), "a FIFO"),
    ]:
        make()
        with pytest.raises(PhotoSetError, match=reason):
            load_photo_set(tmp_path)
        assert_one_line_error(run_in_process("evaluate", "--photos", str(tmp_path)), 1, str(labels), reason)
        labels.rmdir() if labels.is_dir() and not labels.is_symlink() else labels.unlink()


def test_bad_photo_folder_is_one_line(tmp_path: Path) -> None:
    assert_one_line_error(
        run_in_process("evaluate", "--photos", str(tmp_path / "missing")), 1, "missing", "does not exist"
    )
    (tmp_path / "file.txt").write_text("x")
    assert_one_line_error(run_in_process("evaluate", "--photos", str(tmp_path / "file.txt")), 2, "--photos")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(
        run_in_process("evaluate", "--photos", str(tmp_path / "empty")), 1, str(tmp_path / "empty"), "no photos"
    )
    (tmp_path / "flat").mkdir()
    for photo in sorted((REGRESSION_SET / "pants").glob("*.jpg"))[:2]:
        shutil.copy(photo, tmp_path / "flat")
    assert_one_line_error(
        run_in_process("evaluate", "--photos", str(tmp_path / "flat")),
        1,
        "2 pictures, but no labels.csv and no class sub-folders",
        f"as {tmp_path / 'flat' / 'Trouser'}/",
    )
    (tmp_path / "flat" / "Trouser").mkdir()
    assert_one_line_error(
        run_in_process("evaluate", "--photos", str(tmp_path / "flat")),
        1,
        "no photos in its sub-folders (2 pictures beside them)",
    )
    assert_one_line_error(
        run_in_process("evaluate", "--photos", str(REGRESSION_SET), "--min-confidence", "2"), 2, "--min-confidence"
    )
    assert_one_line_error(run_in_process("evaluate", "--sweep"), 2, "--sweep needs --photos")


# The report


def test_a_photo_listed_by_a_relative_and_an_absolute_path_is_refused(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text(f"file,source_class,accepted\na/x.jpg,coat,Coat\n{tmp_path}/a/x.jpg,coat,\n")
    with pytest.raises(PhotoSetError, match="is listed again, first on line 2"):
        load_photo_set(tmp_path)


def test_a_path_written_with_backslashes_names_the_separator(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("file,source_class,accepted\na/y.jpg,coat,Coat\npants\\x.jpg,pants,Trouser\n")
    with pytest.raises(PhotoSetError, match=r"line 3: no file 'pants\\x.jpg'; separate its folders with /, not a"):
        load_photo_set(tmp_path)
    (tmp_path / "pants\\x.jpg").write_bytes(b"")  # a name that holds a backslash is a name like any other
    assert [photo.path.name for photo in load_photo_set(tmp_path)] == ["y.jpg", "pants\\x.jpg"]


@pytest.mark.parametrize("outside", ["../x.jpg", "a/../../x.jpg", "/etc/passwd", "/dev/zero"])
def test_a_photo_listed_outside_the_folder_is_refused(tmp_path: Path, outside: str) -> None:
    (tmp_path / "set").mkdir()
    rows = f"file,source_class,accepted\na/y.jpg,coat,Coat\n{outside},coat,Coat\n"
    (tmp_path / "set" / "labels.csv").write_text(rows)
    with pytest.raises(PhotoSetError, match=f"line 3: '{outside}' is outside the photo set's folder"):
        load_photo_set(tmp_path / "set")


@pytest.mark.parametrize("folder", [".", "./", "a/.."])
def test_a_row_naming_the_photo_set_folder_itself_says_so(tmp_path: Path, folder: str) -> None:
    (tmp_path / "labels.csv").write_text(f"file,source_class,accepted\n{folder},coat,Coat\n")
    with pytest.raises(
        PhotoSetError, match=f"line 2: '{re.escape(folder)}' is the photo set's folder itself, not a photo$"
    ):
        load_photo_set(tmp_path)


def test_a_row_naming_the_real_path_of_a_linked_photo_set_says_it_is_the_folder(tmp_path: Path) -> None:
    (real := tmp_path / "data").mkdir()
    (tmp_path / "set").symlink_to(real)
    (real / "labels.csv").write_text(f"file,source_class,accepted\n{real},coat,Coat\n")
    with pytest.raises(PhotoSetError, match="is the photo set's folder itself, not a photo$"):
        load_photo_set(tmp_path / "set")


def test_a_photo_set_reached_through_a_link_takes_absolute_rows_by_its_real_name(tmp_path: Path) -> None:
    real = tmp_path / "data" / "set"
    real.mkdir(parents=True)
    (link := tmp_path / "set").symlink_to(real)
    (real / "labels.csv").write_text(f"file,source_class,accepted\n{real}/a/x.jpg,coat,Coat\n")
    assert [photo.path for photo in load_photo_set(link)] == [real / "a" / "x.jpg"]
