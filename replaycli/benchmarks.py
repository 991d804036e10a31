"""The named benchmarks: each a `benchmark=` option (configs/benchmark/*.yaml) and a function of
Avalanche's name. Every one takes the protocol keys `normalize` (standard | unit | none),
`validation` (a fraction held out of each experience) and `experience_size` (an online stream of
pieces that size), applied by `replaycli.generators.protocol`.

`SplitDigits` is embedded (scikit-learn's 8x8 digits) and works offline; the torchvision ones
read torchvision's files under `root`, downloading them when missing and `download` is true;
`Arrays`, `Folder`, `SplitTinyImageNet` and `CORe50` read the user's files.
"""
from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from replaycli.errors import ConfigError, flag, integer
from replaycli.generators import experience_sizes, fraction, ni_benchmark, nc_benchmark, pools, protocol
from replaycli.inputs import Samples, labels, tensor, images_first
from replaycli.pool import MappedPool, Pool
from replaycli.sources import DEFAULT_ROOT, load_source, torchvision_samples
from replaycli.stream import Benchmark, Experience, Stream, class_order, class_split
from replaycli.stream import class_order as ordering  # for the functions whose `class_order` is an argument
from replaycli.data import StreamDataset

__all__ = ["Benchmark", "Experience", "Stream", "class_order", "split_benchmark", "SplitMNIST", "SplitFMNIST",
           "SplitCIFAR10", "SplitCIFAR100", "SplitDigits", "SplitSVHN", "PermutedMNIST", "RotatedMNIST", "Arrays",
           "Folder", "Torchvision", "SplitTinyImageNet", "CORe50"]

_PROTOCOL = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=None)
             for k in ("normalize", "validation", "experience_size")]


def with_protocol(factory: Callable[..., Benchmark]) -> Callable[..., Benchmark]:
    """`factory` taking the protocol keys too (in its signature, so `replay run` checks them)."""
    @functools.wraps(factory)
    def make(*args: Any, normalize: str | None = None, validation: float | None = None,
             experience_size: int | None = None, **kwargs: Any) -> Benchmark:
        if validation is not None:
            fraction("validation", validation)
        if experience_size is not None:
            integer("experience_size", experience_size)
        bench = factory(*args, **kwargs)
        return protocol(bench, normalize, validation, experience_size, kwargs.get("seed"))

    sig = inspect.signature(factory)
    make.__signature__ = sig.replace(parameters=[*sig.parameters.values(), *_PROTOCOL])  # type: ignore[attr-defined]
    del make.__wrapped__  # the signature above is the one to read
    return make


def _order(n_classes: int, seed: int | None, fixed_class_order: Sequence[int] | None,
           class_order_: Sequence[int] | None) -> list[int]:
    if fixed_class_order is not None and class_order_ is not None:
        raise ConfigError("class_order and fixed_class_order are one setting (the CLI's and Avalanche's name); give one")
    if class_order_ is not None:
        return class_order(n_classes, seed, class_order_, "class_order")
    return class_order(n_classes, seed, fixed_class_order)


def split_benchmark(
    name: str, train_pool: Pool, test_pool: Pool, n_classes: int, n_experiences: int, return_task_id: bool = False,
    seed: int | None = None, fixed_class_order: Sequence[int] | None = None,
    per_exp_classes: Mapping[int, int] | None = None, class_names: list[str] | None = None,
) -> Benchmark:
    """Class-incremental split of `n_classes` into `n_experiences` groups of classes (equal, or as
    `per_exp_classes` says), in the order `fixed_class_order` or `seed` gives."""
    flag("return_task_id", return_task_id)
    sizes = experience_sizes(n_classes, n_experiences, per_exp_classes)
    order = class_order(n_classes, seed, fixed_class_order)
    return class_split(name, train_pool, test_pool, order, sizes, return_task_id, names=class_names)


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
    ) -> Benchmark:
        train_pool, test_pool = load_source(source, root, download)
        order = _order(n_classes, seed, fixed_class_order, class_order)
        return split_benchmark(name, train_pool, test_pool, n_classes, n_experiences, return_task_id, None, order,
                               per_exp_classes)

    make.__name__ = make.__qualname__ = name
    make.__doc__ = doc or f"{name}: {n_classes} classes of {source} split into `n_experiences` experiences."
    return with_protocol(make)


