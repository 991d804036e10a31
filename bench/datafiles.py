"""Bench data in torchvision's on-disk layout, written under a temporary data_root.

MNIST: ../shared/data/mnist-5k repeated (60,000 = 12 x 5,000 training digits), or synthetic
digits of the same shape when that folder is absent. CIFAR10: synthetic uint8 images (no
download). `replay run data_root=ROOT download=false` and bench/floor.py read the same files.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-5k" / "MNIST" / "raw"
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    nd = raw[3]
    shape = struct.unpack(f">{nd}I", raw[4 : 4 + 4 * nd])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * nd).reshape(shape)


def write_idx(path: Path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 | a.ndim) + struct.pack(f">{a.ndim}I", *a.shape)
    path.write_bytes(header + np.ascontiguousarray(a, dtype=np.uint8).tobytes())


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` 28x28 uint8 images: a fixed random stroke pattern per class plus noise (learnable)."""
    rng = np.random.default_rng(seed)
    templates = (rng.random((10, 28, 28)) > 0.8) * 200.0
    y = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(y)
    x = np.clip(templates[y] + rng.normal(0, 40, (n, 28, 28)), 0, 255).astype(np.uint8)
    return x, y


def mnist_base() -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str]:
    """{'train': (x, y), 'test': (x, y)} of mnist-5k, or synthetic digits of the same shape."""
    if all((SHARED_MNIST / f).is_file() for pair in _FILES.values() for f in pair):
        return {
            s: (read_idx(SHARED_MNIST / i), read_idx(SHARED_MNIST / lab)) for s, (i, lab) in _FILES.items()
        }, "mnist-5k"
    return {"train": synthetic_digits(5000, 0), "test": synthetic_digits(10000, 1)}, "synthetic digits"


def write_mnist_root(root: Path, train_repeat: int = 1, n_test: int | None = None) -> str:
    """MNIST idx files under root/MNIST/raw: the base training set repeated `train_repeat` times
    and the first `n_test` test images (all when None). Returns where the digits came from."""
    base, origin = mnist_base()
    (x, y), (xt, yt) = base["train"], base["test"]
    arrays = {"train": (np.tile(x, (train_repeat, 1, 1)), np.tile(y, train_repeat)), "test": (xt[:n_test], yt[:n_test])}
    for split, (images, labels) in _FILES.items():
        write_idx(root / "MNIST" / "raw" / images, arrays[split][0])
        write_idx(root / "MNIST" / "raw" / labels, arrays[split][1])
    return origin


def write_cifar10_root(root: Path, per_batch: int = 10000, n_test: int = 1000, seed: int = 0) -> None:
    """Synthetic CIFAR10 pickles (uint8, channel-major rows) under root/cifar-10-batches-py."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        entry = {
            "data": rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8),
            "labels": [int(v) for v in np.arange(n) % 10],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
