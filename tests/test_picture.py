"""The picture loader: phone-size JPEGs reduced cheaply, bombs refused, modes flattened, no global state."""

from __future__ import annotations

import contextlib
import io
import struct
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import edgefmnist.runtime.picture as picture_module
import numpy as np
import pytest
from edgefmnist.runtime.picture import (
    MAX_JPEG_PIXELS,
    MAX_PIXELS,
    WORK_SIDE,
    ImageError,
    PictureTooLarge,
    coefficient_bytes,
    first_scan_components,
    is_multi_scan,
    load_picture,
    to_luminance,
    to_rgb_or_l,
)
from edgefmnist.runtime.picture_formats import picture_extensions
from helpers import REGRESSION_SET, png_declaring
from PIL import Image, ImageDraw

FUZZ_CORPUS = Path(__file__).parent / "fuzz_corpus"


def scene(width: int = 64, height: int = 48) -> Image.Image:
    """A small colourful RGB picture: a red left half, a blue block, a gradient."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[..., 1] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    pixels[:, : width // 2, 0] = 220
    pixels[height // 4 : height // 2, width // 2 :, 2] = 200
    return Image.fromarray(pixels, "RGB")


def make_big_jpeg(path: Path, width: int, height: int, mode: str = "RGB", **options: Any) -> Path:
    """A ``width`` x ``height`` JPEG made quickly: a small scene upscaled with NEAREST, saved at low quality."""
    scene().convert(mode).resize((width, height), Image.Resampling.NEAREST).save(path, quality=20, **options)
    return path


def written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def jpeg_claiming(path: Path, width: int, height: int, **options: Any) -> Path:
    """A tiny JPEG whose SOF0 header (SOF2 if ``progressive=True``) claims ``width`` x ``height``."""
    buffer = io.BytesIO()
    scene(16, 16).save(buffer, format="JPEG", **options)
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc2" if options.get("progressive") else b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


def run_python(code: str, *args: str) -> str:
    """The standard output of ``code`` run by a fresh interpreter (stripped); raises if it fails."""
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def big_jpegs(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Phone-size JPEGs, made once per module on first use: '12mp', '48mp', '108mp'."""
    folder = tmp_path_factory.mktemp("big-jpegs")
    sizes = {"12mp": (4000, 3000), "48mp": (8000, 6000), "108mp": (12000, 9000)}
    made: dict[str, Path] = {}
    lock = threading.Lock()

    def get(name: str) -> Path:
        with lock:
            if name not in made:
                made[name] = make_big_jpeg(folder / f"{name}.jpg", *sizes[name])
            return made[name]

    return get


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Headers over this module's limits, on both sides of Pillow's own thresholds (89 MP warning, 179 MP error)."""
    folder = tmp_path_factory.mktemp("bombs")
    return {
        "png-41mp": written(folder / "png-41mp.png", png_declaring(8000, 5125)),  # over ours, under Pillow's
        "png-100mp": written(folder / "png-100mp.png", png_declaring(10000, 10000)),  # where Pillow would only warn
        "png-900mp": written(folder / "png-900mp.png", png_declaring(30000, 30000)),
        "jpeg-300mp": jpeg_claiming(folder / "jpeg-300mp.jpg", 20000, 15000),
    }


def assert_one_line_about(caught: pytest.ExceptionInfo[ImageError], path: Path) -> None:
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message


def rgb(picture: Image.Image, xy: tuple[int, int]) -> tuple[int, int, int]:
    """The RGB triple of one pixel of an RGB picture."""
    red, green, blue = picture.convert("RGB").getpixel(xy)  # type: ignore[misc]
    return red, green, blue


def save(image: Image.Image, path: Path, **options: Any) -> Path:
    image.save(path, **options)
    return path


# --- small pictures pass through untouched -------------------------------------------------------


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_a_28x28_png_is_bit_exact(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (28, 28) if mode == "L" else (28, 28, 3), dtype=np.uint8)
    picture = load_picture(save(Image.fromarray(pixels, mode), tmp_path / "x.png"))
    assert picture.mode == mode
    np.testing.assert_array_equal(np.asarray(picture), pixels)


def test_a_real_photo_already_small_keeps_its_size_and_pixels() -> None:
    photo = sorted(REGRESSION_SET.glob("*/*.jpg"))[0]
    with Image.open(photo) as image:
        expected = np.asarray(image.convert("RGB"))
    picture = load_picture(photo)
    assert picture.mode == "RGB" and max(picture.size) <= WORK_SIDE
    np.testing.assert_array_equal(np.asarray(picture), expected)


# --- phone-size JPEGs: accepted, reduced, no Pillow bomb warning -------------------------------


@pytest.mark.parametrize("name, expected_size", [("12mp", (256, 192)), ("48mp", (256, 192)), ("108mp", (256, 192))])
def test_phone_size_jpegs_are_accepted_and_reduced(big_jpegs, name: str, expected_size: tuple[int, int]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning (above 89 MP) must not fire
        picture = load_picture(big_jpegs(name))
    assert picture.mode == "RGB" and picture.size == expected_size
    expected = np.asarray(scene().resize(expected_size, Image.Resampling.BOX), dtype=float)
    assert np.abs(np.asarray(picture, dtype=float) - expected).mean() < 12  # the same picture, smaller


@pytest.mark.parametrize("max_side", [28, 100, 1000])
def test_max_side_bounds_the_longer_side(big_jpegs, max_side: int) -> None:
    picture = load_picture(big_jpegs("12mp"), max_side=max_side)
    assert max(picture.size) == max_side and picture.size[1] == round(max_side * 3 / 4)


def test_non_jpeg_is_decoded_then_reduced(tmp_path: Path) -> None:
    path = save(scene().resize((3000, 2000), Image.Resampling.NEAREST), tmp_path / "big.png")
    picture = load_picture(path, max_side=300)
    assert picture.mode == "RGB" and picture.size == (300, 200)


def test_a_200mp_grayscale_jpeg_is_accepted(tmp_path: Path) -> None:
    path = make_big_jpeg(tmp_path / "200mp.jpg", 16400, 12200, mode="L")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # above 179 MP Image.open itself would raise
        picture = load_picture(path)
    assert picture.mode == "L" and picture.size == (256, 190)


def test_max_side_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_side"):
        load_picture(save(scene(), tmp_path / "x.png"), max_side=0)


# --- bombs: refused from the header, before decoding, in one line --------------------------------


REFUSED = r"refused, \d+ x \d+ pixels is more than [\d,]+ \(a decompression bomb\?\)$"


@pytest.mark.parametrize("name", ["png-41mp", "png-100mp", "png-900mp", "jpeg-300mp"])
def test_bombs_are_refused_in_one_line(bombs: dict[str, Path], name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageError, match=REFUSED) as caught:
            load_picture(bombs[name])
    assert_one_line_about(caught, bombs[name])
    limit = MAX_JPEG_PIXELS if name.startswith("jpeg") else MAX_PIXELS
    assert f"{limit:,}" in str(caught.value)


@pytest.mark.slow
def test_a_real_30000x30000_png_bomb_is_refused(tmp_path: Path) -> None:
    Image.new("1", (30_000, 30_000)).save(tmp_path / "bomb.png", compress_level=1)  # 900 MP, ~300 KiB on disk
    with pytest.raises(ImageError, match="decompression bomb") as caught:
        load_picture(tmp_path / "bomb.png")
    assert_one_line_about(caught, tmp_path / "bomb.png")
    assert "30000 x 30000" in str(caught.value)


def test_a_jpeg_whose_reduced_decode_is_still_too_large_is_refused(big_jpegs) -> None:
    with pytest.raises(ImageError, match="decode to 8000 x 6000") as caught:
        load_picture(big_jpegs("48mp"), max_side=8000)  # no reduction possible: 48 MP decoded in full
    assert_one_line_about(caught, big_jpegs("48mp"))


@pytest.mark.parametrize(
    "size, subsampling, megabytes",
    [((16000, 15500), 0, "1,488.4"), ((10000, 10000), 2, "300.0"), ((13000, 6000), 1, "312.1")],
    ids=["248mp-4:4:4", "100mp-4:2:0", "78mp-4:2:2"],
)
def test_a_progressive_jpeg_too_large_to_decode_in_memory_is_refused_from_its_header(
    tmp_path: Path, size: tuple[int, int], subsampling: int, megabytes: str
) -> None:
    """libjpeg holds every coefficient of a multi-scan JPEG whatever the draft scale: a 248 MP
    4:4:4 one (3.2 MB) took 1.5 GB to decode. Refused before decoding, in one line."""
    path = jpeg_claiming(tmp_path / "p.jpg", *size, progressive=True, subsampling=subsampling)
    needs = f"JPEG of {size[0]} x {size[1]} pixels needs {megabytes} MB to decode, more than 200 MB"
    with pytest.raises(PictureTooLarge, match=needs):
        load_picture(path)
    with pytest.raises(ImageError) as caught:
        load_picture(path.read_bytes(), name="p.jpg")
    assert_one_line_about(caught, Path("p.jpg"))


def first_scan_holding(data: bytes, components: int) -> bytes:
    """``data``, a JPEG, with its first scan declaring ``components`` (as when each colour has its own scan)."""
    sos = data.index(b"\xff\xda")
    return data[: sos + 4] + bytes([components]) + data[sos + 5 :]


def test_a_baseline_jpeg_with_a_scan_per_colour_is_refused_as_progressive_ones_are(tmp_path: Path) -> None:
    """``jpegtran -scans`` writes each component in its own scan: as many coefficients held (1.5 GB
    for a 248 MP 4:4:4 one), though Pillow does not call it progressive."""
    baseline = jpeg_claiming(tmp_path / "b.jpg", 16000, 15500, subsampling=0).read_bytes()
    path = written(tmp_path / "scans.jpg", first_scan_holding(baseline, 1))
    with pytest.raises(PictureTooLarge, match="a multi-scan \\(progressive\\) JPEG of 16000 x 15500 pixels"):
        load_picture(path)
    app1 = b"\xff\xe1\x00\x0a" + b"\xff\xda\x00\x08\x01\x01"  # a segment holding what looks like an SOS
    small = jpeg_claiming(tmp_path / "s.jpg", 64, 48, subsampling=0).read_bytes()  # Image.open checks its size
    for data, components in ((small, 3), (first_scan_holding(small, 1), 1)):
        padded = data[:2] + app1 + b"\x00\x00" + data[2:]  # and two bytes of garbage before the next marker
        with Image.open(io.BytesIO(padded)) as header:
            assert first_scan_components(header.fp) == components
            assert is_multi_scan(header) == (components == 1)


def test_a_progressive_phone_size_jpeg_is_accepted_and_reduced(tmp_path: Path) -> None:
    """48 MP 4:2:0 holds 144 MB of coefficients, within the 200 MB allowed (a 64 MP one, 192.5 MB)."""
    path = make_big_jpeg(tmp_path / "p.jpg", 8000, 6000, progressive=True)
    with Image.open(path) as header:
        assert header.info.get("progressive") and coefficient_bytes(header) == 8000 * 6000 * 3
    assert load_picture(path).size == (256, 192)


# --- modes --------------------------------------------------------------------------------------


def half_transparent(mode: str) -> Image.Image:
    """A dark-red 40x30 picture whose right half is fully transparent."""
    image = Image.new("RGBA", (40, 30), (120, 10, 10, 255))
    image.paste((0, 0, 0, 0), (20, 0, 40, 30))
    return image.convert(mode)


@pytest.mark.parametrize(
    "make, suffix, expected_mode",
    [
        (lambda: scene().convert("L"), ".png", "L"),
        (lambda: scene(), ".png", "RGB"),
        (lambda: scene().convert("1"), ".png", "L"),
        (lambda: scene().convert("P"), ".png", "RGB"),
        (lambda: scene().convert("L").convert("P"), ".gif", "L"),  # a gray palette
        (lambda: scene().convert("CMYK"), ".jpg", "RGB"),
        (lambda: scene().convert("L"), ".jpg", "L"),
        (lambda: Image.fromarray(np.asarray(scene().convert("L")).astype(np.uint16) * 257), ".png", "L"),
        (lambda: scene().convert("F"), ".tif", "L"),
        (lambda: scene().convert("RGBA"), ".webp", "RGB"),
    ],
    ids=["L", "RGB", "1", "P", "gray-P", "CMYK-jpeg", "L-jpeg", "I;16", "F", "RGBA-webp"],
)
def test_modes_become_rgb_or_l(tmp_path: Path, make, suffix: str, expected_mode: str) -> None:
    source = make()
    path = save(source, tmp_path / f"x{suffix}", **({"lossless": True} if suffix == ".webp" else {}))
    picture = load_picture(path)
    assert picture.mode == expected_mode and picture.size == source.size
    luminance = to_luminance(picture)
    expected = np.asarray(scene().convert("L"), dtype=float)
    tolerance = 20 if suffix == ".jpg" else 2  # JPEG loss and CMYK round trips; the others are exact or 8-bit rounding
    if source.mode == "1":
        expected = np.asarray(scene().convert("1").convert("L"), dtype=float)
    if source.mode in ("P",) and expected_mode == "RGB":
        tolerance = 30  # an adaptive 256-colour palette
    assert np.abs(luminance.astype(float) - expected).mean() < tolerance


def test_16_bit_is_scaled_exactly(tmp_path: Path) -> None:
    values = np.array([[0, 128, 257, 32896, 65535, 65278]], dtype=np.uint16)
    picture = load_picture(save(Image.fromarray(values), tmp_path / "x.png"))
    np.testing.assert_array_equal(np.asarray(picture), [[0, 0, 1, 128, 255, 254]])
    small = np.array([[0, 7, 255]], dtype=np.uint16)  # no value above 255: already 8-bit values
    np.testing.assert_array_equal(np.asarray(load_picture(save(Image.fromarray(small), tmp_path / "s.png"))), small)


@pytest.mark.parametrize("mode, expected_mode", [("RGBA", "RGB"), ("LA", "L"), ("P", "RGB")])
def test_transparency_is_composited_on_white(tmp_path: Path, mode: str, expected_mode: str) -> None:
    source = half_transparent(mode)
    if mode == "P":  # palette with a transparent index, as GIFs and PNGs have it
        source = half_transparent("RGBA").convert("P", palette=Image.Palette.ADAPTIVE, colors=2)
        source.info["transparency"] = source.getpixel((30, 10))
    path = save(source, tmp_path / "x.png", **({"transparency": source.info["transparency"]} if mode == "P" else {}))
    picture = load_picture(path)
    assert picture.mode == expected_mode
    pixels = np.asarray(picture.convert("RGB"))
    assert (pixels[:, 20:] == 255).all()  # the transparent half is white
    assert (pixels[:, :20].mean(axis=(0, 1)) < 130).all()  # the opaque half keeps its dark colour


def cut_out_tee(fill: tuple[int, int, int]) -> Image.Image:
    """A T-shirt-shaped cut-out of colour ``fill`` on a fully transparent 120x120 background."""
    picture = Image.new("RGBA", (120, 120), (0, 0, 0, 0))
    outline = [(36, 18), (84, 18), (108, 39), (96, 51), (87, 45), (87, 105), (33, 105), (33, 45), (24, 51), (12, 39)]
    ImageDraw.Draw(picture).polygon(outline, fill=(*fill, 255))
    return picture


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_a_white_cut_out_is_composited_on_black_and_keeps_its_shape(tmp_path: Path, mode: str) -> None:
    """On white, a white garment cut out on a transparent background would vanish."""
    source = cut_out_tee((255, 255, 255))
    options: dict[str, Any] = {}
    if mode == "P":
        source = source.convert("P", palette=Image.Palette.ADAPTIVE, colors=2)
        options["transparency"] = source.getpixel((0, 0))
    else:
        source = source.convert(mode)
    pixels = to_luminance(load_picture(save(source, tmp_path / "tee.png", **options)))
    inside = np.asarray(cut_out_tee((255, 255, 255)).getchannel("A")) == 255
    assert (pixels[inside] == 255).all() and (pixels[~inside] == 0).all()


def test_other_cut_outs_and_a_photo_with_clear_rounded_corners_stay_on_white(tmp_path: Path) -> None:
    """A light grey garment on black would have its intensities reversed against the dataset's."""
    for fill in ((20, 30, 90), (200, 200, 200), (245, 245, 240)):
        assert to_luminance(load_picture(save(cut_out_tee(fill), tmp_path / "tee.png")))[0, 0] == 255
    photo = Image.new("RGBA", (200, 200), (250, 250, 250, 255))  # a light photo whose corners are clear
    corners = Image.new("L", (200, 200), 0)
    ImageDraw.Draw(corners).rounded_rectangle((0, 0, 199, 199), radius=30, fill=255)
    photo.putalpha(corners)
    assert to_luminance(load_picture(save(photo, tmp_path / "rounded.png")))[0, 0] == 255


