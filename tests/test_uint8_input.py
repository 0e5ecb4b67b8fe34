"""Models whose input is uint8 pixels: the predictor feeds what the model asks for, float images still work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from edgefmnist.runtime.call_floor import one_node_model
from edgefmnist.runtime.predictor import Predictor, default_model_path

from edgefmnist.contract import to_model_input
from edgefmnist.errors import ModelError

INT8 = default_model_path().parent / "mlp.int8.onnx"


def test_to_model_input_rounds_and_clips_float_pixels_for_a_uint8_model() -> None:
    images = np.array([[-3.0, 0.4, 0.5, 1.5, 127.49, 254.6, 300.0]] * 28, np.float64)[:, :7]
    images = np.pad(images, ((0, 0), (0, 21)))
    got = to_model_input(images, np.uint8)
    assert got.dtype == np.uint8 and got.shape == (1, 1, 28, 28)
    assert got[0, 0, 0, :7].tolist() == [0, 0, 0, 2, 127, 255, 255]  # round half to even, as np.rint
    assert to_model_input(images, np.float32).dtype == np.float32
    with pytest.raises(ValueError, match="shape"):
        to_model_input(np.zeros((2, 28, 27)), np.uint8)


@pytest.mark.parametrize("name", ["mlp.int8.onnx", "cnn.int8.onnx"])
def test_the_predictor_feeds_uint8_and_float_images_give_the_same_answers(fashion, name: str) -> None:
    """Through the predictor (with the optimisers the model's metadata turns off) as through plain onnxruntime."""
    predictor = Predictor(INT8.parent / name, threads=1)
    assert predictor.input_dtype == np.uint8 and predictor.metadata.input["dtype"] == "uint8"
    images = fashion.test.images[:50]
    plain = onnxruntime.InferenceSession(str(INT8.parent / name), providers=["CPUExecutionProvider"])
    wide = images.astype(np.float64)
    for variant in (
        images,
        wide.astype(np.float32),
        wide + 0.3,
        wide + 0.6,
        1.5 * wide - 40.0,
        images.astype(np.int64),
    ):
        # floats are rounded to the nearest level and clipped to 0..255 (+0.6 rounds up; 1.5x - 40 leaves the range)
        exact = np.clip(np.rint(variant), 0, 255).astype(np.uint8)
        expected = plain.run(["logits"], {"image": exact[:, None]})[0]
        np.testing.assert_array_equal(predictor.run(variant)[0], expected)
        np.testing.assert_array_equal(predictor.logits(variant), expected)
        np.testing.assert_array_equal(np.concatenate([predictor.run(image)[0] for image in variant]), expected)


def test_the_predictor_turns_off_the_optimisers_the_metadata_names(monkeypatch) -> None:
    created = []
    original = onnxruntime.InferenceSession

    def recording(*args, **kwargs):
        created.append(kwargs.get("disabled_optimizers"))
        return original(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", recording)
    for name in ("cnn.int8.onnx", "cnn.onnx", "mlp.int8.onnx"):
        Predictor(INT8.parent / name, threads=1)
    assert created == [["QDQPropagationTransformer"], [], []]


def with_session_metadata(tmp_path: Path, value: object) -> Path:
    model = onnx.load(str(INT8))
    model.metadata_props.add(key="onnxruntime_session", value=json.dumps(value))
    path = tmp_path / "session.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    "value",
    [
        {"disabled_optimizers": "QDQ"},
        {"disabled_optimizers": [""]},
        {"disabled_optimizers": ["  "]},
        {"disabled_optimizers": [1]},
        {"disabled_optimizers": None},
        {},
        {"disabled_optimizers": [], "intra_op_num_threads": 64},
        ["QDQPropagationTransformer"],
    ],
)
def test_malformed_session_metadata_is_refused(tmp_path: Path, value: object) -> None:
    with pytest.raises(ModelError, match="metadata onnxruntime_session is not"):
        Predictor(with_session_metadata(tmp_path, value))


def test_an_optimiser_name_onnxruntime_does_not_know_changes_nothing(tmp_path: Path, fashion) -> None:
    unknown = Predictor(with_session_metadata(tmp_path, {"disabled_optimizers": ["NoSuchTransformer"]}), threads=1)
    images = fashion.test.images[:50]
    np.testing.assert_array_equal(unknown.logits(images), Predictor(INT8, threads=1).logits(images))


def test_a_graph_whose_input_contradicts_the_metadata_is_refused(tmp_path: Path) -> None:
    model = onnx.load(str(INT8))
    for prop in model.metadata_props:
        if prop.key == "input":
            prop.value = json.dumps({**json.loads(prop.value), "dtype": "float32"})
    lying = tmp_path / "lying.onnx"
    onnx.save(model, str(lying))
    with pytest.raises(ModelError, match="the metadata says a float32 input, the graph takes uint8"):
        Predictor(lying)


def test_the_one_node_floor_graph_is_valid_onnx_and_runs() -> None:
    model = onnx.load_from_string(one_node_model())
    onnx.checker.check_model(model, full_check=True)
    assert [node.op_type for node in model.graph.node] == ["Relu"] and model.ir_version == 8
    session = onnxruntime.InferenceSession(one_node_model(), providers=["CPUExecutionProvider"])
    values = np.array([[-1.0, 2.0] * 5], np.float32)
    np.testing.assert_array_equal(session.run(None, {"image": values})[0], np.maximum(values, 0))
