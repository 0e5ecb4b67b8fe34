"""Load a user's picture cheaply and safely: first frame, upright, opaque, at most a few hundred pixels.

    edgefmnist infer --image photo.jpg      # preprocess.py loads every picture through load_picture

A phone photo is 12-200 megapixels, the network sees 28x28. A JPEG is therefore decoded by
libjpeg at 1/2, 1/4 or 1/8 scale (Pillow's draft mode) and then reduced with a Lanczos filter,
so a 12 MP photo costs about as much as a small one. Colour is kept (``RGB``), grayscale stays
``L``; a picture already small enough is returned pixel for pixel.

Decompression bombs are refused from the header size, before any decoding, with this module's
own limits and without touching Pillow's process-wide ``Image.MAX_IMAGE_PIXELS`` or the
``warnings`` filters (see :func:`load_picture`).
"""

from __future__ import annotations

import io
import math
import os
import stat
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
from edgefmnist.runtime.picture_formats import (
    REFUSED_FORMATS,
    SNIFF_BYTES,
    is_heif,
    missing_decoder,
    register_heif_plugin,
)
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from PIL.JpegImagePlugin import JpegImageFile

from edgefmnist.errors import EdgeFmnistError, first_line

WORK_SIDE = 256  # default longest side of a loaded picture, in pixels
MAX_PIXELS = 40_000_000  # header limit for formats decoded at full size (PNG, GIF, WEBP, TIFF, BMP, ...)
MAX_JPEG_PIXELS = 250_000_000  # header limit for JPEG, whose decoding draft mode reduces up to 8x per side
MAX_DECODED_PIXELS = MAX_PIXELS  # what a JPEG may still hold after draft reduction (only a large max_side reaches it)
# HEIF and AVIF decode at full size (no draft mode): phones write them at up to 48-50 MP (about 150 MB as RGB)
MAX_HEIF_PIXELS = 64_000_000
# A multi-scan JPEG (progressive, or its components in separate scans) is decoded from all its DCT
# coefficients, held at full size whatever the draft scale (3 bytes a pixel for 4:2:0 colour):
# about what a full-size 64 MP HEIF's RGB takes, so that a 64 MP phone's 9248 x 6936 (192.5 MB) passes
MAX_COEFFICIENT_BYTES = 200_000_000
JPEG_FORMATS = ("JPEG", "MPO")
FULL_SIZE_PHONE_FORMATS = ("HEIF", "AVIF")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
ALPHA_MODES = ("LA", "La", "RGBA", "RGBa", "PA")
RESAMPLE = Image.Resampling.LANCZOS
VANISHING_LUMINANCE = 250.0  # a cut-out lighter than this on average would all but vanish on white
PictureSource = Path | str | bytes | bytearray  # a file path, or a picture's encoded bytes
MAX_ENCODED_BYTES = 256 << 20  # a picture read whole into memory (a pipe, stdin); a 200 MP camera JPEG is well below
BAND_ROWS = 256  # rows flattened at a time by to_rgb_or_l (a 6,300-pixel-wide float band: 13 MB as float64)
REDUCING_GAP = 3.0  # integer pre-reduction leaves at least 3x for Lanczos: indistinguishable from a full resample


class ImageError(EdgeFmnistError):
    """An image file cannot be read or decoded, or is refused as too large."""


class PictureTooLarge(ImageError):
    """The picture declares or decodes to more pixels than the loader accepts (a decompression bomb?)."""


