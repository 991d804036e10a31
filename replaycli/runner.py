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
from replaycli.outputs import RunWriter
from replaycli.progress import Reporter
from replaycli.validate import validate


def versions() -> dict[str, str]:
    from importlib.metadata import version

    import torch

    return {
        "replaycli": __version__, "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": version("torchvision"),  # importing torchvision costs seconds; split_digits never needs it
    }


def execute(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Train over the stream of `cfg`, writing the run directory `out_dir`; returns the summary."""
    import torch
    from hydra.utils import instantiate

    from replaycli import wiring
    from replaycli.tblog import make_logger
    from replaycli.train import Run, run_experience

    start = time.perf_counter()
    validate(cfg)
    logger = make_logger(cfg.get("logger"), out_dir)
    device = wiring.resolve_device(cfg.device)
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
    )
    writer = RunWriter(out_dir, len(bench.test_stream), bench.n_classes)
    writer.write_config(OmegaConf.to_yaml(cfg, resolve=True))
    with Reporter(bench.n_experiences, cfg.epochs, cfg.progress) as report:
        for exp in bench.train_stream:
            report.start_experience(exp.current_experience, len(exp.dataset), len(run.buffer or []))
            record = run_experience(run, exp, report.step)
            writer.experience_done(record["accuracy"], record["histogram"], record)
            logger.experience_done(record)
            report.experience_done(record)
    summary = {
        "status": "complete", "seconds": time.perf_counter() - start, "seed": cfg.seed,
        "device": str(device), "versions": versions(),
    }
    writer.write_summary(summary)
    logger.close()
    report.tables(writer.accuracy, writer.histograms)
    print(f"outputs: {out_dir}", flush=True)
    return summary


def _discard_if_empty(out_dir: Path) -> None:
    """Remove a run directory that holds nothing but Hydra's own files (a run refused up front)."""
    hydra_files = {".hydra", f"{HydraConfig.get().job.name}.log"}  # the log is named after the job
    if out_dir.is_dir() and all(p.name in hydra_files for p in out_dir.iterdir()):
        shutil.rmtree(out_dir, ignore_errors=True)


@hydra.main(version_base="1.3", config_path="pkg://replaycli.configs", config_name="config")
def hydra_main(cfg: DictConfig) -> Any:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        return execute(cfg, out_dir)
    except ConfigError as e:
        _discard_if_empty(out_dir)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweep goes on with the other jobs and reports this one failed
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
