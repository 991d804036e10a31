"""Avalanche's storage-policy names over the one `Buffer` (replaycli.memory.buffer): each class
below only fixes the grouping and names the arguments as Avalanche does.

Every buffer has `max_size`, `buffer` (the dataset it holds), `update(strategy)` (any object
with an `.experience`; a `SimpleNamespace` works), `update_from_dataset(dataset)`, `resize`,
and, grouped, `buffer_groups` / `buffer_datasets` / `get_group_lengths`. Each also takes an
optional `selection_strategy` (default: random keys, i.e. reservoir sampling per group).
"""

from __future__ import annotations

from typing import Any

import torch

from replaycli.data.dataset import StreamDataset
from replaycli.memory.buffer import GROUPBY, Buffer, Selection
from replaycli.memory.store import group_lengths

__all__ = [
    "GROUPBY",
    "BalancedExemplarsBuffer",
    "ClassBalancedBuffer",
    "ExemplarsBuffer",
    "ExperienceBalancedBuffer",
    "GroupBuffer",
    "ParametricBuffer",
    "ReservoirSamplingBuffer",
]


class GroupBuffer:
    """One group of a balanced buffer: its data (`buffer`) and its capacity (`max_size`)."""

    def __init__(self, buffer: StreamDataset, max_size: int):
        self.buffer = buffer
        self.max_size = max_size

    def __len__(self) -> int:
        return len(self.buffer)


class ExemplarsBuffer(Buffer):
    """A rehearsal memory of at most `max_size` samples, grouped or not (the Avalanche base): the
    one `Buffer` with Avalanche's ways in (`update`, `post_adapt`, `update_from_dataset`) and its
    views of what is stored (`targets`, `targets_task_labels`, `task_set`)."""

    def update_from_dataset(self, dataset: StreamDataset, strategy: object = None) -> None:
        self.add(dataset)

    def update(self, strategy: Any, **kwargs: Any) -> None:
        """Avalanche's `update(strategy)`: add `strategy.experience` (its dataset and index)."""
        exp = strategy.experience
        if self.selection_strategy is not None:  # Avalanche's make_sorted_indices reads it
            self.selection_strategy.strategy = strategy
        self.add(exp.dataset, int(getattr(exp, "current_experience", 0)), **kwargs)

    def post_adapt(self, agent: Any, exp: Any) -> None:
        """Avalanche 0.6's name of `update`: add experience `exp` (the agent is what selection sees)."""
        if self.selection_strategy is not None:
            self.selection_strategy.strategy = agent
        self.add(exp.dataset, int(getattr(exp, "current_experience", 0)))

    @property
    def targets(self) -> Any:
        """The stored samples' labels (`.uniques`, `.count`, `.val_to_idx`), as on a dataset."""
        return self.buffer.targets

    @property
    def targets_task_labels(self) -> Any:
        return self.buffer.targets_task_labels

    @property
    def task_set(self) -> Any:
        return self.buffer.task_set


class ReservoirSamplingBuffer(ExemplarsBuffer):
    """A uniform random sample of everything seen, however many updates: one random key per
    sample, the `max_size` largest kept."""

    def __init__(
        self, max_size: int, selection_strategy: Selection | None = None, generator: torch.Generator | None = None
    ):
        super().__init__(max_size, None, selection_strategy, generator=generator)


class BalancedExemplarsBuffer(ExemplarsBuffer):
    """A buffer split into groups (one group unless a subclass says otherwise), each filled by
    reservoir sampling; `adaptive_size=False` divides `max_size` over `total_num_groups`."""

    def __init__(
        self,
        max_size: int,
        adaptive_size: bool = True,
        total_num_groups: int | None = None,
        selection_strategy: Selection | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__(max_size, None, selection_strategy, adaptive_size, total_num_groups, generator)

    @property
    def buffer_groups(self) -> dict[int, GroupBuffer]:
        """Group key -> a view whose `.buffer` is that group's data (ordered best first)."""
        return {k: GroupBuffer(data, cap) for k, (data, cap) in self.groups().items()}

    @property
    def buffer_datasets(self) -> list[StreamDataset]:
        return [data for data, _ in self.groups().values()]

    def get_group_lengths(self, num_groups: int) -> list[int]:
        """The capacity of groups 0..num_groups-1: adaptive, `max_size` split evenly over them (the
        remainder to the first ones); fixed, each group's share of `total_num_groups` (the
        remainder to the lowest keys, where Avalanche leaves it unused)."""
        if self.adaptive_size:
            return group_lengths(num_groups, self.max_size)
        shares = group_lengths(self.total_num_groups or 0, self.max_size)
        return (shares + [0] * num_groups)[:num_groups]


class ExperienceBalancedBuffer(BalancedExemplarsBuffer):
    """One reservoir group per experience."""

    shares_key = "num_experiences"

    def __init__(
        self,
        max_size: int,
        adaptive_size: bool = True,
        num_experiences: int | None = None,
        selection_strategy: Selection | None = None,
        generator: torch.Generator | None = None,
    ):
        Buffer.__init__(self, max_size, "experience", selection_strategy, adaptive_size, num_experiences, generator)


class ClassBalancedBuffer(BalancedExemplarsBuffer):
    """One reservoir group per class."""

    shares_key = "total_num_classes"

    def __init__(
        self,
        max_size: int,
        adaptive_size: bool = True,
        total_num_classes: int | None = None,
        selection_strategy: Selection | None = None,
        generator: torch.Generator | None = None,
    ):
        Buffer.__init__(self, max_size, "class", selection_strategy, adaptive_size, total_num_classes, generator)


class ParametricBuffer(BalancedExemplarsBuffer):
    """Groups by `groupby` (None, 'class', 'task' or 'experience'); within a group the
    `selection_strategy` (default random) ranks the candidates and the best-ranked are kept."""

    def __init__(
        self,
        max_size: int,
        groupby: str | None = None,
        selection_strategy: Selection | None = None,
        generator: torch.Generator | None = None,
    ):
        Buffer.__init__(self, max_size, groupby, selection_strategy, generator=generator)
