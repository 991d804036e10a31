"""`replay run` and `replay resume`: build the run from its config, train over the stream, write
the run directory and a checkpoint after every experience."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from replaycli import __version__
from replaycli.errors import ConfigError, first_line
from replaycli.outputs.files import OutputError
from replaycli.outputs.rundir import (
    CHECKPOINT,
    CONFIG,
    SUMMARY,
    RunWriter,
    check_files,
    is_run,
    read_run,
    read_summary,
    stale_temporaries,
)
from replaycli.run.cmdline import check_writable
from replaycli.run.progress import Reporter

MAX_CONFIG = 4 * 10**6  # bytes of a config.yaml resume reads (a run's is a few KB; a long class_order, some 100s)
OBJECTIVE = "final_val_accuracy"  # what hydra/sweeper=optuna maximises: never a number of the test stream


class Stopped(KeyboardInterrupt):
    """A run stopped on purpose before an experience (`execute(stop_before=...)`), recorded as a
    Ctrl-C is: interrupted, resumable."""


def execute(
    cfg: DictConfig,
    out_dir: Path,
    resume: dict[str, Any] | None = None,
    job: int | None = None,
    objective: str | None = None,
    stop_before: int | None = None,
    together: tuple[Any, int] | None = None,
) -> dict[str, Any]:
    """Train over the stream of `cfg`, writing the run directory `out_dir`; returns the summary.

    `resume` (a checkpoint read from `out_dir` by `checkpoint.load`) goes on after its last
    finished experience. Everything is checked and built before anything is written, so a
    refused run leaves `out_dir` as it was. `job`: this run is job `job` of a sweep (its lines
    are labelled; with progress=auto or none it prints none: the sweep prints one line per job).
    `stop_before`: raise `Stopped` at the start of that experience (`replay check`). `together`:
    (group, index), this run is member `index` of a batched group (run/together.py), in a thread
    of its own.
    """
    from replaycli.run.build import build

    start = time.perf_counter()
    if together is None:
        run, generator = build(cfg)
    else:
        group, index = together
        with group.build_lock:  # building seeds torch's global random state
            run, generator = build(cfg)
        run.together = group.join(index, run)  # once every member is built
    if objective is not None and run.bench.valid_stream is None:  # tuning on the test stream: refused
        raise ConfigError(
            f"hydra/sweeper=optuna maximises {objective}, the accuracy on a validation stream; allowed: "
            "benchmark.validation=0.1 (a share of each experience held out of training)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    with held(out_dir):  # one trainer per directory, from its first write to its end
        return train(cfg, run, generator, out_dir, resume, job, stop_before, start)


def train(
    cfg: DictConfig,
    run: Any,
    generator: Any,
    out_dir: Path,
    resume: dict[str, Any] | None,
    job: int | None,
    stop_before: int | None,
    start: float,
) -> dict[str, Any]:
    """`execute`'s experiences, their checkpoints and tables, once the run is built and its
    directory held."""
    from replaycli.run import checkpoint
    from replaycli.run.loop import run_experience

    writer, report, log = outputs(cfg, run, out_dir, job)
    done, before, resumes = begin(cfg, run, generator, writer, report, resume)
    config = checkpoint.digest(out_dir / CONFIG)  # binds every checkpoint to this config.yaml
    saved = done  # the experiences the checkpoint on disk holds
    try:
        with report:
            for exp in list(run.bench.train_stream)[done:stop_before]:
                report.start_experience(exp.current_experience, len(exp.dataset), len(run.buffer or []))
                record = run_experience(run, exp, report.step)  # train, update the memory, evaluate
                writer.add_experience(record["accuracy"], record["histogram"], record)
                seconds = before + time.perf_counter() - start
                # the checkpoint first: the tables never show an experience it does not hold
                keep = cfg.get("keep_checkpoint", "last")
                checkpoint.save(out_dir, checkpoint.capture(run, generator, writer, seconds, resumes, config), keep)
                saved += 1
                writer.write_tables()
                log.experience_done(record)
                report.experience_done(record)
        if stop_before is not None and stop_before < run.bench.n_experiences:
            raise Stopped
    except BaseException as e:  # killed by an error or Ctrl-C: the finished experiences stay
        stopped(e, cfg, writer, saved)
        raise
    finally:
        log.close()  # what it logged is flushed and its run closed, however the run ends (a resume reopens it)
    return finish(cfg, run, writer, report, before + time.perf_counter() - start, resumes)


def outputs(cfg: DictConfig, run: Any, out_dir: Path, job: int | None) -> tuple[RunWriter, Reporter, Any]:
    """Where the run reports: its directory, the terminal (and run.log), the config's logger."""
    from replaycli.run.build import logger

    log = logger(cfg, out_dir)
    writer = RunWriter(out_dir, len(run.bench.test_stream), run.bench.n_classes)
    mode = "job" if job is not None and cfg.progress in ("auto", "none") else cfg.progress
    report = Reporter(
        run.bench.n_experiences, cfg.epochs, mode, log=out_dir, label="" if job is None else f"[job {job}] "
    )
    run.on_epoch = report.epoch_done
    return writer, report, log


