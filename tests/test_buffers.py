"""Storage policies: invariants on random streams (hypothesis), allocation, truncation, uniformity."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replaycli.buffers import (
    BalancedExemplarsBuffer,
    ClassBalancedBuffer,
    ExperienceBalancedBuffer,
    ParametricBuffer,
    ReservoirSamplingBuffer,
)
from replaycli.data.dataset import StreamDataset
from replaycli.data.pool import Pool
from replaycli.errors import ConfigError
from replaycli.memory.store import fill_lengths, group_lengths

PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- the documented allocation, written independently -----------------------------------------
def round_robin(sizes: list[int], max_size: int) -> list[int]:
    """Hand out `max_size` slots one at a time to the groups in order, skipping full groups:
    an even split where a small group keeps all it has and its unused share goes to the others."""
    caps, left = [0] * len(sizes), max_size
    while left > 0 and any(c < s for c, s in zip(caps, sizes, strict=True)):
        for g, s in enumerate(sizes):
            if left and caps[g] < s:
                caps[g] += 1
                left -= 1
    return caps


@given(st.lists(st.integers(0, 30), max_size=8), st.integers(0, 60))
@settings(max_examples=200, deadline=None)
def test_fill_lengths_is_an_even_split_lending_unused_shares(sizes, max_size):
    caps = fill_lengths(sizes, max_size)
    assert caps == round_robin(sizes, max_size)
    assert sum(caps) == min(max_size, sum(sizes))


@given(st.integers(1, 12), st.integers(0, 100))
def test_group_lengths_remainder_to_first_groups(n, max_size):
    lengths = group_lengths(n, max_size)
    assert sum(lengths) == max_size and max(lengths) - min(lengths) <= 1
    assert lengths == sorted(lengths, reverse=True)
    assert BalancedExemplarsBuffer(max_size).get_group_lengths(n) == lengths


# --- random streams ---------------------------------------------------------------------------
def encode_pool(y: list[int]) -> Pool:
    """A pool of len(y) samples whose 2x2 uint8 image spells the sample's id in base 256."""
    ids = torch.arange(len(y))
    x = torch.stack([(ids >> (8 * k)) & 255 for k in range(4)], 1).to(torch.uint8).view(-1, 1, 2, 2)
    return Pool(x, torch.tensor(y, dtype=torch.int64))


@st.composite
def streams(draw):
    """A pool and 1..5 experiences; each brings new samples and may re-offer earlier ones."""
    n_classes = draw(st.integers(1, 5))
    sizes = draw(st.lists(st.integers(0, 14), min_size=1, max_size=5))
    y = draw(st.lists(st.integers(0, n_classes - 1), min_size=sum(sizes), max_size=sum(sizes)))
    pool = encode_pool(y)
    exps, start = [], 0
    for _e, n in enumerate(sizes):
        ids = list(range(start, start + n))
        if start:
            ids += draw(st.lists(st.integers(0, start - 1), max_size=3, unique=True))
        task = draw(st.integers(0, 2))
        exps.append(StreamDataset(pool, torch.tensor(ids, dtype=torch.int64), torch.full((len(ids),), task)))
        start += n
    return pool, n_classes, exps


