"""The parts of Avalanche's API its own tests and its users reach for beyond the tutorial: the
endless group-balanced loader, a selection strategy written without the base class, fixed-size
group lengths, Avalanche 0.6's `class_incremental_benchmark` and `FixedSizeExperienceSplitter`,
and `collate_fn`, refused rather than dropped. What differs on purpose is in docs/avalanche.md."""

from __future__ import annotations

import pytest
import torch

from replaycli.buffers import ClassBalancedBuffer, ParametricBuffer
from replaycli.data.dataset import StreamDataset
from replaycli.data.pool import Pool
from replaycli.generators import FixedSizeExperienceSplitter, class_incremental_benchmark
from replaycli.loaders import GroupBalancedInfiniteDataLoader, ReplayDataLoader


def id_pool(n: int, classes: int = 3) -> Pool:
    """Samples whose single feature is their id, labels id % classes."""
    return Pool(torch.arange(n, dtype=torch.float32)[:, None], torch.arange(n) % classes)


def test_the_infinite_group_balanced_loader_draws_batch_size_of_each_group_forever():
    pool = id_pool(30)
    groups = [StreamDataset(pool, torch.arange(10 * g, 10 * g + 10)) for g in range(3)]
    loader = GroupBalancedInfiniteDataLoader(groups, batch_size=4, generator=torch.Generator().manual_seed(0))
    assert len(loader) == 10**10
    seen = set()
    for step, (x, y, t) in zip(range(200), loader, strict=False):
        ids = x[:, 0].long()
        assert len(ids) == 12 and step < 200
        for g in range(3):  # rows 4g..4g+3 come from group g, drawn with replacement
            assert all(10 * g <= int(i) < 10 * g + 10 for i in ids[4 * g : 4 * g + 4])
        assert torch.equal(y, ids % 3) and not t.any()
        seen |= set(ids.tolist())
    assert seen == set(range(30))  # 200 draws of each group reach every sample
    twins = [
        GroupBalancedInfiniteDataLoader(groups, batch_size=4, generator=torch.Generator().manual_seed(7))
        for _ in range(2)
    ]
    a, b = ([x for _, (x, _, _) in zip(range(3), t, strict=False)] for t in twins)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))  # the same generator, the same draws


def test_the_infinite_loader_hands_each_groups_minibatch_to_collate_mbatches():
    pool = id_pool(8)
    groups = [StreamDataset(pool, torch.arange(4)), StreamDataset(pool, torch.arange(4, 8))]
    loader = GroupBalancedInfiniteDataLoader(groups, collate_mbatches=lambda parts: [len(p[0]) for p in parts])
    assert next(iter(loader)) == [1, 1]  # Avalanche's default batch size: one sample of each group


def test_collate_fn_is_refused_in_one_line_not_dropped():
    data = StreamDataset(id_pool(6), torch.arange(6))
    with pytest.raises(TypeError, match="collate_fn is not used: batches are gathered as tensors"):
        ReplayDataLoader(data, batch_size=2, collate_fn=lambda batch: batch)
    assert len(ReplayDataLoader(data, batch_size=2, collate_fn=None)) == 3  # None: nothing asked


class SmallestFirst:
    """Avalanche's contract without its base class: only make_sorted_indices."""

    def make_sorted_indices(self, strategy, data):
        return torch.argsort(data.ids).tolist()


def test_a_selection_with_only_make_sorted_indices_ranks_each_group():
    pool = id_pool(30)
    buf = ParametricBuffer(6, groupby="class", selection_strategy=SmallestFirst())
    buf.update_from_dataset(StreamDataset(pool, torch.randperm(30, generator=torch.Generator().manual_seed(1))))
    kept = sorted(buf.buffer.ids.tolist())
    assert kept == [0, 1, 2, 3, 4, 5]  # the two smallest ids of each class (ids 0..5, classes 0, 1, 2)


def test_fixed_group_lengths_are_the_shares_the_buffer_keeps():
    fixed = ClassBalancedBuffer(10, adaptive_size=False, total_num_classes=3)
    assert fixed.get_group_lengths(2) == [4, 3]  # 10 over 3 keys: 4, 3, 3 (Avalanche: 3, 3, 3)
    assert fixed.get_group_lengths(4) == [4, 3, 3, 0]
    assert ClassBalancedBuffer(10).get_group_lengths(3) == [4, 3, 3]
    pool = id_pool(30)
    fixed.update_from_dataset(StreamDataset(pool, torch.arange(30)))
    assert {k: len(g.buffer) for k, g in fixed.buffer_groups.items()} == {0: 4, 1: 3, 2: 3}


def digits_like(n: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.arange(n) % classes


def test_class_incremental_benchmark_splits_classes_in_the_given_order():
    data = {"train": digits_like(60, 6, 0), "test": digits_like(30, 6, 1)}
    bench = class_incremental_benchmark(data, class_order=[5, 4, 3, 2, 1, 0], num_experiences=3)
    got = [sorted(e.classes_in_this_experience) for e in bench.train_stream]
    assert got == [[4, 5], [2, 3], [0, 1]]
    assert [len(e.dataset) for e in bench.train_stream] == [20, 20, 20]
    assert [sorted(set(e.dataset.y.tolist())) for e in bench.test_stream] == got
    uneven = class_incremental_benchmark(data, class_order=[0, 1, 2, 3, 4, 5], num_classes_per_exp=[1, 2, 3])
    assert [sorted(e.classes_in_this_experience) for e in uneven.train_stream] == [[0], [1, 2], [3, 4, 5]]
    drawn = [
        class_incremental_benchmark(data, num_experiences=2, seed=s).train_stream[0].classes_in_this_experience
        for s in (3, 3)
    ]
    assert drawn[0] == drawn[1]  # a seed draws the same order every time


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"class_order": [0, 1, 2, 3, 4, 5], "seed": 1, "num_experiences": 2}, "class_order and seed exclude"),
        ({"num_experiences": 2, "num_classes_per_exp": [3, 3]}, "give one of num_experiences"),
        ({}, "give one of num_experiences"),
    ],
)
def test_class_incremental_benchmark_refuses_what_avalanche_refuses(kwargs, message):
    data = {"train": digits_like(60, 6, 0), "test": digits_like(30, 6, 1)}
    with pytest.raises(ValueError, match=message):
        class_incremental_benchmark(data, **kwargs)


def test_the_fixed_size_splitter_cuts_one_experience_into_minis():
    data = {"train": digits_like(60, 6, 0), "test": digits_like(30, 6, 1)}
    exp = class_incremental_benchmark(data, class_order=[0, 1, 2, 3, 4, 5], num_experiences=2).train_stream[1]
    minis = list(FixedSizeExperienceSplitter(exp, 7, seed=0))
    assert [len(m.dataset) for m in minis] == [7, 7, 7, 7, 2]
    assert sorted(torch.cat([m.dataset.ids for m in minis]).tolist()) == sorted(exp.dataset.ids.tolist())
    assert [len(m.dataset) for m in FixedSizeExperienceSplitter(exp, 7, drop_last=True)] == [7, 7, 7, 7]
