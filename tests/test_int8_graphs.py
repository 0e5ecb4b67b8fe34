"""The exported graphs, node by node: the fp32 and int8 models of both networks, as written and as onnxruntime
fuses them (its quantisation tests count op types the same way, ``check_op_type_count``), so a rewrite or a
fusion that stops happening fails here."""

from __future__ import annotations

import dataclasses
import platform
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from edgefmnist.export.onnx_export import export_onnx
from edgefmnist.export.qdq_rewrite import cast_uint8_input, first_block_nodes, split_pixel_normalization
from edgefmnist.export.quantize import PRESETS, QuantMode, quantize_model
from edgefmnist.runtime.predictor import default_model_path

from edgefmnist.checkpoint import load_checkpoint
from edgefmnist.model_metadata import FLOAT_BLOCK_DISABLED_OPTIMIZERS

SHIPPED = default_model_path().parent

EXPORTED = {
    ("mlp", "fp32"): {"Flatten": 1, "Gemm": 3, "Relu": 2, "Div": 1, "Softmax": 1},
    ("cnn", "fp32"): {
        "Mul": 1, "Add": 1, "Conv": 3, "Relu": 4, "MaxPool": 3, "Flatten": 1, "Gemm": 2, "Div": 1, "Softmax": 1,
    },
    # uint8 pixels in (no QuantizeLinear on the input), the logits layer quantised with a float output
    ("mlp", "int8"): {"Flatten": 1, "DequantizeLinear": 9, "QuantizeLinear": 2, "Gemm": 3, "Div": 1, "Softmax": 1},
    # the first block (normalisation, conv, ReLU, max-pool) in float after a Cast of the uint8 pixels
    ("cnn", "int8"): {
        "Cast": 1, "Mul": 1, "Add": 1, "Conv": 3, "Relu": 1, "DequantizeLinear": 15, "QuantizeLinear": 7,
        "MaxPool": 3, "Flatten": 1, "Gemm": 2, "Div": 1, "Softmax": 1,
    },
}  # fmt: skip
FUSED = {  # ORT_ENABLE_EXTENDED: the fusions every CPU gets (ALL adds layout changes that depend on the CPU);
    # as the predictor runs them (as_run: the int8 CNN without the optimiser its metadata turns off)
    ("mlp", "fp32"): {"Flatten": 1, "FusedGemm": 2, "Gemm": 1, "Div": 1, "Softmax": 1},
    ("cnn", "fp32"): {
        "Mul": 1, "Add": 1, "FusedConv": 3, "MaxPool": 3, "Flatten": 1, "FusedGemm": 1, "Gemm": 1, "Div": 1,
        "Softmax": 1,
    },
    ("mlp", "int8"): {"Flatten": 1, "QGemm": 3, "Div": 1, "Softmax": 1},
    ("cnn", "int8"): {
        "Cast": 1, "Mul": 1, "Add": 1, "FusedConv": 1, "MaxPool": 3, "QuantizeLinear": 1, "QLinearConv": 2,
        "Flatten": 1, "QGemm": 2, "Div": 1, "Softmax": 1,
    },
}  # fmt: skip


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(Counter(node.op_type for node in model.graph.node))


def optimized(path: Path, level: str, tmp_path: Path, disabled: list[str] | tuple[str, ...] = ()) -> onnx.ModelProto:
    """The graph onnxruntime runs at optimisation ``level`` without the ``disabled`` optimisers, as it saves it."""
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel, level)
    options.optimized_model_filepath = str(tmp_path / f"{path.stem}.{level}.{'-'.join(disabled) or 'all'}.onnx")
    options.log_severity_level = 3
    onnxruntime.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled)
    )
    return onnx.load(options.optimized_model_filepath)


def as_run(graphs: dict[tuple[str, str], Path], key: tuple[str, str], level: str, tmp_path: Path) -> onnx.ModelProto:
    """``optimized`` as the predictor runs ``key``: the int8 CNN's metadata turns QDQ propagation off."""
    disabled = FLOAT_BLOCK_DISABLED_OPTIMIZERS if key == ("cnn", "int8") else ()
    return optimized(graphs[key], level, tmp_path, disabled)


