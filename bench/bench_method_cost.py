"""Per-step training cost of each replay method against plain replay, in one run, alternating.

    OMP_NUM_THREADS=1 python bench/bench_method_cost.py --reps 3

split_mnist (the 5k files), buffer 200, SGD, 1 epoch per experience, batches of 32 (+ 32 from
memory). Each method's training CPU seconds (summary.json's timing.train_seconds is wall time;
here `time.process_time` around the whole run, minus its evaluation, on one torch thread) divided
by its steps; the methods run in turn, `--reps` rounds; the ratio to replay is the median over
rounds of (method / replay in the same round).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_module

from replaycli.run.runner import execute

METHODS = {  # label -> overrides (each under the protocol its paper defines)
    "replay": ["strategy=replay"],
    "DER++": ["strategy=derpp"],
    "ER-ACE (every_batch)": ["strategy=er_ace", "buffer_update=every_batch"],
    "A-GEM": ["strategy=agem"],
    "GEM": ["strategy=gem", "buffer=experience_balanced"],
    "MIR (every_batch)": ["strategy=mir", "buffer_update=every_batch"],
    "iCaRL": ["strategy=icarl", "buffer=class_balanced"],
    "BiC": ["strategy=bic"],
    "X-DER": ["strategy=xder", "buffer=class_balanced"],
    "RAR (every_batch)": ["strategy=rar", "buffer_update=every_batch"],
    "GSS-greedy (every_batch)": ["buffer=gss", "buffer_update=every_batch"],
}


def cost(overrides: list[str]) -> tuple[float, int]:
    """(training seconds of CPU, steps) of one run: the process's CPU time inside the loop's
    training of each experience alone (the build, the memory's end-of-experience update and the
    evaluation left out; the old figure subtracted the evaluation's wall time from the whole
    run's CPU time, and came out negative when the machine was busy)."""
    import time

    import replaycli.run.loop as loop

    with initialize_config_module("replaycli.configs", version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    spent = [0.0]
    real = loop.train_experience

    def timed(run, exp, on_step):
        start = time.process_time()
        try:
            return real(run, exp, on_step)
        finally:
            spent[0] += time.process_time() - start

    loop.train_experience = timed
    try:
        with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
            execute(cfg, Path(out))
            records = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    finally:
        loop.train_experience = real
    steps = sum(sum(e["steps"] for e in r["epochs"]) for r in records)
    return spent[0], steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mnist-root", default="/work/shared/data/mnist-5k")
    p.add_argument("--reps", type=int, default=3)
    a = p.parse_args(argv)
    common = [
        "benchmark=split_mnist",
        f"data_root={a.mnist_root}",
        "download=false",
        "buffer=reservoir",
        "buffer.max_size=200",
        "optimizer=sgd",
        "optimizer.momentum=0.0",
        "optimizer.lr=0.03",
        "epochs=1",
        "progress=none",
        "device=cpu",
        "threads=1",
        "metrics=[timing]",
    ]
    per_step: dict[str, list[float]] = {m: [] for m in METHODS}
    for _ in range(a.reps):
        for label, extra in METHODS.items():
            own_buffer = any(o.startswith("buffer=") for o in extra)  # replaces the common reservoir
            seconds, steps = cost([*(o for o in common if not (own_buffer and o == "buffer=reservoir")), *extra])
            per_step[label].append(1000 * seconds / steps)
    print("| method | ms per step (median) | / replay (median of rounds) |\n|---|---:|---:|")
    for label, values in per_step.items():
        ratio = statistics.median(v / r for v, r in zip(values, per_step["replay"], strict=True))
        print(f"| {label} | {statistics.median(values):.2f} | {ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
