"""Experience streams: a benchmark splits a pool's classes (or permutes its pixels) into experiences.

`SplitDigits` is embedded (scikit-learn's 8x8 digits) and works offline; the others read
torchvision's files under `root`, downloading them when missing and `download` is true.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from replaycli.data import StreamDataset
from replaycli.errors import ConfigError, flag, integer
from replaycli.pool import PermutedPool, Pool
from replaycli.sources import DEFAULT_ROOT, load_source


@dataclass
class Experience:
    """One step of a stream: its dataset, index, classes and task label."""

    dataset: StreamDataset
    current_experience: int
    classes_in_this_experience: list[int]
    task_label: int

    @property
    def task_labels(self) -> list[int]:
        return [self.task_label]


class Stream(Sequence[Experience]):
    """The experiences of one split (`train` or `test`), indexable and iterable."""

    def __init__(self, name: str, experiences: list[Experience]):
        self.name = name
        self.experiences = experiences

    def __len__(self) -> int:
        return len(self.experiences)

    def __getitem__(self, i):  # type: ignore[override]
        return self.experiences[i]

    def __iter__(self) -> Iterator[Experience]:
        return iter(self.experiences)

    def __repr__(self) -> str:
        return f"Stream({self.name!r}, {len(self)} experiences)"


@dataclass
class Benchmark:
    """A train and a test stream over the same classes, built on two pools."""

    name: str
    train_stream: Stream
    test_stream: Stream
    n_classes: int
    classes_order: list[int]
    train_pool: Pool
    test_pool: Pool

    @property
    def n_experiences(self) -> int:
        return len(self.train_stream)

    @property
    def n_tasks(self) -> int:
        """Task labels 0..n_tasks-1 of the training stream (1 in class-incremental mode)."""
        return max(e.task_label for e in self.train_stream) + 1

    def to(self, device: torch.device | str) -> "Benchmark":
        """Move both pools (images, labels) and every experience's ids to `device`, in place."""
        self.train_pool.to(device)
        self.test_pool.to(device)
        for stream in (self.train_stream, self.test_stream):
            for exp in stream:
                exp.dataset = exp.dataset.to(device)
        return self


def class_order(
    n_classes: int, seed: int | None, fixed_class_order: Sequence[int] | None
) -> list[int]:
    """`fixed_class_order` if given, else a permutation drawn from `seed`, else 0..n-1."""
    if fixed_class_order is not None:
        order = [int(c) for c in fixed_class_order]
        if sorted(order) != list(range(n_classes)):
            raise ConfigError(
                f"fixed_class_order={order} must be a permutation of the {n_classes} classes 0..{n_classes - 1}"
            )
        return order
    if seed is None:
        return list(range(n_classes))
    return torch.randperm(n_classes, generator=torch.Generator().manual_seed(int(seed))).tolist()


def _split_stream(pool: Pool, order: list[int], n_experiences: int, return_task_id: bool) -> list[Experience]:
    per = len(order) // n_experiences
    y = pool.y.cpu()
    exps = []
    for i in range(n_experiences):
        classes = order[i * per : (i + 1) * per]
        ids = torch.isin(y, torch.tensor(classes)).nonzero().flatten()  # [n_i] sorted ids
        task = i if return_task_id else 0
        tasks = torch.full_like(ids, task)
        exps.append(Experience(StreamDataset(pool, ids, tasks), i, sorted(classes), task))
    return exps


def split_benchmark(
    name: str,
    train_pool: Pool,
    test_pool: Pool,
    n_classes: int,
    n_experiences: int,
    return_task_id: bool = False,
    seed: int | None = None,
    fixed_class_order: Sequence[int] | None = None,
) -> Benchmark:
    """Class-incremental split of `n_classes` into `n_experiences` equal groups of classes."""
    flag("return_task_id", return_task_id)
    if not isinstance(n_experiences, int) or n_experiences <= 0 or n_classes % n_experiences:
        divisors = [d for d in range(1, n_classes + 1) if n_classes % d == 0]
        raise ConfigError(
            f"n_experiences={n_experiences} does not divide the {n_classes} classes of {name}; allowed: {divisors}"
        )
    order = class_order(n_classes, seed, fixed_class_order)
    train = _split_stream(train_pool, order, n_experiences, return_task_id)
    test = _split_stream(test_pool, order, n_experiences, return_task_id)
    return Benchmark(name, Stream("train", train), Stream("test", test), n_classes, order, train_pool, test_pool)


def _split(name: str, source: str, n_classes: int, experiences: int = 5, fetch: bool = True, doc: str = ""):
    def make(
        n_experiences: int = experiences,
        return_task_id: bool = False,
        seed: int | None = None,
        fixed_class_order: Sequence[int] | None = None,
        root: str | Path | None = DEFAULT_ROOT,
        download: bool = fetch,
    ) -> Benchmark:
        train_pool, test_pool = load_source(source, root, download)
        return split_benchmark(
            name, train_pool, test_pool, n_classes, n_experiences, return_task_id, seed, fixed_class_order
        )

    make.__name__ = make.__qualname__ = name
    make.__doc__ = doc or f"{name}: {n_classes} classes of {source} split into `n_experiences` experiences."
    return make


SplitMNIST = _split("SplitMNIST", "mnist", 10)
SplitFMNIST = _split("SplitFMNIST", "fmnist", 10)
SplitCIFAR10 = _split("SplitCIFAR10", "cifar10", 10)
SplitCIFAR100 = _split("SplitCIFAR100", "cifar100", 100, experiences=10)
SplitDigits = _split("SplitDigits", "digits", 10, fetch=False, doc=(
    "scikit-learn's bundled 8x8 digits (1,797 images) split by class; needs no files (`root` and `download` "
    "are accepted for a uniform signature and ignored)."))


def PermutedMNIST(
    n_experiences: int = 10,
    return_task_id: bool = False,
    seed: int | None = None,
    root: str | Path = DEFAULT_ROOT,
    download: bool = True,
    source: str = "mnist",
) -> Benchmark:
    """Domain-incremental: all 10 classes in every experience, each under its own pixel permutation.

    The permutations are drawn from `seed` (0 when None), so a benchmark is always reproducible.
    """
    integer("n_experiences", n_experiences)
    flag("return_task_id", return_task_id)
    base_train, base_test = load_source(source, root, download)
    g = torch.Generator().manual_seed(0 if seed is None else int(seed))
    n_pixels = base_train.x[0].numel()
    perms = torch.stack([torch.randperm(n_pixels, generator=g) for _ in range(n_experiences)])
    train_pool, test_pool = PermutedPool(base_train, perms), PermutedPool(base_test, perms)
    classes = sorted(base_train.y.unique().tolist())
    streams = []
    for name, pool in (("train", train_pool), ("test", test_pool)):
        n = pool.n_base
        exps = []
        for i in range(n_experiences):
            ids = torch.arange(i * n, (i + 1) * n)
            task = i if return_task_id else 0
            exps.append(Experience(StreamDataset(pool, ids, torch.full_like(ids, task)), i, classes, task))
        streams.append(Stream(name, exps))
    return Benchmark("PermutedMNIST", streams[0], streams[1], len(classes), classes, train_pool, test_pool)
