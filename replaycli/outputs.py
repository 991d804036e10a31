"""The on-disk format of a run directory: this module writes every file and reads them back.

A run directory holds:
- `config.yaml`          the resolved config of the run;
- `accuracy.csv`         row i = after training experience i; columns `test_j` = accuracy on test
                         experience j (a fraction in [0, 1]); `average` = mean over the test stream;
- `buffer_histogram.csv` row i = samples per class (`class_k`) in the buffer after experience i;
- `metrics.jsonl`        one JSON object per finished experience (accuracies, loss, histogram, seconds,
                         and what the `metrics` config adds: `train_accuracy`, `test_loss`,
                         `stream_loss`, `epochs` [one record per epoch], `minibatches`, resources);
- `confusion.csv`        with `metrics=[...,confusion]`: the test stream's confusion matrix after each
                         experience, stacked: columns `trained`, `true`, `pred_0` .. `pred_{C-1}`;
                         row (i, k) counts the test samples of class k predicted as each class after
                         training experience i, so it sums to the test samples of class k;
                         `np.loadtxt(f, delimiter=",", skiprows=1, dtype=int)[:, 2:].reshape(E, C, C)`;
- `summary.json`         final_accuracy, forgetting, bwt, seconds, seed, device, versions, status;
                         absent while the run goes on (or was killed), status "complete" at the end,
                         "failed" / "interrupted" (with `error`) when an error or Ctrl-C stopped it;
                         with `timing`: `timing` (seconds per experience and epoch); with
                         `resources`: peak_rss_mb, cpu_seconds, gpu_peak_memory_mb, disk_bytes;
- `run.log`              what the terminal showed, as plain text without colour (appended line by line);
- `checkpoint.pt`        after every experience: what `replay resume` needs (replaycli.checkpoint).
A sweep directory holds one run directory per job (`0/`, `1/`, ...) and `summary.csv`.

Every file is written atomically (a temporary file, then a rename), so a killed run never leaves
a truncated file. Only the standard library is imported here: `replay inspect` stays instant.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG, ACCURACY, HISTOGRAM, METRICS, SUMMARY = (
    "config.yaml", "accuracy.csv", "buffer_histogram.csv", "metrics.jsonl", "summary.json",
)
CHECKPOINT = "checkpoint.pt"
CONFUSION, LOG = "confusion.csv", "run.log"
SWEEP_SUMMARY = "summary.csv"


class OutputError(ValueError):
    """A directory that is not a readable run or sweep."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write `text` (or bytes) to `path` through a temporary file in the same directory and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") if isinstance(text, bytes) else os.fdopen(fd, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _fmt(x: float) -> str:
    return repr(float(x))  # shortest exact float text: bit-for-bit reproducible files


# --- metrics ---------------------------------------------------------------------------------
def forgetting(acc: list[list[float]]) -> float:
    """Mean over the experiences trained before the last of (best earlier accuracy - final accuracy)."""
    if len(acc) < 2:
        return 0.0
    cols = range(min(len(acc), len(acc[-1])) - 1)  # experiences trained before the last one
    drops = [max(acc[i][j] for i in range(len(acc) - 1)) - acc[-1][j] for j in cols]
    return sum(drops) / len(drops) if drops else 0.0


def bwt(acc: list[list[float]]) -> float:
    """Backward transfer: mean over j < last of (final accuracy on j - accuracy on j right after j)."""
    k = min(len(acc), len(acc[-1])) if acc else 0
    if k < 2:
        return 0.0
    return sum(acc[-1][j] - acc[j][j] for j in range(k - 1)) / (k - 1)


# --- writing ---------------------------------------------------------------------------------
@dataclass
class RunWriter:
    """Writes a run directory as experiences finish; every call rewrites whole files atomically."""

    root: Path
    n_test: int
    n_classes: int
    accuracy: list[list[float]] = field(default_factory=list)
    histograms: list[list[int]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    _lines: list[tuple[dict[str, Any], str]] = field(default_factory=list, repr=False)  # (record, its JSON line)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)

    def write_config(self, yaml_text: str) -> None:
        write_atomic(self.root / CONFIG, yaml_text)

    def experience_done(self, accuracy: list[float], histogram: list[int], record: dict[str, Any]) -> None:
        """Append the results of one finished experience and rewrite the tables."""
        self.add_experience(accuracy, histogram, record)
        self.write_tables()

    def add_experience(self, accuracy: list[float], histogram: list[int], record: dict[str, Any]) -> None:
        """Append the results of one finished experience, in memory only (see `write_tables`)."""
        assert len(accuracy) == self.n_test and len(histogram) == self.n_classes
        self.accuracy.append([float(a) for a in accuracy])
        self.histograms.append([int(h) for h in histogram])
        self.records.append(record)

    def write_tables(self) -> None:
        """Rewrite accuracy.csv, buffer_histogram.csv and metrics.jsonl from what is in memory."""
        acc_header = ["trained", *(f"test_{j}" for j in range(self.n_test)), "average"]
        acc_rows = [[i, *map(_fmt, row), _fmt(sum(row) / len(row))] for i, row in enumerate(self.accuracy)]
        write_atomic(self.root / ACCURACY, _csv(acc_header, acc_rows))
        hist_header = ["trained", *(f"class_{k}" for k in range(self.n_classes))]
        write_atomic(self.root / HISTOGRAM, _csv(hist_header, [[i, *r] for i, r in enumerate(self.histograms)]))
        write_atomic(self.root / METRICS, "".join(self._json_lines()))
        matrices = [r["confusion"] for r in self.records if "confusion" in r]  # in the records: checkpointed with them
        if matrices:
            header = ["trained", "true", *(f"pred_{k}" for k in range(self.n_classes))]
            rows = [[i, k, *row] for i, m in enumerate(matrices) for k, row in enumerate(m)]
            write_atomic(self.root / CONFUSION, _csv(header, rows))

    def _json_lines(self) -> list[str]:
        """metrics.jsonl's lines, each record serialised once (the file is rewritten every experience)."""
        for i, r in enumerate(self.records):
            if i >= len(self._lines) or self._lines[i][0] is not r:
                del self._lines[i:]
                line = json.dumps({k: v for k, v in r.items() if k != "confusion"}, sort_keys=True) + "\n"
                self._lines.append((r, line))
        del self._lines[len(self.records):]
        return [line for _, line in self._lines]

    def restore(self, run: "RunRecord") -> None:
        """Continue from a run read back from disk (resume)."""
        self.accuracy = [list(r) for r in run.accuracy]
        self.histograms = [list(r) for r in run.histograms]
        self.records = [dict(r) for r in run.metrics]
        for r, m in zip(self.records, run.confusion):
            r["confusion"] = m

    def write_summary(self, summary: dict[str, Any]) -> None:
        final = self.accuracy[-1] if self.accuracy else []
        base = {
            "final_accuracy": sum(final) / len(final) if final else None,
            "forgetting": forgetting(self.accuracy),
            "bwt": bwt(self.accuracy),
            "experiences_done": len(self.accuracy),
        }
        write_atomic(self.root / SUMMARY, json.dumps({**base, **summary}, indent=2, sort_keys=True) + "\n")


# --- reading ---------------------------------------------------------------------------------
@dataclass
class RunRecord:
    path: Path
    accuracy: list[list[float]]
    histograms: list[list[int]]
    metrics: list[dict[str, Any]]
    summary: dict[str, Any]
    config_text: str
    confusion: list[list[list[int]]] = field(default_factory=list)  # [trained][true][predicted]; [] without it

    @property
    def complete(self) -> bool:
        return self.summary.get("status") == "complete"

    @property
    def status(self) -> str:
        """complete | failed | interrupted (summary.json says so) | incomplete (running or killed)."""
        return str(self.summary.get("status") or "incomplete")

    @property
    def resumable(self) -> bool:
        """Not complete, and a checkpoint to go on from: `replay resume PATH` works."""
        return not self.complete and (self.path / CHECKPOINT).is_file()


def is_run(path: Path) -> bool:
    return (Path(path) / CONFIG).is_file()


def _read_table(path: Path, kind: type) -> list[list[Any]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    try:
        return [[kind(v) for v in row[1:]] for row in rows[1:]]
    except (ValueError, IndexError) as e:
        raise OutputError(f"{path} is not a valid table ({e})") from e


def read_run(path: str | Path) -> RunRecord:
    """Read a run directory back (a run still going or killed reads as incomplete)."""
    path = Path(path)
    if not is_run(path):
        raise OutputError(f"{path} is not a run directory (no {CONFIG})")
    acc = [row[:-1] for row in _read_table(path / ACCURACY, float)]  # drop the average column
    hist = _read_table(path / HISTOGRAM, int)
    metrics = []
    if (path / METRICS).is_file():
        for n, line in enumerate((path / METRICS).read_text().splitlines(), 1):
            try:
                metrics.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise OutputError(f"{path / METRICS} line {n} is not JSON") from e
    summary: dict[str, Any] = {}
    if (path / SUMMARY).is_file():
        try:
            summary = json.loads((path / SUMMARY).read_text())
        except json.JSONDecodeError as e:
            raise OutputError(f"{path / SUMMARY} is not JSON") from e
    return RunRecord(path, acc, hist, metrics, summary, (path / CONFIG).read_text(), read_confusion(path))


def read_confusion(path: str | Path) -> list[list[list[int]]]:
    """confusion.csv as [trained][true][predicted] counts; [] when the run has none."""
    rows = _read_table(Path(path) / CONFUSION, int)  # [true, pred_0, ...] per line, `trained` dropped
    n = len(rows[0]) - 1 if rows else 0
    if any(len(r) != n + 1 for r in rows) or len(rows) % max(n, 1):
        raise OutputError(f"{Path(path) / CONFUSION} is not a stack of {n} x {n} matrices")
    return [[r[1:] for r in rows[i:i + n]] for i in range(0, len(rows), n)] if n else []


def append_log(path: str | Path, text: str) -> None:
    """Append `text` (plain, no colour codes) and a newline to the run's log, `run.log`."""
    with open(Path(path) / LOG, "a", encoding="utf-8") as f:
        f.write(text.rstrip("\n") + "\n")


def read_log(path: str | Path) -> str:
    """run.log of a run ('' when it has none)."""
    log = Path(path) / LOG
    return log.read_text(encoding="utf-8") if log.is_file() else ""


def disk_bytes(path: str | Path) -> int:
    """The size on disk of every file under `path` (links not followed), in bytes."""
    total = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed while we walk (a temporary file renamed)
                pass
    return total


# --- jobs, sweeps and the outputs tree (read by inspect, compare and plot) --------------------
# A sweep job that failed holds `failure.json` (written by the sweep callback: error, type,
# overrides, traceback); its dir may hold nothing else when the run was refused up front.
# `summary.csv` of a sweep: one row per job: `job`, the job's overrides (one column per key, in
# order of first appearance), `status` (see status()), SWEEP_METRICS, `error`.
FAILURE = "failure.json"
OVERRIDES = ".hydra/overrides.yaml"
HYDRA_CONFIG = ".hydra/hydra.yaml"
SWEEP_METRICS = ["final_accuracy", "forgetting", "bwt", "seconds", "experiences_done"]


def _yaml(path: Path) -> Any:
    import yaml  # PyYAML, which omegaconf needs anyway; imported only when a YAML file is read

    try:
        return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        raise OutputError(f"{path} is not valid YAML ({str(e).splitlines()[0]})") from e


def write_failure(root: Path, error: str, kind: str, overrides: list[str], traceback_text: str) -> None:
    """Record why a job failed (`kind`: the exception's class name) in its directory."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    record = {"error": error, "type": kind, "overrides": list(overrides), "traceback": traceback_text}
    write_atomic(root / FAILURE, json.dumps(record, indent=2, sort_keys=True) + "\n")


def read_failure(root: Path) -> dict[str, Any] | None:
    path = Path(root) / FAILURE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise OutputError(f"{path} is not JSON") from e


def read_summary(root: Path) -> dict[str, Any]:
    """summary.json of a run, {} while the run has not finished."""
    path = Path(root) / SUMMARY
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise OutputError(f"{path} is not JSON") from e


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
        return [str(o) for o in (_yaml(root / OVERRIDES) or [])]
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
    params = flatten(_yaml(root / CONFIG) or {}) if is_run(root) else {}
    if (root / HYDRA_CONFIG).is_file():
        hydra_cfg = (_yaml(root / HYDRA_CONFIG) or {}).get("hydra", {})
        choices = hydra_cfg.get("runtime", {}).get("choices") or {}
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
    if state != "complete" and is_run(job):
        row["experiences_done"] = len(_read_table(job / ACCURACY, float))
    row["error"] = error(job) if state != "complete" else ""
    return row


def sweep_rows(sweep: Path) -> list[dict[str, Any]]:
    """The summary rows of a sweep, read from its job directories as they are now."""
    return [job_row(j) for j in job_dirs(sweep)]


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    fixed = {"job", "status", "error", *SWEEP_METRICS}
    keys = list(dict.fromkeys(k for r in rows for k in r if k not in fixed))
    return ["job", *keys, "status", *SWEEP_METRICS, "error"]


def write_sweep_summary(sweep: Path, rows: list[dict[str, Any]] | None = None) -> Path:
    """Write `summary.csv` of a sweep (`rows`: sweep_rows(sweep) unless given); returns its path."""
    rows = sweep_rows(sweep) if rows is None else rows
    header = _columns(rows)
    cells = [[_cell(r.get(k)) for k in header] for r in rows]
    path = Path(sweep) / SWEEP_SUMMARY
    write_atomic(path, _csv(header, cells))
    return path


def _cell(v: Any) -> str:
    return "" if v is None else _fmt(v) if isinstance(v, float) else str(v)


def read_sweep_summary(sweep: Path) -> list[dict[str, Any]]:
    """Read `summary.csv` back: metrics as numbers (None where empty), overrides as text."""
    path = Path(sweep) / SWEEP_SUMMARY
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    try:
        for r in rows:
            r["job"] = int(r["job"]) if r["job"].isdigit() else r["job"]
            for key in SWEEP_METRICS:
                v = r.get(key) or None
                r[key] = None if v is None else int(v) if key == "experiences_done" else float(v)
    except (KeyError, ValueError) as e:
        raise OutputError(f"{path} is not a sweep summary ({e})") from e
    return rows


def read_sweep(sweep: Path) -> list[dict[str, Any]]:
    """The rows of a sweep: from its job directories, or from `summary.csv` when they are gone."""
    return sweep_rows(sweep) if job_dirs(sweep) else read_sweep_summary(sweep)


def started(path: Path) -> float:
    """When a run or sweep started (the time its first file was written)."""
    path = Path(path)
    for name in (OVERRIDES, "multirun.yaml", CONFIG):
        if (path / name).exists():
            return (path / name).stat().st_mtime
    return path.stat().st_mtime


def find_outputs(root: Path) -> tuple[list[Path], list[Path]]:
    """The runs and the sweeps under an outputs directory (in its runs/ and sweeps/, or directly
    in it), newest first."""
    root = Path(root)
    parents = [p for p in (root / "runs", root / "sweeps") if p.is_dir()] or [root]
    children = [c for p in parents for c in p.iterdir() if c.is_dir()]
    runs = sorted((c for c in children if is_run(c)), key=started, reverse=True)
    sweeps = sorted((c for c in children if is_sweep(c)), key=started, reverse=True)
    return runs, sweeps
