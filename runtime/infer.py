"""Classify picture files: what ``edgefmnist infer`` does (torch-free).

    edgefmnist infer --image shirt.jpg --image 'photos/*.png' --top-k 3 --json
    edgefmnist infer --image hat.jpg --min-confidence 0.6

The verdict is "unsure" when the top (calibrated) probability is not above its threshold
(``spec.DEFAULT_MIN_CONFIDENCE`` unless given), when the picture is less typical than its
threshold (``spec.DEFAULT_MIN_TYPICALITY``; the share of the model's validation images of the
predicted class whose largest logit is lower, :func:`picture_typicality`), or when no object was
found: an honest answer for pictures outside what Fashion-MNIST covers. Unsure is an answer,
not an error. A photo is classified as it is and mirrored, when the network was trained on
mirrored images (:func:`picture_outputs`).
"""

from __future__ import annotations

import decimal
import hashlib
import itertools
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from edgefmnist.runtime.batch import PreparedPicture, classify_in_batches, preprocess_in_order
from edgefmnist.runtime.picture import MAX_ENCODED_BYTES, is_device, read_at_most
from edgefmnist.runtime.picture_files import STDIN
from edgefmnist.runtime.picture_formats import file_extension
from edgefmnist.runtime.png_target import PNG_COLOUR_TYPES, PNG_GRAYSCALE, check_png_target, png_header, refuse_dash
from edgefmnist.runtime.predictor import Predictor
from edgefmnist.runtime.preprocess import Preprocessed, preprocess

from edgefmnist import calibration, spec
from edgefmnist.atomic import open_descriptor, refuse_overwriting
from edgefmnist.errors import EdgeFmnistError, UsageError, counted, quoted

STDIN_NAME = "<stdin>"  # how the picture on standard input is named in results and errors


# Why a verdict is unsure: stable codes for scripts (JSON "unsure_reasons")
NO_OBJECT = "no_object"  # preprocessing found no object (a uniform picture, nothing stands out)
LOW_CONFIDENCE = "low_confidence"  # the top probability is not above min_confidence
ATYPICAL = "atypical"  # the typicality is below min_typicality


def unsure_reasons(
    probability: float,
    min_confidence: float,
    nothing_found: bool = False,
    typicality: float | None = None,
    min_typicality: float = spec.DEFAULT_MIN_TYPICALITY,
) -> list[str]:
    """Why the verdict is unsure, in this order: ``NO_OBJECT`` when nothing was found,
    ``LOW_CONFIDENCE`` when ``probability <= min_confidence``, ``ATYPICAL`` when
    ``typicality < min_typicality`` (a model without a typicality reference has ``None``: not
    checked); an empty list when it is not. The verdict is unsure when the list is not empty: so
    ``min_confidence=0`` with ``min_typicality=0`` never says unsure about a real object (a top
    probability of 10 classes is at least 0.1) and ``min_confidence=1`` always does.
    """
    checks = (
        (nothing_found, NO_OBJECT),
        (probability <= min_confidence, LOW_CONFIDENCE),
        (typicality is not None and typicality < min_typicality, ATYPICAL),
    )
    return [reason for failed, reason in checks if failed]


def shown_decimals(min_confidence: float) -> int:
    """Decimals the text line gives the top probability at ``min_confidence``: two, or as many as
    the threshold has as Python writes it (``0.557``: three; ``1e-07``: seven)."""
    exponent = decimal.Decimal(repr(float(min_confidence))).as_tuple().exponent
    return max(2, -exponent if isinstance(exponent, int) else 2)


def rounded_up(probability: float, decimals: int = 2) -> str:
    """``probability`` rounded up to ``decimals`` (``0.5401`` is ``"0.55"``), as the unsure rule reads it:
    shown at or below a ``--min-confidence`` of at most that many decimals, it is at or below it,
    and so unsure (:func:`unsure_reasons`); shown above it, it is above it. The shown value is the
    least ``k / 10**decimals`` (compared as the rule compares, in floats) not below ``probability``."""
    scale = 10**decimals
    k = math.ceil(probability * scale)  # probability * scale may round past the k sought, either way
    while k / scale < probability:
        k += 1
    while (k - 1) / scale >= probability:
        k -= 1
    return f"{k / scale:.{decimals}f}"


