"""What ``infer --image`` arguments name: picture files, folders, glob patterns and ``-``.

:func:`find_pictures` expands them into the files to classify, each once, with the entries it
passed over and the arguments that name no picture, each with the reason why.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from edgefmnist.runtime.picture_formats import picture_extensions

from edgefmnist.atomic import file_identity, open_descriptor
from edgefmnist.errors import not_a_file_reason

STDIN = "-"  # an --image argument that means one picture read from standard input
URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")  # a URI scheme (RFC 3986, section 3.1) and "//"


@dataclass(frozen=True)
class PictureFiles:
    """What ``--image`` arguments name: the files to classify, and the entries skipped with the reason why."""

    paths: list[Path]
    skipped: dict[Path, str]  # "not a picture format (.txt)", "a dangling symlink", "a FIFO", ...
    empty: dict[str, str] = field(default_factory=dict)  # argument -> why it names no picture (an error)
    unread: dict[Path, str] = field(default_factory=dict)  # folder a glob names but may not read -> why (an error)


def find_pictures(patterns: list[str]) -> PictureFiles:
    """Expand ``--image`` arguments: files as given, picture files inside folders, glob matches; in order, no repeats.

    A folder or a glob keeps the files whose extension is one of
    :func:`~edgefmnist.runtime.picture_formats.picture_extensions` (what the installed Pillow and
    HEIF plugin decode) and lists the others in ``skipped``, with what is not a regular file (a
    sub-folder, a dangling symlink, a FIFO), each with its reason; the folders a glob names
    or a ``**`` walk reaches but may not list or enter are in ``unread``, with the reason.
    Neither takes dot names (``.thumbnails/``, a macOS ``._IMG_1.jpg``), and ``**`` in a glob
    matches any depth of folders (``photos/**/*.jpg``, :func:`glob_matches`); a glob that ends
    with ``/`` names folders, whose files are taken as a folder's are (``photos/*/`` is
    ``photos/*/*``). A file named on its own is always tried, whatever its name, and ``-``
    (standard input) is kept as it is (``./-`` names a file called ``-``, by its absolute path);
    a URL (``https://...``) that names no file is an argument that gives no picture.
    A folder or a glob without a single picture file, or one that cannot be read (a folder on the
    way without read or search permission), is listed in ``empty`` (arguments that give no
    picture) with the reason, and the other arguments are still expanded: ``infer`` reports
    ``unread`` and ``empty`` as errors after classifying the rest.
    """
    extensions = None
    found: list[Path] = []
    skipped: dict[Path, str] = {}
    empty: dict[str, str] = {}
    unread: dict[Path, str] = {}
    for pattern in patterns:
        path = Path(pattern)
        if pattern == STDIN:  # even beside a folder called "-" (./- names it)
            found.append(path)
            continue
        if URL.match(pattern) and not os.path.lexists(pattern):  # Path() would make https:// https:/
            empty[pattern] = "a URL, not a file: pictures are read from files (download it first, curl -O URL)"
            continue
        try:
            if names_folders := path.is_dir():
                entries = folder_entries(path)
            elif not path.exists() and glob.has_magic(pattern):
                names_folders = pattern.endswith(("/", os.sep)) and "**" not in path.parts
                entries, unlisted, none_because = (folders_entries if names_folders else glob_entries)(pattern)
                for folder, reason in unlisted.items():
                    unread.setdefault(folder, f"cannot read ({reason}), so the pictures inside were not searched")
                if not entries and none_because:
                    empty[pattern] = none_because
                    continue
            elif pattern.endswith(("/", os.sep)):  # Path() drops the slash, which the system refuses (ENOTDIR)
                empty[pattern] = "not a folder" if os.path.lexists(path) else "no such folder"
                continue
            elif str(path) == STDIN:  # ./-: a file named "-", not standard input
                found.append(Path(os.path.abspath(pattern)))
                continue
            else:
                found.append(path)  # a missing file is reported per image
                continue
            extensions = extensions or picture_extensions()
            pictures = picture_entries(entries, extensions, skipped)
        except OSError as exc:  # a folder on the way that may not be read (listed) or searched
            empty[pattern] = f"cannot read ({os_error_text(exc)})"
            continue
        except RecursionError:  # a ** walk down a tree of about a thousand folders
            empty[pattern] = "too many folders deep to search"
            continue
        if not pictures:
            empty[pattern] = no_pictures_reason(names_folders, entries, pattern)
        found.extend(pictures)
    return PictureFiles(each_file_once(found), skipped, empty, unread)


def picture_entries(entries: list[Path], extensions: frozenset[str], skipped: dict[Path, str]) -> list[Path]:
    """The regular files of ``entries`` with one of ``extensions``; each other entry goes into
    ``skipped`` with why (a sub-folder, a FIFO, "not a picture format (.txt)"), unless it is there."""
    pictures = []
    for entry in entries:
        if not entry.is_file():
            reason = not_a_file_reason(entry)
            if reason == "a folder":
                reason += " (folders inside are not searched)"
            skipped.setdefault(entry, reason)
        elif entry.suffix.lower() in extensions:
            pictures.append(entry)
        else:
            skipped.setdefault(entry, f"not a picture format ({entry.suffix or 'no extension'})")
    return pictures


def os_error_text(exc: OSError) -> str:
    """The system's words for ``exc`` (``Permission denied``), else its type's name."""
    return exc.strerror or type(exc).__name__


def folder_entries(folder: Path) -> list[Path]:
    """What ``folder`` holds, sorted, but dot names (``.thumbnails/``, a macOS ``._IMG_1.jpg``),
    as a glob leaves them out. ``OSError`` when it may not be listed."""
    return sorted(entry for entry in folder.iterdir() if not entry.name.startswith("."))


def folders_entries(pattern: str) -> tuple[list[Path], dict[Path, str], str]:
    """What the folders a glob ending with ``/`` names hold (:func:`folder_entries`), the folders
    among them that may not be listed, each with the error's text (``Permission denied``), and
    why there is no entry at all as a folder argument says it: ``"no folders match"``, or
    ``"cannot read photos/a (...)"`` when none of them may be listed, naming the first (else ``""``)."""
    folders = sorted(Path(match) for match in glob.glob(pattern))  # only folders match a trailing /
    entries: list[Path] = []
    unlisted: dict[Path, str] = {}
    for folder in folders:
        try:
            held = folder_entries(folder)
            if held:
                held[0].lstat()  # a folder that may be listed but not entered (no search permission)
            entries += held
        except OSError as exc:
            unlisted[folder] = os_error_text(exc)
    if not folders:
        return [], {}, "no folders match"
    if len(unlisted) == len(folders):
        first = f"{folders[0]} ({unlisted[folders[0]]})"
        return (
            [],
            {},
            f"cannot read {first}"
            if len(folders) == 1
            else f"cannot read any of the {len(folders)} folders that match, the first {first}",
        )
    return entries, unlisted, ""


def glob_entries(pattern: str) -> tuple[list[Path], dict[Path, str], str]:
    """:func:`glob_matches` of ``pattern`` (``photos/**/`` as ``photos/**/*``), and why there is
    no entry at all (``"no files match"``)."""
    matches, unlisted = glob_matches(pattern + "*" if pattern.endswith(("/", os.sep)) else pattern)
    return matches, unlisted, "no files match"


def no_pictures_reason(names_folders: bool, entries: list[Path], pattern: str) -> str:
    """Why a folder or a glob ending with ``/`` (``names_folders``), or another glob, gave no
    picture, from whether each of its ``entries`` is a regular file; a folder of folders gets
    the glob that searches them (``photos/**``), from the argument ``pattern``."""
    regular = [entry.is_file() for entry in entries]
    what, held = (
        ("a folder with no picture files", "what it holds")
        if names_folders
        else ("no picture files match", "what matches")
    )
    if all(regular):  # an empty folder too
        return f"{what} (none has an extension that Pillow reads here)"
    if not any(regular):
        reason = f"{what} ({held} is no regular file)"
    else:
        reason = f"{what} (no regular file among {held} has an extension that Pillow reads here)"
    if names_folders and any(entry.is_dir() for entry in entries):
        reason += f"; its folders are not searched: give '{pattern.rstrip('/' + os.sep)}/**' to search them"
    return reason


def glob_matches(pattern: str) -> tuple[list[Path], dict[Path, str]]:
    """What a glob ``pattern`` names, sorted; names starting with a dot only where the pattern says so.

    A ``**`` component matches any depth of folders, which are then left out themselves (the
    pattern searches them; ``photos/**`` is ``photos/**/*``). As bash's ``globstar``, and unlike
    ``glob.glob(recursive=True)``, it does not follow a symlinked folder, so a link to a parent
    cannot repeat a picture or multiply the walk (``pathlib.Path.glob``). Below the pattern's
    fixed folders it leaves out dot names (``.thumbnails/``, ``._IMG_1.jpg``) but those a part of
    the pattern that starts with a dot matches (``photos/**/.cache/*.jpg``, ``photos/**/.*/*.jpg``,
    ``photos/**/.*.jpg``). Also returned: the folders such a walk searches but may not list or
    enter, each with the error's text (``Permission denied``), which pathlib's glob passes over
    without a word (symlinked folders followed where the glob follows them: above the ``**``).
    ``RecursionError`` for a tree too deep for the walk (about 970 folders in Python 3.11).
    """
    parts = Path(pattern).parts
    if "**" not in parts:
        return sorted(Path(match) for match in glob.glob(pattern)), {}
    fixed = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    root = Path(*parts[:fixed])
    rest = [*parts[fixed:], "*"] if parts[-1] == "**" else list(parts[fixed:])
    spelled = [part for part in rest[:-1] if part.startswith(".")]  # folders: ".cache", or ".*" for any dot name
    dot_files = rest[-1].startswith(".")

    def shown(names: tuple[str, ...]) -> bool:
        *folders, last = names
        hidden = [name for name in folders if name.startswith(".")]
        spelt = all(any(fnmatch.fnmatchcase(name, part) for part in spelled) for name in hidden)
        return spelt and (dot_files or not last.startswith("."))

    def searched(folders: tuple[str, ...]) -> bool:  # the parts before the first ** match one level each
        level = len(folders) - 1
        fits_level = level >= rest.index("**") or fnmatch.fnmatchcase(folders[-1], rest[level])
        return fits_level and shown((*folders, "picture"))

    unlisted: dict[Path, str] = {}
    matches = []
    for match in root.glob(str(Path(*rest))):
        if not shown(match.relative_to(root).parts):
            continue
        try:
            if not match.is_dir():
                matches.append(match)
        except OSError as exc:  # a folder that may be listed but not entered (no search permission)
            unlisted.setdefault(match.parent, os_error_text(exc))
    two_stars = rest.index("**")
    for folder, subfolders, _ in os.walk(
        root,
        onerror=lambda exc: (
            None if isinstance(exc, FileNotFoundError) else unlisted.setdefault(Path(exc.filename), os_error_text(exc))
        ),  # a missing folder names no picture: that argument's own error says so
        followlinks=True,  # above the ** level, as the glob does; below it the links are left out
    ):
        above = Path(folder).relative_to(root).parts
        subfolders[:] = [
            name
            for name in subfolders
            if searched((*above, name)) and (len(above) < two_stars or not os.path.islink(os.path.join(folder, name)))
        ]
    return sorted(matches), dict(sorted(unlisted.items()))


def each_file_once(paths: list[Path]) -> list[Path]:
    """``paths`` in order, each file once under the first name that reached it: ``x.jpg`` and
    ``./x.jpg``, a symlink and its target, or a hard link name one picture
    (:func:`edgefmnist.atomic.file_identity`; a missing file is known by its resolved path), as
    do ``-`` and a name of this process's standard input (``/dev/stdin``, ``/dev/fd/0``), and
    the file standard input reads, when it reads one (``--image x.jpg --image - < x.jpg``)."""
    first: dict[object, Path] = {}
    for path in paths:
        system = os.path.abspath(path).startswith(("/dev/", "/proc/")) or os.path.islink(path)  # ~20 µs to follow
        stdin = str(path) == STDIN or (system and open_descriptor(path) == (os.getpid(), 0))
        key = (file_identity(Path("/dev/fd/0")) or STDIN) if stdin else file_identity(path) or os.path.realpath(path)
        first.setdefault(key, path)
    return list(first.values())
