"""Temperature scaling: the numpy maths on synthetic logits, the graph edit, and a real export's calibration."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from edgefmnist.export.onnx_export import finalize_model
from edgefmnist.export.qdq_rewrite import tensor_producers
from edgefmnist.export.temperature import set_temperature, temperature_divide
from edgefmnist.runtime.metadata import CALIBRATION_KEY, ModelMetadata, read_metadata
from edgefmnist.runtime.predictor import Predictor
from onnx import TensorProto, helper, numpy_helper

from edgefmnist import spec
from edgefmnist.calibration import (
    ECE_BINS,
    MIN_CLASS_IMAGES,
    TYPICALITY_LEVELS,
    calibrate,
    class_max_logit_quantiles,
    class_typicality,
    expected_calibration_error,
    fit_temperature,
    max_logit_quantiles,
    measure_calibration,
    negative_log_likelihood,
    softmax,
    typicality,
)
from edgefmnist.contract import Dtype
from edgefmnist.errors import ModelError


def sample_labels(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Labels drawn from ``softmax(logits)``: these logits are calibrated by construction."""
    return (softmax(logits).cumsum(1) > rng.random((len(logits), 1))).argmax(1)


@pytest.fixture(scope="module")
def calibrated() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 3.0, (20_000, 10))
    return logits, sample_labels(logits, rng)


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_fit_recovers_the_temperature_the_logits_were_made_with(calibrated, true_temperature: float) -> None:
    logits, labels = calibrated
    fitted = fit_temperature(logits * true_temperature, labels)  # the model's logits are T times too large
    assert fitted == pytest.approx(true_temperature, rel=0.03)


def test_ece_is_near_zero_when_calibrated_and_large_when_overconfident(calibrated) -> None:
    logits, labels = calibrated
    assert expected_calibration_error(softmax(logits), labels) < 0.01
    overconfident = expected_calibration_error(softmax(logits, 0.25), labels)
    assert overconfident > 0.1
    figures = measure_calibration(logits * 4, labels, fit_temperature(logits * 4, labels), "validation")
    assert figures.ece_before == pytest.approx(overconfident) and figures.ece_after < 0.01
    assert figures.nll_after < figures.nll_before


def test_ece_follows_the_definition_on_a_hand_worked_example() -> None:
    # Confidences 0.9, 0.9 (bin 14: one right -> |0.5 - 0.9|) and 0.55 (bin 9: right -> |1 - 0.55|).
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.45, 0.55]])
    labels = np.array([0, 1, 1])
    assert expected_calibration_error(probabilities, labels) == pytest.approx((2 * 0.4 + 0.45) / 3)
    assert expected_calibration_error(np.array([[1.0, 0.0]]), np.array([0])) == 0.0  # confidence 1 is in the top bin
    assert ECE_BINS == 15


def test_nll_and_softmax_known_values() -> None:
    assert negative_log_likelihood(np.zeros((4, 10)), np.arange(4)) == pytest.approx(math.log(10))
    logits = np.array([[2.0, 0.0]])
    assert negative_log_likelihood(logits, np.array([0]), 2.0) == pytest.approx(math.log(1 + math.exp(-1)))
    np.testing.assert_allclose(softmax(np.array([[1000.0, 0.0]]), 1.0), [[1.0, 0.0]])  # no overflow
    np.testing.assert_allclose(softmax(logits, 2.0).sum(1), 1.0)


def test_fit_never_makes_nll_worse_and_refuses_bad_input(calibrated) -> None:
    logits, labels = calibrated
    for scale in (0.3, 1.0, 3.0):
        fitted = fit_temperature(logits * scale, labels)
        assert negative_log_likelihood(logits * scale, labels, fitted) <= negative_log_likelihood(
            logits * scale, labels
        )
    with pytest.raises(ValueError, match="temperature must be"):
        softmax(logits, 0.0)
    with pytest.raises(ValueError, match="non-finite"):
        fit_temperature(np.full((2, 3), np.nan), np.array([0, 1]))
    with pytest.raises(ValueError, match="expected scores"):
        fit_temperature(logits, labels[:-1])
    result = calibrate(logits * 2, labels)
    assert result.temperature == float(np.float32(result.temperature))  # what the graph stores
    entry = result.with_test(logits * 2, labels).to_metadata()
    assert entry["method"] == "temperature" and entry["split"] == "validation" and entry["bins"] == ECE_BINS
    assert entry["test"]["images"] == len(labels) and {"ece_before", "ece_after", "nll_before", "nll_after"} <= set(
        entry
    )


