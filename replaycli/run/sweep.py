"""Hydra callbacks: the sweep summary (`summary.csv` in the sweep directory), and Hydra's own
`.hydra/*.yaml` files written atomically, as every file of a run is."""

from __future__ import annotations

import io
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from replaycli.errors import first_line
from replaycli.outputs import files, sweepdir
from replaycli.outputs.sweepdir import DONE, PLAN


def sweep_dir(config: DictConfig) -> Path:
    """The sweep directory, absolute (a job may run in another process or on another node)."""
    return Path(config.hydra.runtime.cwd) / str(config.hydra.sweep.dir)


def _save_config_atomically(cfg: Any, filename: str, output_dir: Path) -> None:
    """hydra.core.utils._save_config, through a temporary file and a rename."""
    from omegaconf import OmegaConf

    Path(output_dir).mkdir(parents=True, exist_ok=True)
    files.write_atomic(Path(output_dir) / filename, OmegaConf.to_yaml(cfg))


class AtomicHydraFiles(Callback):
    """Registered under `hydra.callbacks`: Hydra builds its callbacks in each job's process before it
    writes the job's `.hydra/` files, so replacing its writer here makes them atomic everywhere
    (a kill mid-write leaves the old file or the new one, never half of one)."""

    def __init__(self) -> None:
        import hydra.core.utils

        hydra.core.utils._save_config = _save_config_atomically


def say_whole(line: str) -> None:
    """`line` on stdout in one write of the whole line (atomic on a pipe): the jobs of a parallel
    launcher print from processes of their own into one pipe, where a line written through two
    buffers can join another (the test that counts a joblib sweep's lines once found one short,
    in some 30 sweeps; not reproduced in 20 more)."""
    sys.stdout.flush()
    try:
        os.write(sys.stdout.fileno(), (line + "\n").encode())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):  # a captured stdout has no file
        print(line, flush=True)


