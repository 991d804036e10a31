"""`benchmark=folder`: a user's folder of class folders, train/ and test/ or one split by a fraction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from replaycli.data.inputs import Samples
from replaycli.data.protocols import held_out, with_protocol
from replaycli.data.stream import Benchmark
from replaycli.errors import ConfigError, fraction
from replaycli.generators import split_samples


def stratified(s: Samples, test_fraction: float, seed: int | None) -> tuple[Samples, Samples]:
    """`s` split into train and test samples, `test_fraction` of each class to test."""
    g = torch.Generator().manual_seed(0 if seed is None else int(seed))
    keep, out = held_out(s.y, test_fraction, g)
    pick = lambda ids: Samples(s.x.index_select(0, ids), s.y[ids], None, s.names)  # noqa: E731
    return pick(keep), pick(out)


@with_protocol
def Folder(
    root: str | Path,
    n_experiences: int = 1,
    test_fraction: float | None = None,
    return_task_id: bool = False,
    seed: int | None = None,
    class_order: Sequence[Any] | None = None,
    per_exp_classes: Mapping[int, int] | None = None,
    resize: Any = None,
    cache_dir: str | Path | None = None,
) -> Benchmark:
    """`benchmark=folder root=DIR`: `DIR/train/<class>/...` and `DIR/test/<class>/...`,
    or `DIR/<class>/...` split by `test_fraction` (stratified, drawn from `seed`); class k is the
    k-th class folder by name (class_names.json in the run directory). Images are decoded once
    into `cache_dir` and read memory-mapped."""
    from replaycli.data.folders import class_folder

    root = Path(root).expanduser()
    split = (root / "train").is_dir() and (root / "test").is_dir()
    if split:
        if test_fraction is not None:
            raise ConfigError(
                f"test_fraction={test_fraction} splits one folder, but {root} has train/ and "
                "test/ folders; allowed: test_fraction=null"
            )
        train = class_folder(root / "train", resize, cache_dir, "root")
        test = class_folder(root / "test", resize, cache_dir, "root")
        if train.names != test.names:
            extra = sorted(set(train.names or []) ^ set(test.names or []))
            raise ConfigError(
                f"{root}/train and {root}/test have different class folders ({', '.join(extra)}); "
                "allowed: the same classes in both"
            )
    else:
        if test_fraction is None:
            raise ConfigError(
                f"root={root} has no train/ and test/ folders; allowed: those, or "
                "benchmark.test_fraction=0.2 to split its class folders"
            )
        train, test = stratified(
            class_folder(root, resize, cache_dir, "root"), fraction("test_fraction", test_fraction), seed
        )
    return split_samples("Folder", train, test, n_experiences, return_task_id, seed, class_order, per_exp_classes)
