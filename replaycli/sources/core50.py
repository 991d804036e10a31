"""`benchmark=core50`: CORe50's folder layout (50 objects, 11 sessions), NI and NC scenarios."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from replaycli.data.protocols import with_protocol
from replaycli.data.stream import Benchmark
from replaycli.errors import ConfigError, choice, flag
from replaycli.generators import instances, pools, split_samples
from replaycli.sources import DEFAULT_ROOT

CORE50_TRAIN, CORE50_TEST = (1, 2, 4, 5, 6, 8, 9, 11), (3, 7, 10)


@with_protocol
def CORe50(
    scenario: str = "ni",
    object_level: bool = True,
    n_experiences: int = 10,
    seed: int | None = None,
    return_task_id: bool = False,
    root: str | Path = DEFAULT_ROOT,
    resize: Any = None,
    cache_dir: str | Path | None = None,
) -> Benchmark:
    """CORe50 (50 objects of 10 categories, 11 sessions): `scenario=ni` one experience per training
    session (1, 2, 4, 5, 6, 8, 9, 11), every class in each; `nc` the classes split over
    `n_experiences`. Sessions 3, 7 and 10 are the test set. Classes are objects, or categories
    (object // 5) with `object_level=false`. Reads `root/core50_128x128/s<i>/o<j>/*.png`."""
    from replaycli.data.folders import decode_files

    flag("object_level", object_level)
    choice("scenario", scenario, ("ni", "nc"))
    base = Path(root).expanduser() / "core50_128x128"
    if not base.is_dir():
        raise ConfigError(
            f"CORe50 not found under data_root={Path(root).expanduser()}; expected {base}/s1/o1/*.png "
            "(http://bit.ly/core50-128x128)"
        )
    found = sessions(base, object_level)
    train_files, train_y = gather(found, CORE50_TRAIN)
    test_files, test_y = gather(found, CORE50_TEST)
    if not train_files or not test_files:
        raise ConfigError(f"{base} holds no training or no test session images (s{CORE50_TRAIN}, s{CORE50_TEST})")
    train = decode_files(train_files, train_y, None, str(base), resize, cache_dir)
    test = decode_files(test_files, test_y, None, str(base), resize, cache_dir)
    if scenario == "nc":
        return split_samples("CORe50", train, test, n_experiences, return_task_id, seed, None, None)
    (train_pool, test_pool), names = pools(train, test, None, None)
    session = torch.tensor([s for s in CORE50_TRAIN for _ in found[s][0]])  # each training sample's session
    parts = [(session == s).nonzero().flatten() for s in CORE50_TRAIN]
    return instances("CORe50", train_pool, test_pool, parts, return_task_id, names)


def sessions(base: Path, object_level: bool) -> dict[int, tuple[list[Path], list[int]]]:
    """Session -> its images (by object, then file name) and their labels (object, or category)."""
    found = {}
    for s in (*CORE50_TRAIN, *CORE50_TEST):
        files, ys = [], []
        for o in range(1, 51):
            pngs = sorted((base / f"s{s}" / f"o{o}").glob("*.png"))
            files += pngs
            ys += [(o - 1) if object_level else (o - 1) // 5] * len(pngs)
        found[s] = (files, ys)
    return found


def gather(found: dict[int, tuple[list[Path], list[int]]], chosen: Sequence[int]) -> tuple[list[Path], torch.Tensor]:
    """The images and labels of the `chosen` sessions, in their order."""
    return [f for s in chosen for f in found[s][0]], torch.tensor([y for s in chosen for y in found[s][1]])
