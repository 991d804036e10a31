"""Users' own data: generators, input kinds, the validation split, online streams, normalisation,
the decode cache, Avalanche's data attributes, and the CLI's data options on files the tests write."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli
from hypothesis import given, settings
from hypothesis import strategies as st
from rawfiles import write_core50, write_image_folder, write_mnist, write_npz, write_png, write_svhn, write_tinyimagenet

from replaycli.benchmarks import CORe50, Folder, RotatedMNIST, SplitSVHN, SplitTinyImageNet, Torchvision, rotation_map
from replaycli.buffers import ReservoirSamplingBuffer
from replaycli.errors import ConfigError
from replaycli.generators import (
    benchmark_from_datasets,
    benchmark_with_validation_stream,
    dataset_benchmark,
    nc_benchmark,
    ni_benchmark,
    split_online_stream,
    tensors_benchmark,
)
from replaycli.loaders import GroupBalancedDataLoader, ReplayDataLoader, TaskBalancedDataLoader
from replaycli.models import SimpleMLP
from replaycli.run.meters import evaluate_stream
from replaycli.scenario import task_mask


def xy(n: int, n_classes: int, shape=(3,), seed: int = 0, labels=None):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % n_classes if labels is None else torch.as_tensor(labels)
    return torch.randn(n, *shape, generator=g), y


def train_one_experience(bench, exp: int = 0, steps: int = 3) -> float:
    """A few SGD steps of an MLP on experience `exp` through the replay loader; the loss."""
    model = SimpleMLP(bench.n_classes, input_shape=bench.train_pool.sample_shape, hidden_size=16, drop_rate=0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.tensor(0.0)
    for _, (x, y, _t) in zip(
        range(steps), ReplayDataLoader(bench.train_stream[exp].dataset.train(), batch_size=8), strict=False
    ):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach())


# --- generators --------------------------------------------------------------------------------
def test_nc_benchmark_splits_classes_in_the_given_order_with_task_labels():
    x, y = xy(120, 6)
    bench = nc_benchmark((x, y), xy(60, 6, seed=1), 3, task_labels=True, fixed_class_order=[5, 0, 3, 1, 4, 2])
    assert [e.classes_in_this_experience for e in bench.train_stream] == [[0, 5], [1, 3], [2, 4]]
    assert [e.task_label for e in bench.train_stream] == [0, 1, 2]
    assert bench.classes_order == [5, 0, 3, 1, 4, 2] and bench.n_classes == 6 and bench.class_names is None
    for e in bench.train_stream:  # each experience holds exactly its classes' samples, with its task label
        expected = torch.isin(y, torch.tensor(e.classes_in_this_experience)).nonzero().flatten()
        assert torch.equal(e.dataset.ids, expected)
        assert set(e.dataset.targets_task_labels) == {e.task_label}
        xb, yb, _ = e.dataset.batch(torch.arange(len(e.dataset)))
        assert torch.equal(xb, x[expected]) and torch.equal(yb, y[expected])  # float features kept as they are
    assert math.isfinite(train_one_experience(bench))


def test_nc_benchmark_seeded_order_per_exp_classes_and_relabelling():
    a = nc_benchmark(xy(100, 10), xy(50, 10), 5, seed=3)
    b = nc_benchmark(xy(100, 10), xy(50, 10), 5, seed=3)
    assert a.classes_order == b.classes_order == torch.randperm(10, generator=torch.Generator().manual_seed(3)).tolist()
    uneven = nc_benchmark(xy(100, 10), xy(50, 10), 4, shuffle=False, per_exp_classes={0: 4})
    assert [len(e.classes_in_this_experience) for e in uneven.train_stream] == [4, 2, 2, 2]
    each = nc_benchmark(
        xy(100, 10), xy(50, 10), 5, task_labels=True, shuffle=False, class_ids_from_zero_in_each_exp=True
    )
    assert each.n_classes == 2 and all(e.classes_in_this_experience == [0, 1] for e in each.train_stream)
    assert set(each.train_pool.y.tolist()) == {0, 1}
    first = nc_benchmark(
        xy(100, 10),
        xy(50, 10),
        5,
        fixed_class_order=[9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
        class_ids_from_zero_from_first_exp=True,
    )
    assert first.train_stream[0].classes_in_this_experience == [0, 1] and first.classes_order == list(range(10))
    _x, y = xy(100, 10)
    assert torch.equal(first.train_pool.y, 9 - y)  # class 9 came first: it is class 0 now
    with pytest.raises(ConfigError, match=r"n_experiences=3 does not divide the 10 classes; allowed: \[1, 2, 5, 10\]"):
        nc_benchmark(xy(100, 10), xy(50, 10), 3)
    with pytest.raises(ConfigError, match=r"per_exp_classes=\{0: 4\} leaves 6 classes for 4 experiences"):
        nc_benchmark(xy(100, 10), xy(50, 10), 5, per_exp_classes={0: 4})
    with pytest.raises(ConfigError, match=r"per_exp_classes=\{0: 4, 1: 0\} must map experiences 0..3 to >= 1 classes"):
        nc_benchmark(xy(100, 10), xy(50, 10), 4, per_exp_classes={0: 4, 1: 0})


def test_non_contiguous_labels_are_remapped_in_sorted_order():
    labels = torch.tensor([30, 10, 70, 10, 30, 70] * 5)
    bench = nc_benchmark(xy(30, 3, labels=labels), xy(30, 3, labels=labels), 3, shuffle=False)
    assert bench.class_names == ["10", "30", "70"]
    assert torch.equal(bench.train_pool.y, torch.searchsorted(torch.tensor([10, 30, 70]), labels))


def test_ni_benchmark_deals_instances_of_every_class():
    x, y = xy(90, 3)
    bench = ni_benchmark((x, y), xy(30, 3), 3, seed=1, balance_experiences=True)
    ids = torch.cat([e.dataset.ids for e in bench.train_stream])
    assert sorted(ids.tolist()) == list(range(90))  # a partition of the training set
    for e in bench.train_stream:
        assert e.classes_in_this_experience == [0, 1, 2]
        assert torch.bincount(e.dataset.y, minlength=3).tolist() == [10, 10, 10]  # balanced per class
    assert len(bench.test_stream) == 1 and len(bench.test_stream[0].dataset) == 30
    assert math.isfinite(train_one_experience(bench, 2))


def test_dataset_and_tensors_benchmarks_take_one_dataset_per_experience():
    parts = [xy(20, 2, labels=torch.tensor([0, 1] * 10) + 2 * i, seed=i) for i in range(3)]
    bench = tensors_benchmark(parts, parts, task_labels=[0, 1, 2])
    assert [e.classes_in_this_experience for e in bench.train_stream] == [[0, 1], [2, 3], [4, 5]]
    assert [e.task_label for e in bench.test_stream] == [0, 1, 2] and bench.n_tasks == 3
    assert torch.equal(bench.train_stream[1].dataset.batch(torch.arange(20))[0], parts[1][0])
    same = benchmark_from_datasets(train=parts, test=parts, valid=parts[:2])
    assert len(same.test_stream) == 3 and len(same.valid_stream) == 2
    with pytest.raises(ConfigError, match="class 2 has no test samples"):
        benchmark_from_datasets(train=parts, test=parts[:1])
    from_tasks = dataset_benchmark([(*parts[0], torch.full((20,), 4))], [(*parts[0], torch.full((20,), 4))])
    assert from_tasks.train_stream[0].task_label == 4 and from_tasks.test_stream[0].task_label == 4
    with pytest.raises(ConfigError, match=r"train\[1\] holds float32 \[4\] samples, train\[0\] float32 \[3\]"):
        dataset_benchmark([parts[0], xy(5, 2, shape=(4,))], [parts[0]])


class Digits(torch.utils.data.Dataset):
    """A user's own map-style dataset returning (PIL image, int) pairs."""

    def __init__(self, n: int, seed: int = 0):
        from PIL import Image

        rng = np.random.default_rng(seed)
        self.arrays = rng.integers(0, 256, (n, 6, 5), dtype=np.uint8)
        self.images = [Image.fromarray(a) for a in self.arrays]
        self.labels = [i % 4 for i in range(n)]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]


