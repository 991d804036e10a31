"""`replay compare PATH... [--by KEY] [--metric M] [--ci] [--percent] [--label A=B] [--format F] [--json]`:
runs grouped by config keys, every metric their summary.json records (final accuracy, average
incremental accuracy, forgetting, BWT, the online AUC, task-IL and validation accuracy) as mean,
sample standard deviation (n - 1) and n over the runs of each group (the seeds), and tables to
paste into a paper (markdown, LaTeX, CSV).

What a table shows is chosen at display time (`displayed`): the metrics (default: the first four and
those any run records beside them), fractions or percentages (`--percent`), and the names of keys
and of group values (`--label der_seq_mnist=DER --label buffer.max_size=memory`).

Runs with the same resolved config and seed are duplicates (the same experiment twice): they are
counted once, and named, unless `--keep-duplicates`. A group of one run has no spread: its mean
is shown without ±. `--ci` adds the 95% confidence interval of the mean (Student's t).

Reads through `replaycli.outputs` only (no torch)."""

from __future__ import annotations

import difflib
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from replaycli.errors import ConfigError
from replaycli.outputs import formulas, rundir, sweepdir
from replaycli.outputs.files import OutputError
from replaycli.outputs.terminal import shown

LABELS = {  # every metric of summary.json a comparison can show, and its column name
    "final_accuracy": "final accuracy",
    "average_incremental_accuracy": "avg incremental acc",
    "forgetting": "forgetting",
    "bwt": "BWT",
    "auc": "AUC",
    "final_task_il_accuracy": "task-IL accuracy",
    "final_val_accuracy": "validation accuracy",
    "final_val_task_il_accuracy": "validation task-IL",
    "anytime_accuracy": "anytime accuracy",  # eval_every: the anytime curve's measures (formulas.anytime)
    "min_accuracy": "min-ACC",
    "worst_case_accuracy": "WC-ACC",
    "stability_gap": "stability gap",
    "online_accuracy": "online accuracy",  # realtime: each batch predicted before it is trained on
}
METRICS = tuple(LABELS)
ALWAYS = METRICS[:4]  # shown by default; the others when a run records them
HIGHER_IS_BETTER = {m: m not in ("forgetting", "stability_gap") for m in METRICS}
# keys that change nothing a run computes: left out when telling duplicate runs apart
NOT_THE_EXPERIMENT = (
    "progress",
    "data_root",
    "download",
    "logger",
    "metrics",
    "granularity",
    "eval_mb_size",
    "keep_checkpoint",
)
# keys that do not change what a run learns: never a default grouping key
IGNORED = ("seed", *NOT_THE_EXPERIMENT, "device")


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
        if summary.get("average_incremental_accuracy") is None:  # a run from before the metric: from its table
            rec = rundir.read_run(d)
            summary["average_incremental_accuracy"] = formulas.average_incremental_accuracy(
                rec.accuracy, rundir.origins(rec.metrics[: len(rec.accuracy)])
            )
        runs.append(
            {
                "path": d,
                "params": sweepdir.run_params(d),
                "override_keys": list(sweepdir.override_items(sweepdir.read_overrides(d))),
                **{m: summary.get(m) for m in METRICS},
            }
        )
    return runs, skipped


def experiment(run: dict[str, Any]) -> str:
    """What makes two runs the same experiment: the resolved config (seed included), keys that
    change nothing computed left out."""
    return json.dumps(
        {k: v for k, v in run["params"].items() if k.split(".")[0] not in NOT_THE_EXPERIMENT},
        sort_keys=True,
        default=str,
    )


