"""Benchmark generators: a user's own data as a stream (Avalanche 0.6's names, tensors inside).

`nc_benchmark` (new classes per experience), `ni_benchmark` (new instances of all classes),
`dataset_benchmark` / `benchmark_from_datasets` (one given dataset per experience) and
`tensors_benchmark` (one `(x, y[, t])` tuple per experience) take anything
`replaycli.data.inputs.samples` accepts. Labels need not be contiguous: they are remapped to
0..K-1 in sorted order, and `Benchmark.class_names` keeps the original of each. Then
`benchmark_with_validation_stream` holds out a validation split, `split_online_stream` cuts
experiences into fixed-size pieces, and `protocol` applies the CLI's keys for both (those three
live in `replaycli.data.protocols`, importable from here).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

import torch

from replaycli.data.dataset import StreamDataset
from replaycli.data.inputs import Samples, samples
from replaycli.data.pool import Pool
from replaycli.data.protocols import (  # noqa: F401  (Avalanche's names, importable from here as there)
    benchmark_with_validation_stream,
    held_out,
    protocol,
    split_online_stream,
    with_protocol,
)
from replaycli.data.stream import Benchmark, Experience, Stream, class_order, class_split, permutation
from replaycli.data.transforms import Augment
from replaycli.errors import ConfigError, flag, integer


def pools(
    train: Samples,
    test: Samples,
    normalize: str | None = None,
    augment: Augment | None = None,
    stats: Any = None,
    *extra: Samples,
) -> tuple[list[Pool], list[str] | None]:
    """Train, test (and `extra`) pools with labels remapped to 0..K-1 (sorted), normalised with
    the training pool's statistics, and the original labels' names (a folder's class names, else
    the labels as text when they were not 0..K-1 already)."""
    if train.x.shape[1:] != test.x.shape[1:]:
        raise ConfigError(
            f"train samples are {list(train.x.shape[1:])} but test samples {list(test.x.shape[1:])}; allowed: one shape"
        )
    for what, s in (("train", train), ("test", test), *(("validation", s) for s in extra)):
        check_values(what, s)

    classes = torch.unique(train.y)  # sorted
    unseen = torch.unique(test.y[~torch.isin(test.y, classes)])
    if len(unseen):
        raise ConfigError(
            f"class {_name(train, int(unseen[0]))} has test samples but no training samples; "
            "allowed: test classes that are trained on"
        )
    missing = classes[~torch.isin(classes, test.y)]
    if len(missing):
        raise ConfigError(
            f"class {_name(train, int(missing[0]))} has no test samples; allowed: a test set with every "
            "class (a folder: benchmark.test_fraction splits one folder)"
        )
    names = train.names
    if names is None and not torch.equal(classes, torch.arange(len(classes))):
        names = [str(c) for c in classes.tolist()]
    if train.names is not None:
        names = [train.names[c] for c in classes.tolist()]
    for s in extra:
        if s.x.shape[1:] != train.x.shape[1:] or not torch.isin(s.y, classes).all():
            raise ConfigError("validation samples must have the training samples' shape and classes")
    made = [
        Pool(s.x, torch.searchsorted(classes, s.y.to(torch.int64)), augment=augment, mapped=s.mapped)
        for s in (train, test, *extra)
    ]
    how = normalize or ("standard" if train.x.dtype == torch.uint8 else "none")
    made[0].normalized(how, stats)
    for p in made[1:]:
        p.normalized(
            how, (made[0].mean.flatten().tolist(), made[0].std.flatten().tolist()) if how == "standard" else None
        )
    return made, names


def check_values(what: str, s: Samples) -> None:
    """Samples a model can read: real numbers, at least one feature each, all finite (NaN or inf in
    the data fail a run midway, blaming the optimizer, or evaluate to nonsense). Checked in chunks
    of rows, so that a memory-mapped pool is read, not copied."""
    if s.x.dtype.is_complex:
        raise ConfigError(f"the {what} samples are complex ({str(s.x.dtype)[6:]}); allowed: real numbers")
    if len(s.x) and s.x[0].numel() == 0:
        raise ConfigError(f"the {what} samples have shape {list(s.x.shape[1:])}: no feature; allowed: at least one")
    if not s.x.dtype.is_floating_point:
        return
    for start in range(0, len(s.x), 4096):
        rows = s.x[start : start + 4096]
        bad = (~torch.isfinite(rows)).flatten(1).any(1).nonzero()
        if len(bad):
            row = start + int(bad[0])
            raise ConfigError(
                f"the {what} samples hold a non-finite value (NaN or inf), e.g. sample {row}; allowed: finite numbers"
            )


def _name(s: Samples, label: int) -> str:
    return repr(s.names[label]) if s.names is not None and 0 <= label < len(s.names) else str(label)


def experience_sizes(n_classes: int, n_experiences: Any, per_exp_classes: Mapping[int, int] | None) -> list[int]:
    """Classes per experience: `per_exp_classes` fixes some, the rest share the remaining classes
    equally; ConfigError when they cannot."""
    divisors = [d for d in range(1, n_classes + 1) if n_classes % d == 0]
    if isinstance(n_experiences, bool) or not isinstance(n_experiences, int) or n_experiences < 1:  # the divisors
        raise ConfigError(  # are what is allowed: errors.integer's "a positive integer" would say less
            f"n_experiences={n_experiences!r} does not divide the {n_classes} classes; allowed: {divisors}, "
            "or per_exp_classes"
        )
    fixed = {int(k): int(v) for k, v in dict(per_exp_classes or {}).items()}
    if any(not 0 <= k < n_experiences for k in fixed) or any(v < 1 for v in fixed.values()):
        raise ConfigError(f"per_exp_classes={fixed} must map experiences 0..{n_experiences - 1} to >= 1 classes")
    rest, free = n_classes - sum(fixed.values()), n_experiences - len(fixed)
    if rest < 0 or (free and rest % free) or (not free and rest):
        why = (
            f"per_exp_classes={fixed} leaves {rest} classes for {free} experiences"
            if fixed
            else f"n_experiences={n_experiences} does not divide the {n_classes} classes"
        )
        raise ConfigError(f"{why}; allowed: {divisors}, or per_exp_classes")
    each = rest // free if free else 0
    return [fixed.get(i, each) for i in range(n_experiences)]


def nc_benchmark(
    train_dataset: Any,
    test_dataset: Any,
    n_experiences: int,
    task_labels: bool = False,
    shuffle: bool = True,
    seed: int | None = None,
    fixed_class_order: Sequence[int] | None = None,
    per_exp_classes: Mapping[int, int] | None = None,
    class_ids_from_zero_from_first_exp: bool = False,
    class_ids_from_zero_in_each_exp: bool = False,
    normalize: str | None = None,
    augment: Augment | None = None,
    name: str = "nc_benchmark",
    stats: Any = None,
) -> Benchmark:
    """New classes: the classes are split over `n_experiences` (in the order `fixed_class_order`
    gives, in original labels, else a permutation drawn from `seed` when `shuffle`, else sorted);
    experience i has task label i with `task_labels`. `class_ids_from_zero_from_first_exp`
    relabels classes by their position in the order; `class_ids_from_zero_in_each_exp` by
    their position in their experience (the model then has as many outputs as the largest)."""
    flag("task_labels", task_labels)
    train, test = samples(train_dataset, "train_dataset"), samples(test_dataset, "test_dataset")
    (train_pool, test_pool), names = pools(train, test, normalize, augment, stats)
    k = len(torch.unique(train_pool.y))
    if fixed_class_order is not None:
        order = permutation("fixed_class_order", fixed_class_order, torch.unique(train.y).tolist())
    elif shuffle:
        order = class_order(k, seed, None) if seed is not None else torch.randperm(k).tolist()
    else:
        order = list(range(k))
    if class_ids_from_zero_from_first_exp and class_ids_from_zero_in_each_exp:
        raise ConfigError("class_ids_from_zero_from_first_exp and class_ids_from_zero_in_each_exp exclude each other")
    from_zero = (
        "first_exp" if class_ids_from_zero_from_first_exp else "each_exp" if class_ids_from_zero_in_each_exp else None
    )
    return class_split(
        name,
        train_pool,
        test_pool,
        order,
        experience_sizes(k, n_experiences, per_exp_classes),
        task_labels,
        from_zero,
        names,
    )


def _partition(pool: Pool, n: int, shuffle: bool, balance: bool, g: torch.Generator) -> list[torch.Tensor]:
    y = pool.y.cpu()
    ids = torch.randperm(len(y), generator=g) if shuffle else torch.arange(len(y))
    if not balance:
        return [torch.sort(part).values for part in ids.tensor_split(n)]
    parts: list[list[torch.Tensor]] = [[] for _ in range(n)]
    for c in torch.unique(y).tolist():  # each class dealt evenly over the experiences
        for i, part in enumerate(ids[y[ids] == c].tensor_split(n)):
            parts[i].append(part)
    return [torch.sort(torch.cat(p)).values for p in parts]


def ni_benchmark(
    train_dataset: Any,
    test_dataset: Any,
    n_experiences: int,
    task_labels: bool = False,
    shuffle: bool = True,
    seed: int | None = None,
    balance_experiences: bool = False,
    normalize: str | None = None,
    augment: Augment | None = None,
    name: str = "ni_benchmark",
    stats: Any = None,
) -> Benchmark:
    """New instances: the training samples are dealt over `n_experiences` (in a random order from
    `seed` when `shuffle`; each class evenly with `balance_experiences`); every experience may
    hold every class. The test stream is one experience: the whole test set."""
    integer("n_experiences", n_experiences)
    flag("task_labels", task_labels)
    train, test = samples(train_dataset, "train_dataset"), samples(test_dataset, "test_dataset")
    (train_pool, test_pool), names = pools(train, test, normalize, augment, stats)
    if n_experiences > len(train_pool):
        raise ConfigError(f"n_experiences={n_experiences} is more than the {len(train_pool)} training samples")
    g = torch.Generator().manual_seed(0 if seed is None else int(seed))
    parts = _partition(train_pool, n_experiences, shuffle, balance_experiences, g)
    return instances(name, train_pool, test_pool, parts, task_labels, names)


def experience(pool: Pool, ids: torch.Tensor, index: int, task: int) -> Experience:
    """Experience `index`: the samples `ids` of `pool`, each with task label `task`."""
    return Experience(
        StreamDataset(pool, ids, torch.full_like(ids, task)), index, torch.unique(pool.y[ids]).tolist(), task
    )


def instances(
    name: str,
    train_pool: Pool,
    test_pool: Pool,
    parts: Sequence[torch.Tensor],
    task_labels: bool,
    names: list[str] | None,
) -> Benchmark:
    """New instances: training experience i holds the samples `parts[i]` (task label i with
    `task_labels`); the test stream is one experience, the whole test set."""
    exps = [experience(train_pool, ids, i, i if task_labels else 0) for i, ids in enumerate(parts)]
    test = experience(test_pool, torch.arange(len(test_pool)), 0, 0)
    k = len(torch.unique(train_pool.y))
    return Benchmark(
        name, Stream("train", exps), Stream("test", [test]), k, list(range(k)), train_pool, test_pool, class_names=names
    )


def _concat(parts: list[Samples], what: str) -> tuple[Samples, list[torch.Tensor], list[int]]:
    """One Samples of `parts` (same shape and dtype), each part's ids, each part's task label."""
    if not parts:
        raise ConfigError(f"{what} is empty; allowed: at least one dataset")
    for i, p in enumerate(parts):
        if p.x.shape[1:] != parts[0].x.shape[1:] or p.x.dtype != parts[0].x.dtype:
            raise ConfigError(
                f"{what}[{i}] holds {str(p.x.dtype)[6:]} {list(p.x.shape[1:])} samples, {what}[0] "
                f"{str(parts[0].x.dtype)[6:]} {list(parts[0].x.shape[1:])}; allowed: one shape and dtype"
            )
        if p.t is not None and len(torch.unique(p.t)) > 1:
            raise ConfigError(f"{what}[{i}] has task labels {torch.unique(p.t).tolist()}; allowed: one per experience")
    bounds = torch.tensor([0] + [len(p) for p in parts]).cumsum(0).tolist()
    ids = [torch.arange(a, b) for a, b in itertools.pairwise(bounds)]
    tasks = [int(p.t[0]) if p.t is not None and len(p.t) else 0 for p in parts]
    x = torch.cat([p.x for p in parts]) if len(parts) > 1 else parts[0].x
    return (
        Samples(x, torch.cat([p.y for p in parts]), None, parts[0].names, parts[0].mapped if len(parts) == 1 else None),
        ids,
        tasks,
    )


def dataset_benchmark(
    train_datasets: Sequence[Any],
    test_datasets: Sequence[Any],
    normalize: str | None = None,
    augment: Augment | None = None,
    name: str = "dataset_benchmark",
    task_labels: Sequence[int] | None = None,
    **other_streams: Sequence[Any],
) -> Benchmark:
    """One experience per given dataset (train and test streams of their own lengths). Task
    labels: `task_labels[i]`, else the dataset's own (`(x, y, t)`), else 0. `other_streams`
    (e.g. `valid=[...]`) become streams of the same pools' kind (`valid_stream`)."""
    train, train_ids, train_tasks = _concat([samples(d, f"train[{i}]") for i, d in enumerate(train_datasets)], "train")
    test, test_ids, test_tasks = _concat([samples(d, f"test[{i}]") for i, d in enumerate(test_datasets)], "test")
    if task_labels is not None:
        if len(task_labels) != len(train_ids):
            raise ConfigError(f"task_labels has {len(task_labels)} labels for {len(train_ids)} experiences")
        train_tasks = [int(t) for t in task_labels]
        test_tasks = train_tasks[: len(test_ids)] + [0] * max(0, len(test_ids) - len(train_ids))
    unseen = sorted(set(test_tasks) - set(train_tasks))
    if unseen:  # task-IL masks and task-balanced loaders know only the trained ones
        raise ConfigError(f"task label {unseen[0]} has test samples but no training samples; allowed: trained ones")
    valid = other_streams.pop("valid", None)
    if other_streams:
        raise ConfigError(f"{next(iter(other_streams))}=: unknown stream; allowed: train, test, valid")
    valid_parts = _concat([samples(d, f"valid[{i}]") for i, d in enumerate(valid)], "valid") if valid else None
    (train_pool, test_pool, *valid_pool), names = pools(
        train, test, normalize, augment, None, *([valid_parts[0]] if valid_parts else [])
    )

    def stream(kind: str, pool: Pool, ids: list[torch.Tensor], tasks: list[int]) -> Stream:
        return Stream(kind, [experience(pool, i, e, t) for e, (i, t) in enumerate(zip(ids, tasks, strict=True))])

    k = len(torch.unique(train_pool.y))
    bench = Benchmark(
        name,
        stream("train", train_pool, train_ids, train_tasks),
        stream("test", test_pool, test_ids, test_tasks),
        k,
        list(range(k)),
        train_pool,
        test_pool,
        class_names=names,
    )
    if valid_parts:
        bench.valid_stream = stream("valid", valid_pool[0], valid_parts[1], valid_parts[2])
    return bench


