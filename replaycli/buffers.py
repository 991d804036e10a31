"""Storage policies: which samples the rehearsal memory keeps, as ids into the stream's pool.

All policies share one `Store` and one vectorised step: add the new candidates, split
`max_size` over groups, keep the best-scored of each group. They differ only in the group key
(none, class, task, experience) and the score (a random key drawn once per sample, which makes
every group a reservoir sample, or a selection strategy's ranking). Because a group is always
ordered best first, shrinking it (`resize`, or a new group arriving) is truncation.

Unused shares: a group with fewer samples than its share keeps them all, and (unlike Avalanche,
which leaves it empty) its unused share goes to the other groups, so an adaptive buffer holds
min(max_size, samples seen). With `adaptive_size=False` each of `total_num_groups` groups has a
fixed share that is never lent out; shares are indexed by the group key (class id or
experience index, which must lie in 0..total_num_groups-1), the remainder going to the lowest keys.
"""
from __future__ import annotations

from typing import Any

import torch

from replaycli.data import StreamDataset, empty_dataset
from replaycli.errors import ConfigError
from replaycli.memory import Store, fill_lengths, group_lengths, top_per_group
from replaycli.selection import RandomExemplarsSelectionStrategy, SelectionStrategy

GROUPBY = (None, "class", "task", "experience")


def _check_size(max_size: Any, name: str = "max_size") -> int:
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0:
        raise ConfigError(f"{name}={max_size!r} must be a non-negative integer")
    return max_size


