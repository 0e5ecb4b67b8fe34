"""An uploaded picture, held in memory, turned into the 28x28 image the network sees.

    edgefmnist serve      # every POST /v1/classify goes through preprocess_upload

The service never writes an upload to disk: the bytes go through the same loader as a file
(:func:`edgefmnist.runtime.picture.load_picture`: draft-mode JPEG decoding, the header-size
bomb guard) and the same :func:`edgefmnist.runtime.preprocess.preprocess`, so a picture gets
exactly the pixels ``edgefmnist infer`` gives it from a file. Both are thread safe.
"""

from __future__ import annotations

import numpy as np
from edgefmnist.runtime.picture import PictureTooLarge
from edgefmnist.runtime.preprocess import preprocess

__all__ = ["PictureTooLarge", "preprocess_upload"]


def preprocess_upload(data: bytes, name: str) -> tuple[np.ndarray, str]:
    """Picture bytes -> uint8 ``[28, 28]`` in Fashion-MNIST form and the "no object found" message ("" if found).

    Raises :class:`PictureTooLarge` for a refused size (a decompression bomb?), ``ImageError``
    for bytes that are not a usable picture, and ``EdgeFmnistError`` for any other failure of
    preprocessing; each one line starting with ``"{name}: "``.
    """
    picture = preprocess(data, name=name)
    return picture.pixels, picture.nothing_found