def stopped(e: BaseException, cfg: DictConfig, writer: RunWriter, saved: int) -> None:
    """Record why the run stopped (summary.json: interrupted or failed) for the `saved` experiences
    its checkpoint holds; a write that failed (a full disk) becomes one OutputError."""
    if isinstance(e, KeyboardInterrupt):
        e.run_dir = writer.root  # type: ignore[attr-defined]  # for the hint: replay resume RUN_DIR
    writer.truncate(saved)  # the summary never claims an experience the checkpoint does not hold
    status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
    try:
        writer.write_summary({"status": status, "error": f"{type(e).__name__}: {e}"[:500], "seed": cfg.seed})
    except OSError:  # a full disk: nothing more can be written, the finished experiences stay
        pass
    if isinstance(e, OSError):
        raise OutputError(
            f"cannot write into {writer.root} ({e.strerror or e}); the run stopped after experience "
            f"{saved}; once there is room: replay resume {writer.root}"
        ) from None


def recorded(cfg: DictConfig) -> DictConfig:
    """The config as config.yaml keeps it: resolved, and every path the run reads as the absolute
    path it meant (`data_root: ~/...` and `benchmark.path: data.npz` from where it started), so
    that the run resumes from any directory (a Slurm requeue starts elsewhere)."""
    import os

    from replaycli.run.rules import PATH_KEYS

    out = DictConfig(OmegaConf.to_container(cfg, resolve=True))
    for key in PATH_KEYS:
        value = OmegaConf.select(out, key)
        if isinstance(value, str):
            OmegaConf.update(out, key, os.path.abspath(os.path.expanduser(value)))
    return out


def begin(
    cfg: DictConfig, run: Any, generator: Any, writer: RunWriter, report: Reporter, resume: dict[str, Any] | None
) -> tuple[int, float, int]:
    """A new run writes its config; a resumed one restores its checkpoint. Returns the
    experiences done, the seconds trained before and the number of resumes."""
    from replaycli.run import checkpoint

    if resume is None:
        writer.write_config(OmegaConf.to_yaml(recorded(cfg)))
        if run.bench.class_names is not None:  # what each class k was called in the user's data
            writer.write_class_names(run.bench.class_names)
        return 0, 0.0, 0
    checkpoint.restore(resume, run, generator, writer, writer.root / CHECKPOINT)
    done = resume["experiences_done"]
    writer.write_tables()  # the tables may lag the checkpoint by the experience it last saved
    (writer.root / SUMMARY).unlink(missing_ok=True)  # "failed" / "interrupted" no longer holds
    report.line(f"resuming {writer.root} after experience {done}/{run.bench.n_experiences}")
    return done, resume["seconds"], resume["resumes"] + 1


