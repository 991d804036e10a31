"""Models: each has a `features` body and a `classifier` head, so feature-based selection can
name either (or any sub-layer, e.g. `features.0`). `replay run` builds every model as
`Model(num_classes=..., input_shape=(C, H, W), **its YAML keys)`."""

from __future__ import annotations

import math

import torch
from torch import nn

from replaycli.errors import ConfigError, choice, integer, number

INITS = ("default", "xavier", "kaiming")


def initialise(model: nn.Module, init: str) -> nn.Module:
    """`model.init`: `default` keeps PyTorch's initialisation; `xavier` draws every Linear and Conv
    weight from Glorot's uniform distribution (gain 1) and zeroes the biases, as Mammoth's
    backbones do for their Linear layers (the DER paper's MLP has no other); `kaiming` draws them
    from He's normal distribution for ReLU (fan_in) and zeroes the biases."""
    choice("init", init, INITS)
    if init == "default":
        return model
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            if init == "xavier":
                nn.init.xavier_uniform_(m.weight)
            else:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


class SimpleMLP(nn.Module):
    """Flatten, `hidden_layers` x (Linear, ReLU, Dropout), then a linear classifier."""

    def __init__(
        self,
        num_classes: int = 10,
        input_size: int = 784,
        hidden_size: int = 512,
        hidden_layers: int = 1,
        drop_rate: float = 0.5,
        input_shape: tuple[int, ...] | None = None,
        init: str = "default",
    ):
        """`input_shape` (the run's uniform argument), when given, sets `input_size` to its product."""
        super().__init__()
        integer("hidden_size", hidden_size)
        integer("hidden_layers", hidden_layers, 0)
        number("drop_rate", drop_rate, 0.0, below=1.0)
        width = math.prod(input_shape) if input_shape is not None else input_size
        layers: list[nn.Module] = [nn.Flatten()]
        for _ in range(hidden_layers):
            layers += [nn.Linear(width, hidden_size), nn.ReLU(inplace=True), nn.Dropout(drop_rate)]
            width = hidden_size
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)
        initialise(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))  # [B, num_classes]


def image_channels(model: str, input_shape: tuple[int, ...]) -> int:
    """The channels of images [C, H, W], which the convolutional models read; other samples are
    refused when the model is built, not mid-run."""
    if len(input_shape) != 3:
        raise ConfigError(
            f"model={model} convolves images [C, H, W]; these samples have shape {tuple(input_shape)}; "
            "allowed: an image benchmark, or model=mlp"
        )
    return int(input_shape[0])


class SmallCNN(nn.Module):
    """Two conv blocks (conv, ReLU, max-pool) and a global average pool, then a linear head."""

    def __init__(
        self, num_classes: int = 10, input_shape: tuple[int, ...] = (1, 28, 28), width: int = 32, init: str = "default"
    ):
        super().__init__()
        in_channels = image_channels("cnn", input_shape)
        integer("width", width)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(2 * width, num_classes)
        initialise(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SlimResNet18(nn.Module):
    """The reduced ResNet-18 of GEM/DER for CIFAR: `nf` base filters (20), 4 stages of 2 blocks."""

    def __init__(
        self, num_classes: int = 10, input_shape: tuple[int, ...] = (3, 32, 32), nf: int = 20, init: str = "default"
    ):
        super().__init__()
        in_channels = image_channels("resnet18", input_shape)
        integer("nf", nf)
        stages, cin = [], nf
        for i, stride in enumerate((1, 2, 2, 2)):
            cout = nf * 2**i
            stages += [_Block(cin, cout, stride), _Block(cout, cout, 1)]
            cin = cout
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, nf, 3, 1, 1, bias=False),
            nn.BatchNorm2d(nf),
            nn.ReLU(inplace=True),
            *stages,
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(cin, num_classes)
        initialise(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