def deduplicated(runs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """The runs with each experiment once (its first run), and the groups of paths that repeat one."""
    first: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        first.setdefault(experiment(r), []).append(r)
    return [rs[0] for rs in first.values()], [[str(r["path"]) for r in rs] for rs in first.values() if len(rs) > 1]


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


def _stats(xs: list[float], ci: bool = True) -> tuple[float | None, float | None, float | None]:
    """Mean, sample standard deviation (n - 1; None for one run) and the half-width of the 95%
    confidence interval of the mean (Student's t with n - 1 degrees of freedom; None for one run,
    or when not `ci`)."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None, None
    if len(xs) == 1:
        return xs[0], None, None
    std = statistics.stdev(xs)
    return statistics.fmean(xs), std, t_975(len(xs) - 1) * std / len(xs) ** 0.5 if ci else None


def t_975(dof: int) -> float:
    """Student's t quantile 0.975 with `dof` degrees of freedom: scipy's (scikit-learn's own
    dependency), imported at the first call only: 1.6 s of CPU that a table without the interval
    (`compare(..., ci=False)`) does not pay."""
    from scipy.stats import t

    return float(t.ppf(0.975, dof))


def group(runs: list[dict[str, Any]], keys: list[str], ci: bool = True) -> list[dict[str, Any]]:
    """One row per combination of `keys` values: those values, n, <metric>_mean/_std, seeds, runs."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(tuple(_value(r["params"].get(k)) for k in keys), []).append(r)
    rows = []
    for values, members in sorted(groups.items(), key=lambda kv: tuple(sort_key(v) for v in kv[0])):
        row: dict[str, Any] = {k: list(v) if isinstance(v, tuple) else v for k, v in zip(keys, values, strict=True)}
        row["n"] = len(members)
        for m in METRICS:
            row[f"{m}_mean"], row[f"{m}_std"], row[f"{m}_ci95"] = _stats([r[m] for r in members], ci)
        row["seeds"] = sorted(r["params"].get("seed") for r in members)
        row["runs"] = [str(r["path"]) for r in members]
        rows.append(row)
    return rows


def compare(
    paths: list[str | Path], by: list[str] | None = None, keep_duplicates: bool = False, ci: bool = True
) -> dict[str, Any]:
    """The comparison of the runs in `paths`, grouped by `by` (default: the keys that differ);
    duplicate runs counted once unless `keep_duplicates` (`duplicates` lists them either way);
    `metrics`: those shown by default (`ALWAYS` and any other a run records); `ci`: with the 95%
    intervals (`<metric>_ci95`, else None)."""
    runs, skipped = load(run_dirs(paths))
    if not runs:
        raise OutputError(f"no complete run in {' '.join(map(str, paths))} ({len(skipped)} not complete)")
    unique, duplicates = deduplicated(runs)
    runs = runs if keep_duplicates else unique
    if by:
        check_keys(by, runs)
    keys = list(by) if by else differing_keys(runs)
    recorded = [m for m in METRICS if m in ALWAYS or any(r[m] is not None for r in runs)]
    return {
        "by": keys,
        "metrics": recorded,
        "groups": group(runs, keys, ci),
        "skipped": skipped,
        "duplicates": duplicates,
        "duplicates_counted": keep_duplicates,
    }


def displayed(
    d: dict[str, Any], metrics: list[str] | None = None, percent: bool = False, labels: list[str] | None = None
) -> dict[str, Any]:
    """The comparison `d` as a table shows it: the `metrics` asked for (default: `d["metrics"]`),
    every number x 100 with `percent`, and keys and group values renamed by `labels` (`OLD=NEW`,
    OLD a key of `--by` or a value as the table prints it)."""
    names = {}
    for item in labels or []:
        old, eq, new = item.partition("=")
        if not eq or not old.strip() or not new.strip():
            raise ConfigError(f"--label {item}: allowed: OLD=NEW, e.g. der_seq_mnist=DER or buffer.max_size=memory")
        names[old.strip()] = new.strip()
    shown_metrics = list(metrics or d["metrics"])
    for m in shown_metrics:
        if m not in METRICS:
            raise ConfigError(f"--metric {m}: not a metric; allowed: {', '.join(METRICS)}")
        if all(g[f"{m}_mean"] is None for g in d["groups"]):
            raise ConfigError(f"--metric {m}: no run records it; recorded: {', '.join(d['metrics'])}")
    scale = 100.0 if percent else 1.0

    def group_shown(g: dict[str, Any]) -> dict[str, Any]:
        out = {names.get(k, k): names.get(str(g[k]), g[k]) for k in d["by"]}
        for k, v in g.items():
            if k in d["by"]:
                continue
            numeric = k.endswith(("_mean", "_std", "_ci95")) and v is not None
            out[k] = v * scale if numeric else v
        return out

    return {
        **d,
        "by": [names.get(k, k) for k in d["by"]],
        "metrics": shown_metrics,
        "groups": [group_shown(g) for g in d["groups"]],
        "percent": percent,
    }


def label(d: dict[str, Any], m: str) -> str:
    """Metric `m`'s column name in the table of `d`."""
    return LABELS[m] + (" (%)" if d.get("percent") else "")


def cell(g: dict[str, Any], m: str, ci: bool = False, digits: int = 4) -> str:
    """`mean ± std` (or ± the 95% CI half-width), the mean alone for one run, - when missing;
    `digits` after the point (2 for percentages: `digits_of`)."""
    mean, spread = g[f"{m}_mean"], g[f"{m}_ci95" if ci else f"{m}_std"]
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" if spread is None else f"{mean:.{digits}f} ± {spread:.{digits}f}"


def digits_of(d: dict[str, Any]) -> int:
    return 2 if d.get("percent") else 4


def spread_words(d: dict[str, Any], ci: bool) -> str:
    """What the ± of a table is, over what, and how many."""
    ns = sorted({g["n"] for g in d["groups"]})
    n = f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]} to {ns[-1]}"
    if ns == [1]:
        return "one run per group: no spread (n = 1)"
    what = "95% confidence interval of the mean (Student's t)" if ci else "sample standard deviation (n - 1)"
    return f"mean ± {what} over the runs (seeds) of each group, {n}"


