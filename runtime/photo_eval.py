"""Accuracy on real photos and the "unsure" thresholds: what ``edgefmnist evaluate --photos`` does.

    edgefmnist evaluate --photos ../shared/photos-dev --split report --json
    edgefmnist evaluate --photos ../shared/photos-dev --split choice --sweep-typicality

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

Runtime-only: numpy, onnxruntime, pillow; tqdm (a progress bar) and matplotlib (``--plot``)
are used only when installed / asked for.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Literal, TypeVar

import numpy as np
from edgefmnist.runtime.infer import (
    check_min_confidence,
    check_min_typicality,
    picture_outputs,
    picture_typicality,
    unsure_reasons,
)
from edgefmnist.runtime.picture_formats import picture_extensions
from edgefmnist.runtime.predictor import Predictor
from edgefmnist.runtime.preprocess import preprocess

from edgefmnist import spec
from edgefmnist.atomic import file_identity
from edgefmnist.errors import EdgeFmnistError, counted, not_a_file_reason, printable, quoted

Split = Literal["choice", "report"]
SPLITS = ("choice", "report", "all")
LABELS_FILE = "labels.csv"
LABEL_COLUMNS = ("file", "source_class", "accepted")
UNSURE = "unsure"
SWEEP_GRIDS = {"confidence": spec.SWEEP_THRESHOLDS, "typicality": spec.SWEEP_TYPICALITIES}
T = TypeVar("T")


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


def photo_split(name: str) -> Split:
    """``"choice"`` or ``"report"``: the first byte of SHA-256 of the file's base name, even or odd.

    Depends only on the base name (not the folder), so a copy of a photo keeps its half.
    """
    return "choice" if hashlib.sha256(PurePath(name).name.encode()).digest()[0] % 2 == 0 else "report"


def select_split(photos: Iterable[Photo], split: str) -> list[Photo]:
    """The photos of one half (``"choice"``/``"report"``), or all of them (``"all"``)."""
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
    which would score one photo twice, perhaps in both halves) or an unknown class
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

    With ``labels.csv``: pictures in the folder or below it that it does not list are not scored.
    With class folders: folders of pictures named after no class count as out of domain (a
    ``shoes`` or ``t-shirt`` folder too: Fashion-MNIST calls them ``Sneaker``, ``T-shirt_top``; a
    second line names the class a near miss means, :func:`nearest_class`), and pictures beside
    the folders or in their sub-folders are not scored. Folder names are quoted
    (``'odd, name'``). Dot names (:func:`is_hidden`) are skipped in class folders and in the notes.
    """
    folder = Path(folder)
    extensions = picture_extensions()
    pictures = {
        os.path.abspath(path)
        for path in folder.rglob("*")
        if is_picture_file(path, extensions) and not is_hidden(path, folder)
    }
    unscored = len(pictures - {os.path.abspath(path) for path in [*(photo.path for photo in photos), *written]})
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
    return notes


def is_picture_file(path: Path, extensions: frozenset[str]) -> bool:
    """A file whose extension is one of ``extensions`` (:func:`picture_extensions`)."""
    return path.is_file() and path.suffix.lower() in extensions