def test_a_map_style_dataset_and_numpy_images_are_read_once_into_uint8_pools():
    train, test = Digits(40), Digits(20, seed=1)
    bench = nc_benchmark(train, test, 2, shuffle=False)
    assert bench.train_pool.x.dtype == torch.uint8 and bench.train_pool.sample_shape == (1, 6, 5)
    assert torch.equal(bench.train_pool.x[:, 0], torch.from_numpy(train.arrays))
    # numpy's channel-last uint8 images become [N, C, H, W]
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, (30, 7, 7, 3), dtype=np.uint8)
    b2 = nc_benchmark((hwc, np.arange(30) % 3), (hwc, np.arange(30) % 3), 3)
    assert torch.equal(b2.train_pool.x, torch.from_numpy(hwc).permute(0, 3, 1, 2))
    assert math.isfinite(train_one_experience(b2))


def test_an_image_folder_input_is_decoded_and_cached(tmp_path):
    from torchvision.datasets import ImageFolder

    arrays = write_image_folder(tmp_path / "imgs", ["cat", "dog"], 3, size=(4, 6))
    folder = ImageFolder(str(tmp_path / "imgs"))
    from replaycli.data.inputs import samples

    s = samples(folder, cache_dir=tmp_path / "cache")
    assert s.names == ["cat", "dog"] and s.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert torch.equal(s.x, torch.from_numpy(np.stack(arrays["cat"] + arrays["dog"])).permute(0, 3, 1, 2))
    assert s.mapped is not None  # read from the memory-mapped cache file


# --- the validation split and online streams --------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(4, 60),
    classes=st.integers(1, 4),
    share=st.floats(0.05, 0.9),
    seed=st.integers(0, 9),
    batch=st.integers(1, 16),
)
def test_no_validation_sample_is_ever_in_a_training_batch(n, classes, share, seed, batch):
    bench = nc_benchmark(xy(n * classes, classes), xy(classes, classes), 1, shuffle=False)
    train_ids = bench.train_stream[0].dataset.ids.clone()
    benchmark_with_validation_stream(bench, share, seed)
    kept, held = bench.train_stream[0].dataset, bench.valid_stream[0].dataset
    assert sorted(kept.ids.tolist() + held.ids.tolist()) == sorted(train_ids.tolist())
    assert not set(kept.ids.tolist()) & set(held.ids.tolist())
    for c in range(classes):  # each class: round(share * n) held out, at least one, never all
        assert int((held.y == c).sum()) == min(max(1, round(share * n)), n - 1)
        assert int((kept.y == c).sum()) >= 1
    seen = torch.cat(
        [
            torch.cat([kept.ids[p] for p in [m[m >= 0]]])
            for m in ReplayDataLoader(kept.train(), batch_size=batch, shuffle=True).positions()
        ]
    )
    assert not set(seen.tolist()) & set(held.ids.tolist())
    assert not held.train_mode  # evaluated with evaluation transforms