def load_picture(source: PictureSource, max_side: int = WORK_SIDE, name: str | None = None) -> Image.Image:
    """Load the first frame of a picture: EXIF-rotated, opaque, longest side <= ``max_side``.

    ``source`` is a file path, or the picture's encoded bytes (an upload, standard input);
    ``name`` labels it in error messages (default: the path, or ``"<bytes>"``). A path that cannot
    seek (a pipe such as ``/dev/stdin`` or ``<(cat x.jpg)``), or not to its end (a ``/proc`` file),
    is read into memory first, at most ``MAX_ENCODED_BYTES``.

    Returns a new image of mode ``RGB`` (colour sources) or ``L`` (grayscale sources: L, 1, LA,
    16-bit, float, a gray palette). A picture whose longest side is already <= ``max_side`` keeps
    its size and, for ``L``/``RGB`` sources, its exact pixels.

    Bomb guard: the size in the file's header is checked before any pixel is decoded: at most
    ``MAX_JPEG_PIXELS`` (250 MP) for a JPEG, which is then decoded at reduced scale and must
    fit ``MAX_DECODED_PIXELS`` (a multi-scan one also ``MAX_COEFFICIENT_BYTES``, see
    :func:`refuse_if_coefficients_exceed`), ``MAX_HEIF_PIXELS`` (64 MP) for HEIF and AVIF, and ``MAX_PIXELS``
    (40 MP) for every other format.
    ``Image.open`` would apply Pillow's own process-wide ``MAX_IMAGE_PIXELS`` (a
    ``DecompressionBombWarning`` above 89 MP, an error above 179 MP) before we could see the
    size, and changing that global or catching the warning with ``warnings.catch_warnings``
    (which swaps the process-wide ``warnings.filters``) is not thread safe. So the header is
    parsed by Pillow's registered format plugins (``Image.ID``/``Image.OPEN``) exactly as
    ``Image.open`` dispatches to them, minus its global check: no state is read or written
    that another thread could change, and every refusal is decided by this function alone.

    Raises ``ImageError`` (one line starting with ``"{name}: "``; :class:`PictureTooLarge` for a
    refused size) for a missing file, a folder, an unreadable file, a pipe or a ``/proc`` file
    holding more than ``MAX_ENCODED_BYTES``, a non-image, a refused size, a corrupt or truncated image, or any
    other decoder failure; ``ValueError`` if ``max_side`` < 1.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    fp, path = opened_source(source, name)
    if fp.seek(0, io.SEEK_END) == 0:
        fp.close()
        raise ImageError(f"{path}: empty file, not an image")
    fp.seek(0)
    try:
        with fp:
            image = open_header(fp, path)
            try:
                return decode_reduced(image, path, max_side)
            finally:
                image.close()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Only plugins' own internal checks (GIF frames, TIFF tiles) can still reach Pillow's limit,
        # and only if the application lowered Image.MAX_IMAGE_PIXELS below ours.
        raise PictureTooLarge(f"{path}: refused by Pillow's decompression-bomb limit ({first_line(exc)})") from None
    except MissingDecoder as exc:
        raise ImageError(f"{path}: {exc}") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        if is_text_bomb(exc):
            raise PictureTooLarge(
                f"{path}: refused, its text or ICC-profile chunks hold more than Pillow's limits"
                " (a decompression bomb?)"
            ) from None
        raise ImageError(f"{path}: corrupt or truncated image ({first_line(exc)})") from None
    except Exception as exc:  # Pillow's decoders meet hostile bytes with TypeError, MemoryError, ...
        raise ImageError(f"{path}: cannot decode this image ({type(exc).__name__}: {first_line(exc)})") from None


def opened_source(source: PictureSource, name: str | None) -> tuple[IO[bytes], str]:
    """``source`` (a path, or encoded bytes) open for reading and seeking, and the name that labels
    it in errors (``name``, else the path or ``"<bytes>"``); the caller closes it. A pipe, or a file
    that cannot seek to its end, is read into memory (:func:`read_whole_stream`).

    Raises ``ImageError`` for a missing or unreadable file, a folder, a device, and a stream
    holding more than ``MAX_ENCODED_BYTES``."""
    if isinstance(source, bytes | bytearray | memoryview):
        return io.BytesIO(source), name or "<bytes>"
    path = name or os.fspath(source)
    try:
        fp = open(source, "rb")
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, expected an image") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or first_line(exc)})") from None
    if is_device(fp):  # /dev/zero seeks to an end of 0 and reads forever
        fp.close()
        raise ImageError(f"{path}: a device, not a picture file")
    if not fp.seekable():
        return read_whole_stream(fp, path, "a pipe"), path
    if not seeks_to_its_end(fp):  # a /proc file
        return read_whole_stream(fp, path, "a file that cannot seek to its end"), path
    return fp, path


def is_text_bomb(exc: Exception) -> bool:
    """Whether ``exc`` is Pillow's refusal of a PNG's text: one zTXt, iTXt or iCCP chunk that decompresses
    past ``PngImagePlugin.MAX_TEXT_CHUNK`` (1 MiB), or text chunks past ``MAX_TEXT_MEMORY`` (64 MiB) in
    all. Pillow raises a ``ValueError`` that names the limit, with no exception class of its own."""
    return isinstance(exc, ValueError) and "MAX_TEXT_" in str(exc)


def is_device(fp: IO[bytes]) -> bool:
    """True for an open character or block device (a terminal, ``/dev/zero``, a disk); False for a
    file object without a descriptor."""
    try:
        mode = os.fstat(fp.fileno()).st_mode
    except (OSError, ValueError):  # io.UnsupportedOperation: an in-memory or replaced stream
        return False
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


def seeks_to_its_end(fp: IO[bytes]) -> bool:
    """Whether ``fp`` (a seekable file at its start) seeks to where its bytes end; it is left at its
    start. Some ``/proc`` files cannot seek to their end, others seek to 0 and still hold bytes."""
    try:
        if fp.seek(0, io.SEEK_END) == 0:
            fp.seek(0)
            return not fp.read(1)
    except OSError:
        return False
    finally:
        fp.seek(0)
    return True


def read_whole_stream(stream: IO[bytes], path: str, what: str) -> IO[bytes]:
    """The rest of ``stream`` (closed here) as an in-memory file; raises as :func:`read_at_most`."""
    with stream:
        return io.BytesIO(read_at_most(stream, path, what, MAX_ENCODED_BYTES))


def read_at_most(stream: IO[bytes], path: str, what: str, limit: int) -> bytes:
    """The rest of ``stream`` (left open), at most ``limit`` bytes; raises :class:`ImageError`, one
    line starting with ``"{path}: "``, for a read error or more bytes, naming the stream as ``what``
    ("a pipe")."""
    try:
        data = stream.read(limit + 1)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or first_line(exc)})") from None
    if len(data) > limit:
        raise ImageError(f"{path}: more than {limit:,} bytes from {what}, refused")
    return data


class MissingDecoder(UnidentifiedImageError):
    """A known picture format (HEIF, AVIF) that no installed decoder reads; the message says what to install."""


def open_header(fp: IO[bytes], filename: str) -> ImageFile.ImageFile:
    """Parse the image header in ``fp`` with the first matching Pillow plugin; no pixel is decoded.

    Every pixel is then read from ``fp`` alone: ``filename`` names the picture in messages only.

    The same dispatch as ``Image.open`` (common plugins first, then all), without its check
    against the process-wide ``Image.MAX_IMAGE_PIXELS``; a HEIF file first registers the HEIF
    plugin (:func:`~edgefmnist.runtime.picture_formats.register_heif_plugin`). Raises
    ``UnidentifiedImageError`` if no plugin accepts the file (its message names the format and
    the install command when the file is HEIF or AVIF and no decoder for it is installed), and
    whatever the matching plugin raises for a corrupt header.
    """
    start = fp.read(SNIFF_BYTES)
    prefix = start[:16]  # what Image.open hands the plugins' accept functions
    if is_heif(start):
        register_heif_plugin()
    tried: set[str] = set()
    for register_plugins in (Image.preinit, Image.init):
        register_plugins()
        for format_id in [f for f in Image.ID if f not in tried]:
            tried.add(format_id)
            factory, accept = Image.OPEN[format_id]
            try:
                accepted = not accept or accept(prefix)
                if not accepted or isinstance(accepted, str):  # a string is Pillow's "almost, but no"
                    continue
                fp.seek(0)
                # no file name: with one, Pillow maps raw pixels (uncompressed TIFF, PPM, ...) from that
                # path instead of reading fp; for an upload, the client would pick the server file read
                return factory(fp, "")
            except (SyntaxError, IndexError, TypeError, struct.error):
                continue  # not this format after all: Image.open tries the next one too
    reason = missing_decoder(start)
    if reason:
        raise MissingDecoder(reason)
    raise UnidentifiedImageError(f"cannot identify image file {filename!r}")


def decode_reduced(image: ImageFile.ImageFile, path: str, max_side: int) -> Image.Image:
    """Check the header size, decode (a JPEG at reduced scale), rotate, flatten and shrink ``image``.

    Returns an ``RGB`` or ``L`` picture whose longer side is at most ``max_side`` pixels. Raises
    :class:`PictureTooLarge` for a decompression bomb (declared or decoded size), :class:`ImageError`
    for a refused format or a variant or pixel mode this Pillow cannot decode.
    """
    is_jpeg = image.format in JPEG_FORMATS
    if image.format in REFUSED_FORMATS:
        raise ImageError(f"{path}: {REFUSED_FORMATS[image.format]}")
    refuse_if_larger(path, image.size, pixel_limit(image.format))
    if isinstance(image, JpegImageFile):
        refuse_if_coefficients_exceed(path, image, MAX_COEFFICIENT_BYTES)
    if is_jpeg:
        header_size = image.size
        image.draft(image.mode, (max_side, max_side))  # libjpeg scales by 1/2..1/8, never below max_side
        if image.size[0] * image.size[1] > MAX_DECODED_PIXELS:
            width, height = header_size
            raise PictureTooLarge(
                f"{path}: refused, {width} x {height} pixels decode to {image.size[0]} x {image.size[1]}, "
                f"more than {MAX_DECODED_PIXELS:,} (a decompression bomb? use a smaller max_side)"
            )
    try:
        image.load()
    except OSError as exc:
        if not is_missing_codec(exc):
            raise
        raise ImageError(f"{path}: a {image.format} variant this Pillow cannot decode ({first_line(exc)})") from None
    ImageOps.exif_transpose(image, in_place=True)
    try:
        picture = image if is_plain(image) else to_rgb_or_l(image)  # a plain picture is shrunk in place
    except ValueError as exc:  # Pillow has no conversion for this mode: valid, but not supported here
        raise ImageError(
            f"{path}: a {image.format} picture in pixel mode {image.mode}, which is not supported"
        ) from exc
    picture.thumbnail((max_side, max_side), RESAMPLE, reducing_gap=REDUCING_GAP)
    return picture.copy() if picture is image else picture  # the shrunk copy outlives the file, which closes image


def refuse_if_coefficients_exceed(path: str, image: JpegImageFile, limit: int) -> None:
    """Raise :class:`PictureTooLarge` if ``image`` is a multi-scan JPEG (:func:`is_multi_scan`) whose
    coefficients take more than ``limit`` bytes. A single-scan JPEG is decoded a row of blocks at a time."""
    if (needed := coefficient_bytes(image)) > limit and is_multi_scan(image):
        width, height = image.size
        raise PictureTooLarge(
            f"{path}: refused, a multi-scan (progressive) JPEG of {width} x {height} pixels needs "
            f"{needed / 1e6:,.1f} MB to decode, more than {limit / 1e6:,.0f} MB (save it as a baseline JPEG)"
        )


def is_multi_scan(image: JpegImageFile) -> bool:
    """Whether libjpeg decodes ``image`` from several scans, so from a whole-image coefficient buffer
    (``has_multiple_scans`` in libjpeg's ``jdinput.c``): progressive, or a first scan holding fewer
    components than the frame (each colour in its own scan, as ``jpegtran -scans`` writes them)."""
    if image.info.get("progressive"):
        return True
    return image.fp is not None and first_scan_components(image.fp) < len(image.layer)


def first_scan_components(fp: IO[bytes]) -> int:
    """The components of a JPEG's first scan (``Ns`` of its first SOS segment, ITU-T T.81 B.2.3), read
    by walking the marker segments from the stream's start (an EXIF thumbnail inside APP1 is skipped
    whole); ``fp`` is left where it was. 0 when the walk finds no SOS."""
    start = fp.tell()
    try:
        fp.seek(2)  # past SOI
        while skip_to_marker(fp):
            marker = fp.read(1)
            while marker == b"\xff":  # fill bytes before a marker
                marker = fp.read(1)
            if not marker:
                return 0
            if marker[0] == 0x01 or 0xD0 <= marker[0] <= 0xD8:  # TEM, RSTn, SOI: no length
                continue
            header = fp.read(3)
            if len(header) < 3:
                return 0
            if marker[0] == 0xDA:
                return header[2]
            fp.seek(struct.unpack(">H", header[:2])[0] - 3, io.SEEK_CUR)
        return 0
    finally:
        fp.seek(start)


def skip_to_marker(fp: IO[bytes], chunk: int = 1 << 16) -> bool:
    """Read ``fp`` up to and including the next 0xFF byte, as libjpeg passes over bytes that are not
    a marker's (``next_marker`` in ``jdmarker.c``); False at the end of the stream."""
    while data := fp.read(chunk):
        if (found := data.find(b"\xff")) >= 0:
            fp.seek(found + 1 - len(data), io.SEEK_CUR)
            return True
    return False


