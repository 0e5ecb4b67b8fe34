"""Real pictures -> Fashion-MNIST form: formats, modes, orientation, backgrounds, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgefmnist.runtime.bars import picture_inside_bars
from edgefmnist.runtime.picture import load_picture
from edgefmnist.runtime.preprocess import (
    ImageError,
    centre,
    dataset_form,
    preprocess,
    preprocess_file,
    to_dataset_form,
)
from PIL import Image


@pytest.fixture(scope="module")
def boot(fashion) -> np.ndarray:
    """Test image 0 (an ankle boot), dataset form."""
    return fashion.test.images[0]


def shop_photo(pixels: np.ndarray, scale: int = 10, margins=(40, 90, 20, 60)) -> Image.Image:
    """White background, upscaled, uneven margins: how a shop shows a product."""
    big = Image.fromarray(255 - pixels).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    left, right, top, bottom = margins
    canvas = Image.new("L", (big.width + left + right, big.height + top + bottom), 255)
    canvas.paste(big, (left, top))
    return canvas


def close_to(result: np.ndarray, expected: np.ndarray) -> bool:
    """The same object in the same place: pixel correlation of at least 0.8 (test image 0 gives 0.89)."""
    return float(np.corrcoef(result.ravel().astype(float), expected.ravel().astype(float))[0, 1]) >= 0.8


def test_dataset_form_passes_through_unchanged(tmp_path: Path, boot: np.ndarray) -> None:
    Image.fromarray(boot).save(tmp_path / "boot.png")
    np.testing.assert_array_equal(preprocess_file(tmp_path / "boot.png"), boot)


@pytest.mark.parametrize(
    "suffix, options", [(".jpg", {"quality": 85}), (".png", {}), (".webp", {"quality": 90}), (".bmp", {}), (".gif", {})]
)
def test_formats(tmp_path: Path, boot: np.ndarray, suffix: str, options: dict) -> None:
    path = tmp_path / f"boot{suffix}"
    shop_photo(boot).convert("RGB").save(path, **options)
    assert close_to(preprocess_file(path), boot)


@pytest.mark.parametrize("mode", ["L", "RGB", "CMYK", "P", "I;16"])
def test_modes(tmp_path: Path, boot: np.ndarray, mode: str) -> None:
    image = shop_photo(boot)
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image).astype(np.uint16) * 257)
    else:
        image = image.convert(mode)
    path = tmp_path / ("boot.jpg" if mode == "CMYK" else "boot.png")
    image.save(path)
    assert close_to(preprocess_file(path), boot)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparent_background_is_composited(tmp_path: Path, boot: np.ndarray, mode: str) -> None:
    photo = np.asarray(shop_photo(boot))
    rgba = np.zeros((*photo.shape, 4), np.uint8)
    rgba[..., :3] = photo[..., None]
    rgba[..., 3] = np.where(photo < 250, 255, 0)  # the background is transparent
    rgba[photo >= 250, :3] = 0  # and black under the transparency: only alpha says it is background
    image = Image.fromarray(rgba, "RGBA")
    image = image.convert("LA") if mode == "LA" else image.convert("P") if mode == "P" else image
    if mode == "P":
        image.info["transparency"] = image.getpixel((0, 0))
    image.save(tmp_path / "boot.png")
    assert close_to(preprocess_file(tmp_path / "boot.png"), boot)


def test_exif_orientation_is_applied(tmp_path: Path, boot: np.ndarray) -> None:
    upright = shop_photo(boot).convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the camera wrote
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    stored.save(tmp_path / "boot.jpg", exif=exif, quality=90)
    assert close_to(preprocess_file(tmp_path / "boot.jpg"), boot)


def test_animated_gif_uses_the_first_frame(tmp_path: Path, fashion, boot: np.ndarray) -> None:
    frames = [shop_photo(boot).convert("P"), shop_photo(fashion.test.images[1]).convert("P")]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert close_to(preprocess_file(tmp_path / "a.gif"), boot)


@pytest.mark.parametrize("value, size", [(0, (50, 40)), (255, (50, 40)), (0, (28, 28)), (40, (28, 28))])
def test_uniform_images_are_noted_and_give_a_blank_image(value: int, size: tuple[int, int]) -> None:
    result = dataset_form(Image.new("L", size, value))
    assert result.nothing_found == "no object found: the picture is nearly uniform"
    assert result.pixels.shape == (28, 28) and not result.pixels.any()


@pytest.mark.parametrize("size", [(5000, 20), (20, 5000), (800, 100), (28, 1)])
def test_extreme_aspect_ratios_are_classified(tmp_path: Path, boot: np.ndarray, size: tuple[int, int]) -> None:
    strip = shop_photo(boot).convert("RGB").resize(size)
    strip.save(tmp_path / "strip.png")
    result = preprocess(tmp_path / "strip.png")
    assert result.pixels.shape == (28, 28) and result.nothing_found == "" and result.pixels.any()


def test_a_one_pixel_file_is_nothing_found(tmp_path: Path) -> None:
    Image.new("L", (1, 1), 128).save(tmp_path / "one.png")
    result = preprocess(tmp_path / "one.png")
    assert result.nothing_found == "no object found: the picture is 1x1 pixels, smaller than 28x28"
    assert result.photo and result.pixels.shape == (28, 28) and not result.pixels.any()


def test_a_speck_on_a_plain_background_is_nothing_found() -> None:
    picture = np.full((300, 300), 128, np.uint8)
    picture[147:153, 147:153] = 0  # enough spread not to be uniform, too small to be a garment
    result = dataset_form(Image.fromarray(picture))
    assert result.nothing_found == "no object found: nothing stands out from the background"
    assert result.photo and not result.pixels.any()


@pytest.mark.parametrize("darker", [8, 14])
def test_a_faint_patch_on_paper_is_nothing_found(darker: int) -> None:
    """A shadow or a crease a few levels deep is no garment (it got Bag 1.00); 40 levels is one."""
    paper = np.full((300, 400), 240, np.uint8)
    paper[90:210, 140:260] -= darker
    result = dataset_form(Image.fromarray(paper))
    assert result.nothing_found.startswith("no object found: nothing stands out from the background (at most ")
    assert result.nothing_found.endswith(" % contrast)") and result.photo
    assert result.pixels.any()  # what was found is kept, as the training's photo views keep it
    np.testing.assert_array_equal(result.pixels, to_dataset_form(Image.fromarray(paper)))
    paper[90:210, 140:260] = 200
    assert not dataset_form(Image.fromarray(paper)).nothing_found


def test_a_faint_image_in_dataset_form_is_nothing_found() -> None:
    """Below 8 % of full scale (every Fashion-MNIST image has a pixel of 254 or more) is no object."""
    pixels = np.zeros((28, 28), np.uint8)
    pixels[10:18, 10:18] = 15
    result = dataset_form(Image.fromarray(pixels))
    assert result.nothing_found == "no object found: nothing stands out from the background (at most 6 % contrast)"
    np.testing.assert_array_equal(result.pixels, pixels)  # passed through all the same
    pixels[10:18, 10:18] = 30
    assert not dataset_form(Image.fromarray(pixels)).nothing_found  # 12 %


def test_a_garments_contrast_is_scaled_by_its_99th_percentile() -> None:
    """A grey garment (contrast 0.25 to its floor) with a darker band (0.5) on 5 % of it: the
    band is the 99th percentile, so the rest of the garment is half of 255."""
    picture = np.full((300, 400, 3), 200, np.uint8)
    picture[60:240, 140:260] = 150
    picture[60:69, 140:260] = 100
    pixels = dataset_form(Image.fromarray(picture)).pixels
    assert np.median(pixels[pixels > 0]) == pytest.approx(127.5, abs=1)


@pytest.mark.parametrize("shape", [(28, 27), (27, 28)])
def test_an_odd_margin_puts_its_extra_pixel_top_or_left(shape: tuple[int, int]) -> None:
    """As the dataset centred its images: a 27-pixel side leaves row / column 0 empty."""
    mask = np.ones(shape, bool)
    canvas = centre(255.0 * mask, mask)
    empty = canvas[:, 0] if shape[1] == 27 else canvas[0]
    assert not empty.any() and (canvas == 255).sum() == 27 * 28


@pytest.mark.parametrize("size", [(3, 2), (10, 10), (27, 27), (27, 5)])
def test_a_picture_smaller_than_the_networks_input_is_nothing_found(boot: np.ndarray, size: tuple[int, int]) -> None:
    """Fewer pixels than 28 on the longer side hold no garment to find (noise there got a confident label)."""
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (*size[::-1], 3), dtype=np.uint8))
    for picture in (noise, shop_photo(boot).resize(size)):
        result = dataset_form(picture)
        assert result.nothing_found == f"no object found: the picture is {size[0]}x{size[1]} pixels, smaller than 28x28"
        assert result.photo and not result.pixels.any()
    assert not dataset_form(shop_photo(boot).resize((28, 12))).nothing_found  # 28 on the longer side is enough


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b""), "not an image"),
        (lambda p: p.write_text("just text"), "not an image"),
        (lambda p: p.write_bytes(p.with_suffix(".ok").read_bytes()[:300]), "corrupt or truncated"),
    ],
)
def test_bad_files_raise_a_one_line_error_naming_them(tmp_path: Path, boot, make, message: str) -> None:
    shop_photo(boot).save(tmp_path / "x.ok", format="PNG")
    path = tmp_path / "x.png"
    make(path)
    with pytest.raises(ImageError, match=message) as caught:
        load_picture(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_decompression_bomb_is_refused(tmp_path: Path) -> None:
    Image.new("1", (10_000, 10_000)).save(tmp_path / "bomb.png")  # 100 Mpx, a few KiB on disk
    with pytest.raises(ImageError, match="decompression bomb"):
        load_picture(tmp_path / "bomb.png")


def test_dataset_images_touching_the_edges_pass_through_unchanged(fashion) -> None:
    """Garments that fill the frame give a bright border mean; they are still in dataset form."""
    from edgefmnist.runtime.preprocess import border

    bright = [image for image in fashion.test.images if border(image.astype(float)).mean() >= 60]
    assert len(bright) == 8
    for image in bright:
        np.testing.assert_array_equal(to_dataset_form(Image.fromarray(image)), image)


def test_a_picture_given_as_bytes_is_preprocessed_as_its_file(tmp_path: Path, boot: np.ndarray) -> None:
    shop_photo(boot).save(tmp_path / "boot.jpg", quality=90)
    encoded = (tmp_path / "boot.jpg").read_bytes()
    from_bytes = preprocess(encoded, name="<stdin>")
    np.testing.assert_array_equal(from_bytes.pixels, preprocess_file(tmp_path / "boot.jpg"))
    assert from_bytes.nothing_found == ""
    with pytest.raises(ImageError, match=r"^<stdin>: corrupt or truncated image"):
        preprocess(encoded[:200], name="<stdin>")
    with pytest.raises(ImageError, match=r"^<bytes>: not an image Pillow can read"):
        preprocess(b"not a picture")


def test_preprocessing_from_threads_changes_no_global_state(tmp_path: Path, boot: np.ndarray) -> None:
    """8 threads preprocess photos and blank pictures while warnings filters stay as the host set them."""
    import threading
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    shop_photo(boot).convert("RGB").save(tmp_path / "boot.png")
    Image.new("L", (60, 40), 200).save(tmp_path / "blank.png")
    expected = {name: preprocess(tmp_path / name) for name in ("boot.png", "blank.png")}
    filters_before = list(warnings.filters)
    barrier = threading.Barrier(8)

    def run(i: int) -> bool:
        barrier.wait()
        name = ("boot.png", "blank.png")[i % 2]
        same = True
        for _ in range(5):
            result = preprocess(tmp_path / name)
            same &= result.nothing_found == expected[name].nothing_found
            same &= bool(np.array_equal(result.pixels, expected[name].pixels))
        return same

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(run, range(8)))
    assert expected["blank.png"].nothing_found and not expected["boot.png"].nothing_found
    assert warnings.filters == filters_before


def with_bars(picture: np.ndarray, bars: str, colour: int, ratio: float = 1.6) -> np.ndarray:
    """uint8 ``[H, W, 3]`` centred on a canvas ``ratio`` times as long across the bars, in grey level ``colour``."""
    height, width = picture.shape[:2]
    grown = (round(height * ratio), width) if bars == "top-bottom" else (height, round(width * ratio))
    canvas = np.full((*grown, 3), colour, np.uint8)
    top, left = (grown[0] - height) // 2, (grown[1] - width) // 2
    canvas[top : top + height, left : left + width] = picture
    return canvas


def garment_on(backdrop: tuple[int, int, int], size=(120, 90), spans_height: bool = False) -> np.ndarray:
    """A dark, textured garment on a plain backdrop; ``spans_height``: two trouser legs from the top to the bottom."""
    rng = np.random.default_rng(0)
    picture = np.empty((*size, 3), np.uint8)
    picture[:] = backdrop
    cloth = rng.integers(30, 90, size + (3,), dtype=np.uint8)
    rows = slice(0, size[0]) if spans_height else slice(size[0] // 4, 3 * size[0] // 4)
    for cols in (slice(size[1] // 5, 2 * size[1] // 5), slice(3 * size[1] // 5, 4 * size[1] // 5)):
        picture[rows, cols] = cloth[rows, cols]
    return picture


@pytest.mark.parametrize("bars, colour", [("top-bottom", 0), ("left-right", 255), ("top-bottom", 40)])
def test_letterbox_and_pillarbox_bars_are_found(bars: str, colour: int) -> None:
    picture = np.random.default_rng(1).integers(60, 200, (100, 80, 3), dtype=np.uint8)  # a photo: no flat line
    padded = with_bars(picture, bars, colour)
    left, top, right, bottom = picture_inside_bars(padded)
    np.testing.assert_array_equal(padded[top:bottom, left:right], picture)


@pytest.mark.parametrize("colour, ink", [(0, 255), (255, 0)])
def test_a_photo_in_a_phone_screenshot_is_found_under_the_status_bar(colour: int, ink: int) -> None:
    picture = np.random.default_rng(6).integers(60, 200, (90, 120, 3), dtype=np.uint8)  # 4:3, fitted to the width
    screen = np.full((260, 120, 3), colour, np.uint8)  # 19.5:9 in portrait
    screen[85:175] = picture
    screen[3:7, 8:20] = screen[3:7, 95:115] = ink  # the status bar: a clock and icons
    screen[254:256, 45:75] = ink  # the gesture bar
    left, top, right, bottom = picture_inside_bars(screen)
    np.testing.assert_array_equal(screen[top:bottom, left:right], picture)


@pytest.mark.parametrize(
    "picture, why",
    [
        (garment_on((250, 250, 250)), "a white backdrop: the garment's first line is mostly backdrop"),
        (garment_on((250, 250, 250), spans_height=True), "legs from top to bottom: the backdrop fills the rest"),
        (with_bars(garment_on((250, 250, 250)), "top-bottom", 0, ratio=1.04), "bars thinner than 5 % of the side"),
        (
            with_bars(np.random.default_rng(7).integers(60, 200, (100, 80, 3), dtype=np.uint8), "top-bottom", 0)[30:],
            "one band, not a pair: a dark night beyond a lit floor",
        ),
        (with_bars(np.full((110, 300, 3), 90, np.uint8), "top-bottom", 250, 3.6), "a bag spanning a white backdrop"),
        (with_bars(np.full((110, 300, 3), 90, np.uint8), "top-bottom", 5, 3.6), "a bag spanning a black backdrop"),
        (
            with_bars(np.random.default_rng(5).integers(60, 200, (30, 40, 3), dtype=np.uint8), "top-bottom", 0),
            "a 4:3 picture smaller than a padded photo",
        ),
        (
            with_bars(np.random.default_rng(2).integers(60, 200, (30, 80, 3), dtype=np.uint8), "top-bottom", 0, 4.2),
            "less than a quarter of the side would be left",
        ),
    ],
)
def test_no_bars_are_found_where_there_are_none(picture: np.ndarray, why: str) -> None:
    assert picture_inside_bars(picture) == (0, 0, picture.shape[1], picture.shape[0]), why


def test_a_coloured_band_or_a_soft_shadow_is_no_bar() -> None:
    picture = np.random.default_rng(3).integers(60, 200, (100, 80, 3), dtype=np.uint8)
    coloured = with_bars(picture, "top-bottom", 0)
    coloured[(coloured == 0).all(axis=2)] = (200, 40, 40)  # a red band is a floor or a wall, not padding
    assert picture_inside_bars(coloured) == (0, 0, 80, 160)
    paper = np.full((100, 100, 3), 240, np.uint8)
    paper[30:60, 30:60] = 60  # a garment
    paper[:, 70:90] = np.linspace(240, 130, 20).astype(np.uint8)[None, :, None]  # a shadow's soft edge
    paper[:, 90:] = 130
    assert picture_inside_bars(paper) == (0, 0, 100, 100)


def test_a_padded_photo_is_preprocessed_as_the_photo(tmp_path: Path, fashion, monkeypatch) -> None:
    from edgefmnist.photo_render import render_photo

    rendered = render_photo(fashion.test.images[1], np.random.default_rng(4), angle=0.0)
    photo = np.asarray(rendered.convert("RGB").resize((120, 160)))  # 3:4; padded, still below the loaded size
    Image.fromarray(photo).save(tmp_path / "photo.png")
    Image.fromarray(with_bars(photo, "top-bottom", 0)).save(tmp_path / "padded.png")
    np.testing.assert_array_equal(preprocess(tmp_path / "padded.png").pixels, preprocess(tmp_path / "photo.png").pixels)
    import edgefmnist.runtime.preprocess as module

    monkeypatch.setattr(module, "picture_inside_bars", lambda rgb: (0, 0, rgb.shape[1], rgb.shape[0]))
    untrimmed = preprocess(tmp_path / "padded.png").pixels
    assert not np.array_equal(untrimmed, preprocess(tmp_path / "photo.png").pixels)  # the bars change what is found


def test_bars_are_found_around_most_real_photos() -> None:
    """The regression set's photos (``tests/data/photos``), padded losslessly: the photo's own box is found."""
    folder = Path(__file__).parent / "data" / "photos"
    photos = [np.asarray(load_picture(path).convert("RGB")) for path in sorted(folder.glob("*/*.jpg"))]
    # measured 0.877 / 0.867 / 0.753 (black bars above and below, white or dark grey bars beside); 97 of
    # photos-dev's 1,200 photos have no camera's aspect ratio (cropped), and are never trimmed
    for bars, colour, floor in (("top-bottom", 0, 0.85), ("left-right", 255, 0.84), ("left-right", 40, 0.72)):
        found = []
        for photo in photos:
            padded = with_bars(photo, bars, colour)
            left, top, right, bottom = picture_inside_bars(padded)
            found.append(np.array_equal(padded[top:bottom, left:right], photo))
        assert np.mean(found) >= floor, (bars, colour, np.mean(found))


@pytest.mark.parametrize("mode", ["RGBA", "L-tRNS"])
def test_a_transparent_picture_given_as_an_image_is_composited_as_its_file(
    mode: str, tmp_path: Path, boot: np.ndarray
) -> None:
    """A dark boot on transparent black, 28x28: not in dataset form once composited, as its PNG is not."""
    dark = np.where(boot > 0, 255 - boot, 0).astype(np.uint8)  # black where transparent
    if mode == "RGBA":
        picture = Image.fromarray(np.dstack([dark] * 3 + [np.where(boot > 0, 255, 0).astype(np.uint8)]), "RGBA")
    else:
        picture = Image.fromarray(dark, "L")
        picture.info["transparency"] = 0
    picture.save(tmp_path / "cut-out.png")
    from_file = preprocess(tmp_path / "cut-out.png")
    from_image = dataset_form(picture)
    assert from_file.photo and from_image.photo
    np.testing.assert_array_equal(from_image.pixels, from_file.pixels)


def test_preprocess_file_raises_one_line_for_any_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgefmnist.runtime import preprocess as preprocess_module

    def failing(image: Image.Image):  # as an OpenCV error would
        raise RuntimeError("OpenCV(4.12.0) error\nsecond line")

    Image.new("L", (50, 40), 128).save(tmp_path / "x.png")
    monkeypatch.setattr(preprocess_module, "dataset_form", failing)
    with pytest.raises(
        preprocess_module.EdgeFmnistError, match=r"x\.png: cannot preprocess this picture \(RuntimeError"
    ):
        preprocess_file(tmp_path / "x.png")
