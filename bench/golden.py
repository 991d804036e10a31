"""Golden outputs for refactors: every method x buffer x selection x update protocol (and the
loaders and scenarios) on split_digits, one epoch, CPU, fixed seed, run in process through
`replay run`. Records each run's accuracy.csv and buffer_histogram.csv (or its one-line error).

    python bench/golden.py record bench/golden.json     # before a refactor
    python bench/golden.py check bench/golden.json      # after: byte-identical, or the differences

The files are bit-for-bit reproducible on one machine and torch build, not across them: a check
on another machine or torch version may differ in the last digits of floats.
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
from itertools import product
from pathlib import Path

BASE = ["epochs=1", "device=cpu", "progress=none", "metrics=[]", "seed=1", "model.hidden_size=64"]
STRATEGIES = [["strategy=replay"], ["strategy=weighted"], ["strategy=weighted", "strategy.schedule=linear"],
              ["strategy=der"], ["strategy=derpp"], ["strategy=gdumb"]]
BUFFERS = [
    *[["buffer=parametric", f"groupby={g}", f"selection={s}"]
      for g, s in product(["null", "class", "task", "experience"], ["random", "herding", "closest_to_center"])],
    ["buffer=reservoir"], ["buffer=class_balanced"], ["buffer=experience_balanced"], ["buffer=none"],
    ["buffer=class_balanced", "buffer.adaptive_size=false", "buffer.total_num_classes=10"],
    ["buffer=experience_balanced", "buffer.adaptive_size=false", "buffer.num_experiences=5"],
]
PROTOCOLS = [["buffer_update=after_experience"], ["buffer_update=every_batch"]]
EXTRA = [  # loaders, task-IL, memory sizes
    ["loader=group_balanced", "buffer=class_balanced"],
    ["loader=group_balanced", "buffer=parametric", "groupby=experience"],
    ["loader=task_balanced", "benchmark.return_task_id=true"],
    ["loader=replay", "mem_mb_size=10", "buffer.max_size=50"],
    ["scenario=task_il", "benchmark.return_task_id=true"],
    ["scenario=task_il", "benchmark.return_task_id=true", "strategy=derpp"],
    ["scenario=task_il", "benchmark.return_task_id=true", "strategy=der", "buffer_update=every_batch"],
    ["strategy=derpp", "buffer=reservoir", "buffer.max_size=30", "train_mb_size=16"],
    ["optimizer=sgd", "optimizer.lr=0.05", "strategy=weighted", "buffer_update=every_batch"],
]


def cases() -> list[list[str]]:
    runs = [s + b + p for s, b, p in product(STRATEGIES, BUFFERS, PROTOCOLS)]
    return runs + EXTRA


def run_one(overrides: list[str], root: Path) -> dict[str, str]:
    from replaycli.cli import main

    out = root / "run"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["run", *BASE, *overrides, f"hydra.run.dir={out}"])
    if code != 0:
        return {"error": err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {code}"}
    return {"accuracy": (out / "accuracy.csv").read_text(), "histogram": (out / "buffer_histogram.csv").read_text()}


def record_all() -> dict[str, dict[str, str]]:
    results = {}
    for i, overrides in enumerate(cases()):
        with tempfile.TemporaryDirectory() as d:
            results[" ".join(overrides)] = run_one(overrides, Path(d))
        print(f"{i + 1}/{len(cases())} {' '.join(overrides)}: {next(iter(results[' '.join(overrides)]))}",
              file=sys.stderr)
    return results


def main(argv: list[str]) -> int:
    mode, path = argv
    results = record_all()
    if mode == "record":
        Path(path).write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        return 0
    golden = json.loads(Path(path).read_text())
    bad = [k for k in golden if golden[k] != results.get(k)]
    for k in bad:
        print(f"DIFFERS: {k}\n  golden: {golden[k]}\n  now:    {results.get(k)}")
    print(f"{len(golden) - len(bad)} of {len(golden)} identical")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
