"""Benchmark the core hot paths on one 60,000-sample experience (MNIST-sized).

    python bench/bench_core.py [--data /work/shared/data/mnist-5k] [--updates 7] [--epochs 3] [--threads N]

1. A `ParametricBuffer(500, groupby='class')` update from an empty buffer (target: < 50 ms on
   CPU), median of `--updates` runs.
2. One epoch of `ReplayDataLoader` batches of 100 current + 100 memory samples (the memory:
   that buffer, cycled) against `torch.utils.data.DataLoader` over a `TensorDataset` of the
   same images as normalised floats (default collation, batch 200, shuffle), measured in this
   same run; samples per second and their ratio (target: >= 20x), median of `--epochs`.

`--data` is a folder in torchvision's MNIST layout (MNIST/raw/...), e.g. the 5,000-image
subset in /work/shared/data/mnist-5k, repeated up to 60,000 images; without it, random uint8
28x28 digits of the same shape are used.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from replaycli.buffers import ParametricBuffer
from replaycli.data.dataset import StreamDataset
from replaycli.data.pool import Pool
from replaycli.loaders import ReplayDataLoader
from replaycli.sources import load_source

N, MEAN, STD = 60_000, 0.1307, 0.3081


def experience(data: Path | None, seed: int) -> tuple[StreamDataset, str]:
    """60,000 MNIST-shaped samples as one experience, and where they came from."""
    if data is not None:
        base, _ = load_source("mnist", data, download=False)
        reps = -(-N // len(base))  # ceil
        x, y = base.x.repeat(reps, 1, 1, 1)[:N], base.y.repeat(reps)[:N]
        origin = f"{data} ({len(base)} images) repeated {reps}x"
    else:
        g = torch.Generator().manual_seed(seed)
        x = torch.randint(0, 256, (N, 1, 28, 28), generator=g, dtype=torch.uint8)
        y = torch.randperm(N, generator=g) % 10
        origin = "random uint8 28x28 digits"
    return StreamDataset(Pool(x.contiguous(), y, MEAN, STD), torch.arange(N)), origin


def time_buffer_updates(exp: StreamDataset, runs: int, seed: int) -> tuple[float, ParametricBuffer]:
    """Median seconds of one ParametricBuffer(500, 'class') update from empty."""
    strategy = _Strategy(exp)
    times = []
    for i in range(runs + 1):  # the first run warms up allocators and kernels
        buf = ParametricBuffer(500, groupby="class", generator=torch.Generator().manual_seed(seed + i))
        t0 = time.perf_counter()
        buf.update(strategy)
        times.append(time.perf_counter() - t0)
    assert len(buf) == 500 and torch.equal(buf.class_histogram(10), torch.full((10,), 50))
    return statistics.median(times[1:]), buf


class _Strategy:
    def __init__(self, dataset: StreamDataset):
        self.experience = type("Experience", (), {"dataset": dataset, "current_experience": 0})()


def epoch_seconds(loader, expect_samples: int) -> float:
    t0 = time.perf_counter()
    seen = 0
    for _x, y, *_ in loader:
        seen += len(y)
    elapsed = time.perf_counter() - t0
    assert seen == expect_samples, (seen, expect_samples)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="a root with MNIST/raw (torchvision layout)")
    parser.add_argument("--updates", type=int, default=7, help="buffer updates to time (median)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each loader to time (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    exp, origin = experience(args.data, args.seed)
    print(f"data: {origin}; {len(exp)} samples; torch {torch.__version__}, {torch.get_num_threads()} threads")

    update_s, buf = time_buffer_updates(exp, args.updates, args.seed)
    print(
        f"ParametricBuffer(500, groupby='class') update of {len(exp)}: {update_s * 1e3:.1f} ms "
        f"(median of {args.updates}; target < 50 ms: {'met' if update_s < 0.05 else 'MISSED'})"
    )

    g = torch.Generator().manual_seed(args.seed)
    replay = ReplayDataLoader(
        exp, buf.buffer, oversample_small_tasks=True, batch_size=100, batch_size_mem=100, shuffle=True, generator=g
    )
    replay_s = statistics.median(epoch_seconds(replay, 2 * len(exp)) for _ in range(args.epochs))

    x, y, _ = exp.batch(torch.arange(len(exp)))  # normalised float32 [N, 1, 28, 28], as a user would hold it
    baseline = DataLoader(TensorDataset(x, y), batch_size=200, shuffle=True, generator=g)
    base_s = statistics.median(epoch_seconds(baseline, len(exp)) for _ in range(args.epochs))

    replay_rate, base_rate = 2 * len(exp) / replay_s, len(exp) / base_s
    ratio = replay_rate / base_rate
    print(f"ReplayDataLoader 100 + 100, one epoch: {replay_s:.3f} s, {replay_rate:,.0f} samples/s")
    print(f"DataLoader(TensorDataset) batch 200:   {base_s:.3f} s, {base_rate:,.0f} samples/s")
    print(
        f"ratio: {ratio:.1f}x (median of {args.epochs} epochs each; target >= 20x: "
        f"{'met' if ratio >= 20 else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
