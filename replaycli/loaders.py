"""Balanced and replay dataloaders: an epoch is one [steps, B] matrix of positions, drawn at once.

Each step gathers its batch with one indexing call into the pool (uint8 -> normalised float),
never a per-sample `__getitem__`. Positions of -1 pad groups that ran out. The constructors are
Avalanche's; `for_run(data, buffer, batch_size, batch_size_mem, generator, <the YAML's keys>)` is
the one signature `replay run` builds every loader with.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from replaycli.data.dataset import StreamDataset
from replaycli.errors import ConfigError, batch, flag
from replaycli.memory.buffer import Buffer
from replaycli.memory.store import group_lengths

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
_IGNORED = {
    "num_workers",
    "pin_memory",
    "persistent_workers",
    "prefetch_factor",
    "distributed_sampling",
}  # one process, batches gathered by index: nothing for these to do


def _options(kwargs: dict[str, Any]) -> tuple[bool, bool, torch.Generator | None]:
    if kwargs.get("collate_fn") is not None:  # a list of samples never exists here: say so, never drop it quietly
        raise TypeError(
            "collate_fn is not used: batches are gathered as tensors (x, y, t) by index, without a list of "
            "samples to collate; transform the batch after the loader instead"
        )
    unknown = set(kwargs) - _IGNORED - {"shuffle", "drop_last", "generator", "collate_fn"}
    if unknown:
        raise TypeError(f"unexpected dataloader arguments: {', '.join(sorted(unknown))}")
    return (
        flag("shuffle", kwargs.get("shuffle", False)),
        flag("drop_last", kwargs.get("drop_last", False)),
        kwargs.get("generator"),
    )


def group_positions(
    n: int, per_step: int, steps: int, shuffle: bool, cycle: bool, drop_last: bool, gen: torch.Generator | None
) -> torch.Tensor:
    """[steps, per_step] positions into a group of `n` samples, -1 where it has run out.

    `cycle`: the group is reshuffled and repeated until every step is full; otherwise it is
    seen once (with `drop_last`, its last partial chunk is dropped).
    """
    total = steps * per_step
    if n == 0 or total == 0:  # total 0: no steps (drop_last on a short group) or no quota
        return torch.full((steps, per_step), -1, dtype=torch.int64)
    order = lambda: torch.randperm(n, generator=gen) if shuffle else torch.arange(n)  # noqa: E731
    if cycle:
        idx = torch.cat([order() for _ in range(math.ceil(total / n))])[:total]
    else:
        idx = order()
        if drop_last:
            idx = idx[: (n // per_step) * per_step]
        idx = torch.cat([idx[:total], torch.full((max(0, total - len(idx)),), -1, dtype=torch.int64)])
    return idx.view(steps, per_step)


def refuse_small(key: str, size: int, groups: int, what: str) -> None:
    """A balanced batch gives each group at least one sample: `size` >= `groups`."""
    if size < groups:
        raise ConfigError(
            f"{key}={size} cannot give each of the {groups} {what} a sample per batch; allowed: {key} >= {groups}"
        )


def _n_steps(n: int, per_step: int, drop_last: bool) -> int:
    if per_step == 0:
        return 0
    return n // per_step if drop_last else math.ceil(n / per_step)


class _MatrixLoader:
    """Iterates the batches of `data` given by `self.positions()`, a fresh [steps, B] matrix
    each epoch (-1 pads), which each loader below defines."""

    positions: Callable[[], torch.Tensor]  # declared for the type checker; each loader below defines it

    def __init__(self, data: StreamDataset, generator: torch.Generator | None):
        self.data = data
        self.generator = generator

    def __iter__(self) -> Iterator[Batch]:
        return ((x, y, t) for x, y, t, _ in self.batches())

    def batches(self, with_samples: bool = False) -> Iterator[tuple]:
        """The epoch's `(x, y, t, samples)` batches; `samples` is each batch's own samples as a
        dataset with `with_samples` (so that the memory can take them), else None."""
        data = self.data
        m = self.positions()
        full = (m >= 0).all(1).tolist()  # rows needing no mask: no device sync for them
        m = m.to(data.ids.device)
        safe = m.clamp(min=0)
        # the epoch's ids, labels and tasks in three vectorised lookups: a step only slices rows
        ids, tasks = data.ids[safe], data.tasks[safe]  # [steps, B]
        ys = data.pool.targets(ids)

        def row(i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            if full[i]:
                return ids[i], ys[i], tasks[i]
            keep = m[i] >= 0
            return ids[i][keep], ys[i][keep], tasks[i][keep]

        steps = [b for b in map(row, range(len(m))) if len(b[0])]
        ahead = Prefetch(data.pool, [b[0] for b in steps]) if data.pool.mapped is not None else None
        try:
            for n, (row_ids, y, t) in enumerate(steps):
                stored = ahead.get(n) if ahead is not None else None  # a mapped pool's batch, read ahead
                x = data.pool.images(row_ids, train=data.train_mode, generator=self.generator, stored=stored)
                samples = StreamDataset(data.pool, row_ids, t, data.train_mode) if with_samples else None
                yield x, y, t.to(x.device), samples
        finally:
            if ahead is not None:
                ahead.close()


class Prefetch:
    """Gathers the next batch of a memory-mapped pool on a second thread while the current step
    computes: the page faults of reading scattered rows from the file overlap the model's work
    (torch's gather releases the GIL). Only the stored samples are read ahead; augmentation and
    normalisation stay on the caller's thread, so the run's random draws are unchanged."""

    def __init__(self, pool: Any, batches: list[torch.Tensor]):
        from concurrent.futures import ThreadPoolExecutor

        self.pool, self.batches = pool, batches
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="replaycli-prefetch")
        self.next = self.worker.submit(pool.raw, batches[0]) if batches else None

    def get(self, n: int) -> torch.Tensor:
        """The stored samples of batch `n` (the batches are taken in order); starts reading n + 1."""
        assert self.next is not None  # a batch is asked for only while there is one
        x = self.next.result()
        self.next = self.worker.submit(self.pool.raw, self.batches[n + 1]) if n + 1 < len(self.batches) else None
        return x

    def close(self) -> None:
        self.worker.shutdown(wait=True, cancel_futures=True)


class GroupBalancedDataLoader(_MatrixLoader):
    """Each batch takes `batch_size // len(datasets)` samples of every group (the remainder to
    the first groups). An epoch lasts until the longest group is used up; smaller groups then
    stop contributing, or, with `oversample_small_groups`, are reshuffled and cycled.
    `shuffle`, `drop_last` (and `generator`) apply to every group."""

    def __init__(
        self,
        datasets: Sequence[StreamDataset],
        oversample_small_groups: bool = False,
        batch_size: int = 32,
        **kwargs: Any,
    ):
        self.shuffle, self.drop_last, gen = _options(kwargs)
        self.batch_size = batch("batch_size", batch_size)
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("GroupBalancedDataLoader needs at least one dataset")
        self.oversample = flag("oversample_small_groups", oversample_small_groups)
        data = self.datasets[0]
        for d in self.datasets[1:]:
            data = data.concat(d)
        super().__init__(data, gen)
        self.quotas = group_lengths(len(self.datasets), self.batch_size)
        refuse_small("batch_size", self.batch_size, len(self.datasets), "groups")

    @classmethod
    def for_run(
        cls,
        data: StreamDataset,
        buffer: Buffer | None,
        batch_size: int,
        batch_size_mem: int,
        generator: torch.Generator | None,
        oversample_small_groups: bool = False,
        shuffle: bool = False,
        drop_last: bool = False,
    ) -> GroupBalancedDataLoader:
        """`loader=group_balanced`: the current data and each buffer group, `batch_size` samples
        of each per step (`batch_size_mem` is not used: every group gets as many as the data)."""
        groups = [data] + ([d for d, _ in buffer.groups().values()] if buffer is not None and len(buffer) else [])
        return cls(
            groups,
            oversample_small_groups,
            batch_size * len(groups),
            shuffle=shuffle,
            drop_last=drop_last,
            generator=generator,
        )

    def __len__(self) -> int:
        return max(_n_steps(len(d), q, self.drop_last) for d, q in zip(self.datasets, self.quotas, strict=True))

    def positions(self) -> torch.Tensor:
        steps, offset, parts = len(self), 0, []
        for d, q in zip(self.datasets, self.quotas, strict=True):
            p = group_positions(len(d), q, steps, self.shuffle, self.oversample, self.drop_last, self.generator)
            parts.append(torch.where(p >= 0, p + offset, p))
            offset += len(d)
        return torch.cat(parts, dim=1)


def split_by_task(data: StreamDataset) -> list[StreamDataset]:
    """One dataset per task label of `data`, in label order."""
    return [data.subset((data.tasks == t).nonzero().flatten()) for t in torch.unique(data.tasks).tolist()]


class TaskBalancedDataLoader(GroupBalancedDataLoader):
    """A `GroupBalancedDataLoader` with one group per task label of `data`. Both of Avalanche's
    signatures: 0.6's `(data, batch_size=32, oversample_small_groups=False, **kwargs)` and the
    older `(data, oversample_small_tasks=False, **kwargs)` (a bool second argument)."""

    def __init__(self, data: StreamDataset, *args: Any, **kwargs: Any):
        if len(args) > 2:
            raise TypeError(f"TaskBalancedDataLoader takes at most 3 positional arguments ({len(args) + 1} given)")
        if args and isinstance(args[0], bool):  # the older signature
            kwargs.setdefault("oversample_small_tasks", args[0])
        else:
            for name, value in zip(("batch_size", "oversample_small_groups"), args, strict=False):
                if name in kwargs:
                    raise TypeError(f"TaskBalancedDataLoader got multiple values for argument {name!r}")
                kwargs[name] = value
        old, new = kwargs.pop("oversample_small_tasks", None), kwargs.pop("oversample_small_groups", None)
        if old is not None and new is not None and bool(old) != bool(new):
            raise TypeError("oversample_small_tasks and oversample_small_groups are one setting; give one")
        super().__init__(split_by_task(data), bool(old or new), **kwargs)


class GroupBalancedInfiniteDataLoader:
    """Avalanche's endless group-balanced loader: each step draws `batch_size` samples of every
    group with replacement (uniformly, from `generator`), and the steps never end (`len` is
    10**10, as Avalanche's). `collate_mbatches`, when given, receives the groups' `[x, y, t]`
    mini-batches and returns the step's batch; by default they are concatenated."""

    def __init__(
        self,
        datasets: Sequence[StreamDataset],
        collate_mbatches: Any = None,
        distributed_sampling: bool = True,
        batch_size: int = 1,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ):
        _options(kwargs)  # refuses what it does not know (and collate_fn)
        self.datasets = [d for d in datasets]
        if not self.datasets or not all(len(d) for d in self.datasets):
            raise ValueError("GroupBalancedInfiniteDataLoader needs one or more datasets, none empty")
        self.batch_size = batch("batch_size", batch_size)
        self.collate_mbatches, self.generator = collate_mbatches, generator

    def __len__(self) -> int:
        return 10**10

    def __iter__(self) -> Iterator[Any]:
        while True:
            parts = []
            for d in self.datasets:
                draw = torch.randint(len(d), (self.batch_size,), generator=self.generator)
                parts.append(list(d.train().batch(draw.to(d.ids.device), self.generator)))
            if self.collate_mbatches is not None:
                yield self.collate_mbatches(parts)
            else:
                yield tuple(torch.cat([p[k] for p in parts]) for k in range(3))


class ReplayDataLoader(_MatrixLoader):
    """Batches of `batch_size` current samples followed by `batch_size_mem` memory samples.

    The current data alone sets the number of steps (the last batch may be partial). The memory
    is seen once per epoch, or, with `oversample_small_tasks`, reshuffled and cycled whenever it
    runs out. `task_balanced_dataloader=True` splits the memory part evenly over task labels.
    """

    def __init__(
        self,
        data: StreamDataset,
        memory: StreamDataset | None = None,
        oversample_small_tasks: bool = False,
        batch_size: int = 32,
        batch_size_mem: int = 32,
        task_balanced_dataloader: bool = False,
        **kwargs: Any,
    ):
        self.shuffle, self.drop_last, gen = _options(kwargs)
        self.batch_size = batch("batch_size", batch_size)
        self.batch_size_mem = batch("batch_size_mem", batch_size_mem)
        self.current = data
        self.oversample = flag("oversample_small_tasks", oversample_small_tasks)
        flag("task_balanced_dataloader", task_balanced_dataloader)
        mem = memory if memory is not None and len(memory) else None  # an empty memory joins nothing
        self.memory_groups = [] if mem is None else split_by_task(mem) if task_balanced_dataloader else [mem]
        refuse_small("batch_size_mem", self.batch_size_mem, len(self.memory_groups), "task groups of the memory")
        combined = data
        for m in self.memory_groups:
            combined = combined.concat(m)
        super().__init__(combined, gen)

    @classmethod
    def for_run(
        cls,
        data: StreamDataset,
        buffer: Buffer | None,
        batch_size: int,
        batch_size_mem: int,
        generator: torch.Generator | None,
        oversample_small_tasks: bool = False,
        task_balanced_dataloader: bool = False,
        shuffle: bool = False,
        drop_last: bool = False,
    ) -> ReplayDataLoader:
        """`loader=replay` / `task_balanced`: the current data, then the whole buffer."""
        memory = buffer.buffer if buffer is not None and len(buffer) else None
        return cls(
            data,
            memory,
            oversample_small_tasks,
            batch_size,
            batch_size_mem,
            task_balanced_dataloader,
            shuffle=shuffle,
            drop_last=drop_last,
            generator=generator,
        )

    def __len__(self) -> int:
        return _n_steps(len(self.current), self.batch_size, self.drop_last)

    def positions(self) -> torch.Tensor:
        steps = len(self)
        parts = [
            group_positions(
                len(self.current), self.batch_size, steps, self.shuffle, False, self.drop_last, self.generator
            )
        ]
        offset = len(self.current)
        quotas = group_lengths(len(self.memory_groups), self.batch_size_mem)
        for m, q in zip(self.memory_groups, quotas, strict=True):
            p = group_positions(len(m), q, steps, self.shuffle, self.oversample, self.drop_last, self.generator)
            parts.append(torch.where(p >= 0, p + offset, p))
            offset += len(m)
        return torch.cat(parts, dim=1)
