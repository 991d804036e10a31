"""Exemplar selection on hand-placed feature points whose rankings are known."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from replaycli.buffers import ParametricBuffer
from replaycli.data.dataset import StreamDataset
from replaycli.data.pool import Pool
from replaycli.selection import (
    ClosestToCenterSelectionStrategy,
    FeatureBasedExemplarsSelectionStrategy,
    HerdingSelectionStrategy,
    RandomExemplarsSelectionStrategy,
    closest_to_center,
    herding,
)

# 1-D points with mean 30: nearest-to-center gives 40, 11, 10, 59 but herding, after 40 and 11
# (running mean 25.5), needs a large point to pull the mean back to 30, so it takes 59 before 10.
LINE = [10.0, 11.0, 40.0, 59.0]
LINE_CLOSEST = [2, 1, 0, 3]
LINE_HERDING = [2, 1, 3, 0]
# a second class: mean 140.25; again herding swaps the last two
LINE2 = [100.0, 130.0, 131.0, 200.0]


def test_closest_to_center_known_order():
    f = torch.tensor(LINE)[:, None]
    assert closest_to_center(f).tolist() == LINE_CLOSEST
    assert closest_to_center(torch.tensor(LINE2)[:, None]).tolist() == LINE_CLOSEST
    # an explicit center; ties keep their input order
    pts = torch.tensor([[0.0, 3.0], [1.0, 0.0], [0.0, -1.0], [-1.0, 0.0], [5.0, 5.0]])
    assert closest_to_center(pts, torch.zeros(2)).tolist() == [1, 2, 3, 0, 4]


def test_herding_known_order():
    assert herding(torch.tensor(LINE)[:, None]).tolist() == LINE_HERDING
    assert herding(torch.tensor(LINE2)[:, None]).tolist() == LINE_HERDING
    # a square around its center: the center, then a corner (ties go to the first), then the
    # opposite corner that brings the mean back to 0, then the other pair
    pts = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [0.0, 0.0], [-1.0, -1.0], [1.0, -1.0]])
    assert herding(pts).tolist() == [2, 0, 3, 1, 4]
    assert closest_to_center(pts).tolist() == [2, 0, 1, 3, 4]


def _herding_oracle(f: np.ndarray) -> list[int]:
    """iCaRL herding written from its definition, in float64 numpy."""
    mu, chosen = f.mean(0), []
    for k in range(1, len(f) + 1):
        best, best_d = -1, np.inf
        for i in range(len(f)):
            if i in chosen:
                continue
            d = np.sum((mu - (f[chosen].sum(0) + f[i]) / k) ** 2)
            if d < best_d:
                best, best_d = i, d
        chosen.append(best)
    return chosen


def test_herding_matches_definition_and_limit():
    rng = np.random.default_rng(0)
    for n, d in ((7, 1), (12, 3), (20, 5)):
        f = rng.normal(size=(n, d))
        full = herding(torch.from_numpy(f))
        assert full.tolist() == _herding_oracle(f)
        k = n // 3
        part = herding(torch.from_numpy(f), limit=k)
        assert part[:k].tolist() == full[:k].tolist()  # the first `limit` are herded exactly
        rest = part[k:]
        assert sorted(part.tolist()) == list(range(n))
        dist = np.linalg.norm(f[rest.numpy()] - f.mean(0), axis=1)
        assert np.all(np.diff(dist) >= 0)  # the rest follow nearest to the mean first


# --- strategies through a model -------------------------------------------------------------
class Probe(nn.Module):
    """Outputs at layer `embed` the pixel values themselves, so features are placed by hand."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Identity()
        self.head = nn.Linear(2, 3)

    def forward(self, x):
        return self.head(self.embed(x.flatten(1) * 255))  # [B, 2] features: the raw pixels


def _points(values: list[list[float]], labels: list[int]) -> StreamDataset:
    """A dataset whose sample i has the 2 pixels `values[i]` (uint8) and class `labels[i]`."""
    x = torch.tensor(values, dtype=torch.uint8).view(-1, 1, 1, 2)
    pool = Pool(x, torch.tensor(labels))
    return StreamDataset(pool, torch.arange(len(x)))


def test_strategies_rank_the_named_layer_features():
    ds = _points([[v, 7] for v in LINE], [0] * 4)
    model = Probe().train()
    herd = HerdingSelectionStrategy(model, "embed")
    assert torch.allclose(herd.features(ds), torch.tensor([[v, 7.0] for v in LINE]), atol=1e-4)
    assert herd.rank(ds).tolist() == LINE_HERDING
    assert herd.make_sorted_indices(None, ds) == LINE_HERDING
    assert ClosestToCenterSelectionStrategy(model, "embed").rank(ds).tolist() == LINE_CLOSEST
    assert FeatureBasedExemplarsSelectionStrategy(model, "embed").rank(ds).tolist() == LINE_CLOSEST
    assert model.training  # the model's mode is restored
    assert herd.rank(ds.subset([])).tolist() == []


def test_in_place_activation_does_not_rewrite_features():
    # features.0 is a Linear followed by ReLU(inplace=True): its saved output must stay signed
    model = nn.Sequential()
    model.features = nn.Sequential(nn.Flatten(), nn.Linear(2, 4), nn.ReLU(inplace=True))
    with torch.no_grad():
        model.features[1].weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]))
        model.features[1].bias.zero_()
    ds = _points([[10, 20], [30, 40]], [0, 1])
    f = FeatureBasedExemplarsSelectionStrategy(model, "features.1").features(ds)
    expected = torch.tensor([[10.0, -10.0, 20.0, -20.0], [30.0, -30.0, 40.0, -40.0]]) / 255
    assert torch.allclose(f, expected, atol=1e-6)