@dataclass
class Classified:
    """The result for one picture: a prediction (possibly unsure), or the one-line reason it failed.

    ``label``/``probability``/``top_k`` hold the model's best guess even when the verdict is unsure
    (``unsure_reasons`` not empty).
    """

    image: str
    label: str = ""
    index: int = -1
    probability: float = 0.0
    top_k: list[dict] = field(default_factory=list)
    warning: str = ""
    error: str = ""
    not_saved: str = ""  # why its preprocessed picture could not be saved (the prediction stands)
    saved: str = ""  # where its preprocessed picture was saved (--save-preprocessed)
    true_label: str = ""  # known for test-set samples only
    typicality: float | None = None  # 0..1, None for a model without the reference
    unsure_reasons: list[str] = field(default_factory=list)  # what unsure_reasons() gave: empty when sure
    decimals: int = 2  # of the top probability in the text line: shown_decimals() of the threshold

    @property
    def unsure(self) -> bool:
        """The verdict is unsure: some rule of :func:`unsure_reasons` fired."""
        return bool(self.unsure_reasons)

    def to_dict(self) -> dict:
        if self.error:
            return {"image": self.image, "error": self.error}
        result = {
            "image": self.image,
            "label": self.label,
            "index": self.index,
            "probability": self.probability,
            "unsure": self.unsure,
            "top_k": self.top_k,
        }
        result["typicality"] = self.typicality  # None (null) for a model without the reference
        optional = {
            "unsure_reasons": list(self.unsure_reasons),
            "warning": self.warning,
            "true_label": self.true_label,
            "saved": self.saved,
            "not_saved": self.not_saved,
        }
        return {**result, **{key: value for key, value in optional.items() if value}}

    def line(self) -> str:
        """``shirt.jpg: Shirt 0.91 (T-shirt/top 0.06, Pullover 0.02)``, or when unsure
        ``hat.jpg: unsure (T-shirt/top 0.38, Bag 0.21)`` (all of the top k in the parentheses); the top
        probability is rounded up to ``decimals`` (:func:`rounded_up`), the others to the nearest hundredth.
        Unsure only because the picture is atypical, whatever its top probability, the line says so:
        ``hat.jpg: unsure (Sandal 0.98, Bag 0.01): atypical for Sandal``."""
        top = f"{self.label} {rounded_up(self.probability, self.decimals)}"  # as the unsure rule reads it
        runners_up = [f"{entry['label']} {entry['probability']:.2f}" for entry in self.top_k[1:]]
        others = ", ".join([top, *runners_up] if self.unsure else runners_up)
        verdict = "unsure" if self.unsure else top
        line = f"{self.image}: {verdict}" + (f" ({others})" if others else "")
        if self.unsure_reasons == [ATYPICAL]:
            line += f": atypical for {self.label}"  # a high top probability would otherwise read as sure
        if self.true_label:
            mark = "?" if self.unsure else "✓" if self.true_label == self.label else "✗"
            line += f"  [true: {self.true_label} {mark}]"
        return line