@pytest.fixture(scope="module")
def graphs(fashion, tmp_path_factory) -> dict[tuple[str, str], Path]:
    """The shipped checkpoints exported afresh: fp32 with ``export_onnx``, int8 with the static preset
    (with few adaptive-rounding iterations: the rounding changes weight values, not the graph)."""
    folder = tmp_path_factory.mktemp("graphs")
    preset = dataclasses.replace(PRESETS[QuantMode.static], adaptive_rounding_iterations=50)
    paths = {}
    for arch in ("mlp", "cnn"):
        fp32, int8 = folder / f"{arch}.onnx", folder / f"{arch}.int8.onnx"
        export_onnx(load_checkpoint(SHIPPED / f"{arch}.pt").net, fp32, temperature=1.5)  # T = 1 would fold away
        applied = quantize_model(fp32, int8, preset, fashion.train.images)
        assert applied.float_first_block == (arch == "cnn")  # what the metadata records: the MLP has no such block
        paths[(arch, "fp32")], paths[(arch, "int8")] = fp32, int8
    return paths


@pytest.mark.slow
@pytest.mark.parametrize("key", list(EXPORTED), ids="-".join)
def test_node_counts_as_exported_and_as_fused(graphs, key: tuple[str, str], tmp_path: Path) -> None:
    path = graphs[key]
    assert op_counts(onnx.load(str(path))) == EXPORTED[key]
    assert op_counts(as_run(graphs, key, "ORT_ENABLE_EXTENDED", tmp_path)) == FUSED[key]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_int8_takes_uint8_and_the_cnn_pools_in_float_before_quantising(graphs, arch: str, tmp_path: Path) -> None:
    model = onnx.load(str(graphs[(arch, "int8")]))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    if arch == "cnn":
        fused = as_run(graphs, (arch, "int8"), "ORT_ENABLE_EXTENDED", tmp_path)
        first_block = ["Cast", "Mul", "Add", "FusedConv", "MaxPool", "QuantizeLinear"]
        assert [node.op_type for node in fused.graph.node][:6] == first_block
        # onnxruntime's QDQ propagation, left on, would quantise before the pooling (and lose the Conv+ReLU fusion)
        propagated = optimized(graphs[(arch, "int8")], "ORT_ENABLE_EXTENDED", tmp_path)
        assert [node.op_type for node in propagated.graph.node][3:6] == ["Conv", "QuantizeLinear", "MaxPool"]


@pytest.mark.slow
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="the NCHWc layout is onnxruntime's on x86-64")
def test_int8_cnn_runs_its_first_block_in_the_fp32_nchwc_layout(graphs, tmp_path: Path) -> None:
    """At ORT_ENABLE_ALL, where the speed comes from: conv and max-pool in NCHWc, then one quantisation."""
    fused = [node.op_type for node in as_run(graphs, ("cnn", "int8"), "ORT_ENABLE_ALL", tmp_path).graph.node]
    assert fused[3:7] == ["Conv", "MaxPool", "ReorderOutput", "QuantizeLinear"]


def test_normalisation_split_is_exact(fashion, tmp_path: Path) -> None:
    """The CNN with its normalisation taken off the input, fed the normalised images, gives the fp32 model's logits."""
    original = SHIPPED / "cnn.onnx"
    model = onnx.load(str(original))
    scale, shift = split_pixel_normalization(model) or (None, None)
    assert scale is not None and shift is not None
    assert "Mul" not in op_counts(model) and "Add" not in op_counts(model)
    images = fashion.test.images[:500, None].astype(np.float32)
    expected = logits_of(original, images)
    got = logits_of(model, (images * np.float32(scale) + np.float32(shift)).astype(np.float32))
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_the_float_first_block_and_its_uint8_cast(fashion) -> None:
    """The CNN's first block runs from the input through the first MaxPool (the MLP has none), and the
    uint8 input cast to float gives exactly the fp32 model's logits on the same pixels."""
    model = onnx.load(str(SHIPPED / "cnn.onnx"))
    block = first_block_nodes(model)
    by_name = {node.name: node.op_type for node in model.graph.node}
    assert [by_name[name] for name in block] == ["Mul", "Add", "Conv", "Relu", "MaxPool"]
    assert first_block_nodes(onnx.load(str(SHIPPED / "mlp.onnx"))) == []
    images = fashion.test.images[:500, None]
    expected = logits_of(SHIPPED / "cnn.onnx", images.astype(np.float32))
    cast_uint8_input(model)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    np.testing.assert_array_equal(logits_of(model, images), expected)