def benchmark_from_datasets(train: Sequence[Any], test: Sequence[Any], **streams: Sequence[Any]) -> Benchmark:
    """`benchmark_from_datasets(train=[...], test=[...], valid=[...])`: `dataset_benchmark` by stream name."""
    return dataset_benchmark(train, test, **cast(dict[str, Any], streams))  # stream names: no other argument


def tensors_benchmark(
    train_tensors: Sequence[Sequence[Any]],
    test_tensors: Sequence[Sequence[Any]],
    task_labels: Sequence[int] | None = None,
    complete_test_set_only: bool = False,
    **kwargs: Any,
) -> Benchmark:
    """One `(x, y[, t])` tuple per experience; `complete_test_set_only`: `test_tensors` is one
    tuple, the whole test set, as one test experience."""
    tests = [test_tensors] if complete_test_set_only else list(test_tensors)
    bench = dataset_benchmark(list(train_tensors), tests, task_labels=None, name="tensors_benchmark", **kwargs)
    if task_labels is not None:
        if len(task_labels) != len(bench.train_stream):
            raise ConfigError(f"task_labels has {len(task_labels)} labels for {len(bench.train_stream)} experiences")
        for stream in (bench.train_stream, bench.test_stream):
            for e in stream:
                t = (
                    int(task_labels[e.current_experience])
                    if not complete_test_set_only or stream is bench.train_stream
                    else 0
                )
                e.task_label = t
                e.dataset = StreamDataset(e.dataset.pool, e.dataset.ids, torch.full_like(e.dataset.ids, t))
    return bench


