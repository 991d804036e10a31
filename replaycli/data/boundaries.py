"""Streams without clean boundaries, as protocol keys of every benchmark (data/protocols.py); each
keeps the number of experiences and sends every training sample to exactly one of them, drawn from
the benchmark's `seed`:

- `blurry_stream` (`benchmark.blurry=[N, M]`, i-Blurry-N-M, Koh et al., ICLR 2022): below.

- `si_blurry_stream` (`benchmark.si_blurry=[N, M]`, Si-Blurry, Moon et al., ICCV 2023): the classes
  are dealt at random into experiences of random sizes (one class at least each), N% of them
  (drawn) disjoint and the rest blurry; M% of each blurry class's samples move to another
  experience drawn uniformly. So the number of new classes and the share of disjoint and blurry
  ones differ from one experience to the next, the two things i-Blurry holds fixed. The test
  stream is dealt the same way: test experience k holds the classes experience k brought in.
- `repeated_stream` (`benchmark.repetition=P`, class repetition, Hemati et al., 2023): each class
  comes first in its own experience, then again in each later one with probability P (one number,
  or one per class); its training samples are split evenly at random over its appearances.
- `decaying_stream` (`benchmark.boundary=W`, linear-decay boundaries): each sample's place in the
  stream, its experience k plus a uniform offset, moves by a uniform amount in [-W/2, W/2] of an
  experience; the experience it lands in holds it, its samples in the order of their places. The
  mix around each boundary thus goes linearly from all old to all new over a width W; W/8 of
  a middle experience's samples land in each neighbour (the first and last keep theirs on the
  outer side). With `experience_size` the pieces follow that order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from replaycli.data.stream import Experience, Stream
from replaycli.errors import ConfigError


def _generator(seed: int | None) -> torch.Generator:
    return torch.Generator().manual_seed(0 if seed is None else int(seed))


def _classes(stream: Sequence[Experience]) -> list[int]:
    return sorted({c for e in stream for c in e.classes_in_this_experience})


def mixable(stream: Sequence[Experience], key: str) -> None:
    """The one rule of every stream that mixes experiences: two of them or more, one task."""
    if len(stream) < 2:
        raise ConfigError(f"benchmark.{key} needs a stream of two experiences or more; this one has {len(stream)}")
    if any(e.task_label != stream[0].task_label for e in stream):
        raise ConfigError(f"benchmark.{key} mixes the experiences' samples, so task labels mean nothing; allowed: "
                          f"benchmark.{key} with a class-incremental stream (no return_task_id)")  # fmt: skip


def regrouped(stream: Sequence[Experience], dest: list[torch.Tensor], keys: list[torch.Tensor] | None = None) -> Stream:
    """Experience k's sample i to experience `dest[k][i]`; each new experience holds its samples
    in stream order (or in the order of `keys`, the same shape as `dest`)."""
    everything = stream[0].dataset
    for e in stream[1:]:
        everything = everything.concat(e.dataset)
    where = torch.cat(dest)
    order = torch.cat(keys) if keys is not None else torch.arange(len(where), dtype=torch.float64)
    out = []
    for k, e in enumerate(stream):
        pos = (where == k).nonzero().flatten()
        pos = pos[torch.argsort(order[pos], stable=True)]
        data = everything.subset(pos)
        if not len(data):
            name = getattr(stream, "name", "train")
            raise ConfigError(
                f"experience {k} of the {name} stream is left empty; allowed: a smaller share of moving samples"
            )
        out.append(Experience(data, k, torch.unique(data.y).tolist(), e.task_label))
    return Stream(getattr(stream, "name", "train"), out)


def blurry_stream(stream: Sequence[Experience], disjoint: float, blurry: float, seed: int | None = None) -> Stream:
    """i-Blurry-N-M (Koh et al., ICLR 2022): `disjoint` percent of the classes (N, drawn from
    `seed`) stay in the experience that holds them; of every other class, `blurry` percent of its
    samples (M) move out of its own experience, each to one of the others drawn uniformly. The
    experiences keep their order and indexes; each one's classes are those it now holds."""
    n_exp = len(stream)
    mixable(stream, "blurry")
    g = _generator(seed)
    classes = _classes(stream)
    fixed = {classes[i] for i in torch.randperm(len(classes), generator=g)[: round(disjoint / 100 * len(classes))]}
    parts: list[list[Any]] = [[] for _ in stream]  # each experience's samples: what stays, then what arrives
    for k, e in enumerate(stream):
        y = e.dataset.y.cpu()
        stays = torch.ones(len(y), dtype=torch.bool)
        leaving, to = [], []
        for c in e.classes_in_this_experience:
            if c in fixed:
                continue
            pos = (y == c).nonzero().flatten()
            out = pos[torch.randperm(len(pos), generator=g)[: round(blurry / 100 * len(pos))]]
            stays[out] = False
            leaving.append(out)
            drawn = torch.randint(n_exp - 1, (len(out),), generator=g)
            to.append(drawn + (drawn >= k).long())  # uniformly among the other experiences
        parts[k].insert(0, e.dataset.subset(stays.nonzero().flatten()))
        if leaving:
            leave, dest = torch.cat(leaving), torch.cat(to)
            for j in range(n_exp):
                if j != k and bool((dest == j).any()):
                    parts[j].append(e.dataset.subset(leave[dest == j]))
    out_stream = []
    for k, e in enumerate(stream):
        data = parts[k][0]
        for extra in parts[k][1:]:
            data = data.concat(extra)
        out_stream.append(Experience(data, k, torch.unique(data.y).tolist(), e.task_label))
    return Stream(getattr(stream, "name", "train"), out_stream)


