"""Which picture formats the runtime opens: Pillow's own decoders plus the HEIF plugin.

    edgefmnist infer --image photos/       # classifies every file whose extension is in picture_extensions()

An iPhone saves HEIC by default. Pillow decodes it only through a plugin: ``pi-heif`` (the
decode-only build of the ``pillow-heif`` project, part of the base install) or ``pillow-heif``
itself, whichever is installed. The plugin is registered on first need, so a JPEG never pays
for importing it. AVIF is Pillow's own (its wheels carry libavif from 11.3 on).
"""

from __future__ import annotations

import importlib
import threading
from functools import cache
from pathlib import Path

from PIL import Image, ImageFile, features

HEIF_PLUGINS = ("pi_heif", "pillow_heif")  # import names, in order of preference
HEIF_INSTALL = "pip install pi-heif"
AVIF_INSTALL = "pip install --upgrade 'pillow>=11.3'"
# ISO base media file format brands (ISO/IEC 23008-12 for HEIF, the AV1 Image File Format for AVIF)
HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"})
AVIF_BRANDS = frozenset({b"avif", b"avis"})
SNIFF_BYTES = 64  # enough of a file's start for its ftyp box: size, "ftyp", major brand, version, compatible brands

# Formats Pillow recognises but the runtime does not decode, and why. An EPS file is PostScript, a program that
# Pillow hands to Ghostscript to draw; untrusted PostScript is refused, as ImageMagick's default policy
# refuses the PS and EPS coders. Pillow's MPEG plugin reads a video's size and no pixels.
REFUSED_FORMATS = {
    "EPS": "an EPS file: PostScript, a program, which is not run to draw it",
    "MPEG": "an MPEG video, not a picture",
}

_register_lock = threading.Lock()


@cache
def register_heif_plugin() -> str | None:
    """Register the installed HEIF plugin with Pillow (once, thread safe); return its import name, or None.

    Registering adds the ``HEIF`` format to Pillow's plugin registry, which is what the plugin
    is for; nothing else of Pillow's state is changed.
    """
    with _register_lock:
        for name in HEIF_PLUGINS:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            module.register_heif_opener()
            return name
    return None


def container_brands(prefix: bytes) -> frozenset[bytes]:
    """The major and compatible brands of an ISO-BMFF ``ftyp`` box at the start of ``prefix``, or none."""
    if prefix[4:8] != b"ftyp":
        return frozenset()
    size = min(int.from_bytes(prefix[:4], "big"), len(prefix))
    brands = [prefix[8:12]] + [prefix[i : i + 4] for i in range(16, size - 3, 4)]
    return frozenset(brands)


def is_heif(prefix: bytes) -> bool:
    """True if ``prefix`` (a file's first bytes) starts a HEIF/HEIC picture that is not AVIF."""
    brands = container_brands(prefix)
    return bool(brands & HEIF_BRANDS) and not brands & AVIF_BRANDS


def missing_decoder(prefix: bytes) -> str | None:
    """Why a picture starting with ``prefix`` that no plugin accepted cannot be read, when the format is known.

    Returns e.g. ``"a HEIC/HEIF picture (an iPhone's default format), and no HEIF decoder is
    installed: pip install pi-heif"``, or None when the bytes are no HEIF or AVIF picture.
    """
    brands = container_brands(prefix)
    if brands & AVIF_BRANDS and not features.check("avif"):
        return f"an AVIF picture, and this Pillow {Image.__version__} has no AVIF decoder: {AVIF_INSTALL}"
    if brands & HEIF_BRANDS and not brands & AVIF_BRANDS and register_heif_plugin() is None:
        return f"a HEIC/HEIF picture (an iPhone's default format), and no HEIF decoder is installed: {HEIF_INSTALL}"
    return None


def picture_extensions() -> frozenset[str]:
    """The lower-case file extensions (``".jpg"``, ``".heic"``, ...) of every format that can be decoded here.

    Those Pillow registers for a format it can open (``Image.OPEN``), after the HEIF plugin is
    registered when installed; stub formats (``ImageFile.StubImageFile``: BUFR, GRIB, HDF5,
    WMF), which open but need a decoder the application must supply, and ``REFUSED_FORMATS``
    (EPS, MPEG) are left out.
    """
    register_heif_plugin()
    Image.init()
    return frozenset(
        extension.lower()
        for extension, format_id in Image.registered_extensions().items()
        if format_id in Image.OPEN and not is_stub(format_id) and format_id not in REFUSED_FORMATS
    )


def is_stub(format_id: str) -> bool:
    """True if Pillow's plugin for ``format_id`` only identifies files and decodes nothing by itself."""
    factory = Image.OPEN[format_id][0]
    return isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile)


def format_named(path: Path) -> str | None:
    """The format Pillow gives ``path``'s extension (``"JPEG"`` for ``x.JPG``, ``"HEIF"`` for
    ``x.heic`` when the HEIF plugin is installed), or None for an extension of no picture format;
    stub formats (:func:`is_stub`: HDF5, GRIB, ...), which are data, not pictures, count as none."""
    register_heif_plugin()
    format_id = Image.registered_extensions().get(path.suffix.lower())
    return None if format_id is None or (format_id in Image.OPEN and is_stub(format_id)) else format_id


def names_a_picture_format(path: Path) -> bool:
    """Whether ``path``'s extension is one Pillow gives to a picture format (``x.png``, ``x.pdf``)."""
    return format_named(path) is not None


def file_extension(path: Path) -> str:
    """``path``'s extension as a file format's (``.png``, ``.onnx``, ``.mp4``), or "" for a name
    whose last dot is followed by no letter (``run-1.5``, ``v2.0``), which names no format."""
    return path.suffix if any(c.isalpha() for c in path.suffix) else ""


def names_other_than_png(path: Path) -> bool:
    """Whether ``path`` has an extension (:func:`file_extension`) that Pillow does not give to PNG
    (``x.jpg``, ``x.pdf``, ``model.onnx``, ``notes.txt``): a PNG written under that name would be
    mislabelled, and the name was likely meant for another file. ``x.png``, ``x.APNG``, ``run-1.5``
    and no extension are not."""
    return bool(file_extension(path)) and format_named(path) != "PNG"
