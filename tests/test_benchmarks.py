"""Benchmarks and the torchvision loading path, on small files written in torchvision's raw layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rawfiles import balanced_labels, write_cifar10, write_cifar100, write_mnist

from replaycli.benchmarks import PermutedMNIST, SplitCIFAR10, SplitCIFAR100, SplitDigits, SplitFMNIST, SplitMNIST
from replaycli.errors import ConfigError
from replaycli.sources import expected_files

MNIST_STATS = {"MNIST": (0.1307, 0.3081), "FashionMNIST": (0.2860, 0.3530)}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """One folder holding MNIST, FashionMNIST, CIFAR10 and CIFAR100 in torchvision's layout."""
    root = tmp_path_factory.mktemp("data")
    # pixel p of image 0 is p % 256 and of image 1 is p // 256: together they name every pixel,
    # so a permutation of the pixels can be read back from the permuted images
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (120, 28, 28), dtype=np.uint8)
    p = np.arange(28 * 28)
    x[0], x[1] = (p % 256).reshape(28, 28), (p // 256).reshape(28, 28)
    arrays = {
        "MNIST": write_mnist(root, "MNIST", n_test=40, train=(x, balanced_labels(120, 10, rng))),
        "FashionMNIST": write_mnist(root, "FashionMNIST", n_train=100, n_test=30, seed=2),
        "cifar10": write_cifar10(root, per_batch=20, n_test=30),
        "cifar100": write_cifar100(root, n_train=200, n_test=100),
    }
    return root, arrays


# --- torchvision files -----------------------------------------------------------------------
@pytest.mark.parametrize("make,folder", [(SplitMNIST, "MNIST"), (SplitFMNIST, "FashionMNIST")])
def test_mnist_files_load_into_pools(root, make, folder):
    root, arrays = root
    bench = make(5, root=root, download=False)
    for pool, split in ((bench.train_pool, "train"), (bench.test_pool, "test")):
        x, y = arrays[folder][split]
        assert pool.x.shape == (len(x), 1, 28, 28) and pool.x.dtype == torch.uint8
        assert torch.equal(pool.x[:, 0], torch.from_numpy(x))
        assert torch.equal(pool.y, torch.from_numpy(y).long())
    mean, std = MNIST_STATS[folder]
    ds = bench.train_stream[0].dataset
    xi, yi, ti = ds[3]
    raw = torch.from_numpy(arrays[folder]["train"][0][int(ds.ids[3])]).float() / 255
    assert xi.shape == (1, 28, 28) and torch.allclose(xi[0], (raw - mean) / std, atol=1e-5)
    assert yi == int(arrays[folder]["train"][1][int(ds.ids[3])]) and ti == 0


@pytest.mark.parametrize("source,folder", [("mnist", "MNIST"), ("fmnist", "FashionMNIST")])
def test_fast_idx_reader_equals_torchvisions_reader(root, source, folder):
    """A run reads present idx files without importing torchvision (start-up); torchvision's own
    MNIST/FashionMNIST classes, which also serve the download path, must read the same tensors."""
    import torchvision.datasets as tvd

    from replaycli.sources import _torchvision

    root, arrays = root
    ours = _torchvision(source, root, download=False)
    theirs = _torchvision(source, root, download=True)  # files present: torchvision reads them
    cls = tvd.MNIST if source == "mnist" else tvd.FashionMNIST
    for split, mine, tv in zip(("train", "test"), ours, theirs, strict=True):
        direct = cls(str(root), train=split == "train", download=False)
        assert torch.equal(mine.x[:, 0], direct.data) and torch.equal(mine.y, direct.targets)
        assert torch.equal(mine.x, tv.x) and torch.equal(mine.y, tv.y)
        assert torch.equal(mine.x[:, 0], torch.from_numpy(arrays[folder][split][0]))


def test_cifar10_pickles_load_channel_major(root):
    root, arrays = root
    bench = SplitCIFAR10(5, root=root, download=False)
    x, y = arrays["cifar10"]["train"]
    assert bench.train_pool.x.shape == (100, 3, 32, 32)
    assert torch.equal(bench.train_pool.x, torch.from_numpy(x))  # data_batch_1..5 in order, [C, H, W]
    assert torch.equal(bench.train_pool.y, torch.from_numpy(y).long())
    xt, _yt = arrays["cifar10"]["test"]
    assert torch.equal(bench.test_pool.x, torch.from_numpy(xt))
    assert bench.n_classes == 10 and len(bench.train_stream) == 5
    assert sum(len(e.dataset) for e in bench.train_stream) == 100


def test_cifar100_fine_labels_split_into_ten(root):
    root, arrays = root
    bench = SplitCIFAR100(root=root, download=False)
    x, y = arrays["cifar100"]["train"]
    assert torch.equal(bench.train_pool.x, torch.from_numpy(x))
    assert torch.equal(bench.train_pool.y, torch.from_numpy(y).long())
    assert bench.n_classes == 100 and bench.n_experiences == 10
    for i, exp in enumerate(bench.train_stream):
        assert exp.classes_in_this_experience == list(range(10 * i, 10 * i + 10))
        assert len(exp.dataset) == 20  # 2 of each class
    assert torch.equal(torch.bincount(bench.test_stream[9].dataset.y, minlength=100)[90:], torch.ones(10).long())


def test_augmentation_only_in_training(root):
    root, _ = root
    ds = SplitCIFAR10(5, root=root, download=False).train_stream[0].dataset
    pos = torch.arange(len(ds))
    ev = ds.eval().batch(pos)[0]
    assert torch.equal(ev, ds.eval().batch(pos)[0])  # evaluation transforms are deterministic
    tr = ds.train().batch(pos, torch.Generator().manual_seed(0))[0]
    assert tr.shape == ev.shape and not torch.equal(tr, ev)
    mnist = SplitMNIST(5, root=root, download=False).train_stream[0].dataset
    pos = torch.arange(len(mnist))
    assert torch.equal(mnist.train().batch(pos)[0], mnist.eval().batch(pos)[0])  # MNIST: no augmentation


# --- class split, order, task labels ---------------------------------------------------------
def test_split_assigns_each_class_to_one_experience(root):
    root, arrays = root
    bench = SplitMNIST(5, root=root, download=False)
    assert bench.classes_order == list(range(10)) and bench.n_experiences == 5
    for stream, split in ((bench.train_stream, "train"), (bench.test_stream, "test")):
        y = torch.from_numpy(arrays["MNIST"][split][1]).long()
        seen = []
        for i, exp in enumerate(stream):
            assert exp.current_experience == i and exp.task_label == 0
            assert exp.classes_in_this_experience == [2 * i, 2 * i + 1]
            expected = torch.isin(y, torch.tensor([2 * i, 2 * i + 1])).nonzero().flatten()
            assert torch.equal(exp.dataset.ids, expected)
            assert set(exp.dataset.targets) == {2 * i, 2 * i + 1}
            assert set(exp.dataset.targets_task_labels) == {0}
            seen.append(exp.dataset.ids)
        assert torch.equal(torch.cat(seen).sort().values, torch.arange(len(y)))


def test_return_task_id_labels_experiences(root):
    root, _ = root
    bench = SplitMNIST(5, return_task_id=True, root=root, download=False)
    for stream in (bench.train_stream, bench.test_stream):
        for i, exp in enumerate(stream):
            assert exp.task_label == i and exp.task_labels == [i]
            assert set(exp.dataset.targets_task_labels) == {i}
            assert exp.dataset[0][2] == i


def test_fixed_class_order_and_seed(root):
    root, _ = root
    order = [3, 7, 0, 9, 1, 4, 8, 2, 6, 5]
    bench = SplitMNIST(5, fixed_class_order=order, seed=123, root=root, download=False)
    assert bench.classes_order == order  # a fixed order wins over the seed
    assert [e.classes_in_this_experience for e in bench.train_stream] == [[3, 7], [0, 9], [1, 4], [2, 8], [5, 6]]
    assert set(bench.train_stream[0].dataset.targets) == {3, 7}

    a = SplitMNIST(5, seed=1, root=root, download=False)
    b = SplitMNIST(5, seed=1, root=root, download=False)
    assert a.classes_order == b.classes_order and sorted(a.classes_order) == list(range(10))
    assert all(torch.equal(x.dataset.ids, y.dataset.ids) for x, y in zip(a.train_stream, b.train_stream, strict=True))
    orders = {tuple(SplitMNIST(5, seed=s, root=root, download=False).classes_order) for s in range(4)}
    assert len(orders) > 1  # the seed changes the order

    with pytest.raises(ConfigError, match=r"fixed_class_order=\[0, 0, 1.*permutation"):
        SplitMNIST(5, fixed_class_order=[0, 0, 1, 2, 3, 4, 5, 6, 7, 8], root=root, download=False)


@pytest.mark.parametrize(
    "make,n,allowed",
    [
        (SplitMNIST, 3, "[1, 2, 5, 10]"),
        (SplitMNIST, 0, "[1, 2, 5, 10]"),
        (SplitDigits, 4, "[1, 2, 5, 10]"),
        (SplitCIFAR100, 7, "[1, 2, 4, 5, 10, 20, 25, 50, 100]"),
    ],
)
def test_n_experiences_must_divide_classes(root, make, n, allowed):
    root, _ = root
    with pytest.raises(ConfigError) as err:
        make(n, root=root, download=False)
    assert f"n_experiences={n} does not divide" in str(err.value) and f"allowed: {allowed}" in str(err.value)


# --- missing files ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make,source",
    [
        (SplitMNIST, "mnist"),
        (SplitFMNIST, "fmnist"),
        (SplitCIFAR10, "cifar10"),
        (SplitCIFAR100, "cifar100"),
        (PermutedMNIST, "mnist"),
    ],
)
def test_missing_files_without_download_name_root_and_files(tmp_path, make, source):
    with pytest.raises(ConfigError) as err:
        make(root=tmp_path, download=False)
    msg = str(err.value)
    assert f"data_root={tmp_path}" in msg and "download is off" in msg
    for path in expected_files(source, tmp_path):
        assert path.name in msg
    assert str(expected_files(source, tmp_path)[0].parent) in msg


