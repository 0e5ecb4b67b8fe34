"""Export parity on the real test set: PyTorch vs ONNX fp32 vs int8, and a numpy oracle of the MLP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime
import pytest
from edgefmnist.export.onnx_export import finalize_model, opset_of
from edgefmnist.export.parity import compare_logits
from edgefmnist.export.pipeline import export_checkpoint, int8_path_for, verify_against_checkpoint
from edgefmnist.runtime.metadata import SCHEMA_KEY, ModelMetadata, read_metadata
from edgefmnist.runtime.predictor import Predictor

from edgefmnist import spec
from edgefmnist.checkpoint import load_checkpoint
from edgefmnist.contract import INPUT_NAME, Dtype
from edgefmnist.digest import file_sha256
from edgefmnist.errors import CheckpointError, ModelError, ValidationFailed
from edgefmnist.train import predict_logits

pytestmark = pytest.mark.slow
FP32_ATOL = {"mlp": 1e-4, "cnn": 5e-4}


@pytest.fixture(scope="module")
def exported(trained, real_data_dir, tmp_path_factory):
    """Exports of each architecture with each quantisation mode, made once per module."""
    cache: dict[tuple[str, str], list] = {}

    def get(arch: str, quantize: str):
        if (arch, quantize) not in cache:
            out = tmp_path_factory.mktemp(f"export-{arch}-{quantize}") / f"{arch}.onnx"
            cache[(arch, quantize)] = export_checkpoint(
                trained(arch), out, quantize, atol=FP32_ATOL[arch], data_dir=real_data_dir
            )
        return cache[(arch, quantize)]

    return get


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.parametrize("quantize", ["dynamic", "static"])
def test_parity_pytorch_fp32_int8_on_the_full_test_set(exported, trained, fashion, arch: str, quantize: str) -> None:
    fp32, int8 = exported(arch, quantize)
    test = fashion.test
    torch_logits = predict_logits(load_checkpoint(trained(arch)).net, test.images)
    fp32_logits = Predictor(fp32.path).logits(test.images)
    int8_logits = Predictor(int8.path).logits(test.images)

    assert fp32.parity.images == len(test) == 10_000
    assert np.abs(fp32_logits - torch_logits).max() <= FP32_ATOL[arch]
    assert (fp32_logits.argmax(1) == torch_logits.argmax(1)).all()
    assert fp32.parity.passed and fp32.parity.top1_agreement == 1.0

    fp32_accuracy = np.mean(fp32_logits.argmax(1) == test.labels)
    int8_accuracy = np.mean(int8_logits.argmax(1) == test.labels)
    assert fp32_accuracy - int8_accuracy <= 0.005
    assert np.mean(int8_logits.argmax(1) == fp32_logits.argmax(1)) >= 0.99
    assert int8.parity.passed and int8.parity.candidate_accuracy == pytest.approx(int8_accuracy)
    assert int8.size_bytes < 0.35 * fp32.size_bytes


def numpy_mlp_logits(state: dict, images: np.ndarray) -> np.ndarray:
    """The MLP written from its equations: x = p*scale + shift; h = relu(xW1 + b1); ...; in float64."""
    w = {k: v.double().numpy() for k, v in state.items()}
    x = images.reshape(len(images), -1).astype(np.float64) * w["normalize.scale"] + w["normalize.shift"]
    h1 = np.maximum(x @ w["layers.1.weight"].T + w["layers.1.bias"], 0)
    h2 = np.maximum(h1 @ w["layers.4.weight"].T + w["layers.4.bias"], 0)
    return h2 @ w["layers.7.weight"].T + w["layers.7.bias"]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    return shifted / shifted.sum(1, keepdims=True)


def test_numpy_oracle_agrees_with_pytorch_and_onnx(exported, trained, fashion) -> None:
    fp32, _ = exported("mlp", "static")
    checkpoint = load_checkpoint(trained("mlp"))
    images = fashion.test.images
    oracle = numpy_mlp_logits(checkpoint.net.state_dict(), images)
    torch_logits = predict_logits(checkpoint.net, images)
    onnx_logits, onnx_probabilities = Predictor(fp32.path).run(images)
    for logits in (torch_logits, onnx_logits):
        assert np.abs(logits - oracle).max() <= 1e-4
        assert (logits.argmax(1) == oracle.argmax(1)).all()
    temperature = read_metadata(fp32.path).temperature  # probabilities = softmax(logits / T)
    np.testing.assert_allclose(onnx_probabilities, softmax(oracle / temperature), atol=1e-6)


def test_metadata_round_trips(exported, trained) -> None:
    fp32, int8 = exported("cnn", "static")
    checkpoint_path = trained("cnn")
    checkpoint = load_checkpoint(checkpoint_path)
    raw = {p.key: json.loads(p.value) for p in onnx.load(str(int8.path)).metadata_props}
    assert raw[SCHEMA_KEY] == 1

    for result in (fp32, int8):
        meta = read_metadata(result.path)
        assert meta.class_names == spec.CLASS_NAMES and meta.arch == "cnn" and meta.dtype == result.dtype
        assert meta.input["normalization"] == {
            "in_graph": True,
            "formula": "(x / 255 - mean) / std",
            "mean": spec.PIXEL_MEAN,
            "std": spec.PIXEL_STD,
        }
        assert meta.input["background"].startswith("dark") and meta.input["shape"] == ["batch", 1, 28, 28]
        assert meta.extra["checkpoint_sha256"] == file_sha256(checkpoint_path)
        assert meta.extra["recipe"] == checkpoint.recipe.to_dict()
        assert meta.extra["test_accuracy"] == result.parity.candidate_accuracy
        assert meta.extra["opset"] == 17 and meta.min_onnxruntime == "1.17.0"
        calibration = meta.calibration
        assert (
            calibration is not None
            and calibration == result.calibration.to_metadata() == result.to_dict()["calibration"]
        )
        assert calibration["method"] == "temperature" and calibration["split"] == "validation"
        assert calibration["temperature"] > 0 and calibration["nll_after"] <= calibration["nll_before"]
        assert {"ece_before", "ece_after", "nll_before", "nll_after"} <= set(calibration["test"])
        assert result.parity.temperature == calibration["temperature"] and result.parity.max_abs_probability_diff < 1e-3
    meta = read_metadata(int8.path)
    assert meta.extra["parent_sha256"] == file_sha256(fp32.path)
    quantization = meta.extra["quantization"]
    assert quantization["mode"] == "static" and not quantization["float_logits"]  # a QGemm with float output
    assert quantization["weight_type"] == "int8" and quantization["activation_type"] == "uint8"
    assert quantization["reduce_range"] is True  # 7-bit weights: see test_static_int8_is_exact_*
    assert (
        quantization["input_dtype"] == meta.input["dtype"] == "uint8"
        and read_metadata(fp32.path).input["dtype"] == "float32"
    )
    assert quantization["float_first_block"] and quantization["per_channel_ops"] == []
    assert meta.disabled_optimizers == ["QDQPropagationTransformer"]
    assert read_metadata(fp32.path).disabled_optimizers == []
    assert (
        quantization["mse_weight_ranges"] and quantization["adaptive_rounding"] and not quantization["bias_correction"]
    )
    assert ModelMetadata.from_props(meta.to_props(), "x") == meta


def session(path: Path, level: str) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel, level)
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_static_int8_is_exact_on_this_cpu_and_cannot_saturate_on_any(exported, fashion, arch: str) -> None:
    """Static int8 weights are 7-bit, so onnxruntime's int8 kernels give the exact int8 sums on every CPU
    (the CNN's first block is float, and may round its last bits differently on another CPU).

    ORT_ENABLE_ALL fuses Q/DQ into this CPU's integer kernels (on x86 with AVX2 but no VNNI,
    ``vpmaddubsw``: two u8 x s8 products summed in a saturating int16); ORT_ENABLE_BASIC runs
    the Q/DQ pairs in float, the arithmetic that VNNI x86 and Arm reproduce. With 8-bit weights
    the CNN lost 1.4 points under ALL on an AMD EPYC (Zen 3); here both levels must agree.
    The weight bound (|q| <= 64, so 2 x 255 x 64 <= 32767) holds on any machine.
    """
    _, int8 = exported(arch, "static")
    inputs = Predictor(int8.path).as_input(fashion.test.images)
    fused, reference = (
        np.concatenate(
            [
                session(int8.path, level).run(["logits"], {INPUT_NAME: inputs[i : i + 2000]})[0]
                for i in range(0, len(inputs), 2000)
            ]
        )
        for level in ("ORT_ENABLE_ALL", "ORT_ENABLE_BASIC")
    )
    assert np.mean(fused.argmax(1) == reference.argmax(1)) >= 0.999
    assert np.abs(fused - reference).max() < 0.5  # requantisation rounding only; saturation gave 7.9

    model = onnx.load(str(int8.path))
    initializers = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    producers = {n.output[0]: n for n in model.graph.node}
    weights = [
        producers[n.input[1]]
        for n in model.graph.node
        if n.op_type in ("Conv", "Gemm", "MatMul") and producers.get(n.input[1], n).op_type == "DequantizeLinear"
    ]
    assert len(weights) >= 2
    for dq in weights:  # the int8 weights of the quantised Conv/Gemm/MatMul: symmetric, 7-bit
        assert initializers[dq.input[0]].dtype == np.int8 and not initializers[dq.input[2]].any(), dq.input[0]
        assert np.abs(initializers[dq.input[0]].astype(np.int32)).max() <= 64, dq.input[0]


def test_failed_validation_leaves_the_previous_model_untouched(trained, real_data_dir, tmp_path: Path) -> None:
    out = tmp_path / "mlp.onnx"
    export_checkpoint(trained("mlp"), out, "none", data_dir=real_data_dir)
    before = out.read_bytes()
    with pytest.raises(ValidationFailed, match="max \\|Δlogit\\|"):
        export_checkpoint(trained("mlp"), out, "none", atol=1e-12, data_dir=real_data_dir)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.onnx"]


def test_a_failed_int8_check_reports_both_models_and_writes_neither(
    trained, real_data_dir, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr("edgefmnist.export.parity.MIN_INT8_AGREEMENT", 1.01)  # no int8 model can pass
    out = tmp_path / "mlp.onnx"
    with pytest.raises(ValidationFailed, match="top-1 agreement") as failure:
        export_checkpoint(trained("mlp"), out, "dynamic", data_dir=real_data_dir)
    fp32, int8 = failure.value.reports
    assert (fp32["path"], fp32["dtype"], fp32["written"], fp32["parity"]["passed"]) == (str(out), "fp32", False, True)
    assert (int8["path"], int8["dtype"], int8["written"], int8["parity"]["passed"]) == (
        str(int8_path_for(out)),
        "int8",
        False,
        False,
    )
    assert list(tmp_path.iterdir()) == []


def test_a_graph_the_quantiser_cannot_rewrite_is_a_model_error_and_writes_nothing(
    trained, real_data_dir, tmp_path: Path, monkeypatch
) -> None:
    for failure, shown in [
        (ValueError("conv1: expected a DequantizeLinear input, found Cast"), "ValueError: conv1: expected"),
        (KeyError("onnx::Gemm_7"), "KeyError: 'onnx::Gemm_7'"),
    ]:

        def unknown_pattern(*args, failure=failure, **kwargs):
            raise failure

        monkeypatch.setattr("edgefmnist.export.pipeline.quantize_model", unknown_pattern)
        with pytest.raises(ModelError, match=rf"mlp\.int8\.onnx: cannot quantise with onnxruntime .* \({shown}"):
            export_checkpoint(trained("mlp"), tmp_path / "mlp.onnx", "static", data_dir=real_data_dir)
        assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("quantize", ["dynamic", "static"])
def test_dynamic_batch_axis(exported, fashion, quantize: str) -> None:
    """Batches of 1, 7 and 256 run; fp32 and static int8 give each image the same logits in any batch.

    Dynamic int8 quantises activations with each batch's own range, so its logits depend
    (slightly) on the rest of the batch: only its labels are compared.
    """
    for result in exported("cnn", quantize):
        predictor = Predictor(result.path)
        reference = predictor.logits(fashion.test.images[:256], batch_size=256)
        batch_independent = result.dtype is Dtype.fp32 or quantize == "static"
        for batch in (1, 7, 256):
            logits, probabilities = predictor.run(fashion.test.images[:batch])
            assert logits.shape == probabilities.shape == (batch, 10)
            np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)
            if batch_independent:
                np.testing.assert_allclose(logits, reference[:batch], atol=1e-5)
            else:
                assert np.mean(logits.argmax(1) == reference[:batch].argmax(1)) >= 6 / 7
                assert np.abs(logits - reference[:batch]).max() < 0.5


def rewrite_metadata(source: Path, target: Path, **changes) -> Path:
    meta = read_metadata(source)
    target.write_bytes(source.read_bytes())
    fields = {k: v for k, v in changes.items() if k != "extra"}
    extra = {**meta.extra, **changes.get("extra", {})}
    finalize_model(target, ModelMetadata(**{**meta.__dict__, **fields, "extra": extra}))
    return target


def test_version_guard_refuses_with_what_to_install(exported, tmp_path: Path) -> None:
    fp32, _ = exported("mlp", "dynamic")
    too_new = rewrite_metadata(fp32.path, tmp_path / "new.onnx", min_onnxruntime="99.0.0")
    with pytest.raises(ModelError, match=r"needs onnxruntime >= 99.0.0, installed .*pip install 'onnxruntime>=99.0.0'"):
        Predictor(too_new)
    future_schema = rewrite_metadata(fp32.path, tmp_path / "schema.onnx", schema=2)
    with pytest.raises(ModelError, match=r"schema 2 is unknown.*upgrade edgefmnist \(in its checkout: git pull"):
        Predictor(future_schema)


def test_verify_against_checkpoint_and_recorded_accuracy(exported, trained, fashion, tmp_path: Path) -> None:
    from edgefmnist.runtime.verify import check_recorded_accuracy

    fp32, int8 = exported("mlp", "dynamic")
    for result in (fp32, int8):
        report = verify_against_checkpoint(result.path, trained("mlp"), test=fashion.test)
        assert report.passed, report.summary()
    with pytest.raises(CheckpointError, match=f"cnn.pt: not the checkpoint {fp32.path.name} was exported from"):
        verify_against_checkpoint(fp32.path, trained("cnn"), atol=1.0, test=fashion.test)
    assert check_recorded_accuracy(int8.path).passed
    lying = rewrite_metadata(
        fp32.path, tmp_path / "lying.onnx", extra={"test_accuracy": fp32.parity.candidate_accuracy + 0.01}
    )
    check = check_recorded_accuracy(lying)
    assert not check.passed and "metadata claims" in check.failures[0]
    assert int8_path_for(Path("a/b.onnx")) == Path("a/b.int8.onnx")


def test_a_failed_parity_names_the_tolerance_as_given() -> None:
    reference = np.zeros((2, 10), np.float32)
    reference[:, 0] = 1.0
    candidate = reference + np.float32(5.66e-6)
    report = compare_logits(
        reference, candidate, np.zeros(2, np.int64), dtype="fp32", reference_name="a", candidate_name="b", atol=5.6e-6
    )
    assert report.failures == ["max |Δlogit| 5.66e-06 > 5.6e-06"]  # not "> 6e-06", which reads as a pass
    probabilities = softmax(reference.astype(np.float64)) + 2.49e-6  # more than the 1e-6 atol 0 leaves
    report = compare_logits(
        reference, reference, np.zeros(2, np.int64), dtype="fp32", reference_name="a", candidate_name="b", atol=0.0,
        candidate_probabilities=probabilities, temperature=1.0,
    )  # fmt: skip
    assert "max |Δprobability| 2.49e-06 against" in report.summary()  # as the failure says it
    assert report.failures[0].startswith("max |Δprobability| 2.49e-06 > 1e-06 ")


def test_opset_of_reads_the_default_domain_and_refuses_a_graph_without_one() -> None:
    graph = onnx.helper.make_graph([], "g", [], [])
    both = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("ai.onnx.ml", 3), onnx.helper.make_opsetid("", 17)]
    )
    assert opset_of(both) == 17
    only_ml = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("ai.onnx.ml", 3)])
    with pytest.raises(ModelError, match="graph 'g' imports no ai.onnx opset"):
        opset_of(only_ml)