def top_k(probabilities: np.ndarray, class_names: tuple[str, ...], k: int) -> list[dict]:
    """The ``k`` most probable classes of one row (float ``[10]``), most probable first (ties: the
    lower class index), as ``{"label", "probability"}``."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [{"label": class_names[i], "probability": float(probabilities[i])} for i in order]


def check_unit_threshold(value: float, flag: str, kind: str) -> float:
    """Return ``value``; raise :class:`EdgeFmnistError` naming ``flag`` unless it lies in 0..1."""
    if not 0.0 <= value <= 1.0:
        raise EdgeFmnistError(f"{flag} {value}: expected {kind} between 0 and 1")
    return value


def check_min_confidence(min_confidence: float) -> float:
    """Return ``min_confidence``; raise :class:`EdgeFmnistError` unless it lies in 0..1."""
    return check_unit_threshold(min_confidence, "--min-confidence", "a probability")


def check_min_typicality(min_typicality: float) -> float:
    """Return ``min_typicality``; raise :class:`EdgeFmnistError` unless it lies in 0..1."""
    return check_unit_threshold(min_typicality, "--min-typicality", "a share")


def picture_outputs(
    predictor: Predictor, images: np.ndarray, photo: Sequence[bool] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and calibrated probabilities, both float32 ``[N, 10]``, of uint8 images ``[N, 28, 28]``
    (or ``[N, 1, 28, 28]``; the mirror flips the last axis).

    An image that was a photo (``photo[i]``, see ``Preprocessed.photo``) is also classified
    mirrored left to right, and the two logits and the two probabilities are averaged, when the
    network was trained on mirrored images (``ModelMetadata.trained_on_mirror_images``):
    test-time augmentation, which evens out the preprocessing's small asymmetries (docs/real-photos.md,
    "A photo is classified with its mirror image", for what it gained on photos-dev's choice half).
    An image already in dataset form is classified once, so its outputs are exactly the
    model's. Raises ``ValueError`` when ``photo`` and ``images`` differ in length, and
    :class:`~edgefmnist.errors.ModelError` when an output is NaN or infinite.
    """
    if photo is not None and len(photo) != len(images):
        raise ValueError(f"{len(photo)} photo flags for {len(images)} images")
    picked = np.flatnonzero(np.asarray(photo, bool)) if photo is not None else np.zeros(0, np.int64)
    if not picked.size or not predictor.metadata.trained_on_mirror_images:
        logits, probabilities = predictor.run(images)
    else:
        count = len(images)
        logits, probabilities = predictor.run(np.concatenate([images, images[picked, ..., ::-1]]))  # one call for both
        logits[picked] = (logits[picked] + logits[count:]) / 2
        probabilities[picked] = (probabilities[picked] + probabilities[count:]) / 2
        logits, probabilities = logits[:count].copy(), probabilities[:count].copy()
    predictor.refuse_non_finite(logits, probabilities, what="these pictures")
    return logits, probabilities


def picture_typicality(predictor: Predictor, logits: np.ndarray) -> np.ndarray | None:
    """float64 ``[N]`` in 0..1 for logits ``[N, 10]``: the share of the model's validation images
    of the predicted class whose largest logit is lower
    (:func:`edgefmnist.calibration.class_typicality`); for a model exported with the table of all
    images only, the share of all of them; None for a model exported without either."""
    metadata = predictor.metadata
    return calibration.reference_typicality(logits, metadata.class_max_logit_quantiles, metadata.max_logit_quantiles)


def classify_arrays(
    predictor: Predictor,
    images: np.ndarray,
    names: list[str],
    k: int,
    min_confidence: float = spec.DEFAULT_MIN_CONFIDENCE,
    nothing_found: list[str] | None = None,
    photo: Sequence[bool] | None = None,
    min_typicality: float = spec.DEFAULT_MIN_TYPICALITY,
) -> list[Classified]:
    """Classify uint8 images ``[N, 28, 28]`` in one call.

    ``nothing_found[i]``, when not empty, is preprocessing's ``Preprocessed.nothing_found`` reason for
    image i: it becomes the result's warning and makes the verdict unsure. ``photo[i]`` says
    image i was a photo (:func:`picture_outputs`); None: none was. Raises ``ValueError`` unless
    there is a name (and a ``nothing_found`` reason and a ``photo`` flag, when given) for each image,
    before any inference (:func:`picture_outputs` checks the flags).
    """
    for what, values in (("names", names), ("nothing_found reasons", nothing_found)):
        if values is not None and len(values) != len(images):
            raise ValueError(f"{len(values)} {what} for {len(images)} images")
    check_min_confidence(min_confidence)
    check_min_typicality(min_typicality)
    logits, probabilities = picture_outputs(predictor, images, photo)
    typical = picture_typicality(predictor, logits)
    empty = [""] * len(names) if nothing_found is None else nothing_found
    decimals = shown_decimals(min_confidence)
    results = []
    for i, (name, row, reason) in enumerate(zip(names, probabilities, empty, strict=True)):
        best = int(row.argmax())
        score = None if typical is None else float(typical[i])
        reasons = unsure_reasons(float(row[best]), min_confidence, bool(reason), score, min_typicality)
        results.append(
            Classified(
                name,
                predictor.class_names[best],
                best,
                float(row[best]),
                top_k(row, predictor.class_names, k),
                warning=reason,
                typicality=score,
                unsure_reasons=reasons,
                decimals=decimals,
            )
        )
    return results