def _from_labels_csv(labels: Path, class_names: Sequence[str]) -> list[Photo]:
    try:
        lines = io.StringIO(utf8_text(labels), newline="").readlines()
        opened = unclosed_quote_line(lines)
        if opened:
            raise PhotoSetError(f'{labels}: line {opened}: a quote (") is never closed')
        reader = csv.DictReader(lines)
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
        unnamed = {name for name in header if name.startswith("\0")}
        photos = []
        first_line: dict[str, int] = {}  # file -> the line that listed it
        first_named: dict[tuple[int, int], tuple[str, int]] = {}  # (device, inode) -> the file, its line
        domain_of: dict[str, tuple[bool, int]] = {}  # source class -> in domain, and the line that said so
        spelling: dict[str, str] = {}  # a source class ignoring case -> its first spelling ("Hat", "hat": one class)
        for row in reader:
            line = reader.line_num  # the file's line (rows may span lines; blank lines are skipped)
            absent = [c for c in LABEL_COLUMNS if row[c] is None]
            if absent:  # a short row: its fields would land in the wrong columns
                raise PhotoSetError(f"{labels}: line {line}: too few fields, no {', '.join(absent)}")
            extras = [*(row.get(None) or []), *(row[name] or "" for name in unnamed)]
            if any(extra.strip() for extra in extras):  # "Sandal,Sneaker" would drop Sneaker
                raise PhotoSetError(
                    f"{labels}: line {line}: more fields than the header names "
                    f"(separate the classes in accepted with ';', or quote a field that holds a comma)"
                )
            file = row["file"].strip()
            if not file:
                raise PhotoSetError(f"{labels}: line {line}: empty file name")
            if "\0" in file:  # no file system takes one
                raise PhotoSetError(f"{labels}: line {line}: the file name holds a NUL byte")
            if "\\" in file and not os.path.lexists(labels.parent / file):  # a path written on Windows
                raise PhotoSetError(
                    f"{labels}: line {line}: no file {quoted(file)}; separate its folders with /, not a backslash"
                )
            key = os.path.abspath(labels.parent / file)  # "a/x.jpg", "a//x.jpg" and "/set/a/x.jpg" name one photo
            if not is_inside(key, labels.parent):
                raise PhotoSetError(f"{labels}: line {line}: {quoted(file)} is outside the photo set's folder")
            if key in first_line:
                raise PhotoSetError(
                    f"{labels}: line {line}: {quoted(file)} is listed again, first on line {first_line[key]}"
                )
            first_line[key] = line
            identity = file_identity(Path(key))  # a hard link or a symlink: one photo under two names
            if identity in first_named:
                first_file, first_at = first_named[identity]
                raise PhotoSetError(
                    f"{labels}: line {line}: {quoted(file)} is the file of {quoted(first_file)} on line {first_at}, "
                    "under another name"
                )
            if identity is not None:
                first_named[identity] = (file, line)
            entries = [a.strip() for a in row["accepted"].split(";")]
            if row["accepted"].strip() and not any(entries):  # ";" names no class (empty: out of domain)
                raise PhotoSetError(
                    f"{labels}: line {line}: accepted {quoted(row['accepted'])} names no class "
                    "(leave it empty for a photo that no class covers)"
                )
            accepted = []
            for entry in filter(None, entries):
                name = class_named(entry, class_names)
                if name is None:
                    nearest = nearest_class(entry, class_names)
                    hint = (
                        f" (did you mean {quoted(nearest)}?)"
                        if nearest
                        else f"; the classes: {', '.join(map(quoted, class_names))}"
                    )
                    message = f"{labels}: line {line}: {quoted(entry)} is not a {class_noun(class_names)}{hint}"
                    raise PhotoSetError(message)
                accepted.append(name)
            accepted_once = tuple(dict.fromkeys(accepted))  # "Coat;coat" is Coat
            source = row["source_class"].strip()
            if not source:
                raise PhotoSetError(
                    f"{labels}: line {line}: empty source_class (what the photo shows: pants, hat, ...)"
                )
            source = spelling.setdefault(source.casefold(), source)
            check_one_domain(source, bool(accepted_once), line, domain_of, labels)
            photos.append(Photo(labels.parent / file, source, accepted_once))
    except OSError as exc:
        raise PhotoSetError(f"{labels}: cannot read it ({exc.strerror or exc})") from None
    except csv.Error as exc:
        raise PhotoSetError(f"{labels}: cannot read it ({exc})") from None
    return photos


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
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not is_hidden(p, folder)):
        name = class_named(sub.name, class_names)
        accepted = (name,) if name else ()
        photos.extend(
            Photo(path, name or sub.name, accepted)
            for path in sorted(sub.iterdir())
            if is_picture_file(path, extensions) and not is_hidden(path, folder)
        )
    return photos


def is_hidden(path: Path, folder: Path) -> bool:
    """Whether ``path``, below ``folder``, has a dot name on the way: ``.thumbnails/``, or a macOS
    ``._IMG_1.jpg``, which is no picture though named like one."""
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


