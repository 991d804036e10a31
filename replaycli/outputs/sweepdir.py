"""The sweep directories and the outputs tree, as `inspect`, `compare` and `plot` read them.

A sweep job that failed holds `failure.json` (written by the sweep callback: error, type,
overrides, traceback); its dir may hold nothing else when the run was refused up front.
`summary.csv` of a sweep: one row per job: `job`, the job's overrides (one column per key, in
order of first appearance), `status` (see status()), SWEEP_METRICS, SIDE_METRICS that any job
has, `error`. Only the standard library (and PyYAML, when a YAML file is read) is imported here.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from replaycli.outputs.files import OutputError, csv_text, fmt, read_csv_text, read_json, read_text, write_atomic
from replaycli.outputs.rundir import (
    ACCURACY,
    CONFIG,
    FIGURE_FORMATS,
    RUN_FIGURES,
    RUN_FILES,
    is_run,
    read_summary,
    read_table,
)

SWEEP_SUMMARY = "summary.csv"
PLAN, DONE = ".sweep.json", ".sweep.done"  # the sweep's plan (jobs, start) and one byte per finished job
MULTIRUN = "multirun.yaml"  # Hydra's record of the sweep
SWEEP_FIGURES = ("final_accuracy", "seen_accuracy")  # replay plot SWEEP_DIR: NAME[SUFFIX].FORMAT
FAILURE = "failure.json"
OVERRIDES = ".hydra/overrides.yaml"
HYDRA_CONFIG = ".hydra/hydra.yaml"
SWEEP_METRICS = ["final_accuracy", "forgetting", "bwt", "seconds", "experiences_done"]
SIDE_METRICS = [
    "final_val_accuracy",
    "final_task_il_accuracy",
    "final_val_task_il_accuracy",
    "auc",
    "online_accuracy",
]  # columns only when a job has them
RESULTS = {"job", "status", "error", *SWEEP_METRICS, *SIDE_METRICS}  # a row's columns that are no override


def override_keys(rows: list[dict[str, Any]]) -> list[str]:
    """The override keys of a sweep's rows (every column but RESULTS), in order of first appearance."""
    return list(dict.fromkeys(k for r in rows for k in r if k not in RESULTS))


def _yaml(path: Path) -> Any:
    import yaml  # PyYAML, which omegaconf needs anyway; imported only when a YAML file is read

    try:
        return yaml.load(read_text(path), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        raise OutputError(f"{path} is not valid YAML ({str(e).splitlines()[0]})") from None


def _mapping(path: Path) -> dict[str, Any]:
    tree = _yaml(path) or {}
    if not isinstance(tree, dict):
        raise OutputError(f"{path} holds a YAML {type(tree).__name__}, not a mapping")
    return tree


def write_failure(root: Path, error: str, kind: str, overrides: list[str], traceback_text: str) -> None:
    """Record why a job failed (`kind`: the exception's class name) in its directory."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    record = {"error": error, "type": kind, "overrides": list(overrides), "traceback": traceback_text}
    write_atomic(root / FAILURE, json.dumps(record, indent=2, sort_keys=True) + "\n")


def read_failure(root: Path) -> dict[str, Any] | None:
    path = Path(root) / FAILURE
    return read_json(path) if path.is_file() else None


def status(root: Path) -> str:
    """complete | failed | interrupted (as summary.json or failure.json say) | incomplete (still
    running, or killed before it could say)."""
    said = read_summary(root).get("status")
    if said:
        return str(said)
    return "failed" if (Path(root) / FAILURE).is_file() else "incomplete"


def error(root: Path) -> str:
    """Why a run did not complete ('' when it did or nothing says)."""
    failure = read_failure(root)
    return failure["error"] if failure else str(read_summary(root).get("error", ""))


def read_overrides(root: Path) -> list[str]:
    """The command-line overrides of a run or job, e.g. ['buffer.max_size=50', 'seed=1']."""
    root = Path(root)
    if (root / OVERRIDES).is_file():
        overrides = _yaml(root / OVERRIDES) or []
        if not isinstance(overrides, list):
            raise OutputError(f"{root / OVERRIDES} holds a YAML {type(overrides).__name__}, not a list")
        return [str(o) for o in overrides]
    failure = read_failure(root)
    return list(failure["overrides"]) if failure else []


def override_items(overrides: list[str]) -> dict[str, str]:
    """['buffer.max_size=50', '+x=1', 'buffer=none'] -> {'buffer.max_size': '50', 'x': '1', 'buffer': 'none'}."""
    items = {}
    for o in overrides:
        key, sep, value = o.partition("=")
        if sep and not key.startswith("~"):
            items[key.lstrip("+")] = value
    return items


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'buffer': {'max_size': 50}} -> {'buffer.max_size': 50}; lists stay values."""
    flat: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        flat.update(flatten(v, key) if isinstance(v, dict) else {key: v})
    return flat


def run_params(root: Path) -> dict[str, Any]:
    """Every config key of a run, dotted (`buffer.max_size`), plus the option chosen in each config
    group (`buffer: parametric`, from .hydra/hydra.yaml)."""
    root = Path(root)
    params = flatten(_mapping(root / CONFIG)) if is_run(root) else {}
    if (root / HYDRA_CONFIG).is_file():
        hydra_cfg = _mapping(root / HYDRA_CONFIG).get("hydra") or {}
        choices = (hydra_cfg.get("runtime") or {}).get("choices") or {} if isinstance(hydra_cfg, dict) else {}
        if not isinstance(choices, dict):
            raise OutputError(f"{root / HYDRA_CONFIG}: hydra.runtime.choices is not a mapping")
        params.update({k: v for k, v in choices.items() if not k.startswith("hydra/")})
    return params


def is_job(path: Path) -> bool:
    """A run directory, or what is left of a sweep job that failed before writing one."""
    path = Path(path)
    return is_run(path) or (path / OVERRIDES).is_file() or (path / FAILURE).is_file()


def job_dirs(sweep: Path) -> list[Path]:
    """The job directories of a sweep (`0/`, `1/`, ...), in job order."""
    sweep = Path(sweep)
    if not sweep.is_dir():
        return []
    jobs = [p for p in sweep.iterdir() if p.is_dir() and is_job(p)]
    return sorted(jobs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else p.name))


