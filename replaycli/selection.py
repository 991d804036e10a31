"""Exemplar selection: a strategy ranks a group's candidates, best first (`rank(data, limit)`),
or, when `online`, scores each sample once as it arrives (`scores(data)`; random selection).

A buffer keeps each group's best-ranked share, so shrinking a group drops the last-ranked first.
Avalanche's names and methods (`make_sorted_indices`, `make_sorted_indices_from_features`) are
the public face: a user's subclass overriding either is honoured.
"""

from __future__ import annotations

import abc
from typing import Any

import torch

from replaycli.data.dataset import StreamDataset
from replaycli.errors import ConfigError, integer


def _overrides(obj: object, base: type, name: str) -> bool:
    """Whether `obj`'s class redefines method `name` of `base` (a user's Avalanche-style subclass)."""
    return getattr(type(obj), name) is not getattr(base, name)


class ExemplarsSelectionStrategy(abc.ABC):
    """Avalanche's abstract base class: a subclass defines `make_sorted_indices(strategy, data)`, a
    list of positions of `data`, best first (the base itself cannot be built). `strategy` is what
    the buffer's `update(strategy)` was given last (None when `replay run` fills the memory)."""

    online = False  # ranks whole groups
    strategy: Any = None

    def rank(self, data: StreamDataset, limit: int | None = None) -> torch.Tensor:
        return torch.as_tensor(self.make_sorted_indices(self.strategy, data), dtype=torch.int64)

    @abc.abstractmethod
    def make_sorted_indices(self, strategy: Any, data: StreamDataset) -> list[int]:
        """Positions of `data`, best first."""


class RandomExemplarsSelectionStrategy(ExemplarsSelectionStrategy):
    """A uniform random ranking: one persistent random key per sample, drawn when it arrives, so
    a random group is a reservoir sample of everything it was offered."""

    def __init__(self, generator: torch.Generator | None = None, model: torch.nn.Module | None = None):
        self.generator = generator  # `model` is unused: every selection takes (model, generator)

    @property
    def online(self) -> bool:  # type: ignore[override]
        return not _overrides(self, RandomExemplarsSelectionStrategy, "make_sorted_indices")

    def scores(self, data: StreamDataset) -> torch.Tensor:
        return torch.rand(len(data), generator=self.generator)

    def make_sorted_indices(self, strategy: Any, data: StreamDataset) -> list[int]:
        return torch.randperm(len(data), generator=self.generator).tolist()


class FeatureBasedExemplarsSelectionStrategy(ExemplarsSelectionStrategy):
    """Ranks by the features that layer `layer_name` of `model` outputs (flattened); a subclass
    defines `make_sorted_indices_from_features(features)` (Avalanche's contract).

    Features are computed in batches of `batch_size`, without gradients, in eval mode, on the
    model's device; the model's train/eval mode is restored afterwards.
    """

    def __init__(
        self, model: torch.nn.Module, layer_name: str, batch_size: int = 256, generator: torch.Generator | None = None
    ):  # `generator` unused: no randomness
        names = [n for n, _ in model.named_modules() if n]
        if layer_name not in names:
            raise ConfigError(f"layer_name={layer_name!r} is not a layer of the model; allowed: {', '.join(names)}")
        integer("batch_size", batch_size)
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

    def rank(self, data: StreamDataset, limit: int | None = None) -> torch.Tensor:
        if _overrides(self, FeatureBasedExemplarsSelectionStrategy, "make_sorted_indices"):
            return super().rank(data, limit)
        if len(data) == 0:
            return torch.empty(0, dtype=torch.int64)
        return self.rank_features(self.features(data), limit).cpu()

    def make_sorted_indices(self, strategy: Any, data: StreamDataset) -> list[int]:
        return self.rank(data).tolist()

    def rank_features(self, features: torch.Tensor, limit: int | None = None) -> torch.Tensor:
        """Ranking from features [n, d]: the subclass's `make_sorted_indices_from_features`."""
        return torch.as_tensor(self.make_sorted_indices_from_features(features), dtype=torch.int64)

    def make_sorted_indices_from_features(self, features: torch.Tensor) -> list[int]:
        return closest_to_center(features).tolist()  # by default nearest to the mean first


class ClosestToCenterSelectionStrategy(FeatureBasedExemplarsSelectionStrategy):
    """Nearest to the mean feature first."""


class HerdingSelectionStrategy(FeatureBasedExemplarsSelectionStrategy):
    """iCaRL herding: each next exemplar keeps the mean of those chosen closest to the mean of all."""

    def rank_features(self, features: torch.Tensor, limit: int | None = None) -> torch.Tensor:
        if _overrides(self, HerdingSelectionStrategy, "make_sorted_indices_from_features"):
            return super().rank_features(features, limit)
        return herding(features, limit)  # herds only the first `limit`: the rest is never kept

    def make_sorted_indices_from_features(self, features: torch.Tensor) -> list[int]:
        return herding(features).tolist()


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
