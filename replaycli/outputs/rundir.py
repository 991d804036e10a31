"""The on-disk format of a run directory: this module writes every file and reads them back.

A run directory holds:
- `config.yaml`          the resolved config of the run;
- `accuracy.csv`         row i = after training experience i; columns `test_j` = accuracy on test
                         experience j (a fraction in [0, 1]); `average` = mean over the test stream;
- `buffer_histogram.csv` row i = samples per class (`class_k`) in the buffer after experience i;
- `metrics.jsonl`        one JSON object per finished experience (its index, the stream's `n_experiences`,
                         `origin_experience` of an online piece, accuracies, loss, histogram, seconds,
                         and what the `metrics` config adds: `train_accuracy`, `test_loss`,
                         `stream_loss`, `epochs` [one record per epoch], `minibatches`, resources);
- `task_il_accuracy.csv` for a class-IL run of a stream with task labels: accuracy.csv's layout, each
                         sample predicted among its task's classes (the same logits, masked at evaluation);
- `val_accuracy.csv`     with `benchmark.validation`: accuracy.csv's layout on the validation stream (held out of
                         each training experience: column `test_j` is validation experience j);
                         `val_task_il_accuracy.csv` beside it for a stream with task labels;
- `anytime.csv`          with `eval_every=K`: the anytime curve; a row per point (each experience's start,
                         every K steps, its end): `trained` (the test experience trained on), `step`
                         (training steps since the run began), `test_j` (accuracy on a fixed sample of
                         test experience j, blank before j is trained on) and `seen` (their mean);
                         summary.json then has anytime_accuracy, min_accuracy, worst_case_accuracy,
                         stability_gaps and stability_gap (replaycli.outputs.formulas.anytime);
- `stream_histogram.csv` with `benchmark.blurry`: buffer_histogram.csv's layout, row i = the training samples of
                         each class in experience i of the blurry stream;
- `class_names.json`     when the data's labels were not 0..K-1 (a folder's class names, a file's own labels):
                         the name of each class k, as a JSON list;
- `confusion.csv`        with `metrics=[...,confusion]`: the test stream's confusion matrix after each
                         experience, stacked: columns `trained`, `true`, `pred_0` .. `pred_{C-1}`;
                         row (i, k) counts the test samples of class k predicted as each class after
                         training experience i, so it sums to the test samples of class k;
                         `np.loadtxt(f, delimiter=",", skiprows=1, dtype=int)[:, 2:].reshape(E, C, C)`;
- `summary.json`         final_accuracy, average_incremental_accuracy (the mean over rows of the accuracy on
                         the experiences seen so far), forgetting, bwt, auc (online streams: the area
                         under that curve against samples seen), seconds, seed, device, versions, status;
                         final_task_il_accuracy, final_val_accuracy, final_val_task_il_accuracy beside
                         the tables above;
                         absent while the run goes on (or was killed), status "complete" at the end,
                         "failed" / "interrupted" (with `error`) when an error or Ctrl-C stopped it;
                         with `timing`: `timing` (seconds per experience and epoch); with
                         `resources`: peak_rss_mb, cpu_seconds, gpu_peak_memory_mb, disk_bytes;
- `run.log`              what the terminal showed, as plain text without colour (appended line by line);
- `checkpoint.pt`        after every experience: what `replay resume` needs (replaycli.checkpoint); removed
                         once the run is complete with `keep_checkpoint=none`;
- `checkpoints/<k>.pt`   with `keep_checkpoint=all`: the checkpoint after experience k (from 1), each kept.
A sweep directory holds one run directory per job (`0/`, `1/`, ...) and `summary.csv`
(replaycli.outputs.sweepdir).

Every file is written atomically (replaycli.outputs.files), so a killed run never leaves a
truncated file. Only the standard library is imported here: `replay inspect` stays instant.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replaycli.outputs import formulas
from replaycli.outputs.files import OutputError, csv_text, fmt, read_csv_text, read_json, read_text, write_atomic

CONFIG, ACCURACY, HISTOGRAM, METRICS, SUMMARY = (
    "config.yaml",
    "accuracy.csv",
    "buffer_histogram.csv",
    "metrics.jsonl",
    "summary.json",
)
CHECKPOINT, CHECKPOINTS = "checkpoint.pt", "checkpoints"
# replay plot RUN_DIR: NAME[SUFFIX].FORMAT; the last two only for a run with a confusion matrix or an anytime curve
RUN_FIGURES = ("accuracy_matrix", "accuracy_curves", "buffer_histogram", "confusion", "anytime")
FIGURE_FORMATS = (".png", ".pdf", ".svg")
CONFUSION, LOG, CLASS_NAMES, ANYTIME = "confusion.csv", "run.log", "class_names.json", "anytime.csv"
STREAM_HISTOGRAM = "stream_histogram.csv"
# accuracy.csv's siblings: a record's key -> its table (written when the records hold the key)
SIDE_TABLES = {
    "task_il_accuracy": "task_il_accuracy.csv",
    "val_accuracy": "val_accuracy.csv",
    "val_task_il_accuracy": "val_task_il_accuracy.csv",
}


LOGGER_DIRS = ("tensorboard", "wandb", "mlruns")  # the loggers' default folders in a run directory
WRITTEN = (  # the files a run writes whole (write_atomic), each at once
    CONFIG,
    ACCURACY,
    HISTOGRAM,
    METRICS,
    SUMMARY,
    CHECKPOINT,
    CONFUSION,
    CLASS_NAMES,
    ANYTIME,
    STREAM_HISTOGRAM,
    *SIDE_TABLES.values(),
)
RUN_FILES = (*WRITTEN, LOG, CHECKPOINTS, ".hydra", *LOGGER_DIRS)  # every name a run writes into its directory


def stale_temporaries(root: Path) -> list[Path]:
    """The temporary files a killed `write_atomic` left in `root`: `.NAME.<hex>.tmp` for the names
    of a run directory only (a user's `.notes.tmp` is not ours)."""
    names = set(WRITTEN)
    return [p for p in Path(root).glob(".*.tmp") if p.name[1:].rsplit(".", 2)[0] in names]


def check_files(root: Path) -> None:
    """Every file of a run that `root` holds, and every temporary an atomic write of ours left, is
    a regular file: a directory, a link or a FIFO in its place is an OutputError, not a traceback
    when the run writes or removes it."""
    named = [Path(root) / n for n in (*WRITTEN, LOG)]
    for path in [*named, *stale_temporaries(root)]:
        if (path.exists() or path.is_symlink()) and (path.is_symlink() or not path.is_file()):
            kind = "a link" if path.is_symlink() else "a directory" if path.is_dir() else "not a regular file"
            raise OutputError(f"{path} is {kind}, where a run keeps a file of its own; refused: move it away first")


def accuracy_text(rows: list[list[float]], n: int) -> str:
    """accuracy.csv's layout: `trained`, `test_j` for each of the `n` evaluated experiences, `average`."""
    header = ["trained", *(f"test_{j}" for j in range(n)), "average"]
    return csv_text(header, [[i, *map(fmt, row), fmt(sum(row) / len(row))] for i, row in enumerate(rows)])


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

    def write_class_names(self, names: list[str]) -> None:
        write_atomic(self.root / CLASS_NAMES, json.dumps(list(names)) + "\n")

    def add_experience(self, accuracy: list[float], histogram: list[int], record: dict[str, Any]) -> None:
        """Append the results of one finished experience, in memory only (see `write_tables`)."""
        assert len(accuracy) == self.n_test and len(histogram) == self.n_classes
        self.accuracy.append([float(a) for a in accuracy])
        self.histograms.append([int(h) for h in histogram])
        self.records.append(record)

    def truncate(self, n: int) -> None:
        """Keep the first `n` experiences in memory (those a checkpoint holds)."""
        del self.accuracy[n:], self.histograms[n:], self.records[n:]

    def write_tables(self) -> None:
        """Rewrite accuracy.csv, buffer_histogram.csv and metrics.jsonl from what is in memory."""
        write_atomic(self.root / ACCURACY, accuracy_text(self.accuracy, self.n_test))
        for key, name in SIDE_TABLES.items():
            if self.records and key in self.records[0]:
                rows = [r[key] for r in self.records]
                write_atomic(self.root / name, accuracy_text(rows, len(rows[0])))
        hist_header = ["trained", *(f"class_{k}" for k in range(self.n_classes))]
        write_atomic(self.root / HISTOGRAM, csv_text(hist_header, [[i, *r] for i, r in enumerate(self.histograms)]))
        if self.records and "stream_histogram" in self.records[0]:  # benchmark.blurry: what each experience held
            rows = [[i, *r["stream_histogram"]] for i, r in enumerate(self.records)]
            write_atomic(self.root / STREAM_HISTOGRAM, csv_text(hist_header, rows))
        write_atomic(self.root / METRICS, "".join(self._json_lines()))
        curve = formulas.anytime_curve(self.records)  # eval_every: the points during each experience
        if curve:
            header = ["trained", "step", *(f"test_{j}" for j in range(self.n_test)), "seen"]
            rows = [[o, step, *(acc + [""] * (self.n_test - len(acc))), sum(acc) / len(acc)] for o, step, acc in curve]
            write_atomic(self.root / ANYTIME, csv_text(header, rows))
        matrices = [r["confusion"] for r in self.records if "confusion" in r]  # in the records: checkpointed with them
        if matrices:
            header = ["trained", "true", *(f"pred_{k}" for k in range(self.n_classes))]
            rows = [[i, k, *row] for i, m in enumerate(matrices) for k, row in enumerate(m)]
            write_atomic(self.root / CONFUSION, csv_text(header, rows))

    def _json_lines(self) -> list[str]:
        """metrics.jsonl's lines, each record serialised once (the file is rewritten every experience)."""
        for i, r in enumerate(self.records):
            if i >= len(self._lines) or self._lines[i][0] is not r:
                del self._lines[i:]
                line = json.dumps({k: v for k, v in r.items() if k != "confusion"}, sort_keys=True) + "\n"
                self._lines.append((r, line))
        del self._lines[len(self.records) :]
        return [line for _, line in self._lines]

    def write_summary(self, summary: dict[str, Any]) -> None:
        final = self.accuracy[-1] if self.accuracy else []
        side = {
            f"final_{key}": sum(row) / len(row)
            for key in SIDE_TABLES
            for row in [self.records[-1].get(key) if self.records else None]
            if row
        }
        rows = origins(self.records)
        online = {"auc": formulas.auc(self.accuracy, [r.get("samples", 0) for r in self.records], rows)} if rows else {}
        base = {
            **side,
            **online,
            **formulas.anytime(self.records),
            **formulas.spending(self.records),
            "final_accuracy": sum(final) / len(final) if final else None,
            "average_incremental_accuracy": formulas.average_incremental_accuracy(self.accuracy, rows),
            "forgetting": formulas.forgetting(self.accuracy, rows),
            "bwt": formulas.bwt(self.accuracy, rows),
            "experiences_done": len(self.accuracy),
        }
        write_atomic(self.root / SUMMARY, json.dumps({**base, **summary}, indent=2, sort_keys=True) + "\n")


def origins(records: list[dict[str, Any]]) -> list[int] | None:
    """The test experience each row trained on (`origin_experience` of an online piece), None
    when every row is its own experience."""
    found = [r.get("origin_experience", r.get("experience")) for r in records]
    return (
        None
        if all(o == r.get("experience") for o, r in zip(found, records, strict=True))
        else [int(o) for o in found if o is not None]
    )


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


def read_table(path: Path, kind: type, columns: int = 2) -> list[list[Any]]:
    """The rows of a CSV table without its first column (`trained`), as `kind`; [] when absent.
    The header must begin with `trained` and have at least `columns` columns."""
    if not path.is_file():
        return []
    text = read_csv_text(path)
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
        if not rows or rows[0][:1] != ["trained"] or len(rows[0]) < columns:
            raise OutputError(
                f"{path} is not a table replaycli wrote (its header must begin with trained and have "
                f"at least {columns} columns)"
            )
        for n, row in enumerate(rows[1:], 2):
            if len(row) != len(rows[0]):
                raise OutputError(f"{path} line {n} has {len(row)} cells; its header has {len(rows[0])}")
        return [[kind(v) for v in row[1:]] for row in rows[1:]]
    except (ValueError, csv.Error) as e:
        raise OutputError(f"{path} is not a valid table ({e})") from None


def read_run(path: str | Path) -> RunRecord:
    """Read a run directory back (a run still going or killed reads as incomplete)."""
    path = Path(path)
    if not is_run(path):
        raise OutputError(f"{path} is not a run directory (no {CONFIG})")
    acc = [row[:-1] for row in read_table(path / ACCURACY, float, 3)]  # drop the average column
    hist = read_table(path / HISTOGRAM, int)
    metrics = []
    if (path / METRICS).is_file():
        for n, line in enumerate(read_text(path / METRICS).splitlines(), 1):
            try:
                metrics.append(json.loads(line))
            except json.JSONDecodeError:
                raise OutputError(f"{path / METRICS} line {n} is not JSON") from None
            if not isinstance(metrics[-1], dict):
                raise OutputError(f"{path / METRICS} line {n} is not a JSON object")
    summary = read_summary(path)
    return RunRecord(path, acc, hist, metrics, summary, read_text(path / CONFIG), read_confusion(path))


def read_confusion(path: str | Path) -> list[list[list[int]]]:
    """confusion.csv as [trained][true][predicted] counts; [] when the run has none."""
    rows = read_table(Path(path) / CONFUSION, int)  # [true, pred_0, ...] per line, `trained` dropped
    n = len(rows[0]) - 1 if rows else 0
    if any(len(r) != n + 1 for r in rows) or len(rows) % max(n, 1):
        raise OutputError(f"{Path(path) / CONFUSION} is not a stack of {n} x {n} matrices")
    return [[r[1:] for r in rows[i : i + n]] for i in range(0, len(rows), n)] if n else []


def append_log(path: str | Path, text: str) -> None:
    """Append `text` (plain, no colour codes) and a newline to the run's log, `run.log`."""
    try:  # never through a link: run.log is the run's own file
        fd = os.open(Path(path) / LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as e:
        raise OutputError(f"{Path(path) / LOG} cannot be appended to ({e.strerror}); it must be a plain file") from None
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(text.rstrip("\n") + "\n")


def read_log(path: str | Path) -> str:
    """run.log of a run ('' when it has none)."""
    log = Path(path) / LOG
    return read_text(log) if log.is_file() else ""


def read_summary(root: Path) -> dict[str, Any]:
    """summary.json of a run, {} while the run has not finished."""
    path = Path(root) / SUMMARY
    return read_json(path) if path.is_file() else {}


def class_names(root: Path, n: int) -> list[str]:
    """What each of the `n` classes is called: class_names.json where the data had names (a folder's
    class folders, a file's own labels), else `class k`; a file that does not hold n names is
    not used."""
    path = Path(root) / CLASS_NAMES
    if path.is_file():
        try:
            names = read_json(path, list)
        except OutputError:
            names = None
        if isinstance(names, list) and len(names) == n and all(isinstance(x, (str, int)) for x in names):
            return [str(x) for x in names]
    return [f"class {k}" for k in range(n)]
