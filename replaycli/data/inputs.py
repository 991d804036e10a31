"""What a user's data may be, turned into tensors once: `samples(obj)` -> `Samples(x, y, t)`.

Accepted: a `(x, y)` or `(x, y, t)` tuple of torch tensors or numpy arrays of any shape and
dtype; a replaycli dataset; a folder path or a torchvision `ImageFolder` (decoded once and cached,
`replaycli.data.folders`); any map-style dataset returning `(x, y[, t])` (materialised once, with a
progress bar). uint8 images stay uint8; numpy's channel-last images ([N, H, W, C] with C in
1, 3, 4) become [N, C, H, W]; [N, H, W] uint8 images get one channel; other samples keep their
shape and dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from replaycli.errors import ConfigError


@dataclass
class Samples:
    """Samples `x` [N, ...], integer labels `y` [N] (as given: remapped later), task labels `t`
    [N] or None, class names (a folder's) or None, and the memory map `x` lives in, if any."""

    x: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor | None = None
    names: list[str] | None = None
    mapped: Any = None

    def __len__(self) -> int:
        return len(self.y)


def tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, (np.ndarray, list, tuple)):
        a = np.asarray(value)
        if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            raise ConfigError(f"{what} must be numbers; got an array of {a.dtype}")
        return torch.from_numpy(np.ascontiguousarray(a))
    raise ConfigError(f"{what} must be a tensor or an array; got {type(value).__name__}")


def labels(value: Any, what: str, n: int) -> torch.Tensor:
    """int64 [n] labels; ConfigError when they are not integers or not one per sample."""
    y = tensor(value, what)
    if y.dim() == 2 and y.shape[1] == 1:  # a column of labels, as .mat and some .npz files hold them
        y = y[:, 0]
    if y.dim() != 1:
        raise ConfigError(f"{what} must be one label per sample; got shape {list(y.shape)}")
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        bad = y[y != y.round()] if y.dtype.is_floating_point else y
        example = f" (e.g. {bad[0].item()})" if len(bad) else ""
        raise ConfigError(f"{what} must be integers; got {str(y.dtype)[6:]}{example}")
    if len(y) != n:
        raise ConfigError(f"{what} has {len(y)} labels for {n} samples; allowed: one label per sample")
    return y.to(torch.int64)


def images_first(x: torch.Tensor) -> torch.Tensor:
    """[N, H, W, C] (numpy's layout, C in 1, 3, 4) -> [N, C, H, W]; [N, H, W] uint8 -> [N, 1, H, W];
    [N] -> [N, 1]."""
    if x.dim() == 1:
        return x[:, None]
    if x.dtype == torch.uint8 and x.dim() == 3:
        return x[:, None]
    if x.dim() == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        return x.permute(0, 3, 1, 2).contiguous()
    return x


def samples(obj: Any, what: str = "data", **folder_options: Any) -> Samples:
    """`obj` (see the module's docstring) as `Samples`."""
    from replaycli.data.dataset import StreamDataset

    if isinstance(obj, Samples):
        return obj
    if isinstance(obj, StreamDataset):
        ids = obj.ids.cpu()
        return Samples(obj.pool.raw(ids).cpu(), obj.pool.targets(ids).cpu(), obj.tasks.cpu())
    if isinstance(obj, (str, Path)):
        from replaycli.data.folders import class_folder

        return class_folder(Path(obj), **folder_options)
    if hasattr(obj, "samples") and hasattr(obj, "classes") and hasattr(obj, "root"):  # torchvision ImageFolder
        from replaycli.data.folders import decode_files

        files = [Path(p) for p, _ in obj.samples]
        return decode_files(
            files,
            torch.tensor([c for _, c in obj.samples], dtype=torch.int64),
            list(obj.classes),
            what=str(obj.root),
            **folder_options,
        )
    if isinstance(obj, (tuple, list)) and len(obj) in (2, 3) and not _is_sample(obj):
        x = images_first(tensor(obj[0], f"{what} x"))
        y = labels(obj[1], f"{what} y", len(x))
        t = labels(obj[2], f"{what} t", len(x)) if len(obj) == 3 else None
        return Samples(x, y, t)
    if hasattr(obj, "__len__") and hasattr(obj, "__getitem__"):
        return materialise(obj, what)
    raise ConfigError(
        f"{what}: a {type(obj).__name__} is not data; allowed: (x, y[, t]) tensors or arrays, a dataset "
        "returning (x, y[, t]), a folder of class folders"
    )


def _is_sample(obj: Any) -> bool:
    # (x, y) of one sample, not of a data set: a scalar label
    return len(obj) >= 2 and np.ndim(obj[1]) == 0


def as_array(x: Any) -> np.ndarray:
    """One sample as an array: a PIL image as uint8 [C, H, W], a tensor or array as it is."""
    if hasattr(x, "getbands"):  # PIL
        a = np.asarray(x)
        return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def materialise(ds: Any, what: str) -> Samples:
    """A map-style dataset's samples, read once (`ds[i]` -> (x, y[, t])) into tensors."""
    from replaycli.data.cache import progress

    n = len(ds)
    if n == 0:
        raise ConfigError(f"{what} is empty; allowed: a dataset with at least one sample")
    xs, ys, ts = None, np.empty(n, dtype=np.int64), None
    for i in progress(range(n), f"reading {what}", "samples"):
        item = ds[i]
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise ConfigError(f"{what}[{i}] is a {type(item).__name__}; allowed: (x, y) or (x, y, t)")
        x = as_array(item[0])
        if xs is None:
            xs = np.empty((n, *x.shape), dtype=x.dtype)
            ts = np.empty(n, dtype=np.int64) if len(item) == 3 else None
        if x.shape != xs.shape[1:]:
            raise ConfigError(
                f"{what}[{i}] has shape {list(x.shape)}, {what}[0] {list(xs.shape[1:])}; allowed: samples of one shape"
            )
        xs[i] = x
        for value, out, name in ((item[1], ys, "label"), (item[2] if ts is not None else 0, ts, "task label")):
            if out is None:
                continue
            v = value.item() if hasattr(value, "item") else value
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ConfigError(f"{what}[{i}] has the {name} {v!r}; allowed: integers")
            out[i] = v
    x_all = torch.from_numpy(xs)
    return Samples(
        images_first(x_all) if x_all.dim() != 4 else x_all,
        torch.from_numpy(ys),
        None if ts is None else torch.from_numpy(ts),
    )
