"""Larger than RAM: a folder-derived pool trained memory-mapped against the same run from RAM.

    OMP_NUM_THREADS=1 python bench/bench_mmap.py --gb 8.5 --work /tmp/mmap-bench

1. Decode: a folder of `--images` synthetic 64x64x3 PNGs (class folders) is decoded once through
   `replaycli.data.folders.class_folder`, the first-run path: its progress bar and rate are printed.
2. Scale: the decoded images are tiled into a cache file of the same format (uint8
   [N, 3, 64, 64] .npy) of `--gb` gigabytes: what decoding a folder that large would leave.
3. Train, each side in a fresh process, alternating (mapped, RAM, mapped, RAM): the same
   stream (`nc_benchmark`, 10 experiences, x/255), the same MLP, ReplayDataLoader batches of 32
   current + 32 memory samples (a reservoir of 2,000), `--steps` SGD steps on experience 0 and
   as many on the last experience (ids spread over the whole file). Mapped: the pool maps the
   file (`Pool.mapped`), the page cache warmed by one sequential read of the file first (the RAM
   side's 8.5 GB evict it); RAM: the file is read into memory first. Per-step time is the median
   over timed steps after warm-up; peak RSS is the process's ru_maxrss.
Prints a markdown table; the ratio mapped/RAM is the target (<= 1.3), with peak RSS < 2 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SHAPE = (3, 64, 64)


def make_folder(root: Path, n: int, classes: int = 20) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (classes, 64, 64, 3), dtype=np.uint8)
    for i in range(n):
        c = i % classes
        path = root / f"c{c:03d}" / f"{i:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        noise = rng.integers(0, 32, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(base[c] // 2 + noise).save(path)


def decode(work: Path, n: int) -> float:
    """Decode the folder (its first run: the cache is removed first); images per second."""
    import shutil

    from replaycli.data.folders import class_folder

    folder = work / "folder"
    if not folder.is_dir():
        make_folder(folder, n)
    shutil.rmtree(work / "decoded", ignore_errors=True)
    start = time.perf_counter()
    s = class_folder(folder, cache_dir=work / "decoded")
    return len(s) / (time.perf_counter() - start)


def scale(work: Path, gb: float) -> Path:
    """A [N, 3, 64, 64] uint8 .npy of `gb` GB tiled from the decoded folder, and its labels."""
    from replaycli.data.cache import MappedArray

    out = work / "large.npy"
    n = int(gb * 1e9) // int(np.prod(SHAPE))
    if out.is_file() and np.load(out, mmap_mode="r").shape[0] == n:
        return out
    src = MappedArray(next((work / "decoded").glob("*.npy"))).tensor.numpy()
    big = np.lib.format.open_memmap(out, mode="w+", dtype=np.uint8, shape=(n, *SHAPE))
    for s in range(0, n, len(src)):
        k = min(len(src), n - s)
        big[s : s + k] = src[:k]
        big.flush()
    del big
    np.save(work / "large_labels.npy", (np.arange(n) % 200).astype(np.int64))
    return out


def train(path: Path, mode: str, steps: int) -> dict:
    """One side, in this process: build the stream, train, time the steps."""
    import torch
    import torch.nn.functional as F

    from replaycli.buffers import ReservoirSamplingBuffer
    from replaycli.data.cache import MappedArray
    from replaycli.data.inputs import Samples
    from replaycli.generators import nc_benchmark
    from replaycli.loaders import ReplayDataLoader
    from replaycli.models import SimpleMLP

    torch.manual_seed(0)
    y = torch.from_numpy(np.load(path.parent / "large_labels.npy"))
    if mode == "mapped":
        m = MappedArray(path)
        train_s = Samples(m.tensor, y, mapped=m)
    else:
        train_s = Samples(torch.from_numpy(np.load(path)), y)
    test_s = Samples(train_s.x[:2000].clone(), y[:2000])  # every class in both
    bench = nc_benchmark(train_s, test_s, 10, shuffle=False, normalize="unit")
    model = SimpleMLP(bench.n_classes, input_shape=SHAPE, hidden_size=64, drop_rate=0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    buffer = ReservoirSamplingBuffer(2000)
    times = []
    for k in (0, bench.n_experiences - 1):
        exp = bench.train_stream[k]
        buffer.add(bench.train_stream[k - 1].dataset if k else exp.dataset.subset(torch.arange(0)), max(k - 1, 0))
        loader = ReplayDataLoader(
            exp.dataset.train(),
            buffer.buffer if len(buffer) else None,
            batch_size=32,
            batch_size_mem=32,
            oversample_small_tasks=True,
            shuffle=True,
        )
        it = (b for _ in iter(int, 1) for b in loader)  # epoch after epoch
        for i in range(steps):
            t0 = time.perf_counter()
            x, yb, _ = next(it)
            loss = F.cross_entropy(model(x), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i >= 20:
                times.append(time.perf_counter() - t0)
    return {
        "mode": mode,
        "step_ms": 1000 * statistics.median(times),
        "mean_ms": 1000 * statistics.mean(times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "n": len(y),
    }


def warm(path: Path) -> float:
    """Read `path` once, sequentially, into the page cache (not into this process); GB/s."""
    start, total = time.perf_counter(), 0
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(64 << 20)
        while n := f.readinto(buf):
            total += n
    return total / 1e9 / (time.perf_counter() - start)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=8.5)
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--work", type=Path, default=Path("/tmp/mmap-bench"))
    ap.add_argument("--side", choices=["mapped", "ram"])  # internal: one training side
    args = ap.parse_args()
    if args.side:
        print(json.dumps(train(args.work / "large.npy", args.side, args.steps)))
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    rate = decode(args.work, args.images)
    print(f"decode: {args.images:,} PNGs of 64x64x3 at {rate:,.0f} images/s (first run; later runs map the cache)")
    big = scale(args.work, args.gb)
    print(f"pool: {big} ({big.stat().st_size / 1e9:.2f} GB, {np.load(big, mmap_mode='r').shape[0]:,} images)")
    results = []
    for side in ("mapped", "ram", "mapped", "ram"):
        if side == "mapped":  # the RAM side's 8.5 GB evict the page cache: read the file back first, as a
            print(f"page cache warmed: {warm(big):.2f} GB/s sequential read", flush=True)  # run's first epoch would
        out = subprocess.run(
            [sys.executable, __file__, "--side", side, "--work", str(args.work), "--steps", str(args.steps)],
            check=False,
            capture_output=True,
            text=True,
            env={**os.environ},
        )
        if out.returncode:
            print(out.stderr[-2000:])
            return 1
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(results[-1], flush=True)
    by = {m: [r for r in results if r["mode"] == m] for m in ("mapped", "ram")}
    ratio = statistics.median(a["step_ms"] / b["step_ms"] for a, b in zip(by["mapped"], by["ram"], strict=True))
    print("\n| side | per-step ms (median) | peak RSS MB |\n|---|---|---|")
    for m in ("mapped", "ram"):
        print(
            f"| {m} | {statistics.median(r['step_ms'] for r in by[m]):.2f} | "
            f"{max(r['peak_rss_mb'] for r in by[m]):,.0f} |"
        )
    print(
        f"\nmapped / RAM per-step time: {ratio:.2f}x (target <= 1.3); mapped peak RSS "
        f"{max(r['peak_rss_mb'] for r in by['mapped']):,.0f} MB (target < 2,048)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