def test_split_online_stream_cuts_each_experience_into_pieces():
    bench = nc_benchmark(xy(100, 4), xy(40, 4), 2, shuffle=False)
    online = split_online_stream(bench.train_stream, 15, seed=0)
    sizes = [len(e.dataset) for e in online]
    assert sizes == [15, 15, 15, 5, 15, 15, 15, 5]
    assert [e.origin_experience for e in online] == [0] * 4 + [1] * 4
    assert [e.current_experience for e in online] == list(range(8))
    for origin in (0, 1):
        ids = torch.cat([e.dataset.ids for e in online if e.origin_experience == origin])
        assert sorted(ids.tolist()) == bench.train_stream[origin].dataset.ids.tolist()
    plain = split_online_stream(bench.train_stream, 20, shuffle=False, drop_last=True)
    assert torch.equal(plain[0].dataset.ids, bench.train_stream[0].dataset.ids[:20])


# --- evaluation: class-IL and task-IL from one run ----------------------------------------------
def test_task_il_accuracy_masks_the_same_logits_at_evaluation():
    x, y = xy(8, 4, shape=(4,))
    bench = tensors_benchmark(
        [(x[y < 2], y[y < 2]), (x[y >= 2], y[y >= 2])],
        [(x[y < 2], y[y < 2]), (x[y >= 2], y[y >= 2])],
        task_labels=[0, 1],
    )
    model = torch.nn.Linear(4, 4)
    mask = task_mask(bench)
    assert mask.tolist() == [[True, True, False, False], [False, False, True, True]]
    out = evaluate_stream(model, bench.test_stream, 3, n_classes=4, task_il=mask)
    with torch.no_grad():  # by hand: argmax over all classes, and over the experience's two
        for e, (acc, tacc) in enumerate(zip(out["accuracy"], out["task_il_accuracy"], strict=True)):
            data = bench.test_stream[e].dataset
            xb, yb, _ = data.batch(torch.arange(len(data)))
            logits = model(xb)
            assert acc == pytest.approx(float((logits.argmax(1) == yb).float().mean()))
            assert tacc == pytest.approx(float((logits[:, 2 * e : 2 * e + 2].argmax(1) + 2 * e == yb).float().mean()))


# --- normalisation and initialisation ---------------------------------------------------------
def test_normalize_standard_unit_none():
    from replaycli.benchmarks import SplitDigits

    raw = SplitDigits().train_pool.x[:5].float()
    ids = torch.arange(5)
    std = SplitDigits()
    m, s = float(std.train_pool.mean), float(std.train_pool.std)
    assert torch.allclose(std.train_pool.images(ids), (raw / 255 - m) / s, atol=1e-5)
    assert torch.allclose(SplitDigits(normalize="unit").train_pool.images(ids), raw / 255)
    assert torch.equal(SplitDigits(normalize="none").train_pool.images(ids), raw)
    with pytest.raises(ConfigError, match="normalize=unit divides uint8 images by 255; these samples are float32"):
        nc_benchmark(xy(10, 2), xy(10, 2), 1, normalize="unit")
    floats = nc_benchmark(xy(40, 2), xy(10, 2), 1, normalize="standard")
    z = floats.train_pool.images(torch.arange(40))
    assert torch.allclose(z.mean(0), torch.zeros(3), atol=1e-5)  # per feature


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_xavier_init_is_glorot_uniform_with_zero_biases(model):
    from replaycli.models import SimpleMLP, SmallCNN

    torch.manual_seed(0)
    net = (
        SimpleMLP(10, input_shape=(1, 8, 8), hidden_size=100, hidden_layers=2, init="xavier")
        if model == "mlp"
        else SmallCNN(10, (1, 8, 8), init="xavier")
    )
    for m in net.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(m.weight)
            bound = math.sqrt(6 / (fan_in + fan_out))
            assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.9 * bound  # fills the interval
            assert torch.equal(m.bias, torch.zeros_like(m.bias))


# --- Avalanche's attributes and loaders -------------------------------------------------------
def test_targets_uniques_count_val_to_idx_and_task_set_match_numpy():
    parts = [xy(9, 3, seed=i, labels=torch.tensor([2, 0, 1, 1, 0, 2, 2, 2, 0])) for i in range(2)]
    bench = tensors_benchmark(parts, parts, task_labels=[0, 3])
    data = bench.train_stream[0].dataset.concat(bench.train_stream[1].dataset)
    y, t = data.y.numpy(), data.tasks.numpy()
    assert data.targets.uniques == set(np.unique(y).tolist())
    assert data.targets.count == {int(v): int((y == v).sum()) for v in np.unique(y)}
    assert data.targets_task_labels.val_to_idx == {int(v): np.flatnonzero(t == v).tolist() for v in np.unique(t)}
    assert sorted(data.task_set) == [0, 3] and len(data.task_set[3]) == 9
    assert set(data.task_set[3].targets_task_labels) == {3}
    buffer = ReservoirSamplingBuffer(max_size=5)
    buffer.post_adapt(None, bench.train_stream[0])
    assert len(buffer) == 5 and sum(buffer.targets.count.values()) == 5 and buffer.task_set.keys() == {0}


