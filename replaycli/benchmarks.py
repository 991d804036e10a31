"""The named benchmarks: each a `benchmark=` option (configs/benchmark/*.yaml) and a function of
Avalanche's name. Every one takes the protocol keys `normalize` (standard | unit | none),
`validation` (a fraction held out of each experience) and `experience_size` (an online stream of
pieces that size), applied by `replaycli.data.protocols.protocol`.

Here: the class splits of torchvision's classic sets and the embedded `SplitDigits` (offline),
and the domain-incremental PermutedMNIST and RotatedMNIST. The streams read from a user's or a
data set's own files live in `replaycli.sources` (one module each) and are re-exported below.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from replaycli.data.dataset import StreamDataset
from replaycli.data.pool import MappedPool, Pool
from replaycli.data.protocols import with_protocol
from replaycli.data.stream import Benchmark, Experience, Stream, class_order, class_split
from replaycli.errors import ConfigError, flag, integer
from replaycli.generators import experience_sizes
from replaycli.sources import DEFAULT_ROOT, load_source

__all__ = [
    "Arrays",
    "Benchmark",
    "CORe50",
    "Experience",
    "Folder",
    "PermutedMNIST",
    "RotatedMNIST",
    "SplitCIFAR10",
    "SplitCIFAR100",
    "SplitDigits",
    "SplitFMNIST",
    "SplitMNIST",
    "SplitSVHN",
    "SplitTinyImageNet",
    "Stream",
    "Torchvision",
    "class_order",
    "split_benchmark",
]


def _order(
    n_classes: int, seed: int | None, fixed_class_order: Sequence[int] | None, class_order_: Sequence[int] | None
) -> list[int]:
    if fixed_class_order is not None and class_order_ is not None:
        raise ConfigError(
            "class_order and fixed_class_order are one setting (the CLI's and Avalanche's name); give one"
        )
    if class_order_ is not None:
        return class_order(n_classes, seed, class_order_, "class_order")
    return class_order(n_classes, seed, fixed_class_order)


def split_benchmark(
    name: str,
    train_pool: Pool,
    test_pool: Pool,
    n_classes: int,
    n_experiences: int,
    return_task_id: bool = False,
    seed: int | None = None,
    fixed_class_order: Sequence[int] | None = None,
    per_exp_classes: Mapping[int, int] | None = None,
    class_names: list[str] | None = None,
    class_ids_from_zero_in_each_exp: bool = False,
    class_ids_from_zero_from_first_exp: bool = False,
) -> Benchmark:
    """Class-incremental split of `n_classes` into `n_experiences` groups of classes (equal, or as
    `per_exp_classes` says), in the order `fixed_class_order` or `seed` gives; relabelled from
    zero in each experience or from the first, as Avalanche's flags say."""
    flag("return_task_id", return_task_id)
    if class_ids_from_zero_in_each_exp and class_ids_from_zero_from_first_exp:
        raise ConfigError("class_ids_from_zero_from_first_exp and class_ids_from_zero_in_each_exp exclude each other")
    sizes = experience_sizes(n_classes, n_experiences, per_exp_classes)
    order = class_order(n_classes, seed, fixed_class_order)
    from_zero = (
        "each_exp" if class_ids_from_zero_in_each_exp else "first_exp" if class_ids_from_zero_from_first_exp else None
    )
    return class_split(name, train_pool, test_pool, order, sizes, return_task_id, from_zero, class_names)


def _split(name: str, source: str, n_classes: int, experiences: int = 5, fetch: bool = True, doc: str = ""):
    def make(
        n_experiences: int = experiences,
        return_task_id: bool = False,
        seed: int | None = None,
        fixed_class_order: Sequence[int] | None = None,
        root: str | Path | None = DEFAULT_ROOT,
        download: bool = fetch,
        class_order: Sequence[int] | None = None,
        per_exp_classes: Mapping[int, int] | None = None,
        class_ids_from_zero_in_each_exp: bool = False,
        class_ids_from_zero_from_first_exp: bool = False,
    ) -> Benchmark:
        train_pool, test_pool = load_source(source, root, download)
        order = _order(n_classes, seed, fixed_class_order, class_order)
        return split_benchmark(
            name,
            train_pool,
            test_pool,
            n_classes,
            n_experiences,
            return_task_id,
            None,
            order,
            per_exp_classes,
            None,
            class_ids_from_zero_in_each_exp,
            class_ids_from_zero_from_first_exp,
        )

    make.__name__ = make.__qualname__ = name
    make.__doc__ = doc or f"{name}: {n_classes} classes of {source} split into `n_experiences` experiences."
    return with_protocol(make)