def check_blurry(value: Any, key: str = "blurry") -> tuple[float, float]:
    """`blurry` (or `si_blurry`) as (N, M), two percentages in [0, 100]."""
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 100 for v in value)
    ):
        name = "i-Blurry-N-M" if key == "blurry" else "Si-Blurry-N-M"
        raise ConfigError(
            f"benchmark.{key}={value!r} is not allowed; allowed: [N, M], percentages in [0, 100]: N of the "
            f"classes stay in their experience, M of each other class's samples move to the others ({name})"
        )
    return float(value[0]), float(value[1])


def _dealt(n_classes: int, n_exp: int, g: torch.Generator) -> list[int]:
    """Each class's experience: a random order cut at n_exp - 1 random places (each part one class or more)."""
    if n_classes < n_exp:
        raise ConfigError(f"benchmark.si_blurry deals {n_classes} classes into {n_exp} experiences; it needs as many")
    order = torch.randperm(n_classes, generator=g)
    cuts = (torch.randperm(n_classes - 1, generator=g)[: n_exp - 1] + 1).sort().values.tolist()
    home = [0] * n_classes
    for k, (a, b) in enumerate(zip([0, *cuts], [*cuts, n_classes], strict=True)):
        for c in order[a:b].tolist():
            home[c] = k
    return home


def si_blurry_stream(
    stream: Sequence[Experience], test: Sequence[Experience], disjoint: float, blurry: float, seed: int | None
) -> tuple[Stream, Stream]:
    """Si-Blurry-N-M of the training stream, and the test stream dealt the same way (module doc)."""
    mixable(stream, "si_blurry")
    g = _generator(seed)
    n_exp, classes = len(stream), _classes(stream)
    dealt = _dealt(len(classes), n_exp, g)
    home = {c: dealt[i] for i, c in enumerate(classes)}
    fixed = {classes[i] for i in torch.randperm(len(classes), generator=g)[: round(disjoint / 100 * len(classes))]}
    dest = []
    for e in stream:
        y = e.dataset.y.cpu()
        to = torch.tensor([home[c] for c in y.tolist()], dtype=torch.int64)
        for c in sorted(set(y.tolist()) - fixed):
            pos = (y == c).nonzero().flatten()
            out = pos[torch.randperm(len(pos), generator=g)[: round(blurry / 100 * len(pos))]]
            drawn = torch.randint(n_exp - 1, (len(out),), generator=g)
            to[out] = drawn + (drawn >= home[c]).long()  # uniformly among the other experiences
        dest.append(to)
    test_dest = [torch.tensor([home[c] for c in e.dataset.y.cpu().tolist()], dtype=torch.int64) for e in test]
    return regrouped(stream, dest), regrouped(test, test_dest)


def repeated_stream(stream: Sequence[Experience], probability: Any, seed: int | None) -> Stream:
    """Class repetition with probability P (one number, or one per class; module doc)."""
    mixable(stream, "repetition")
    g = _generator(seed)
    n_exp, classes = len(stream), _classes(stream)
    p = check_probabilities(probability, len(classes))
    dest = []
    for k, e in enumerate(stream):
        y = e.dataset.y.cpu()
        to = torch.full((len(y),), k, dtype=torch.int64)
        for c in sorted(set(y.tolist())):
            later = torch.arange(k + 1, n_exp)
            again = later[torch.rand(len(later), generator=g) < p[classes.index(c)]]
            at = torch.cat([torch.tensor([k]), again])  # its appearances
            pos = (y == c).nonzero().flatten()
            pos = pos[torch.randperm(len(pos), generator=g)]
            to[pos] = at[torch.arange(len(pos)) % len(at)]  # split evenly: counts differ by one at most
        dest.append(to)
    return regrouped(stream, dest)


def decaying_stream(stream: Sequence[Experience], width: float, seed: int | None) -> Stream:
    """Linear-decay boundaries of width W (module doc)."""
    mixable(stream, "boundary")
    g = _generator(seed)
    n_exp = len(stream)
    dest, keys = [], []
    for k, e in enumerate(stream):
        place = k + torch.rand(len(e.dataset), generator=g, dtype=torch.float64)
        place = place + (torch.rand(len(e.dataset), generator=g, dtype=torch.float64) - 0.5) * width
        dest.append(place.floor().long().clamp(0, n_exp - 1))
        keys.append(place)
    return regrouped(stream, dest, keys)


def check_probabilities(value: Any, n_classes: int | None = None) -> list[float]:
    """`benchmark.repetition`: a probability, or a list of one per class."""
    values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in values) or (
        len(values) != 1 and n_classes is not None and len(values) != n_classes
    ):
        raise ConfigError(
            f"benchmark.repetition={value!r} is not allowed; allowed: a probability in [0, 1] or a list of one per "
            f"class{f' ({n_classes})' if n_classes else ''}: each class comes again in each later experience with it"
        )
    return [float(v) for v in values] * (n_classes if len(values) == 1 and n_classes else 1)


def check_width(value: Any) -> float:
    """`benchmark.boundary`: a width in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError(
            f"benchmark.boundary={value!r} is not allowed; allowed: a width in (0, 1] of an experience, over which "
            "the mix at each boundary goes linearly from the old experience to the new"
        )
    return float(value)