def test_a_signalling_nan_in_a_float_tiff_counts_as_0_without_a_warning(tmp_path: Path) -> None:
    values = np.full((20, 30), 200.0, np.float32)
    values.view(np.uint32)[0, 0] = 0x7F800001  # a signalling NaN raises the invalid flag when widened
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pixels = np.asarray(load_picture(save(Image.fromarray(values, "F"), tmp_path / "snan.tif")))
    assert pixels[0, 0] == 0 and (pixels.ravel()[1:] == 200).all()


def test_pa_is_composited_on_white() -> None:
    flattened = to_rgb_or_l(half_transparent("PA"))  # Pillow cannot save PA: checked in memory
    assert flattened.mode == "RGB" and (np.asarray(flattened)[:, 20:] == 255).all()


@pytest.mark.parametrize("mode, transparent", [("L", 40), ("RGB", (10, 20, 30))])
def test_trns_transparency_of_l_and_rgb_is_composited(tmp_path: Path, mode: str, transparent) -> None:
    source = Image.new(mode, (10, 10), transparent)
    source.paste(0 if mode == "L" else (0, 0, 0), (0, 0, 5, 10))
    picture = load_picture(save(source, tmp_path / "x.png", transparency=transparent))
    assert picture.mode == mode
    pixels = np.asarray(picture.convert("L"))
    assert (pixels[:, 5:] == 255).all() and (pixels[:, :5] == 0).all()