def finish(
    cfg: DictConfig, run: Any, writer: RunWriter, report: Reporter, seconds: float, resumes: int
) -> dict[str, Any]:
    from replaycli.run.meters import run_summary

    summary = {
        "status": "complete",
        "seconds": seconds,
        "seed": cfg.seed,
        "device": str(run.device),
        "versions": versions(),
        "resumes": resumes,
        **run_summary(run.metrics, writer.records, run.device, writer.root),  # timing, resources
    }
    writer.write_summary(summary)
    if cfg.get("keep_checkpoint", "last") == "none":  # complete: nothing left to resume
        (writer.root / CHECKPOINT).unlink(missing_ok=True)
    report.tables(writer.accuracy, writer.histograms)
    report.line(f"outputs: {writer.root.absolute()}")  # as a run says it, after a resume too
    return summary


def versions() -> dict[str, str]:
    from importlib.metadata import version

    import torch

    return {
        "replaycli": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": version("torchvision"),  # importing torchvision costs seconds; split_digits never needs it
    }


def resume_run(run_dir: Path, trusted: tuple[str, ...] = ()) -> int:
    """`replay resume RUN_DIR`: go on after the last finished experience of `run_dir`, with its
    saved config.yaml. A complete run is left as it is (exit 0). The config is data: it may name
    replaycli's own `_target_`s only, and those in `trusted` (`--trust TARGET`)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"RUN_DIR={run_dir} is not a directory; allowed: a run directory written by replay run")
    if not is_run(run_dir) and {p.name for p in run_dir.iterdir()} == {".hydra"}:
        raise ConfigError(
            f"RUN_DIR={run_dir} holds only Hydra's record of a run stopped before it began (no {CONFIG}); there is "
            f"nothing to resume: start it again with replay run ... hydra.run.dir={run_dir}"
        )
    if not is_run(run_dir):
        raise ConfigError(
            f"RUN_DIR={run_dir} is not a run directory (no {CONFIG}); allowed: a directory written by replay run"
        )
    try:
        record = read_run(run_dir)
    except OutputError as e:
        raise ConfigError(str(e)) from e
    if record.complete:
        print(f"{run_dir}: the run is already complete ({len(record.accuracy)} experiences); nothing to resume")
        return 0
    check_writable("RUN_DIR", run_dir)
    size = (run_dir / CONFIG).stat().st_size
    if size > MAX_CONFIG:  # a YAML parser takes minutes on tens of MB: bounded work on a received directory
        raise ConfigError(f"{run_dir / CONFIG} is {size / 1e6:.1f} MB; allowed: at most {MAX_CONFIG // 10**6} MB")
    try:
        cfg = OmegaConf.load(run_dir / CONFIG)
    except Exception as e:  # YAML syntax
        raise ConfigError(f"{run_dir / CONFIG} is not a readable config ({first_line(e)})") from e
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{run_dir / CONFIG} is not a config mapping")
    from replaycli.run import checkpoint, rules

    rules.check_targets(cfg, set(trusted), str(run_dir / CONFIG), f"replay resume {run_dir} --trust")
    for key in ("download", "benchmark.download"):  # resume reads what the run read; it fetches nothing anywhere
        if OmegaConf.select(cfg, key) is not None:
            OmegaConf.update(cfg, key, False)
    ckpt = checkpoint.load(run_dir)  # read before anything is built
    if ckpt.get("config_sha256") != checkpoint.digest(run_dir / CONFIG):
        raise ConfigError(
            f"{run_dir / CHECKPOINT} was not saved with this {CONFIG} (it was edited, or the checkpoint "
            "comes from another run); refused: start the run again with replay run"
        )
    from replaycli.data import cache

    with held(run_dir):
        check_files(run_dir)  # a directory where summary.json goes: one line, not a traceback mid-resume
        for stale in stale_temporaries(run_dir):  # an atomic write of ours cut short by the kill
            stale.unlink(missing_ok=True)
        cache.CONFINED_TO = run_dir.resolve()  # a received config's cache_dir elsewhere is read, never written
        try:
            execute(cfg, run_dir, resume=ckpt)
        finally:
            cache.CONFINED_TO = None
    return 0


def own_run(cfg: DictConfig, out_dir: Path) -> dict[str, Any] | str | None:
    """What a sweep job finds in its own directory when it starts: "complete" (its run finished:
    nothing to train), the checkpoint to go on from (a job requeued, preempted, killed, or re-issued
    with the sweep), or None (nothing of it: a new run; a run stopped before its first experience
    ended is removed, nothing of it was kept); called holding the directory (`job_of`). The run
    must be of this very config: config.yaml
    byte for byte as this job would write it, and the checkpoint bound to it; anything else in the
    directory is refused in one line, and nothing of it is touched."""
    from replaycli.outputs.sweepdir import FAILURE, foreign
    from replaycli.run import checkpoint

    if not (out_dir / CONFIG).is_file():
        return None
    other = foreign(out_dir, False)
    written = OmegaConf.to_yaml(recorded(cfg))
    if other is not None or (out_dir / CONFIG).read_bytes() != written.encode():
        raise ConfigError(
            f"{out_dir} holds {f'{other}, which is not a replaycli run' if other else 'a run of another config'}; "
            "this job was not run; allowed: the same sweep re-issued as it was, or --overwrite (a new sweep)"
        )
    try:
        if read_run(out_dir).complete:
            return "complete"
    except OutputError:  # a table cut short: what the checkpoint holds decides
        pass
    for stale in stale_temporaries(out_dir):
        stale.unlink(missing_ok=True)
    (out_dir / FAILURE).unlink(missing_ok=True)  # the job runs again: its last failure no longer holds
    if (out_dir / CHECKPOINT).is_file():
        ckpt = checkpoint.load(out_dir)
        if ckpt.get("config_sha256") == checkpoint.digest(out_dir / CONFIG):
            check_files(out_dir)
            return ckpt
    for entry in out_dir.iterdir():  # stopped before its first experience ended: start over
        if entry.name != ".hydra":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    return None


_HELD: set[str] = set()  # the run directories this process holds


class InUse(ConfigError):
    """The run directory is held by another process: refused, and nothing of it is touched."""


@contextlib.contextmanager
def held(run_dir: Path) -> Iterator[None]:
    """An exclusive lock on the run directory for the one process that trains in it (a run, a
    resume, a sweep's job), released by the kernel when that process ends, however it ends (no
    stale lock after a SIGKILL): a resume or an --overwrite of a live run is refused in one line.
    Taken again by the same process (resume, then its run), it is already held."""
    import fcntl

    key = str(Path(run_dir).resolve())
    if key in _HELD:
        yield
        return
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InUse(
                f"{run_dir} is in use: a replay process is training in it now; refused: wait for it to end, "
                "or use another directory"
            ) from None
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
    finally:
        os.close(fd)


def _discard_if_empty(out_dir: Path, name: str) -> None:
    """Remove a run directory that holds nothing but Hydra's own files (a run refused up front)."""
    hydra_files = {".hydra", f"{name}.log"}  # the log is named after the job
    if out_dir.is_dir() and all(p.name in hydra_files for p in out_dir.iterdir()):
        shutil.rmtree(out_dir, ignore_errors=True)


