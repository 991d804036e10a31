"""`StreamDataset`: a dataset that is a tensor of ids (and task labels) into a `Pool`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import cast

import torch

from replaycli.data.pool import Pool


class IntSequence(Sequence[int]):
    """A read-only sequence of Python ints backed by an int64 tensor (`.tensor`)."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor

    def __len__(self) -> int:
        return len(self.tensor)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.tensor[i].tolist()
        return int(self.tensor[i])

    def __iter__(self) -> Iterator[int]:
        return iter(self.tensor.tolist())

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, Sequence) else NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to a list, so unhashable as a list is

    def __repr__(self) -> str:
        return repr(self.tensor.tolist())

    # Avalanche's DataAttribute views, from one `unique` call each (no per-sample Python)
    @property
    def uniques(self) -> set[int]:
        """The set of values."""
        return set(torch.unique(self.tensor).tolist())

    @property
    def count(self) -> dict[int, int]:  # type: ignore[override]  # Avalanche's: a dict, where Sequence's is a method
        """value -> number of samples."""
        values, counts = torch.unique(self.tensor, return_counts=True)
        return dict(zip(values.tolist(), counts.tolist(), strict=True))

    @property
    def val_to_idx(self) -> dict[int, list[int]]:
        """value -> the indices of its samples, ascending."""
        order = torch.sort(self.tensor.cpu(), stable=True)
        values, counts = torch.unique_consecutive(order.values, return_counts=True)
        return {v: part.tolist() for v, part in zip(values.tolist(), order.indices.split(counts.tolist()), strict=True)}


class TaskSet(Mapping[int, "StreamDataset"]):
    """`dataset.task_set[t]`: the samples of task label t, as a dataset (Avalanche's name)."""

    def __init__(self, data: StreamDataset):
        self.data = data

    def __getitem__(self, t: int) -> StreamDataset:
        positions = (self.data.tasks == int(t)).nonzero().flatten()
        if not len(positions):
            raise KeyError(t)
        return self.data.subset(positions)

    def __iter__(self) -> Iterator[int]:
        return iter(torch.unique(self.data.tasks).tolist())

    def __len__(self) -> int:
        return len(torch.unique(self.data.tasks))


class StreamDataset:
    """Samples `ids` of `pool` with their task labels `tasks`; `ds[i] -> (x, y, t)`.

    Never copies images: `subset` and `concat` make new id tensors. `train()` and `eval()` return
    the same samples with training (augmented) or evaluation transforms.
    """

    def __init__(
        self, pool: Pool | None, ids: torch.Tensor, tasks: torch.Tensor | None = None, train_mode: bool = False
    ):
        ids = torch.as_tensor(ids, dtype=torch.int64)
        self.pool = cast(Pool, pool)  # None only in an empty dataset, which never reads it
        self.ids = ids  # [n] int64 ids into pool
        self.tasks = torch.zeros_like(ids) if tasks is None else torch.as_tensor(tasks, dtype=torch.int64)
        assert self.tasks.shape == self.ids.shape
        self.train_mode = train_mode

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of {len(self)} samples")
        ids = self.ids[i : i + 1] if i >= 0 else self.ids[i:][:1]
        x = self.pool.images(ids, train=self.train_mode)[0]
        return x, int(self.pool.targets(ids)[0]), int(self.tasks[i])

    @property
    def y(self) -> torch.Tensor:
        """Class labels as an int64 tensor [n]."""
        if self.pool is None:
            return torch.empty(0, dtype=torch.int64)
        return self.pool.targets(self.ids)

    @property
    def targets(self) -> IntSequence:
        return IntSequence(self.y)

    @property
    def targets_task_labels(self) -> IntSequence:
        return IntSequence(self.tasks)

    @property
    def task_set(self) -> TaskSet:
        return TaskSet(self)

    def subset(self, indices: Sequence[int] | torch.Tensor) -> StreamDataset:
        idx = torch.as_tensor(indices, dtype=torch.int64).to(self.ids.device)
        return StreamDataset(self.pool, self.ids[idx], self.tasks[idx], self.train_mode)

    def concat(self, other: StreamDataset) -> StreamDataset:
        if other.pool is not self.pool:
            if len(other) == 0:
                return self
            if len(self) == 0:
                return StreamDataset(other.pool, other.ids, other.tasks, self.train_mode)
            raise ValueError("can only concat datasets of the same stream (the same pool)")
        return StreamDataset(
            self.pool, torch.cat([self.ids, other.ids]), torch.cat([self.tasks, other.tasks]), self.train_mode
        )

    def __add__(self, other: StreamDataset) -> StreamDataset:
        return self.concat(other)

    def train(self) -> StreamDataset:
        return StreamDataset(self.pool, self.ids, self.tasks, train_mode=True)

    def eval(self) -> StreamDataset:
        return StreamDataset(self.pool, self.ids, self.tasks, train_mode=False)

    def batch(
        self, positions: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The samples at `positions` (indices into this dataset) as `(x, y, t)` tensors."""
        ids = self.ids[positions]
        x = self.pool.images(ids, train=self.train_mode, generator=generator)
        return x, self.pool.targets(ids), self.tasks[positions].to(x.device)

    def to(self, device: torch.device | str) -> StreamDataset:
        """The same samples with ids on `device` (the pool moves separately)."""
        return StreamDataset(self.pool, self.ids.to(device), self.tasks.to(device), self.train_mode)

    def __repr__(self) -> str:
        return f"StreamDataset({len(self)} samples, {'train' if self.train_mode else 'eval'})"


def empty_dataset(pool: Pool | None = None, device: torch.device | str | None = None) -> StreamDataset:
    """An empty dataset (what a buffer holds before its first update)."""
    z = torch.empty(0, dtype=torch.int64, device=device)
    return StreamDataset(pool, z, z.clone())