class SweepSummary(Callback):
    """Registered under `hydra.callbacks` in configs/config.yaml; acts in multirun mode only.

    At the start of the sweep: `summary.csv` with its header (the planned jobs' override keys) and
    the plan (`.sweep.json`: how many jobs, when it started). At the end of each job, in whatever
    process the launcher runs it: a failed job gets its `failure.json` and is handed back to the
    sweeper as done, so that the sweep runs every job and reaches its end; the job's row is
    appended to `summary.csv` (one line: a sweep killed midway still has one, and N jobs cost N
    appends, not N rewrites); one line says the job's outcome and the sweep's progress
    (`[job 3/9] ...: complete, final accuracy 0.9123, 12.3 s  [###.....] 3/9, ~1.2 min left`).
    At the end of the sweep, in the launching process: `summary.csv` rewritten whole from every job
    directory, the results table grouped over seeds, where summary.csv is; when a job failed, one
    line on stderr and exit status 2 (every failure was a bad config value, a ConfigError) or 1.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        import json
        import time

        from replaycli.run.cmdline import planned_jobs

        root = sweep_dir(config)
        root.mkdir(parents=True, exist_ok=True)
        plan = planned_jobs(list(config.hydra.overrides.task))
        keys = list(dict.fromkeys(k for job in plan for k in sweepdir.override_items(job)))
        sweepdir.start_sweep_summary(root, keys)
        files.write_atomic(root / PLAN, json.dumps({"jobs": len(plan) or None, "started": time.time()}) + "\n")
        (root / DONE).unlink(missing_ok=True)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        if job_return.status == JobStatus.FAILED:
            error = job_return._return_value  # the public getter re-raises it
            sweepdir.write_failure(
                Path(config.hydra.runtime.output_dir),
                first_line(error),
                type(error).__name__,
                [str(o) for o in job_return.overrides or []],
                "".join(traceback.format_exception(type(error), error, error.__traceback__)),
            )
            job_return.status = JobStatus.COMPLETED  # recorded above; the other jobs go on
            job_return._return_value = float(
                "-inf"
            )  # to a sweeper that reads the value (Optuna, maximising): the worst
        root, job = sweep_dir(config), Path(config.hydra.runtime.output_dir)
        row = sweepdir.job_row(job)
        sweepdir.append_sweep_row(root, row)
        say_whole(job_line(root, row, [str(o) for o in job_return.overrides or []]))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        root = sweep_dir(config)
        while WATCHING:  # the jobs' lines the launching process has not said yet, before the table
            WATCHING.pop().stop()
        rows = sweepdir.sweep_rows(root)
        if not rows:  # e.g. -m 'seed=glob(*)': a sweep whose values matched nothing
            print(
                f"error: the sweep launched no job ({' '.join(config.hydra.overrides.task) or 'no overrides'}); "
                "allowed: sweep values that give at least one job",
                file=sys.stderr,
                flush=True,
            )
            sys.exit(2)
        path = sweepdir.write_sweep_summary(root, rows)
        results_table(root)
        chosen = best_by_validation(rows)
        if chosen is not None:
            print(chosen, flush=True)
        print(f"summary: {path}", flush=True)
        failed = [r for r in rows if r["status"] != "complete"]
        if not failed:
            return
        first = failed[0]
        why = first["error"] or first["status"]
        print(
            f"error: {len(failed)} of {len(rows)} jobs failed (job {first['job']}: {why}); see {path}",
            file=sys.stderr,
            flush=True,
        )
        kinds = [(sweepdir.read_failure(root / str(r["job"])) or {}).get("type") for r in failed]
        sys.exit(2 if all(k == "ConfigError" for k in kinds) else 1)


def job_line(root: Path, row: dict[str, Any], overrides: list[str], done: int | None = None) -> str:
    """`[job k/N] overrides: status, final accuracy, seconds  [bar] k/N, time left`: k counts the
    sweep's finished jobs (one byte each in .sweep.done, appended by whichever process ran it), or
    is `done` (a watcher's count: nothing appended)."""
    import json
    import os
    import time

    if done is None:
        fd = os.open(root / DONE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, b".")
            done = os.lseek(fd, 0, os.SEEK_CUR)  # just after this job's own byte: two jobs ending together: 1 and 2
        finally:
            os.close(fd)
    try:
        plan = json.loads((root / PLAN).read_text())
    except (OSError, ValueError):
        plan = {}
    total, started = plan.get("jobs"), plan.get("started")
    of = f"/{total}" if total else ""
    outcome = row["status"]
    if row.get("final_accuracy") is not None:
        outcome += f", final accuracy {row['final_accuracy']:.4f}"
        if row.get("final_val_accuracy") is not None:
            outcome += f" (validation {row['final_val_accuracy']:.4f})"
    if row.get("seconds") is not None:
        outcome += f", {row['seconds']:.1f} s"
    if row.get("error"):
        outcome += f": {row['error'][:120]}"
    progress = ""
    if total:
        filled = round(20 * min(done, total) / total)
        progress = f"  [{'#' * filled}{'.' * (20 - filled)}] {min(done, total)}/{total}"
        if started and done < total:
            left = (time.time() - started) / done * (total - done)
            progress += f", ~{left / 60:.1f} min left" if left >= 90 else f", ~{left:.0f} s left"
    return f"[job {row['job']}{of}] {' '.join(overrides) or '(no overrides)'}: {outcome}{progress}"


class Watcher:
    """For launchers whose jobs print elsewhere (submitit: a process or a Slurm node of their own,
    its lines in `.submitit/` logs): the launching process says each job's line as it finishes,
    from the job directories (`watch`); the sweep's end (`SweepSummary.on_multirun_end`) says the
    last ones before the table."""

    def __init__(self, root: Path, interval: float = 2.0):
        import threading

        self.root, self.interval = Path(root), interval
        self.seen: set[str] = set()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stopped.wait(self.interval):
            self.scan()

    def scan(self) -> None:
        for job in sweepdir.job_dirs(self.root):
            if job.name in self.seen:
                continue
            try:
                row = sweepdir.job_row(job)
            except (OSError, files.OutputError):
                continue
            if row["status"] in ("complete", "failed", "interrupted"):
                self.seen.add(job.name)
                overrides = [str(o) for o in sweepdir.read_overrides(job)]
                say_whole(job_line(self.root, row, overrides, done=len(self.seen)))

    def stop(self) -> None:
        self.stopped.set()
        self.scan()


WATCHING: list[Watcher] = []  # the launching process's watcher, when its launcher runs jobs elsewhere


def watch(root: Path) -> None:
    """Start saying job lines from the launching process (see `Watcher`)."""
    w = Watcher(root)
    WATCHING.append(w)
    w.thread.start()


def results_table(root: Path) -> None:
    """The sweep's results grouped over seeds (replay compare's table), when a job is complete."""
    from rich.console import Console

    from replaycli.outputs import compare

    try:
        d = compare.compare([root], ci=False)
    except files.OutputError:  # no complete job: nothing to group
        return
    compare.render(d, Console(width=None if sys.stdout.isatty() else 160))


def best_by_validation(rows: list[dict[str, Any]]) -> str | None:
    """The line naming the job with the best final validation accuracy, and its test accuracy (what
    a tuned configuration is reported with); None when no job has a validation stream."""
    scored = [r for r in rows if r["status"] == "complete" and r.get("final_val_accuracy") is not None]
    if not scored:
        return None
    best = max(scored, key=lambda r: r["final_val_accuracy"])  # the first of equals, as Optuna's best trial
    params = " ".join(f"{k}={v}" for k, v in best.items() if k not in sweepdir.RESULTS)
    return (
        f"chosen by validation: job {best['job']} ({params}): final validation accuracy "
        f"{best['final_val_accuracy']:.4f}, its test accuracy {best['final_accuracy']:.4f} "
        f"({len(scored)} jobs compared on validation only)"
    )