def test_trns_transparency_of_a_16_bit_grey_png_is_composited_as_in_8_bits(tmp_path: Path) -> None:
    """Its one transparent value goes on the backdrop the 8-bit picture gets (white: a dark cut-out)."""
    eight = np.zeros((60, 60), np.uint8)
    eight[15:45, 15:45], eight[20:40, 20:40] = 100, 200
    pictures = [
        load_picture(save(Image.fromarray(values), tmp_path / f"{bits}.png", transparency=0))
        for bits, values in ((8, eight), (16, eight.astype(np.uint16) * 257))
    ]
    assert [picture.mode for picture in pictures] == ["L", "L"]
    np.testing.assert_array_equal(np.asarray(pictures[1]), np.asarray(pictures[0]))
    assert (np.asarray(pictures[0])[:15] == 255).all()


def test_a_16_bit_pngs_trns_value_above_its_data_does_not_scale_the_picture(tmp_path: Path) -> None:
    """12-bit data (0..4095) with the transparent value 65535: scaled by its 12 bits, as without it."""
    twelve = np.full((60, 60), 65535, np.uint16)
    twelve[15:45, 15:45], twelve[20:40, 20:40] = 1606, 3212  # 100 and 200 of 255, at 12 bits
    picture = np.asarray(load_picture(save(Image.fromarray(twelve), tmp_path / "x.png", transparency=65535)))
    assert (picture[20:40, 20:40] == 200).all() and (picture[15:18, 15:45] == 100).all()
    assert (picture[:15] == 255).all()  # the transparent frame, on white


