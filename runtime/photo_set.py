"""Photo sets: the photos of a folder, their labels, and the fixed split into two halves.

A photo set is a folder in one of two forms:

* ``DIR/labels.csv`` with columns ``file,source_class,accepted`` (the photos-dev format):
  ``file`` is relative to DIR, ``accepted`` lists the Fashion-MNIST classes that count as a
  right answer, ``;``-separated; an empty ``accepted`` marks an out-of-domain photo (a hat:
  no class fits, the right verdict is unsure).
* one folder per class, named after a Fashion-MNIST class; names are compared ignoring case,
  spaces, ``-``, ``_`` and ``/``, so ``T-shirt_top`` (a folder cannot hold ``/``),
  ``tshirt-top``, ``Ankle boot`` and ``ankle_boot`` all work. Any other folder name
  (``unknown``, ``hat``, ...) holds out-of-domain photos.

Photos are split in two halves by a fixed hash of the file name (:func:`photo_split`): every
choice (preprocessing, the thresholds) is made on the ``choice`` half, and results are reported
on the ``report`` half, which stays unseen by those choices.

Runtime-only: the standard library and pillow's list of picture extensions.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Literal, TypeVar

from edgefmnist.runtime.picture_formats import picture_extensions

from edgefmnist import spec
from edgefmnist.atomic import file_identity
from edgefmnist.errors import EdgeFmnistError, counted, not_a_file_reason, quoted

T = TypeVar("T")
PhotoHalf = Literal["choice", "report"]  # the two halves of a photo set (photo_split)
SPLITS = ("choice", "report", "all")
LABELS_FILE = "labels.csv"
LABEL_COLUMNS = ("file", "source_class", "accepted")
MAX_NAMED = 3  # items a note names before "..."


class PhotoSetError(EdgeFmnistError):
    """A photo folder or its labels.csv cannot be used."""


@dataclass(frozen=True)
class Photo:
    """One labelled photo: where it is, its source class, and the classes that count as right."""

    path: Path
    source_class: str
    accepted: tuple[str, ...]  # empty: out of domain, only "unsure" is right

    @property
    def in_domain(self) -> bool:
        return bool(self.accepted)


def photo_split(name: str) -> PhotoHalf:
    """``"choice"`` or ``"report"``: the first byte of SHA-256 of the file's base name, even or odd.

    Depends only on the base name (not the folder), so a copy of a photo keeps its half. The name is
    taken in Unicode's composed form (NFC), which macOS may have decomposed, and its bytes hashed as
    the file system holds them (``os.fsencode``: UTF-8, or the bytes of a name that is not UTF-8).
    """
    composed = unicodedata.normalize("NFC", PurePath(name).name)
    return "choice" if hashlib.sha256(os.fsencode(composed)).digest()[0] % 2 == 0 else "report"


def select_split(photos: Iterable[Photo], split: str) -> list[Photo]:
    """The photos of one half (``"choice"``/``"report"``), or all of them (``"all"``); raises
    :class:`PhotoSetError` for any other ``split``."""
    if split not in SPLITS:
        raise PhotoSetError(f"--split {split}: expected one of {', '.join(SPLITS)}")
    return [p for p in photos if split == "all" or photo_split(p.path.name) == split]


def class_named(name: str, class_names: Sequence[str] = spec.CLASS_NAMES) -> str | None:
    """The Fashion-MNIST class a folder or a ``labels.csv`` entry names, compared ignoring case,
    spaces, ``-``, ``_`` and ``/`` (``"T-shirt_top"``, ``"t-shirt/top"`` -> ``"T-shirt/top"``), else None."""
    by_key = {spec.class_name_key(known): known for known in class_names}
    return by_key.get(spec.class_name_key(name))


def nearest_class(name: str, class_names: Sequence[str] = spec.CLASS_NAMES) -> str | None:
    """The one class whose name, compared as :func:`class_named` compares names, is the ``name``
    in the plural or starts with it (``"Trousers"`` -> ``"Trouser"``, ``"dresses"`` -> ``"Dress"``,
    ``"t-shirts"`` -> ``"T-shirt/top"``); None when no class or several do (``"shorts"``,
    ``"Dress shirt"``)."""
    stem = spec.class_name_key(name).removesuffix("s")
    if len(stem) < 3:
        return None
    keys = {known: spec.class_name_key(known) for known in class_names}
    found = [known for known, key in keys.items() if key.startswith(stem) or stem.removesuffix("e") == key]
    return found[0] if len(found) == 1 else None


def class_noun(class_names: Sequence[str]) -> str:
    """How messages name a class: ``"Fashion-MNIST class"`` for the dataset's own names, else
    ``"class of the model"`` (a model that spells them its own way, such as ``DRESS``)."""
    return "Fashion-MNIST class" if tuple(class_names) == spec.CLASS_NAMES else "class of the model"


def load_photo_set(folder: Path, class_names: Sequence[str] = spec.CLASS_NAMES) -> list[Photo]:
    """Read a photo set: ``folder/labels.csv`` when present, else one sub-folder per class.

    Returns photos sorted by path; raises :class:`PhotoSetError` for a missing
    folder, an empty set, a ``labels.csv`` that is no regular file (a folder, a FIFO, a dangling
    symlink), a malformed one (a short row, a row longer than the header, an ``accepted`` of
    separators alone, a file name holding a NUL byte or leading outside ``folder``, such as
    ``../other/x.jpg``), a file it lists twice (also under two names: a hard link, a symlink,
    which would score one photo twice, perhaps in both halves; so is one in two class folders) or an unknown class
    in ``accepted`` (classes are named as :func:`class_named` reads them). The header's names
    are read ignoring case and surrounding spaces (``File, Source_Class, Accepted``), and so are
    source classes, each reported as first spelt (``Hat`` and later ``hat`` are ``Hat``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PhotoSetError(
            f"{folder}: {'no such folder' if not folder.exists() else 'not a folder'} (--photos expects a photo folder)"
        )
    labels = folder / LABELS_FILE
    try:
        labels.lstat()  # in a folder that may not be searched, is_file() would say False and the listing fail
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise PhotoSetError(f"{folder}: cannot read ({exc.strerror or exc})") from None
    if labels.is_file():
        photos = _from_labels_csv(labels, class_names)
        if not photos:
            raise PhotoSetError(f"{labels}: no photos (a header and no rows)")
    elif os.path.lexists(labels):  # the folders' names would silently replace its labels
        raise PhotoSetError(f"{labels}: {not_a_file_reason(labels)}; the photo set's labels cannot be read")
    else:
        try:
            photos = _from_class_folders(folder, class_names)
        except OSError as exc:  # a folder that may be searched but not listed
            raise PhotoSetError(f"{exc.filename or folder}: cannot read ({exc.strerror or exc})") from None
        if not photos:
            extensions = picture_extensions()
            entries = [p for p in folder.iterdir() if not is_hidden(p, folder)]
            loose = sum(is_picture_file(p, extensions) for p in entries)
            if any(p.is_dir() for p in entries):
                beside = f" ({counted(loose, 'picture')} beside them)" if loose else ""
                found = f"no photos in its sub-folders{beside}"
            elif loose:
                found = f"{counted(loose, 'picture')}, but no {LABELS_FILE} and no class sub-folders"
            else:
                found = "no photos"
            raise PhotoSetError(
                f"{folder}: {found} (expected {LABELS_FILE} or one sub-folder of images per class, "
                f"named after it, as {folder / 'Trouser'}/)"
            )
    return sorted(photos, key=lambda p: str(p.path))


def photo_set_notes(
    folder: Path, photos: Sequence[Photo], written: Sequence[Path] = (), class_names: Sequence[str] = spec.CLASS_NAMES
) -> list[str]:
    """What a photo set, loaded as ``photos`` by :func:`load_photo_set` with ``class_names``, scores
    in a way its owner may not expect, one line each. ``written`` are files the run writes (a plot),
    not pictures left out.

    With ``labels.csv``: pictures in the folder or below it that it does not list are not scored
    (a picture it lists under another name, a symlink or a hard link, is scored).
    With class folders: folders of pictures named after no class count as out of domain (a
    ``shoes`` or ``t-shirt`` folder too: Fashion-MNIST calls them ``Sneaker``, ``T-shirt_top``; a
    second line names the class a near miss means, :func:`nearest_class`), pictures beside
    the folders or in their sub-folders are not scored, and a dangling symlink beside the
    folders is named (a class folder that has gone). Folder names are quoted
    (``'odd, name'``). What else the class folders hold, but folders, is named (the first
    ``MAX_NAMED``, :func:`not_picture_files`). Dot names (:func:`is_hidden`) are skipped in class
    folders and in the notes.
    """
    folder = Path(folder)
    extensions = picture_extensions()
    pictures = {
        os.path.abspath(path)
        for path in folder.rglob("*")
        if is_picture_file(path, extensions) and not is_hidden(path, folder)
    }
    scored = [*(photo.path for photo in photos), *written]
    scored_files = {file_identity(Path(path)) for path in scored} - {None}  # a link scores the file it names
    unscored = len(
        {path for path in pictures - set(map(os.path.abspath, scored)) if file_identity(Path(path)) not in scored_files}
    )
    labels = folder / LABELS_FILE
    if labels.is_file():
        if not unscored:
            return []
        return [f"{labels}: not scored: {counted(unscored, 'picture')} below {folder} that it does not list"]
    others = sorted({photo.source_class for photo in photos if not photo.in_domain})  # their folders' names
    notes = []
    if others:
        notes.append(
            f"{folder}: {counted(len(others), 'folder')} named after no {class_noun(class_names)}, so out of domain "
            f"(only 'unsure' is right there): {', '.join(map(quoted, others))}"
        )
        near = {other: nearest for other in others if (nearest := nearest_class(other, class_names))}
        if near:
            meant = ", ".join(
                f"{quoted(other)} as {quoted(nearest.replace('/', '_'))}" for other, nearest in near.items()
            )
            notes.append(f"{folder}: to score them as classes, name the folders as the classes: {meant}")
    if unscored:
        notes.append(f"{folder}: not scored: {counted(unscored, 'picture')} beside the class folders or below them")
    if dangling := [quoted(p.name) for p in sorted(folder.iterdir()) if is_dangling(p) and not is_hidden(p, folder)]:
        notes.append(
            f"{folder}: not scored: {counted(len(dangling), 'dangling symlink')} where a class folder may have been: "
            + ", ".join(dangling)
        )
    if no_pictures := not_picture_files(folder, extensions):
        shown = ", ".join(no_pictures[:MAX_NAMED]) + (", ..." if len(no_pictures) > MAX_NAMED else "")
        notes.append(
            f"{folder}: not scored, as no picture files: {counted(len(no_pictures), 'item')} in the class "
            f"folders: {shown}"
        )
    return notes


def is_dangling(path: Path) -> bool:
    """A symlink whose target does not exist (or cannot be reached)."""
    return os.path.islink(path) and not os.path.exists(path)  # os.path: False, not an error, when unreachable


def class_folders(folder: Path) -> list[Path]:
    """The sub-folders of ``folder`` that hold its classes (all but dot names), sorted."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not is_hidden(p, folder))


def not_picture_files(folder: Path, extensions: frozenset[str]) -> list[str]:
    """What the class folders hold that is neither a picture file nor a folder, each quoted with
    why (``'Trouser/notes.txt' (not a picture format)``, ``'Trouser/x.jpg' (a dangling symlink)``)."""
    found = []
    for sub in class_folders(folder):
        for path in sorted(sub.iterdir()):
            if is_hidden(path, folder) or path.is_dir() or is_picture_file(path, extensions):
                continue
            reason = "not a picture format" if path.is_file() else not_a_file_reason(path)
            found.append(f"{quoted(str(path.relative_to(folder)))} ({reason})")
    return found


def is_picture_file(path: Path, extensions: frozenset[str]) -> bool:
    """A file whose extension is one of ``extensions`` (:func:`picture_extensions`)."""
    return path.is_file() and path.suffix.lower() in extensions


def _from_labels_csv(labels: Path, class_names: Sequence[str]) -> list[Photo]:
    try:
        lines = io.StringIO(utf8_text(labels), newline="").readlines()
        if not any(line.strip() for line in lines):
            raise PhotoSetError(
                f"{labels}: empty file, expected a header row {','.join(LABEL_COLUMNS)} and a row per photo"
            )
        if not lines[0].strip():  # nothing but spaces
            raise PhotoSetError(f"{labels}: line 1 is blank, expected the header row {','.join(LABEL_COLUMNS)} there")
        opened = unclosed_quote_line(lines)
        if opened:
            raise PhotoSetError(f'{labels}: line {opened}: a quote (") is never closed')
        reader = csv.DictReader(lines)
        unnamed = checked_header(reader, labels)
        photos = []
        listed = ListedFiles()
        domain_of: dict[str, tuple[bool, int]] = {}  # source class -> in domain, and the line that said so
        spelling: dict[str, str] = {}  # a source class ignoring case -> its first spelling ("Hat", "hat": one class)
        for row in reader:
            line = reader.line_num  # the file's line (rows may span lines; blank lines are skipped)
            where = f"{labels}: line {line}"
            check_row_fields(row, unnamed, where)
            file = listed.photo_file(row["file"], labels.parent, line, where)
            accepted = accepted_classes(row["accepted"], class_names, where)
            source = row["source_class"].strip()
            if not source:
                raise PhotoSetError(f"{where}: empty source_class (what the photo shows: pants, hat, ...)")
            source = spelling.setdefault(source.casefold(), source)
            check_one_domain(source, bool(accepted), line, domain_of, labels)
            photos.append(Photo(labels.parent / file, source, accepted))
    except OSError as exc:
        raise PhotoSetError(f"{labels}: cannot read it ({exc.strerror or exc})") from None
    except csv.Error as exc:
        raise PhotoSetError(f"{labels}: cannot read it ({exc})") from None
    return photos


def checked_header(reader: csv.DictReader, labels: Path) -> set[str]:
    """Normalise ``reader``'s column names (trimmed, lower case) and check that each of
    :data:`LABEL_COLUMNS` is there once; return the keys given to unnamed columns.

    Raises :class:`PhotoSetError` naming the missing or repeated columns (and a header separated
    by ';' or a tab instead of commas)."""
    # an unnamed column (a spreadsheet's trailing comma) gets a key of its own, or two would share ""
    header = [name.strip().lower() or f"\0unnamed {i}" for i, name in enumerate(reader.fieldnames or [])]
    reader.fieldnames = header
    missing = [c for c in LABEL_COLUMNS if c not in header]
    if missing:
        separator = next((s for s in (";", "\t") if len(header) == 1 and s in header[0]), None)
        shown = "a tab" if separator == "\t" else f"'{separator}'"  # ';': a spreadsheet's export in some locales
        raise PhotoSetError(
            f"{labels}: expected columns {','.join(LABEL_COLUMNS)}; missing {', '.join(missing)}"
            + (f" (the header is separated by {shown}: separate the columns with commas)" if separator else "")
        )
    repeated = [c for c in LABEL_COLUMNS if header.count(c) > 1]
    if repeated:
        raise PhotoSetError(f"{labels}: the header names {', '.join(repeated)} twice")
    return {name for name in header if name.startswith("\0")}


def check_row_fields(row: dict, unnamed: set[str], where: str) -> None:
    """Raise :class:`PhotoSetError` (prefixed with ``where``) for a row with fewer fields than
    :data:`LABEL_COLUMNS` or with a value beyond the named columns."""
    absent = [c for c in LABEL_COLUMNS if row[c] is None]
    if absent:  # a short row: its fields would land in the wrong columns
        raise PhotoSetError(f"{where}: too few fields, no {', '.join(absent)}")
    extras = [*(row.get(None) or []), *(row[name] or "" for name in unnamed)]
    if any(extra.strip() for extra in extras):  # "Sandal,Sneaker" would drop Sneaker
        raise PhotoSetError(
            f"{where}: more fields than the header names "
            f"(separate the classes in accepted with ';', or quote a field that holds a comma)"
        )


class ListedFiles:
    """The photos a ``labels.csv`` has listed so far, to refuse one listed twice under any name."""

    def __init__(self) -> None:
        self.first_line: dict[str, int] = {}  # file -> the line that listed it
        self.first_named: dict[tuple[int, int], tuple[str, int]] = {}  # (device, inode) -> the file, its line
        self.listings: dict[Path, dict[str, list[str]]] = {}  # a folder -> its names by their composed form

    def photo_file(self, written: str, folder: Path, line: int, where: str) -> str:
        """The file a row's ``file`` field ``written`` names, relative to the set's ``folder``, as the
        disk spells it. Raises :class:`PhotoSetError` (prefixed with ``where``) for an empty name, a
        NUL byte, a Windows path, a file outside the folder, and one listed before under any name."""
        file = written.strip()
        if file != written and exists_only_as_written(folder, written, file):
            file = written  # a name that does begin or end with a space (quoted in the file)
        if not file:
            raise PhotoSetError(f"{where}: empty file name")
        if "\0" in file:  # no file system takes one
            raise PhotoSetError(f"{where}: the file name holds a NUL byte")
        if "\\" in file and not os.path.lexists(folder / file):  # a path written on Windows
            raise PhotoSetError(f"{where}: no file {quoted(file)}; separate its folders with /, not a backslash")
        file = as_spelt_on_disk(folder, file, self.listings)
        key = os.path.abspath(folder / file)  # "a/x.jpg", "a//x.jpg" and "/set/a/x.jpg" name one photo
        if not is_inside(key, folder):
            itself = key == os.path.abspath(folder) or os.path.realpath(key) == os.path.realpath(folder)
            what = "the photo set's folder itself, not a photo" if itself else "outside the photo set's folder"
            raise PhotoSetError(f"{where}: {quoted(file)} is {what}")
        if key in self.first_line:
            raise PhotoSetError(f"{where}: {quoted(file)} is listed again, first on line {self.first_line[key]}")
        self.first_line[key] = line
        if named := first_name(Path(key), (file, line), self.first_named):
            raise PhotoSetError(
                f"{where}: {quoted(file)} is the file of {quoted(named[0])} on line {named[1]}, under another name"
            )
        return file


def accepted_classes(field: str, class_names: Sequence[str], where: str) -> tuple[str, ...]:
    """The classes a row's ``accepted`` field names (``;``-separated, any case; each once), empty for
    a photo no class covers. Raises :class:`PhotoSetError` (prefixed with ``where``) for a name
    that is not one of ``class_names`` (with the nearest as a hint) or a field of separators only."""
    entries = [a.strip() for a in field.split(";")]
    if field.strip() and not any(entries):  # ";" names no class (empty: out of domain)
        raise PhotoSetError(
            f"{where}: accepted {quoted(field)} names no class (leave it empty for a photo that no class covers)"
        )
    accepted = []
    for entry in filter(None, entries):
        name = class_named(entry, class_names)
        if name is None:
            nearest = nearest_class(entry, class_names)
            hint = (
                " (separate the classes in accepted with ';')"
                if "," in entry  # a quoted "Dress,Coat"
                else f" (did you mean {quoted(nearest)}?)"
                if nearest
                else f"; the classes: {', '.join(map(quoted, class_names))}"
            )
            raise PhotoSetError(f"{where}: {quoted(entry)} is not a {class_noun(class_names)}{hint}")
        accepted.append(name)
    return tuple(dict.fromkeys(accepted))  # "Coat;coat" is Coat


def exists_only_as_written(folder: Path, written: str, stripped: str) -> bool:
    """Whether ``folder`` holds a file named ``written`` (spaces around it included) and none named ``stripped``."""
    try:
        return os.path.lexists(folder / written) and not os.path.lexists(folder / stripped)
    except ValueError:  # a NUL byte: refused below
        return False


def first_name(path: Path, name: T, first_named: dict[tuple[int, int], T]) -> T | None:
    """The name ``first_named`` holds for the file at ``path`` when another name reached it first (a
    hard link or a symlink: one photo under two names), else None, ``name`` then recorded for it."""
    identity = file_identity(path)
    if identity is None:
        return None
    if identity in first_named:
        return first_named[identity]
    first_named[identity] = name
    return None


def as_spelt_on_disk(folder: Path, file: str, listings: dict[Path, dict[str, list[str]]]) -> str:
    """``file`` (relative to ``folder``) as the disk spells it, when it is there only in another
    Unicode normal form: macOS writes names decomposed (NFD: ``e`` and a combining accent), and a
    ``labels.csv`` typed or generated elsewhere lists them composed (NFC: ``é``). Else ``file``.
    ``listings`` keeps each folder's names by their composed form, read once per photo set."""
    # An ASCII name is the same in every form; a stored name that composes to ASCII (a Kelvin sign
    # for K) is not looked for: it would cost a listing for every missing ASCII row.
    if file.isascii() or os.path.lexists(folder / file):  # no stat for the ASCII names of most sets
        return file
    current, parts = folder, []
    for part in Path(file).parts:
        if not os.path.lexists(current / part):
            if current not in listings:
                try:
                    names = os.listdir(current)
                except OSError:  # not a folder, or not readable: the photo is reported as it is listed
                    return file
                listings[current] = {}
                for name in names:
                    listings[current].setdefault(unicodedata.normalize("NFC", name), []).append(name)
            matches = listings[current].get(unicodedata.normalize("NFC", part), [])
            if len(matches) != 1:
                return file
            part = matches[0]
        parts.append(part)
        current = current / part
    return str(Path(*parts))


def is_inside(path: str, folder: Path) -> bool:
    """Whether ``path`` (absolute) names something below ``folder``, by name or with symlinks
    resolved (a folder reached through a link, ``photos -> /data/photos``, holds
    ``/data/photos/a/x.jpg``)."""
    return any(
        os.path.commonpath([name, base]) == base and name != base
        for name, base in ((path, os.path.abspath(folder)), (os.path.realpath(path), os.path.realpath(folder)))
    )


def utf8_text(path: Path) -> str:
    """``path``'s text, read as UTF-8 after a spreadsheet's byte-order mark; raises
    :class:`PhotoSetError` naming the line of the first byte that is not UTF-8, and ``OSError``."""
    data = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PhotoSetError(f"{path}: line {line}: not UTF-8 text (save it as CSV UTF-8)") from None


def check_one_domain(
    source: str, in_domain: bool, line: int, domain_of: dict[str, tuple[bool, int]], labels: Path
) -> None:
    """Raise :class:`PhotoSetError` when the rows of ``source`` disagree on whether it is in domain
    (an ``accepted`` left empty on one row): its recall would count the out-of-domain photos as
    misses, and its unsure rate leave them out. ``domain_of`` maps each source class met so far
    to whether it is in domain and the line that first said so, and is updated."""
    in_domain_before, first = domain_of.setdefault(source, (in_domain, line))
    if in_domain_before != in_domain:
        named, empty = (line, first) if in_domain else (first, line)
        raise PhotoSetError(
            f"{labels}: line {line}: source class {quoted(source)} has accepted classes on line {named} "
            f"and none on line {empty} (a source class is in domain on every row or on none)"
        )


def unclosed_quote_line(lines: list[str]) -> int | None:
    """The line of a CSV file's ``lines`` (read with ``newline=""``) where a quote that is never closed
    opens, or None.

    Such a quote takes every line after it into one field, to the end of the file: the last row
    ``csv`` reads then ends there, and read alone in strict mode it ends inside a quote
    ("unexpected end of data"). That row starts at the first line with text after the row before it.
    """
    reader = csv.reader(lines)
    ended = 0  # the line the row before the last one ended on
    for _ in reader:
        if reader.line_num < len(lines):
            ended = reader.line_num
    try:
        for _ in csv.reader(lines[ended:], strict=True):
            pass
        return None
    except csv.Error as exc:
        if "unexpected end of data" not in str(exc):
            return None
    start = ended
    while start < len(lines) and not lines[start].strip():
        start += 1
    return start + 1


def _from_class_folders(folder: Path, class_names: Sequence[str]) -> list[Photo]:
    photos: list[Photo] = []
    extensions = picture_extensions()
    first_named: dict[tuple[int, int], Path] = {}  # (device, inode) -> the first name of the file
    for sub in class_folders(folder):
        name = class_named(sub.name, class_names)
        accepted = (name,) if name else ()
        for path in sorted(sub.iterdir()):
            if not is_picture_file(path, extensions) or is_hidden(path, folder):
                continue
            if named := first_name(path, path, first_named):
                raise PhotoSetError(
                    f"{path}: the file of {named}, under another name "
                    "(one photo would be scored twice, perhaps as two classes)"
                )
            photos.append(Photo(path, name or sub.name, accepted))
    return photos


def is_hidden(path: Path, folder: Path) -> bool:
    """Whether ``path``, below ``folder``, has a dot name on the way: ``.thumbnails/``, or a macOS
    ``._IMG_1.jpg``, which is no picture though named like one."""
    return any(part.startswith(".") for part in path.relative_to(folder).parts)