def coefficient_bytes(image: JpegImageFile) -> int:
    """Bytes of DCT coefficients libjpeg holds to decode a multi-scan (progressive) JPEG: 64 16-bit
    coefficients per 8x8 block of every component at its sampling (libjpeg's whole-image coefficient
    buffer, ``jdcoefct.c``), from the header's size and sampling factors (Pillow's ``layer``)."""
    width, height = image.size
    samplings = [(horizontal, vertical) for _, horizontal, vertical, _ in image.layer]
    most_h = max(horizontal for horizontal, _ in samplings)
    most_v = max(vertical for _, vertical in samplings)
    blocks = sum(
        math.ceil(width * horizontal / most_h / 8) * math.ceil(height * vertical / most_v / 8)
        for horizontal, vertical in samplings
    )
    return blocks * 64 * 2


def pixel_limit(format_id: str | None) -> int:
    """The most pixels a header of ``format_id`` may declare: JPEG is decoded reduced, HEIF/AVIF at full size."""
    if format_id in JPEG_FORMATS:
        return MAX_JPEG_PIXELS
    return MAX_HEIF_PIXELS if format_id in FULL_SIZE_PHONE_FORMATS else MAX_PIXELS


def is_missing_codec(exc: OSError) -> bool:
    """True for Pillow's "decoder ... not available" (a valid file whose compression this build lacks)."""
    message = str(exc)
    return message.startswith(("decoder ", "encoder ")) and message.endswith("not available")


