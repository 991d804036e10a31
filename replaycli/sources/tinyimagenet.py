"""`benchmark=split_tinyimagenet`: tiny-imagenet-200 in its official folder layout (the DER
paper's Seq-TinyImageNet)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from replaycli.data.protocols import with_protocol
from replaycli.data.stream import Benchmark, class_split
from replaycli.data.stream import class_order as ordering  # `class_order` is an argument below
from replaycli.errors import ConfigError, flag
from replaycli.generators import experience_sizes, pools
from replaycli.sources import DEFAULT_ROOT

TINY_STATS = ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262))  # Mammoth's seq-tinyimg


@with_protocol
def SplitTinyImageNet(
    n_experiences: int = 10,
    return_task_id: bool = False,
    seed: int | None = None,
    class_order: Sequence[int] | None = None,
    root: str | Path = DEFAULT_ROOT,
    cache_dir: str | Path | None = None,
) -> Benchmark:
    """The DER paper's Seq-TinyImageNet: tiny-imagenet-200 (200 classes of 64x64 images, 500
    training and 50 validation images each; the validation set is the test set), 10 experiences
    of 20 classes, random crop and flip. Reads `root/tiny-imagenet-200/` in its official
    layout: `train/<wnid>/images/*.JPEG`, `val/images/*.JPEG`, `val/val_annotations.txt`."""
    from replaycli.data.folders import decode_files
    from replaycli.data.transforms import CropFlip

    base = Path(root).expanduser() / "tiny-imagenet-200"
    train_dir, val_dir = base / "train", base / "val"
    notes = val_dir / "val_annotations.txt"
    if not train_dir.is_dir() or not notes.is_file():
        raise ConfigError(
            f"tiny-imagenet-200 not found under data_root={Path(root).expanduser()}; expected {base}/train/"
            "<wnid>/images/*.JPEG and val/val_annotations.txt (http://cs231n.stanford.edu/tiny-imagenet-200.zip)"
        )
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
    (train_pool, test_pool), names = pools(train, test, "standard", CropFlip(4, True), TINY_STATS)
    order = ordering(len(wnids), seed, class_order_arg(class_order), "class_order")
    sizes = experience_sizes(len(wnids), n_experiences, None)
    flag("return_task_id", return_task_id)
    return class_split("SplitTinyImageNet", train_pool, test_pool, order, sizes, return_task_id, names=names)


def class_order_arg(value: Any) -> list[int] | None:
    return None if value is None else [int(c) for c in value]