def test_task_balanced_loader_takes_both_avalanche_signatures_and_refuses_a_small_batch():
    parts = [xy(12, 2, seed=i) for i in range(3)]
    bench = tensors_benchmark(parts, parts, task_labels=[0, 1, 2])
    data = bench.train_stream[0].dataset.concat(bench.train_stream[1].dataset).concat(bench.train_stream[2].dataset)
    new = TaskBalancedDataLoader(data, 6, True)
    old = TaskBalancedDataLoader(data, True, batch_size=6)
    assert new.oversample and old.oversample and new.batch_size == old.batch_size == 6
    assert all(torch.bincount(t, minlength=3).tolist() == [2, 2, 2] for _, _, t in new)
    with pytest.raises(
        ValueError,
        match=r"batch_size=2 cannot give each of the 3 groups a sample per batch; "
        r"allowed: batch_size >= 3",
    ):
        TaskBalancedDataLoader(data, batch_size=2)
    with pytest.raises(ValueError, match="batch_size=2 cannot give each of the 3 groups"):
        GroupBalancedDataLoader([e.dataset for e in bench.train_stream], batch_size=2)
    with pytest.raises(ValueError, match="batch_size_mem=1 cannot give each of the 2 task groups of the memory"):
        ReplayDataLoader(
            data,
            bench.train_stream[0].dataset.concat(bench.train_stream[1].dataset),
            batch_size_mem=1,
            task_balanced_dataloader=True,
        )


def test_drop_last_drops_the_memory_part_once_it_runs_short():
    x, y = xy(20, 2)
    bench = nc_benchmark((x, y), (x, y), 1)
    data, memory = bench.train_stream[0].dataset, bench.train_stream[0].dataset.subset(torch.arange(5))
    m = ReplayDataLoader(data, memory, batch_size=4, batch_size_mem=2, drop_last=True).positions()
    mem_rows = (m[:, 4:] >= 0).sum(1).tolist()  # 5 memory samples, 2 per step: the fifth is dropped
    assert mem_rows == [2, 2, 0, 0, 0]
    keep = ReplayDataLoader(data, memory, batch_size=4, batch_size_mem=2).positions()
    assert (keep[:, 4:] >= 0).sum(1).tolist() == [2, 2, 1, 0, 0]


# --- named streams on files the tests write ---------------------------------------------------
def test_rotation_map_matches_rot90_and_identity():
    img = torch.arange(2 * 5 * 5, dtype=torch.uint8).view(1, 2, 5, 5)
    for degrees, expected in ((0, img), (90, torch.rot90(img, 1, (2, 3))), (180, torch.rot90(img, 2, (2, 3)))):
        m = rotation_map((2, 5, 5), degrees)
        assert torch.equal(img.flatten(1)[:, m].view_as(img), expected)
    assert (rotation_map((1, 28, 28), 45) == -1).any()  # corners fall outside: black


def test_rotated_mnist_rotates_every_image_of_an_experience(tmp_path):
    arrays = write_mnist(tmp_path, n_train=20, n_test=10)
    bench = RotatedMNIST(3, rotations_list=[0, 90, 180], root=tmp_path, download=False, normalize="none")
    x0 = torch.from_numpy(arrays["train"][0])[:, None].float()
    for e, k in enumerate((0, 1, 2)):
        data = bench.train_stream[e].dataset
        xb, yb, _ = data.batch(torch.arange(len(data)))
        assert torch.equal(xb, torch.rot90(x0, k, (2, 3)))
        assert torch.equal(yb, torch.from_numpy(arrays["train"][1]).long())


def test_split_svhn_reads_the_mat_files_with_label_10_as_digit_0(tmp_path):
    arrays = write_svhn(tmp_path)
    bench = SplitSVHN(root=tmp_path, download=False)
    assert torch.equal(bench.train_pool.x, torch.from_numpy(arrays["train"][0]))
    assert torch.equal(bench.train_pool.y, torch.from_numpy(arrays["train"][1]))
    assert next(e.classes_in_this_experience for e in bench.train_stream) == [0, 1]


def test_torchvision_option_reads_any_classification_set_and_refuses_others(tmp_path):
    arrays = write_mnist(tmp_path, "FashionMNIST", n_train=40, n_test=20)
    bench = Torchvision("FashionMNIST", 5, root=tmp_path, download=False)
    assert torch.equal(bench.train_pool.x[:, 0], torch.from_numpy(arrays["train"][0]))
    for bad in ("VOCSegmentation", "CocoDetection", "NotADataset", "ImageFolder"):
        with pytest.raises(ConfigError, match=f"name='{bad}' is not a torchvision classification data set"):
            Torchvision(bad, root=tmp_path, download=False)


