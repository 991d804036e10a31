"""Outputs for the tests of inspect, compare, plot and the sweep summary: one real sweep, run once
per session through the joblib launcher, and run directories written directly with RunWriter
(cheap, with numbers chosen by the test)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import replay

from replaycli.outputs.rundir import RunWriter

# 3 memory sizes x 2 seeds on the tiny stream; max_size=-1 is refused, so 2 of the 6 jobs fail.
SWEEP = (
    "hydra/launcher=joblib",
    "hydra.launcher.n_jobs=2",
    "buffer.max_size=-1,20,40",
    "seed=0,1",
    "epochs=1",
    "benchmark.n_experiences=2",
    "progress=none",
    "device=cpu",
)
_cache: dict[str, tuple[subprocess.CompletedProcess, Path]] = {}


def real_sweep(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """The session's sweep (run at the first call): its process and its sweep directory."""
    if "sweep" not in _cache:
        cwd = tmp_path_factory.mktemp("real_sweep")
        proc = replay("run", "-m", *SWEEP, f"hydra.sweep.dir={cwd / 'sweep'}", cwd=cwd)
        _cache["sweep"] = (proc, cwd / "sweep")
    return _cache["sweep"]


def write_run(
    root: Path,
    accuracy: list[list[float]],
    histograms: list[list[int]],
    overrides: list[str] = (),
    config: str = "seed: 0\n",
    complete: bool = True,
    started: float | None = None,
    side: dict[str, list[list[float]]] | None = None,
) -> Path:
    """A run directory as `replay run` writes it, with the given numbers; `complete=False` leaves
    it as a run killed after len(accuracy) experiences; `side`: the side tables' rows by record key
    (task_il_accuracy, val_accuracy, ...)."""
    n_test, n_classes = len(accuracy[0]), len(histograms[0])
    w = RunWriter(root, n_test, n_classes)
    w.write_config(config)
    hydra = root / ".hydra"
    hydra.mkdir()
    (hydra / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides) or "[]\n")
    for i, (acc, hist) in enumerate(zip(accuracy, histograms, strict=True)):
        extra = {k: rows[i] for k, rows in (side or {}).items()}
        w.add_experience(acc, hist, {"experience": i, "accuracy": acc, "histogram": hist, **extra})
        w.write_tables()
    if complete:
        w.write_summary({"status": "complete", "seconds": 1.5, "seed": 0})
    if started is not None:  # when the run started, as `inspect` reads it
        os.utime(hydra / "overrides.yaml", (started, started))
    return root