SplitMNIST = _split("SplitMNIST", "mnist", 10)
SplitFMNIST = _split("SplitFMNIST", "fmnist", 10)
SplitCIFAR10 = _split("SplitCIFAR10", "cifar10", 10)
SplitCIFAR100 = _split("SplitCIFAR100", "cifar100", 100, experiences=10)
SplitSVHN = _split("SplitSVHN", "svhn", 10)
SplitDigits = _split("SplitDigits", "digits", 10, fetch=False, doc=(
    "scikit-learn's bundled 8x8 digits (1,797 images) split by class; needs no files (`root` and `download` "
    "are accepted for a uniform signature and ignored)."))


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
    n_experiences: int = 10, return_task_id: bool = False, seed: int | None = None, root: str | Path = DEFAULT_ROOT,
    download: bool = True, source: str = "mnist",
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
    n_experiences: int = 10, return_task_id: bool = False, seed: int | None = None,
    rotations_list: Sequence[float] | None = None, root: str | Path = DEFAULT_ROOT, download: bool = True,
    source: str = "mnist",
) -> Benchmark:
    """Domain-incremental: all 10 classes in every experience, each rotated by its own angle
    (`rotations_list`, else drawn uniformly in [0, 180) from `seed`, 0 when None)."""
    flag("return_task_id", return_task_id)
    if rotations_list is not None:
        angles = [float(a) for a in rotations_list]
        if len(angles) != n_experiences:
            raise ConfigError(f"rotations_list has {len(angles)} angles for n_experiences={n_experiences}; allowed: one each")
    else:
        integer("n_experiences", n_experiences)
        g = torch.Generator().manual_seed(0 if seed is None else int(seed))
        angles = (torch.rand(n_experiences, generator=g, dtype=torch.float64) * 180).tolist()
    base_train, base_test = load_source(source, root, download)
    maps = torch.stack([rotation_map(base_train.sample_shape, a) for a in angles])
    bench = _mapped_stream("RotatedMNIST", base_train, base_test, maps, return_task_id)
    bench.rotations = angles  # type: ignore[attr-defined]
    return bench


def _split_samples(bench_name: str, train: Samples, test: Samples, n_experiences: Any, return_task_id: bool,
                   seed: int | None, class_order_: Sequence[int] | None, per_exp_classes: Any,
                   augment: Any = None, stats: Any = None) -> Benchmark:
    """A user's samples split by class (the CLI's data options)."""
    flag("return_task_id", return_task_id)
    train_pool, test_pool, names = pools(train, test, None, augment, stats)
    k = len(torch.unique(train_pool.y))
    if class_order_ is not None:  # in the data's own labels (or class names), like nc_benchmark
        original = names or [str(c) for c in range(k)]
        given = [str(c) for c in class_order_]
        if sorted(given) != sorted(original):
            raise ConfigError(f"class_order={list(class_order_)} must be a permutation of the {k} classes {original}")
        order = [original.index(c) for c in given]
    else:
        order = class_order(k, seed, None)
    sizes = experience_sizes(k, n_experiences, per_exp_classes)
    return class_split(bench_name, train_pool, test_pool, order, sizes, return_task_id, names=names)


def _by_task(name: str, train: Samples, test: Samples) -> Benchmark:
    """One experience per task label of the training samples (in label order), test likewise."""
    from replaycli.generators import dataset_benchmark

    def parts(s: Samples) -> list[Samples]:
        return [Samples(s.x[s.t == t], s.y[s.t == t], s.t[s.t == t]) for t in torch.unique(s.t).tolist()]

    return dataset_benchmark(parts(train), parts(test), name=name)


NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@with_protocol
def Arrays(path: str | Path, n_experiences: int | None = None, return_task_id: bool = False,
           seed: int | None = None, class_order: Sequence[Any] | None = None,
           per_exp_classes: Mapping[int, int] | None = None, scenario: str = "nc") -> Benchmark:
    """`benchmark=arrays path=data.npz`: `x_train, y_train, x_test, y_test` (any shape and
    dtype; integer labels, remapped to 0..K-1), optional `t_train, t_test` (task labels: one
    experience per task). Without them, `scenario=nc` splits the classes over `n_experiences`,
    `ni` deals the samples over them (all classes in each)."""
    import numpy as np

    path = Path(path).expanduser()
    try:
        npz = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ConfigError(f"path={path} does not exist; allowed: an .npz file with {', '.join(NPZ_KEYS)}") from None
    except Exception as e:  # noqa: BLE001 (numpy: not a zip, a pickle, a bad header)
        raise ConfigError(f"path={path} is not a readable .npz file ({type(e).__name__}: {e})") from None
    with npz:
        keys = set(npz.files)
        missing = [k for k in NPZ_KEYS if k not in keys]
        if missing:
            raise ConfigError(f"path={path} has no {missing[0]}; allowed: an .npz with {', '.join(NPZ_KEYS)} "
                              f"(and optional t_train, t_test); it has {', '.join(sorted(keys)) or 'nothing'}")
        if ("t_train" in keys) != ("t_test" in keys):
            raise ConfigError(f"path={path} has only one of t_train, t_test; allowed: both or neither")
        try:
            arrays = {k: npz[k] for k in keys if k in NPZ_KEYS or k in ("t_train", "t_test")}
        except ValueError as e:  # an object array (pickled)
            raise ConfigError(f"path={path}: {e}") from None
    split = []
    for part in ("train", "test"):
        x = images_first(tensor(arrays[f"x_{part}"], f"{path}: x_{part}"))
        y = labels(arrays[f"y_{part}"], f"{path}: y_{part}", len(x))
        t = labels(arrays[f"t_{part}"], f"{path}: t_{part}", len(x)) if f"t_{part}" in arrays else None
        split.append(Samples(x, y, t))
    if split[0].t is not None:
        return _by_task("Arrays", *split)
    if n_experiences is None:
        raise ConfigError(f"n_experiences=null: n_experiences is needed: {path} has no task labels (t_train, t_test)")
    if scenario == "ni":
        return ni_benchmark(split[0], split[1], n_experiences, return_task_id, seed=seed, name="Arrays")
    if scenario != "nc":
        raise ConfigError(f"scenario={scenario!r} is not allowed; allowed: nc, ni")
    return _split_samples("Arrays", split[0], split[1], n_experiences, return_task_id, seed, class_order, per_exp_classes)


def stratified(s: Samples, test_fraction: float, seed: int | None) -> tuple[Samples, Samples]:
    """`s` split into train and test samples, `test_fraction` of each class to test."""
    from replaycli.generators import held_out

    g = torch.Generator().manual_seed(0 if seed is None else int(seed))
    keep, out = held_out(StreamDataset(Pool(s.y[:, None].to(torch.uint8), s.y), torch.arange(len(s.y))),
                         test_fraction, g)
    pick = lambda ids: Samples(s.x.index_select(0, ids), s.y[ids], None, s.names)  # noqa: E731
    return pick(keep), pick(out)