def is_sweep(path: Path) -> bool:
    path = Path(path)
    return not is_job(path) and ((path / SWEEP_SUMMARY).is_file() or bool(job_dirs(path)))


def job_row(job: Path) -> dict[str, Any]:
    """One row of a sweep summary: job number, overrides, status, metrics, error."""
    summary, state = read_summary(job), status(job)
    name = int(job.name) if job.name.isdigit() else job.name
    row: dict[str, Any] = {"job": name, **override_items(read_overrides(job)), "status": state}
    for key in SWEEP_METRICS:
        row[key] = summary.get(key) if state == "complete" else None
    for key in SIDE_METRICS:
        if key in summary:
            row[key] = summary[key] if state == "complete" else None
    if state != "complete" and is_run(job):
        row["experiences_done"] = len(read_table(job / ACCURACY, float))
    row["error"] = error(job) if state != "complete" else ""
    return row


def sweep_rows(sweep: Path) -> list[dict[str, Any]]:
    """The summary rows of a sweep, read from its job directories as they are now."""
    return [job_row(j) for j in job_dirs(sweep)]


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    side = [k for k in SIDE_METRICS if any(k in r for r in rows)]
    return ["job", *override_keys(rows), "status", *SWEEP_METRICS, *side, "error"]


def write_sweep_summary(sweep: Path, rows: list[dict[str, Any]] | None = None) -> Path:
    """Write `summary.csv` of a sweep (`rows`: sweep_rows(sweep) unless given); returns its path."""
    rows = sweep_rows(sweep) if rows is None else rows
    header = _columns(rows)
    cells = [[_cell(r.get(k)) for k in header] for r in rows]
    path = Path(sweep) / SWEEP_SUMMARY
    write_atomic(path, csv_text(header, cells))
    return path


def start_sweep_summary(sweep: Path, override_keys: list[str]) -> Path:
    """`summary.csv` with its header only (the planned jobs' override keys), as a sweep starts."""
    path = Path(sweep) / SWEEP_SUMMARY
    write_atomic(path, csv_text(["job", *override_keys, "status", *SWEEP_METRICS, "error"], []))
    return path


def append_sweep_row(sweep: Path, row: dict[str, Any]) -> None:
    """Append one job's row to `summary.csv` in the order of its header (one `write` of a whole
    line with O_APPEND: jobs finishing in parallel processes never mix their lines). Rewritten
    whole (with any column a job added) when the sweep ends."""
    import os

    path = Path(sweep) / SWEEP_SUMMARY
    try:
        with open(path, newline="") as f:
            header = next(csv.reader([f.readline()]), [])
    except OSError:
        header = []
    if not header:  # a sweep started before the header was written (or by hand): write it whole
        write_sweep_summary(sweep)
        return
    line = csv_text(header, [[_cell(row.get(k)) for k in header]]).split("\n", 1)[1]
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _cell(v: Any) -> str:
    return "" if v is None else fmt(v) if isinstance(v, float) else str(v)


def read_sweep_summary(sweep: Path) -> list[dict[str, Any]]:
    """Read `summary.csv` back: metrics as numbers (None where empty), overrides as text."""
    path = Path(sweep) / SWEEP_SUMMARY
    text = read_csv_text(path)
    try:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        for r in rows:
            r["job"] = int(r["job"]) if r["job"].isdigit() else r["job"]
            for key in SWEEP_METRICS:
                v = r.get(key) or None
                r[key] = None if v is None else int(v) if key == "experiences_done" else float(v)
    except (KeyError, ValueError, AttributeError, csv.Error) as e:
        raise OutputError(f"{path} is not a sweep summary ({e})") from None
    return rows


def read_sweep(sweep: Path) -> list[dict[str, Any]]:
    """The rows of a sweep: from its job directories, and from `summary.csv` for the jobs that have
    none (all of them when the directories are gone; those never started when it was stopped)."""
    rows = sweep_rows(sweep)
    if not (Path(sweep) / SWEEP_SUMMARY).is_file():
        return rows
    have = {r["job"] for r in rows}
    return rows + [r for r in read_sweep_summary(sweep) if r["job"] not in have]


