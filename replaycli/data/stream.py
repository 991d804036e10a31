"""The stream types: an `Experience` (a dataset, its index, classes and task label), a `Stream`
of them, a `Benchmark` (train, test and optionally validation streams over two pools), and the
class-incremental split every new-classes benchmark is made by (`class_split`)."""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from replaycli.data.dataset import StreamDataset
from replaycli.data.pool import Pool
from replaycli.errors import ConfigError


@dataclass
class Experience:
    """One step of a stream: its dataset, index, classes and task label (`origin_experience`:
    the experience an online piece was cut from, else its own index)."""

    dataset: StreamDataset
    current_experience: int
    classes_in_this_experience: list[int]
    task_label: int
    origin_experience: int | None = None

    def __post_init__(self) -> None:
        if self.origin_experience is None:
            self.origin_experience = self.current_experience

    @property
    def task_labels(self) -> list[int]:
        return [self.task_label]


class Stream(Sequence[Experience]):
    """The experiences of one split (`train`, `test` or `valid`), indexable and iterable."""

    def __init__(self, name: str, experiences: list[Experience]):
        self.name = name
        self.experiences = experiences

    def __len__(self) -> int:
        return len(self.experiences)

    def __getitem__(self, i):
        return self.experiences[i]

    def __iter__(self) -> Iterator[Experience]:
        return iter(self.experiences)

    def __repr__(self) -> str:
        return f"Stream({self.name!r}, {len(self)} experiences)"


@dataclass
class Benchmark:
    """A train and a test stream over the same classes, built on two pools; `valid_stream` (held
    out of the training data) when asked; `class_names[k]`: what class k was called in the
    user's data (a folder name, an original label), None when the labels were 0..K-1 already."""

    name: str
    train_stream: Stream
    test_stream: Stream
    n_classes: int
    classes_order: list[int]
    train_pool: Pool
    test_pool: Pool
    valid_stream: Stream | None = None
    class_names: list[str] | None = field(default=None)
    mixed: bool = False  # blurry, si_blurry, repetition or boundary: experiences share classes (stream_histogram.csv)

    @property
    def n_experiences(self) -> int:
        return len(self.train_stream)

    @property
    def n_tasks(self) -> int:
        """Task labels 0..n_tasks-1 of the training stream (1 in class-incremental mode)."""
        return max(e.task_label for e in self.train_stream) + 1

    def to(self, device: torch.device | str) -> Benchmark:
        """Move both pools (images, labels) and every experience's ids to `device`, in place."""
        pools: dict[int, Pool] = {id(p): p for p in (self.train_pool, self.test_pool)}
        for stream in self.streams():
            for exp in stream:
                pools.setdefault(id(exp.dataset.pool), exp.dataset.pool)
        for p in pools.values():
            p.to(device)
        for stream in self.streams():
            for exp in stream:
                exp.dataset = exp.dataset.to(device)
        return self

    def streams(self) -> list[Stream]:
        return [s for s in (self.train_stream, self.test_stream, self.valid_stream) if s is not None]


def permutation(key: str, given: Sequence[Any], classes: Sequence[Any]) -> list[int]:
    """The position in `classes` (labels, or a folder's class names) of each class of `given`,
    which must name every class once, as an integer label or a name; else a ConfigError."""
    names = [str(c) for c in classes]
    written = [label(c) for c in given]
    if None in written or sorted(str(w) for w in written) != sorted(names):
        shown = [c if isinstance(c, (int, float, str)) else str(c) for c in given]
        raise ConfigError(f"{key}={shown} must be a permutation of the {len(names)} classes {list(classes)}")
    return [names.index(str(w)) for w in written]


def label(c: Any) -> str | None:
    """A class as written in a class order: a name, or an integer label (not 9.5, not true)."""
    if isinstance(c, str):
        return c
    try:
        return None if isinstance(c, bool) else str(operator.index(c))
    except TypeError:
        return None


def class_order(
    n_classes: int, seed: int | None, fixed_class_order: Sequence[int] | None, key: str = "fixed_class_order"
) -> list[int]:
    """`fixed_class_order` if given, else a permutation drawn from `seed`, else 0..n-1."""
    if fixed_class_order is not None:
        return permutation(key, fixed_class_order, list(range(n_classes)))
    if seed is None:
        return list(range(n_classes))
    return torch.randperm(n_classes, generator=torch.Generator().manual_seed(int(seed))).tolist()


def class_split(
    name: str,
    train_pool: Pool,
    test_pool: Pool,
    order: list[int],
    sizes: list[int],
    task_labels: bool,
    from_zero: str | None = None,
    names: list[str] | None = None,
) -> Benchmark:
    """Experience i takes the next `sizes[i]` classes of `order` (classes 0..K-1 of both pools);
    task label i with `task_labels`. `from_zero`: relabel classes by their position in the
    order (`first_exp`) or in their experience (`each_exp`); the pools' labels change."""
    k = len(order)
    groups = [order[sum(sizes[:i]) : sum(sizes[: i + 1])] for i in range(len(sizes))]
    relabel = torch.arange(k)
    if from_zero == "first_exp":
        relabel[torch.tensor(order)] = torch.arange(k)
    elif from_zero == "each_exp":
        for g in groups:
            relabel[torch.tensor(g)] = torch.arange(len(g))
    streams = []
    for kind, pool in (("train", train_pool), ("test", test_pool)):
        y = pool.y.cpu()
        exps = []
        for i, g in enumerate(groups):
            ids = torch.isin(y, torch.tensor(g)).nonzero().flatten()  # [n_i] sorted ids of the experience's classes
            task = i if task_labels else 0
            exps.append(
                Experience(StreamDataset(pool, ids, torch.full_like(ids, task)), i, sorted(relabel[g].tolist()), task)
            )
        streams.append(Stream(kind, exps))
    if from_zero is not None:
        for pool in (train_pool, test_pool):
            pool.y = relabel.to(pool.y.device)[pool.y]
        names = names or [str(c) for c in range(k)]
        names = ["|".join(names[c] for c in range(k) if relabel[c] == j) for j in range(int(relabel.max()) + 1)]
        order = (
            [int(relabel[c]) for c in order] if from_zero == "first_exp" else [j for g in groups for j in range(len(g))]
        )
    return Benchmark(
        name, streams[0], streams[1], int(relabel.max()) + 1, order, train_pool, test_pool, class_names=names
    )
