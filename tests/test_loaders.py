"""Replay and balanced dataloaders: every batch holds exactly the promised samples.

Each sample's image spells its id, so a batch can be decoded back into ids.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replaycli.data.dataset import StreamDataset
from replaycli.data.pool import Pool
from replaycli.errors import ConfigError
from replaycli.loaders import GroupBalancedDataLoader, ReplayDataLoader, TaskBalancedDataLoader
from replaycli.memory.store import group_lengths

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def id_pool(n: int) -> Pool:
    """`n` samples whose 2x2 uint8 image spells the id in base 256; class = id % 10."""
    ids = torch.arange(n)
    x = torch.stack([(ids >> (8 * k)) & 255 for k in range(4)], 1).to(torch.uint8).view(-1, 1, 2, 2)
    return Pool(x, ids % 10)


def decode(x: torch.Tensor) -> list[int]:
    """Ids of a batch of images [B, 1, 2, 2] from `id_pool` (mean 0, std 1: pixels / 255)."""
    b = (x.flatten(1) * 255).round().long()  # [B, 4]
    return (b * (256 ** torch.arange(4))).sum(1).tolist()


def check_batch(pool: Pool, tasks: dict[int, int], batch) -> list[int]:
    x, y, t = batch
    ids = decode(x)
    assert y.tolist() == [i % 10 for i in ids] and t.tolist() == [tasks[i] for i in ids]
    return ids


def expected_count(n: int, q: int, step: int, cycle: bool, drop_last: bool) -> int:
    """Samples a group of `n` gives at `step` with quota `q`."""
    if n == 0 or q == 0:
        return 0
    if cycle:
        return q
    if drop_last:
        return q if (step + 1) * q <= n else 0
    return min(q, max(0, n - step * q))


# --- ReplayDataLoader -----------------------------------------------------------------------
@PROPS
@given(
    n_cur=st.integers(1, 50),
    mem_tasks=st.lists(st.integers(0, 3), max_size=40),
    bs=st.integers(1, 16),
    bs_mem=st.integers(1, 16),
    shuffle=st.booleans(),
    drop_last=st.booleans(),
    oversample=st.booleans(),
    balanced=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_replay_batches_hold_promised_current_and_memory(
    n_cur, mem_tasks, bs, bs_mem, shuffle, drop_last, oversample, balanced, seed
):
    n_mem = len(mem_tasks)
    pool = id_pool(n_cur + n_mem)
    current = StreamDataset(pool, torch.arange(n_cur), torch.full((n_cur,), 7))
    memory = StreamDataset(pool, torch.arange(n_cur, n_cur + n_mem), torch.tensor(mem_tasks, dtype=torch.int64))
    tasks = {i: 7 for i in range(n_cur)} | {n_cur + j: t for j, t in enumerate(mem_tasks)}
    groups = len(set(mem_tasks)) if balanced else min(n_mem, 1)
    if bs_mem < groups:  # a memory batch too small to give every task group a sample is refused
        with pytest.raises(ValueError, match=f"batch_size_mem={bs_mem} cannot give each of the {groups} task groups"):
            ReplayDataLoader(current, memory, oversample, bs, bs_mem, balanced)
        return
    dl = ReplayDataLoader(
        current,
        memory,
        oversample,
        bs,
        bs_mem,
        balanced,
        shuffle=shuffle,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed),
    )
    mem_groups = sorted(set(mem_tasks)) if balanced else [None]
    quotas = group_lengths(len(mem_groups), bs_mem) if n_mem else []
    size = {g: sum(1 for t in mem_tasks if g is None or t == g) for g in mem_groups}

    steps = n_cur // bs if drop_last else math.ceil(n_cur / bs)
    batches = [check_batch(pool, tasks, b) for b in dl]
    assert len(batches) == len(dl) == steps
    seen_cur, seen_mem = [], []
    for s, ids in enumerate(batches):
        n_here = min(bs, n_cur - s * bs)
        cur, mem = ids[:n_here], ids[n_here:]
        assert all(i < n_cur for i in cur) and all(i >= n_cur for i in mem)  # current first, then memory
        for g, q in zip(mem_groups, quotas, strict=False):
            got = sum(1 for i in mem if g is None or tasks[i] == g)
            assert got == expected_count(size[g], q, s, oversample, drop_last)
        seen_cur += cur
        seen_mem += mem
    if drop_last:
        assert len(set(seen_cur)) == len(seen_cur) == steps * bs
    else:
        assert sorted(seen_cur) == list(range(n_cur))  # every current sample exactly once
    if not shuffle:
        assert seen_cur == sorted(seen_cur)
    if not oversample:
        assert len(set(seen_mem)) == len(seen_mem)  # the memory is seen at most once
    else:  # cycled whole passes: within a group, counts differ by at most one
        for g in mem_groups:
            counts = [seen_mem.count(i) for i in range(n_cur, n_cur + n_mem) if g is None or tasks[i] == g]
            assert not counts or max(counts) - min(counts) <= 1


def test_tutorial_batches_of_100_plus_32():
    pool = id_pool(1050)
    data = StreamDataset(pool, torch.arange(1000))
    memory = StreamDataset(pool, torch.arange(1000, 1050))
    dl = ReplayDataLoader(data, memory, batch_size=100, batch_size_mem=32, shuffle=True)
    sizes = [len(b[0]) for b in dl]
    assert sizes == [132] + [118] + [100] * 8  # 50 memory samples: 32, then 18, then none
    cycled = ReplayDataLoader(data, memory, oversample_small_tasks=True, batch_size=100, batch_size_mem=32)
    assert [len(b[1]) for b in cycled] == [132] * 10
    assert [len(b[0]) for b in ReplayDataLoader(data, None, batch_size=300)] == [300, 300, 300, 100]


def test_each_epoch_is_drawn_afresh_and_generator_reproduces():
    pool = id_pool(40)
    data = StreamDataset(pool, torch.arange(30))
    memory = StreamDataset(pool, torch.arange(30, 40))

    def epoch(dl):
        return [i for b in dl for i in decode(b[0])]

    dl = ReplayDataLoader(
        data, memory, batch_size=6, batch_size_mem=2, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    first, second = epoch(dl), epoch(dl)
    assert first != second and sorted(first) == sorted(second)
    again = ReplayDataLoader(
        data, memory, batch_size=6, batch_size_mem=2, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    assert epoch(again) == first


# --- GroupBalancedDataLoader / TaskBalancedDataLoader ----------------------------------------
@PROPS
@given(
    sizes=st.lists(st.integers(0, 20), min_size=1, max_size=5),
    bs=st.integers(1, 20),
    shuffle=st.booleans(),
    drop_last=st.booleans(),
    oversample=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_group_balanced_quotas(sizes, bs, shuffle, drop_last, oversample, seed):
    pool = id_pool(sum(sizes))
    bounds = [0] + torch.tensor(sizes).cumsum(0).tolist()
    datasets = [
        StreamDataset(pool, torch.arange(a, b), torch.full((b - a,), g))
        for g, (a, b) in enumerate(itertools.pairwise(bounds))
    ]
    tasks = {i: g for g, (a, b) in enumerate(itertools.pairwise(bounds)) for i in range(a, b)}
    if bs < len(sizes):  # a batch too small to give every group a sample is refused
        with pytest.raises(ValueError, match=f"batch_size={bs} cannot give each of the {len(sizes)} groups"):
            GroupBalancedDataLoader(datasets, oversample, bs)
        return
    dl = GroupBalancedDataLoader(
        datasets, oversample, bs, shuffle=shuffle, drop_last=drop_last, generator=torch.Generator().manual_seed(seed)
    )
    quotas = group_lengths(len(sizes), bs)
    steps = max((n // q if drop_last else math.ceil(n / q)) if q else 0 for n, q in zip(sizes, quotas, strict=True))
    batches = [check_batch(pool, tasks, b) for b in dl]
    assert len(batches) == len(dl) == steps
    for s, ids in enumerate(batches):
        groups_in_order = [tasks[i] for i in ids]
        assert groups_in_order == sorted(groups_in_order)  # group by group
        for g, (n, q) in enumerate(zip(sizes, quotas, strict=True)):
            assert groups_in_order.count(g) == expected_count(n, q, s, oversample, drop_last)
    seen = [i for ids in batches for i in ids]
    if not oversample and not drop_last:
        assert sorted(seen) == [
            i for g, (a, b) in enumerate(itertools.pairwise(bounds)) if quotas[g] for i in range(a, b)
        ]  # every sample of a group with a quota once


def test_tutorial_group_balanced_batches():
    pool = id_pool(30)
    groups = [StreamDataset(pool, torch.arange(3 * c, 3 * c + 3)) for c in range(10)]
    ((x, _y, _t),) = list(GroupBalancedDataLoader(groups, batch_size=30))
    assert sorted(decode(x)) == list(range(30))  # 3 of each of the 10 groups
    tasks = [StreamDataset(pool, torch.arange(6 * k, 6 * k + 6), torch.full((6,), k)) for k in range(5)]
    batches = list(GroupBalancedDataLoader(tasks, batch_size=5))
    assert [b[2].tolist() for b in batches] == [[0, 1, 2, 3, 4]] * 6


def test_task_balanced_splits_by_task_label():
    pool = id_pool(24)
    tasks = torch.tensor([2] * 4 + [0] * 12 + [5] * 8)
    data = StreamDataset(pool, torch.arange(24), tasks)
    dl = TaskBalancedDataLoader(data, batch_size=7)  # quotas 3, 2, 2 for tasks 0, 2, 5
    counts = [[b[2].tolist().count(k) for k in (0, 2, 5)] for b in dl]
    assert counts == [[3, 2, 2], [3, 2, 2], [3, 0, 2], [3, 0, 2]]
    over = TaskBalancedDataLoader(data, oversample_small_tasks=True, batch_size=7)
    assert [[b[2].tolist().count(k) for k in (0, 2, 5)] for b in over] == [[3, 2, 2]] * 4


def test_loader_arguments():
    pool = id_pool(10)
    data = StreamDataset(pool, torch.arange(10))
    with pytest.raises(TypeError, match="unexpected dataloader arguments: sampler"):
        ReplayDataLoader(data, batch_size=4, sampler=None)
    with pytest.raises(ConfigError, match=r"batch_size=0 must be an integer in \[1, 1048576\]"):
        GroupBalancedDataLoader([data], batch_size=0)
    with pytest.raises(ConfigError, match="batch_size_mem=-1"):
        ReplayDataLoader(data, data, batch_size_mem=-1)
    # an epoch's positions and each batch are built in memory: a batch holds at most 2^20 samples
    with pytest.raises(ConfigError, match=r"batch_size_mem=1048577 must be an integer in \[1, 1048576\]"):
        ReplayDataLoader(data, data, batch_size_mem=2**20 + 1, oversample_small_tasks=True)
    with pytest.raises(ConfigError, match=r"batch_size=99999999999999999999 must be an integer in \[1, 1048576\]"):
        GroupBalancedDataLoader([data], batch_size=99999999999999999999)
    big = ReplayDataLoader(data, batch_size=2**20)  # the bound itself is a batch: here all 10 samples at once
    assert [len(b[0]) for b in big] == [10]
    dl = ReplayDataLoader(data, batch_size=4, num_workers=4, pin_memory=True)  # accepted, not needed
    assert [len(b[0]) for b in dl] == [4, 4, 2]
