"""Seeds of one configuration: as one batched group, by turns in one process, as Hydra's basic
sweep and as separate processes (issue 23).

    OMP_NUM_THREADS=1 python bench/bench_batched.py --sizes 1,2,4,8,16,32 --methods er,der

For S seeds of `+experiment=<m>_seq_mnist` (the 5k MNIST files; synthetic digits of the same shape
without them) each side is one or more `replay run` processes, timed by /usr/bin/time:
process CPU (user + sys; `--clock wall` on a GPU) and peak resident memory, start-up included.
- `batched`: `-m hydra/launcher=batched hydra.launcher.batch=true seed=range(S)`, one stacked model;
- `turns`: the same launcher with `batch=false`, the members one after another in one process;
- `basic`: `-m seed=range(S)`, Hydra's basic launcher (one process, a job at a time);
- `separate`: S processes `replay run seed=i` (up to `--separate-max` seeds; beyond, the per-seed
  figure of the largest measured is used and marked `~`).
The sides alternate within each size. Every batched member's final accuracy is compared with its
basic job's: the table says how many of the S are identical to the last digit written.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import datafiles  # bench/'s own helper, beside this file


def timed(args: list[str], cwd: Path, clock: str) -> tuple[float, int]:
    """(CPU seconds, or wall seconds with --clock wall; peak KB) of `replay ARGS`."""
    out = cwd / "time.txt"
    cmd = ["/usr/bin/time", "-o", str(out), "-f", "%U %S %e %M", sys.executable, "-m", "replaycli.cli", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, check=False, cwd=cwd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{proc.stderr[-2000:]}")
    user, sys_, wall, kb = out.read_text().split()[-4:]
    return (float(wall) if clock == "wall" else float(user) + float(sys_)), int(kb)


def finals(root: Path) -> list[str]:
    with open(root / "summary.csv", newline="") as f:
        return [r["final_accuracy"] for r in csv.DictReader(f)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,2,4,8,16,32")
    ap.add_argument("--methods", default="er,der")
    ap.add_argument("--separate-max", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")  # on a GPU: wall
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_batched_"))
    data = work / "data"
    print(f"data: {datafiles.write_mnist_root(data)}; {a.clock} seconds per seed, start-up included, device={a.device}")
    print("| method | S | batched s/seed | turns | basic -m | separate | batched MB | basic MB | identical |")
    print("|---|---|---|---|---|---|---|---|---|")
    for method in a.methods.split(","):
        per_separate = None
        for s in [int(x) for x in a.sizes.split(",")]:
            common = [f"+experiment={method}_seq_mnist", f"data_root={data}", "download=false", "progress=none"]
            common.append(f"device={a.device}")
            seeds = f"seed=range(0,{s})"
            cpu, peak = {}, {}
            for side in ("batched", "basic", "turns"):
                sweep = work / f"{method}_{s}_{side}"
                launcher = {
                    "batched": ["hydra/launcher=batched", "hydra.launcher.batch=true"],
                    "turns": ["hydra/launcher=batched", "hydra.launcher.batch=false"],
                    "basic": [],
                }[side]
                cpu[side], peak[side] = timed(
                    ["run", "-m", *launcher, *common, seeds, f"hydra.sweep.dir={sweep}"], work, a.clock
                )
            if s <= a.separate_max:
                total = 0.0
                for i in range(s):
                    c, _ = timed(
                        ["run", *common, f"seed={i}", f"hydra.run.dir={work / f'{method}_{s}_sep_{i}'}"], work, a.clock
                    )
                    total += c
                per_separate, separate = total / s, f"{total / s:.2f}"
            else:
                separate = f"~{per_separate:.2f}" if per_separate else "-"
            same = sum(
                x == y
                for x, y in zip(
                    finals(work / f"{method}_{s}_batched"), finals(work / f"{method}_{s}_basic"), strict=True
                )
            )
            print(
                f"| {method} | {s} | {cpu['batched'] / s:.2f} | {cpu['turns'] / s:.2f} | {cpu['basic'] / s:.2f} | "
                f"{separate} | {peak['batched'] / 1024:.0f} | {peak['basic'] / 1024:.0f} | {same}/{s} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