def progress_bar(items: Sequence[T], description: str) -> Iterator[T]:
    """``items`` with a tqdm bar on stderr when tqdm is installed and stderr is a terminal."""
    if sys.stderr.isatty():
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            yield from tqdm(items, desc=description, unit="photo", file=sys.stderr, leave=False)
            return
    yield from items


@dataclass
class PhotoPredictions:
    """The model's outputs on a photo set: everything the reports and the sweep are computed from.

    ``probabilities`` float32 ``[M, 10]`` and ``nothing_found`` bool ``[M]`` for the M readable
    ``photos``; ``typicality`` float ``[M]`` (None for a model without the reference, see
    :func:`edgefmnist.runtime.infer.picture_typicality`); ``errors`` lists ``{"file", "error"}``
    for the unreadable ones.
    """

    class_names: tuple[str, ...]
    photos: list[Photo]
    probabilities: np.ndarray
    nothing_found: np.ndarray
    errors: list[dict[str, str]] = field(default_factory=list)
    typicality: np.ndarray | None = None

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(1) if len(self.photos) else np.zeros(0, np.int64)

    @property
    def confidence(self) -> np.ndarray:
        return self.probabilities.max(1) if len(self.photos) else np.zeros(0, np.float32)

    def right(self) -> np.ndarray:
        """bool ``[M]``: the forced answer (argmax) is an accepted class (always False out of domain)."""
        return np.array(
            [self.class_names[k] in p.accepted for k, p in zip(self.predicted, self.photos, strict=False)], bool
        )

    def in_domain(self) -> np.ndarray:
        return np.array([p.in_domain for p in self.photos], bool)

    def unsure(self, min_confidence: float, min_typicality: float = spec.DEFAULT_MIN_TYPICALITY) -> np.ndarray:
        typical = [None] * len(self.photos) if self.typicality is None else [float(t) for t in self.typicality]
        return np.array(
            [
                bool(unsure_reasons(float(c), min_confidence, bool(e), t, min_typicality))
                for c, e, t in zip(self.confidence, self.nothing_found, typical, strict=False)
            ],
            bool,
        )

    def sources(self) -> list[str]:
        """Source classes in order of first appearance in the sorted photos (in-domain ones first)."""
        names = list(dict.fromkeys(p.source_class for p in self.photos))
        ood = {p.source_class for p in self.photos if not p.in_domain}
        return [n for n in names if n not in ood] + [n for n in names if n in ood]


def predict_photos(
    predictor: Predictor,
    photos: Sequence[Photo],
    progress: Callable[[Sequence[Photo], str], Iterable[Photo]] = progress_bar,
) -> PhotoPredictions:
    """Preprocess each photo (the per-photo cost), then run the model once on the whole batch.

    The outputs are ``infer``'s (:func:`edgefmnist.runtime.infer.picture_outputs`).

    An unreadable photo is recorded in ``errors`` and left out; nothing is cached on disk.
    """
    kept, pixels, empty, was_photo, errors = [], [], [], [], []
    for photo in progress(photos, "photos"):
        try:
            refuse_fifo_or_socket(photo.path)
            picture = preprocess(photo.path)
        except EdgeFmnistError as exc:
            errors.append({"file": str(photo.path), "error": str(exc)})
            continue
        kept.append(photo)
        pixels.append(picture.pixels)
        empty.append(bool(picture.nothing_found))
        was_photo.append(picture.photo)
    classes = len(predictor.class_names)
    logits, probabilities = (
        picture_outputs(predictor, np.stack(pixels), was_photo)
        if pixels
        else (np.zeros((0, classes), np.float32), np.zeros((0, classes), np.float32))
    )
    typical = picture_typicality(predictor, logits)
    return PhotoPredictions(tuple(predictor.class_names), kept, probabilities, np.array(empty, bool), errors, typical)


def unread_in_domain(selected: Sequence[Photo], predictions: PhotoPredictions) -> int:
    """The number of in-domain photos among ``selected`` when every one of them was unreadable, else 0:
    the report then has no accuracy, and ``evaluate`` exits 1 after printing it."""
    in_domain = sum(photo.in_domain for photo in selected)
    classified = sum(photo.in_domain for photo in predictions.photos)
    return in_domain if in_domain and not classified else 0