class ExemplarsBuffer:
    """A rehearsal memory of at most `max_size` samples; `buffer` is what it holds now.

    `update(strategy)` reads `strategy.experience` (its `dataset` and `current_experience`).
    `generator` (optional) makes the random keys reproducible; None uses torch's global RNG.
    """

    def __init__(self, max_size: int, generator: torch.Generator | None = None):
        self.max_size = _check_size(max_size)
        self.generator = generator
        self.store = Store()

    # --- the public face -------------------------------------------------------------------
    @property
    def buffer(self) -> StreamDataset:
        return self.store.dataset() if self.store.pool is not None else empty_dataset()

    def __len__(self) -> int:
        return len(self.store)

    def update(self, strategy: Any, **kwargs: Any) -> None:
        exp = strategy.experience
        self.update_from_dataset(exp.dataset, strategy=strategy, experience=_exp_index(exp), **kwargs)

    def update_from_dataset(
        self,
        dataset: StreamDataset,
        strategy: Any = None,
        experience: int = 0,
        extras: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Offer every sample of `dataset` to the buffer (`extras`: per-sample rows to keep)."""
        groups = self.group_of(dataset, experience)
        self.store.append(dataset, experience, groups, self.new_scores(dataset), extras)
        self._select(strategy, touched=torch.unique(groups))

    def resize(self, strategy: Any, new_size: int) -> None:
        """Change `max_size`; when shrinking, each group drops its last-ranked samples."""
        self.max_size = _check_size(new_size, "new_size")
        self._select(strategy, touched=None)

    def class_histogram(self, n_classes: int) -> torch.Tensor:
        """Samples per class in the buffer: int64 [n_classes]."""
        return torch.bincount(self.buffer.y.cpu(), minlength=n_classes)

    def state_dict(self) -> dict[str, Any]:
        return {"max_size": self.max_size, "store": self.store.state_dict()}

    def load_state_dict(self, state: dict[str, Any], pool: Any) -> None:
        self.max_size = int(state["max_size"])
        self.store.load_state_dict(state["store"], pool)

    # --- what a policy decides -------------------------------------------------------------
    def group_of(self, data: StreamDataset, experience: int) -> torch.Tensor:
        """Group key of each sample of `data` [n]; one group by default."""
        return torch.zeros_like(data.ids)

    def new_scores(self, data: StreamDataset) -> torch.Tensor:
        """Scores of new samples: one uniform random key each (reservoir sampling)."""
        return torch.rand(len(data), generator=self.generator).to(data.ids.device)

    def capacities(self, sizes: list[int]) -> list[int]:
        """Capacity of each present group (sorted by key) holding `sizes` candidates."""
        return fill_lengths(sizes, self.max_size)

    def rescore(self, strategy: Any, touched: torch.Tensor | None) -> None:
        """Recompute scores of groups in `touched` before selection (selection strategies)."""

    def _select(self, strategy: Any, touched: torch.Tensor | None) -> None:
        if not len(self.store):
            return
        self.rescore(strategy, touched)
        _, dense = self.store.group_keys()
        sizes = torch.bincount(dense).tolist()
        caps = torch.tensor(self.capacities(sizes), dtype=torch.int64, device=dense.device)
        self.store.keep(top_per_group(dense, self.store.scores, caps))


def _exp_index(exp: Any) -> int:
    return int(getattr(exp, "current_experience", 0))


class ReservoirSamplingBuffer(ExemplarsBuffer):
    """A uniform random sample of everything seen, however many updates: one random key per
    sample, the `max_size` largest kept."""


class BalancedExemplarsBuffer(ExemplarsBuffer):
    """A buffer split into groups, each filled by reservoir sampling.

    `adaptive_size=True`: `max_size` is divided over the groups seen so far (unused shares lent
    to the others). `adaptive_size=False`: it is divided over `total_num_groups` fixed up front.
    """

    def __init__(
        self,
        max_size: int,
        adaptive_size: bool = True,
        total_num_groups: int | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__(max_size, generator)
        if not adaptive_size and (total_num_groups is None or total_num_groups <= 0):
            raise ConfigError(
                f"total_num_groups={total_num_groups!r} must be a positive integer when adaptive_size is false"
            )
        self.adaptive_size = adaptive_size
        self.total_num_groups = total_num_groups

    def get_group_lengths(self, num_groups: int) -> list[int]:
        """`max_size` split evenly over `num_groups`, the remainder going to the first ones."""
        return group_lengths(num_groups, self.max_size)

    def update_from_dataset(self, dataset: StreamDataset, *args: Any, **kwargs: Any) -> None:
        if not self.adaptive_size:  # refuse a key out of range before anything is stored
            experience = kwargs.get("experience", args[1] if len(args) > 1 else 0)
            keys = self.group_of(dataset, experience)
            bad = keys[(keys < 0) | (keys >= self.total_num_groups)]
            if len(bad):
                raise ConfigError(
                    f"group {int(bad[0])} is outside the {self.total_num_groups} fixed groups "
                    f"(total_num_groups={self.total_num_groups}); raise it or use adaptive_size"
                )
        super().update_from_dataset(dataset, *args, **kwargs)

    def capacities(self, sizes: list[int]) -> list[int]:
        if self.adaptive_size:
            return fill_lengths(sizes, self.max_size)
        # fixed shares indexed by the key itself (class id, experience index): a group's share
        # never changes as other groups arrive
        shares = self.get_group_lengths(self.total_num_groups)
        keys, _ = self.store.group_keys()
        return [shares[k] for k in keys.tolist()]

    @property
    def buffer_groups(self) -> dict[int, "GroupBuffer"]:
        """Group key -> a view whose `.buffer` is that group's data (ordered best first)."""
        if not len(self.store):
            return {}
        keys, dense = self.store.group_keys()
        caps = self.capacities(torch.bincount(dense).tolist())
        return {
            int(k): GroupBuffer(self.store.dataset((dense == i).nonzero().flatten()), caps[i])
            for i, k in enumerate(keys.tolist())
        }

    @property
    def buffer_datasets(self) -> list[StreamDataset]:
        return [g.buffer for g in self.buffer_groups.values()]


class GroupBuffer:
    """One group of a balanced buffer: its data (`buffer`) and its capacity (`max_size`)."""

    def __init__(self, buffer: StreamDataset, max_size: int):
        self.buffer = buffer
        self.max_size = max_size

    def __len__(self) -> int:
        return len(self.buffer)


class ExperienceBalancedBuffer(BalancedExemplarsBuffer):
    """One reservoir group per experience."""

    def __init__(
        self,
        max_size: int,
        adaptive_size: bool = True,
        num_experiences: int | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__(max_size, adaptive_size, num_experiences, generator)

    def group_of(self, data: StreamDataset, experience: int) -> torch.Tensor:
        return torch.full_like(data.ids, experience)


class ClassBalancedBuffer(BalancedExemplarsBuffer):
    """One reservoir group per class."""

    def __init__(
        self,
        max_size: int,
        adaptive_size: bool = True,
        total_num_classes: int | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__(max_size, adaptive_size, total_num_classes, generator)

    def group_of(self, data: StreamDataset, experience: int) -> torch.Tensor:
        return data.y.to(data.ids.device)


class ParametricBuffer(BalancedExemplarsBuffer):
    """Groups by `groupby` (None, 'class', 'task' or 'experience'); within a group the
    `selection_strategy` (default random) ranks the candidates and the best-ranked are kept."""

    def __init__(
        self,
        max_size: int,
        groupby: str | None = None,
        selection_strategy: SelectionStrategy | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__(max_size, True, None, generator)
        if groupby not in GROUPBY:
            raise ConfigError(f"groupby={groupby!r} is not allowed; allowed: None, 'class', 'task', 'experience'")
        self.groupby = groupby
        self.selection_strategy = selection_strategy or RandomExemplarsSelectionStrategy(generator)

    def group_of(self, data: StreamDataset, experience: int) -> torch.Tensor:
        if self.groupby == "class":
            return data.y.to(data.ids.device)
        if self.groupby == "task":
            return data.tasks
        if self.groupby == "experience":
            return torch.full_like(data.ids, experience)
        return torch.zeros_like(data.ids)

    def new_scores(self, data: StreamDataset) -> torch.Tensor:
        if getattr(self.selection_strategy, "by_key", False):  # random: a persistent key per sample
            return torch.rand(len(data), generator=self.selection_strategy.generator).to(data.ids.device)
        return torch.zeros(len(data), device=data.ids.device)  # ranked in rescore()

    def rescore(self, strategy: Any, touched: torch.Tensor | None) -> None:
        if touched is None or getattr(self.selection_strategy, "by_key", False):
            return  # scores of untouched groups stand: their ranking only gets truncated
        store = self.store
        for key in touched.tolist():
            pos = (store.groups == key).nonzero().flatten()
            ranked = self.selection_strategy.rank(strategy, store.dataset(pos), limit=self.max_size)
            order = torch.as_tensor(ranked, dtype=torch.int64)
            scores = torch.empty(len(pos), dtype=torch.float32, device=store.scores.device)
            scores[order.to(scores.device)] = -torch.arange(len(pos), dtype=torch.float32, device=scores.device)
            store.scores[pos] = scores
