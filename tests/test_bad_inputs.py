"""Hostile and odd inputs through the real CLI (in this process unless the case needs its own environment).

Every refused input must give: a non-zero exit, exactly one line on stderr that names the
file and the reason, no traceback, and no file written or changed. Odd but valid pictures
must give a prediction (with a warning where nothing was found), never a crash.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from edgefmnist.runtime.predictor import default_model_path
from helpers import encoded, idx_bytes, png_declaring, png_with_huge_text, run, run_in_process
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from edgefmnist import spec

SHIPPED = default_model_path().parent
MLP_PROPS = {p.key: p.value for p in onnx.load(str(SHIPPED / "mlp.onnx")).metadata_props}


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


def assert_refused(
    args: list[str], folder: Path, names: str, reason: str, code: int = 1, env: dict | None = None
) -> None:
    """Run the CLI; assert the refusal contract (one line naming ``names`` and ``reason``, nothing written)."""
    before = snapshot(folder)
    result = run(*args, env=env) if env else run_in_process(*args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and lines[0].startswith("edgefmnist: error: "), result.stderr
    assert names in lines[0] and reason.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert snapshot(folder) == before


# ---------------------------------------------------------------- models


def edge_model(
    path: Path,
    *,
    dtype: int = TensorProto.FLOAT,
    size: int = 28,
    classes: int = 10,
    op: str = "MatMul",
    opset: int = 17,
    ir_version: int = 8,
    props: dict[str, str] | None = None,
    external: str | None = None,
    weight: float = 0.0,
) -> Path:
    """A small model with edgefmnist's signature (image -> logits, probabilities), each part forgeable."""
    weights = helper.make_tensor("w", dtype, [size * size, classes], np.full(size * size * classes, weight).tolist())
    if external is not None:
        del weights.float_data[:], weights.double_data[:]
        weights.data_location = TensorProto.EXTERNAL
        for key, value in {"location": external, "offset": "0", "length": str(size * size * classes * 4)}.items():
            entry = weights.external_data.add()
            entry.key, entry.value = key, value
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["image"], ["flat"]),
            helper.make_node(op, ["flat", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "g",
        [helper.make_tensor_value_info("image", dtype, ["batch", 1, size, size])],
        [
            helper.make_tensor_value_info("logits", dtype, ["batch", classes]),
            helper.make_tensor_value_info("probabilities", dtype, ["batch", classes]),
        ],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)
    helper.set_model_props(model, MLP_PROPS if props is None else props)
    path.write_bytes(model.SerializeToString())
    return path


def with_props(**changes: str) -> dict[str, str]:
    return {**MLP_PROPS, **changes}


def outside_weights(tmp_path: Path) -> Path:
    secret = tmp_path / "outside" / "weights.bin"
    secret.parent.mkdir(exist_ok=True)
    secret.write_bytes(np.zeros(784 * 10, np.float32).tobytes())
    return secret


def symlinked_weights(model_dir: Path, tmp_path: Path) -> str:
    (model_dir / "link.bin").symlink_to(outside_weights(tmp_path))
    return "link.bin"


def runs_into_a_shape_error(path: Path) -> None:
    """The int8 CNN with one convolution's dilation changed: it loads, then fails at run time (found by fuzzing)."""
    model = onnx.load(str(SHIPPED / "cnn.int8.onnx"))
    conv = [node for node in model.graph.node if node.op_type == "Conv"][1]
    next(a for a in conv.attribute if a.name == "dilations").ints[:] = [3, 1]
    onnx.save(model, str(path))


def infinite_first_conv_weight(path: Path) -> None:
    """The CNN with one weight of its first convolution +inf: a black image, negative once
    normalised, gives -inf there, which the ReLU turns into 0; a white one does not."""
    model = onnx.load(str(SHIPPED / "cnn.onnx"))
    conv = next(node for node in model.graph.node if node.op_type == "Conv")
    initializer = next(tensor for tensor in model.graph.initializer if tensor.name == conv.input[1])
    weights = numpy_helper.to_array(initializer).copy()
    weights[0, 0, 1, 1] = np.inf
    initializer.CopyFrom(numpy_helper.from_array(weights, initializer.name))
    onnx.save(model, str(path))


NINE_CLASS_TABLES = {
    "method": "temperature",
    "temperature": 1.0,
    "class_max_logit_quantiles": [{"levels": [0.0, 1.0], "values": [1.0, 2.0]}] * 9,
}
MODEL_CASES = {
    "0-byte": (lambda d, t: d.joinpath("m.onnx").write_bytes(b""), "empty file"),
    "a FIFO": (lambda d, t: os.mkfifo(d / "m.onnx"), "a FIFO, not a regular file, expected an .onnx file"),
    "a device": (lambda d, t: d.joinpath("m.onnx").symlink_to("/dev/zero"), "a device, not a regular file"),
    "a checkpoint named .onnx": (  # export's own output name would overwrite it: the hint names another
        lambda d, t: shutil.copy(SHIPPED / "mlp.pt", d / "m.onnx"),
        "m.onnx --out ",
    ),
    "truncated": (
        lambda d, t: d.joinpath("m.onnx").write_bytes((SHIPPED / "mlp.onnx").read_bytes()[:5000]),
        "not an ONNX model",
    ),
    "random bytes": (
        lambda d, t: d.joinpath("m.onnx").write_bytes(np.random.default_rng(0).bytes(4096)),
        "not an ONNX model",
    ),
    "wrong input shape": (
        lambda d, t: edge_model(d / "m.onnx", size=32),
        "input must be float or uint8 [N, 1, 28, 28]",
    ),
    "wrong input dtype": (
        lambda d, t: edge_model(d / "m.onnx", dtype=TensorProto.DOUBLE),
        "input must be float or uint8 [N, 1, 28, 28]",
    ),
    "9 classes": (lambda d, t: edge_model(d / "m.onnx", classes=9), "9 outputs for 10 class names"),
    "11 classes": (
        lambda d, t: edge_model(
            d / "m.onnx", classes=11, props=with_props(class_names=json.dumps([*spec.CLASS_NAMES, "Hat"]))
        ),
        "11 class names for the network's 10 outputs",
    ),
    "class names not a list": (
        lambda d, t: edge_model(d / "m.onnx", props=with_props(class_names='"abc"')),
        "metadata: class_names is not a list of names",
    ),
    "a class name twice": (
        lambda d, t: edge_model(d / "m.onnx", props=with_props(class_names=json.dumps(["Bag"] * 10))),
        "the class name 'Bag' is given twice",
    ),
    "two class names one to a photo set": (
        lambda d, t: edge_model(
            d / "m.onnx", props=with_props(class_names=json.dumps([*spec.CLASS_NAMES[:9], "t-shirt top"]))
        ),
        "the class names 'T-shirt/top' and 't-shirt top' are one name to a photo set",
    ),
    "9 class typicality tables": (
        lambda d, t: edge_model(d / "m.onnx", props=with_props(calibration=json.dumps(NINE_CLASS_TABLES))),
        "class_max_logit_quantiles has 9 tables for 10 classes",
    ),
    "unknown op": (lambda d, t: edge_model(d / "m.onnx", op="NoSuchOperator"), "onnxruntime cannot load it"),
    "loads but cannot run": (lambda d, t: runs_into_a_shape_error(d / "m.onnx"), "onnxruntime failed to run it"),
    "NaN weights": (lambda d, t: edge_model(d / "m.onnx", weight=float("nan")), "gives NaN or infinite outputs"),
    "infinite weights": (lambda d, t: edge_model(d / "m.onnx", weight=float("inf")), "gives NaN or infinite outputs"),
    "an infinite weight a black image hides": (
        lambda d, t: infinite_first_conv_weight(d / "m.onnx"),
        "gives NaN or infinite outputs for a black or a white image",
    ),
    "newer opset and IR, metadata silent": (  # the guard reads the graph's own opset and IR version
        lambda d, t: edge_model(d / "m.onnx", opset=40, ir_version=30),
        "opset 40 / IR 30 is newer than any onnxruntime this toolkit knows",
    ),
    "needs a newer onnxruntime": (
        lambda d, t: edge_model(d / "m.onnx", props=with_props(min_onnxruntime='"9.0.0"')),
        "needs onnxruntime >= 9.0.0",
    ),
    "missing metadata": (lambda d, t: edge_model(d / "m.onnx", props={}), "no edgefmnist metadata"),
    "malformed metadata": (
        lambda d, t: edge_model(d / "m.onnx", props=with_props(class_names="['T-shirt'")),
        "malformed metadata",
    ),
    "metadata lacks a key": (
        lambda d, t: edge_model(d / "m.onnx", props={k: v for k, v in MLP_PROPS.items() if k != "input"}),
        "lacks input",
    ),
    "external data ../": (
        lambda d, t: (outside_weights(t), edge_model(d / "m.onnx", external="../outside/weights.bin")),
        "outside the model's folder",
    ),
    "external data absolute": (
        lambda d, t: edge_model(d / "m.onnx", external=str(outside_weights(t))),
        "outside the model's folder",
    ),
    "external data symlink": (
        lambda d, t: edge_model(d / "m.onnx", external=symlinked_weights(d, t)),
        "outside the model's folder",
    ),
}


@pytest.fixture(scope="module")
def good_png(tmp_path_factory: pytest.TempPathFactory, fashion) -> Path:
    path = tmp_path_factory.mktemp("good") / "boot.png"
    Image.fromarray(fashion.test.images[0]).save(path)
    return path


@pytest.mark.parametrize("case", MODEL_CASES)
def test_bad_model_is_refused(case: str, tmp_path: Path, good_png: Path) -> None:
    build, reason = MODEL_CASES[case]
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    build(model_dir, tmp_path)
    model = model_dir / "m.onnx"
    assert_refused(["infer", "--model", str(model), "--image", str(good_png)], tmp_path, str(model), reason)
    assert_refused(["evaluate", str(model)], tmp_path, str(model), reason)


# ---------------------------------------------------------------- checkpoints


class RunsCode:
    marker = Path("/nonexistent")  # set by each test: a file the payload would create

    def __reduce__(self):
        return os.system, (f"touch {RunsCode.marker}",)


def checkpoint_payload() -> dict:
    return torch.load(SHIPPED / "mlp.pt", weights_only=True)


def save_payload(path: Path, payload: object) -> None:
    torch.save(payload, path)


CHECKPOINT_CASES = {
    "code-executing pickle": (
        lambda p: save_payload(p, {"format": "edgefmnist-checkpoint", "x": RunsCode()}),
        "refused",
    ),
    "another architecture": (
        lambda p: save_payload(p, {**checkpoint_payload(), "net_config": {"arch": "resnet18"}}),
        "the network or recipe it describes is invalid (unknown architecture",
    ),
    "no net_config": (
        lambda p: save_payload(p, {k: v for k, v in checkpoint_payload().items() if k != "net_config"}),
        "not a whole edgefmnist checkpoint (no 'net_config')",
    ),
    "a net_config without its architecture": (
        lambda p: save_payload(p, {**checkpoint_payload(), "net_config": {}}),
        "the network or recipe it describes is invalid (net_config has no 'arch')",
    ),
    "a recipe with a field of another version": (
        lambda p: save_payload(p, {**checkpoint_payload(), "recipe": {**checkpoint_payload()["recipe"], "warmup": 3}}),
        "the network or recipe it describes is invalid (recipe has an unknown field 'warmup')",
    ),
    "a recipe that is a list": (
        lambda p: save_payload(p, {**checkpoint_payload(), "recipe": [1, 2]}),
        "the network or recipe it describes is invalid (recipe is a list, not a dict)",
    ),
    "a recipe with an unknown optimizer": (
        lambda p: save_payload(
            p, {**checkpoint_payload(), "recipe": {**checkpoint_payload()["recipe"], "optimizer": "lion"}}
        ),
        "the network or recipe it describes is invalid (unknown optimizer 'lion'",
    ),
    "CNN weights, MLP config": (
        lambda p: save_payload(
            p, {**checkpoint_payload(), "state_dict": torch.load(SHIPPED / "cnn.pt", weights_only=True)["state_dict"]}
        ),
        "weights do not fit the described network (Missing key(s) in state_dict: ",
    ),
    "truncated": (
        lambda p: p.write_bytes((SHIPPED / "mlp.pt").read_bytes()[:40000]),
        "not a readable PyTorch checkpoint",
    ),
    "0-byte": (lambda p: p.write_bytes(b""), "not a readable PyTorch checkpoint"),
    "weights of a diverged run": (
        lambda p: save_payload(
            p,
            {
                **checkpoint_payload(),
                "state_dict": {k: v * float("nan") for k, v in checkpoint_payload()["state_dict"].items()},
            },
        ),
        "weights hold NaN or infinity",
    ),
    "3 class names": (
        lambda p: save_payload(p, {**checkpoint_payload(), "class_names": ["a", "b", "c"]}),
        "3 class names for the network's 10 outputs",
    ),
    "a class name twice": (
        lambda p: save_payload(p, {**checkpoint_payload(), "class_names": ["a"] * 10}),
        "the class name 'a' is given twice",
    ),
    "no history": (
        lambda p: save_payload(p, {k: v for k, v in checkpoint_payload().items() if k != "history"}),
        "not a whole edgefmnist checkpoint (no 'history')",
    ),
}


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_bad_checkpoint_is_refused(case: str, tmp_path: Path) -> None:
    RunsCode.marker = tmp_path.parent / f"{tmp_path.name}-payload-ran"
    build, reason = CHECKPOINT_CASES[case]
    checkpoint = tmp_path / "bad.pt"
    build(checkpoint)
    assert_refused(["export", str(checkpoint), "--out", str(tmp_path / "out.onnx")], tmp_path, str(checkpoint), reason)
    assert_refused(["evaluate", str(checkpoint)], tmp_path, str(checkpoint), reason)
    assert not RunsCode.marker.exists()  # the payload never ran


# ---------------------------------------------------------------- images


def shirt(fashion) -> Image.Image:
    return Image.fromarray(fashion.test.images[1])


TEXT_BOMB = "refused, its text or ICC-profile chunks hold more than Pillow's limits (a decompression bomb?)"
BAD_IMAGES = {
    "0-byte": (lambda f: b"", "empty file, not an image"),
    "text renamed .png": (lambda f: b"just some text, honestly\n", "not an image"),
    "truncated PNG": (lambda f: encoded(shirt(f).resize((280, 280)))[:600], "corrupt or truncated"),
    "truncated JPEG": (lambda f: encoded(shirt(f).resize((280, 280)), "JPEG")[:700], "corrupt or truncated"),
    "decompression bomb": (lambda f: png_declaring(30_000, 30_000), "decompression bomb"),
    "oversized text chunk": (lambda f: png_with_huge_text(shirt(f)), TEXT_BOMB),  # Pillow's MAX_TEXT_CHUNK
    "oversized text chunk after the pixels": (lambda f: png_with_huge_text(shirt(f), after_pixels=True), TEXT_BOMB),
}


@pytest.mark.parametrize("case", BAD_IMAGES)
def test_bad_image_is_refused(case: str, tmp_path: Path, fashion) -> None:
    make, reason = BAD_IMAGES[case]
    picture = tmp_path / "picture.png"
    picture.write_bytes(make(fashion))
    args = [
        "infer",
        "--model",
        str(SHIPPED / "mlp.onnx"),
        "--image",
        str(picture),
        "--save-preprocessed",
        str(tmp_path / "seen.png"),
    ]
    assert_refused(args, tmp_path, str(picture), reason)


def exif_rotated_jpeg(image: Image.Image) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    return encoded(image.rotate(90, expand=True).convert("RGB"), "JPEG", exif=exif.tobytes(), quality=95)


def animated_gif(fashion) -> bytes:
    frames = [Image.fromarray(fashion.test.images[i]).convert("P") for i in (1, 0, 2)]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def heic(image: Image.Image) -> bytes:
    import pillow_heif

    buffer = io.BytesIO()
    pillow_heif.from_pillow(image.convert("RGB")).save(buffer, quality=-1)  # lossless
    return buffer.getvalue()


def twelve_bit_png(image: Image.Image) -> bytes:
    """A 16-bit PNG holding 12-bit data (0..4095), as a camera or a scanner writes it."""
    return encoded(Image.fromarray(((np.asarray(image).astype(np.uint32) * 4095 + 127) // 255).astype(np.uint16)))


def cielab_tiff(image: Image.Image) -> bytes:
    neutral = Image.new("L", image.size, 128)  # a* = b* = 0
    return encoded(Image.merge("LAB", (image, neutral, neutral)), "TIFF")


def animated_webp(image: Image.Image) -> bytes:
    return encoded(image, "WEBP", save_all=True, append_images=[Image.new("L", image.size, 0)], lossless=True)


PHONE_AND_WIDE: tuple[str, ...] = ("12-bit data in a 16-bit PNG", "float TIFF in 0..1", "CIELab TIFF")
PHONE_AND_WIDE += ("HEIC", "HEIC named .jpg", "AVIF", "animated WebP")
ODD_IMAGES = {  # suffix, builder, warning expected
    "12-bit data in a 16-bit PNG": (".png", twelve_bit_png, False),
    "float TIFF in 0..1": (
        ".tif",
        lambda im: encoded(Image.fromarray(np.asarray(im) / np.float32(255), "F"), "TIFF"),
        False,
    ),
    "CIELab TIFF": (".tif", cielab_tiff, False),
    "HEIC": (".heic", heic, False),
    "HEIC named .jpg": (".jpg", heic, False),
    "AVIF": (".avif", lambda im: encoded(im, "AVIF", quality=100), False),
    "animated WebP": (".webp", animated_webp, False),
    "16-bit": (".png", lambda im: encoded(Image.fromarray(np.asarray(im).astype(np.uint16) * 257)), False),
    "palette": (".png", lambda im: encoded(im.convert("P")), False),
    "palette with transparency": (".png", lambda im: encoded(im.convert("P"), transparency=0), False),
    "LA": (".png", lambda im: encoded(im.convert("LA")), False),
    "RGBA": (".png", lambda im: encoded(im.convert("RGBA")), False),
    "CMYK JPEG": (".jpg", lambda im: encoded(im.convert("CMYK"), "JPEG"), False),
    "EXIF-rotated JPEG": (".jpg", exif_rotated_jpeg, False),
    "1x1": (".png", lambda im: encoded(Image.new("L", (1, 1), 200)), True),  # under 28 px: nothing found
    "all white": (".png", lambda im: encoded(Image.new("L", (300, 200), 255)), True),
    "all black": (".png", lambda im: encoded(Image.new("L", (300, 200), 0)), True),
}


@pytest.mark.parametrize("case", [*ODD_IMAGES, "animated GIF"])
def test_odd_but_valid_image_gets_a_prediction(case: str, tmp_path: Path, fashion) -> None:
    if case == "animated GIF":
        picture, warns = tmp_path / "picture.gif", False
        picture.write_bytes(animated_gif(fashion))
    else:
        suffix, make, warns = ODD_IMAGES[case]
        picture = tmp_path / f"picture{suffix}"
        picture.write_bytes(make(shirt(fashion)))
    seen = tmp_path / "seen.png"
    args = ["infer", "--model", str(SHIPPED / "mlp.onnx"), "--image", str(picture), "--save-preprocessed", str(seen)]
    result = run_in_process(*args, "--json")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    [prediction] = json.loads(result.stdout)
    probabilities = [entry["probability"] for entry in prediction["top_k"]]
    assert prediction["label"] in spec.CLASS_NAMES and np.all(np.isfinite(probabilities))
    assert ("no object found" in result.stderr) == warns and ("warning" in prediction) == warns
    if case in ("animated GIF", "EXIF-rotated JPEG", "palette", "RGBA", "LA", "16-bit", *PHONE_AND_WIDE):
        assert prediction["label"] == "Pullover"  # test image 1, the first frame, upright again
    if case in PHONE_AND_WIDE and case != "AVIF":  # lossless: the network sees test image 1 itself
        difference = np.abs(np.asarray(Image.open(seen), dtype=int) - fashion.test.images[1])
        assert difference.max() <= 1


# ---------------------------------------------------------------- over-limit pictures from many threads

REPETITIONS = 20


def jpeg_header_claiming(width: int, height: int) -> bytes:
    data = bytearray(encoded(Image.new("L", (16, 16), 128), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_eight_threads_refuse_every_over_limit_picture_every_time(tmp_path: Path, fashion) -> None:
    """8 threads preprocess over-limit pictures (files and bytes) 20 times each, while the host's own threads
    swap the warnings filters and Pillow's pixel limit: every one is refused, every good picture classified."""
    import threading
    import warnings

    from edgefmnist.runtime.picture import ImageError
    from edgefmnist.runtime.preprocess import preprocess

    over_limit: dict[str, bytes] = {
        "41mp.png": png_declaring(8000, 5125),  # over this toolkit's 40 MP, under Pillow's 89 MP warning
        "100mp.png": png_declaring(10000, 10000),  # where Pillow itself would only warn
        "900mp.png": png_declaring(30000, 30000),
        "300mp.jpg": jpeg_header_claiming(20000, 15000),  # over the 250 MP camera limit for JPEG
    }
    for name, data in over_limit.items():
        (tmp_path / name).write_bytes(data)
    good = encoded(Image.fromarray(fashion.test.images[1]))
    expected = preprocess(good).pixels
    pillow_limit, filters = Image.MAX_IMAGE_PIXELS, list(warnings.filters)
    counts = {"refused": 0, "accepted": 0, "wrong": 0}
    lock, stop = threading.Lock(), threading.Event()
    barrier = threading.Barrier(8 + 1)

    def worker(index: int) -> None:
        barrier.wait()
        for repetition in range(REPETITIONS):
            for name, data in over_limit.items():
                source = data if (index + repetition) % 2 else tmp_path / name
                try:
                    preprocess(source)
                    outcome = "accepted"
                except ImageError as exc:
                    outcome = "refused" if "decompression bomb" in str(exc) else "wrong"
                with lock:
                    counts[outcome] += 1
            if not np.array_equal(preprocess(good).pixels, expected):
                with lock:
                    counts["wrong"] += 1

    def host() -> None:  # an application that uses catch_warnings and its own Pillow limit in other threads
        barrier.wait()
        while not stop.is_set():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                Image.MAX_IMAGE_PIXELS = None  # the host switches Pillow's own check off for its own reasons
                Image.MAX_IMAGE_PIXELS = pillow_limit

    hosts = [threading.Thread(target=host)]  # one: catch_warnings is not safe between two threads either
    workers = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    try:
        for thread in hosts + workers:
            thread.start()
        for thread in workers:
            thread.join()
    finally:
        stop.set()
        for thread in hosts:
            thread.join()
        Image.MAX_IMAGE_PIXELS = pillow_limit
    assert counts == {"refused": 8 * REPETITIONS * len(over_limit), "accepted": 0, "wrong": 0}
    assert Image.MAX_IMAGE_PIXELS == pillow_limit and warnings.filters == filters


# ---------------------------------------------------------------- data


def corrupt_test_images(
    folder: Path, real: Path, images: bytes | None = None, labels: bytes | None = None, gzipped: bool = True
) -> None:
    """The real training files, and test files replaced by the given (corrupt) content."""
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (folder / name).symlink_to(real / name)
    good = {"images": idx_bytes(np.zeros((3, 28, 28))), "labels": idx_bytes(np.array([1, 2, 3]))}
    for kind, content in (("images", images), ("labels", labels)):
        raw = good[kind] if content is None else content
        payload = gzip.compress(raw) if gzipped or content is None else raw
        (folder / f"t10k-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz").write_bytes(payload)


def gzip_bomb() -> bytes:
    """Declares three images; inflates to 200 MiB."""
    stream = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunks = [stream.compress(idx_bytes(np.zeros((3, 28, 28))))]
    chunks += [stream.compress(b"\x00" * (1 << 20)) for _ in range(200)]
    return b"".join(chunks) + stream.flush()


DATA_CASES: dict[str, tuple[dict[str, Any], str, str]] = {
    "wrong magic": (dict(images=idx_bytes(np.zeros((3, 28, 28)), magic=0x12345678)), "images", "bad IDX magic"),
    "too many dimensions": (
        dict(images=idx_bytes(np.zeros((3, 28, 28)), magic=0x00000804, dims=(3, 28, 28, 1))),
        "images",
        "4 dimensions, expected images (3 dimensions)",
    ),
    "header counts disagree with bytes": (
        dict(images=idx_bytes(np.zeros((3, 28, 28)), dims=(5, 28, 28))),
        "images",
        "truncated data",
    ),
    "label above 9": (dict(labels=idx_bytes(np.array([1, 12, 3]))), "labels", "label 12 out of range"),
    "image/label count mismatch": (dict(labels=idx_bytes(np.array([1, 2]))), "labels", "2 labels, but"),
    "not gzip": (dict(images=b"plain bytes in a .gz file", gzipped=False), "images", "not a gzip file"),
    "truncated gzip": (
        dict(
            images=gzip.compress(idx_bytes(np.random.default_rng(0).integers(0, 256, (3, 28, 28))))[:1000],
            gzipped=False,
        ),
        "images",
        "cannot read",
    ),
    "0-byte .gz": (dict(images=b"", gzipped=False), "images", "not a gzip file"),
    "gzip bomb": (dict(images=gzip_bomb(), gzipped=False), "images", "more data than the header declares"),
}


@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_data_file_is_refused(case: str, tmp_path: Path, real_data_dir: Path) -> None:
    contents, kind, reason = DATA_CASES[case]
    folder = tmp_path / "data"
    folder.mkdir()
    corrupt_test_images(folder, real_data_dir, **contents)
    names = str(folder / f"t10k-{kind}") if kind else str(folder)
    assert_refused(["data", "--data-dir", str(folder)], tmp_path, names, reason)


def test_download_with_a_wrong_checksum_saves_nothing(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in spec.DOWNLOAD_MD5:
        (mirror / f"{name}.gz").write_bytes(gzip.compress(b"not the dataset"))
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "EDGEFMNIST_MIRROR": mirror.as_uri() + "/"}
    args = ["data", "--download", "--replace"]  # the data is present (Debian package): download it again
    assert_refused(args, tmp_path, "train-images-idx3-ubyte.gz", "checksum mismatch", env=env)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.gz*"))


# ---------------------------------------------------------------- command line


def read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write: /sys when running as root, else a chmod 555 folder."""
    if os.geteuid() == 0:
        return Path("/sys")
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    return folder


def test_unknown_flag(tmp_path: Path) -> None:
    assert_refused(["infer", "--no-such-flag"], tmp_path, "--no-such-flag", "No such option", code=2)


def test_directory_where_a_file_is_expected(tmp_path: Path, good_png: Path) -> None:
    assert_refused(
        ["infer", "--model", str(tmp_path), "--image", str(good_png)], tmp_path, str(tmp_path), "is a directory", code=2
    )
    assert_refused(
        ["evaluate", str(tmp_path)], tmp_path, "a photo set goes in --photos", "is a folder, not a model", code=2
    )


def test_output_in_a_read_only_folder(tmp_path: Path) -> None:
    target = read_only_folder(tmp_path) / "confusion.png"
    assert_refused(
        ["evaluate", str(SHIPPED / "mlp.onnx"), "--plot", str(target)], tmp_path, str(target), "cannot write"
    )
    assert not target.exists()


def test_output_path_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "plots").mkdir()
    assert_refused(
        ["evaluate", str(SHIPPED / "mlp.onnx"), "--plot", str(tmp_path / "plots")],
        tmp_path,
        str(tmp_path / "plots"),
        "is a directory",
        code=2,
    )
    shutil.rmtree(tmp_path / "plots")


def test_a_folder_where_a_file_beside_the_output_goes(tmp_path: Path) -> None:
    """The history that train writes beside its checkpoint is a file too: a folder there is a bad flag (exit 2)."""
    (tmp_path / "run.history.json").mkdir()
    assert_refused(
        ["train", "--dry-run", "--out", str(tmp_path / "run.pt")],
        tmp_path,
        str(tmp_path / "run.history.json"),
        "is a directory",
        code=2,
    )


def test_train_refuses_a_device_for_its_checkpoint(tmp_path: Path) -> None:
    """Its history and curves would land beside the device, in /dev."""
    (device := tmp_path / "null.pt").symlink_to(os.devnull)
    assert_refused(["train", "--dry-run", "--out", str(device)], tmp_path, str(device), "not a regular file", code=2)
    assert not (tmp_path / "null.history.json").exists()


def test_a_fifo_where_a_file_goes_beside_the_output_is_refused_before_the_work(tmp_path: Path) -> None:
    """Written last, it would hold the command, its work done, until some reader opened it."""
    (checkpoint := tmp_path / "m.pt").write_bytes((SHIPPED / "mlp.pt").read_bytes())
    os.mkfifo(tmp_path / "m.int8.onnx")
    assert_refused(
        ["export", str(checkpoint), "--quantize", "dynamic"], tmp_path, "m.int8.onnx", "not a regular file", code=2
    )
    os.mkfifo(tmp_path / "run.curves.png")
    assert_refused(
        ["train", "--dry-run", "--out", str(tmp_path / "run.pt")],
        tmp_path,
        "run.curves.png",
        "not a regular file",
        code=2,
    )


def test_an_int8_name_that_leads_to_the_fp32_model_is_refused(tmp_path: Path) -> None:
    (checkpoint := tmp_path / "m.pt").write_bytes((SHIPPED / "mlp.pt").read_bytes())
    (tmp_path / "m.onnx").write_bytes(b"the previous fp32 model")
    (tmp_path / "m.int8.onnx").symlink_to("m.onnx")
    assert_refused(
        ["export", str(checkpoint), "--quantize", "dynamic"],
        tmp_path,
        "so the int8 model would overwrite it",
        "",
        code=2,
    )
