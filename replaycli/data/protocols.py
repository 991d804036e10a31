"""The protocol applied to any built stream: a validation stream held out of training, an online
stream of fixed-size pieces, a stream without clean boundaries (data/boundaries.py), and the
normalisation, as the CLI's `normalize`, `validation`, `experience_size`, `blurry`, `si_blurry`,
`repetition` and `boundary` keys (`with_protocol` gives a benchmark factory those keys)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch

from replaycli.data.boundaries import (  # the stream's shapes; blurry_stream and check_blurry named here too
    blurry_stream,
    check_blurry,
    check_probabilities,
    check_width,
    decaying_stream,
    repeated_stream,
    si_blurry_stream,
)
from replaycli.data.stream import Benchmark, Experience, Stream
from replaycli.errors import ConfigError, fraction, integer


def held_out(y: torch.Tensor, share: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of labels `y` (kept, held out): `share` of each class held out, at least one of a
    class of two or more and never all of it (one stays to train on), drawn from `g`."""
    y = y.cpu()
    keep, out = [], []
    for c in torch.unique(y).tolist():
        pos = (y == c).nonzero().flatten()
        pos = pos[torch.randperm(len(pos), generator=g)]
        k = min(max(1, round(share * len(pos))), len(pos) - 1)  # a class of one is never held out
        out.append(pos[:k])
        keep.append(pos[k:])
    return torch.sort(torch.cat(keep)).values, torch.sort(torch.cat(out)).values


def benchmark_with_validation_stream(
    bench: Benchmark, validation_size: float = 0.1, seed: int | None = None
) -> Benchmark:
    """Hold `validation_size` of each class of each training experience out of training: the
    `valid_stream` (evaluation transforms, the training pool), one experience per training one.
    Never trained on; in place, returns `bench`."""
    share = fraction("validation", validation_size)
    g = torch.Generator().manual_seed(0 if seed is None else int(seed))
    valid = []
    for e in bench.train_stream:
        keep, out = held_out(e.dataset.y, share, g)
        valid.append(
            Experience(e.dataset.subset(out).eval(), e.current_experience, e.classes_in_this_experience, e.task_label)
        )
        e.dataset = e.dataset.subset(keep)
    bench.valid_stream = Stream("valid", valid)
    return bench


def split_online_stream(
    stream: Sequence[Experience],
    experience_size: int,
    shuffle: bool = True,
    drop_last: bool = False,
    seed: int | None = None,
) -> Stream:
    """Each experience cut into consecutive mini-experiences of `experience_size` samples (after a
    shuffle drawn from `seed`, unless `shuffle=False`); the last one of each may be smaller
    (dropped with `drop_last`). `origin_experience` names the experience each came from."""
    integer("experience_size", experience_size)
    g = torch.Generator().manual_seed(0 if seed is None else int(seed))
    out: list[Experience] = []
    for e in stream:
        n = len(e.dataset)
        order = torch.randperm(n, generator=g) if shuffle else torch.arange(n)
        for s in range(0, n, experience_size):
            part = order[s : s + experience_size].to(e.dataset.ids.device)
            if drop_last and len(part) < experience_size:
                break
            data = e.dataset.subset(part)
            mini = Experience(data, len(out), torch.unique(data.y).tolist(), e.task_label)
            mini.origin_experience = e.current_experience
            out.append(mini)
    return Stream(getattr(stream, "name", "train"), out)