def test_folder_with_train_and_test_and_one_folder_split_by_fraction(tmp_path):
    train = write_image_folder(tmp_path / "d" / "train", ["b", "a", "c"], 4, size=(5, 5))
    write_image_folder(tmp_path / "d" / "test", ["b", "a", "c"], 2, size=(5, 5), seed=1)
    bench = Folder(tmp_path / "d", 3, cache_dir=tmp_path / "cache")
    assert bench.class_names == ["a", "b", "c"]  # class k is the k-th folder by name
    assert torch.equal(bench.train_pool.x[:4], torch.from_numpy(np.stack(train["a"])).permute(0, 3, 1, 2))
    assert [len(e.dataset) for e in bench.train_stream] == [4, 4, 4]
    one = write_image_folder(tmp_path / "one", ["x", "y"], 10, size=(3, 3), rgb=False)
    split = Folder(tmp_path / "one", 2, test_fraction=0.3, cache_dir=tmp_path / "cache")
    assert split.train_pool.sample_shape == (1, 3, 3)
    assert [len(e.dataset) for e in split.test_stream] == [3, 3] and len(split.train_pool) == 14
    assert len(one["x"]) == 10
    resized = Folder(tmp_path / "d", 1, resize=[2, 4], cache_dir=tmp_path / "cache")
    assert resized.train_pool.sample_shape == (3, 2, 4)


def test_the_decode_cache_is_reused_and_keyed_by_content(tmp_path):
    write_image_folder(tmp_path / "d" / "x", ["p", "q"], 2, size=(4, 4))
    cache = tmp_path / "cache"
    from replaycli.data.folders import class_folder

    first = class_folder(tmp_path / "d" / "x", cache_dir=cache)
    files = sorted(cache.glob("*.npy"))
    assert len(files) == 1 and files[0].stat().st_size >= 4 * 3 * 4 * 4
    stamp = files[0].stat().st_mtime_ns
    again = class_folder(tmp_path / "d" / "x", cache_dir=cache)
    assert torch.equal(first.x, again.x) and files[0].stat().st_mtime_ns == stamp  # mapped, not decoded again
    write_png(tmp_path / "d" / "x" / "p" / "new.png", np.zeros((4, 4, 3), np.uint8))
    class_folder(tmp_path / "d" / "x", cache_dir=cache)
    assert len(list(cache.glob("*.npy"))) == 2  # a changed folder is another key
    assert not list(cache.glob(".*.tmp"))


def test_a_mapped_pool_stays_in_its_file_and_gathers_to_the_device(tmp_path):
    write_image_folder(tmp_path / "d" / "train", ["a", "b"], 3, size=(4, 4))
    write_image_folder(tmp_path / "d" / "test", ["a", "b"], 1, size=(4, 4))
    bench = Folder(tmp_path / "d", 1, cache_dir=tmp_path / "c").to("cpu")
    pool = bench.train_pool
    assert pool.mapped is not None and pool.x.data_ptr() == pool.mapped.tensor.data_ptr()  # the map itself, no copy
    assert pool.x.device.type == "cpu" and pool.device.type == "cpu"
    before = pool.x
    pool._release(1 << 28)  # releasing the pages keeps the data readable
    assert pool.x is before and torch.equal(pool.raw(torch.arange(6)), before.index_select(0, torch.arange(6)))


def test_tinyimagenet_reads_the_official_layout(tmp_path):
    wnids = write_tinyimagenet(tmp_path, n_classes=10, per_class=2, per_val=1)
    bench = SplitTinyImageNet(root=tmp_path, cache_dir=tmp_path / "c")
    assert bench.n_classes == 10 and bench.class_names == sorted(wnids) and bench.train_pool.sample_shape == (3, 64, 64)
    assert [len(e.dataset) for e in bench.train_stream] == [2] * 10 and [len(e.dataset) for e in bench.test_stream] == [
        1
    ] * 10
    assert bench.train_pool.augment is not None


@pytest.mark.parametrize("scenario", ["ni", "nc"])
def test_core50_sessions_are_experiences_and_3_7_10_the_test_set(tmp_path, scenario):
    write_core50(tmp_path, objects=2, per_session=2)
    bench = CORe50(scenario, n_experiences=2, root=tmp_path, resize=8, cache_dir=tmp_path / "c")
    assert bench.train_pool.sample_shape == (3, 8, 8)
    assert len(bench.train_pool) == 8 * 2 * 2 and len(bench.test_pool) == 3 * 2 * 2
    if scenario == "ni":
        assert len(bench.train_stream) == 8 and all(e.classes_in_this_experience == [0, 1] for e in bench.train_stream)
        assert len(bench.test_stream) == 1
        # the images are read session by session (1, 2, 4, 5, 6, 8, 9, 11), 2 objects x 2 images each
        assert [e.dataset.ids.tolist() for e in bench.train_stream] == [list(range(4 * i, 4 * i + 4)) for i in range(8)]
        tasks = CORe50(scenario, return_task_id=True, root=tmp_path, resize=8, cache_dir=tmp_path / "c")
        assert [e.dataset.tasks.tolist() for e in tasks.train_stream] == [[i] * 4 for i in range(8)]
        assert [e.task_label for e in tasks.train_stream] == list(range(8)) and tasks.test_stream[0].task_label == 0
    else:
        assert [e.classes_in_this_experience for e in bench.train_stream] == [[0], [1]]


# --- the CLI: data options, outputs and bad input ---------------------------------------------
def runs(tmp: Path) -> list[Path]:
    root = tmp / "outputs" / "runs"
    return sorted(root.iterdir()) if root.is_dir() else []