def _buffer_ids(buf) -> dict[int, list[int]]:
    return {k: g.buffer.ids.tolist() for k, g in buf.buffer_groups.items()}


def test_parametric_buffer_keeps_best_ranked_per_class():
    values = [[v, 0] for v in LINE] + [[v, 0] for v in LINE2]
    ds = _points(values, [0] * 4 + [1] * 4)
    exp = SimpleNamespace(experience=SimpleNamespace(dataset=ds, current_experience=0), device="cpu")
    for strat, order in ((HerdingSelectionStrategy, LINE_HERDING), (ClosestToCenterSelectionStrategy, LINE_CLOSEST)):
        buf = ParametricBuffer(6, groupby="class", selection_strategy=strat(Probe(), "embed"))
        buf.update(exp)
        assert _buffer_ids(buf) == {0: order[:3], 1: [4 + i for i in order[:3]]}
        buf.resize(exp, 2)  # shrinking drops the last-ranked of each group
        assert _buffer_ids(buf) == {0: order[:1], 1: [4 + order[0]]}


def test_parametric_buffer_reranks_a_group_when_new_candidates_arrive():
    rng = np.random.default_rng(3)
    values = rng.choice(256, size=(30, 2), replace=False).tolist()  # distinct points: no ties
    labels = [0] * 10 + [1] * 10 + [0] * 10
    ds = _points(values, labels)
    model = Probe()
    buf = ParametricBuffer(8, groupby="class", selection_strategy=HerdingSelectionStrategy(model, "embed"))
    first, second = ds.subset(torch.arange(20)), ds.subset(torch.arange(20, 30))
    buf.update(SimpleNamespace(experience=SimpleNamespace(dataset=first, current_experience=0)))
    f = torch.tensor(values, dtype=torch.float64)
    assert _buffer_ids(buf)[0] == herding(f[:10])[:4].tolist()
    kept0 = _buffer_ids(buf)[0]
    buf.update(SimpleNamespace(experience=SimpleNamespace(dataset=second, current_experience=1)))
    # class 0 now ranks its 4 kept samples and the 10 new ones together
    candidates = torch.tensor(kept0 + list(range(20, 30)))
    expected = candidates[herding(f[candidates])[:4]].tolist()
    assert _buffer_ids(buf)[0] == expected
    assert _buffer_ids(buf)[1] == herding(f[10:20])[:4].add(10).tolist()  # untouched class 1 stays


def test_random_strategy_is_a_seeded_permutation():
    ds = _points([[i, 0] for i in range(50)], [0] * 50)
    a = RandomExemplarsSelectionStrategy(torch.Generator().manual_seed(0)).rank(ds)
    b = RandomExemplarsSelectionStrategy(torch.Generator().manual_seed(0)).make_sorted_indices(None, ds)
    assert sorted(a.tolist()) == list(range(50)) and a.tolist() == b and a.tolist() != list(range(50))


# --- Avalanche-style user subclasses are honoured -------------------------------------------------
def test_a_subclass_overriding_make_sorted_indices_ranks_the_groups():
    """A user's ranking by `make_sorted_indices(strategy, data)` (here: largest first coordinate
    first) decides what each group keeps, and sees the object `update(strategy)` was given."""
    seen = []

    class LargestFirst(RandomExemplarsSelectionStrategy):
        def make_sorted_indices(self, strategy, data):
            seen.append(strategy)
            return torch.argsort(data.pool.images(data.ids)[:, 0, 0, 0], descending=True).tolist()

    values = [[v, 0] for v in (5, 90, 30, 60, 10, 80)]
    ds = _points(values, [0, 0, 0, 1, 1, 1])
    exp = SimpleNamespace(experience=SimpleNamespace(dataset=ds, current_experience=0))
    buf = ParametricBuffer(4, groupby="class", selection_strategy=LargestFirst())
    buf.update(exp)
    assert _buffer_ids(buf) == {0: [1, 2], 1: [5, 3]} and seen == [exp, exp]  # one call per group
    buf.resize(exp, 2)
    assert _buffer_ids(buf) == {0: [1], 1: [5]}


def test_a_subclass_overriding_make_sorted_indices_from_features_ranks_by_them():
    class FarthestFromCenter(HerdingSelectionStrategy):
        def make_sorted_indices_from_features(self, features):
            return torch.argsort((features - features.mean(0)).norm(dim=1), descending=True).tolist()

    ds = _points([[v, 0] for v in LINE], [0] * len(LINE))
    f = torch.tensor([[v, 0] for v in LINE], dtype=torch.float64)
    far = torch.argsort((f - f.mean(0)).norm(dim=1), descending=True).tolist()
    buf = ParametricBuffer(2, selection_strategy=FarthestFromCenter(Probe(), "embed"))
    buf.update(SimpleNamespace(experience=SimpleNamespace(dataset=ds, current_experience=0)))
    assert buf.buffer.ids.tolist() == far[:2] != LINE_HERDING[:2]


def test_the_abstract_base_needs_make_sorted_indices_and_a_direct_subclass_ranks():
    from replaycli.selection import ExemplarsSelectionStrategy

    with pytest.raises(TypeError, match="abstract"):
        ExemplarsSelectionStrategy()

    class ReverseOrder(ExemplarsSelectionStrategy):  # Avalanche's way: subclass the base
        def make_sorted_indices(self, strategy, data):
            return list(range(len(data)))[::-1]

    ds = _points([[v, 0] for v in (1, 2, 3, 4)], [0] * 4)
    buf = ParametricBuffer(2, selection_strategy=ReverseOrder())
    buf.update(SimpleNamespace(experience=SimpleNamespace(dataset=ds, current_experience=0)))
    assert buf.buffer.ids.tolist() == [3, 2]  # the last two positions, best first