def split_samples(
    bench_name: str,
    train: Samples,
    test: Samples,
    n_experiences: Any,
    return_task_id: bool,
    seed: int | None,
    class_order_: Sequence[int] | None,
    per_exp_classes: Any,
    augment: Any = None,
    stats: Any = None,
) -> Benchmark:
    """A user's samples split by class over `n_experiences` (the CLI's data options); `class_order_`
    in the data's own labels or class names."""
    flag("return_task_id", return_task_id)
    (train_pool, test_pool), names = pools(train, test, None, augment, stats)
    k = len(torch.unique(train_pool.y))
    if class_order_ is not None:  # in the data's own labels (or class names), like nc_benchmark
        order = permutation("class_order", class_order_, names or list(range(k)))
    else:
        order = class_order(k, seed, None)
    sizes = experience_sizes(k, n_experiences, per_exp_classes)
    return class_split(bench_name, train_pool, test_pool, order, sizes, return_task_id, names=names)


def by_task(name: str, train: Samples, test: Samples) -> Benchmark:
    """One experience per task label of the training samples (in label order), test likewise."""

    def parts(s: Samples) -> list[Samples]:
        tasks = s.t if s.t is not None else torch.zeros_like(s.y)  # no task labels: one experience
        return [Samples(s.x[tasks == t], s.y[tasks == t], tasks[tasks == t]) for t in torch.unique(tasks).tolist()]

    return dataset_benchmark(parts(train), parts(test), name=name)