def write_interrupted(sweep: Path, planned: list[list[str]]) -> None:
    """summary.csv of a sweep stopped midway: its jobs as they are, and a `not started` row for
    each planned job (its overrides) that never began."""
    rows = sweep_rows(sweep)
    have = {r["job"] for r in rows}
    rows += [
        {"job": i, **override_items(o), "status": "not started", "error": ""}
        for i, o in enumerate(planned)
        if i not in have
    ]
    write_sweep_summary(sweep, sorted(rows, key=lambda r: (not isinstance(r["job"], int), str(r["job"]).zfill(9))))


def started(path: Path) -> float:
    """When a run or sweep started (the time its first file was written)."""
    path = Path(path)
    for name in (OVERRIDES, "multirun.yaml", CONFIG):
        if (path / name).exists():
            return (path / name).stat().st_mtime
    return path.stat().st_mtime


def find_outputs(root: Path, links: bool = True) -> tuple[list[Path], list[Path]]:
    """The runs and the sweeps under an outputs directory (in its runs/ and sweeps/, or directly
    in it), newest first; `links=False` leaves out those reached through a symbolic link (what
    writes into them must not leave the tree)."""
    root = Path(root)
    parents = [p for p in (root / "runs", root / "sweeps") if p.is_dir()] or [root]
    children = [c for p in parents for c in p.iterdir() if c.is_dir() and (links or not c.is_symlink())]
    runs = sorted((c for c in children if is_run(c)), key=started, reverse=True)
    sweeps = sorted((c for c in children if is_sweep(c)), key=started, reverse=True)
    return runs, sweeps


def foreign(path: Path, sweep: bool) -> str | None:
    """What in `path` replaycli did not write: None when it is a run (`sweep=False`: Hydra's
    record of its overrides, or a sweep job's record of its failure, then nothing but a run's
    files and figures) or a sweep (Hydra's multirun.yaml or our summary, then nothing but the
    sweep's files, figures and such runs); else the first name that is not ours. `--overwrite`
    removes only what this says is ours: never a folder for one file name (a config.yaml)."""
    path = Path(path)
    figures: tuple[str, ...]
    if sweep:
        names, figures = (
            {MULTIRUN, SWEEP_SUMMARY, PLAN, DONE, ".hydra", ".submitit"},
            SWEEP_FIGURES,
        )  # submitit: its logs
        marked = (path / MULTIRUN).is_file() or (path / SWEEP_SUMMARY).is_file()
    else:
        names, figures = {*RUN_FILES, FAILURE}, RUN_FIGURES
        marked = (path / OVERRIDES).is_file() or (path / FAILURE).is_file()
    entries = sorted(path.iterdir())
    if not marked:
        return entries[0].name if entries else "."
    for entry in entries:
        name = entry.name
        figure = entry.suffix in FIGURE_FORMATS and name.startswith(figures)
        run = sweep and entry.is_dir() and not entry.is_symlink() and foreign(entry, False) is None
        temporary = name.startswith(".") and name.endswith(".tmp")  # an atomic write cut short
        if not (name in names or figure or run or temporary):
            return name
    return None


def planned_count(sweep: Path) -> int | None:
    """How many jobs the sweep planned when it started (`.sweep.json`), None when unknown."""
    try:
        jobs = json.loads((Path(sweep) / PLAN).read_text()).get("jobs")
    except (OSError, ValueError, AttributeError):
        return None
    return jobs if isinstance(jobs, int) and not isinstance(jobs, bool) and jobs >= 0 else None


def finishing_command(sweep: Path) -> str | None:
    """`replay run -m ...` as the sweep was started (its multirun.yaml), into its directory: issued
    again, it finishes what is missing; None without a readable multirun.yaml."""
    import shlex

    words = finishing_args(sweep)
    return None if words is None else " ".join(shlex.quote(w) for w in ["replay", "run", *words])


def finishing_args(sweep: Path) -> list[str] | None:
    """The arguments of `finishing_command` after `replay run`."""
    import yaml  # omegaconf's own YAML reader: inspect imports neither torch, Hydra nor omegaconf

    try:
        section = yaml.safe_load((Path(sweep) / MULTIRUN).read_text())["hydra"]
        overrides = section["overrides"]
        hydra = [str(o) for o in overrides["hydra"] if not str(o).startswith(("hydra.sweep.dir=", "hydra.mode="))]
        task = [str(o) for o in overrides["task"]]
        folders = [s["path"] for s in section["runtime"]["config_sources"] if s.get("provider") == "command-line"]
        name = str(section["job"]["config_name"])
    except Exception:  # noqa: BLE001 (not Hydra's file, or no overrides in it)
        return None
    flags = [*(w for f in folders for w in ("--config-dir", str(f))), *(["-cn", name] if name != "config" else [])]
    return ["-m", *flags, *hydra, *task, f"hydra.sweep.dir={Path(sweep).absolute()}"]