def test_cli_arrays_with_validation_task_il_side_by_side_and_class_names(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_npz(tmp_path / "d.npz", n_train=80, n_test=40, n_classes=4, labels_from=10)
    code, _out, err = cli(
        "run",
        "benchmark=arrays",
        "benchmark.path=d.npz",
        "benchmark.n_experiences=2",
        "benchmark.return_task_id=true",
        "benchmark.validation=0.25",
        "epochs=1",
        "progress=none",
        capsys=capsys,
    )
    assert code == 0, err
    run = runs(tmp_path)[0]
    assert json.loads((run / "class_names.json").read_text()) == ["10", "11", "12", "13"]
    summary = json.loads((run / "summary.json").read_text())
    rows = [line.split(",") for line in (run / "val_accuracy.csv").read_text().splitlines()]
    assert rows[0] == ["trained", "test_0", "test_1", "average"] and len(rows) == 3
    assert summary["final_val_accuracy"] == pytest.approx(float(rows[-1][-1]))
    task_rows = (run / "task_il_accuracy.csv").read_text().splitlines()
    assert summary["final_task_il_accuracy"] == pytest.approx(float(task_rows[-1].split(",")[-1]))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records[0]["val_accuracy"]) == 2 and len(records[0]["task_il_accuracy"]) == 2
    for r in records:  # task-IL picks among two classes: never below class-IL on the same logits
        assert all(t >= c for t, c in zip(r["task_il_accuracy"], r["accuracy"], strict=True))