def class_incremental_benchmark(
    datasets_dict: Mapping[str, Any],
    *,
    class_order: Sequence[int] | None = None,
    num_experiences: int | None = None,
    num_classes_per_exp: Sequence[int] | None = None,
    seed: int | None = None,
) -> Benchmark:
    """Avalanche 0.6's class-incremental generator: `datasets_dict` names a `train` and a `test`
    data set; the classes, in `class_order` (else an order drawn from `seed`), are split over
    `num_experiences`, or `num_classes_per_exp[i]` classes to experience i (`nc_benchmark`)."""
    if class_order is not None and seed is not None:
        raise ValueError("class_order and seed exclude each other: seed draws a class order")
    if (num_experiences is None) == (num_classes_per_exp is None):
        raise ValueError("give one of num_experiences and num_classes_per_exp")
    if set(datasets_dict) != {"train", "test"}:
        raise ValueError(f"datasets_dict has streams {sorted(datasets_dict)}; allowed: exactly train and test")
    per_exp = None if num_classes_per_exp is None else dict(enumerate(num_classes_per_exp))
    n = len(num_classes_per_exp) if num_classes_per_exp is not None else num_experiences or 0
    return nc_benchmark(
        datasets_dict["train"],
        datasets_dict["test"],
        n,
        shuffle=class_order is None,
        seed=seed,
        fixed_class_order=class_order,
        per_exp_classes=per_exp,
        name="class_incremental_benchmark",
    )


def FixedSizeExperienceSplitter(  # Avalanche's name, a class there, for a generator of experiences
    experience: Experience, experience_size: int, shuffle: bool = True, drop_last: bool = False, seed: int | None = None
) -> Iterator[Experience]:
    """Avalanche 0.6's online splitter: `experience` as mini-experiences of `experience_size`
    samples (`split_online_stream` of that one experience)."""
    yield from split_online_stream([experience], experience_size, shuffle, drop_last, seed)