def protocol(
    bench: Benchmark,
    normalize: str | None = None,
    validation: float | None = None,
    experience_size: int | None = None,
    seed: int | None = None,
    blurry: Sequence[float] | None = None,
    si_blurry: Sequence[float] | None = None,
    repetition: Any = None,
    boundary: float | None = None,
) -> Benchmark:
    """The CLI's protocol keys on a built benchmark, in place: `normalize` (standard | unit |
    none; standard keeps the source's own statistics), the stream's shape (one of `blurry`,
    i-Blurry-N-M; `si_blurry`, Si-Blurry-N-M; `repetition`, class repetition; `boundary`,
    linear-decay boundaries: data/boundaries.py; drawn from `seed`), `validation` (held out of each
    experience, drawn from `seed`), `experience_size` (an online stream of pieces that size)."""
    if normalize is not None:
        train = bench.train_pool
        others = [
            p
            for p in {id(p): p for s in bench.streams() for e in s for p in [e.dataset.pool]}.values()
            if p is not train
        ]
        if normalize != "standard" or train.identity:  # standard of a built-in: its own statistics, as built
            train.normalized(normalize)
            stats = (train.mean.flatten().tolist(), train.std.flatten().tolist())
            for pool in others:
                pool.normalized(normalize, stats if normalize == "standard" else None)
    # the stream's shape before validation and pieces: they are drawn from its experiences
    if blurry is not None:
        bench.train_stream = blurry_stream(bench.train_stream, *check_blurry(blurry), seed=seed)
    elif si_blurry is not None:
        n, m = check_blurry(si_blurry, "si_blurry")
        bench.train_stream, bench.test_stream = si_blurry_stream(bench.train_stream, bench.test_stream, n, m, seed)
    elif repetition is not None:
        bench.train_stream = repeated_stream(bench.train_stream, repetition, seed)
    elif boundary is not None:
        bench.train_stream = decaying_stream(bench.train_stream, check_width(boundary), seed)
    bench.mixed = any(v is not None for v in (blurry, si_blurry, repetition, boundary))
    if validation is not None:
        benchmark_with_validation_stream(bench, validation, seed)
    if experience_size is not None:  # linear-decay boundaries: the pieces follow the samples' places
        bench.train_stream = split_online_stream(bench.train_stream, experience_size, boundary is None, seed=seed)
    return bench


PROTOCOL_KEYS = [
    inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=None)
    for k in ("normalize", "validation", "experience_size", "blurry", "si_blurry", "repetition", "boundary")
]


def with_protocol(factory: Callable[..., Benchmark]) -> Callable[..., Benchmark]:
    """`factory` taking the protocol keys too (in its signature, so `replay run` checks them), and
    Avalanche's `dataset_root=` as the name of `root` (Python only: the CLI says `root`)."""

    @functools.wraps(factory)
    def make(
        *args: Any,
        normalize: str | None = None,
        validation: float | None = None,
        experience_size: int | None = None,
        blurry: Sequence[float] | None = None,
        si_blurry: Sequence[float] | None = None,
        repetition: Any = None,
        boundary: float | None = None,
        **kwargs: Any,
    ) -> Benchmark:
        if "dataset_root" in kwargs and "root" in inspect.signature(factory).parameters:
            if "root" in kwargs:
                raise ConfigError("dataset_root and root are one setting (Avalanche's and replaycli's name); give one")
            kwargs["root"] = kwargs.pop("dataset_root")
        if validation is not None:
            fraction("validation", validation)
        if experience_size is not None:
            integer("experience_size", experience_size)
        shapes = {"blurry": blurry, "si_blurry": si_blurry, "repetition": repetition, "boundary": boundary}
        given = [k for k, v in shapes.items() if v is not None]
        if len(given) > 1:
            raise ConfigError(
                f"benchmark.{given[0]} and benchmark.{given[1]} are two shapes of the stream; allowed: one of "
                "blurry, si_blurry, repetition, boundary"
            )
        for key in ("blurry", "si_blurry"):
            if shapes[key] is not None:
                v = shapes[key]
                shapes[key] = list(check_blurry(list(v) if not isinstance(v, str) else v, key))
        if repetition is not None:
            check_probabilities(repetition)
        if boundary is not None:
            check_width(boundary)
        bench = factory(*args, **kwargs)
        return protocol(bench, normalize, validation, experience_size, kwargs.get("seed"), **shapes)

    sig = inspect.signature(factory)
    make.__signature__ = sig.replace(parameters=[*sig.parameters.values(), *PROTOCOL_KEYS])  # type: ignore[attr-defined]
    del make.__wrapped__  # the signature above is the one to read
    return make
