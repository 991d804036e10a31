"""Models: output shapes, and feature-based selection reading any named layer of each."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from replaycli.buffers import ParametricBuffer
from replaycli.data.dataset import StreamDataset
from replaycli.data.pool import Pool
from replaycli.errors import ConfigError
from replaycli.models import SimpleMLP, SlimResNet18, SmallCNN
from replaycli.selection import (
    ClosestToCenterSelectionStrategy,
    FeatureBasedExemplarsSelectionStrategy,
    HerdingSelectionStrategy,
)


def random_data(n: int, shape: tuple[int, ...], n_classes: int = 10, seed: int = 0) -> StreamDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    pool = Pool(x, torch.arange(n) % n_classes, 0.5, 0.25)
    return StreamDataset(pool, torch.arange(n))


MNIST, CIFAR, DIGITS = (1, 28, 28), (3, 32, 32), (1, 8, 8)

# model, input shape, {layer name: feature size}
CASES = {
    "mlp": (SimpleMLP, MNIST, {"features": 512, "features.1": 512, "classifier": 10}),
    "mlp-digits": (
        lambda: SimpleMLP(num_classes=5, input_size=64, hidden_size=16, hidden_layers=2),
        DIGITS,
        {"features": 16, "features.4": 16, "classifier": 5},
    ),
    "cnn": (SmallCNN, MNIST, {"features": 64, "features.0": 32 * 28 * 28, "classifier": 10}),
    "cnn-digits": (lambda: SmallCNN(10, (1, 8, 8), width=8), DIGITS, {"features": 16, "features.5": 16 * 2 * 2}),
    "cnn-cifar": (lambda: SmallCNN(100, (3, 32, 32), width=8), CIFAR, {"features": 16, "classifier": 100}),
    # nf=4 keeps the CPU cost small; the default width is checked in test_slim_resnet_default_width
    "resnet": (
        lambda: SlimResNet18(nf=4),
        CIFAR,
        {"features": 32, "features.3": 4 * 32 * 32, "features.10.conv1": 32 * 4 * 4, "classifier": 10},
    ),
}


def test_slim_resnet_default_width():
    model = SlimResNet18(num_classes=100)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    assert model.classifier.in_features == 160 and model.features[0].out_channels == 20
    assert sum(p.numel() for p in model.parameters()) < 1_200_000  # the slim variant of GEM/DER


@pytest.mark.parametrize("name", CASES)
def test_forward_shapes(name):
    make, shape, layers = CASES[name]
    model = make()
    out = model(torch.randn(3, *shape))
    n_classes = model.classifier.out_features
    assert out.shape == (3, n_classes) and torch.isfinite(out).all()
    assert model.features(torch.randn(2, *shape)).shape == (2, layers["features"])


@pytest.mark.parametrize("name", CASES)
def test_feature_selection_reads_each_named_layer(name):
    torch.manual_seed(0)
    make, shape, layers = CASES[name]
    model = make().train()
    ds = random_data(8, shape)
    x, _, _ = ds.batch(torch.arange(len(ds)))
    for layer, width in layers.items():
        strat = FeatureBasedExemplarsSelectionStrategy(model, layer, batch_size=3)  # 3 batches
        f = strat.features(ds)
        assert f.shape == (8, width)
        assert model.training  # restored after the eval-mode pass
        if layer in ("features", "classifier"):
            model.eval()
            with torch.no_grad():
                ref = model.features(x) if layer == "features" else model(x)
            model.train()
            assert torch.allclose(f, ref, atol=1e-5)
        assert sorted(strat.rank(ds).tolist()) == list(range(8))


@pytest.mark.parametrize("name", ["mlp", "cnn-digits", "resnet"])
@pytest.mark.parametrize("strategy", [HerdingSelectionStrategy, ClosestToCenterSelectionStrategy])
def test_feature_strategies_fill_a_parametric_buffer(name, strategy):
    torch.manual_seed(0)
    make, shape, _ = CASES[name]
    model = make()
    ds = random_data(12, shape, n_classes=4)
    buf = ParametricBuffer(8, groupby="class", selection_strategy=strategy(model, "features"))
    buf.update(SimpleNamespace(experience=SimpleNamespace(dataset=ds, current_experience=0), device="cpu"))
    assert {k: len(g) for k, g in buf.buffer_groups.items()} == {0: 2, 1: 2, 2: 2, 3: 2}
    # each class keeps the head of the strategy's ranking of its own samples
    for c, g in buf.buffer_groups.items():
        members = ds.subset((ds.y == c).nonzero().flatten())
        ranked = strategy(model, "features").rank(members)
        assert g.buffer.ids.tolist() == members.ids[ranked[:2]].tolist()


def test_unknown_layer_lists_the_layers():
    model = SimpleMLP(hidden_layers=1)
    with pytest.raises(ConfigError) as err:
        HerdingSelectionStrategy(model, "fc7")
    assert str(err.value) == (
        "layer_name='fc7' is not a layer of the model; allowed: "
        "features, features.0, features.1, features.2, features.3, classifier"
    )
    with pytest.raises(ConfigError, match=r"layer_name='layer4'.*features\.10\.conv1"):
        ClosestToCenterSelectionStrategy(SlimResNet18(), "layer4")
