"""The on-disk format of a run directory: this module writes every file and reads them back.

A run directory holds:
- `config.yaml`          the resolved config of the run;
- `accuracy.csv`         row i = after training experience i; columns `test_j` = accuracy on test
                         experience j (a fraction in [0, 1]); `average` = mean over the test stream;
- `buffer_histogram.csv` row i = samples per class (`class_k`) in the buffer after experience i;
- `metrics.jsonl`        one JSON object per finished experience (accuracies, loss, histogram, seconds);
- `summary.json`         final_accuracy, forgetting, bwt, seconds, seed, device, versions, status.
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
SWEEP_SUMMARY = "summary.csv"


class OutputError(ValueError):
    """A directory that is not a readable run or sweep."""


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same directory and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
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

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)

    def write_config(self, yaml_text: str) -> None:
        write_atomic(self.root / CONFIG, yaml_text)

    def experience_done(self, accuracy: list[float], histogram: list[int], record: dict[str, Any]) -> None:
        """Append the results of one finished experience and rewrite the tables."""
        assert len(accuracy) == self.n_test and len(histogram) == self.n_classes
        self.accuracy.append([float(a) for a in accuracy])
        self.histograms.append([int(h) for h in histogram])
        self.records.append(record)
        self._write_tables()

    def _write_tables(self) -> None:
        acc_header = ["trained", *(f"test_{j}" for j in range(self.n_test)), "average"]
        acc_rows = [[i, *map(_fmt, row), _fmt(sum(row) / len(row))] for i, row in enumerate(self.accuracy)]
        write_atomic(self.root / ACCURACY, _csv(acc_header, acc_rows))
        hist_header = ["trained", *(f"class_{k}" for k in range(self.n_classes))]
        write_atomic(self.root / HISTOGRAM, _csv(hist_header, [[i, *r] for i, r in enumerate(self.histograms)]))
        write_atomic(self.root / METRICS, "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.records))

    def restore(self, run: "RunRecord") -> None:
        """Continue from a run read back from disk (resume)."""
        self.accuracy = [list(r) for r in run.accuracy]
        self.histograms = [list(r) for r in run.histograms]
        self.records = list(run.metrics)

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

    @property
    def complete(self) -> bool:
        return self.summary.get("status") == "complete"


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
    return RunRecord(path, acc, hist, metrics, summary, (path / CONFIG).read_text())
