"""`replay compare PATH... [--by KEY] [--json]`: runs grouped by config keys, their final accuracy,
forgetting and BWT as mean, std and n over the runs of each group (the seeds).

Reads through `replaycli.outputs` only (no torch)."""
from __future__ import annotations

import difflib
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from replaycli.outputs import rundir, sweepdir
from replaycli.errors import ConfigError
from replaycli.outputs.rundir import OutputError

METRICS = ("final_accuracy", "forgetting", "bwt")
# keys that do not change what a run learns: never a default grouping key
IGNORED = ("seed", "progress", "device", "data_root", "download", "eval_mb_size", "logger", "metrics", "granularity")


def run_dirs(paths: list[str | Path]) -> list[Path]:
    """Every run or job directory in `paths` (each a run, a sweep or an outputs directory)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if sweepdir.is_job(p):
            found.append(p)
        elif sweepdir.is_sweep(p):
            found += sweepdir.job_dirs(p)
        else:
            runs, sweeps = sweepdir.find_outputs(p) if p.is_dir() else ([], [])
            if not runs and not sweeps:
                raise OutputError(f"{p} holds no run; allowed: run, sweep or outputs directories")
            found += runs + [j for s in sweeps for j in sweepdir.job_dirs(s)]
    return list(dict.fromkeys(found))


def load(dirs: list[Path]) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """(complete runs: path, params, override keys, summary metrics; skipped runs: path, status)."""
    runs, skipped = [], []
    for d in dirs:
        state = sweepdir.status(d)
        if state != "complete":
            skipped.append({"path": str(d), "status": state})
            continue
        summary = rundir.read_summary(d)
        runs.append({
            "path": d, "params": sweepdir.run_params(d),
            "override_keys": list(sweepdir.override_items(sweepdir.read_overrides(d))),
            **{m: summary.get(m) for m in METRICS},
        })
    return runs, skipped


def _value(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v  # a list (a class order) must key a dict


def _ignored(key: str) -> bool:
    return key in IGNORED or key.split(".")[0] in IGNORED


def differing_keys(runs: list[dict[str, Any]]) -> list[str]:
    """The keys whose values differ among the runs, seeds and the like left out: first those that
    were overridden on the command line, else any config key."""
    def differs(k: str) -> bool:
        return len({repr(_value(r["params"].get(k))) for r in runs}) > 1

    overridden = dict.fromkeys(k for r in runs for k in r["override_keys"] if not _ignored(k))
    keys = [k for k in overridden if differs(k)]
    if keys:
        return keys
    every = dict.fromkeys(k for r in runs for k in r["params"] if not _ignored(k))
    return sorted(k for k in every if differs(k))


def check_keys(keys: list[str], runs: list[dict[str, Any]]) -> None:
    known = {k for r in runs for k in r["params"]}
    for k in keys:
        if k not in known:
            near = difflib.get_close_matches(k, sorted(known), n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            differ = ", ".join(differing_keys(runs)) or "none"
            raise ConfigError(f"--by {k}: no run has this config key{hint} (keys that differ: {differ})")


def sort_key(v: Any) -> tuple:
    """Numbers (and numeric text) in numeric order, then other text, then missing values."""
    if v is None:
        return (2, 0.0, "")
    try:
        return (0, float(v), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(v))


def _stats(xs: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (0 for one run)."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def group(runs: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    """One row per combination of `keys` values: those values, n, <metric>_mean/_std, seeds, runs."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(tuple(_value(r["params"].get(k)) for k in keys), []).append(r)
    rows = []
    for values, members in sorted(groups.items(), key=lambda kv: tuple(sort_key(v) for v in kv[0])):
        row: dict[str, Any] = {k: list(v) if isinstance(v, tuple) else v for k, v in zip(keys, values)}
        row["n"] = len(members)
        for m in METRICS:
            row[f"{m}_mean"], row[f"{m}_std"] = _stats([r[m] for r in members])
        row["seeds"] = sorted(r["params"].get("seed") for r in members)
        row["runs"] = [str(r["path"]) for r in members]
        rows.append(row)
    return rows


def compare(paths: list[str | Path], by: list[str] | None = None) -> dict[str, Any]:
    """The comparison of the runs in `paths`, grouped by `by` (default: the keys that differ)."""
    runs, skipped = load(run_dirs(paths))
    if not runs:
        raise OutputError(f"no complete run in {' '.join(map(str, paths))} ({len(skipped)} not complete)")
    if by:
        check_keys(by, runs)
    keys = list(by) if by else differing_keys(runs)
    return {"by": keys, "groups": group(runs, keys), "skipped": skipped}


def _pm(mean: float | None, std: float | None) -> str:
    return "-" if mean is None else f"{mean:.4f} ± {std:.4f}"


def render(d: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    t = Table(title=f"grouped by {', '.join(d['by']) or '(nothing: all runs together)'}; mean ± std over runs")
    for col in (*d["by"], "n", "final accuracy", "forgetting", "BWT", "seeds"):
        t.add_column(col, justify="right")
    for g in d["groups"]:
        t.add_row(
            *(str(g[k]) for k in d["by"]), str(g["n"]), _pm(g["final_accuracy_mean"], g["final_accuracy_std"]),
            _pm(g["forgetting_mean"], g["forgetting_std"]), _pm(g["bwt_mean"], g["bwt_std"]),
            ",".join(map(str, g["seeds"])),
        )
    console.print(t)
    if d["skipped"]:
        listed = " ".join(f"{s['path']} ({s['status']})" for s in d["skipped"][:5])
        more = f" and {len(d['skipped']) - 5} more" if len(d["skipped"]) > 5 else ""
        console.print(f"[yellow]left out {len(d['skipped'])} runs that are not complete:[/] {listed}{more}",
                      highlight=False)


def main(args: list[str]) -> int:
    """`replay compare PATH... [--by KEY] [--json]`."""
    from replaycli.verbargs import ArgParser, keys

    p = ArgParser(prog="replay compare", description="Group runs by config keys; mean, std and n over seeds.")
    p.add_argument("paths", metavar="PATH", nargs="+", help="run, sweep or outputs directories")
    p.add_argument("--by", action="append", metavar="KEY",
                   help="config key(s) to group by, e.g. buffer.max_size (repeat or comma-separate); "
                        "default: the keys that differ among the runs")
    p.add_argument("--json", action="store_true", help="print the same as JSON")
    a = p.parse_args(args)
    d = compare(a.paths, keys(a.by))  # ConfigError / OutputError: one line and exit 2, in replaycli.cli
    if a.json:
        print(json.dumps(d, indent=2))
        return 0
    from rich.console import Console

    render(d, Console(width=None if sys.stdout.isatty() else 160))
    return 0