def classify_preprocessed(
    predictor: Predictor,
    forms: Sequence[Preprocessed],
    names: list[str],
    k: int,
    min_confidence: float = spec.DEFAULT_MIN_CONFIDENCE,
    min_typicality: float = spec.DEFAULT_MIN_TYPICALITY,
) -> list[Classified]:
    """:func:`classify_arrays` for pictures as preprocessing gives them: their pixels, why nothing
    was found in them, and whether they were photos. Raises ``ValueError`` unless there are as
    many names as forms."""
    return classify_arrays(
        predictor,
        np.stack([form.pixels for form in forms]),
        names,
        k,
        min_confidence,
        [form.nothing_found for form in forms],
        [form.photo for form in forms],
        min_typicality,
    )


def preprocess_picture(path: Path) -> Preprocessed:
    """One picture file (``-``: the picture on standard input) in Fashion-MNIST form.

    Raises :class:`EdgeFmnistError`, one line naming the picture, if it cannot be read or preprocessed.
    """
    return preprocess(read_stdin(), name=STDIN_NAME) if str(path) == STDIN else preprocess(path)


def picture_name(path: Path) -> str:
    """How a picture is named in results: its path, or ``<stdin>``."""
    return STDIN_NAME if str(path) == STDIN else str(path)


def read_stdin(limit: int = MAX_ENCODED_BYTES) -> bytes:
    """The encoded picture on standard input (at most ``limit`` bytes); raises :class:`EdgeFmnistError`.

    Refuses a terminal (nothing was piped in: reading would wait for typing), another device,
    empty input, a read error and input larger than ``limit``, each in one line.
    """
    if sys.stdin is None or sys.stdin.isatty():  # None: the process started with it closed
        state = "closed" if sys.stdin is None else "a terminal"
        raise EdgeFmnistError(f"{STDIN_NAME}: standard input is {state}; pipe a picture in, e.g. cat x.jpg | ...")
    if is_device(sys.stdin.buffer):  # /dev/zero would be read up to the limit
        raise EdgeFmnistError(f"{STDIN_NAME}: standard input is a device, not a picture; pipe a picture in")
    data = read_at_most(sys.stdin.buffer, STDIN_NAME, "standard input", limit)
    if not data:
        raise EdgeFmnistError(f"{STDIN_NAME}: nothing on standard input, expected a picture")
    return data


