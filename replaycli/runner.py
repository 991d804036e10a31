"""`replay run`: compose the config with Hydra, train over the stream, write the run directory."""
from __future__ import annotations

import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from replaycli import __version__
from replaycli.errors import ConfigError
from replaycli.outputs import CHECKPOINT, CONFIG, SUMMARY, OutputError, RunWriter, is_run, read_run
from replaycli.progress import Reporter
from replaycli.validate import check_arguments, check_writable, first_line, validate


def versions() -> dict[str, str]:
    from importlib.metadata import version

    import torch

    return {
        "replaycli": __version__, "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": version("torchvision"),  # importing torchvision costs seconds; split_digits never needs it
    }


def build(cfg: DictConfig) -> tuple[Any, Any]:
    """The run's objects and its generator, built from `cfg` the same way every time (a resumed
    run rebuilds them, then loads its checkpoint over them)."""
    from hydra.errors import InstantiationException

    check_arguments(cfg)
    try:
        return _build(cfg)
    except InstantiationException as e:  # Hydra wraps what the constructors raise
        if isinstance(e.__cause__, ConfigError):
            raise e.__cause__ from None
        raise ConfigError(f"cannot build the run: {' '.join(first_line(e.__cause__ or e).split())}") from e


def _build(cfg: DictConfig) -> tuple[Any, Any]:
    import torch
    from hydra.utils import instantiate

    from replaycli import wiring
    from replaycli.metrics import from_config
    from replaycli.train import Run

    device = wiring.resolve_device(cfg.device)
    torch.set_flush_denormal(True)  # subnormal floats in late experiences slowed steps by ~60%
    torch.manual_seed(cfg.seed)  # model initialisation and dropout
    generator = torch.Generator().manual_seed(cfg.seed)  # buffers, shuffles, augmentation
    bench = wiring.make_benchmark(cfg).to(device)
    model = wiring.make_model(cfg, bench).to(device)
    run = Run(
        bench=bench,
        model=model,
        optimizer=instantiate(cfg.optimizer)(model.parameters()),
        buffer=wiring.make_buffer(cfg, model, generator),
        make_loader=wiring.LoaderFactory(cfg.loader, cfg.train_mb_size, generator),
        epochs=cfg.epochs,
        eval_mb_size=cfg.eval_mb_size,
        device=device,
        strategy=wiring.make_strategy(cfg, model, generator),
        mask=wiring.make_mask(cfg, bench),
        metrics=from_config(cfg.get("metrics"), cfg.get("granularity")),
    )
    return run, generator


def execute(cfg: DictConfig, out_dir: Path, resume: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train over the stream of `cfg`, writing the run directory `out_dir`; returns the summary.

    A checkpoint is written after every experience; `resume` (a checkpoint read from `out_dir`
    by `checkpoint.load`) goes on after its last finished experience. Nothing is written before
    `cfg` is checked and every object is built, so a refused run leaves `out_dir` as it was.
    """
    from replaycli import checkpoint
    from replaycli.meters import run_summary
    from replaycli.tblog import make_logger
    from replaycli.train import run_experience

    start = time.perf_counter()
    validate(cfg)
    logger = make_logger(cfg.get("logger"), out_dir)
    run, generator = build(cfg)
    bench = run.bench
    writer = RunWriter(out_dir, len(bench.test_stream), bench.n_classes)
    done, before, resumes = 0, 0.0, 0
    report = Reporter(bench.n_experiences, cfg.epochs, cfg.progress, log=out_dir)  # also to run.log
    run.on_epoch = report.epoch_done
    if resume is not None:
        checkpoint.restore(resume, run, generator, writer, out_dir / CHECKPOINT)
        done, before, resumes = resume["experiences_done"], resume["seconds"], resume["resumes"] + 1
        writer.write_tables()  # the tables may lag the checkpoint by the experience it last saved
        (out_dir / SUMMARY).unlink(missing_ok=True)  # "failed" / "interrupted" no longer holds
        report.line(f"resuming {out_dir} after experience {done}/{bench.n_experiences}")
    else:
        writer.write_config(OmegaConf.to_yaml(cfg, resolve=True))
    try:
        with report:
            for exp in list(bench.train_stream)[done:]:
                report.start_experience(exp.current_experience, len(exp.dataset), len(run.buffer or []))
                record = run_experience(run, exp, report.step)
                writer.add_experience(record["accuracy"], record["histogram"], record)
                seconds = before + time.perf_counter() - start
                # the checkpoint first: the tables never show an experience it does not hold
                checkpoint.save(out_dir, checkpoint.capture(run, generator, writer, seconds, resumes))
                writer.write_tables()
                logger.experience_done(record)
                report.experience_done(record)
    except BaseException as e:  # killed by an error or Ctrl-C: the finished experiences stay
        status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        writer.write_summary({"status": status, "error": f"{type(e).__name__}: {e}"[:500], "seed": cfg.seed})
        raise
    summary = {
        "status": "complete", "seconds": before + time.perf_counter() - start, "seed": cfg.seed,
        "device": str(run.device), "versions": versions(), "resumes": resumes,
        **run_summary(run.metrics, writer.records, run.device, out_dir),  # timing, resources
    }
    writer.write_summary(summary)
    logger.close()
    report.tables(writer.accuracy, writer.histograms)
    report.line(f"outputs: {out_dir}")
    return summary


def resume_run(run_dir: Path) -> int:
    """`replay resume RUN_DIR`: go on after the last finished experience of `run_dir`, with its
    saved config.yaml. A complete run is left as it is (exit 0)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"RUN_DIR={run_dir} is not a directory; allowed: a run directory written by replay run")
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
    for stale in run_dir.glob(".*.tmp"):  # an atomic write cut short by the kill
        stale.unlink(missing_ok=True)
    try:
        cfg = OmegaConf.load(run_dir / CONFIG)
    except Exception as e:  # YAML syntax
        raise ConfigError(f"{run_dir / CONFIG} is not a readable config ({first_line(e)})") from e
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{run_dir / CONFIG} is not a config mapping")
    validate(cfg)
    from replaycli import checkpoint

    execute(cfg, run_dir, resume=checkpoint.load(run_dir))  # read before anything is built
    return 0


def _discard_if_empty(out_dir: Path) -> None:
    """Remove a run directory that holds nothing but Hydra's own files (a run refused up front)."""
    hydra_files = {".hydra", f"{HydraConfig.get().job.name}.log"}  # the log is named after the job
    if out_dir.is_dir() and all(p.name in hydra_files for p in out_dir.iterdir()):
        shutil.rmtree(out_dir, ignore_errors=True)


@hydra.main(version_base="1.3", config_path="pkg://replaycli.configs", config_name="config")
def hydra_main(cfg: DictConfig) -> Any:
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    try:
        return execute(cfg, out_dir)
    except ConfigError as e:
        _discard_if_empty(out_dir)
        if hc.mode == RunMode.MULTIRUN:
            # Hydra records this job as failed and goes on with the others; at the end of the
            # sweep it raises the first failure, which `replay run` prints as one line naming it
            e.sweep_job = f"sweep job {hc.job.num} ({' '.join(hc.overrides.task)})"  # type: ignore[attr-defined]
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
