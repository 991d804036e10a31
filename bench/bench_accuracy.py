"""Replay vs no buffer on split_digits, class-incremental: final accuracy, mean and std over seeds.

    python3 bench/bench_accuracy.py                 # seeds 0 1 2, the README's numbers
    python3 bench/bench_accuracy.py --seeds 0 1 2 3 4 --keep outputs/bench_accuracy

Each setting is one `replay run -m ... seed=0,1,2` sweep of the installed CLI (the commands the
README shows), on the CPU so that the numbers reproduce bit for bit; every job's final accuracy
is read back from its summary.json. Prints a Markdown table; exits 1 when replay is not at least
--target points above no buffer.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from replaycli.outputs.rundir import RunRecord, read_run

SETTINGS = {  # label -> overrides of `replay run`
    "replay (parametric, groupby=class, 200)": ["buffer=parametric", "groupby=class", "buffer.max_size=200"],
    "no buffer": ["buffer=none"],
}
COMMON = ["benchmark=split_digits", "device=cpu", "progress=none"]


def replay_command() -> list[str]:
    script = shutil.which("replay", path=str(Path(sys.executable).parent)) or shutil.which("replay")
    return [script] if script else [sys.executable, "-m", "replaycli.cli"]


def sweep(overrides: list[str], seeds: list[int], out: Path) -> list[RunRecord]:
    """One sweep over `seeds`; its jobs read back, in job order."""
    seeds_arg = "seed=" + ",".join(map(str, seeds))
    cmd = [*replay_command(), "run", "-m", *overrides, *COMMON, seeds_arg, f"hydra.sweep.dir={out}"]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed:\n{proc.stderr.strip()}")
    return [read_run(out / str(i)) for i in range(len(seeds))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--target", type=float, default=30.0, help="points replay must gain over no buffer")
    p.add_argument("--keep", type=Path, help="write the sweeps here instead of a temporary directory")
    args = p.parse_args(argv)

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_accuracy-"))
    results: dict[str, list[float]] = {}
    forgetting: dict[str, list[float]] = {}
    start = time.perf_counter()
    for i, (label, overrides) in enumerate(SETTINGS.items()):
        runs = sweep(overrides, args.seeds, root / str(i))
        results[label] = [100 * r.summary["final_accuracy"] for r in runs]
        forgetting[label] = [100 * r.summary["forgetting"] for r in runs]
    cfg = yaml.safe_load(runs[0].config_text)
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)

    def stat(xs: list[float]) -> str:
        return f"{statistics.mean(xs):.1f} ± {statistics.stdev(xs) if len(xs) > 1 else 0.0:.1f}"

    model, optimizer = (cfg[g]["_target_"].rsplit(".", 1)[-1] for g in ("model", "optimizer"))
    print(
        f"split_digits, {cfg['benchmark']['n_experiences']} experiences, class-incremental; seeds {args.seeds}; "
        f"{model}, {optimizer} lr {cfg['optimizer']['lr']}, {cfg['epochs']} epochs, batches of "
        f"{cfg['train_mb_size']}; {runs[0].summary['device']}; {time.perf_counter() - start:.0f} s\n"
    )
    print("| setting | final accuracy (%) | forgetting (%) | per seed |")
    print("|---|---|---|---|")
    for label in SETTINGS:
        per_seed = ", ".join(f"{a:.1f}" for a in results[label])
        print(f"| {label} | {stat(results[label])} | {stat(forgetting[label])} | {per_seed} |")
    replay_label, none_label = SETTINGS
    gap = statistics.mean(results[replay_label]) - statistics.mean(results[none_label])
    verdict = "met" if gap >= args.target else "MISSED"
    print(f"\nreplay - no buffer: {gap:+.1f} points (target: at least +{args.target:.0f}; {verdict})")
    return 0 if gap >= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
