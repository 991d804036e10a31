"""`replay inspect PATH [--json]`: what a run, a sweep or an outputs directory holds.

Reads through `replaycli.outputs` only; imports neither torch nor Hydra, so it answers at once.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from replaycli.outputs import formulas, rundir, sweepdir
from replaycli.outputs.files import OutputError
from replaycli.outputs.terminal import gap, kept, shown

BLOCKS = " ▁▂▃▄▅▆▇█"
RESOURCES = ("peak_rss_mb", "cpu_seconds", "gpu_peak_memory_mb", "disk_bytes")
MAX_CONFUSION_CLASSES = 20  # wider matrices are left to confusion.csv and replay plot
STATUS_STYLE = {"complete": "green", "incomplete": "yellow", "interrupted": "yellow", "failed": "red"}


def _when(path: Path) -> str:
    return datetime.fromtimestamp(sweepdir.started(path)).isoformat(sep=" ", timespec="seconds")


# --- what is there (the --json answer) --------------------------------------------------------
def describe(path: str | Path) -> dict[str, Any]:
    """A run, a sweep or an outputs directory as plain data; OutputError when it holds none."""
    path = Path(path)
    if not path.is_dir():
        raise OutputError(f"PATH={path} is not a directory; allowed: a run, a sweep or an outputs directory")
    if sweepdir.is_job(path):
        return describe_run(path)
    if sweepdir.is_sweep(path):
        return describe_sweep(path)
    runs, sweeps = sweepdir.find_outputs(path)
    if runs or sweeps:
        return describe_outputs(path, runs, sweeps)
    raise OutputError(
        f"{path} holds no run; allowed: a run directory (with config.yaml), a sweep directory "
        "(job directories 0/, 1/, ... or summary.csv) or an outputs directory (runs/, sweeps/)"
    )


def describe_run(path: Path) -> dict[str, Any]:
    d: dict[str, Any] = {
        "kind": "run",
        "path": str(path),
        "started": _when(path),
        "status": sweepdir.status(path),
        "error": sweepdir.error(path),
        "overrides": sweepdir.read_overrides(path),
        "experiences_done": 0,
        "n_experiences": None,
        "accuracy": [],
        "histograms": [],
    }
    if not rundir.is_run(path):  # a sweep job refused before it wrote anything
        return d
    rec = rundir.read_run(path)
    acc = rec.accuracy
    n = (
        rec.metrics[-1].get("n_experiences", len(acc[0]))
        if rec.metrics and acc
        else sweepdir.run_params(path).get("benchmark.n_experiences")
    )
    rows = rundir.origins(rec.metrics[: len(acc)])
    d.update(experiences_done=len(acc), n_experiences=n, accuracy=acc, histograms=rec.histograms)
    if (path / rundir.CLASS_NAMES).is_file() and rec.histograms:  # what the data called each class
        d["class_names"] = rundir.class_names(path, len(rec.histograms[0]))
    d["stream_accuracy"] = [formulas.mean(row) for row in acc]  # after each experience, over the test stream
    last = {o: i for i, o in enumerate(rows if rows is not None else range(len(acc)))}  # the row right after each
    d["per_experience"] = [  # forgetting: best earlier accuracy - final; 0 for the last trained
        {
            "experience": j,
            "after_training_it": acc[i][j],
            "final": acc[-1][j],
            "best": max(r[j] for r in acc),
            "forgetting": formulas.forgetting_of(acc, j, rows),
        }
        for j, i in sorted(last.items())
        if j < len(acc[0])
    ]
    if rec.complete:
        d.update(
            {
                k: rec.summary.get(k)
                for k in (
                    "final_accuracy",
                    "forgetting",
                    "bwt",
                    "seconds",
                    *(f"final_{key}" for key in rundir.SIDE_TABLES),
                    *ANYTIME_MEASURES,
                    *SPENDING,
                )
            }
        )
    d["training"] = [  # what metrics.jsonl holds beyond the accuracy row, per experience
        {k: m.get(k) for k in ("experience", "loss", "train_accuracy", "stream_loss", "seconds")}
        | {
            "epoch_loss": [e.get("loss") for e in m.get("epochs", [])],
            "epoch_accuracy": [e.get("accuracy") for e in m.get("epochs", [])],
        }
        for m in rec.metrics
    ]
    d["resources"] = {k: rec.summary[k] for k in RESOURCES if k in rec.summary}
    d["confusion"] = rec.confusion  # [trained][true][predicted]; [] unless metrics had confusion
    return d


def describe_sweep(path: Path) -> dict[str, Any]:
    rows = sweepdir.read_sweep(path)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    planned = sweepdir.planned_count(path)
    missing = max(0, (planned or 0) - len(rows))  # planned, never started (no directory)
    if missing:
        counts["not started"] = missing
    left = missing or any(r["status"] != "complete" for r in rows)
    return {
        "kind": "sweep",
        "path": str(path),
        "started": _when(path),
        "jobs": rows,
        "status_counts": counts,
        "finish": sweepdir.finishing_command(path) if left else None,
    }


def describe_outputs(path: Path, runs: list[Path], sweeps: list[Path]) -> dict[str, Any]:
    def run_line(p: Path) -> dict[str, Any]:
        s = rundir.read_summary(p)
        return {
            "path": str(p),
            "started": _when(p),
            "status": sweepdir.status(p),
            "experiences_done": len(rundir.read_run(p).accuracy),
            "final_accuracy": s.get("final_accuracy") if s.get("status") == "complete" else None,
            "overrides": sweepdir.read_overrides(p),
        }

    def sweep_line(p: Path) -> dict[str, Any]:
        rows = sweepdir.read_sweep(p)
        return {
            "path": str(p),
            "started": _when(p),
            "jobs": len(rows),
            "complete": sum(r["status"] == "complete" for r in rows),
            "failed": sum(r["status"] == "failed" for r in rows),
            "swept": swept_keys(rows),
        }

    return {
        "kind": "outputs",
        "path": str(path),
        "runs": [run_line(p) for p in runs],
        "sweeps": [sweep_line(p) for p in sweeps],
    }


def swept_keys(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The override keys of a sweep that take more than one value, with their values."""
    values = {k: list(dict.fromkeys(str(r.get(k, "")) for r in rows)) for k in sweepdir.override_keys(rows)}
    return {k: v for k, v in values.items() if len(v) > 1}


