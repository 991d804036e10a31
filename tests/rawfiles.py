"""Write small data sets in torchvision's on-disk raw layout, so tests read them offline.

MNIST and FashionMNIST: idx files (big-endian header: magic 0x00000803 for images and
0x00000801 for labels, then one int32 per dimension, then uint8 values).
CIFAR10 and CIFAR100: pickled dicts with 'data' (uint8 [N, 3072], channel-major) and
'labels' (CIFAR10) or 'fine_labels' (CIFAR100), as torchvision's readers load them.
"""
from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def balanced_labels(n: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """`n` labels, every class equally often (up to one), in random order."""
    return rng.permutation(np.arange(n) % n_classes).astype(np.uint8)


def write_idx(path: Path, array: np.ndarray) -> None:
    """A uint8 array of 1 to 3 dimensions as an idx file."""
    assert array.dtype == np.uint8 and 1 <= array.ndim <= 3
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array).tobytes())


def write_mnist(
    root: Path,
    folder: str = "MNIST",
    n_train: int = 200,
    n_test: int = 50,
    seed: int = 0,
    train: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Random 28x28 digits (or the given `train` images and labels) under root/folder/raw.

    Returns {'train': (x [N, 28, 28], y [N]), 'test': (...)}, the arrays written.
    """
    rng = np.random.default_rng(seed)
    if train is None:
        train = (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), balanced_labels(n_train, 10, rng))
    test = (rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), balanced_labels(n_test, 10, rng))
    arrays = {"train": train, "test": test}
    for split, (x, y) in arrays.items():
        images, labels = MNIST_FILES[split]
        write_idx(Path(root) / folder / "raw" / images, x)
        write_idx(Path(root) / folder / "raw" / labels, y)
    return arrays


def _pickle(path: Path, data: np.ndarray, labels: np.ndarray, key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"data": data.reshape(len(data), -1), key: [int(v) for v in labels]}
    if key == "fine_labels":
        entry["coarse_labels"] = [int(v) // 5 for v in labels]
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)


def write_cifar10(root: Path, per_batch: int = 20, n_test: int = 30, seed: int = 0):
    """Five training batches of `per_batch` images and one test batch under cifar-10-batches-py.

    Returns {'train': (x [N, 3, 32, 32], y [N]), 'test': (...)} in file order.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    xs, ys = [], []
    for i in range(1, 6):
        x = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        y = balanced_labels(per_batch, 10, rng)
        _pickle(folder / f"data_batch_{i}", x, y, "labels")
        xs.append(x)
        ys.append(y)
    xt = rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8)
    yt = balanced_labels(n_test, 10, rng)
    _pickle(folder / "test_batch", xt, yt, "labels")
    return {"train": (np.concatenate(xs), np.concatenate(ys)), "test": (xt, yt)}


def write_cifar100(root: Path, n_train: int = 200, n_test: int = 100, seed: int = 0):
    """'train' and 'test' pickles with 'fine_labels' under cifar-100-python."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        y = balanced_labels(n, 100, rng)
        _pickle(folder / split, x, y, "fine_labels")
        arrays[split] = (x, y)
    return arrays
