"""Exemplar selection: a strategy ranks a group's candidates, best first.

A buffer keeps each group's best-ranked share, so shrinking a group drops the last-ranked first.
"""
from __future__ import annotations

from typing import Any, Protocol

import torch

from replaycli.data import StreamDataset
from replaycli.errors import ConfigError


class SelectionStrategy(Protocol):
    def rank(self, strategy: Any, data: StreamDataset, limit: int | None = None) -> torch.Tensor:
        """Positions of `data`, best first; only the first `limit` need be exact."""
        ...


class RandomExemplarsSelectionStrategy:
    """A uniform random ranking. Buffers draw one persistent key per sample (`by_key`), so a
    random group is a reservoir sample of everything it was offered."""

    by_key = True

    def __init__(self, generator: torch.Generator | None = None):
        self.generator = generator

    def rank(self, strategy: Any, data: StreamDataset, limit: int | None = None) -> torch.Tensor:
        return torch.randperm(len(data), generator=self.generator)

    def make_sorted_indices(self, strategy: Any, data: StreamDataset) -> list[int]:
        return self.rank(strategy, data).tolist()


class FeatureBasedExemplarsSelectionStrategy:
    """Ranks by the features that layer `layer_name` of `model` outputs (flattened).

    Features are computed in batches of `batch_size`, without gradients, in eval mode, on the
    model's device; the model's train/eval mode is restored afterwards.
    """

    def __init__(self, model: torch.nn.Module, layer_name: str, batch_size: int = 256):
        names = [n for n, _ in model.named_modules() if n]
        if layer_name not in names:
            raise ConfigError(f"layer_name={layer_name!r} is not a layer of the model; allowed: {', '.join(names)}")
        self.model = model
        self.layer_name = layer_name
        self.batch_size = batch_size

    @torch.no_grad()
    def features(self, data: StreamDataset) -> torch.Tensor:
        """[n, d] features of every sample of `data`."""
        device = next(self.model.parameters(), torch.empty(0)).device  # no parameters: CPU
        layer = self.model.get_submodule(self.layer_name)
        out: list[torch.Tensor] = []
        # clone: a later in-place op (ReLU(inplace=True)) would otherwise rewrite the saved output
        hook = layer.register_forward_hook(lambda _m, _i, o: out.append(o.flatten(1).clone()))
        was_training = self.model.training
        self.model.eval()
        try:
            data = data.eval()
            for start in range(0, len(data), self.batch_size):
                x, _, _ = data.batch(torch.arange(start, min(start + self.batch_size, len(data))))
                self.model(x.to(device))
        finally:
            hook.remove()
            self.model.train(was_training)
        return torch.cat(out) if out else torch.empty(0, 0, device=device)

    def rank(self, strategy: Any, data: StreamDataset, limit: int | None = None) -> torch.Tensor:
        if len(data) == 0:
            return torch.empty(0, dtype=torch.int64)
        return self.rank_features(self.features(data), limit).cpu()

    def make_sorted_indices(self, strategy: Any, data: StreamDataset) -> list[int]:
        return self.rank(strategy, data).tolist()

    def rank_features(self, features: torch.Tensor, limit: int | None = None) -> torch.Tensor:
        """Ranking from features; by default nearest to the mean first (subclasses refine)."""
        return closest_to_center(features)


class ClosestToCenterSelectionStrategy(FeatureBasedExemplarsSelectionStrategy):
    """Nearest to the mean feature first."""

    def rank_features(self, features: torch.Tensor, limit: int | None = None) -> torch.Tensor:
        return closest_to_center(features)


class HerdingSelectionStrategy(FeatureBasedExemplarsSelectionStrategy):
    """iCaRL herding: each next exemplar keeps the mean of those chosen closest to the mean of all."""

    def rank_features(self, features: torch.Tensor, limit: int | None = None) -> torch.Tensor:
        return herding(features, limit)


def closest_to_center(features: torch.Tensor, center: torch.Tensor | None = None) -> torch.Tensor:
    """Positions of `features` [n, d] by distance to `center` (default: their mean), nearest first."""
    center = features.mean(0) if center is None else center
    return torch.argsort((features - center).norm(dim=1), stable=True)


def herding(features: torch.Tensor, limit: int | None = None) -> torch.Tensor:
    """iCaRL herding order of `features` [n, d]: greedily pick the sample that brings the mean of
    the picked closest to the mean of all. The first `limit` (all when None) are herded; the rest
    follow nearest-to-center first, which is what herding would reach for next in the limit."""
    n = len(features)
    k = n if limit is None else min(n, limit)
    target = features.mean(0)  # [d]
    picked = torch.zeros(n, dtype=torch.bool, device=features.device)
    total = torch.zeros_like(target)
    order = []
    for step in range(1, k + 1):
        dist = (target - (total + features) / step).norm(dim=1)  # [n] distance if each were next
        dist[picked] = float("inf")
        i = int(torch.argmin(dist))
        order.append(i)
        picked[i] = True
        total += features[i]
    rest = (~picked).nonzero().flatten()
    if len(rest):
        rest = rest[closest_to_center(features[rest], target)]
    return torch.cat([torch.tensor(order, dtype=torch.int64, device=features.device), rest])