def job(cfg: DictConfig) -> Any:
    """One job, run by Hydra's job runner (`launch`, `hydra_main`). A refused run leaves no directory;
    its error reaches `replay run` (one line, exit 2), or, in a sweep, the sweep callback
    (replaycli.run.sweep), and the other jobs go on."""
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    return job_of(cfg, hydra_cfg, hydra_cfg.mode == RunMode.MULTIRUN)


def job_of(cfg: DictConfig, hydra_cfg: Any, multirun: bool, together: tuple[Any, int] | None = None) -> Any:
    """`job` with Hydra's section of its config given (`hydra_cfg`): the batched launcher runs its
    members in threads, where Hydra's process-wide HydraConfig holds one job only."""
    out_dir = Path(hydra_cfg.runtime.output_dir)
    job = hydra_cfg.job.num if multirun else None
    sweeper = hydra_cfg.sweeper
    tuning = job is not None and "optuna" in str(sweeper.get("_target_", "")).lower()
    try:
        direction = str(sweeper.get("direction", "minimize")).rsplit(".", 1)[-1]  # an enum: Direction.minimize
        if tuning and direction != "maximize":
            raise ConfigError(
                f"hydra/sweeper=optuna maximises {OBJECTIVE} but hydra.sweeper.direction={direction}; "
                "allowed: hydra.sweeper.direction=maximize, or hydra/sweeper=tune"
            )
        with held(out_dir), stopped_when_orphaned(hydra_cfg):  # from what the job finds in its directory to its end
            found = own_run(cfg, out_dir) if multirun else None  # a requeued, preempted or re-issued job
            if isinstance(found, str):  # complete: nothing to train
                summary = read_summary(out_dir)
            else:
                summary = execute(
                    cfg, out_dir, job=job, objective=OBJECTIVE if tuning else None, together=together, resume=found
                )
        return read_summary(out_dir)[OBJECTIVE] if tuning else summary  # the Optuna sweeper maximises a float
    except (ConfigError, OutputError) as e:
        if not isinstance(e, InUse):  # another process's directory is never ours to tidy
            _discard_if_empty(out_dir, hydra_cfg.job.name)
        if multirun:
            raise
        raise Refused(e) from None  # past Hydra's job runner, which would print a line of its own


def interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (a scheduler's stop, an orphaned worker's) is recorded as Ctrl-C is: interrupted


@contextlib.contextmanager
def stopped_when_orphaned(hydra_cfg: Any, every: float = 0.5) -> Iterator[None]:
    """A job of the joblib launcher runs in a worker process of the sweep's process; when that
    process dies (SIGKILL, the OOM killer, a closed session) the worker would train on for nobody,
    holding its memory. Here it notices (its parent changes) and stops as a Ctrl-C stops a run:
    recorded interrupted, resumable by issuing the sweep again, and the worker ends (an idle worker
    of a dead sweep would hold its memory for minutes). Other launchers' jobs are left
    alone (a Slurm job outlives the process that submitted it)."""
    import signal
    import threading

    in_worker = "joblib" in str(OmegaConf.select(hydra_cfg, "launcher._target_", default="") or "").lower()
    if not in_worker or threading.current_thread() is not threading.main_thread():
        yield
        return
    parent, done, orphaned = os.getppid(), threading.Event(), threading.Event()

    def watch() -> None:
        while not done.wait(every):
            if os.getppid() != parent:  # re-parented: the sweep's process is gone
                orphaned.set()
                signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)
                return

    before = signal.signal(signal.SIGTERM, interrupted)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        signal.signal(signal.SIGTERM, before)
        if orphaned.is_set():  # its run is recorded interrupted; nobody will send the worker another job
            os._exit(130)


hydra_main = hydra.main(version_base="1.3", config_path="pkg://replaycli.configs", config_name="config")(job)


def launch(cfg: DictConfig) -> None:
    """Run the single job of `cfg`, a config composed with Hydra's section (`cmdline.prepare`), as
    Hydra's main runs one, without composing it again: its logging, its callbacks around the job,
    and the job through `run_job`, the function Hydra's launchers call (it writes .hydra/)."""
    from hydra import initialize_config_module
    from hydra._internal.callbacks import Callbacks
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import configure_log, run_job
    from hydra.types import HydraContext

    from replaycli.run.cmdline import JOB

    with initialize_config_module("replaycli.configs", version_base="1.3", job_name=JOB):
        configure_log(cfg.hydra.hydra_logging, cfg.hydra.verbose)
        callbacks = Callbacks(cfg)
        callbacks.on_run_start(config=cfg, config_name="config")
        context = HydraContext(config_loader=GlobalHydra.instance().config_loader(), callbacks=callbacks)
        ret = run_job(
            task_function=job, config=cfg, job_dir_key="hydra.run.dir", job_subdir_key=None, hydra_context=context
        )
        callbacks.on_run_end(config=cfg, config_name="config", job_return=ret)
        ret.return_value  # noqa: B018 (a job's exception is raised here, as Hydra's main does)


class Refused(BaseException):
    """A single run's ConfigError on its way out of Hydra to `replay run` (`args[0]`)."""
