"""Decode once, read memory-mapped: images decoded from files are kept as a uint8 `.npy` named by
a content key (the files' paths, sizes and modification times, and the decoding options), and
every later run maps that file instead of decoding again. A mapped file is read page by page,
so a data set larger than RAM trains with bounded memory (`replaycli.data.pool.Pool.mapped`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import mmap
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = 1  # bump when the decoding changes: old cache files are then never read
CONFINED_TO: Path | None = None  # set by `replay resume`: a cache_dir outside this folder is read, never written


class MappedArray:
    """A `.npy` file mapped read-only: `tensor` views it without reading it; `release()` hands the
    pages read so far back to the kernel (they stay in the page cache: re-reading is cheap)."""

    def __init__(self, path: Path):
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            offset = f.tell()
            self.map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.map.madvise(mmap.MADV_RANDOM)  # batches read scattered rows: no read-ahead around each
        assert not fortran
        array = np.frombuffer(self.map, dtype=dtype, count=int(np.prod(shape)), offset=offset).reshape(shape)
        with warnings.catch_warnings():  # read-only memory: nothing in replaycli writes into a pool
            warnings.simplefilter("ignore", UserWarning)
            self.tensor = torch.from_numpy(array)

    def release(self) -> None:
        self.map.madvise(mmap.MADV_DONTNEED)


def content_key(files: Sequence[Path], options: dict[str, Any]) -> str:
    """sha256 of every file's path, size and mtime and of the decoding `options`: a changed,
    added or removed file, or another resize, is another key."""
    h = hashlib.sha256(json.dumps({"format": FORMAT, **options}, sort_keys=True).encode())
    for f in files:
        st = os.stat(f)
        h.update(f"{os.path.abspath(f)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def cached_images(
    files: Sequence[Path],
    decode: Callable[[Path], np.ndarray],
    shape: tuple[int, ...],
    cache_dir: Path,
    options: dict[str, Any],
    what: str,
) -> MappedArray | np.ndarray:
    """uint8 [N, *shape] images of `files` (decode(file) -> one [*shape] array), decoded into
    `cache_dir/<key>.npy` on the first call, mapped on every call. The file is written through
    a temporary name and renamed when whole: a killed decode leaves no cache to trust. Under
    `CONFINED_TO` (a resume) a cache_dir outside it is only read: when it has no file for these
    images, they are decoded into memory (the array is returned)."""
    cache_dir = Path(cache_dir).expanduser()
    path = cache_dir / f"{content_key(files, options)}.npy"
    expected = (len(files), *shape)
    if path.is_file():
        try:
            mapped = MappedArray(path)
            if mapped.tensor.dtype == torch.uint8 and tuple(mapped.tensor.shape) == expected:
                return mapped
        except (ValueError, OSError, AssertionError):  # truncated, or not an .npy of ours: decoded again
            pass
        path.unlink(missing_ok=True)
    if not path.is_file() and CONFINED_TO is not None and not cache_dir.resolve().is_relative_to(CONFINED_TO):
        # a received run's config names where to write: a resume writes (and removes) nothing there
        print(f"{what}: cache_dir={cache_dir} is outside the run directory; a resume writes nothing there: ", end="")
        print("decoding in memory", flush=True)
        images = np.empty(expected, dtype=np.uint8)
        decode_into(images, files, decode, what)
        return images
    if not path.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        remove_orphans(cache_dir)
        tmp = cache_dir / f".{path.name}.{os.getpid()}.tmp"
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=expected)
            reserve(tmp, cache_dir)
            decode_into(out, files, decode, what)
            out.flush()
            del out
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return MappedArray(path)


def decode_into(out: np.ndarray, files: Sequence[Path], decode: Callable[[Path], np.ndarray], what: str) -> None:
    """out[i] = decode(files[i]); a memory-mapped `out` gives its written pages back to the kernel
    as it goes (they leave the resident set once flushed)."""
    for i, f in enumerate(progress(files, f"decoding {what}", "images")):
        out[i] = decode(f)
        if i % 4096 == 4095 and isinstance(out, np.memmap):
            out.flush()
            out._mmap.madvise(mmap.MADV_DONTNEED)  # type: ignore[attr-defined]  # numpy's own mmap


def remove_orphans(cache_dir: Path) -> None:
    """The temporaries of decodes whose process is gone (killed mid-decode): `.KEY.npy.PID.tmp`."""
    for tmp in cache_dir.glob(".*.npy.*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except PermissionError:  # another user's process, alive
            pass


def reserve(tmp: Path, cache_dir: Path) -> None:
    """Give the decode's file all its blocks now: a full disk is then one error here, where a
    sparse file's pages, written through the map, would kill the process with SIGBUS."""
    from replaycli.errors import ConfigError

    size = tmp.stat().st_size
    fd = os.open(tmp, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):  # a file system that cannot reserve: sparse
            return
        raise ConfigError(
            f"cache_dir={cache_dir} has no room for the decoded images ({size / 1e9:.2f} GB: {e.strerror}); "
            "allowed: a cache_dir with room"
        ) from None
    finally:
        os.close(fd)


def progress(
    items: Sequence[Any] | Iterable[Any], title: str, unit: str, total: int | None = None, quiet_for: float = 2.0
) -> Iterator[Any]:
    """`items`, with a progress bar and its rate on stderr once it has run `quiet_for` seconds (a
    small folder decodes silently): rich on a terminal, else a line at every tenth and at the end."""
    total = len(items) if total is None else total  # type: ignore[arg-type]
    start = time.perf_counter()
    bar, task, shown = None, None, False
    step = max(total // 10, 1)
    try:
        for i, item in enumerate(items, 1):
            yield item
            seconds = time.perf_counter() - start
            if seconds < quiet_for and not shown:
                continue
            rate = f"{i / max(seconds, 1e-9):,.0f} {unit}/s"
            if sys.stderr.isatty():
                if bar is None:
                    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

                    bar = Progress(
                        TextColumn(title),
                        BarColumn(),
                        MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]}"),
                        TimeRemainingColumn(),
                        console=None,
                    )
                    bar.start()
                    task = bar.add_task(title, total=total, rate=rate)
                if task is not None and (i % 256 == 0 or i == total):
                    bar.update(task, completed=i, rate=rate)
            elif i % step == 0 or i == total or not shown:
                print(f"{title}: {i:,}/{total:,} {unit} ({rate}, {seconds:.1f} s)", file=sys.stderr, flush=True)
            shown = True
    finally:
        if bar is not None:
            bar.stop()