def classify_files(
    predictor: Predictor,
    paths: list[Path],
    k: int = 3,
    save_preprocessed: str | Path | None = None,
    min_confidence: float = spec.DEFAULT_MIN_CONFIDENCE,
    workers: int | None = None,
    min_typicality: float = spec.DEFAULT_MIN_TYPICALITY,
) -> Iterator[Classified]:
    """Classify each file (``-``: the picture on standard input), in order, yielding each batch's
    results as soon as it is classified (so a long list shows its first answers early).

    Pictures are preprocessed on ``workers`` threads (default: the available cores when the first
    pictures take 2 ms or more each, see :func:`preprocess_in_order`) and classified in batches
    (:mod:`edgefmnist.runtime.batch`). A picture that cannot be read gets a result with ``error``
    set instead of a prediction, and the others go on. ``save_preprocessed`` receives the 28x28
    image the model saw of each picture, as :func:`preprocessed_paths` names them (a picture whose
    image cannot be written there keeps its prediction, with the reason in ``not_saved``, and the
    others go on). At the call, before anything is read or written, it raises
    :class:`EdgeFmnistError` (exit 1) when one of those would be a picture given or the model
    (:func:`refuse_overwriting_sources`), :class:`UsageError` (exit 2) for a target that cannot be
    named so (:func:`preprocessed_paths`, :func:`check_targets`), and :class:`WriteFailed` (exit 1)
    for a folder that cannot take a new file (:func:`check_targets`). A folder where one 28x28
    would be written is that picture's ``not_saved``.
    """
    targets = {}
    if save_preprocessed and paths:
        saved = refuse_overwriting_sources(preprocessed_paths(save_preprocessed, paths), paths, predictor.path)
        check_targets(saved)
        targets = dict(zip(paths, saved, strict=True))

    def classify(pictures: list[PreparedPicture]) -> list[Classified]:
        forms = [picture.form() for picture in pictures]
        names = [picture_name(picture.path) for picture in pictures]
        results = classify_preprocessed(predictor, forms, names, k, min_confidence, min_typicality)
        for picture, form, result in zip(pictures, forms, results, strict=True):
            if picture.path in targets:
                result.saved, result.not_saved = save_or_say_why(targets[picture.path], form.pixels)
        return results

    def failed(picture: PreparedPicture) -> Classified:
        return Classified(picture_name(picture.path), error=picture.error)

    prepared = preprocess_in_order(paths, preprocess_picture, workers)
    return classify_in_batches(prepared, classify, failed)


def preprocessed_paths(target: str | Path, sources: list[Path]) -> list[Path]:
    """Where ``--save-preprocessed TARGET`` puts the 28x28 PNG of each source picture, in order.

    TARGET is a folder when it ends with ``/``, is an existing folder, or several pictures are
    given; otherwise it is the file for the one picture. In a folder each picture keeps its path
    relative to the folder all sources share, with ``.png`` for its extension
    (``photos/shirt/1.jpg`` and ``photos/dress/1.jpg`` -> ``TARGET/shirt/1.png`` and
    ``TARGET/dress/1.png``); pictures whose names differ only in their extension keep it
    (``1.jpg.png``, ``1.webp.png``), standard input is ``stdin.png`` (``stdin~2.png`` beside a
    picture called ``stdin``), and a name too long for a folder is cut (:func:`fitted_name`).
    So names never collide.
    Raises :class:`UsageError` (exit 2) for ``-`` (:func:`refuse_dash`), when several pictures
    are given and TARGET is a file, or
    a new name with an extension (``seen.jpg``, ``seen.onnx``; not ``run-1.5``, see
    :func:`file_extension`) that does not end with ``/`` (the one
    file's name is judged with the others, by :func:`check_targets`).
    """
    text = os.fspath(target)
    refuse_dash("--save-preprocessed", text)
    folder = Path(text)
    if not (text.endswith(("/", os.sep)) or os.path.isdir(folder) or len(sources) > 1):  # False for a name too long
        return [folder]
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageError(
            f"--save-preprocessed {text}: a file, but {counted(len(sources), 'picture')} "
            f"{'needs' if len(sources) == 1 else 'need'} a folder"
        )
    if not (text.endswith(("/", os.sep)) or os.path.exists(folder)) and (extension := file_extension(folder)):
        raise UsageError(
            f"--save-preprocessed {text}: named as a file ({extension}), but {counted(len(sources), 'picture')} "
            f"need a folder; end it with / for a folder of that name"
        )
    absolute = [Path(os.path.abspath(s)) if str(s) != STDIN else None for s in sources]
    parents = [str(a.parent) for a in absolute if a is not None]
    common = Path(os.path.commonpath(parents)) if parents else Path()
    files = {a.relative_to(common) for a in absolute if a is not None}
    candidates = (Path("stdin" if i == 1 else f"stdin~{i}") for i in itertools.count(1))
    stdin = next(name for name in candidates if name not in files)  # stdin~2 beside a picture called stdin
    relative = [a.relative_to(common) if a is not None else stdin for a in absolute]
    names = [r.with_suffix(".png") for r in relative]
    for _ in range(len(names)):  # keep the extension of every picture in a clash (one file given twice stays one)
        if len(set(names)) == len(names):
            break
        clashing = {name for name, count in Counter(names).items() if count > 1}
        names = [r.with_name(r.name + ".png") if n in clashing else n for r, n in zip(relative, names, strict=True)]
    return [folder / name.with_name(fitted_name(name.name)) for name in names]


