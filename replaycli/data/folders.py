"""Image folders: `root/<class>/**/<image>` (torchvision's ImageFolder layout) decoded once into a
uint8 [N, C, H, W] cache and read back memory-mapped (`replaycli.data.cache`).

Every regular, non-hidden file under a class folder must be an image PIL can decode; all
images must have one size unless `resize=[H, W]` (or one int) resizes them; the channels are
those of the first image (1 for greyscale, else 3, RGB).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from replaycli.data.inputs import Samples
from replaycli.errors import ConfigError, integer

MAX_SIDE = 2048  # pixels a resized side may have: every image is decoded at that size into memory

DEFAULT_CACHE = Path("~/.cache/replaycli/decoded")


def class_folder(root: Path, resize: Any = None, cache_dir: Any = None, what: str = "root") -> Samples:
    """The images of `root`'s class folders (sorted by name: class k is the k-th folder)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"{what}={root} is not a directory; allowed: a folder of class folders")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ConfigError(f"{what}={root} has no class folders; allowed: {root}/<class>/<image> files")
    files, ys = [], []
    for k, c in enumerate(classes):
        found = [p for p in sorted((root / c).rglob("*")) if p.is_file() and not _hidden(p, root)]
        if not found:
            raise ConfigError(f"{what}: class folder {root / c} holds no files; allowed: at least one image per class")
        files += found
        ys += [k] * len(found)
    return decode_files(files, torch.tensor(ys, dtype=torch.int64), classes, str(root), resize, cache_dir)


def _hidden(p: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in p.relative_to(root).parts)


def size_of(resize: Any) -> tuple[int, int] | None:
    """`resize`: null, one int (a square) or [H, W] of ints >= 1."""
    if resize is None:
        return None
    values = (
        [resize]
        if isinstance(resize, int)
        else list(resize)
        if isinstance(resize, (list, tuple)) or hasattr(resize, "__iter__")
        else None
    )
    if not values or len(values) not in (1, 2):
        raise ConfigError(f"resize={resize!r} must be null, an int or [H, W] of ints >= 1")
    for v in values:
        integer("resize", v, 1, MAX_SIDE)
    return (values[0], values[-1])


def decode_files(
    files: list[Path], y: torch.Tensor, names: list[str] | None, what: str, resize: Any = None, cache_dir: Any = None
) -> Samples:
    """Decode `files` (labels `y`) once into the cache and map it; ConfigError naming the first
    file that is not an image, is corrupt, or has another size than the first (without resize)."""
    from replaycli.data.cache import cached_images

    size = size_of(resize)
    if not files:
        raise ConfigError(f"{what} holds no images")
    first = _open(files[0], None)
    mode = "L" if first.mode in ("1", "L", "I", "I;16", "F") else "RGB"
    first = first.convert(mode)
    h, w = size or (first.height, first.width)
    channels = 1 if mode == "L" else 3

    def decode(f: Path) -> np.ndarray:
        im = _open(f, size).convert(mode)
        if size is not None:
            from PIL import Image

            im = im.resize((w, h), Image.Resampling.BILINEAR)
        elif (im.height, im.width) != (h, w):
            raise ConfigError(
                f"{f} is {im.height}x{im.width}; {files[0]} is {h}x{w}; allowed: images of one size, "
                "or benchmark.resize=[H,W]"
            )
        a = np.asarray(im)
        return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)

    mapped = cached_images(
        files, decode, (channels, h, w), Path(cache_dir or DEFAULT_CACHE), {"resize": size, "mode": mode}, what
    )
    if isinstance(mapped, np.ndarray):  # decoded in memory (a resume's cache_dir outside its run)
        return Samples(torch.from_numpy(mapped), y, None, names)
    return Samples(mapped.tensor, y, None, names, mapped)


def _open(f: Path, size: Any) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(f)
        im.load()  # decode now: a truncated file fails here, with its name
        return im
    except UnidentifiedImageError:
        raise ConfigError(f"{f} is not an image (PIL cannot identify it); allowed: image files only") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ConfigError(f"{f} is a corrupt image ({e})") from None
