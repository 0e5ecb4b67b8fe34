"""An uploaded picture, held in memory, turned into the 28x28 image the network sees.

    edgefmnist serve      # every POST /v1/classify goes through preprocess_upload

The service never writes an upload to disk: the bytes are parsed from memory by the same
loader steps as a file (:func:`edgefmnist.runtime.picture.open_header` and
``decode_reduced``: draft-mode JPEG decoding, the header-size bomb guard) and then by
:func:`edgefmnist.runtime.preprocess.to_dataset_form`, so a picture gets exactly the pixels
``edgefmnist infer`` gives it from a file.
"""

from __future__ import annotations

import io
import threading
import warnings
from pathlib import Path

import numpy as np
from edgefmnist.runtime.picture import (
    JPEG_FORMATS,
    MAX_JPEG_PIXELS,
    MAX_PIXELS,
    WORK_SIDE,
    ImageError,
    decode_reduced,
    open_header,
)
from edgefmnist.runtime.preprocess import NothingFound, to_dataset_form
from PIL import Image, UnidentifiedImageError

from edgefmnist.errors import EdgeFmnistError, first_line


class PictureTooLarge(ImageError):
    """The picture's header declares more pixels than the loader accepts (a decompression bomb?)."""


# preprocess reports "no object found" through the warnings module, whose filters are process-wide:
# catching them is serialised so that concurrent requests never see each other's filters.
_WARNINGS_LOCK = threading.Lock()


def load_upload(data: bytes, name: str, max_side: int = WORK_SIDE) -> Image.Image:
    """Decode picture bytes like ``load_picture`` decodes a file: ``RGB`` or ``L``, longest side <= ``max_side``.

    Raises :class:`PictureTooLarge` when the header declares more than ``MAX_JPEG_PIXELS``
    (JPEG) or ``MAX_PIXELS`` (any other format), and ``ImageError`` (one line starting with
    ``"{name}: "``) for a non-image, a corrupt or truncated image or any decoder failure.
    """
    try:
        image = open_header(io.BytesIO(data), name)
        try:
            width, height = image.size
            limit = MAX_JPEG_PIXELS if image.format in JPEG_FORMATS else MAX_PIXELS
            if width * height > limit:
                raise PictureTooLarge(
                    f"{name}: refused, {width} x {height} pixels is more than {limit:,} (a decompression bomb?)"
                )
            return decode_reduced(image, Path(name), max_side)
        finally:
            image.close()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PictureTooLarge(f"{name}: refused by Pillow's decompression-bomb limit ({first_line(exc)})") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{name}: corrupt or truncated image ({first_line(exc)})") from None
    except Exception as exc:  # Pillow's decoders meet hostile bytes with TypeError, MemoryError, ...
        raise ImageError(f"{name}: cannot decode this image ({type(exc).__name__}: {first_line(exc)})") from None


def preprocess_upload(data: bytes, name: str) -> tuple[np.ndarray, str]:
    """Picture bytes -> uint8 ``[28, 28]`` in Fashion-MNIST form and the "no object found" message ("" if found).

    Raises ``ImageError`` (or :class:`PictureTooLarge`) for bytes that are not a usable
    picture, and :class:`EdgeFmnistError` for any other failure of preprocessing.
    """
    image = load_upload(data, name)
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", NothingFound)
            pixels = to_dataset_form(image)
    except Exception as exc:  # an OpenCV failure on one odd picture
        raise EdgeFmnistError(
            f"{name}: cannot preprocess this picture ({type(exc).__name__}: {first_line(exc)})"
        ) from None
    finally:
        image.close()
    return pixels, next((str(w.message) for w in caught if issubclass(w.category, NothingFound)), "")