NAME_MAX = 255  # bytes in a file name: Linux's NAME_MAX, and ext4's, btrfs's and XFS's limit


def fitted_name(name: str, limit: int = NAME_MAX) -> str:
    """``name`` when its UTF-8 bytes fit ``limit``, else its stem cut to fit, with ``~`` and 8 hex digits
    of its SHA-256 before the suffixes (``aaa…a~1f2e3d4c.jpg.png``): a name made from a picture's
    name never outgrows its folder, and two long names stay two."""
    encoded = os.fsencode(name)
    if len(encoded) <= limit:
        return name
    suffixes = "".join(Path(name).suffixes[-2:])
    if len(os.fsencode(suffixes)) > limit // 2:  # an "extension" that is most of the name
        suffixes = Path(name).suffix
    tag = f"~{hashlib.sha256(encoded).hexdigest()[:8]}{suffixes}"
    stem = os.fsencode(name[: len(name) - len(suffixes)])[: limit - len(os.fsencode(tag))]
    return os.fsdecode(stem) + tag  # a cut character, or a name that is not UTF-8, keeps its bytes


def picture_file(path: Path) -> Path | None:
    """The file a picture argument reads: ``path``, or for ``-`` standard input's (``/dev/fd/0``),
    or None when standard input is closed or missing."""
    if str(path) != STDIN:
        return path
    try:
        return Path(f"/dev/fd/{sys.stdin.fileno()}")
    except (OSError, ValueError, AttributeError):
        return None


def refuse_overwriting_sources(
    targets: list[Path], sources: list[Path], model: Path | None = None, data: Sequence[tuple[Path, str]] = ()
) -> list[Path]:
    """Return ``targets``; raise :class:`EdgeFmnistError` when one of them is, under any name (a
    symlink, a hard link, ``/dev/stdin`` for ``-``), the file of one of the ``sources``, of the
    ``model`` or of the ``data`` (:func:`edgefmnist.data.inputs_of_test_split`)."""
    pictures = [(picture_file(source), f"the picture {picture_name(source)}") for source in sources]
    inputs = [(path, what) for path, what in pictures if path is not None] + list(data)
    inputs += [(model, f"the model {model}")] if model is not None else []
    made_from = [picture_name(source) for source in sources] if len(sources) > 1 else []
    refuse_overwriting("--save-preprocessed", targets, inputs, made_from)
    return targets


def save_test_images(
    target: str | Path,
    images: np.ndarray,
    indices: range,
    model: Path | None = None,
    data: Sequence[tuple[Path, str]] = (),
) -> list[tuple[str, str]]:
    """Save test-set images ``indices`` as ``--save-preprocessed TARGET`` (:func:`preprocessed_paths`) names them:
    ``TARGET/test-INDEX.png`` in a folder, else the one file; each image's :func:`save_or_say_why`, in
    order. Raises :class:`EdgeFmnistError`, writing nothing, when several images are given and
    TARGET is a file, when a name is the ``model``'s file or one of the ``data`` files
    (:func:`refuse_overwriting_sources`), or when the images cannot be written there (:func:`check_targets`).
    """
    names = preprocessed_paths(target, [Path(f"test-{i}.png") for i in indices])
    paths = refuse_overwriting_sources(names, [], model, data)
    check_targets(paths)
    return [save_or_say_why(path, images[index]) for path, index in zip(paths, indices, strict=True)]


