"""Golden outputs for refactors: every method x buffer x selection x update protocol (and the
loaders and scenarios), every later method under each protocol it is defined for, and the protocol
keys (validation, online pieces, task labels), on split_digits, one epoch, CPU, fixed seed, run in
process through `replay run`. Records each run's accuracy.csv and buffer_histogram.csv (or its
one-line error) and a sha256 of each other file the run writes: the other tables, config.yaml,
Hydra's .hydra/*.yaml (the run's paths replaced by RUN and CWD), metrics.jsonl and summary.json
(without their seconds and resource figures, which differ from run to run).

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
STRATEGIES = [
    ["strategy=replay"],
    ["strategy=weighted"],
    ["strategy=weighted", "strategy.schedule=linear"],
    ["strategy=der"],
    ["strategy=derpp"],
    ["strategy=gdumb"],
]
BUFFERS = [
    *[
        ["buffer=parametric", f"groupby={g}", f"selection={s}"]
        for g, s in product(["null", "class", "task", "experience"], ["random", "herding", "closest_to_center"])
    ],
    ["buffer=reservoir"],
    ["buffer=class_balanced"],
    ["buffer=experience_balanced"],
    ["buffer=none"],
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
METHODS = [  # the methods added after the first golden record, each under the protocols it is defined for
    ["strategy=icarl"],
    ["strategy=icarl", "buffer.adaptive_size=false", "buffer.total_num_classes=10", "buffer.max_size=100"],
    ["strategy=bic"],
    ["strategy=bic", "benchmark.validation=0.1"],
    ["strategy=xder"],
    ["strategy=xder", "strategy.online_update=true", "strategy.lambd=0.1"],
    ["strategy=xder", "scenario=task_il", "benchmark.return_task_id=true"],
    ["strategy=rar"],
    ["strategy=rar", "buffer=reservoir", "buffer_update=every_batch"],
    ["strategy=er_ace", "buffer=reservoir", "buffer_update=every_batch"],
    ["strategy=agem", "buffer=reservoir"],
    ["strategy=agem", "buffer=reservoir", "buffer_update=every_batch"],
    ["strategy=gem", "buffer=experience_balanced", "optimizer=sgd", "optimizer.momentum=0.0", "optimizer.lr=0.03"],
    ["strategy=mir", "buffer=reservoir"],
    ["strategy=mir", "buffer=reservoir", "buffer_update=every_batch"],
    ["strategy=joint", "buffer=reservoir", "buffer.max_size=100000"],
    ["buffer=gss", "buffer_update=every_batch"],
    ["strategy=gdumb", "scenario=task_il", "benchmark.return_task_id=true"],
    ["benchmark.validation=0.2", "benchmark.experience_size=150", "benchmark.return_task_id=true"],
    ["strategy=der", "benchmark.experience_size=100", "buffer_update=every_batch", "buffer=reservoir"],
    ["benchmark.class_order=[9,8,7,6,5,4,3,2,1,0]", "benchmark.normalize=unit", "model.init=xavier"],
    ["metrics=[accuracy,loss,confusion]", "granularity.loss=minibatch"],
    ["strategy=icarl", "buffer_update=every_batch"],  # refused: iCaRL is defined under after_experience only
    ["budget=5"],  # issue 28: budgets, real time, cost, the stream's shapes
    ["budget=200", "budget_unit=samples", "strategy=derpp", "buffer=reservoir"],
    ["strategy=derpp", "buffer=reservoir", "buffer_update=every_batch", "realtime=true"],
    ["metrics=[cost]", "strategy=mir", "buffer=reservoir", "buffer_update=every_batch"],
    ["benchmark.si_blurry=[20,10]"],
    ["benchmark.repetition=0.3"],
    ["benchmark.boundary=0.5", "benchmark.experience_size=100"],
]


CONFIGS = Path(__file__).resolve().parents[1] / "configs"
GENERATED = ("strategy", "buffer", "selection", "loader", "optimizer")  # every option, as its YAML's command


def header(group: str, option: str) -> list[str]:
    """The overrides of the `replay run ...` command an option's YAML begins with (after any
    `# @package` line; a note may follow after two spaces or a parenthesis)."""
    import re
    import shlex

    lines = [ln for ln in (CONFIGS / group / f"{option}.yaml").read_text().splitlines() if ln.strip()]
    first = next(ln for ln in lines if not re.match(r"^\s*#\s*@", ln)).lstrip("#").strip()
    return [w for w in shlex.split(re.split(r"\s{2,}|\s\(", first)[0])[2:] if not w.startswith("-")]


def cases() -> list[list[str]]:
    """The hand-made matrix, then every shipped option of GENERATED that it does not hold already:
    a new YAML gets a golden the moment it exists (`check` lists the ones not recorded yet)."""
    runs = [s + b + p for s, b, p in product(STRATEGIES, BUFFERS, PROTOCOLS)] + EXTRA + METHODS
    made = [header(g, p.stem) for g in GENERATED for p in sorted((CONFIGS / g).glob("*.yaml"))]
    return runs + [c for c in made if c not in runs]


TIMES = ("seconds", "peak_rss_mb", "gpu_peak_memory_mb", "disk_bytes", "versions", "timing", "resources")


def timeless(value: object) -> object:
    """A JSON value without the keys that measure time or resources (they differ run to run)."""
    if isinstance(value, dict):
        return {k: timeless(v) for k, v in value.items() if not any(t in k for t in TIMES)}
    if isinstance(value, list):
        return [timeless(v) for v in value]
    return value


def digests(out: Path) -> dict[str, str]:
    """sha256 of each file of run directory `out` beside the two tables, as written or with its
    paths and timings taken out."""
    import hashlib
    import os

    found = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file() and p.name != "checkpoint.pt" and p.suffix != ".log"):
        name = str(path.relative_to(out))
        if name in ("accuracy.csv", "buffer_histogram.csv"):
            continue
        text = path.read_text()
        if name.startswith(".hydra/") or name == "config.yaml":  # paths of this machine: config.yaml's are absolute
            text = text.replace(str(out), "RUN").replace(os.getcwd(), "CWD").replace(os.path.expanduser("~"), "HOME")
        elif path.suffix in (".json", ".jsonl"):
            text = "\n".join(
                json.dumps(timeless(json.loads(line)), sort_keys=True)
                for line in (text.splitlines() if path.suffix == ".jsonl" else [text])
            )
        found[name] = hashlib.sha256(text.encode()).hexdigest()
    return found


def run_one(overrides: list[str], root: Path) -> dict[str, str]:
    from replaycli.cli import main

    out = root / "run"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["run", *BASE, *overrides, f"hydra.run.dir={out}"])
    if code != 0:
        return {"error": err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {code}"}
    return {
        "accuracy": (out / "accuracy.csv").read_text(),
        "histogram": (out / "buffer_histogram.csv").read_text(),
        "files": digests(out),
    }


def record_all() -> dict[str, dict[str, str]]:
    results = {}
    for i, overrides in enumerate(cases()):
        with tempfile.TemporaryDirectory() as d:
            results[" ".join(overrides)] = run_one(overrides, Path(d))
        print(
            f"{i + 1}/{len(cases())} {' '.join(overrides)}: {next(iter(results[' '.join(overrides)]))}", file=sys.stderr
        )
    return results


def main(argv: list[str]) -> int:
    mode, path = argv
    results = record_all()
    if mode == "record":
        Path(path).write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        return 0
    golden = json.loads(Path(path).read_text())
    bad = [k for k in golden if golden[k] != results.get(k)]
    new = [k for k in results if k not in golden]
    if new:
        print(f"not recorded yet ({len(new)}; record them from the unchanged tree): {'; '.join(new)}")
    for k in bad:
        now = results.get(k) or {}
        files = [
            f
            for f in set(golden[k].get("files", {})) | set(now.get("files", {}))
            if golden[k].get("files", {}).get(f) != now.get("files", {}).get(f)
        ]
        print(f"DIFFERS: {k}\n  golden: {golden[k]}\n  now:    {now}\n  files that differ: {sorted(files)}")
    print(f"{len(golden) - len(bad)} of {len(golden)} identical")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
