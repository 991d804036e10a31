"""`benchmark=torchvision`: any torchvision classification data set with a train/test split, by class name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from replaycli.data.protocols import with_protocol
from replaycli.data.stream import Benchmark
from replaycli.errors import ConfigError, first_line
from replaycli.generators import split_samples
from replaycli.sources import DEFAULT_ROOT


@with_protocol
def Torchvision(
    name: str,
    n_experiences: int = 5,
    return_task_id: bool = False,
    seed: int | None = None,
    class_order: Sequence[int] | None = None,
    per_exp_classes: Mapping[int, int] | None = None,
    root: str | Path = DEFAULT_ROOT,
    download: bool = True,
) -> Benchmark:
    """`benchmark=torchvision benchmark.name=SVHN`: any torchvision classification data set with a
    train/test split, by class name, its files where torchvision keeps them under `root`
    (downloaded by torchvision when `download`, checked by torchvision's own md5 sums), split by class."""
    train, test = torchvision_samples(name, root, download)
    return split_samples(name, train, test, n_experiences, return_task_id, seed, class_order, per_exp_classes)


NOT_CLASSIFICATION = (
    "Coco",
    "VOC",
    "Kitti",
    "Cityscapes",
    "SBD",
    "WIDERFace",
    "Kinetics",
    "HMDB51",
    "UCF101",
    "Flickr",
    "SBU",
    "FlyingChairs",
    "FlyingThings3D",
    "Sintel",
    "KittiFlow",
    "HD1K",
    "Moving",
    "Middlebury",
    "CREStereo",
    "ETH3D",
    "InStereo",
    "SceneFlow",
    "Carla",
    "Falling",
    "LFW",
    "PhotoTour",
    "Omniglot",
    "CelebA",
    "OxfordIIITPet",
    "SEMEION",
)


def torchvision_samples(name: str, root: str | Path, download: bool) -> tuple[Any, Any]:
    """The train and test samples of torchvision's data set class `name` (its files where
    torchvision keeps them under `root`: MNIST/raw/, cifar-10-batches-py/, train_32x32.mat, ...):
    ConfigError when it is not a classification data set with a train/test split."""
    import inspect

    import torchvision.datasets as tvd

    from replaycli.data.inputs import Samples, as_array, images_first, labels, materialise

    cls: Any = getattr(tvd, str(name), None)
    classification = [
        n for n in sorted(tvd.__all__) if _splits(getattr(tvd, n)) and not n.startswith(NOT_CLASSIFICATION)
    ]
    if not inspect.isclass(cls) or not _splits(cls) or str(name).startswith(NOT_CLASSIFICATION):
        raise ConfigError(
            f"benchmark.name={name!r} is not a torchvision classification data set with a train/test split; "
            f"allowed: {', '.join(classification)}"
        )
    reader: Any = cls  # a torchvision data set class, checked above
    folder = Path(DEFAULT_ROOT if root is None else root).expanduser()  # torchvision's own layout under it
    made = []
    for train in (True, False):
        split = {"train": train} if "train" in _splits(cls) else {"split": "train" if train else "test"}
        try:
            ds = reader(str(folder), download=download, **split)
        except Exception as e:  # noqa: BLE001 (torchvision: missing files, failed download)
            raise ConfigError(
                f"{name} cannot be read under {folder} ({first_line(e)[:160]}); download={download}"
            ) from None
        data, targets = getattr(ds, "data", None), getattr(ds, "targets", getattr(ds, "labels", None))
        if data is not None and targets is not None and len(data) == len(targets):  # the arrays torchvision holds
            x = images_first(torch.as_tensor(as_array(data)))
            made.append(Samples(x, labels(torch.as_tensor(as_array(targets)).reshape(-1), f"{name} labels", len(x))))
        else:  # read sample by sample, once
            made.append(materialise(ds, str(name)))
    return made[0], made[1]


def _splits(cls: Any) -> tuple[str, ...]:
    import inspect

    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return ()
    return tuple(k for k in ("train", "split") if k in params)