@with_protocol
def Folder(root: str | Path, n_experiences: int = 1, test_fraction: float | None = None, return_task_id: bool = False,
           seed: int | None = None, class_order: Sequence[Any] | None = None,
           per_exp_classes: Mapping[int, int] | None = None, resize: Any = None,
           cache_dir: str | Path | None = None) -> Benchmark:
    """`benchmark=folder root=DIR`: `DIR/train/<class>/...` and `DIR/test/<class>/...`,
    or `DIR/<class>/...` split by `test_fraction` (stratified, drawn from `seed`); class k is the
    k-th class folder by name (class_names.json in the run directory). Images are decoded once
    into `cache_dir` and read memory-mapped."""
    from replaycli.folders import class_folder

    root = Path(root).expanduser()
    split = (root / "train").is_dir() and (root / "test").is_dir()
    if split:
        if test_fraction is not None:
            raise ConfigError(f"test_fraction={test_fraction} splits one folder, but {root} has train/ and "
                              "test/ folders; allowed: test_fraction=null")
        train = class_folder(root / "train", resize, cache_dir, "root")
        test = class_folder(root / "test", resize, cache_dir, "root")
        if train.names != test.names:
            extra = sorted(set(train.names or []) ^ set(test.names or []))
            raise ConfigError(f"{root}/train and {root}/test have different class folders ({', '.join(extra)}); "
                              "allowed: the same classes in both")
    else:
        if test_fraction is None:
            raise ConfigError(f"root={root} has no train/ and test/ folders; allowed: those, or "
                              "benchmark.test_fraction=0.2 to split its class folders")
        train, test = stratified(class_folder(root, resize, cache_dir, "root"),
                                 fraction("test_fraction", test_fraction), seed)
    return _split_samples("Folder", train, test, n_experiences, return_task_id, seed, class_order, per_exp_classes)


@with_protocol
def Torchvision(name: str, n_experiences: int = 5, return_task_id: bool = False, seed: int | None = None,
                class_order: Sequence[int] | None = None, per_exp_classes: Mapping[int, int] | None = None,
                root: str | Path = DEFAULT_ROOT, download: bool = True) -> Benchmark:
    """`benchmark=torchvision benchmark.name=SVHN`: any torchvision classification data set with a
    train/test split, by class name, its files where torchvision keeps them under `root`
    (downloaded by torchvision when `download`, checked by torchvision's own md5 sums), split by class."""
    train, test = torchvision_samples(name, root, download)
    return _split_samples(name, train, test, n_experiences, return_task_id, seed, class_order, per_exp_classes)


TINY_STATS = ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262))  # Mammoth's seq-tinyimg


@with_protocol
def SplitTinyImageNet(n_experiences: int = 10, return_task_id: bool = False, seed: int | None = None,
                      class_order: Sequence[int] | None = None, root: str | Path = DEFAULT_ROOT,
                      cache_dir: str | Path | None = None) -> Benchmark:
    """The DER paper's Seq-TinyImageNet: tiny-imagenet-200 (200 classes of 64x64 images, 500
    training and 50 validation images each; the validation set is the test set), 10 experiences
    of 20 classes, random crop and flip. Reads `root/tiny-imagenet-200/` in its official
    layout: `train/<wnid>/images/*.JPEG`, `val/images/*.JPEG`, `val/val_annotations.txt`."""
    from replaycli.folders import decode_files
    from replaycli.transforms import CropFlip

    base = Path(root).expanduser() / "tiny-imagenet-200"
    train_dir, val_dir = base / "train", base / "val"
    notes = val_dir / "val_annotations.txt"
    if not train_dir.is_dir() or not notes.is_file():
        raise ConfigError(f"tiny-imagenet-200 not found under data_root={Path(root).expanduser()}; expected {base}/train/"
                          "<wnid>/images/*.JPEG and val/val_annotations.txt (http://cs231n.stanford.edu/tiny-imagenet-200.zip)")
    wnids = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    index = {w: k for k, w in enumerate(wnids)}
    files, ys = [], []
    for w in wnids:
        found = sorted((train_dir / w / "images").glob("*.JPEG"))
        files += found
        ys += [index[w]] * len(found)
    vfiles, vys = [], []
    for n, line in enumerate(notes.read_text().splitlines(), 1):
        cells = line.split("\t")
        if len(cells) < 2 or cells[1] not in index:
            raise ConfigError(f"{notes} line {n} names no training class ({line[:60]!r})")
        vfiles.append(val_dir / "images" / cells[0])
        vys.append(index[cells[1]])
    train = decode_files(files, torch.tensor(ys), wnids, str(train_dir), None, cache_dir)
    test = decode_files(vfiles, torch.tensor(vys), wnids, str(val_dir), None, cache_dir)
    train_pool, test_pool, names = pools(train, test, "standard", CropFlip(4, True), TINY_STATS)
    order = ordering(len(wnids), seed, class_order_arg(class_order), "class_order")
    sizes = experience_sizes(len(wnids), n_experiences, None)
    flag("return_task_id", return_task_id)
    return class_split("SplitTinyImageNet", train_pool, test_pool, order, sizes, return_task_id, names=names)


