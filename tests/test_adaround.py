"""Adaptive rounding: every weight is rounded down or up from ``W / s`` (nothing else changes), and the
learned rounding brings a quantised graph's outputs nearer fp32's than rounding to nearest, also on
images it did not see."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from edgefmnist.export import adaround
from edgefmnist.export.adaround import initial_logits, rectified_sigmoid, round_adaptively
from edgefmnist.export.bias_correction import layer_inputs
from onnx import numpy_helper
from quant_graphs import LAPLACE_IMAGES, laplace_net, quantised, stored_layer

LIMIT = 64  # 7-bit weights, as the static preset quantises them
ITERATIONS = 500
UNSEEN_IMAGES = np.random.default_rng(5).uniform(0, 1, (256, 20, 20)).astype(np.float32)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These layers are tiny: one thread is several times faster than two competing with another test worker."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def output_error(model: onnx.ModelProto, fp32: onnx.ModelProto, images: np.ndarray) -> float:
    """Mean squared difference of ``model``'s logits from ``fp32``'s on ``images``."""

    def logits(m: onnx.ModelProto) -> np.ndarray:
        session = onnxruntime.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(["logits"], {"image": images[:, None]})[0]

    return float(np.square(logits(model) - logits(fp32)).mean())


def test_the_soft_offset_starts_at_the_weights_own_fraction() -> None:
    """``h(V0)`` is the fractional part of ``W / s``: the optimisation starts from the exact weights."""
    residual = np.linspace(0, 0.999, 1000)
    np.testing.assert_allclose(rectified_sigmoid(initial_logits(residual)).numpy(), residual, atol=1e-5)
    assert rectified_sigmoid(torch.tensor([-50.0, 50.0])).tolist() == [0.0, 1.0]  # clipped, reachable exactly


@pytest.mark.parametrize(
    ("per_channel", "conv_bias", "transposed"),
    [(False, True, True), (True, True, True), (False, False, True), (False, True, False)],
    ids=["per-tensor", "per-channel", "conv-without-bias", "gemm-transB0"],
)
def test_learned_rounding_is_nearer_fp32_than_nearest(
    per_channel: bool, conv_bias: bool, transposed: bool, tmp_path: Path
) -> None:
    laplace_net(tmp_path / "net.onnx", conv_bias=conv_bias, transposed=transposed)
    fp32, nearest = quantised(tmp_path / "net.onnx", per_channel)
    learned = onnx.ModelProto()
    learned.CopyFrom(nearest)
    changed = round_adaptively(learned, fp32, LAPLACE_IMAGES[:, None], LIMIT, iterations=ITERATIONS)
    assert set(changed) == {"conv", "gemm"} and changed["gemm"] > 0.01
    exact = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in fp32.graph.initializer}
    for name in ("conv", "gemm"):
        old, new = stored_layer(nearest, name), stored_layer(learned, name)
        assert new["q"].dtype == np.int8 and np.abs(new["q"]).max() <= LIMIT
        assert np.mean(new["q"] != old["q"]) == pytest.approx(changed[name])
        scale = new["weight_scale"].astype(np.float64)  # per channel along axis 0 (Conv, transB Gemm)
        ratio = exact[f"{name}.w"] / scale.reshape([-1] + [1] * (new["q"].ndim - 1))  # W / s
        down, up = (np.clip(rounded, -LIMIT, LIMIT) for rounded in (np.floor(ratio), np.ceil(ratio)))
        assert np.all((new["q"] == down) | (new["q"] == up))
        for key in new.keys() - {"q", "weight"}:  # scales and biases
            np.testing.assert_array_equal(new[key], old[key])
    for images in (LAPLACE_IMAGES, UNSEEN_IMAGES):
        assert output_error(learned, fp32, images) < 0.8 * output_error(nearest, fp32, images)


def test_each_layer_learns_from_the_int8_inputs_the_layers_before_it_give(tmp_path: Path, monkeypatch) -> None:
    """The Gemm is fitted on what the re-rounded conv feeds it (not fp32's or the nearest conv's inputs),
    towards fp32's ReLU'd conv outputs for the conv and raw logits for the Gemm."""
    laplace_net(tmp_path / "net.onnx")
    fp32, int8 = quantised(tmp_path / "net.onnx", False)
    nearest = onnx.ModelProto()
    nearest.CopyFrom(int8)
    seen = {}
    real = adaround.learn_rounding

    def spy(forward, weight, step, limit, x_q, target, iterations, seed, description):
        seen[description] = (x_q, target)
        return real(forward, weight, step, limit, x_q, target, iterations, seed, description)

    monkeypatch.setattr(adaround, "learn_rounding", spy)
    round_adaptively(int8, fp32, LAPLACE_IMAGES[:, None], LIMIT, iterations=ITERATIONS)
    images = LAPLACE_IMAGES[:, None]
    gemm_input = next(node for node in int8.graph.node if node.name == "gemm").input[0]
    x_q, _ = seen["AdaRound gemm"]
    np.testing.assert_array_equal(x_q, layer_inputs(int8, [gemm_input], images)[gemm_input])
    assert not np.array_equal(x_q, layer_inputs(nearest, [gemm_input], images)[gemm_input])
    fp32_outputs = layer_inputs(fp32, ["relu.y", "logits"], images)
    np.testing.assert_allclose(seen["AdaRound conv"][1], fp32_outputs["relu.y"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(seen["AdaRound gemm"][1], fp32_outputs["logits"], rtol=1e-5, atol=1e-4)


def test_the_same_seed_gives_the_same_weights_and_another_seed_others(tmp_path: Path) -> None:
    laplace_net(tmp_path / "net.onnx")
    fp32, int8 = quantised(tmp_path / "net.onnx", False)
    runs = []
    for seed in (7, 7, 8):
        copy = onnx.ModelProto()
        copy.CopyFrom(int8)
        round_adaptively(copy, fp32, LAPLACE_IMAGES[:, None], LIMIT, iterations=300, seed=seed)
        runs.append(stored_layer(copy, "gemm")["q"])
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