def make_buffer(kind: str, max_size: int, n_classes: int, n_exps: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return {
        "reservoir": lambda: ReservoirSamplingBuffer(max_size, generator=g),
        "class": lambda: ClassBalancedBuffer(max_size, generator=g),
        "class-fixed": lambda: ClassBalancedBuffer(max_size, False, n_classes, generator=g),
        "experience": lambda: ExperienceBalancedBuffer(max_size, generator=g),
        "experience-fixed": lambda: ExperienceBalancedBuffer(max_size, False, n_exps, generator=g),
        "param-none": lambda: ParametricBuffer(max_size, None, generator=g),
        "param-class": lambda: ParametricBuffer(max_size, "class", generator=g),
        "param-task": lambda: ParametricBuffer(max_size, "task", generator=g),
        "param-experience": lambda: ParametricBuffer(max_size, "experience", generator=g),
    }[kind]()


KINDS = [
    "reservoir",
    "class",
    "class-fixed",
    "experience",
    "experience-fixed",
    "param-none",
    "param-class",
    "param-task",
    "param-experience",
]


def key_of(kind: str, pool: Pool, ids: torch.Tensor, tasks: torch.Tensor, exp: int) -> torch.Tensor:
    """The group key a buffer of `kind` gives samples first stored in experience `exp`."""
    if kind in ("class", "class-fixed", "param-class"):
        return pool.y[ids]
    if kind == "param-task":
        return tasks
    if kind in ("experience", "experience-fixed", "param-experience"):
        return torch.full_like(ids, exp)
    return torch.zeros_like(ids)


def groups(buf) -> dict[int, list[int]]:
    """Group key -> stored ids, best first (a single group for a plain buffer)."""
    if isinstance(buf, BalancedExemplarsBuffer):
        return {k: g.buffer.ids.tolist() for k, g in buf.buffer_groups.items()}
    return {0: buf.buffer.ids.tolist()} if len(buf) else {}


def expected_sizes(buf, kind: str, candidates: dict[int, int], max_size: int) -> dict[int, int]:
    keys = sorted(candidates)
    sizes = [candidates[k] for k in keys]
    if kind.endswith("-fixed"):  # fixed shares over total_num_groups, indexed by key, never lent
        shares = group_lengths(buf.total_num_groups, max_size)
        return {k: min(s, shares[k]) for k, s in zip(keys, sizes, strict=True)}
    return dict(zip(keys, round_robin(sizes, max_size), strict=True))


@pytest.mark.parametrize("kind", KINDS)
@PROPS
@given(data=streams(), max_size=st.integers(0, 12), seed=st.integers(0, 2**16))
def test_buffer_invariants_on_random_streams(kind, data, max_size, seed):
    pool, n_classes, exps = data
    buf = make_buffer(kind, max_size, n_classes, len(exps), seed)
    assert len(buf.buffer) == 0 and buf.max_size == max_size
    offered: set[tuple[int, int]] = set()  # (id, task) pairs seen
    key = {}  # id -> the group key it was stored under
    for e, ds in enumerate(exps):
        before = groups(buf)
        stored = {i for ids in before.values() for i in ids}
        new = [i not in stored for i in ds.ids.tolist()]
        keys = key_of(kind, pool, ds.ids, ds.tasks, e).tolist()
        candidates = {k: len(v) for k, v in before.items()}
        for i, k, is_new in zip(ds.ids.tolist(), keys, new, strict=True):
            if is_new:
                candidates[k] = candidates.get(k, 0) + 1
                key[i] = k
        offered |= set(zip(ds.ids.tolist(), ds.tasks.tolist(), strict=True))

        buf.update(SimpleNamespace(experience=SimpleNamespace(dataset=ds, current_experience=e)))

        ids = buf.buffer.ids.tolist()
        assert len(buf) == len(ids) <= max_size
        assert len(set(ids)) == len(ids)  # unique
        assert set(zip(ids, buf.buffer.tasks.tolist(), strict=True)) <= offered  # only data seen, with its task
        after = groups(buf)
        assert sorted(i for v in after.values() for i in v) == sorted(ids)
        assert all(key[i] == k for k, v in after.items() for i in v)  # the right group
        want = expected_sizes(buf, kind, candidates, max_size)
        assert {k: len(v) for k, v in after.items()} == {k: s for k, s in want.items() if s}
        assert torch.equal(buf.class_histogram(n_classes), torch.bincount(buf.buffer.y, minlength=n_classes))


@pytest.mark.parametrize("kind", KINDS)
@PROPS
@given(data=streams(), max_size=st.integers(1, 12), new_size=st.integers(0, 14), seed=st.integers(0, 2**16))
def test_resize_keeps_each_groups_best_ranked(kind, data, max_size, new_size, seed):
    _pool, n_classes, exps = data
    buf = make_buffer(kind, max_size, n_classes, len(exps), seed)
    for e, ds in enumerate(exps):
        buf.update(SimpleNamespace(experience=SimpleNamespace(dataset=ds, current_experience=e)))
    before = groups(buf)
    buf.resize(None, new_size)
    after = groups(buf)
    assert buf.max_size == new_size and len(buf) <= new_size
    want = expected_sizes(buf, kind, {k: len(v) for k, v in before.items()}, new_size)
    assert {k: len(v) for k, v in after.items()} == {k: s for k, s in want.items() if s}
    for k, ids in after.items():
        assert ids == before[k][: len(ids)]  # a prefix of the group's ranking before


def test_reoffered_samples_are_stored_once():
    pool = encode_pool([0, 1, 0, 1, 2, 2])
    ds = StreamDataset(pool, torch.arange(6))
    buf = ParametricBuffer(10, "class")
    for e in range(3):
        buf.update(SimpleNamespace(experience=SimpleNamespace(dataset=ds, current_experience=e)))
    assert sorted(buf.buffer.ids.tolist()) == list(range(6))
    assert {k: len(g) for k, g in buf.buffer_groups.items()} == {0: 2, 1: 2, 2: 2}
    exp_buf = ExperienceBalancedBuffer(10)
    for e in range(3):
        exp_buf.update(SimpleNamespace(experience=SimpleNamespace(dataset=ds, current_experience=e)))
    assert groups(exp_buf) == {0: groups(exp_buf)[0]} and len(exp_buf) == 6  # kept under the first


def test_fixed_shares_are_not_lent_and_too_many_groups_is_an_error():
    pool = encode_pool([0] * 20 + [1] * 2)
    buf = ClassBalancedBuffer(10, adaptive_size=False, total_num_classes=2)
    buf.update_from_dataset(StreamDataset(pool, torch.arange(22)))
    assert {k: len(g) for k, g in buf.buffer_groups.items()} == {0: 5, 1: 2}
    adaptive = ClassBalancedBuffer(10)
    adaptive.update_from_dataset(StreamDataset(pool, torch.arange(22)))
    assert {k: len(g) for k, g in adaptive.buffer_groups.items()} == {0: 8, 1: 2}
    small = ClassBalancedBuffer(10, adaptive_size=False, total_num_classes=1)
    with pytest.raises(ConfigError, match=r"total_num_classes=1 fixes fewer shares than the 2 class keys"):
        small.update_from_dataset(StreamDataset(pool, torch.arange(22)))
    assert len(small) == 0  # refused before anything was stored
    late = ClassBalancedBuffer(5, adaptive_size=False, total_num_classes=2)  # shares [3, 2] by key
    late.update_from_dataset(StreamDataset(pool, torch.arange(20, 22)))  # class 1 first
    late.update_from_dataset(StreamDataset(pool, torch.arange(20)))  # class 0 arrives later
    assert {k: len(g) for k, g in late.buffer_groups.items()} == {0: 3, 1: 2}


def test_bad_arguments_are_config_errors():
    for bad in (-1, 2.5, True, "30"):
        with pytest.raises(ConfigError, match=rf"max_size={bad!r} must be an integer >= 0"):
            ReservoirSamplingBuffer(bad)
    with pytest.raises(ConfigError, match=r"groupby='label' is not allowed; allowed: null, class, task, experience"):
        ParametricBuffer(30, groupby="label")
    with pytest.raises(ConfigError, match="total_num_groups=None must be a positive integer"):
        ExperienceBalancedBuffer(30, adaptive_size=False)
    with pytest.raises(ConfigError, match="new_size=-3"):
        ReservoirSamplingBuffer(3).resize(None, -3)


def test_a_checkpoint_round_trip_keeps_the_buffer():
    from replaycli.run.state import Refs, round_trip

    pool = encode_pool([i % 3 for i in range(30)])
    buf = ClassBalancedBuffer(7, generator=torch.Generator().manual_seed(0))
    buf.update_from_dataset(StreamDataset(pool, torch.arange(30), torch.ones(30, dtype=torch.int64)))
    other = ClassBalancedBuffer(1)
    round_trip(buf, other, Refs({"pool": pool}, torch.device("cpu")))
    assert other.store.pool is pool and other.generator.get_state().equal(buf.generator.get_state())
    assert other.max_size == 7 and torch.equal(other.buffer.ids, buf.buffer.ids)
    assert torch.equal(other.buffer.tasks, buf.buffer.tasks) and groups(other) == groups(buf)


# --- reservoir sampling is uniform ----------------------------------------------------------
def chi2_critical(df: int, alpha: float) -> float:
    """Upper `alpha` quantile of chi-square(df): scipy's if installed, else Wilson-Hilferty's
    normal approximation (within 1% of the exact value for df >= 10 and alpha >= 1e-4)."""
    try:
        from scipy.stats import chi2

        return float(chi2.isf(alpha, df))
    except ImportError:
        z = {1e-3: 3.0902, 1e-2: 2.3263}[alpha]
        return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def inclusion_statistic(make, sizes: list[int], k: int, runs: int, seed: int) -> float:
    """Chi-square statistic of how often each id ends in a buffer of `k` after updates of
    `sizes` new samples, over `runs` runs.

    Each run keeps exactly k of n ids, so the counts are not multinomial: under uniform
    sampling without replacement the usual sum of (O - E)^2 / E is asymptotically
    (n - k) / (n - 1) times chi-square(n - 1) (its covariance has eigenvalue (n-k)/(n-1) off
    the all-ones direction, where the fixed total leaves none). We rescale by (n-1)/(n-k).
    """
    n = sum(sizes)
    pool = encode_pool([0] * n)
    bounds = [0] + torch.tensor(sizes).cumsum(0).tolist()
    parts = [StreamDataset(pool, torch.arange(a, b)) for a, b in itertools.pairwise(bounds)]
    g = torch.Generator().manual_seed(seed)
    counts = torch.zeros(n, dtype=torch.float64)
    for _ in range(runs):
        buf = make(k, g)
        for e, ds in enumerate(parts):
            buf.update(SimpleNamespace(experience=SimpleNamespace(dataset=ds, current_experience=e)))
        counts += torch.bincount(buf.buffer.ids, minlength=n)
    expected = runs * k / n
    return float(((counts - expected) ** 2 / expected).sum()) * (n - 1) / (n - k)


SIZES, K, RUNS = [2, 5, 1, 4], 4, 2000


@pytest.mark.parametrize(
    "make",
    [
        lambda k, g: ReservoirSamplingBuffer(k, generator=g),
        lambda k, g: ParametricBuffer(k, generator=g),  # random selection: also a reservoir
    ],
    ids=["reservoir", "parametric-random"],
)
def test_reservoir_is_uniform_over_everything_seen(make):
    stat = inclusion_statistic(make, SIZES, K, RUNS, seed=0)
    assert stat < chi2_critical(sum(SIZES) - 1, 1e-3)


def test_uniformity_check_rejects_a_non_uniform_policy():
    # one share per experience: a sample of a small experience is far likelier to stay
    make = lambda k, g: ExperienceBalancedBuffer(k, generator=g)  # noqa: E731
    stat = inclusion_statistic(make, SIZES, K, RUNS // 4, seed=0)
    assert stat > chi2_critical(sum(SIZES) - 1, 1e-3)


class GeneralPath(ReservoirSamplingBuffer):
    """The same policy, always through append + keep (the path `Store.admit` shortcuts)."""

    def full_reservoir(self, data, extras):
        return False


@given(data=streams(), max_size=st.integers(1, 12), seed=st.integers(0, 2**16), logits=st.booleans())
@settings(max_examples=150, deadline=None)
def test_the_full_reservoirs_one_sort_keeps_what_the_general_path_keeps(data, max_size, seed, logits):
    """Every field of the store, in order, extras included, after every batch of a stream that
    re-offers stored samples: `Store.admit` (no host sync) is the general path, to the bit."""
    _, _, exps = data
    fast = ReservoirSamplingBuffer(max_size, generator=torch.Generator().manual_seed(seed))
    slow = GeneralPath(max_size, generator=torch.Generator().manual_seed(seed))
    for e, ds in enumerate(exps):
        for start in range(0, len(ds), 3):  # every_batch: batches of 3
            part = ds.subset(torch.arange(start, min(start + 3, len(ds))))
            extras = {"logits": part.ids[:, None].float().repeat(1, 2) * (e + 1)} if logits else None
            fast.add(part, e, extras)
            slow.add(part, e, extras)
            for name in ("ids", "tasks", "exps", "groups", "scores"):
                assert torch.equal(getattr(fast.store, name), getattr(slow.store, name)), name
            assert fast.store.extras.keys() == slow.store.extras.keys()
            assert all(torch.equal(fast.store.extras[k], slow.store.extras[k]) for k in fast.store.extras)
