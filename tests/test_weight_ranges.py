"""MSE weight ranges: the chosen scale is the grid's least squared error, per tensor or per channel, and a
quantised graph keeps 7-bit weights and biases at input scale x weight scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from edgefmnist.export.adaround import round_adaptively
from edgefmnist.export.weight_ranges import RANGE_FRACTIONS, fit_weight_ranges, mse_fractions
from onnx import numpy_helper
from onnxruntime.quantization import QuantType
from quant_graphs import LAPLACE_IMAGES, laplace_net, quantised, stored_layer

LIMIT = 64  # 7-bit weights, as the static preset quantises them


def squared_error(weight: np.ndarray, step: float) -> float:
    return float(np.square(np.clip(np.round(weight / step), -LIMIT, LIMIT) * step - weight).sum())


def test_the_fraction_is_the_grid_point_with_the_least_squared_error() -> None:
    """20,000 Laplace weights (a trained layer's shape of tail): the largest few stretch the min-max
    scale, and clipping them to round the rest finer wins."""
    weight = np.random.default_rng(0).laplace(0, 0.05, (100, 200))
    minmax = np.abs(weight).max() / LIMIT
    errors = [squared_error(weight, minmax * f) for f in RANGE_FRACTIONS]
    fraction = mse_fractions(weight, np.full((1, 1), minmax), LIMIT)
    assert fraction.shape == (1, 1)
    assert fraction[0, 0] == RANGE_FRACTIONS[int(np.argmin(errors))] < 0.9
    assert squared_error(weight, minmax * fraction[0, 0]) < 0.8 * squared_error(weight, minmax)
    floored = mse_fractions(weight, np.full((1, 1), minmax), LIMIT, smallest_scale=0.9475 * minmax)
    assert floored[0, 0] == RANGE_FRACTIONS[int(np.argmin(errors[-11:])) - 11] >= 0.95  # only 0.95-1.0 allowed


def test_per_channel_fractions_follow_each_channel() -> None:
    """A uniform row keeps (nearly) its min-max scale; a Laplace row gets a smaller one."""
    rng = np.random.default_rng(1)
    weight = np.stack([rng.uniform(-1, 1, 20_000), rng.laplace(0, 0.05, 20_000)])
    scale = np.abs(weight).max(axis=1, keepdims=True) / LIMIT
    fraction = mse_fractions(weight, scale, LIMIT)
    assert fraction.shape == (2, 1)
    assert fraction[0, 0] >= 0.95 and fraction[1, 0] < 0.9
    for row in range(2):
        errors = [squared_error(weight[row], scale[row, 0] * f) for f in RANGE_FRACTIONS]
        assert fraction[row, 0] == RANGE_FRACTIONS[int(np.argmin(errors))]


def logits(model: onnx.ModelProto) -> np.ndarray:
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"image": LAPLACE_IMAGES[:, None]})[0]


@pytest.mark.parametrize(
    ("per_channel", "transposed"),
    [(False, True), (True, True), (True, False)],
    ids=["per-tensor", "per-channel", "per-channel-gemm-transB0"],
)
def test_fit_weight_ranges_on_a_quantised_graph(per_channel: bool, transposed: bool, tmp_path: Path) -> None:
    """No layer's weights get worse and the Gemm's get better; they stay 7-bit int8 with float32
    scales, each bias stays int32 within half a step of fp32's at input scale x weight scale, and
    onnxruntime runs the graph, its logits near fp32's. (Nearer than before is not promised: the
    squared weight error is what is minimised, and these random images do not favour it.)"""
    laplace_net(tmp_path / "net.onnx", transposed)
    fp32, before = quantised(tmp_path / "net.onnx", per_channel)
    after = onnx.ModelProto()
    after.CopyFrom(before)
    fractions = fit_weight_ranges(after, fp32, LIMIT)
    assert set(fractions) == {"conv", "gemm"} and fractions["gemm"] < 0.97
    exact = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in fp32.graph.initializer}
    for name in ("conv", "gemm"):
        old, new = stored_layer(before, name), stored_layer(after, name)
        ratio = new["weight_scale"].astype(np.float64) / old["weight_scale"]
        assert np.isclose(ratio.min(), fractions[name], rtol=1e-6) and np.all(
            np.isin(np.round(ratio, 4), np.round(RANGE_FRACTIONS, 4))
        )
        assert new["q"].dtype == np.int8 and np.abs(new["q"]).max() <= LIMIT
        assert new["weight_scale"].dtype == new["bias_scale"].dtype == np.float32 and new["bias_q"].dtype == np.int32
        assert new["weight_scale"].shape == old["weight_scale"].shape
        old_error = np.square(old["weight"] - exact[f"{name}.w"]).sum()
        new_error = np.square(new["weight"] - exact[f"{name}.w"]).sum()
        assert new_error <= old_error * (1 + 1e-9), (name, new_error, old_error)
        if name == "gemm":
            assert new_error < 0.95 * old_error, (new_error, old_error)
        np.testing.assert_allclose(new["bias_scale"], new["input_scale"] * new["weight_scale"], rtol=1e-6)
        assert np.all(np.abs(new["bias"] - exact[f"{name}.b"]) <= 0.5 * new["bias_scale"] * (1 + 1e-6))
    reference = logits(fp32)
    assert np.abs(logits(after) - reference).mean() < 0.05 * reference.std()


@pytest.mark.parametrize(
    "options",
    [{"weight_type": QuantType.QUInt8}, {"WeightSymmetric": False}],
    ids=["uint8-weights", "asymmetric-int8"],
)
@pytest.mark.parametrize(
    "edit",
    [
        lambda int8, fp32: fit_weight_ranges(int8, fp32, LIMIT),
        lambda int8, fp32: round_adaptively(int8, fp32, LAPLACE_IMAGES[:, None], LIMIT, iterations=10),
    ],
    ids=["mse-ranges", "adaround"],
)
def test_weights_that_are_not_symmetric_int8_are_refused(edit, options: dict, tmp_path: Path) -> None:
    """Both weight edits refuse them (the check they share: bias_correction.quantised_weight)."""
    laplace_net(tmp_path / "net.onnx")
    fp32, int8 = quantised(tmp_path / "net.onnx", False, **options)
    with pytest.raises(ValueError, match="symmetric int8"):
        edit(int8, fp32)


@pytest.mark.parametrize(
    "edit",
    [
        lambda int8, fp32, limit: fit_weight_ranges(int8, fp32, limit),
        lambda int8, fp32, limit: round_adaptively(int8, fp32, LAPLACE_IMAGES[:, None], limit, iterations=10),
    ],
    ids=["mse-ranges", "adaround"],
)
def test_weights_beyond_the_limit_are_refused(edit, tmp_path: Path) -> None:
    """Both weight edits refuse int8 weights larger than the quantiser's limit (bias_correction.check_int8_weights)."""
    laplace_net(tmp_path / "net.onnx")
    fp32, int8 = quantised(tmp_path / "net.onnx", False)
    with pytest.raises(ValueError, match=r"within \+-10 expected"):
        edit(int8, fp32, 10)


