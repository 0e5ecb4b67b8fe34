"""The facts about Fashion-MNIST that every stage shares: classes, image size, pixel statistics, files.

    edgefmnist data --json      # checks the IDX files against IDX_SHA256

Training and export read the class names and pixel statistics here and write them into each
model's metadata; the runtime classifies with the class names *of the model file*. The
runtime imports this module too, for the image size and class count (the shape it checks a
model against), the class names a photo set's folders are matched to, and the unsure
verdict's threshold and sweep targets. The model's own interface (tensor names, opsets,
tolerances, shipped files) is in :mod:`edgefmnist.contract`. This module imports neither
torch nor onnx.
"""

from __future__ import annotations

import re

from edgefmnist.errors import quoted

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
NUM_CLASSES = len(CLASS_NAMES)


def class_name_key(name: str) -> str:
    """``name`` as photo sets match it to a class: without case, whitespace, ``-``, ``_`` or ``/``
    (``"T-shirt_top"`` and ``"t-shirt/top"`` both give ``"tshirttop"``)."""
    return re.sub(r"[\s_/\-]+", "", name).lower()


def class_names_problem(names: object) -> str:
    """What makes ``names`` unfit as a model's class names, or ``""``: they must be a list (or
    tuple) of ``NUM_CLASSES`` non-blank strings, one per output of the networks, no two of them
    the same name by :func:`class_name_key`."""
    if not (isinstance(names, list | tuple) and all(isinstance(name, str) for name in names)):
        return "class_names is not a list of names"
    if len(names) != NUM_CLASSES:
        return f"{len(names)} class names for the network's {NUM_CLASSES} outputs"
    keys = [class_name_key(name) for name in names]
    if not all(keys):  # "-" would match a folder named "_"
        return "a blank class name (or one of separators alone)"
    for i, key in enumerate(keys):
        first = keys.index(key)
        if first == i:
            continue
        if names[first] == names[i]:
            return f"the class name {quoted(names[i])} is given twice"
        ignored = "case, spaces, '-', '_' and '/'"
        pair = f"{quoted(names[first])} and {quoted(names[i])}"
        return f"the class names {pair} are one name to a photo set, which ignores {ignored}"
    return ""


IMAGE_SIZE = 28
INPUT_SHAPE = (1, IMAGE_SIZE, IMAGE_SIZE)  # channels, height, width of one image

PIXEL_MAX = 255.0
# Mean and standard deviation of the 60,000 training images after scaling to 0-1
# (``images.mean() / 255`` and ``images.std() / 255`` of the training IDX file: 0.28604 and 0.35302);
# the `best` recipes standardise with them.
PIXEL_MEAN = 0.2860
PIXEL_STD = 0.3530

VALIDATION_SIZE = 5000  # the first 5,000 training images, as in the tutorial
TEST_SIZE = 10_000  # images in the official test set, whose files IDX_SHA256 fixes

# SHA-256 of the decompressed IDX content of the official files.
IDX_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
# MD5 of the upstream .gz downloads, as the dataset's README lists them.
DOWNLOAD_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
}
DOWNLOAD_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

# The "unsure" verdict (`edgefmnist infer --min-confidence/--min-typicality`, `evaluate --photos`):
# a picture is answered only when the model's top (calibrated) probability is above
# DEFAULT_MIN_CONFIDENCE and its typicality (the share of the model's validation images of the
# predicted class whose largest logit is lower) is at least DEFAULT_MIN_TYPICALITY; else, and
# for a uniform picture, the verdict is "unsure". Chosen on the *choice* half of
# ../shared/photos-dev with `edgefmnist evaluate --photos ../shared/photos-dev --split choice
# --choose` for the shipped cnn.onnx, a photo's outputs averaged with its mirror image's: of all
# pairs on the two sweeps' grids (SWEEP_THRESHOLDS x SWEEP_TYPICALITIES), those that miss the
# coverage and hat targets below by the least in sum, then of those the one whose answered
# photos are most often right, the third target, then the smallest values
# (runtime/photo_eval.py, choose_thresholds). This pair meets the coverage and hat targets on
# the choice half (coverage 0.602, hats unsure 0.606), not the third (0.716 of the answered
# photos right).
DEFAULT_MIN_CONFIDENCE = 0.55
DEFAULT_MIN_TYPICALITY = 0.010
# Targets of that threshold sweep: accuracy on the answered in-domain photos, share of the
# in-domain photos answered, and share of the out-of-domain TARGET_OOD_CLASS photos (hats:
# no Fashion-MNIST class) called unsure.
SWEEP_THRESHOLDS: tuple[float, ...] = tuple(round(0.30 + 0.05 * i, 2) for i in range(14))  # 0.30 .. 0.95
SWEEP_TYPICALITIES: tuple[float, ...] = (*(k / 1000 for k in range(21)), 0.03, 0.05)  # 0.000 .. 0.020, 0.03, 0.05
TARGET_SELECTIVE_ACCURACY = 0.85
TARGET_COVERAGE = 0.60
TARGET_OOD_UNSURE = 0.60
TARGET_OOD_CLASS = "hat"