@pytest.mark.parametrize("orientation, expected_size", [(1, (60, 40)), (3, (60, 40)), (6, (40, 60)), (8, (40, 60))])
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int, expected_size: tuple[int, int]) -> None:
    source = Image.new("RGB", (60, 40), (255, 255, 255))
    source.paste((255, 0, 0), (0, 0, 10, 10))  # a red mark in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    picture = load_picture(save(source, tmp_path / "x.jpg", exif=exif, quality=95))
    assert picture.size == expected_size
    corner = {1: (0, 0), 3: (59, 39), 6: (39, 0), 8: (0, 59)}[orientation]  # where the mark is once upright
    red, green, _ = rgb(picture, corner)
    assert red > 200 and green < 60


def test_a_big_rotated_jpeg_is_reduced_upright(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    scene().resize((8000, 6000), Image.Resampling.NEAREST).save(path, quality=20, exif=exif)
    assert load_picture(path).size == (192, 256)


def test_only_the_first_frame_is_read(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (20, 20), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    red, _, blue = rgb(load_picture(tmp_path / "anim.gif"), (5, 5))
    assert red > 200 and blue < 50


def test_the_first_frame_of_an_mpo_is_reduced(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (2000, 1500), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "stereo.jpg", format="MPO", save_all=True, append_images=frames[1:])
    picture = load_picture(tmp_path / "stereo.jpg")
    red, _, blue = rgb(picture, (5, 5))
    assert picture.size == (256, 192) and red > 200 and blue < 50


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b""), "empty file, not an image"),
        (lambda p: p.symlink_to("/dev/zero"), "a device, not a picture file"),  # seeks to an end of 0
        (lambda p: p.symlink_to("/proc/self/status"), "not an image Pillow can read"),  # cannot seek to its end
        (lambda p: p.symlink_to("/proc/self/cmdline"), "not an image Pillow can read"),  # seeks to an end of 0
        (lambda p: p.write_text("just text"), "not an image Pillow can read"),
        (lambda p: p.write_bytes(scene_bytes("PNG")[:300]), "corrupt or truncated"),
        (lambda p: p.write_bytes(scene_bytes("JPEG")[:400]), "corrupt or truncated"),
    ],
    ids=[
        "missing",
        "directory",
        "empty",
        "device",
        "proc-file",
        "proc-at-0",
        "text",
        "truncated-png",
        "truncated-jpeg",
    ],
)
def test_bad_files_raise_one_line_naming_them(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "x.img"
    make(path)
    with pytest.raises(ImageError, match=message) as caught:
        load_picture(path)
    assert_one_line_about(caught, path)


def test_postscript_and_video_are_refused_by_name(tmp_path: Path) -> None:
    """An EPS file is a program that only Ghostscript draws: it is never run, whether or not Ghostscript is here."""
    eps = tmp_path / "x.eps"
    scene().convert("L").save(eps)
    mpeg = tmp_path / "x.mpg"
    mpeg.write_bytes(b"\x00\x00\x01\xb3\x14\x00\xf0\x13" + bytes(100))  # a sequence header: 320x240
    for path, message in ((eps, "an EPS file: PostScript, a program, which is not run"), (mpeg, "an MPEG video")):
        with pytest.raises(ImageError, match=message) as caught:
            load_picture(path)
        assert_one_line_about(caught, path)
    assert not {".eps", ".ps", ".mpg", ".mpeg"} & picture_extensions()


@pytest.mark.parametrize("format", ["TIFF", "PPM"])
def test_pixels_come_from_the_bytes_never_from_the_file_the_name_points_at(tmp_path: Path, format: str) -> None:
    """Given a path as its file name, Pillow maps raw pixels (uncompressed TIFF, PPM) from that path."""
    other = tmp_path / f"other.{format.lower()}"
    scene().convert("L").save(other, format=format)  # uncompressed, on disk
    buffer = io.BytesIO()
    Image.new("L", scene().size, 0).save(buffer, format=format)  # a black picture of the same size
    for name in (str(other), None):
        assert np.asarray(load_picture(buffer.getvalue(), name=name)).max() == 0
    assert np.asarray(load_picture(other)).max() > 0


def test_an_uncompressed_tiff_from_a_path_is_turned_upright_as_from_bytes(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90° clockwise to view
    Image.new("L", (256, 180), 50).save(tmp_path / "x.tif", exif=exif)  # uncompressed: Pillow would map it
    assert load_picture(tmp_path / "x.tif").size == load_picture((tmp_path / "x.tif").read_bytes()).size == (180, 256)


def scene_bytes(format: str) -> bytes:
    buffer = io.BytesIO()
    scene(300, 200).save(buffer, format=format)
    return buffer.getvalue()


def test_an_unreadable_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save(scene(), tmp_path / "x.png")

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(picture_module, "open", denied, raising=False)  # chmod 0 does not stop root
    with pytest.raises(ImageError, match="cannot read \\(Permission denied\\)") as caught:
        load_picture(path)
    assert_one_line_about(caught, path)


@pytest.mark.parametrize("path", sorted(FUZZ_CORPUS.glob("*.tif")), ids=lambda p: p.name)
def test_fuzz_corpus_images_give_only_image_errors(path: Path) -> None:
    try:
        picture = load_picture(path)
    except ImageError as exc:
        assert "\n" not in str(exc)
    else:
        assert picture.mode in ("L", "RGB")


# --- luminance ----------------------------------------------------------------------------------


def test_to_luminance_is_pillows_bt601_for_rgb_and_identity_for_l() -> None:
    rgb = Image.fromarray(np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8), "RGB")
    luminance = to_luminance(rgb)
    assert luminance.dtype == np.uint8 and luminance.shape == (30, 40)
    np.testing.assert_array_equal(luminance, np.asarray(rgb.convert("L")))
    gray = rgb.convert("L")
    np.testing.assert_array_equal(to_luminance(gray), np.asarray(gray))
    assert to_luminance(half_transparent("RGBA"))[:, 20:].min() == 255


def test_to_rgb_or_l_returns_a_new_image() -> None:
    source = scene()
    flattened = to_rgb_or_l(source)
    assert flattened is not source and flattened.tobytes() == source.tobytes()


# --- no global state, thread safety -------------------------------------------------------------


def test_global_state_is_unchanged(big_jpegs, bombs: dict[str, Path], tmp_path: Path) -> None:
    pillow_limit, filters = Image.MAX_IMAGE_PIXELS, list(warnings.filters)
    load_picture(big_jpegs("108mp"))
    load_picture(save(scene(), tmp_path / "x.png"))
    for path in bombs.values():
        with pytest.raises(ImageError):
            load_picture(path)
    assert Image.MAX_IMAGE_PIXELS == pillow_limit
    assert warnings.filters == filters


ROUNDS = 5


def test_eight_threads_refuse_every_bomb_every_time(big_jpegs, bombs: dict[str, Path]) -> None:
    pillow_limit, filters = Image.MAX_IMAGE_PIXELS, list(warnings.filters)
    accepted = [big_jpegs("108mp"), big_jpegs("12mp")]  # 108 MP is where Image.open would warn
    expected = {path: load_picture(path).tobytes() for path in accepted}
    failures: list[str] = []
    counts = {"refused": 0, "loaded": 0}
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def work(worker: int) -> None:
        barrier.wait()
        for round_ in range(ROUNDS):
            for index, path in enumerate([*bombs.values(), *accepted]):
                if path in accepted and (index + worker + round_) % 2:
                    continue  # vary the interleaving, keep the run short
                try:
                    picture = load_picture(path)
                except ImageError as exc:
                    ok = path in bombs.values() and "decompression bomb" in str(exc)
                    outcome = "refused"
                else:
                    ok = path in accepted and picture.tobytes() == expected[path]
                    outcome = "loaded"
                with lock:
                    counts[outcome] += 1
                    if not ok:
                        failures.append(f"worker {worker}: {path.name} {outcome}")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threads = [threading.Thread(target=work, args=(worker,)) for worker in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
    assert counts["refused"] == 8 * ROUNDS * len(bombs)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert Image.MAX_IMAGE_PIXELS == pillow_limit and warnings.filters == filters


def test_the_module_is_torch_free() -> None:
    code = "import sys, edgefmnist.runtime.picture; print(sorted({'torch', 'onnx'} & set(sys.modules)))"
    assert run_python(code) == "[]"


# --- phone formats: HEIC, AVIF, animated WebP ---------------------------------------------------


def heic_bytes(image: Image.Image) -> bytes:
    """``image`` encoded as HEIC by pillow-heif (its encoder; the runtime decodes with the installed plugin)."""
    import pillow_heif

    buffer = io.BytesIO()
    pillow_heif.from_pillow(image.convert("RGB")).save(buffer, quality=95)
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["photo.heic", "photo.HEIF", "iphone-saved-as.jpg"])
def test_heic_is_decoded_whatever_its_name(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(heic_bytes(scene()))
    picture = load_picture(path)
    assert picture.mode == "RGB" and picture.size == scene().size
    assert np.abs(np.asarray(picture, dtype=float) - np.asarray(scene(), dtype=float)).mean() < 8


def test_avif_is_decoded(tmp_path: Path) -> None:
    picture = load_picture(save(scene(), tmp_path / "x.avif", quality=95))
    assert picture.mode == "RGB" and picture.size == scene().size
    assert np.abs(np.asarray(picture, dtype=float) - np.asarray(scene(), dtype=float)).mean() < 8


def test_an_animated_webp_gives_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (20, 20), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.webp", save_all=True, append_images=frames[1:], lossless=True)
    assert load_picture(tmp_path / "anim.webp").getpixel((5, 5)) == (255, 0, 0)


def test_heic_without_a_decoder_names_the_format_and_the_install_command(tmp_path: Path) -> None:
    path = tmp_path / "IMG_0001.jpg"  # an iPhone photo renamed: the bytes decide
    path.write_bytes(heic_bytes(scene()))
    code = (
        "import sys\n"
        "sys.modules['pi_heif'] = sys.modules['pillow_heif'] = None  # neither plugin installed\n"
        "from edgefmnist.runtime.picture import load_picture, ImageError\n"
        "try:\n    load_picture(sys.argv[1])\nexcept ImageError as exc:\n    print(exc)\n"
    )
    message = run_python(code, str(path))
    assert message.startswith(f"{path}: a HEIC/HEIF picture") and "pip install pi-heif" in message, message
    assert "\n" not in message


# --- pixel data wider than 8 bits, and Lab ------------------------------------------------------


def test_12_bit_data_in_a_16_bit_png_spans_the_8_bit_range(tmp_path: Path) -> None:
    gray = np.asarray(scene().convert("L"))
    twelve_bit = ((gray.astype(np.uint32) * 4095 + 127) // 255).astype(np.uint16)  # 0..4095, as a 12-bit sensor
    picture = load_picture(save(Image.fromarray(twelve_bit), tmp_path / "x.png"))
    assert picture.mode == "L"
    assert np.abs(np.asarray(picture, dtype=int) - gray).max() <= 1


def test_a_float_tiff_in_0_to_1_is_scaled_by_255(tmp_path: Path) -> None:
    gray = np.asarray(scene().convert("L"))
    unit = Image.fromarray((gray / 255.0).astype(np.float32), "F")
    picture = load_picture(save(unit, tmp_path / "x.tif"))
    assert picture.mode == "L"
    assert np.abs(np.asarray(picture, dtype=int) - gray).max() <= 1


def test_float_pixels_above_255_and_nan_are_scaled_by_their_range() -> None:
    values = np.array([[0.0, 500.0, 1000.0, np.nan, -3.0]], np.float32)
    np.testing.assert_array_equal(np.asarray(to_rgb_or_l(Image.fromarray(values, "F"))), [[0, 128, 255, 0, 0]])


def wide_and_transparent_pictures() -> dict[str, Image.Image]:
    """41x37 pictures in every mode that :func:`to_rgb_or_l` flattens band by band; the wide ones peak in one row."""
    rng = np.random.default_rng(0)
    floats = rng.uniform(-50, 900, (37, 41)).astype(np.float32)
    floats[3, 5], floats[20, 7] = np.nan, 4000.0
    integers = rng.integers(0, 4096, (37, 41)).astype(np.uint16)
    integers[30, 2] = 65535
    rgba = Image.fromarray(rng.integers(0, 256, (37, 41, 4), dtype=np.uint8), "RGBA")
    palette = scene(41, 37).convert("P")
    palette.info["transparency"] = 3
    gray = scene(41, 37).convert("L")
    gray.info["transparency"] = 128
    return {
        "F": Image.fromarray(floats, "F"),
        "I;16": Image.fromarray(integers),
        "I": Image.fromarray(integers.astype(np.int32) - 100),
        "RGBA": rgba,
        "LA": rgba.convert("LA"),
        "PA": rgba.convert("PA"),
        "P-tRNS": palette,
        "L-tRNS": gray,
        "CMYK": scene(41, 37).convert("CMYK"),
        "1": scene(41, 37).convert("1"),
    }


@pytest.mark.parametrize("name", list(wide_and_transparent_pictures()))
def test_flattening_band_by_band_gives_the_whole_pictures_result(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    source = wide_and_transparent_pictures()[name]
    whole = to_rgb_or_l(source)  # 37 rows: one band
    monkeypatch.setattr(picture_module, "BAND_ROWS", 4)
    banded = to_rgb_or_l(source)  # ten bands, the last of one row
    assert (banded.mode, banded.size) == (whole.mode, whole.size) == (banded.mode, source.size)
    np.testing.assert_array_equal(np.asarray(banded), np.asarray(whole))


BYTES_PER_PIXEL = {"F": 4, "RGBA": 4, "RGB": 3, "I;16": 2, "L": 1}
GARMENT_VALUE: dict[str, float | tuple[int, ...]] = {
    "F": 0.8,
    "RGBA": (90, 60, 30, 255),
    "RGB": (90, 60, 30),
    "I;16": 48_000,
    "L": 200,
}


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(BYTES_PER_PIXEL))
def test_loading_a_40_mp_picture_costs_at_most_2_5_times_its_decoded_pixels(tmp_path: Path, mode: str) -> None:
    """Peak RSS of a fresh process over its RSS before loading, against the decoded picture's bytes. Before
    band-by-band flattening and in-place shrinking: F 7.0x, I;16 13.0x, RGBA 5.0x, RGB 2.7x, L 2.1x; now 1.6,
    2.3, 2.3, 1.4 and 1.05x."""
    size, box = (6300, 6300), (2000, 1000, 4000, 5000)
    picture = Image.new(mode, size, 0.0 if mode == "F" else 0)
    picture.paste(GARMENT_VALUE[mode], box)
    path = tmp_path / ("x.tif" if mode == "F" else "x.png")
    picture.save(path, **({"compression": "tiff_deflate"} if mode == "F" else {"compress_level": 1}))
    del picture
    code = (  # VmRSS before and VmHWM after: this program's own memory (ru_maxrss carries over the parent's)
        "import re, sys; from edgefmnist.runtime.picture import load_picture\n"
        "kib = lambda key: int(re.search(key + r':\\s+(\\d+)', open('/proc/self/status').read())[1])\n"
        "before = kib('VmRSS'); load_picture(sys.argv[1]); print(kib('VmHWM') - before)"
    )
    added = int(run_python(code, str(path))) * 1024
    decoded = size[0] * size[1] * BYTES_PER_PIXEL[mode]
    assert added <= 2.5 * decoded, f"{added / decoded:.2f}x the decoded {decoded >> 20} MiB"


def test_a_cielab_tiff_becomes_its_lightness(tmp_path: Path) -> None:
    lightness = scene().convert("L")
    neutral = Image.new("L", lightness.size, 128)  # a* = b* = 0 (Pillow stores them offset by 128)
    lab = Image.merge("LAB", (lightness, neutral, neutral))
    picture = load_picture(save(lab, tmp_path / "x.tif"))
    assert picture.mode == "L"
    np.testing.assert_array_equal(np.asarray(picture), np.asarray(lightness))


def test_a_valid_picture_in_an_unsupported_mode_is_not_called_corrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save(scene().convert("CMYK"), tmp_path / "x.tif")

    def no_conversion(image: Image.Image) -> Image.Image:
        raise ValueError(f"conversion from {image.mode} to RGB not supported")

    monkeypatch.setattr(picture_module, "to_rgb_or_l", no_conversion)
    with pytest.raises(ImageError, match="a TIFF picture in pixel mode CMYK, which is not supported") as caught:
        load_picture(path)
    assert "corrupt" not in str(caught.value)
    assert_one_line_about(caught, path)


@pytest.mark.parametrize("name", ["png-100mp", "jpeg-300mp"])
def test_a_refused_size_is_picture_too_large_from_a_file_or_from_bytes(bombs: dict[str, Path], name: str) -> None:
    from edgefmnist.runtime.picture import PictureTooLarge

    for source in (bombs[name], bombs[name].read_bytes()):
        with pytest.raises(PictureTooLarge, match=REFUSED):
            load_picture(source, name="upload")
    with pytest.raises(ImageError) as caught:
        load_picture(b"not a picture", name="upload")
    assert not isinstance(caught.value, PictureTooLarge)


# --- pipes: a path that cannot seek ---------------------------------------------------------------


def fifo_fed_with(path: Path, data: bytes) -> threading.Thread:
    """A FIFO at ``path`` that a thread fills with ``data`` once a reader opens it."""
    import os

    os.mkfifo(path)

    def feed() -> None:
        with open(path, "wb") as pipe, contextlib.suppress(BrokenPipeError):
            pipe.write(data)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    return thread


def test_a_picture_in_a_pipe_is_read_into_memory(tmp_path: Path) -> None:
    encoded = io.BytesIO()
    scene(64, 48).save(encoded, format="JPEG", quality=95)
    feeder = fifo_fed_with(tmp_path / "pipe.jpg", encoded.getvalue())
    picture = load_picture(tmp_path / "pipe.jpg")
    feeder.join(timeout=10)
    assert picture.size == (64, 48) and picture.mode == "RGB"


def test_a_pipe_longer_than_the_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(picture_module, "MAX_ENCODED_BYTES", 1000)
    fifo = tmp_path / "pipe.png"
    feeder = fifo_fed_with(fifo, bytes(5000))
    with pytest.raises(ImageError, match="more than 1,000 bytes from a pipe, refused") as caught:
        load_picture(fifo)
    feeder.join(timeout=10)
    assert_one_line_about(caught, fifo)
    monkeypatch.setattr(picture_module, "MAX_ENCODED_BYTES", 100)  # /proc/self/status holds about 1.4 kB
    with pytest.raises(ImageError, match="more than 100 bytes from a file that cannot seek to its end, refused"):
        load_picture(Path("/proc/self/status"))


def test_a_png_is_written_only_where_nothing_else_could_be_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgefmnist.runtime import png_target
    from edgefmnist.runtime.png_target import PNG_SIGNATURE, not_known_png

    (tmp_path / "old.png").write_bytes(PNG_SIGNATURE + b"rest")
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "model").write_bytes(b"\x08\x07onnx")
    assert [not_known_png(tmp_path / name) for name in ("old.png", "empty", "missing", ".")] == ["", "", "", ""]
    assert not_known_png(tmp_path / "model") == "an existing file that is not a PNG"

    def unreadable(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(png_target, "open", unreadable, raising=False)  # as a non-root user meets a 0200 file
    assert "cannot be read to tell whether it is a PNG (Permission denied)" in not_known_png(tmp_path / "old.png")


def test_an_output_name_is_judged_by_the_formats_of_pillow_and_its_heif_plugin() -> None:
    from edgefmnist.runtime.picture_formats import names_a_picture_format, names_other_than_png

    names = ("m.HEIC", "m.pdf", "m.png", "m.apng", "m.h5", "m.pt", "m")  # .h5: HDF5, a stub of data, no picture
    assert [names_a_picture_format(Path(name)) for name in names] == [True, True, True, True, False, False, False]
    assert [names_other_than_png(Path(name)) for name in names] == [True, True, False, False, True, True, False]