def check_targets(targets: Sequence[Path]) -> None:
    """Refuse, before the work, files that cannot be written: every name must fit its folder
    (:func:`edgefmnist.atomic.check_name_fits`), a PNG must be right there (no extension other than
    PNG's, no existing file that is not a PNG: :func:`check_png_target`, :class:`UsageError`), and
    each folder must take a new file
    (:func:`edgefmnist.atomic.check_folder_takes_files`, :class:`WriteFailed`). A folder, a device
    or a stream (``/dev/fd/3``) where one file would go is left to that file's own save."""
    from edgefmnist.atomic import check_folder_takes_files, check_name_fits

    first_in: dict[Path, Path] = {}  # folder -> the first target in it, which a failed probe names
    for target in targets:
        check_name_fits(target)
        check_png_target("--save-preprocessed", target, "the 28x28")
        if reason := another_picture(target):
            raise UsageError(f"--save-preprocessed {target}: {reason}; the 28x28 is not written over it")
        if (os.path.isfile(target) or not os.path.exists(target)) and not open_descriptor(target):
            first_in.setdefault(Path(os.path.realpath(target)).parent, target)
    for folder, target in first_in.items():
        check_folder_takes_files(folder, target)


def another_picture(path: Path) -> str:
    """Why the file at ``path`` is a picture that a 28x28 written there would destroy:
    ``"an existing 1200 x 900 8-bit RGB PNG"`` for any PNG but an 8-bit grayscale 28x28, which is
    what :func:`save_png` writes (a run before this one), and for a PNG whose header cannot be
    read; "" for that 28x28, a missing or empty file, a device or a FIFO. Files that are not PNGs
    are :func:`check_png_target`'s."""
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return ""
    header = png_header(path)
    if header is None:
        return "an existing PNG whose header cannot be read"
    if header == (spec.IMAGE_SIZE, spec.IMAGE_SIZE, 8, PNG_GRAYSCALE):
        return ""
    width, height, bit_depth, colour_type = header
    kind = PNG_COLOUR_TYPES.get(colour_type, f"colour type {colour_type}")
    return f"an existing {width} x {height} {bit_depth}-bit {kind} PNG"


def save_or_say_why(path: Path, pixels: np.ndarray) -> tuple[str, str]:
    """Save ``pixels`` as a PNG at ``path``: ``(path, "")``, or ``("", why it failed)`` for one
    picture's failed save, which its answer and the other pictures outlive."""
    try:
        save_png(path, pixels)
    except EdgeFmnistError as exc:
        return "", str(exc)
    except OSError as exc:
        return "", f"{path}: cannot write here ({exc.strerror or exc})"
    return str(path), ""


def save_png(path: Path, pixels: np.ndarray) -> None:
    """Write uint8 ``[28, 28]`` pixels to ``path`` as an 8-bit grayscale PNG, atomically; raises as
    :func:`edgefmnist.atomic.atomic_write` does."""
    from PIL import Image

    from edgefmnist.atomic import atomic_write

    with atomic_write(path) as tmp:
        Image.fromarray(pixels, "L").save(tmp, format="PNG")


def parse_sample(text: str, size: int) -> range:
    """``"0:5"`` -> ``range(0, 5)``; ``"7"`` -> ``range(7, 8)``; bounds checked against ``size`` images.

    Raises :class:`UsageError` (exit code 2) for text that is not ``START:STOP`` or ``INDEX`` in
    ASCII digits (``:5`` starts at 0, ``5:`` runs to the end), an empty range, or indices outside
    ``0:size``.
    """
    parts = re.fullmatch(r"([0-9]*)(:([0-9]*))?", text)
    if parts is None or not text:
        raise UsageError(f"--sample {quoted(text)}: expected START:STOP or INDEX, e.g. 0:5 or 7")
    start, colon, stop = parts.groups()
    if max(len(start.lstrip("0")), len((stop or "").lstrip("0"))) > len(str(size)):  # int() refuses 4,300 digits
        raise UsageError(f"--sample {text[:40]}: the test set has {size:,} images, so indices must lie within 0:{size}")
    first = int(start) if start else 0
    last = (int(stop) if stop else size) if colon else first + 1
    if first >= size or last > size:
        raise UsageError(f"--sample {text}: the test set has {size:,} images, so indices must lie within 0:{size}")
    if first >= last:
        raise UsageError(f"--sample {text}: START must be below STOP (0:5 is the first five images)")
    return range(first, last)