def tiny_graph(path: Path, with_divide: bool) -> Path:
    """``logits = image @ W``; ``probabilities = Softmax(logits)`` (an old export) or ``Softmax(logits / 1)``."""
    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32), "W")
    nodes = [helper.make_node("MatMul", ["image", "W"], ["logits"])]
    initializers = [weight]
    if with_divide:
        nodes.append(helper.make_node("Div", ["logits", "t"], ["scaled"]))
        initializers.append(numpy_helper.from_array(np.array(1.0, np.float32), "t"))
    nodes.append(helper.make_node("Softmax", ["scaled" if with_divide else "logits"], ["probabilities"], axis=1))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", 3]) for n in ("logits", "probabilities")],
        initializers,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def read_temperature(model: onnx.ModelProto) -> float:
    """The ``T`` the graph divides the logits by before the softmax (1.0 when it does not divide)."""
    divide = temperature_divide(model)
    if divide is None:
        return 1.0
    initializer = next(i for i in model.graph.initializer if i.name == divide.input[1])
    return float(onnx.numpy_helper.to_array(initializer).reshape(()))


@pytest.mark.parametrize("with_divide", [True, False])
def test_set_temperature_rewrites_or_inserts_the_division(tmp_path: Path, with_divide: bool) -> None:
    import onnxruntime

    path = tiny_graph(tmp_path / "tiny.onnx", with_divide)
    assert read_temperature(onnx.load(str(path))) == 1.0
    set_temperature(path, 0.7)
    set_temperature(path, 2.5)  # a second write replaces the first
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert read_temperature(model) == pytest.approx(2.5) and len(model.graph.initializer) == 2
    image = np.random.default_rng(1).normal(size=(8, 4)).astype(np.float32)
    logits, probabilities = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"image": image}
    )
    np.testing.assert_allclose(probabilities, softmax(logits, 2.5), atol=1e-6)
    with pytest.raises(ValueError, match="temperature must be"):
        set_temperature(path, -1.0)


def test_set_temperature_refuses_a_graph_of_another_shape(tmp_path: Path) -> None:
    path = tiny_graph(tmp_path / "tiny.onnx", True)
    model = onnx.load(str(path))
    model.graph.node[1].op_type = "Mul"
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match=r"no Div\(logits, temperature\) before the softmax"):
        set_temperature(path, 2.0)


def metadata(extra: dict) -> ModelMetadata:
    return ModelMetadata(
        schema=1,
        class_names=spec.CLASS_NAMES,
        input={},
        dtype=Dtype.fp32,
        arch="mlp",
        min_onnxruntime="1.17.0",
        extra=extra,
    )


def test_metadata_calibration_is_optional_and_validated() -> None:
    entry = {
        "method": "temperature",
        "temperature": 1.25,
        "split": "validation",
        "ece_before": 0.05,
        "ece_after": 0.01,
        "nll_before": 0.3,
        "nll_after": 0.28,
    }
    calibrated_meta = ModelMetadata.from_props(metadata({CALIBRATION_KEY: entry}).to_props(), "m.onnx")
    assert calibrated_meta.calibration == entry and calibrated_meta.temperature == 1.25
    old = ModelMetadata.from_props(metadata({}).to_props(), "old.onnx")
    assert old.calibration is None and old.temperature == 1.0
    for bad in (
        {"method": "temperature", "temperature": 0},
        {"method": "platt"},
        [1.0],
        {"method": "temperature", "temperature": "2"},
    ):
        props = {**metadata({}).to_props(), CALIBRATION_KEY: json.dumps(bad)}
        with pytest.raises(ModelError, match="^bad.onnx: metadata calibration is not a temperature > 0"):
            ModelMetadata.from_props(props, "bad.onnx")