def test_cli_folder_and_online_stream(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_image_folder(tmp_path / "imgs", ["a", "b", "c", "d"], 6, size=(6, 6))
    code, _, err = cli(
        "run",
        "benchmark=folder",
        "benchmark.root=imgs",
        "benchmark.test_fraction=0.34",
        "benchmark.n_experiences=2",
        "benchmark.experience_size=3",
        f"data_root={tmp_path}",
        "epochs=1",
        "progress=none",
        capsys=capsys,
    )
    assert code == 0, err
    run = runs(tmp_path)[0]
    acc = (run / "accuracy.csv").read_text().splitlines()
    assert len(acc) == 1 + 2 * math.ceil(8 / 3)  # 2 experiences of 8 training images, in pieces of 3
    assert json.loads((run / "class_names.json").read_text()) == ["a", "b", "c", "d"]
    assert list((tmp_path / "decoded").glob("*.npy"))


BAD = [
    (
        "npz-missing-key",
        lambda t: np.savez(t / "d.npz", x_train=np.zeros((4, 2))),
        ["benchmark=arrays", "benchmark.path=d.npz", "benchmark.n_experiences=1"],
        "benchmark.path=d.npz has no y_train; allowed: an .npz with x_train, y_train",
    ),
    (
        "npz-lengths",
        lambda t: write_npz(t / "d.npz", y_train=np.zeros(3, np.int64)),
        ["benchmark=arrays", "benchmark.path=d.npz", "benchmark.n_experiences=1"],
        "y_train has 3 labels for 100 samples",
    ),
    (
        "npz-float-labels",
        lambda t: write_npz(t / "d.npz", y_train=np.full(100, 0.5)),
        ["benchmark=arrays", "benchmark.path=d.npz", "benchmark.n_experiences=1"],
        "y_train must be integers; got float64",
    ),
    (
        "npz-no-test-class",
        lambda t: write_npz(t / "d.npz", y_test=np.zeros(40, np.int64)),
        ["benchmark=arrays", "benchmark.path=d.npz", "benchmark.n_experiences=1"],
        "class 1 has no test samples",
    ),
    (
        "npz-divide",
        lambda t: write_npz(t / "d.npz"),
        ["benchmark=arrays", "benchmark.path=d.npz", "benchmark.n_experiences=3"],
        "benchmark.n_experiences=3 does not divide the 10 classes; allowed: [1, 2, 5, 10], or per_exp_classes",
    ),
    (
        "npz-not-a-file",
        lambda t: (t / "d.npz").write_text("hello"),
        ["benchmark=arrays", "benchmark.path=d.npz", "benchmark.n_experiences=1"],
        "benchmark.path=d.npz is not a readable .npz file",
    ),
    (
        "folder-not-image",
        lambda t: (write_image_folder(t / "f", ["a", "b"], 2), (t / "f" / "a" / "notes.txt").write_text("x")),
        ["benchmark=folder", "benchmark.root=f", "benchmark.test_fraction=0.5"],
        "f/a/notes.txt is not an image",
    ),
    (
        "folder-corrupt",
        lambda t: (
            write_image_folder(t / "f", ["a", "b"], 2),
            (t / "f" / "b" / "001.png").write_bytes((t / "f" / "b" / "001.png").read_bytes()[:60]),
        ),
        ["benchmark=folder", "benchmark.root=f", "benchmark.test_fraction=0.5"],
        "f/b/001.png is a corrupt image",
    ),
    (
        "folder-sizes",
        lambda t: (
            write_image_folder(t / "f", ["a", "b"], 2),
            write_png(t / "f" / "b" / "big.png", np.zeros((9, 9, 3), np.uint8)),
        ),
        ["benchmark=folder", "benchmark.root=f", "benchmark.test_fraction=0.5"],
        "big.png is 9x9; ",
    ),
    (
        "folder-no-split",
        lambda t: write_image_folder(t / "f", ["a", "b"], 2),
        ["benchmark=folder", "benchmark.root=f"],
        "has no train/ and test/ folders; allowed: those, or benchmark.test_fraction=0.2",
    ),
    (
        "validation-range",
        lambda t: None,
        ["benchmark.validation=1.0"],
        "benchmark.validation=1.0 must be a fraction in (0, 1)",
    ),
    (
        "validation-zero",
        lambda t: None,
        ["benchmark.validation=0"],
        "benchmark.validation=0 must be a fraction in (0, 1)",
    ),
    (
        "torchvision-detection",
        lambda t: None,
        ["benchmark=torchvision", "benchmark.name=CocoDetection"],
        "benchmark.name='CocoDetection' is not a torchvision classification data set",
    ),
    ("normalize", lambda t: None, ["benchmark.normalize=zscore"], "benchmark.normalize='zscore' is not allowed"),
    (
        "init",
        lambda t: None,
        ["model.init=orthogonal"],
        "model.init='orthogonal' is not allowed; allowed: default, xavier",
    ),
    (
        "factory-fails",
        lambda t: (t / "mine.py").write_text("def make():\n    raise KeyError('label_column')\n"),
        ["benchmark=custom", "benchmark._target_=mine.make"],
        "benchmark=custom cannot be built: KeyError: 'label_column'",
    ),
    ("factory-missing", lambda t: None, ["benchmark=custom"], "benchmark._target_ is required"),
]


@pytest.mark.parametrize("name,write,args,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_data_is_one_line_exit_2_and_nothing_written(name, write, args, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [*__import__("sys").path])
    write(tmp_path)
    before = sorted(p for p in tmp_path.rglob("*") if "decoded" not in p.parts)
    code, out, err = cli("run", *args, f"data_root={tmp_path}", "epochs=1", "progress=none", capsys=capsys)
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err + out, err
    assert expected in err, err
    assert not runs(tmp_path)
    after = sorted(
        p
        for p in tmp_path.rglob("*")
        if "decoded" not in p.parts and "__pycache__" not in p.parts and "outputs" not in p.parts
    )
    assert after == before


def test_the_readmes_own_data_loop_runs_and_prints_what_it_says(capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("## Your own data", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(block, "README.md", "exec"), {})
    printed = capsys.readouterr().out.strip().splitlines()
    promised = block.strip().splitlines()[-1].removeprefix("# the last line: ")
    assert len(printed) == 5 and printed[-1] == promised


def test_forgetting_and_bwt_of_an_online_stream_count_the_last_piece_of_each_experience():
    from replaycli.outputs import formulas

    acc = [[0.5, 0.0], [0.9, 0.0], [0.7, 0.6], [0.6, 0.8]]  # pieces of experience 0, 0, 1, 1
    origins = [0, 0, 1, 1]
    assert formulas.bwt(acc, origins) == pytest.approx(0.6 - 0.9)  # final minus right after its last piece
    assert formulas.forgetting(acc, origins) == pytest.approx(0.9 - 0.6)  # best before the end minus final
    square = [[0.9, 0.1], [0.6, 0.8]]
    assert formulas.bwt(square) == pytest.approx(-0.3) and formulas.forgetting(square) == pytest.approx(0.3)
    assert formulas.bwt(square, [0, 1]) == formulas.bwt(square)


def test_a_mapped_pool_reads_ahead_and_gives_the_batches_of_the_same_pool_in_ram(tmp_path):
    from replaycli.data.transforms import CropFlip

    write_image_folder(tmp_path / "d" / "train", ["a", "b", "c"], 7, size=(6, 6))
    write_image_folder(tmp_path / "d" / "test", ["a", "b", "c"], 1, size=(6, 6), seed=1)
    mapped = Folder(tmp_path / "d", 1, cache_dir=tmp_path / "c")
    in_ram = nc_benchmark(
        (mapped.train_pool.x.clone(), mapped.train_pool.y),
        (mapped.test_pool.x.clone(), mapped.test_pool.y),
        1,
        shuffle=False,
    )
    for b in (mapped, in_ram):
        b.train_pool.augment = CropFlip(2, True)
    assert mapped.train_pool.mapped is not None and in_ram.train_pool.mapped is None
    batches = []
    for b in (mapped, in_ram):
        loader = ReplayDataLoader(
            b.train_stream[0].dataset.train(),
            b.train_stream[0].dataset.subset(torch.arange(5)),
            batch_size=4,
            batch_size_mem=3,
            shuffle=True,
            oversample_small_tasks=True,
            generator=torch.Generator().manual_seed(7),
        )
        batches.append([(x.clone(), y.clone()) for x, y, _ in loader])
    assert len(batches[0]) == len(batches[1]) == 6
    for (xa, ya), (xb, yb) in zip(*batches, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)  # same samples, same augmentation draws


def test_a_sweep_on_validation_writes_the_validation_column(tmp_path, capsys, monkeypatch):
    import csv

    monkeypatch.chdir(tmp_path)
    code, _, err = cli(
        "run",
        "-m",
        "seed=0,1",
        "benchmark.validation=0.2",
        "benchmark.n_experiences=2",
        "epochs=1",
        "progress=none",
        "model.hidden_size=16",
        capsys=capsys,
    )
    assert code == 0, err
    sweep = next((tmp_path / "outputs" / "sweeps").iterdir())
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert len(rows) == 2
    for r in rows:
        summary = json.loads((sweep / r["job"] / "summary.json").read_text())
        assert float(r["final_val_accuracy"]) == pytest.approx(summary["final_val_accuracy"])
        assert "final_task_il_accuracy" not in r  # no task labels: no such column


def test_avalanche_names_of_the_classic_splits(tmp_path):
    from replaycli.benchmarks import SplitMNIST

    write_mnist(tmp_path, n_train=50, n_test=20)
    bench = SplitMNIST(
        5, dataset_root=tmp_path, download=False, class_ids_from_zero_in_each_exp=True, return_task_id=True
    )
    assert bench.n_classes == 2 and all(e.classes_in_this_experience == [0, 1] for e in bench.train_stream)
    first = SplitMNIST(
        5,
        dataset_root=tmp_path,
        download=False,
        fixed_class_order=[9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
        class_ids_from_zero_from_first_exp=True,
    )
    assert first.train_stream[0].classes_in_this_experience == [0, 1]
    assert torch.equal(first.train_pool.y, 9 - SplitMNIST(5, root=tmp_path, download=False).train_pool.y)
    with pytest.raises(ConfigError, match="dataset_root and root are one setting"):
        SplitMNIST(5, root=tmp_path, dataset_root=tmp_path, download=False)


def finite_data(n: int = 40, features: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=g), torch.arange(n) % 4


@pytest.mark.parametrize(
    "damage, message",
    [
        ("nan-train", "the train samples hold a non-finite value (NaN or inf), e.g. sample 7"),
        ("inf-test", "the test samples hold a non-finite value (NaN or inf), e.g. sample 3"),
        ("complex", "the train samples are complex (complex64); allowed: real numbers"),
        ("no-feature", "the train samples have shape [0]: no feature; allowed: at least one"),
    ],
)
def test_data_a_model_cannot_read_is_refused_before_any_run(damage, message):
    """NaN or inf in the data failed a run midway (blaming the optimizer) or evaluated to
    nonsense; complex numbers and zero-width samples ran to completion."""
    (x, y), (xt, yt) = finite_data(), finite_data(seed=1)
    if damage == "nan-train":
        x[7, 2] = float("nan")
    elif damage == "inf-test":
        xt[3, 0] = float("inf")
    elif damage == "complex":
        x = x.to(torch.complex64)
    else:
        x, xt = x[:, :0], xt[:, :0]
    with pytest.raises(ConfigError) as err:
        nc_benchmark((x, y), (xt, yt), 2, shuffle=False)
    assert str(err.value).startswith(message), err.value


def test_test_task_labels_must_be_trained_on():
    (x, y), (xt, yt) = finite_data(), finite_data(seed=1)
    train = [(x, y, torch.zeros(40, dtype=torch.int64))]
    test = [(xt, yt, torch.full((40,), 2))]
    with pytest.raises(ConfigError, match="task label 2 has test samples but no training samples"):
        dataset_benchmark(train, test)


@pytest.mark.parametrize("model", ["cnn", "resnet18"])
def test_a_convolutional_model_on_feature_vectors_is_refused_when_built(model, tmp_path, capsys):
    x, y = finite_data(60, 6)
    np.savez(tmp_path / "features.npz", x_train=x.numpy(), y_train=y.numpy(), x_test=x.numpy(), y_test=y.numpy())
    code, _, err = cli(
        "run",
        "benchmark=arrays",
        f"benchmark.path={tmp_path / 'features.npz'}",
        "benchmark.n_experiences=2",
        f"model={model}",
        "epochs=1",
        f"hydra.run.dir={tmp_path / 'run'}",
        capsys=capsys,
    )
    assert code == 2 and f"error: model={model} convolves images [C, H, W]; these samples have shape (6,)" in err
    assert not (tmp_path / "run").exists()


def test_a_damaged_cache_entry_is_decoded_again_and_an_orphan_temporary_removed(tmp_path):
    """A cache file is trusted only when it is an .npy of uint8 of the expected shape (a truncated
    or foreign one was mapped as it was); a killed decode's temporary (its process gone) is removed."""
    import subprocess
    import sys

    from replaycli.data.folders import class_folder

    write_image_folder(tmp_path / "d" / "x", ["p", "q"], 2, size=(4, 4))
    cache = tmp_path / "cache"
    expected = class_folder(tmp_path / "d" / "x", cache_dir=cache).x.clone()  # a copy: the map is of the file
    (entry,) = cache.glob("*.npy")
    good = entry.read_bytes()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = cache / f".{entry.name}.{int(dead.stdout)}.tmp"  # the pid of a process that has ended
    orphan.write_bytes(b"\0" * 1000)
    for damage in (good[: len(good) // 2], good.replace(b"'|u1'", b"'<f4'", 1), b"not an npy at all"):
        entry.unlink()  # a new file (rewriting the mapped one in place would pull its pages from under the map)
        entry.write_bytes(damage)
        again = class_folder(tmp_path / "d" / "x", cache_dir=cache)
        assert torch.equal(again.x, expected) and entry.read_bytes() == good  # decoded anew, the same bytes
    assert not orphan.exists() and sorted(p.name for p in cache.iterdir()) == [entry.name]


def test_a_full_disk_while_decoding_is_one_error_not_a_sigbus(tmp_path, monkeypatch):
    """The decode reserves its file's blocks first: no room is an error there, where a sparse
    file's pages written through the map killed the process with SIGBUS (exit 135)."""
    import errno
    import os

    from replaycli.data.folders import class_folder

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    write_image_folder(tmp_path / "d" / "x", ["p", "q"], 2, size=(4, 4))
    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(ConfigError, match=r"cache_dir=.* has no room for the decoded images .*No space left on device"):
        class_folder(tmp_path / "d" / "x", cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir())  # its temporary removed
