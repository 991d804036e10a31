"""The data sources: each module of this package reads one kind of files into a stream
(arrays, folder, tinyimagenet, core50, torchvision_any). This module loads the built-in ones
(the embedded digits; MNIST, Fashion-MNIST, CIFAR-10/100 and SVHN in torchvision's on-disk
layout under `root`) once into a train and a test `Pool` of uint8 images.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

from replaycli.data.pool import Pool
from replaycli.data.transforms import CropFlip
from replaycli.errors import ConfigError, first_line

# folder under root, the files torchvision reads there, (mean, std) per channel
_LAYOUT = {
    "mnist": (
        "MNIST/raw",
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"],
    ),
    "fmnist": (
        "FashionMNIST/raw",
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"],
    ),
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]),
    "cifar100": ("cifar-100-python", ["train", "test"]),
}
_STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "fmnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
SOURCES = ("digits", "svhn", *_LAYOUT)
DEFAULT_ROOT = Path("~/.cache/replaycli/data")


def expected_files(source: str, root: str | Path) -> list[Path]:
    folder, files = _LAYOUT[source]
    return [Path(root) / folder / f for f in files]


def load_source(source: str, root: str | Path | None, download: bool) -> tuple[Pool, Pool]:
    """Train and test pools of `source` (one of SOURCES)."""
    if source == "digits":
        return _digits()
    if source == "svhn":
        root = Path(DEFAULT_ROOT if root is None else root).expanduser()
        try:
            return _svhn(root, download)
        except Exception as e:  # noqa: BLE001 (torchvision: missing files, failed download, unreadable .mat)
            raise ConfigError(
                f"svhn data cannot be read under {root / 'SVHN'} ({first_line(e)[:160]}); expected "
                "train_32x32.mat and test_32x32.mat there (download=true fetches them)"
            ) from None
    if source not in _LAYOUT:
        raise ConfigError(f"unknown data source {source!r}; allowed: {', '.join(SOURCES)}")
    root = Path(DEFAULT_ROOT if root is None else root).expanduser()
    missing = [p for p in expected_files(source, root) if not p.is_file()]
    if missing and not download:
        raise _missing_error(source, root, "download is off")
    try:
        return _torchvision(source, root, download=bool(missing))
    except ConfigError:
        raise
    except Exception as e:  # torchvision: failed download, unreadable file
        if missing:
            raise _missing_error(source, root, f"download failed: {first_line(e)[:120]}") from e
        raise ConfigError(f"cannot read {source} files under {root}: {first_line(e)[:160]}") from e


def _missing_error(source: str, root: Path, why: str) -> ConfigError:
    folder, files = _LAYOUT[source]
    return ConfigError(
        f"{source} data not found under data_root={root} ({why}); expected {root / folder}/ with {', '.join(files)}"
    )


def _digits() -> tuple[Pool, Pool]:
    x_train, y_train, x_test, y_test, mean, std = _digit_tensors()
    return Pool(x_train, y_train, mean, std), Pool(x_test, y_test, mean, std)  # fresh pools: normalized() sets in place


@functools.lru_cache(maxsize=1)
def _digit_tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float, float]:
    """scikit-learn's 8x8 digits as uint8 images, split once per process (14 ms each time; the jobs
    of a sweep run in one process share them). No code writes into a pool's tensors."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.from_numpy(d.images).mul(255.0 / 16.0).round().clamp(0, 255).to(torch.uint8)[:, None]  # [N,1,8,8]
    y = torch.from_numpy(d.target).to(torch.int64)
    # a fixed stratified 80/20 split: the benchmark does not change with the run's seed
    tr, te = train_test_split(range(len(y)), test_size=0.2, random_state=0, stratify=d.target)
    tr, te = torch.tensor(sorted(tr)), torch.tensor(sorted(te))
    xf = x[tr].float() / 255.0
    return x[tr], y[tr], x[te], y[te], float(xf.mean()), float(xf.std())


def read_idx(path: Path) -> torch.Tensor:
    """A uint8 idx file (MNIST's format) as a tensor, read straight into its memory: no
    torchvision import (seconds, and ~12 MB) and no transient second copy of the file."""
    with open(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4 or head[:3] != b"\x00\x00\x08" or not 1 <= head[3] <= 3:
            raise ValueError(f"{path.name} is not a uint8 idx file (header {head.hex()})")
        shape = [int.from_bytes(f.read(4), "big") for _ in range(head[3])]
        x = torch.empty(shape, dtype=torch.uint8)
        if f.readinto(x.numpy().reshape(-1).data) != x.numel() or f.read(1):
            raise ValueError(f"{path.name} does not hold the {'x'.join(map(str, shape))} bytes its header gives")
    return x


def _torchvision(source: str, root: Path, download: bool) -> tuple[Pool, Pool]:
    if source in ("mnist", "fmnist") and not download:  # the files are there: read them ourselves
        raw = root / _LAYOUT[source][0]
        pools = []
        for split in ("train", "t10k"):
            x = read_idx(raw / f"{split}-images-idx3-ubyte")[:, None]  # [N, 1, 28, 28] uint8
            pools.append(Pool(x, read_idx(raw / f"{split}-labels-idx1-ubyte").long(), *_STATS[source]))
        return pools[0], pools[1]
    import torchvision.datasets as tvd

    if source in ("mnist", "fmnist"):
        cls = tvd.MNIST if source == "mnist" else tvd.FashionMNIST
        tr, te = (cls(str(root), train=t, download=download) for t in (True, False))
        gray = [Pool(ds.data[:, None].contiguous(), ds.targets.to(torch.int64), *_STATS[source]) for ds in (tr, te)]
        return gray[0], gray[1]
    base = tvd.CIFAR10 if source == "cifar10" else tvd.CIFAR100

    class Reader(base):  # type: ignore[misc, valid-type]
        # torchvision checks md5 sums of the official files; we check that they exist so that
        # tests can write small files in the same layout. torchvision still parses them.
        def _check_integrity(self) -> bool:
            return all(os.path.isfile(p) for p in expected_files(source, self.root))

        def _load_meta(self) -> None:
            self.classes: list[str] = []

    tr, te = (Reader(str(root), train=t, download=download) for t in (True, False))
    augment = CropFlip(padding=4, flip=True)

    def to_pool(ds) -> Pool:
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # [N, 3, 32, 32] uint8
        return Pool(x, torch.tensor(ds.targets, dtype=torch.int64), *_STATS[source], augment=augment)

    return to_pool(tr), to_pool(te)


SVHN_STATS = ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970))


def _svhn(root: Path, download: bool) -> tuple[Pool, Pool]:
    import torchvision.datasets as tvd

    folder = root / "SVHN"

    class Reader(tvd.SVHN):  # files checked for existence, not md5 (tests write small .mat files)
        def _check_integrity(self) -> bool:
            return os.path.isfile(os.path.join(self.root, self.filename))

    def to_pool(split: str) -> Pool:
        ds = Reader(str(folder), split=split, download=download)
        return Pool(
            torch.from_numpy(ds.data).contiguous(),
            torch.from_numpy(ds.labels.astype("int64")).reshape(-1),
            *SVHN_STATS,
            augment=CropFlip(padding=4, flip=False),
        )  # digits: no mirror

    return to_pool("train"), to_pool("test")