def test_one_missing_file_is_reported(tmp_path):
    write_mnist(tmp_path, n_train=20, n_test=10)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(ConfigError, match="t10k-labels-idx1-ubyte"):
        SplitMNIST(root=tmp_path, download=False)


def test_unreadable_file_is_a_config_error(tmp_path):
    write_mnist(tmp_path, n_train=20, n_test=10)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x07junk")
    with pytest.raises(ConfigError, match=f"cannot read mnist files under {tmp_path}"):
        SplitMNIST(root=tmp_path, download=False)


# --- PermutedMNIST ---------------------------------------------------------------------------
def _read_permutation(pool, e: int) -> torch.Tensor:
    """The pixel permutation of experience `e`, read from the images of base ids 0 and 1."""
    n = pool.n_base
    img = pool.raw(torch.tensor([e * n, e * n + 1])).flatten(1).long()  # [2, 784]
    return img[0] + 256 * img[1]  # source pixel of each output pixel


def test_permuted_mnist_applies_one_fixed_permutation_per_experience(root):
    root, arrays = root
    bench = PermutedMNIST(3, seed=5, root=root, download=False)
    base = torch.from_numpy(arrays["MNIST"]["train"][0]).flatten(1)  # [N, 784]
    pool = bench.train_pool
    n = len(base)
    perms = []
    for e, exp in enumerate(bench.train_stream):
        assert torch.equal(exp.dataset.ids, torch.arange(e * n, (e + 1) * n))
        assert exp.classes_in_this_experience == list(range(10)) and exp.task_label == 0
        perm = _read_permutation(pool, e)
        assert torch.equal(perm.sort().values, torch.arange(784))  # a permutation
        x = pool.raw(exp.dataset.ids).flatten(1)
        assert torch.equal(x, base[:, perm])  # the same permutation for every image
        assert torch.equal(x.sort(1).values, base.sort(1).values)  # pixel multisets kept
        assert torch.equal(exp.dataset.y, torch.from_numpy(arrays["MNIST"]["train"][1]).long())
        perms.append(perm)
    assert not torch.equal(perms[0], perms[1]) and not torch.equal(perms[1], perms[2])
    assert not torch.equal(perms[0], torch.arange(784))
    # the test stream is seen through the same permutations
    test_base = torch.from_numpy(arrays["MNIST"]["test"][0]).flatten(1)
    for e, exp in enumerate(bench.test_stream):
        assert torch.equal(bench.test_pool.raw(exp.dataset.ids).flatten(1), test_base[:, perms[e]])