def test_typicality_is_the_share_of_reference_images_with_a_lower_top_logit() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, (20000, 10))
    reference[np.arange(20000), rng.integers(0, 10, 20000)] += rng.uniform(0, 8, 20000)
    quantiles = max_logit_quantiles(reference)
    assert quantiles["levels"] == list(TYPICALITY_LEVELS) and len(TYPICALITY_LEVELS) == 38
    tops = reference.max(1)
    assert quantiles["values"][0] == tops.min() and quantiles["values"][-1] == tops.max()
    probes = np.quantile(tops, [0.003, 0.011, 0.05, 0.5])
    measured = typicality(probes, quantiles)
    np.testing.assert_allclose(measured, [(tops < p).mean() for p in probes], atol=0.002)
    np.testing.assert_array_equal(typicality(np.array([tops.min() - 1, tops.max() + 1]), quantiles), [0.0, 1.0])
    recorded = calibrate(reference, reference.argmax(1)).to_metadata()["max_logit_quantiles"]
    assert recorded == quantiles
    assert (
        ModelMetadata.from_props(
            metadata(
                {CALIBRATION_KEY: {"method": "temperature", "temperature": 1.0, "max_logit_quantiles": recorded}}
            ).to_props(),
            "m.onnx",
        ).max_logit_quantiles
        == quantiles
    )


def test_class_typicality_ranks_a_picture_among_the_images_of_its_predicted_class() -> None:
    """Class 0's images have large top logits, class 1's small ones: a top logit of 5 is low for
    class 0 and high for class 1, and a class with too few images falls back on all of them."""
    rng = np.random.default_rng(1)
    reference = rng.normal(0, 0.1, (3000, 3))
    reference[:1000, 0] = rng.uniform(6, 10, 1000)  # class 0: top logits 6-10
    reference[1000:2990, 1] = rng.uniform(2, 6, 1990)  # class 1: 2-6
    reference[2990:, 2] = rng.uniform(0.5, 1.0, 10)  # class 2: 10 images, fewer than MIN_CLASS_IMAGES
    assert 10 < MIN_CLASS_IMAGES
    tables = class_max_logit_quantiles(reference)
    assert len(tables) == 3 and tables[2] == max_logit_quantiles(reference)
    probes = np.array([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 0.75], [9.0, 0.0, 0.0]])
    measured = class_typicality(probes, tables)
    assert measured[0] == 0.0  # below every class-0 image
    assert measured[1] == pytest.approx(0.75, abs=0.02)  # above three quarters of class 1
    assert measured[2] == pytest.approx(typicality(np.array([0.75]), tables[2])[0])  # all images' table
    assert measured[3] == pytest.approx(0.75, abs=0.02)
    recorded = calibrate(reference, reference.argmax(1)).to_metadata()["class_max_logit_quantiles"]
    assert recorded == tables
    entry = {"method": "temperature", "temperature": 1.0, "class_max_logit_quantiles": recorded}
    read = ModelMetadata.from_props(metadata({CALIBRATION_KEY: entry}).to_props(), "m.onnx")
    assert read.class_max_logit_quantiles == tables  # three tables: the predictor checks them against the outputs


GOOD_TABLE = {"levels": [0.0, 1.0], "values": [1.0, 2.0]}