def refuse_fifo_or_socket(path: Path) -> None:
    """Raise :class:`EdgeFmnistError` for a FIFO or a socket listed as a photo: reading one would
    wait for a writer forever. (``infer --image`` reads a FIFO, as ``cat`` would: ``<(...)``.)"""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing or unreadable: loading it says why
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        raise EdgeFmnistError(f"{path}: a {'FIFO' if stat.S_ISFIFO(mode) else 'socket'}, not a regular file")


def _share(mask: np.ndarray, of: np.ndarray) -> float | None:
    """``mask`` true among the ``of`` rows, or None when there are none."""
    total = int(of.sum())
    return float((mask & of).sum() / total) if total else None


def threshold_figures(
    predictions: PhotoPredictions, min_confidence: float, min_typicality: float = spec.DEFAULT_MIN_TYPICALITY
) -> dict:
    """Coverage, selective accuracy and out-of-domain unsure rates at one pair of thresholds."""
    unsure, inside, right = (
        predictions.unsure(min_confidence, min_typicality),
        predictions.in_domain(),
        predictions.right(),
    )
    answered = inside & ~unsure
    sources = np.array([p.source_class for p in predictions.photos])
    ood_sources = [s for s in predictions.sources() if not inside[sources == s].any()]
    return {
        "min_confidence": min_confidence,
        "min_typicality": min_typicality if predictions.typicality is not None else None,
        "coverage": _share(~unsure, inside),
        "selective_accuracy": _share(right, answered),
        "ood_unsure_rate": _share(unsure, ~inside),
        "ood_unsure": {s: _share(unsure, sources == s) for s in ood_sources},
    }


def photo_report(
    predictions: PhotoPredictions,
    min_confidence: float = spec.DEFAULT_MIN_CONFIDENCE,
    min_typicality: float = spec.DEFAULT_MIN_TYPICALITY,
) -> dict:
    """Everything ``evaluate --photos`` reports, as JSON-ready values.

    ``accuracy`` is the forced-answer accuracy on in-domain photos (the unsure verdict
    ignored). ``confusion`` counts verdicts: rows are source classes, columns the Fashion-MNIST
    classes plus ``unsure`` (an unsure photo counts there, not under its best guess);
    ``forced_confusion`` counts best guesses only.
    """
    check_min_confidence(min_confidence)
    check_min_typicality(min_typicality)
    names = predictions.class_names
    unsure, inside, right = (
        predictions.unsure(min_confidence, min_typicality),
        predictions.in_domain(),
        predictions.right(),
    )
    predicted = predictions.predicted
    sources = predictions.sources()
    source_of = np.array([p.source_class for p in predictions.photos])
    verdict = np.where(unsure, len(names), predicted)
    confusion = [np.bincount(verdict[source_of == s], minlength=len(names) + 1).tolist() for s in sources]
    forced = [np.bincount(predicted[source_of == s], minlength=len(names)).tolist() for s in sources]
    per_source = []
    for s in sources:
        rows = source_of == s
        per_source.append(
            {
                "source_class": s,
                "photos": int(rows.sum()),
                "in_domain": bool(inside[rows].any()),
                "recall": _share(right, rows) if inside[rows].any() else None,
                "unsure_rate": _share(unsure, rows),
            }
        )
    unreadable = len(predictions.errors)
    return {
        "photos": len(predictions.photos) + unreadable,
        "classified": len(predictions.photos),
        "unreadable": unreadable,
        "errors": predictions.errors,
        "in_domain": int(inside.sum()),
        "out_of_domain": int((~inside).sum()),
        "accuracy": _share(right, inside),
        "per_source": per_source,
        "confusion": {"rows": sources, "columns": [*names, UNSURE], "counts": confusion},
        "forced_confusion": {"rows": sources, "columns": list(names), "counts": forced},
        "threshold": threshold_figures(predictions, min_confidence, min_typicality),
    }


def target_ood_unsure(figures: dict, ood_class: str) -> float | None:
    """The unsure rate in :func:`threshold_figures` that the OOD target applies to: ``ood_class``'s
    photos', else (no such photo) all out-of-domain photos'."""
    return figures["ood_unsure"].get(ood_class, figures["ood_unsure_rate"])


