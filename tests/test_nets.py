"""Network shapes, sizes, and the in-graph pixel normalisation."""

from __future__ import annotations

import pytest
import torch

from edgefmnist import spec
from edgefmnist.contract import Arch
from edgefmnist.nets import MLP, NetConfig, build_net, count_multiply_adds, count_parameters


def test_mlp_is_the_tutorials_784_300_100_10() -> None:
    net = build_net(NetConfig(Arch.mlp))
    shapes = [tuple(p.shape) for p in net.parameters()]
    assert shapes == [(300, 784), (300,), (100, 300), (100,), (10, 100), (10,)]
    assert count_parameters(net) == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10 == 266_610
    assert count_multiply_adds(net) == 784 * 300 + 300 * 100 + 100 * 10


def test_cnn_is_small_enough_for_a_pi() -> None:
    net = build_net(NetConfig(Arch.cnn))
    assert 30_000 <= count_parameters(net) <= 100_000
    assert 1_000_000 <= count_multiply_adds(net) <= 5_000_000


@pytest.mark.parametrize("arch", list(Arch))
@pytest.mark.parametrize("batch", [1, 7])
def test_raw_pixels_in_logits_out(arch: Arch, batch: int) -> None:
    net = build_net(NetConfig(arch, mean=spec.PIXEL_MEAN, std=spec.PIXEL_STD)).eval()
    out = net(torch.randint(0, 256, (batch, *spec.INPUT_SHAPE)).float())
    assert out.shape == (batch, spec.NUM_CLASSES) and torch.isfinite(out).all()


def test_normalisation_is_inside_the_network() -> None:
    net = build_net(NetConfig(Arch.mlp, mean=spec.PIXEL_MEAN, std=spec.PIXEL_STD))
    plain = build_net(NetConfig(Arch.mlp))
    assert isinstance(net, MLP) and isinstance(plain, MLP)
    pixels = torch.tensor([0.0, 255.0, 127.0])
    expected = (pixels / 255 - spec.PIXEL_MEAN) / spec.PIXEL_STD
    torch.testing.assert_close(net.normalize(pixels), expected)
    torch.testing.assert_close(plain.normalize(pixels), pixels / 255)


def test_unknown_architecture_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown architecture 'resnet'"):
        NetConfig("resnet")  # type: ignore[arg-type]


def test_folding_the_normalisation_keeps_the_mlps_outputs() -> None:
    from edgefmnist.nets import PixelNormalize, fold_normalization

    torch.manual_seed(0)
    net = build_net(NetConfig(Arch.mlp, mean=0.286, std=0.353, dropout=0.1)).eval()
    folded = fold_normalization(net)
    pixels = torch.randint(0, 256, (64, *spec.INPUT_SHAPE)).float()
    assert not any(isinstance(m, PixelNormalize) for m in folded.modules())
    assert torch.allclose(folded(pixels), net(pixels), atol=1e-4)
    assert net(pixels).shape == (64, spec.NUM_CLASSES) and isinstance(net.normalize, PixelNormalize)  # original intact
    cnn = build_net(NetConfig(Arch.cnn))
    assert fold_normalization(cnn) is cnn  # zero padding after normalisation: not foldable