@pytest.mark.parametrize(
    "tables, message",
    [
        ({"levels": [0.0, 1.0]}, " is not a list of tables"),
        ([], " is not a list of tables"),
        ([GOOD_TABLE, {"levels": [0.0, 1.0], "values": [1.0, 1.0]}], r"\[1\] is not a quantile table"),
        ([[0.0, 1.0]], r"\[0\] is not a quantile table"),
    ],
)
def test_metadata_refuses_class_tables_that_are_not_quantile_tables(tables: object, message: str) -> None:
    entry = {"method": "temperature", "temperature": 1.0, "class_max_logit_quantiles": tables}
    props = {**metadata({}).to_props(), CALIBRATION_KEY: json.dumps(entry)}
    with pytest.raises(ModelError, match=f"^bad.onnx: metadata calibration.class_max_logit_quantiles{message}"):
        ModelMetadata.from_props(props, "bad.onnx")


def test_class_typicality_refuses_too_few_tables_and_needs_rows() -> None:
    with pytest.raises(ValueError, match="9 typicality tables for logits of shape"):
        class_typicality(np.zeros((2, 10)), [GOOD_TABLE] * 9)
    with pytest.raises(ValueError, match="at least one row"):
        class_max_logit_quantiles(np.zeros((0, 10)))
    assert class_typicality(np.zeros((0, 10)), [GOOD_TABLE] * 10).shape == (0,)


@pytest.mark.parametrize(
    "bad",
    [
        {"levels": [0.0, 1.0], "values": [2.0]},
        {"levels": [0.0, 0.5, 1.0], "values": [3.0, 2.0, 4.0]},
        {"levels": [0.5, 0.0], "values": [1.0, 2.0]},
        {"levels": [0.0, 2.0], "values": [1.0, 2.0]},
        {"levels": [0.0, 1.0], "values": [1.0, "2"]},
        {"levels": [0.4, 0.6], "values": [1.0, 2.0]},  # not from 0 to 1
        {"levels": [0.0, 1.0], "values": [5.0, 5.0]},  # no spread
        {"levels": [0.0, 1.0], "values": [-1e308, 1e308]},  # a spread that overflows
        [0.0, 1.0],
    ],
)
def test_metadata_refuses_malformed_max_logit_quantiles(bad: object) -> None:
    entry = {"method": "temperature", "temperature": 1.0, "max_logit_quantiles": bad}
    props = {**metadata({}).to_props(), CALIBRATION_KEY: json.dumps(entry)}
    with pytest.raises(ModelError, match="^bad.onnx: metadata calibration.max_logit_quantiles is not a quantile table"):
        ModelMetadata.from_props(props, "bad.onnx")


# ---- a real short-trained MLP, exported with static int8 (tests/conftest.py) ----