def test_permuted_mnist_seed_fixes_permutations(root):
    root, _ = root
    a = PermutedMNIST(2, seed=5, root=root, download=False)
    b = PermutedMNIST(2, seed=5, root=root, download=False)
    c = PermutedMNIST(2, seed=6, root=root, download=False)
    for e in range(2):
        assert torch.equal(_read_permutation(a.train_pool, e), _read_permutation(b.train_pool, e))
        assert not torch.equal(_read_permutation(a.train_pool, e), _read_permutation(c.train_pool, e))
    t = PermutedMNIST(4, return_task_id=True, root=root, download=False)
    assert [e.task_label for e in t.train_stream] == [0, 1, 2, 3]
    assert [set(e.dataset.targets_task_labels) for e in t.test_stream] == [{0}, {1}, {2}, {3}]
    with pytest.raises(ConfigError, match="n_experiences=0"):
        PermutedMNIST(0, root=root, download=False)


# --- SplitDigits and the dataset contract ------------------------------------------------------
def test_split_digits_is_offline_and_fixed():
    bench = SplitDigits(5, seed=3)
    assert bench.train_pool.x.shape[1:] == (1, 8, 8)
    assert len(bench.train_pool) + len(bench.test_pool) == 1797
    assert sorted(bench.classes_order) == list(range(10)) and bench.classes_order != list(range(10))
    other = SplitDigits(5, seed=4)
    assert torch.equal(other.train_pool.x, bench.train_pool.x)  # the train/test split ignores the seed
    train = torch.bincount(bench.train_pool.y, minlength=10).double()
    test = torch.bincount(bench.test_pool.y, minlength=10).double()
    assert len(bench.test_pool) == 360
    assert ((train / (train + test) - 0.8).abs() < 0.01).all()  # a stratified 80/20 split


def test_dataset_contract():
    ds = SplitDigits(5).train_stream[1].dataset
    n = len(ds)
    x, y, t = ds[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and isinstance(y, int) and isinstance(t, int)
    assert ds[-1][1] == ds.targets[n - 1] and torch.equal(ds[-1][0], ds[n - 1][0])
    with pytest.raises(IndexError):
        ds[n]
    assert ", ".join(str(e) for e in ds.targets) == ", ".join(str(v) for v in ds.y.tolist())
    assert str(ds.targets) == str(ds.y.tolist()) and ds.targets == ds.y.tolist()
    assert list(ds.targets_task_labels) == [0] * n
    sub = ds.subset([5, 2, 7])
    assert sub.targets == [ds.targets[5], ds.targets[2], ds.targets[7]]
    assert torch.equal(sub[0][0], ds[5][0])
    both = sub.concat(ds.subset([0]))
    assert len(both) == 4 and torch.equal(both.ids, torch.cat([sub.ids, ds.ids[:1]]))
    assert both.pool is ds.pool  # ids into the same pool, no copies
    assert ds.train().train_mode and not ds.train().eval().train_mode
    with pytest.raises(ValueError, match="same stream"):
        ds.concat(SplitDigits(5).train_stream[0].dataset)