def chain(*op_types: str, named: bool = True, input_readers: int = 1) -> onnx.ModelProto:
    """A graph whose input runs through ``op_types`` one after another (attributes left out: never run)."""
    tensors = ["image", *[f"t{i}" for i in range(len(op_types))]]
    nodes = [
        onnx.helper.make_node(op, [tensors[i]], [tensors[i + 1]], name=f"n{i}" if named else "")
        for i, op in enumerate(op_types)
    ]
    nodes += [onnx.helper.make_node("Relu", ["image"], [f"extra{i}"]) for i in range(input_readers - 1)]
    value = onnx.helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, None)
    return onnx.helper.make_model(onnx.helper.make_graph(nodes, "g", [value], []))


def test_the_float_first_block_is_one_conv_chain_to_the_first_max_pool() -> None:
    assert first_block_nodes(chain("Mul", "Add", "Conv", "Relu", "MaxPool", "Conv")) == ["n0", "n1", "n2", "n3", "n4"]
    assert first_block_nodes(chain("Conv", "Relu", "Conv", "Relu", "MaxPool")) == []  # two convs: not one block
    assert first_block_nodes(chain("Relu", "MaxPool", "Conv")) == []  # no conv before the pooling
    assert first_block_nodes(chain("Flatten", "Gemm", "Relu")) == []  # no pooling (the MLP)
    assert first_block_nodes(chain("Conv", "Relu", "MaxPool", named=False)) == []  # excluded by name: needs names
    assert first_block_nodes(chain("Conv", "Relu", "MaxPool", input_readers=2)) == []  # the input feeds two nodes


def logits_of(model: Path | onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    session = onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"image": images})[0]


def test_static_export_falls_back_to_per_channel_weights_everywhere() -> None:
    from edgefmnist.export.pipeline import preset_and_fallback
    from edgefmnist.export.quantize import QuantMode

    first, second = preset_and_fallback(PRESETS[QuantMode.static])
    assert not first.per_channel and first.per_channel_ops == () and second.per_channel
    assert {**first.to_dict(), "per_channel": True} == second.to_dict()
    assert preset_and_fallback(PRESETS[QuantMode.dynamic]) == [PRESETS[QuantMode.dynamic]]


@pytest.mark.parametrize("first_passes", [True, False])
def test_each_int8_try_is_announced_and_a_failed_one_is_tried_per_channel(monkeypatch, first_passes: bool) -> None:
    from types import SimpleNamespace
    from typing import Any

    from edgefmnist.export import pipeline

    tried: list = []
    announced: list[tuple[int, bool]] = []

    def quantize(fp32: Path, int8: Path, preset: Any, images: Any) -> Any:
        tried.append(preset)
        return preset

    monkeypatch.setattr(pipeline, "quantize_or_refuse", quantize)
    monkeypatch.setattr(
        pipeline,
        "calibrate_and_compare",
        lambda *args, **kwargs: ("calibration", "logits", SimpleNamespace(passed=first_passes or len(tried) > 1)),
    )
    dataset: Any = SimpleNamespace(train=SimpleNamespace(images=None), validation=None, test=None)
    applied, *_, report = pipeline.quantised_and_compared(
        Path("fp32.onnx"),
        Path("int8.onnx"),
        QuantMode.static,
        dataset,
        np.zeros((1, 10)),
        "fp32.onnx",
        announce=lambda retry: announced.append((len(tried), retry)),
    )
    assert announced == ([(0, False)] if first_passes else [(0, False), (1, True)]) and report.passed
    assert applied.per_channel is not first_passes and tried[-1] is applied