SplitMNIST = _split("SplitMNIST", "mnist", 10)
SplitFMNIST = _split("SplitFMNIST", "fmnist", 10)
SplitCIFAR10 = _split("SplitCIFAR10", "cifar10", 10)
SplitCIFAR100 = _split("SplitCIFAR100", "cifar100", 100, experiences=10)
SplitSVHN = _split("SplitSVHN", "svhn", 10)
SplitDigits = _split(
    "SplitDigits",
    "digits",
    10,
    fetch=False,
    doc=(
        "scikit-learn's bundled 8x8 digits (1,797 images) split by class; needs no files (`root` and `download` "
        "are accepted for a uniform signature and ignored)."
    ),
)


def _mapped_stream(name: str, base_train: Pool, base_test: Pool, maps: torch.Tensor, return_task_id: bool) -> Benchmark:
    """Domain-incremental: experience e is every base image seen through pixel map e."""
    train_pool, test_pool = MappedPool(base_train, maps), MappedPool(base_test, maps)
    classes = sorted(base_train.y.unique().tolist())
    streams = []
    for kind, pool in (("train", train_pool), ("test", test_pool)):
        n = pool.n_base
        exps = []
        for i in range(len(maps)):
            ids = torch.arange(i * n, (i + 1) * n)
            task = i if return_task_id else 0
            exps.append(Experience(StreamDataset(pool, ids, torch.full_like(ids, task)), i, classes, task))
        streams.append(Stream(kind, exps))
    return Benchmark(name, streams[0], streams[1], len(classes), classes, train_pool, test_pool)


@with_protocol
def PermutedMNIST(
    n_experiences: int = 10,
    return_task_id: bool = False,
    seed: int | None = None,
    root: str | Path = DEFAULT_ROOT,
    download: bool = True,
    source: str = "mnist",
) -> Benchmark:
    """Domain-incremental: all 10 classes in every experience, each under its own pixel permutation.

    The permutations are drawn from `seed` (0 when None), so a benchmark is always reproducible.
    """
    integer("n_experiences", n_experiences)
    flag("return_task_id", return_task_id)
    base_train, base_test = load_source(source, root, download)
    g = torch.Generator().manual_seed(0 if seed is None else int(seed))
    n_pixels = base_train.x[0].numel()
    perms = torch.stack([torch.randperm(n_pixels, generator=g) for _ in range(n_experiences)])
    return _mapped_stream("PermutedMNIST", base_train, base_test, perms, return_task_id)


def rotation_map(shape: Sequence[int], degrees: float) -> torch.Tensor:
    """[C*H*W] the source pixel of each output pixel when an image is rotated by `degrees`
    counter-clockwise about its centre, nearest neighbour, -1 (black) outside the image."""
    c, h, w = shape
    a = math.radians(degrees)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    cy, cx = (h - 1) / 2, (w - 1) / 2
    # the inverse rotation of each output pixel (y grows downwards, so counter-clockwise is +a here)
    sx = math.cos(a) * (xx - cx) - math.sin(a) * (yy - cy) + cx
    sy = math.sin(a) * (xx - cx) + math.cos(a) * (yy - cy) + cy
    sx, sy = sx.round().long(), sy.round().long()
    inside = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    flat = torch.where(inside, sy * w + sx, torch.full_like(sx, -1)).flatten()  # [H*W]
    per_channel = [torch.where(flat >= 0, flat + k * h * w, flat) for k in range(c)]
    return torch.cat(per_channel)


@with_protocol
def RotatedMNIST(
    n_experiences: int = 10,
    return_task_id: bool = False,
    seed: int | None = None,
    rotations_list: Sequence[float] | None = None,
    root: str | Path = DEFAULT_ROOT,
    download: bool = True,
    source: str = "mnist",
) -> Benchmark:
    """Domain-incremental: all 10 classes in every experience, each rotated by its own angle
    (`rotations_list`, else drawn uniformly in [0, 180) from `seed`, 0 when None)."""
    flag("return_task_id", return_task_id)
    if rotations_list is not None:
        angles = [float(a) for a in rotations_list]
        if len(angles) != n_experiences:
            raise ConfigError(
                f"rotations_list has {len(angles)} angles for n_experiences={n_experiences}; allowed: one each"
            )
    else:
        integer("n_experiences", n_experiences)
        g = torch.Generator().manual_seed(0 if seed is None else int(seed))
        angles = (torch.rand(n_experiences, generator=g, dtype=torch.float64) * 180).tolist()
    base_train, base_test = load_source(source, root, download)
    maps = torch.stack([rotation_map(base_train.sample_shape, a) for a in angles])
    bench = _mapped_stream("RotatedMNIST", base_train, base_test, maps, return_task_id)
    bench.rotations = angles  # type: ignore[attr-defined]
    return bench


# the streams of replaycli.sources under their Avalanche-style names (Python users import them from here)
from replaycli.sources.arrays import Arrays  # noqa: E402
from replaycli.sources.core50 import CORe50  # noqa: E402
from replaycli.sources.folder import Folder  # noqa: E402
from replaycli.sources.tinyimagenet import SplitTinyImageNet  # noqa: E402
from replaycli.sources.torchvision_any import Torchvision  # noqa: E402
