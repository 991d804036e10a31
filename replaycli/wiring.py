"""Build the run's objects from a composed config: YAML gives the scalars, Python wires objects."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from replaycli.benchmarks import Benchmark
from replaycli.buffers import ExemplarsBuffer, ParametricBuffer
from replaycli.data import StreamDataset
from replaycli.errors import ConfigError
from replaycli.loaders import GroupBalancedDataLoader
from replaycli.strategies import Replay, task_mask


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but CUDA is not available here; allowed: auto, cpu")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"device={name!r} is not allowed; allowed: auto, cpu, cuda")
    return torch.device(name)


def make_benchmark(cfg: DictConfig) -> Benchmark:
    return instantiate(cfg.benchmark)


def make_model(cfg: DictConfig, bench: Benchmark) -> torch.nn.Module:
    """The model sized for `bench`: its classes and its input shape."""
    build = instantiate(cfg.model)
    shape = bench.train_pool.sample_shape  # (C, H, W)
    params = inspect.signature(build.func).parameters
    kwargs: dict[str, Any] = {"num_classes": bench.n_classes}
    if "input_size" in params:
        kwargs["input_size"] = int(torch.tensor(shape).prod())
    if "in_channels" in params:
        kwargs["in_channels"] = shape[0]
    return build(**kwargs)


def make_buffer(
    cfg: DictConfig, model: torch.nn.Module, generator: torch.Generator
) -> ExemplarsBuffer | None:
    """The storage policy, or None for `buffer=none`."""
    if cfg.buffer.get("_target_") is None:
        return None
    build = instantiate(cfg.buffer)
    if build.func is ParametricBuffer or issubclass(build.func, ParametricBuffer):
        select = instantiate(cfg.selection)
        params = inspect.signature(select.func).parameters
        selection = select(model=model) if "model" in params else select(generator=generator)
        return build(selection_strategy=selection, generator=generator)
    return build(generator=generator)


def make_strategy(cfg: DictConfig, model: torch.nn.Module, generator: torch.Generator) -> Replay:
    """The replay method of `strategy/`, under the update protocol of `buffer_update`."""
    build = instantiate(cfg.strategy)
    kwargs: dict[str, Any] = {"every_batch": cfg.buffer_update == "every_batch", "generator": generator}
    if "model" in inspect.signature(build.func).parameters:
        kwargs["model"] = model  # GDumb keeps the initial weights to re-initialise from
    return build(**kwargs)


def make_mask(cfg: DictConfig, bench: Benchmark) -> torch.Tensor | None:
    """scenario=task_il: bool [n_tasks, n_classes], the classes each task may predict; else None."""
    return task_mask(bench).to(bench.train_pool.device) if cfg.scenario == "task_il" else None


@dataclass
class LoaderFactory:
    """Makes the training loader of one experience from its data and the current memory."""

    cfg: DictConfig
    batch_size: int
    generator: torch.Generator

    def __call__(self, data: StreamDataset, buffer: ExemplarsBuffer | None) -> Any:
        build = instantiate(self.cfg)
        memory = buffer.buffer if buffer is not None and len(buffer) else None
        if build.func is GroupBalancedDataLoader or issubclass(build.func, GroupBalancedDataLoader):
            groups = [data]
            if memory is not None:
                groups += getattr(buffer, "buffer_datasets", None) or [memory]
            return build(groups, batch_size=self.batch_size * len(groups), generator=self.generator)
        return build(data, memory, batch_size=self.batch_size, generator=self.generator)