def test_int8_weights_of_another_shape_are_refused() -> None:
    from edgefmnist.export.bias_correction import check_int8_weights

    check_int8_weights(np.full((3, 2), -64, np.int8), np.zeros((3, 2)), 64, "P")
    expected = r"P: int8 weights of shape \(3, 2\) within \+-64 expected, found shape \(2, 3\), largest magnitude 0"
    with pytest.raises(ValueError, match=expected):
        check_int8_weights(np.zeros((2, 3), np.int8), np.zeros((3, 2)), 64, "P")
    with pytest.raises(ValueError, match=r"found shape \(0,\), largest magnitude 0"):
        check_int8_weights(np.zeros(0, np.int8), np.zeros(3), 64, "P")


def test_layers_must_have_unique_names(tmp_path: Path) -> None:
    """Unnamed layers, or an fp32 graph where a layer's name is taken twice, are refused."""
    laplace_net(tmp_path / "unnamed.onnx", names=("", ""))
    fp32, int8 = quantised(tmp_path / "unnamed.onnx", False)
    with pytest.raises(ValueError, match="does not name exactly one fp32 node"):
        fit_weight_ranges(int8, fp32, LIMIT)
    laplace_net(tmp_path / "named.onnx")
    fp32, int8 = quantised(tmp_path / "named.onnx", False)
    next(node for node in fp32.graph.node if node.name == "relu").name = "gemm"
    with pytest.raises(ValueError, match="'gemm' does not name exactly one fp32 node"):
        fit_weight_ranges(int8, fp32, LIMIT)


@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_a_bias_too_large_for_a_smaller_scale_keeps_the_quantiser_scale(per_channel: bool, tmp_path: Path) -> None:
    """onnxruntime (1.19 and later) widens a weight scale so that a large bias fits int32; no smaller
    scale is taken for that layer (or channel), so the bias is not clipped."""
    laplace_net(tmp_path / "net.onnx", gemm_bias_scale=1e6)
    fp32, int8 = quantised(tmp_path / "net.onnx", per_channel)
    exact = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in fp32.graph.initializer}
    minmax = np.abs(exact["gemm.w"]).max(axis=1 if per_channel else None) / LIMIT
    widened = stored_layer(int8, "gemm")["weight_scale"] > minmax * 1.01
    if not np.all(widened):
        pytest.skip("this onnxruntime does not widen weight scales for large biases")
    fractions = fit_weight_ranges(int8, fp32, LIMIT)
    assert fractions["gemm"] == 1.0
    gemm = stored_layer(int8, "gemm")
    assert np.all(np.abs(gemm["bias"] - exact["gemm.b"]) <= 0.5 * gemm["bias_scale"] * (1 + 1e-6))


def test_a_layer_without_a_bias_gets_its_range_too(tmp_path: Path) -> None:
    laplace_net(tmp_path / "net.onnx", conv_bias=False)
    fp32, int8 = quantised(tmp_path / "net.onnx", False)
    before = {t.name: numpy_helper.to_array(t) for t in int8.graph.initializer}
    fractions = fit_weight_ranges(int8, fp32, LIMIT)
    assert set(fractions) == {"conv", "gemm"}
    after = {t.name: numpy_helper.to_array(t) for t in int8.graph.initializer}
    assert not np.array_equal(before["gemm.w_quantized"], after["gemm.w_quantized"])  # the Gemm's fraction < 1