def refuse_if_larger(path: str, size: tuple[int, int], limit: int) -> None:
    """Raise :class:`PictureTooLarge` if a ``(width, height)`` in pixels holds more than ``limit`` pixels."""
    width, height = size
    if width * height > limit:
        raise PictureTooLarge(
            f"{path}: refused, {width} x {height} pixels is more than {limit:,} (a decompression bomb?)"
        )


def to_rgb_or_l(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> a new ``RGB`` or ``L`` image of the same size.

    Transparency (alpha, ``tRNS``, palette transparency) is composited onto white, or onto black
    for a cut-out that would vanish on white (:func:`backdrop_grey`: a flat white garment). Pixels wider
    than 8 bits are scaled by the range their data really uses, not by the container's depth:
    integer pixels (``I;16*``, ``I``) whose maximum exceeds 255 by ``255 / (2**b - 1)``, ``b`` the
    bits the maximum needs (a camera's 10, 12 or 14 bits in a 16-bit PNG; 16 for full 16-bit
    data), negative values counting as 0; float pixels (``F``) by 255 when they all lie in 0..1
    (the float-image convention), else by ``255 / maximum`` above 255, NaN counting as 0.
    ``LAB`` (CIELab TIFF) becomes ``L`` from its lightness channel L* (Pillow's own LAB -> RGB
    copies the channels unchanged); CMYK, YCbCr, HSV become RGB; ``1`` and gray palettes become
    ``L``. ``L`` and ``RGB`` without transparency are copied unchanged. Raises ``ValueError`` for
    a mode Pillow cannot convert.

    Every other mode is converted ``BAND_ROWS`` rows at a time (the maximum of wide pixels is
    taken over the whole picture first), so the conversion's working copies hold one band, not
    the picture (a 40 MP float TIFF: 1.6x its pixels at the peak instead of 7x; docs/real-photos.md, "Memory").
    """
    if is_plain(image):
        return image.copy()
    peak = wide_pixel_peak(image)
    backdrop = backdrop_grey(image, peak)
    result: Image.Image | None = None
    for top, band in row_bands(image):
        flat = flatten_band(band, peak, backdrop)
        if result is None:
            result = Image.new(flat.mode, image.size)
        result.paste(flat, (0, top))
    assert result is not None  # a Pillow image has at least one row
    return result


def is_plain(image: Image.Image) -> bool:
    """True for an ``L`` or ``RGB`` picture without transparency: what :func:`to_rgb_or_l` returns unchanged."""
    return image.mode in ("L", "RGB") and "transparency" not in image.info


def row_bands(image: Image.Image) -> Iterator[tuple[int, Image.Image]]:
    """``(top row, band)`` for consecutive crops of at most ``BAND_ROWS`` rows covering ``image``."""
    for top in range(0, image.height, BAND_ROWS):
        yield top, image.crop((0, top, image.width, min(top + BAND_ROWS, image.height)))


def wide_values(image: Image.Image) -> np.ndarray:
    """Pixels of an integer or float picture as float64 ``[H, W]``; negatives, NaN and infinities count as 0."""
    with np.errstate(invalid="ignore"):  # a signalling NaN raises the invalid flag when widened
        values = np.nan_to_num(np.asarray(image).astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(values, 0.0, None)


def wide_pixel_peak(image: Image.Image) -> float | None:
    """The largest of :func:`wide_values` over the picture's visible pixels (not its ``tRNS`` value),
    read band by band; None for 8-bit modes."""
    if image.mode not in SIXTEEN_BIT_MODES and image.mode != "F":
        return None
    key = image.info.get("transparency")
    return max(
        float(wide_values(band)[np.asarray(band) != key].max(initial=0.0))
        if key is not None
        else float(wide_values(band).max(initial=0.0))
        for _, band in row_bands(image)
    )


def has_transparency(image: Image.Image) -> bool:
    """Whether ``image`` has an alpha channel, or a ``tRNS`` or palette transparency."""
    with_trns = ("L", "RGB", "P", *SIXTEEN_BIT_MODES)
    return image.mode in ALPHA_MODES or (image.mode in with_trns and "transparency" in image.info)


def backdrop_grey(image: Image.Image, peak: float | None = None) -> int:
    """The grey (0 or 255) that :func:`to_rgb_or_l` composites transparency onto: white, unless
    the picture is a cut-out (more than half of its frame's outer pixels transparent) whose opaque
    part would vanish on white (its mean BT.601 luminance above ``VANISHING_LUMINANCE``), as a
    flat white garment cut out on a transparent background would: on black it keeps its shape.
    Any other cut-out stays on white, as Fashion-MNIST's products were photographed (a light grey
    one on black would have its intensities reversed), and so does a photo with transparent
    rounded corners. ``peak``: the :func:`wide_pixel_peak` of wider pixels, which are scaled as
    :func:`flatten_band` scales them. Read band by band."""
    if not has_transparency(image):
        return 255
    opaque_sum = opaque_count = rim_clear = rim_count = 0
    for top, band in row_bands(image):
        clear, luminance = clear_and_luminance(band, peak)
        opaque_sum += int(luminance[~clear].sum())
        opaque_count += int(clear.size - clear.sum())
        rim = [clear[:, 0], clear[:, -1]]
        rim += [clear[0]] if top == 0 else []
        rim += [clear[-1]] if top + band.height == image.height else []
        rim_clear += sum(int(part.sum()) for part in rim)
        rim_count += sum(part.size for part in rim)
    cut_out = 2 * rim_clear > rim_count
    return 0 if cut_out and opaque_count and opaque_sum > VANISHING_LUMINANCE * opaque_count else 255


def clear_and_luminance(band: Image.Image, peak: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Of a band of a picture with transparency: its transparent pixels, bool ``[h, W]``, and its
    BT.601 luminance, int64 ``[h, W]`` in 0-255 (wider pixels scaled by ``peak``, :func:`scaled_to_8_bits`)."""
    if peak is not None:  # a 16-bit PNG's tRNS: one value, fully transparent
        scaled = scaled_to_8_bits(wide_values(band), peak, integer=band.mode != "F")
        return np.asarray(band) == band.info["transparency"], np.asarray(scaled, dtype=np.int64)
    rgba = band.convert("RGBA")
    return np.asarray(rgba.getchannel("A")) < 128, np.asarray(rgba.convert("L"), dtype=np.int64)


def flatten_band(image: Image.Image, peak: float | None, backdrop: int = 255) -> Image.Image:
    """One band of :func:`to_rgb_or_l`; ``peak`` is the whole picture's :func:`wide_pixel_peak`,
    ``backdrop`` its :func:`backdrop_grey`."""
    mode = image.mode
    if peak is not None:
        if "transparency" not in image.info:
            return scaled_to_8_bits(wide_values(image), peak, integer=mode != "F")
        clear, luminance = clear_and_luminance(image, peak)
        return Image.fromarray(np.where(clear, backdrop, luminance).astype(np.uint8), "L")
    if mode == "LAB":
        return image.getchannel("L")
    if mode in ("P", "PA"):
        gray = is_gray_palette(image)
        if mode == "PA" or "transparency" in image.info:
            image = image.convert("RGBA")
            mode = "LA" if gray else "RGBA"  # composited below, then reduced to L if the palette is gray
        else:
            return image.convert("L" if gray else "RGB")
    elif mode in ("L", "RGB") and "transparency" in image.info:
        image, mode = image.convert(mode + "A"), mode + "A"
    if mode in ALPHA_MODES:
        rgba = image.convert("RGBA")
        behind = Image.new("RGBA", rgba.size, (backdrop, backdrop, backdrop, 255))
        return Image.alpha_composite(behind, rgba).convert("L" if mode in ("LA", "La") else "RGB")
    if mode == "1":
        return image.convert("L")
    return image.convert("RGB")


def scaled_to_8_bits(values: np.ndarray, peak: float, integer: bool = False) -> Image.Image:
    """Pixels ``[H, W]`` (float64, at least 0) -> an ``L`` image, scaled as :func:`to_rgb_or_l` says for ``peak``."""
    if integer and peak > 255.0:
        bits = int(peak).bit_length()  # 4095 -> 12, 65535 -> 16
        values = values * (255.0 / (2**bits - 1))
    elif peak > 255.0:
        values = values * (255.0 / peak)
    elif not integer and peak <= 1.0:
        values = values * 255.0
    return Image.fromarray(np.floor(values + 0.5).clip(0, 255).astype(np.uint8), "L")


def is_gray_palette(image: Image.Image) -> bool:
    """True if every colour of a ``P``/``PA`` image's palette has R == G == B."""
    palette = image.getpalette("RGB")
    if not palette:
        return False
    colours = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    return bool((colours == colours[:, :1]).all())


def to_luminance(image: Image.Image) -> np.ndarray:
    """Luminance as uint8 ``[H, W]``: ITU-R BT.601, exactly ``image.convert("L")`` for ``RGB``, a copy for ``L``.

    Any other picture, and an ``L`` or ``RGB`` one with a ``transparency`` entry (``tRNS``), is first
    flattened with :func:`to_rgb_or_l` (transparency composited).
    """
    if not is_plain(image):
        image = to_rgb_or_l(image)
    if image.mode == "RGB":
        image = image.convert("L")
    return np.array(image, dtype=np.uint8)