def render(d: dict[str, Any], console: Any, ci: bool = False) -> None:
    from rich.table import Table

    t = Table(title=f"grouped by {', '.join(d['by']) or '(nothing: all runs together)'}; {spread_words(d, ci)}")
    for col in (*d["by"], "n", *(label(d, m) for m in d["metrics"]), "seeds"):
        t.add_column(col, justify="right")
    for g in d["groups"]:
        t.add_row(
            *(str(g[k]) for k in d["by"]),
            str(g["n"]),
            *(cell(g, m, ci, digits_of(d)) for m in d["metrics"]),
            ",".join(map(str, g["seeds"])),
        )
    console.print(t)
    if d["duplicates"]:
        counted = "each counted" if d["duplicates_counted"] else "counted once (--keep-duplicates counts each)"
        listed = "; ".join(" = ".join(paths) for paths in d["duplicates"][:3])
        console.print(
            f"[yellow]{sum(len(p) - 1 for p in d['duplicates'])} duplicate runs (same config and seed), "
            f"{counted}:[/] {listed}",
            highlight=False,
        )
    if d["skipped"]:
        listed = " ".join(f"{s['path']} ({s['status']})" for s in d["skipped"][:5])
        more = f" and {len(d['skipped']) - 5} more" if len(d["skipped"]) > 5 else ""
        console.print(
            f"[yellow]left out {len(d['skipped'])} runs that are not complete:[/] {listed}{more}", highlight=False
        )


def main(args: list[str]) -> int:
    """`replay compare PATH... [--by KEY] [--json]`."""
    from replaycli.outputs.verbargs import ArgParser, keys, label_option

    p = ArgParser(prog="replay compare", description="Group runs by config keys; mean, std and n over seeds.")
    p.add_argument("paths", metavar="PATH", nargs="+", help="run, sweep or outputs directories")
    p.add_argument(
        "--by",
        action="append",
        metavar="KEY",
        help="config key(s) to group by, e.g. buffer.max_size (repeat or comma-separate); "
        "default: the keys that differ among the runs",
    )
    p.add_argument("--ci", action="store_true", help="± the 95%% confidence interval of the mean, not the std")
    p.add_argument(
        "--keep-duplicates",
        action="store_true",
        help="count runs with the same config and seed each time (default: once)",
    )
    p.add_argument(
        "--format",
        choices=("rich", "markdown", "latex", "csv"),
        default="rich",
        help="a table to paste: markdown or latex (best per column in bold), csv (every number)",
    )
    p.add_argument(
        "--metric",
        action="append",
        metavar="M",
        help=f"the metrics shown (repeat or comma-separate; a table grouped by two keys, rows x columns, "
        f"shows the first): {', '.join(METRICS)}; default: {', '.join(ALWAYS)} and those the runs record beside",
    )
    p.add_argument("--percent", action="store_true", help="numbers as percentages (2 decimals), not fractions")
    label_option(p, "a display name for a key or a group value")
    p.add_argument("--json", action="store_true", help="print the same as JSON")
    a = p.parse_args(args)
    with_ci = a.ci or a.json or a.format == "csv"  # the interval costs scipy's import: only where it is shown
    d = compare(a.paths, keys(a.by), a.keep_duplicates, with_ci)  # ConfigError / OutputError: one line, exit 2
    d = displayed(d, keys(a.metric), a.percent, a.label)
    if a.json:
        print(json.dumps(d, indent=2))
        return 0
    if a.format != "rich":
        from replaycli.outputs.tables import table

        sys.stdout.write(table(d, a.format, a.ci))
        return 0
    from rich.console import Console

    render(shown(d), Console(width=None if sys.stdout.isatty() else 160), a.ci)
    return 0
