"""Replay methods side by side: final accuracy (class-IL / task-IL, mean +- std over seeds) of no
buffer, replay, weighted replay, GDumb, DER, DER++, ER-ACE, A-GEM, GEM, MIR, iCaRL, BiC, X-DER, RAR,
GSS-greedy and joint training at two buffer sizes, under each update protocol a method is defined
under. Task-IL is read from the same class-IL runs (the stream has task labels; logits masked at evaluation).

    python3 bench/bench_methods.py                      # split_digits and split_mnist (5k files)
    python3 bench/bench_methods.py --mnist-root /work/shared/data/mnist-5k --seeds 0 1 2
    python3 bench/bench_methods.py --quick              # one seed, split_digits only: a smoke run

Every run goes through `replaycli.run.runner.execute` (the code path of `replay run`) into a
temporary directory; the final accuracy is read back from its summary.json. Prints a Markdown
table (the README's "Replay methods" section) and writes it to --out.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from replaycli.outputs.rundir import read_run
from replaycli.run.runner import execute

METHODS = {  # label -> overrides
    "no buffer": ["buffer=none"],
    "replay": ["strategy=replay"],
    "weighted (linear)": ["strategy=weighted", "strategy.schedule=linear"],
    "GDumb": ["strategy=gdumb"],
    "DER": ["strategy=der"],
    "DER++": ["strategy=derpp"],
    "ER-ACE": ["strategy=er_ace"],
    "A-GEM": ["strategy=agem"],
    "GEM": ["strategy=gem", "buffer=experience_balanced"],
    "MIR": ["strategy=mir"],
    "iCaRL": ["strategy=icarl"],  # its own memory: class-balanced, herding
    "BiC": ["strategy=bic"],  # its own memory: experience-balanced
    "X-DER": ["strategy=xder"],  # its own memory: class-balanced
    "X-DER (reference: SupCon, online update)": ["strategy=xder", "strategy.lambd=0.1", "strategy.online_update=true"],
    "RAR": ["strategy=rar"],
    "GSS-greedy (ER)": ["buffer=gss"],
    "Joint (upper bound)": ["strategy=joint", "buffer=reservoir", "buffer.max_size=100000"],
}
SIZE_FREE = ("no buffer", "Joint (upper bound)")  # the buffer size changes nothing: one run per seed
PROTOCOLS = {  # label -> (overrides, methods it applies to: those defined under it)
    "after_experience": (
        ["buffer_update=after_experience"],
        [m for m in METHODS if m not in ("ER-ACE", "RAR", "GSS-greedy (ER)")],
    ),
    "every_batch": (
        ["buffer_update=every_batch", "buffer=reservoir"],
        ["replay", "weighted (linear)", "DER", "DER++", "ER-ACE", "A-GEM", "MIR", "RAR", "GSS-greedy (ER)"],
    ),
}


def final_accuracy(overrides: list[str]) -> tuple[float, float]:
    """(class-IL, task-IL) final accuracy of one run (task-IL: the same logits masked at evaluation)."""
    with initialize_config_module("replaycli.configs", version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
        execute(cfg, Path(out))
        summary = read_run(out).summary
        return float(summary["final_accuracy"]), float(summary["final_task_il_accuracy"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--mnist-root", default="/work/shared/data/mnist-5k", help="torchvision MNIST files ('' skips split_mnist)"
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--sizes", type=int, nargs="+", default=[200, 500])
    p.add_argument(
        "--epochs", type=int, default=3, help="epochs per experience under after_experience (every_batch: 1, online)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    p.add_argument("--quick", action="store_true", help="one seed, split_digits only")
    p.add_argument("--out", default="bench/methods_results.md")
    p.add_argument("--methods", nargs="+", default=None, help="only these rows (labels as in METHODS)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = args.seeds[:1] if args.quick else args.seeds
    benches = {"split_digits": ["benchmark=split_digits"]}
    if args.mnist_root and not args.quick:
        benches["split_mnist (5k)"] = ["benchmark=split_mnist", f"data_root={args.mnist_root}", "download=false"]
    common = ["device=cpu", "progress=none", "benchmark.return_task_id=true"]  # task labels: task-IL beside class-IL
    lines = [
        "| benchmark | protocol | method | " + " | ".join(f"buffer {s}" for s in args.sizes) + " |",
        "|---|---|---|" + "---|" * len(args.sizes),
    ]
    start = time.perf_counter()
    for bname, bover in benches.items():
        for proto, (pover, methods) in PROTOCOLS.items():
            epochs = 1 if proto == "every_batch" else args.epochs
            for label in methods:
                if args.methods and label not in args.methods:
                    continue
                cells = []
                for size in args.sizes:
                    if label in SIZE_FREE and cells:
                        cells.append(cells[0])  # no memory, or all of it: the buffer size changes nothing
                        continue
                    own = METHODS[label]  # a method's own buffer option replaces the protocol's
                    proto_over = [
                        o for o in pover if not (o.startswith("buffer=") and any(m.startswith("buffer=") for m in own))
                    ]
                    over = common + bover + proto_over + own + [f"epochs={epochs}"]
                    if label not in SIZE_FREE:
                        over.append(f"buffer.max_size={size}")
                    both = [final_accuracy(over + [f"seed={s}"]) for s in seeds]
                    parts = []
                    for accs in ([c for c, _ in both], [t for _, t in both]):
                        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
                        parts.append(f"{100 * statistics.mean(accs):.1f} +- {100 * sd:.1f}")
                    cells.append(" / ".join(parts))
                lines.append(f"| {bname} | {proto} (epochs {epochs}) | {label} | " + " | ".join(cells) + " |")
                print(lines[-1], f"[{time.perf_counter() - start:.0f} s]", flush=True)
    table = "\n".join(lines)
    footer = (
        f"\nfinal accuracy (%) over the whole test stream, class-IL / task-IL, mean +- std over seeds {seeds}; "
        f"{time.perf_counter() - start:.0f} s in all, {args.threads} torch thread(s), {torch.__version__}\n"
    )
    print("\n" + table + footer)
    Path(args.out).write_text(table + "\n" + footer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