def _meets(value: float | None, target: float) -> bool:
    return value is not None and value >= target


def threshold_sweep(
    predictions: PhotoPredictions,
    varied: str = "confidence",
    min_confidence: float = spec.DEFAULT_MIN_CONFIDENCE,
    min_typicality: float = spec.DEFAULT_MIN_TYPICALITY,
    ood_class: str = spec.TARGET_OOD_CLASS,
) -> dict:
    """Coverage, selective accuracy and OOD unsure rates over one threshold's grid, the other held,
    and the smallest value that meets all of ``spec.TARGET_*`` (``chosen`` is None when none does).

    ``varied`` is ``"confidence"`` (``spec.SWEEP_THRESHOLDS``, at ``min_typicality``) or
    ``"typicality"`` (``spec.SWEEP_TYPICALITIES``, at ``min_confidence``). The OOD target applies
    to ``ood_class`` photos (hats); without any, to all OOD photos. Raises ``ValueError`` for
    another ``varied``.
    """
    if varied not in SWEEP_GRIDS:
        raise ValueError(f"varied must be one of {', '.join(SWEEP_GRIDS)}, got {varied!r}")
    targets = {
        "selective_accuracy": spec.TARGET_SELECTIVE_ACCURACY,
        "coverage": spec.TARGET_COVERAGE,
        "ood_unsure": spec.TARGET_OOD_UNSURE,
    }
    check_min_confidence(min_confidence)
    check_min_typicality(min_typicality)
    rows = []
    for value in SWEEP_GRIDS[varied]:
        pair = (value, min_typicality) if varied == "confidence" else (min_confidence, value)
        figures = threshold_figures(predictions, *pair)
        ood = target_ood_unsure(figures, ood_class)
        met = {
            "selective_accuracy": _meets(figures["selective_accuracy"], targets["selective_accuracy"]),
            "coverage": _meets(figures["coverage"], targets["coverage"]),
            "ood_unsure": _meets(ood, targets["ood_unsure"]),
        }
        rows.append({**figures, "target_ood_unsure": ood, "met": met, "all_met": all(met.values())})
    chosen = next((row[f"min_{varied}"] for row in rows if row["all_met"]), None)
    ood_name = ood_class if any(ood_class in row["ood_unsure"] for row in rows) else "out-of-domain"
    return {"targets": {**targets, "ood_class": ood_name}, "varied": varied, "rows": rows, "chosen": chosen}


def choose_thresholds(predictions: PhotoPredictions, ood_class: str = spec.TARGET_OOD_CLASS) -> dict:
    """The pair of thresholds that the defaults' rule picks (``spec.DEFAULT_MIN_CONFIDENCE``'s comment).

    Over every pair of ``spec.SWEEP_THRESHOLDS`` x ``spec.SWEEP_TYPICALITIES`` (the confidence
    grid alone for a model without the typicality reference): the smallest summed shortfall of
    the coverage and of the ``ood_class`` unsure rate (all out-of-domain photos when there is no
    such class) below their targets, then the highest accuracy on the answered photos, then the
    smallest min-confidence and min-typicality. Returns :func:`threshold_figures` of that pair
    with ``shortfall``. ``ValueError`` when no photo is in domain or none is out of domain
    (there would be nothing to weigh coverage or the unsure rate against).
    """
    inside = predictions.in_domain()
    if not inside.any() or inside.all():
        raise ValueError("choosing thresholds needs in-domain and out-of-domain photos")
    typicalities = spec.SWEEP_TYPICALITIES if predictions.typicality is not None else (spec.DEFAULT_MIN_TYPICALITY,)
    best: tuple[tuple[float, float, float, float], dict] | None = None
    for min_confidence in spec.SWEEP_THRESHOLDS:
        for min_typicality in typicalities:
            figures = threshold_figures(predictions, min_confidence, min_typicality)
            ood = target_ood_unsure(figures, ood_class) or 0.0
            shortfall = max(0.0, spec.TARGET_COVERAGE - figures["coverage"]) + max(0.0, spec.TARGET_OOD_UNSURE - ood)
            key = (round(shortfall, 9), -(figures["selective_accuracy"] or 0.0), min_confidence, min_typicality)
            if best is None or key < best[0]:
                best = key, {**figures, "shortfall": shortfall}
    assert best is not None  # the grids are not empty
    return best[1]