def outputs(path: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    predictor = Predictor(path)
    runs = [predictor.run(images[i : i + 1000]) for i in range(0, len(images), 1000)]
    return np.concatenate([r[0] for r in runs]), np.concatenate([r[1] for r in runs])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mlp.onnx", "mlp.int8.onnx"])
def test_export_fits_on_validation_and_lowers_nll_and_ece(exported_mlp: Path, fashion, name: str) -> None:
    path = exported_mlp.with_name(name)
    recorded = read_metadata(path).calibration
    assert (
        recorded is not None
        and recorded["method"] == "temperature"
        and recorded["split"] == "validation"
        and recorded["temperature"] > 0
    )
    assert recorded["images"] == len(fashion.validation) == 5000
    assert recorded["nll_after"] <= recorded["nll_before"] and recorded["ece_after"] < recorded["ece_before"]
    # Re-fit on the file's own validation logits: the same T and figures (the test set played no part).
    logits, _ = outputs(path, fashion.validation.images)
    refit = calibrate(logits, fashion.validation.labels)
    assert refit.temperature == pytest.approx(recorded["temperature"], rel=1e-4)
    assert refit.validation.ece_after == pytest.approx(recorded["ece_after"], abs=1e-3)
    refit_quantiles = max_logit_quantiles(logits)  # from the same validation logits
    assert recorded["max_logit_quantiles"]["levels"] == refit_quantiles["levels"]
    np.testing.assert_allclose(recorded["max_logit_quantiles"]["values"], refit_quantiles["values"], rtol=1e-5)
    for table, refit_table in zip(
        recorded["class_max_logit_quantiles"], class_max_logit_quantiles(logits), strict=True
    ):
        np.testing.assert_allclose(table["values"], refit_table["values"], rtol=1e-5)
    test_logits, _ = outputs(path, fashion.test.images)
    test_figures = measure_calibration(test_logits, fashion.test.labels, recorded["temperature"], "test")
    assert recorded["test"]["ece_after"] == pytest.approx(test_figures.ece_after, abs=1e-3)
    assert recorded["test"]["ece_after"] < recorded["test"]["ece_before"]


@pytest.mark.slow
def test_exported_probabilities_are_softmax_of_logits_over_t(exported_mlp: Path, fashion) -> None:
    temperatures = {}
    for path in (exported_mlp, exported_mlp.with_name("mlp.int8.onnx")):
        model = onnx.load(str(path))
        temperature = read_metadata(path).temperature
        assert read_temperature(model) == temperature != 1.0  # the graph applies what the metadata records
        logits, probabilities = outputs(path, fashion.test.images)
        np.testing.assert_allclose(probabilities, softmax(logits, temperature), atol=1e-6)
        single_logits, single_probabilities = Predictor(path).run(fashion.test.images[0])  # the hot path
        np.testing.assert_allclose(single_probabilities, softmax(single_logits, temperature), atol=1e-6)
        temperatures[path.name] = temperature
    assert temperatures["mlp.onnx"] != temperatures["mlp.int8.onnx"]  # int8 has its own fit
    # int8: logits, the division and the softmax stay float (no Q/DQ node touches them).
    int8 = onnx.load(str(exported_mlp.with_name("mlp.int8.onnx")))
    quantisers = [n for n in int8.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert quantisers and not {"logits", "probabilities"} & {t for n in quantisers for t in (*n.input, *n.output)}
    producers = tensor_producers(int8)
    assert producers["logits"].op_type in ("Gemm", "MatMul", "Add") and producers["probabilities"].op_type == "Softmax"


@pytest.mark.slow
def test_a_model_from_before_calibration_still_loads_and_runs(exported_mlp: Path, fashion, tmp_path: Path) -> None:
    """An export without the division and without the metadata key: plain softmax, T = 1."""
    old = tmp_path / "old.onnx"
    model = onnx.load(str(exported_mlp))
    softmax_node = next(n for n in model.graph.node if n.op_type == "Softmax")
    divide = next(n for n in model.graph.node if n.output[0] == softmax_node.input[0])
    softmax_node.input[0] = "logits"
    model.graph.node.remove(divide)
    onnx.save(model, str(old))
    meta = read_metadata(exported_mlp)
    finalize_model(
        old, ModelMetadata(**{**meta.__dict__, "extra": {k: v for k, v in meta.extra.items() if k != CALIBRATION_KEY}})
    )
    predictor = Predictor(old)
    assert predictor.metadata.calibration is None and predictor.metadata.temperature == 1.0
    logits, probabilities = predictor.run(fashion.test.images[:50])
    np.testing.assert_allclose(probabilities, softmax(logits), atol=1e-6)


@pytest.mark.slow
def test_model_card_calibration_rows(exported_mlp: Path, fashion) -> None:
    from edgefmnist.model_card import calibration_section, read_card_accuracies

    names = ["mlp.pt", "mlp.onnx", "mlp.int8.onnx"]
    lines = calibration_section(exported_mlp.parent, names, fashion.test)
    rows = [line for line in lines if line.startswith("| `")]
    temperature = read_metadata(exported_mlp).temperature
    assert len(rows) == 2 and rows[0].startswith(f"| `mlp.onnx` | {temperature:.4f} | ")
    for row in rows:  # the typicality columns: the logit at the default level, and a share of the test set
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        lowest, highest = (float(value) for value in cells[4].split(" to "))  # the per-class span
        assert len(cells) == 6 and 0 < lowest <= highest and 0 <= float(cells[5]) < 10
    assert read_card_accuracies("\n".join(lines)) == {}  # never mistaken for an accuracy row