# --- how it looks on a terminal ---------------------------------------------------------------
def _status(s: str) -> str:
    return f"[{STATUS_STYLE.get(s, 'yellow')}]{s}[/]"


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def bars(counts: list[int], top: int) -> str:
    """One block character per class, its height the class's count relative to `top`."""
    if top <= 0:
        return "·" * len(counts)
    return "".join("·" if c == 0 else BLOCKS[max(1, round(8 * c / top))] for c in counts)


def render_run(d: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    from replaycli.outputs.terminal import accuracy_table

    done, n = d["experiences_done"], d["n_experiences"]
    console.print(f"[bold]run[/] {d['path']}  (started {d['started']})")
    line = f"status: {_status(d['status'])}" + (f", {done} of {n} experiences finished" if n else "")
    console.print(line + (f": {d['error']}" if d["error"] else ""), highlight=False)
    console.print(f"overrides: {' '.join(d['overrides']) or '(none)'}", highlight=False)
    if d.get("final_accuracy") is not None:
        console.print(
            f"final accuracy [bold]{d['final_accuracy']:.4f}[/]  forgetting {d['forgetting']:.4f}  "
            f"BWT {d['bwt']:.4f}  {d['seconds']:.1f} s"
        )
    side = [
        (label, d.get(f"final_{key}"))
        for key, label in (
            ("task_il_accuracy", "task-IL"),
            ("val_accuracy", "validation"),
            ("val_task_il_accuracy", "validation task-IL"),
        )
    ]
    if any(v is not None for _, v in side):
        console.print(
            "  ".join(f"final {label} accuracy {v:.4f}" for label, v in side if v is not None), highlight=False
        )
    measured = [(ANYTIME_MEASURES[k], d.get(k)) for k in ANYTIME_MEASURES if d.get(k) is not None]
    if measured:  # eval_every: the anytime curve's measures (anytime.csv)
        console.print("anytime: " + "  ".join(f"{label} {v:.4f}" for label, v in measured), highlight=False)
    if d.get("cost"):  # metrics: [cost]
        console.print(spending_line(d), highlight=False)
    if not d["accuracy"]:
        return
    console.print(accuracy_table(d["accuracy"]))
    t = Table(title="per experience")
    for col in ("experience", "after training it", "final", "best", "forgetting"):
        t.add_column(col, justify="right")
    for i in kept(len(d["per_experience"])):
        if i is None:
            t.add_row(gap(len(d["per_experience"])), "", "", "", "")
            continue
        e = d["per_experience"][i]
        t.add_row(
            str(e["experience"]), _num(e["after_training_it"]), _num(e["final"]), _num(e["best"]), _num(e["forgetting"])
        )
    console.print(t)
    hists = d["histograms"]
    top = max((max(h) for h in hists if h), default=0)
    order = ", ".join(d["class_names"]) if "class_names" in d else f"0..{len(hists[0]) - 1}"
    t = Table(title=f"buffer samples per class (one bar per class, {order}; full = {top})")
    for col in ("trained", "classes", "min", "max", "total"):
        t.add_column(col, justify="left" if col == "classes" else "right")
    for i in kept(len(hists)):
        if i is None:
            t.add_row(gap(len(hists)), "", "", "", "")
            continue
        h = hists[i]
        t.add_row(str(i), f"[cyan]{bars(h, top)}[/]", str(min(h)), str(max(h)), str(sum(h)))
    console.print(t)
    render_training(d, console)
    render_confusion(d, console)


def render_training(d: dict[str, Any], console: Any) -> None:
    """Training loss and accuracy per experience (and per epoch), test loss, seconds; resources."""
    from rich.table import Table

    rows = [r for r in d.get("training", []) if r.get("train_accuracy") is not None or r["epoch_loss"]]
    if rows:
        t = Table(title="training (per epoch: first -> last)")
        for col in ("experience", "loss", "train acc", "epoch loss", "epoch acc", "test loss", "seconds"):
            t.add_column(col, justify="right")
        for i in kept(len(rows)):
            if i is None:
                t.add_row(gap(len(rows)), "", "", "", "", "", "")
                continue
            r = rows[i]
            t.add_row(
                str(r["experience"]),
                _num(r["loss"]),
                _num(r["train_accuracy"]),
                _span(r["epoch_loss"]),
                _span(r["epoch_accuracy"]),
                _num(r["stream_loss"]),
                _num(r["seconds"], 2),
            )
        console.print(t)
    res = d.get("resources") or {}
    if res:
        gpu = res.get("gpu_peak_memory_mb")
        console.print(
            f"resources: peak RSS {res.get('peak_rss_mb', 0):.0f} MiB, CPU {res.get('cpu_seconds', 0):.1f} s, "
            f"GPU peak {'-' if gpu is None else f'{gpu:.0f} MiB'}, "
            f"run directory {res.get('disk_bytes', 0) / 2**20:.2f} MiB",
            highlight=False,
        )


def _span(xs: list[float | None]) -> str:
    """First -> last of a per-epoch series ('-' when it was not measured)."""
    return f"{xs[0]:.3f} -> {xs[-1]:.3f}" if xs and None not in xs else "-"


def render_confusion(d: dict[str, Any], console: Any) -> None:
    """The test stream's confusion matrix after the last experience: rows true, columns predicted."""
    from rich.table import Table

    if not d.get("confusion"):
        return
    m, last = d["confusion"][-1], len(d["confusion"]) - 1
    n = len(m)
    if n > MAX_CONFUSION_CLASSES:
        console.print(f"confusion matrix: {n} x {n} classes, too wide to show; see confusion.csv or replay plot")
        return
    t = Table(title=f"confusion on the test stream after experience {last} (row: true class, column: predicted)")
    t.add_column("true", justify="right")
    for k in range(n):
        t.add_column(str(k), justify="right")
    t.add_column("total", justify="right", style="bold")
    for k, row in enumerate(m):
        cells = [f"[bold green]{c}[/]" if j == k else f"[red]{c}[/]" if c else "[dim]·[/]" for j, c in enumerate(row)]
        t.add_row(str(k), *cells, str(sum(row)))
    console.print(t)


SPENDING = ("cost", "flops_per_step", "skipped", "online_accuracy")  # summary.json's (formulas.spending)


def spending_line(d: dict[str, Any]) -> str:
    """What a run spent, and what its budget or realtime left out, in one line."""
    c = d["cost"]
    line = f"cost: {c['steps']} steps, {c['forward']} samples forward, {c['backward']} backward, {c['flops']:.3g} FLOPs"
    if d.get("flops_per_step") is not None:
        line += f" ({d['flops_per_step']:.3g} per step)"
    if d.get("skipped") is not None:
        line += f"; {d['skipped']} incoming batches not trained on"
    if d.get("online_accuracy") is not None:
        line += f"; online accuracy {d['online_accuracy']:.4f}"
    return line


ANYTIME_MEASURES = {  # summary.json's measures of an anytime curve (eval_every), as inspect says them
    "anytime_accuracy": "average anytime accuracy",
    "min_accuracy": "min-ACC",
    "worst_case_accuracy": "WC-ACC",
    "stability_gap": "stability gap",
}
SIDE_COLUMNS = (  # a sweep's columns beside class-IL, where some job records them (summary.csv)
    ("final_task_il_accuracy", "task-IL"),
    ("final_val_accuracy", "validation"),
    ("final_val_task_il_accuracy", "val task-IL"),
    ("auc", "AUC"),
    ("anytime_accuracy", "anytime"),
    ("stability_gap", "stab. gap"),
    ("online_accuracy", "online"),
)


def render_sweep(d: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    rows = d["jobs"]
    swept = swept_keys(rows)
    common = [f"{k}={rows[0].get(k, '')}" for k in sweepdir.override_keys(rows) if k not in swept]
    counts = ", ".join(f"{v} {k}" for k, v in d["status_counts"].items())
    console.print(f"[bold]sweep[/] {d['path']}  (started {d['started']}): {len(rows)} jobs, {counts}", highlight=False)
    console.print(f"common overrides: {' '.join(common) or '(none)'}", highlight=False)
    t = Table()
    side = [(k, n) for k, n in SIDE_COLUMNS if any(r.get(k) is not None for r in rows)]  # what some job records
    for col in (
        "job",
        *swept,
        "status",
        "final acc",
        *(n for _, n in side),
        "forgetting",
        "BWT",
        "seconds",
        "exps",
        "error",
    ):
        t.add_column(col, justify="left" if col in ("status", "error") else "right", overflow="fold")
    for r in rows:
        t.add_row(
            str(r["job"]),
            *(str(r.get(k, "")) for k in swept),
            _status(r["status"]),
            _num(r["final_accuracy"]),
            *(_num(r.get(k)) for k, _ in side),
            _num(r["forgetting"]),
            _num(r["bwt"]),
            _num(r["seconds"], 1),
            "-" if r["experiences_done"] is None else str(r["experiences_done"]),
            r["error"],
        )
    console.print(t)
    if d.get("finish"):
        console.print(f"to finish it (complete jobs are not run again): {d['finish']}", highlight=False, soft_wrap=True)


def render_outputs(d: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    n, m = len(d["runs"]), len(d["sweeps"])
    console.print(
        f"[bold]{d['path']}[/]: {n} run{'s' * (n != 1)}, {m} sweep{'s' * (m != 1)} (newest first)", highlight=False
    )
    if d["runs"]:
        t = Table(title="runs")
        for col in ("started", "run", "status", "experiences", "final acc", "overrides"):
            t.add_column(col)
        for r in d["runs"]:
            t.add_row(
                r["started"],
                Path(r["path"]).name,
                _status(r["status"]),
                str(r["experiences_done"]),
                _num(r["final_accuracy"]),
                " ".join(r["overrides"]),
            )
        console.print(t)
    if d["sweeps"]:
        t = Table(title="sweeps")
        for col in ("started", "sweep", "jobs", "complete", "failed", "swept"):
            t.add_column(col)
        for s in d["sweeps"]:
            swept = " ".join(f"{k}={','.join(v)}" for k, v in s["swept"].items())
            t.add_row(s["started"], Path(s["path"]).name, str(s["jobs"]), str(s["complete"]), str(s["failed"]), swept)
        console.print(t)


def main(args: list[str]) -> int:
    """`replay inspect PATH [--json]`; exit 2 with one line when PATH holds no run."""
    from replaycli.outputs.verbargs import ArgParser

    p = ArgParser(prog="replay inspect", description="Show what a run, a sweep or an outputs directory holds.")
    p.add_argument("path", metavar="PATH", help="a run directory, a sweep directory or an outputs directory")
    p.add_argument("--json", action="store_true", help="print the same as JSON")
    a = p.parse_args(args)
    d = describe(a.path)  # ConfigError / OutputError: one line and exit 2, in replaycli.cli
    if a.json:
        print(json.dumps(d, indent=2))
        return 0
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 160)  # a pipe or a file: no wrapping at 80
    {"run": render_run, "sweep": render_sweep, "outputs": render_outputs}[d["kind"]](shown(d), console)
    return 0
