"""Hydra callbacks: the sweep summary (`summary.csv` in the sweep directory), and Hydra's own
`.hydra/*.yaml` files written atomically, as every file of a run is."""
from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from replaycli.outputs import sweepdir


def sweep_dir(config: DictConfig) -> Path:
    """The sweep directory, absolute (a job may run in another process or on another node)."""
    return Path(config.hydra.runtime.cwd) / str(config.hydra.sweep.dir)


def one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _save_config_atomically(cfg: Any, filename: str, output_dir: Path) -> None:
    """hydra.core.utils._save_config, through a temporary file and a rename."""
    from omegaconf import OmegaConf

    from replaycli.outputs.rundir import write_atomic

    Path(output_dir).mkdir(parents=True, exist_ok=True)
    write_atomic(Path(output_dir) / filename, OmegaConf.to_yaml(cfg))


class AtomicHydraFiles(Callback):
    """Registered under `hydra.callbacks`: Hydra builds its callbacks in each job's process before it
    writes the job's `.hydra/` files, so replacing its writer here makes them atomic everywhere
    (a kill mid-write leaves the old file or the new one, never half of one)."""

    def __init__(self) -> None:
        import hydra.core.utils

        hydra.core.utils._save_config = _save_config_atomically


class SweepSummary(Callback):
    """Registered under `hydra.callbacks` in configs/config.yaml; acts in multirun mode only.

    At the end of each job, in whatever process the launcher runs it: a failed job gets its
    `failure.json` and is handed back to the sweeper as done, so that the sweep runs every job and
    reaches its end; then `summary.csv` is rewritten, so a sweep killed midway still has one.
    At the end of the sweep, in the launching process: `summary.csv` from every job directory;
    when a job failed, one line on stderr and exit status 2 (every failure was a bad config value,
    a ConfigError) or 1.
    """

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        if job_return.status == JobStatus.FAILED:
            error = job_return._return_value  # the public getter re-raises it
            sweepdir.write_failure(
                Path(config.hydra.runtime.output_dir), one_line(error), type(error).__name__,
                [str(o) for o in job_return.overrides or []],
                "".join(traceback.format_exception(type(error), error, error.__traceback__)),
            )
            job_return.status = JobStatus.COMPLETED  # recorded above; the other jobs go on
        sweepdir.write_sweep_summary(sweep_dir(config))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        root = sweep_dir(config)
        rows = sweepdir.sweep_rows(root)
        if not rows:  # e.g. -m 'seed=glob(*)': a sweep whose values matched nothing
            print(f"error: the sweep launched no job ({' '.join(config.hydra.overrides.task) or 'no overrides'}); "
                  "allowed: sweep values that give at least one job", file=sys.stderr, flush=True)
            sys.exit(2)
        path = sweepdir.write_sweep_summary(root, rows)
        print(f"summary: {path}", flush=True)
        failed = [r for r in rows if r["status"] != "complete"]
        if not failed:
            return
        first = failed[0]
        why = first["error"] or first["status"]
        print(
            f"error: {len(failed)} of {len(rows)} jobs failed (job {first['job']}: {why}); see {path}",
            file=sys.stderr, flush=True,
        )
        kinds = [(sweepdir.read_failure(root / str(r["job"])) or {}).get("type") for r in failed]
        sys.exit(2 if all(k == "ConfigError" for k in kinds) else 1)
