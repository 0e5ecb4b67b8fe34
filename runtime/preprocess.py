"""Turn any reasonable picture into a Fashion-MNIST image: 28x28, dark background, object centred.

    edgefmnist infer --image shirt.jpg --save-preprocessed shirt-28.png

Fashion-MNIST was made by trimming each product photo to its bounding box, resizing its
longest side to 28 pixels, centring it and negating it (light products on black). This
module repeats those steps: EXIF orientation, transparency composited onto white, light
backgrounds inverted, the object trimmed, scaled and centred. An image that is already in
dataset form (28x28, dark border) passes through unchanged.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgefmnist import spec
from edgefmnist.errors import EdgeFmnistError, first_line

SIZE = spec.IMAGE_SIZE
MAX_PIXELS = 40_000_000  # larger images are refused as likely decompression bombs
DARK_BORDER = 60  # a 28x28 image whose border is darker than this is already in dataset form
OBJECT_THRESHOLD = 0.02  # of the brightest pixel: dimmer pixels (JPEG noise) do not count towards the bounding box
RESAMPLE = Image.Resampling.LANCZOS


class ImageError(EdgeFmnistError):
    """An image file cannot be read or decoded."""


class NothingFound(UserWarning):
    """The picture holds no object distinguishable from its background."""


def load_image(path: Path) -> Image.Image:
    """Open the first frame of an image safely, apply EXIF orientation, return grayscale ``L``."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            with Image.open(path) as image:
                image.seek(0)
                image.load()
                image = ImageOps.exif_transpose(image)
                return to_grayscale(image)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, expected an image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{path}: refused, more than {MAX_PIXELS:,} pixels (a decompression bomb?)") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{path}: corrupt or truncated image ({first_line(exc)})") from None
    except Exception as exc:  # Pillow's decoders meet hostile bytes with TypeError, MemoryError, ...
        raise ImageError(f"{path}: cannot decode this image ({type(exc).__name__}: {first_line(exc)})") from None


def to_grayscale(image: Image.Image) -> Image.Image:
    """Any mode -> ``L``; transparency is composited onto white, 16-bit scaled to 8-bit."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if array.max() > 255 else 255.0
        return Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode == "F":
        return Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), "L")
    if image.mode == "P" or image.mode == "PA":
        image = image.convert("RGBA")
    if image.mode in ("LA", "RGBA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("L")
    if image.mode == "CMYK":
        image = image.convert("RGB")
    return image.convert("L")


def is_dataset_form(pixels: np.ndarray) -> bool:
    """28x28 with a dark border: already a Fashion-MNIST image."""
    return pixels.shape == (SIZE, SIZE) and border(pixels).mean() < DARK_BORDER


def border(pixels: np.ndarray) -> np.ndarray:
    return np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])


def to_dataset_form(image: Image.Image) -> np.ndarray:
    """A grayscale picture -> uint8 ``[28, 28]`` in Fashion-MNIST form."""
    pixels = np.asarray(image.convert("L"), dtype=np.uint8)
    if is_dataset_form(pixels):
        return pixels.copy()
    values = pixels.astype(np.float64)
    background = float(np.median(border(values)))
    if background > 127:  # a light background: negate, as Fashion-MNIST did
        values, background = 255.0 - values, 255.0 - background
    values = np.clip(values - background, 0, None)
    peak = values.max()
    if peak <= 0:
        warnings.warn("no object found: the image is uniform", NothingFound, stacklevel=2)
        return np.zeros((SIZE, SIZE), dtype=np.uint8)
    rows, cols = np.nonzero(values > OBJECT_THRESHOLD * peak)
    crop = values[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    crop = crop * (255.0 / peak)
    height, width = crop.shape
    scale = SIZE / max(height, width)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(crop.astype(np.float32), "F").resize(new_size, RESAMPLE)
    canvas = np.zeros((SIZE, SIZE), dtype=np.float64)
    top, left = (SIZE - new_size[1] + 1) // 2, (SIZE - new_size[0] + 1) // 2  # odd margins: extra pixel top/left, as in the dataset
    canvas[top : top + new_size[1], left : left + new_size[0]] = np.asarray(resized)
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)


def preprocess_file(path: Path) -> np.ndarray:
    """Load ``path`` and return it in Fashion-MNIST form, uint8 ``[28, 28]``."""
    return to_dataset_form(load_image(path))
