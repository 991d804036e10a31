"""What the metrics cost: a run with the default metrics, and with per-minibatch accuracy, against
the same run with no metrics (`metrics=[]`), in one process.

    python bench/bench_metrics.py                           # both parts (about 3 minutes on 2 cores)
    python bench/bench_metrics.py --reps 9 --mnist-reps 0   # split_digits only

Parts:
  digits  `replay run epochs=5` (split_digits, the default config): the worst case, about ten
          steps per epoch, so what an epoch and an evaluation add weighs the most.
  mnist   the same on split_mnist from the 5,000-image subset in /work/shared/data/mnist-5k
          (1,000 training images per experience, the 10,000 test images).
Each repetition trains the three variants one after the other, in an order that rotates, from
the same seed: what `replay run` does per experience (run_experience, then the run directory's
tables; at the end the summary with timing and resources), minus the checkpoint and the progress
display. Metrics never change what is learnt: the accuracy matrices must be identical. Time is
this process's CPU clock with one torch thread, so other processes on a shared machine move it
little. Ratios are variant / minimal within a repetition; the targets are checked on their
medians over the repetitions (the quartiles are shown).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {  # name -> extra overrides
    "minimal": ["metrics=[]"],
    "default": [],  # configs/config.yaml: accuracy, loss, timing, resources, cost; per epoch
    "minibatch accuracy": ["granularity.accuracy=minibatch"],
}
TARGETS = {"default": 1.02, "minibatch accuracy": 1.10}
WORST = {"digits": {"default": 1.04}}  # per part: split_digits' 0.7 ms steps carry the cost hook (docs/metrics.md)
BASE = ["device=cpu", "progress=none", "epochs=5"]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module("replaycli.configs", version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


class Variant:
    """One run, trained an experience at a time as `replay run` does; `seconds`: its CPU time."""

    def __init__(self, overrides: list[str], out_dir: Path):
        from replaycli.outputs.rundir import RunWriter
        from replaycli.run.build import build

        self.run, _generator = build(compose(overrides))
        self.run.on_epoch = lambda record: None  # the progress display's hook
        self.writer = RunWriter(out_dir, len(self.run.bench.test_stream), self.run.bench.n_classes)
        self.out_dir, self.seconds = out_dir, 0.0

    def train(self) -> Variant:
        from replaycli.run.loop import run_experience
        from replaycli.run.meters import run_summary

        t0 = time.process_time()
        for exp in self.run.bench.train_stream:
            record = run_experience(self.run, exp, lambda *a: None)
            self.writer.add_experience(record["accuracy"], record["histogram"], record)
            self.writer.write_tables()
        extra = run_summary(self.run.metrics, self.writer.records, self.run.device, self.out_dir)
        self.writer.write_summary({"status": "complete", **extra})
        self.seconds = time.process_time() - t0
        return self


def part(title: str, overrides: list[str], reps: int, tmp: Path) -> tuple[list[str], bool]:
    """`reps` rotating repetitions of the three variants; the table's lines and whether the targets hold."""
    names = list(VARIANTS)
    times: dict[str, list[float]] = {n: [] for n in names}
    Variant(overrides + VARIANTS["minimal"], tmp / "warm").train()  # imports, allocator, caches
    gc.collect()
    gc.freeze()  # what exists now (torch, Hydra) is never scanned again: collections stay cheap
    try:
        for rep in range(reps):
            runs = {
                n: Variant(overrides + VARIANTS[n], tmp / f"{title}-{rep}-{n}").train()
                for n in names[rep % 3 :] + names[: rep % 3]
            }
            for n in names:
                times[n].append(runs[n].seconds)
            same = all(v.writer.accuracy == runs["minimal"].writer.accuracy for v in runs.values())
            print(
                f"{title} rep {rep + 1}/{reps}: "
                + "  ".join(f"{n} {times[n][-1]:.3f}s" for n in names)
                + ("" if same else "  ACCURACY DIFFERS"),
                flush=True,
            )
            if not same:
                sys.exit("bench: the metrics changed what was learnt")
    finally:
        gc.unfreeze()
    lines = [
        f"### {title}: `replay run {' '.join(overrides)}`, {reps} repetitions",
        "",
        "| metrics | CPU s (median) | ratio to minimal: median (quartiles) | target | met |",
        "|---|---:|---:|---|---|",
    ]
    ok = True
    for n in names:
        ratios = [x / y for x, y in zip(times[n], times["minimal"], strict=True)]
        q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        med = statistics.median(ratios)
        target = WORST.get(title, {}).get(n, TARGETS.get(n))
        met = "" if target is None else "yes" if med < target else "NO"
        ok &= met != "NO"
        lines.append(
            f"| {n} (`{' '.join(VARIANTS[n]) or 'the defaults'}`) | {statistics.median(times[n]):.3f} | "
            f"{med:.4f} ({q1:.4f}-{q3:.4f}) | {'' if target is None else f'< {target:.2f}'} | {met} |"
        )
    return lines + [""], ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=30, help="repetitions of the split_digits part")
    p.add_argument("--mnist-reps", type=int, default=8, help="repetitions of the split_mnist part (0: skip it)")
    p.add_argument("--mnist-root", default="/work/shared/data/mnist-5k", help="torchvision MNIST files")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the CPU clock is the loop's own)")
    a = p.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    parts = [("digits", BASE, a.reps)]
    if a.mnist_reps > 0 and Path(a.mnist_root).is_dir():
        mnist = [*BASE, "benchmark=split_mnist", f"data_root={a.mnist_root}", "download=false"]
        parts.append(("mnist", mnist, a.mnist_reps))
    report, ok = [f"CPU time of the loop, {a.threads} torch thread(s)", ""], True
    with tempfile.TemporaryDirectory() as tmp:
        for title, overrides, reps in parts:
            lines, met = part(title, overrides, reps, Path(tmp))
            report, ok = report + lines, ok and met
    print("\n" + "\n".join(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