def format_choice(chosen: dict, ood_class: str = spec.TARGET_OOD_CLASS) -> str:
    """One line: the pair :func:`choose_thresholds` picked and its figures."""
    ood_name = ood_class if ood_class in chosen["ood_unsure"] else "out-of-domain"
    ood_text = f"{ood_name} unsure {_percent(target_ood_unsure(chosen, ood_class))}"
    return (
        f"the defaults' rule picks {thresholds_text(chosen)}: coverage {_percent(chosen['coverage'])}, "
        f"{ood_text}, selective accuracy {_percent(chosen['selective_accuracy'])} "
        f"(summed shortfall from the coverage and unsure targets: {chosen['shortfall']:.4f})"
    )


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def format_photo_report(report: dict, title: str) -> str:
    """A plain-text summary for the terminal."""

    def pct(value: float | None) -> str:
        return "    —" if value is None else f"{100 * value:5.1f}"

    figures = report["threshold"]
    lines = [
        f"{title}: {counted(report['photos'], 'photo')} ({report['in_domain']:,} in domain, "
        f"{report['out_of_domain']:,} out of domain, {report['unreadable']:,} unreadable)",
        f"  accuracy (forced answer, in domain)  {pct(report['accuracy'])} %",
        f"  at {thresholds_text(figures)}: coverage {pct(figures['coverage'])} %, "
        f"selective accuracy {pct(figures['selective_accuracy'])} %, "
        f"unsure on out-of-domain {pct(figures['ood_unsure_rate'])} %",
        "",
        f"  {'source class':<14} {'photos':>6} {'recall %':>9} {'unsure %':>9}",
    ]
    for row in report["per_source"]:
        lines.append(
            f"  {printable(row['source_class']):<14} {row['photos']:>6} "
            f"{pct(row['recall']):>9} {pct(row['unsure_rate']):>9}"
            + ("" if row["in_domain"] else "  (out of domain: unsure is right)")
        )
    lines += ["", "  confusion: rows source class, columns the verdict"]
    columns, counts = [printable(column) for column in report["confusion"]["columns"]], report["confusion"]["counts"]
    widths = [max(len(column), *(len(str(row[i])) for row in counts)) for i, column in enumerate(columns)]
    lines.append(f"  {'':<14} " + " ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True)))
    for source, row in zip(report["confusion"]["rows"], counts, strict=True):
        lines.append(f"  {printable(source):<14} " + " ".join(f"{n:>{w}}" for n, w in zip(row, widths, strict=True)))
    for error in report["errors"]:
        lines.append(printable(f"  unreadable: {error['error']}"))
    return "\n".join(lines)


def thresholds_text(figures: dict) -> str:
    """``min-confidence 0.40, min-typicality 0.011`` (no typicality for a model without the reference)."""
    text = f"min-confidence {figures['min_confidence']:.2f}"
    if figures.get("min_typicality") is not None:
        text += f", min-typicality {figures['min_typicality']:.3f}"
    return text


def format_sweep(sweep: dict) -> str:
    """The sweep as a table, and the threshold it names."""
    targets, varied = sweep["targets"], sweep["varied"]
    held = "min_typicality" if varied == "confidence" else "min_confidence"
    held_value = sweep["rows"][0][held] if sweep["rows"] else None
    lines = [
        f"targets: selective accuracy >= {targets['selective_accuracy']:.2f}, coverage >= {targets['coverage']:.2f}, "
        f"{targets['ood_class']} unsure >= {targets['ood_unsure']:.2f} (the target OOD column)",
        f"varied: min-{varied}" + ("" if held_value is None else f"; held: {held.replace('_', '-')} {held_value:g}"),
        "",
        f"{'threshold':>9} {'coverage':>9} {'sel. acc':>9} {'OOD unsure':>11} {'target OOD':>11}  met",
    ]
    for row in sweep["rows"]:
        met = ", ".join(name for name, ok in row["met"].items() if ok) or "none"
        cells = [row["coverage"], row["selective_accuracy"], row["ood_unsure_rate"], row["target_ood_unsure"]]
        text = ["—" if v is None else f"{v:.3f}" for v in cells]
        digits = 2 if varied == "confidence" else 3
        lines.append(
            f"{row[f'min_{varied}']:>9.{digits}f} {text[0]:>9} {text[1]:>9} {text[2]:>11} {text[3]:>11}  "
            + ("ALL" if row["all_met"] else met)
        )
    chosen = sweep["chosen"]
    lines += [
        "",
        f"smallest min-{varied} meeting all targets: {chosen:g}"
        if chosen is not None
        else "no threshold meets all targets",
    ]
    return "\n".join(lines)


def curve_labels(
    points: Sequence[tuple[float, float, float]], apart: float = 0.015
) -> list[tuple[tuple[float, float], str]]:
    """Labels for ``(coverage, accuracy, threshold)`` points of a curve, in order: a run of points
    within ``apart`` of its first one in both coordinates (shares, 0..1: thresholds that change
    few answers) is labelled once, by its range of thresholds ("0.0-0.3"), so that no labels are
    drawn on top of each other."""
    labels: list[tuple[tuple[float, float], str]] = []
    run: list[tuple[float, float, float]] = []
    for point in [*points, None]:
        if run and (point is None or max(abs(point[0] - run[0][0]), abs(point[1] - run[0][1])) > apart):
            thresholds = f"{run[0][2]:.1f}" + (f"-{run[-1][2]:.1f}" if len(run) > 1 else "")
            labels.append(((run[0][0], run[0][1]), thresholds))
            run = []
        if point is not None:
            run.append(point)
    return labels


def save_photo_plot(path: Path, report: dict, predictions: PhotoPredictions, title: str) -> None:
    """Two panels: the verdict confusion (source class x predicted class + unsure) as a heat map,
    and selective accuracy against coverage over min-confidence 0..0.99 (min-typicality held at
    the report's). Needs matplotlib."""
    from edgefmnist.plots import _pyplot, save_figure

    plt = _pyplot()
    counts = np.array(report["confusion"]["counts"], dtype=float).reshape(len(report["confusion"]["rows"]), -1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 6.5), gridspec_kw={"width_ratios": [3, 2]})
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    image = left.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    left.set_xticks(range(counts.shape[1]), map(printable, report["confusion"]["columns"]), rotation=45, ha="right")
    left.set_yticks(range(counts.shape[0]), map(printable, report["confusion"]["rows"]))
    figures = report["threshold"]
    rule = f"top probability ≤ {figures['min_confidence']:.2f}"
    if figures.get("min_typicality") is not None:
        rule += f" or typicality < {figures['min_typicality']:.3f}"
    left.set_xlabel(f"verdict (unsure: {rule})")
    left.set_ylabel("source class")
    for i, row in enumerate(counts):
        for j, count in enumerate(row):
            left.text(
                j,
                i,
                str(int(count)),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if shares[i, j] > 0.5 else "black",
            )
    fig.colorbar(image, ax=left, fraction=0.046, label="share of the row")
    left.set_title(printable(title))
    held = report["threshold"]["min_typicality"] or 0.0
    curve = [threshold_figures(predictions, t / 100, held) for t in range(0, 100)]
    points = [
        (c["coverage"], c["selective_accuracy"], c["min_confidence"])
        for c in curve
        if c["coverage"] and c["selective_accuracy"] is not None
    ]
    if points:
        right.plot([100 * p[0] for p in points], [100 * p[1] for p in points], marker=".")
        for (coverage, accuracy), label in curve_labels(points[::10]):
            right.annotate(
                label, (100 * coverage, 100 * accuracy), fontsize=8, textcoords="offset points", xytext=(4, 4)
            )
        right.margins(x=0.08, y=0.08)  # room for the labels at the curve's ends
    right.set_xlabel("coverage: in-domain photos answered (%)")
    right.set_ylabel("accuracy on the answered photos (%)")
    right.set_title(f"over min-confidence (labels), min-typicality {held:g}")
    right.grid(alpha=0.3)
    save_figure(fig, path)
