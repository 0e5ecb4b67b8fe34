"""The runtime's torch-free core: the ONNX header reader, the metadata schema and the version guard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from edgefmnist.runtime.metadata import ModelMetadata, read_metadata
from edgefmnist.runtime.onnx_header import read_model_header
from edgefmnist.runtime.predictor import Predictor, open_session
from onnx import TensorProto, helper

from edgefmnist import spec
from edgefmnist.contract import Dtype, oldest_onnxruntime, parse_version
from edgefmnist.errors import ModelError
from edgefmnist.model_metadata import DIGEST_KEYS, finite_number


def tiny_model(path: Path, props: dict[str, str] | None = None, ir_version: int = 8, opset: int = 17) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("ai.onnx.ml", 3)]
    )
    model.ir_version = ir_version
    helper.set_model_props(model, props or {})
    onnx.save(model, str(path))
    return path


def test_header_reader_matches_onnx(tmp_path: Path) -> None:
    path = tiny_model(tmp_path / "m.onnx", {"a": "1", "ключ": "значение"}, ir_version=9, opset=19)
    header = read_model_header(path)
    assert header.ir_version == 9 and header.opsets == {"": 19, "ai.onnx.ml": 3}
    assert header.metadata == {"a": "1", "ключ": "значение"}


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty file"), (b"\xff" * 64, "not an ONNX model"), (b"hello world, not protobuf", "not an ONNX model")],
)
def test_header_reader_refuses_non_models(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        read_model_header(path)


def test_a_model_path_the_system_cannot_look_up_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read \\(File name too long\\)"):
        read_model_header(tmp_path / f"{'a' * 300}.onnx")  # ENAMETOOLONG from the first stat


def test_a_pytorch_checkpoint_is_named_as_one(tmp_path: Path) -> None:
    import zipfile

    checkpoint = tmp_path / "cnn.pt"
    with zipfile.ZipFile(checkpoint, "w") as archive:  # the layout torch.save writes
        archive.writestr("cnn/data.pkl", b"\x80\x02}q\x00.")
        archive.writestr("cnn/version", b"3\n")
    with pytest.raises(ModelError, match="a PyTorch checkpoint, not an ONNX model; export it first: edgefmnist export"):
        read_model_header(checkpoint)
    other_zip = tmp_path / "photos.zip"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("a.jpg", b"not really")
    with pytest.raises(ModelError, match="not an ONNX model \\(corrupt or truncated\\)"):
        read_model_header(other_zip)


def test_truncated_model_is_refused(tmp_path: Path) -> None:
    path = tiny_model(tmp_path / "m.onnx")
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ModelError, match="corrupt or truncated"):
        read_model_header(path)


def test_model_without_metadata_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no edgefmnist metadata"):
        read_metadata(tiny_model(tmp_path / "m.onnx"))


def test_malformed_metadata_is_refused(tmp_path: Path) -> None:
    path = tiny_model(tmp_path / "m.onnx", {"edgefmnist.schema": "1", "class_names": "[not json"})
    with pytest.raises(ModelError, match="malformed metadata"):
        read_metadata(path)
    path = tiny_model(tmp_path / "m.onnx", {"edgefmnist.schema": "1", "class_names": "[]"})
    with pytest.raises(ModelError, match="metadata lacks input, precision, arch, min_onnxruntime"):
        read_metadata(path)
    for constant in ("NaN", "-Infinity", "1e999"):  # Python's json reads them; a JSON answer could not carry them
        path = tiny_model(tmp_path / "m.onnx", {"edgefmnist.schema": "1", "test_accuracy": constant})
        with pytest.raises(ModelError, match=f"malformed metadata: test_accuracy holds {constant}, not a JSON number"):
            read_metadata(path)


def test_an_input_dtype_no_model_takes_is_refused_from_the_metadata() -> None:
    for dtype in ('"uint8"', '"float32"'):
        ModelMetadata.from_props({**minimal_props("1.17.0"), "input": f'{{"dtype": {dtype}}}'}, "m.onnx")
    for dtype in ('"bogus"', '"int64"', "3", "null"):
        props = {**minimal_props("1.17.0"), "input": f'{{"dtype": {dtype}}}'}
        with pytest.raises(ModelError, match=rf"^m\.onnx: metadata input dtype {dtype} is not one of float32, uint8$"):
            ModelMetadata.from_props(props, "m.onnx")


def test_an_int_beyond_a_float_or_a_digest_that_is_not_hex_is_refused_from_the_metadata() -> None:
    big = str(10**400)
    props = {**minimal_props("1.17.0"), "calibration": f'{{"method": "temperature", "temperature": {big}}}'}
    with pytest.raises(ModelError, match=r"^m\.onnx: metadata calibration is not a temperature > 0"):
        ModelMetadata.from_props(props, "m.onnx")
    assert not finite_number(10**400) and finite_number(10**300) and finite_number(0.5) and not finite_number(True)
    wide = {"levels": [0, 1], "values": [-(10**308), 10**308]}  # each a float, their spread is not
    props = {
        **minimal_props("1.17.0"),
        "calibration": json.dumps({"method": "temperature", "temperature": 1.0, "max_logit_quantiles": wide}),
    }
    with pytest.raises(
        ModelError, match=r"^m\.onnx: metadata calibration\.max_logit_quantiles is not a quantile table"
    ):
        ModelMetadata.from_props(props, "m.onnx")
    digest = "ab" * 32
    for key in DIGEST_KEYS:
        assert ModelMetadata.from_props({**minimal_props("1.17.0"), key: f'"{digest}"'}, "m.onnx").extra[key] == digest
        for bad in ("123", '"abc"', f'"{digest.upper()}"', "null"):
            with pytest.raises(ModelError, match=rf"^m\.onnx: metadata {key} is not a SHA-256 digest \({bad}\)$"):
                ModelMetadata.from_props({**minimal_props("1.17.0"), key: bad}, "m.onnx")


def test_version_guard() -> None:
    meta = ModelMetadata(1, spec.CLASS_NAMES, {}, Dtype.fp32, "mlp", "1.17.0")
    meta.check_runtime("m.onnx", installed="1.17.3")
    meta.check_runtime("m.onnx", installed="1.32.0+cpu")
    with pytest.raises(ModelError, match=r"m.onnx: needs onnxruntime >= 1.17.0, installed 1.16.3"):
        meta.check_runtime("m.onnx", installed="1.16.3")
    assert parse_version("1.18.0.dev20240101") == (1, 18, 0) and parse_version("2") == (2, 0, 0)


def test_oldest_onnxruntime_follows_opset_and_ir() -> None:
    assert oldest_onnxruntime(17, 8) == (1, 17, 0)
    assert oldest_onnxruntime(21, 10) == (1, 18, 0)
    assert oldest_onnxruntime(23, 11) == (1, 22, 0)
    assert oldest_onnxruntime(40, 20) is None


def minimal_props(min_onnxruntime: str) -> dict[str, str]:
    return {
        "edgefmnist.schema": "1",
        "class_names": json.dumps(spec.CLASS_NAMES),
        "input": "{}",
        "precision": '"fp32"',
        "arch": '"mlp"',
        "min_onnxruntime": f'"{min_onnxruntime}"',
    }


def test_version_guard_follows_the_graph_not_only_the_metadata_claim(tmp_path: Path) -> None:
    understated = tiny_model(tmp_path / "new.onnx", minimal_props("1.17.0"), ir_version=10, opset=21)
    assert read_metadata(understated).min_onnxruntime == "1.18.0"  # opset 21 / IR 10 needs 1.18
    with pytest.raises(ModelError, match="needs onnxruntime >= 1.18.0"):
        read_metadata(understated).check_runtime(understated, installed="1.17.3")
    stated = tiny_model(tmp_path / "old.onnx", minimal_props("1.20.0"), ir_version=8, opset=17)
    assert read_metadata(stated).min_onnxruntime == "1.20.0"  # a later claim is kept
    future = tiny_model(tmp_path / "future.onnx", minimal_props("1.17.0"), ir_version=30, opset=40)
    with pytest.raises(ModelError, match="opset 40 / IR 30 is newer than any onnxruntime"):
        read_metadata(future)


def test_runtime_imports_neither_torch_nor_onnx() -> None:
    code = (
        "import sys, edgefmnist.runtime, edgefmnist.runtime.verify, edgefmnist.data, edgefmnist.contract, "
        "edgefmnist.model_metadata, edgefmnist.export.parity, edgefmnist.cli; "
        "bad = sorted(m for m in ('torch', 'onnx') if m in sys.modules); print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_predictor_leaves_no_telemetry_identifier_and_prints_nothing(shipped_mlp: Path, tmp_path: Path) -> None:
    """onnxruntime 1.29 and later keep a device identifier under ~/.cache/Microsoft and, with a home
    it may not write (a systemd unit's), print a warning, unless ORT_DISABLE_TELEMETRY is set first."""
    code = (
        "import os, sys; from edgefmnist.runtime.predictor import Predictor; "
        "Predictor(sys.argv[1]); print(os.environ['ORT_DISABLE_TELEMETRY'])"
    )
    environment = {key: value for key, value in os.environ.items() if key != "ORT_DISABLE_TELEMETRY"}
    for home, unset in ((tmp_path, {}), (Path("/proc/self"), {}), (tmp_path, {"ORT_DISABLE_TELEMETRY": ""})):
        run = subprocess.run(  # a home it may write, one it may not; empty counts as unset (docker -e VAR=)
            [sys.executable, "-c", code, str(shipped_mlp)],
            capture_output=True,
            text=True,
            env={**environment, "HOME": str(home), **unset},
        )
        assert (run.returncode, run.stdout, run.stderr) == (0, "1\n", "")
    assert list(tmp_path.iterdir()) == []
    kept = subprocess.run(
        [sys.executable, "-c", code, str(shipped_mlp)],
        capture_output=True,
        text=True,
        env={**environment, "HOME": str(tmp_path), "ORT_DISABLE_TELEMETRY": "0"},
    )
    assert kept.stdout == "0\n"  # the user's own choice stands


def test_open_session_takes_threads_arena_and_the_optimisers_the_metadata_turns_off(
    shipped_mlp: Path, tmp_path: Path, monkeypatch
) -> None:
    import onnxruntime

    disabled = []
    original = onnxruntime.InferenceSession

    def recording(*args, **kwargs):
        disabled.append(kwargs["disabled_optimizers"])
        return original(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", recording)
    int8 = shipped_mlp.with_name("cnn.int8.onnx")
    for arena in (True, False):
        options = open_session(int8, read_metadata(int8), 2, arena=arena).get_session_options()
        assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)
        assert options.enable_cpu_mem_arena is arena
        assert options.execution_mode == onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    open_session(shipped_mlp, read_metadata(shipped_mlp), 1)
    assert disabled == [["QDQPropagationTransformer"]] * 2 + [[]]
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(shipped_mlp.read_bytes()[:-64])
    with pytest.raises(ModelError, match=f"{broken}: onnxruntime cannot load it"):
        open_session(broken, read_metadata(shipped_mlp), 1)


def test_the_single_image_path_passes_run_options_built_once(shipped_mlp: Path) -> None:
    """Given None, onnxruntime's binding builds default run options on every call (docs/experiments.md, "session
    and run options"): what reaches the compiled session is one RunOptions, the same every call."""
    from types import SimpleNamespace

    import onnxruntime

    predictor = Predictor(shipped_mlp, threads=1)
    session, received = predictor.session, []

    def recording_run(binding, run_options) -> None:
        received.append(run_options)
        session._sess.run_with_iobinding(binding, run_options)

    predictor.session = SimpleNamespace(
        io_binding=session.io_binding, _sess=SimpleNamespace(run_with_iobinding=recording_run)
    )
    image = np.zeros((28, 28), np.uint8)
    results = [predictor.run(image)[0] for _ in range(3)]
    assert len(received) == 3 and isinstance(received[0], onnxruntime.RunOptions)
    assert all(options is received[0] for options in received)
    expected = session.run(["logits"], {"image": image[None, None].astype(predictor.input_dtype)})[0]
    assert all(np.array_equal(logits, expected) for logits in results)


def test_bound_run_calls_the_compiled_session_else_the_public_one() -> None:
    from types import SimpleNamespace

    from edgefmnist.runtime.predictor import bound_run

    calls = []
    compiled = SimpleNamespace(run_with_iobinding=lambda binding, options: calls.append(("compiled", binding, options)))
    public = SimpleNamespace(run_with_iobinding=lambda binding, options: calls.append(("public", binding, options)))
    options, binding = object(), SimpleNamespace(_iobinding="compiled binding")
    bound_run(SimpleNamespace(_sess=compiled), binding, options)()
    plain_binding = SimpleNamespace()  # an onnxruntime without the private attributes
    bound_run(public, plain_binding, options)()
    assert calls == [("compiled", "compiled binding", options), ("public", plain_binding, options)]


def test_single_image_hot_path_gives_the_same_numbers_as_plain_onnxruntime(shipped_mlp: Path, fashion) -> None:
    import numpy as np
    import onnxruntime

    for model in (shipped_mlp, shipped_mlp.with_name("mlp.int8.onnx")):  # static int8 is batch-independent
        predictor = Predictor(model, threads=1)
        plain = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        images = fashion.test.images[:300]
        dtype = predictor.input_dtype  # uint8 pixels for the static int8 model
        single = [plain.run(None, {"image": image[None, None].astype(dtype)}) for image in images]
        expected_logits = np.concatenate([logits for logits, _ in single])
        expected_probabilities = np.concatenate([probabilities for _, probabilities in single])
        for i, image in enumerate(images):
            variants = (image, image[None], image[None, None], np.asfortranarray(image), image.astype(np.float64))
            for variant in (*variants, image.astype(np.int64), image.astype(np.float32)[None]):
                logits, probabilities = predictor.run(variant)
                assert logits.shape == probabilities.shape == (1, 10)
                assert np.array_equal(logits[0], expected_logits[i]) and np.array_equal(
                    probabilities[0], expected_probabilities[i]
                )
        kept = predictor.run(images[0])[0]
        predictor.run(images[1])
        assert np.array_equal(kept[0], expected_logits[0])  # results are copies, not the reused buffers
        batch = plain.run(None, {"image": images[:7, None].astype(dtype)})[1]
        assert np.array_equal(predictor.predict(images[:7]), batch)


def test_available_cores_falls_back_to_the_cpu_count_where_there_is_no_affinity(monkeypatch) -> None:
    import os

    from edgefmnist.cores import available_cores

    if hasattr(os, "sched_getaffinity"):
        assert available_cores() == len(os.sched_getaffinity(0))
        monkeypatch.delattr(os, "sched_getaffinity")  # as on macOS and Windows
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert available_cores() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # undeterminable
    assert available_cores() == 1
