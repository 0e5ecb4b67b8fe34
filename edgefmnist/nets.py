"""The network architectures: the tutorial's MLP and a small CNN for accuracy.

Both take raw 0-255 pixels ``[N, 1, 28, 28]`` and return logits; scaling and
normalisation are the first layer (:class:`PixelNormalize`), so an exported graph carries
them and the runtime cannot get them wrong. ``build_net(NetConfig)`` rebuilds a network
from the configuration saved in a checkpoint.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from edgefmnist import spec
from edgefmnist.contract import Arch, Choice


@dataclass(frozen=True)
class NetConfig:
    """Everything needed to rebuild a network (saved in every checkpoint)."""

    arch: Arch
    mean: float = 0.0  # of the 0-1 pixels; (0, 1) is the tutorial's plain /255 scaling
    std: float = 1.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        """Parse ``arch`` (a string in a checkpoint); ``ValueError`` for an unknown one or a bad ``std``/``dropout``."""
        object.__setattr__(self, "arch", Arch.parse(self.arch, "architecture"))
        if not (self.std > 0 and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"std {self.std} must be > 0 and dropout {self.dropout} in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        """Plain values (the architecture as its string), as a checkpoint stores them."""
        return {key: Choice.plain(value) for key, value in asdict(self).items()}


class PixelNormalize(nn.Module):
    """``(x / 255 - mean) / std`` as one multiply-add with constant buffers."""

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(1.0 / (spec.PIXEL_MAX * std)))
        self.register_buffer("shift", torch.tensor(-mean / std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class MLP(nn.Module):
    """The tutorial's Flatten -> Dense 300 ReLU -> Dense 100 ReLU -> Dense 10."""

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.normalize = PixelNormalize(config.mean, config.std)
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(spec.IMAGE_SIZE * spec.IMAGE_SIZE, 300),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(300, 100),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(100, spec.NUM_CLASSES),
        )
        for layer in self.layers:
            if isinstance(layer, nn.Linear):  # Keras' Dense defaults: Glorot-uniform, zero bias
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.normalize(x))


def _conv_block(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


class CNN(nn.Module):
    """Three 3x3 conv blocks (16-32-64 channels, each halving the image) and a small head."""

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.normalize = PixelNormalize(config.mean, config.std)
        self.features = nn.Sequential(_conv_block(1, 16), _conv_block(16, 32), _conv_block(32, 64))
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(config.dropout),
            nn.Linear(64 * 3 * 3, 64),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(64, spec.NUM_CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.normalize(x)))


def fold_normalization(net: nn.Module) -> nn.Module:
    """An inference copy of ``net`` with :class:`PixelNormalize` folded into the first linear layer.

    ``W (x * s + t) + b = (W s) x + (b + t W 1)``: two fewer graph nodes on the hot path, and an
    int8 model whose input (raw 0-255 pixels) quantises exactly. Only the MLP qualifies: the
    CNN's zero padding happens after normalisation, so folding would change its borders.
    """
    if not isinstance(net, MLP):
        return net
    layers = [copy.deepcopy(layer) for layer in net.layers if not isinstance(layer, nn.Dropout)]
    first = next(layer for layer in layers if isinstance(layer, nn.Linear))
    with torch.no_grad():
        first.bias.add_(net.normalize.shift * first.weight.sum(dim=1))
        first.weight.mul_(net.normalize.scale)
    return nn.Sequential(*layers).eval()


def build_net(config: NetConfig) -> nn.Module:
    """A freshly initialised network for ``config``."""
    return MLP(config) if config.arch is Arch.mlp else CNN(config)


def count_parameters(net: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def count_multiply_adds(net: nn.Module) -> int:
    """Multiply-adds of one image through the conv and linear layers (measured by hooks)."""
    total = 0

    def count(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += module.in_features * module.out_features
        elif isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += output[0].numel() * per_output

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    was_training = net.training
    net.eval()
    with torch.no_grad():
        net(torch.zeros(1, *spec.INPUT_SHAPE))
    net.train(was_training)
    for hook in hooks:
        hook.remove()
    return total
