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


def write_npz(
    path: Path,
    n_train: int = 100,
    n_test: int = 40,
    n_classes: int = 10,
    shape=(5,),
    dtype=np.float32,
    seed: int = 0,
    labels_from: int = 0,
    **extra: np.ndarray,
) -> dict[str, np.ndarray]:
    """x_train, y_train, x_test, y_test (labels `labels_from + 0..n_classes-1`, every class in both)."""
    rng = np.random.default_rng(seed)

    def x(n):
        if np.dtype(dtype) == np.uint8:
            return rng.integers(0, 256, (n, *shape)).astype(dtype)
        return rng.normal(size=(n, *shape)).astype(dtype)

    arrays = {
        "x_train": x(n_train),
        "y_train": balanced_labels(n_train, n_classes, rng).astype(np.int64) + labels_from,
        "x_test": x(n_test),
        "y_test": balanced_labels(n_test, n_classes, rng).astype(np.int64) + labels_from,
        **extra,
    }
    np.savez(path, **arrays)
    return arrays


def write_png(path: Path, array: np.ndarray, fmt: str = "PNG") -> None:
    """A uint8 [H, W] (grey) or [H, W, 3] (RGB) image file."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, fmt)


def write_image_folder(
    root: Path, classes: list[str], per_class: int, size=(8, 8), rgb: bool = True, seed: int = 0
) -> dict[str, list[np.ndarray]]:
    """root/<class>/<i>.png random images; returns each class's arrays in file-name order."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {}
    for c in classes:
        out[c] = []
        for i in range(per_class):
            a = rng.integers(0, 256, (*size, 3) if rgb else size, dtype=np.uint8)
            write_png(Path(root) / c / f"{i:03d}.png", a)
            out[c].append(a)
    return out


def write_tinyimagenet(
    root: Path, n_classes: int = 10, per_class: int = 2, per_val: int = 1, seed: int = 0
) -> list[str]:
    """root/tiny-imagenet-200 in its official layout, `n_classes` wnids of 64x64 JPEGs; returns the wnids."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "tiny-imagenet-200"
    wnids = [f"n{1000 + k:08d}" for k in range(n_classes)]
    notes = []
    for w in wnids:
        for i in range(per_class):
            write_png(
                base / "train" / w / "images" / f"{w}_{i}.JPEG",
                rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
                "JPEG",
            )
        for i in range(per_val):
            name = f"val_{w}_{i}.JPEG"
            write_png(base / "val" / "images" / name, rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "JPEG")
            notes.append(f"{name}\t{w}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(notes) + "\n")
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    return wnids


def write_core50(root: Path, objects: int = 2, per_session: int = 1, size: int = 16, seed: int = 0) -> None:
    """root/core50_128x128/s1..s11/o1..o<objects>/C_ss_oo_iii.png (small images: tests resize anyway)."""
    rng = np.random.default_rng(seed)
    for s in range(1, 12):
        for o in range(1, objects + 1):
            for i in range(per_session):
                write_png(
                    Path(root) / "core50_128x128" / f"s{s}" / f"o{o}" / f"C_{s:02d}_{o:02d}_{i:03d}.png",
                    rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
                )


def write_svhn(
    root: Path, n_train: int = 60, n_test: int = 30, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """root/SVHN/{train,test}_32x32.mat as the official files: X [32, 32, 3, N], y [N, 1] in 1..10 (10 is
    digit 0). Returns {'train': (x [N, 3, 32, 32], y [N] in 0..9), ...}."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        y = balanced_labels(n, 10, rng).astype(np.int64)
        (Path(root) / "SVHN").mkdir(parents=True, exist_ok=True)
        savemat(
            Path(root) / "SVHN" / f"{split}_32x32.mat",
            {"X": x.transpose(2, 3, 1, 0), "y": np.where(y == 0, 10, y).reshape(-1, 1).astype(np.uint8)},
        )
        out[split] = (x, y)
    return out