def class_order_arg(value: Any) -> list[int] | None:
    return None if value is None else [int(c) for c in value]


CORE50_TRAIN, CORE50_TEST = (1, 2, 4, 5, 6, 8, 9, 11), (3, 7, 10)


@with_protocol
def CORe50(scenario: str = "ni", object_level: bool = True, n_experiences: int = 10, seed: int | None = None,
           return_task_id: bool = False, root: str | Path = DEFAULT_ROOT, resize: Any = None,
           cache_dir: str | Path | None = None) -> Benchmark:
    """CORe50 (50 objects of 10 categories, 11 sessions): `scenario=ni` one experience per training
    session (1, 2, 4, 5, 6, 8, 9, 11), every class in each; `nc` the classes split over
    `n_experiences`. Sessions 3, 7 and 10 are the test set. Classes are objects, or categories
    (object // 5) with `object_level=false`. Reads `root/core50_128x128/s<i>/o<j>/*.png`."""
    from replaycli.folders import decode_files

    flag("object_level", object_level)
    if scenario not in ("ni", "nc"):
        raise ConfigError(f"scenario={scenario!r} is not allowed; allowed: ni, nc")
    base = Path(root).expanduser() / "core50_128x128"
    if not base.is_dir():
        raise ConfigError(f"CORe50 not found under data_root={Path(root).expanduser()}; expected {base}/s1/o1/*.png "
                          "(http://bit.ly/core50-128x128)")
    found: dict[int, tuple[list[Path], list[int]]] = {}
    for s in (*CORE50_TRAIN, *CORE50_TEST):
        files, ys = [], []
        for o in range(1, 51):
            pngs = sorted((base / f"s{s}" / f"o{o}").glob("*.png"))
            files += pngs
            ys += [(o - 1) if object_level else (o - 1) // 5] * len(pngs)
        found[s] = (files, ys)
    def gather(sessions: Sequence[int]) -> tuple[list[Path], torch.Tensor]:
        return [f for s in sessions for f in found[s][0]], torch.tensor([y for s in sessions for y in found[s][1]])
    train_files, train_y = gather(CORE50_TRAIN)
    test_files, test_y = gather(CORE50_TEST)
    if not train_files or not test_files:
        raise ConfigError(f"{base} holds no training or no test session images (s{CORE50_TRAIN}, s{CORE50_TEST})")
    train = decode_files(train_files, train_y, None, str(base), resize, cache_dir)
    test = decode_files(test_files, test_y, None, str(base), resize, cache_dir)
    if scenario == "nc":
        return _split_samples("CORe50", train, test, n_experiences, return_task_id, seed, None, None)
    train_pool, test_pool, names = pools(train, test, None, None)
    sessions = torch.tensor([s for s in CORE50_TRAIN for _ in found[s][0]])
    exps = []
    for i, s in enumerate(CORE50_TRAIN):
        ids = (sessions == s).nonzero().flatten()
        task = i if return_task_id else 0
        exps.append(Experience(StreamDataset(train_pool, ids, torch.full_like(ids, task)), i,
                               torch.unique(train_pool.y[ids]).tolist(), task))
    test_exp = Experience(StreamDataset(test_pool, torch.arange(len(test_pool))), 0,
                          torch.unique(test_pool.y).tolist(), 0)
    k = int(train_pool.y.max()) + 1
    return Benchmark("CORe50", Stream("train", exps), Stream("test", [test_exp]), k, list(range(k)), train_pool,
                     test_pool, class_names=names)
