"""Config -> the run's objects. YAML gives each group's keys; Python passes the objects, the same
keyword arguments to every option of a group (rules.INJECTED), so any class with that signature plugs
in. Everything is checked and built here, before a run writes anything."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from replaycli.errors import ConfigError, first_line
from replaycli.run import rules


def group(cfg: DictConfig, name: str, **objects: Any) -> Any:
    """Build the option of group `name` with `objects` (rules.INJECTED[name]); None when its
    `_target_` is null (buffer=none). A constructor's ConfigError names the key as typed
    (`buffer.max_size=-5 ...`); a target that cannot be imported is one ConfigError."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    node = cfg.get(name)
    if isinstance(node, DictConfig):
        for key in sorted(OmegaConf.missing_keys(node)):  # `path: ???` in the option's YAML (keys from the root)
            raise ConfigError(f"{key} is required; allowed: {name}={rules.option(cfg, name, '')} {key}=VALUE")
    if not isinstance(node, DictConfig) or node.get("_target_") is None:
        if name in rules.OPTIONAL:
            return None
        rules.refuse_missing(name, node)
    try:
        factory = instantiate(node)  # every option is `_partial_`: the objects are passed below
    except InstantiationException as e:
        cause = e.__cause__ or e  # an ImportError's message spans lines: the module that is missing is on the second
        why = " ".join(str(cause).split())[:300] if isinstance(cause, ImportError) else first_line(cause)
        raise ConfigError(f"{name}={rules.option(cfg, name, str(node._target_))} cannot be built: {why}") from None
    try:
        return factory(**objects)
    except ConfigError as e:
        raise rules.named(name, node, e) from None
    except (TypeError, ValueError, OverflowError, RuntimeError, MemoryError) as e:  # `~buffer.max_size`, a model too
        # large to allocate, a value the target (torch's own, a user's) refuses in its own words
        raise ConfigError(
            f"{name}={rules.option(cfg, name, str(node._target_))} cannot be built: {first_line(e)}"
        ) from None
    except Exception as e:  # noqa: BLE001 (a user's own factory: a missing file, a KeyError, ...)
        raise ConfigError(
            f"{name}={rules.option(cfg, name, str(node._target_))} cannot be built: {type(e).__name__}: {first_line(e)}"
        ) from None
    except SystemExit as e:  # a user's factory that exits: exit code 0 and no run said nothing of it
        raise ConfigError(
            f"{name}={rules.option(cfg, name, str(node._target_))} cannot be built: it called sys.exit({e.code!r})"
        ) from None


def resolve_device(name: str) -> torch.device:
    """The device `name` (rules.device) on this machine: auto is CUDA when present; cuda:N must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but CUDA is not available here; allowed: auto, cpu")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ConfigError(
            f"device={name} but this machine has {count} CUDA device{'s' if count != 1 else ''}; "
            f"allowed: cuda:0 to cuda:{count - 1}, cuda, auto, cpu"
        )
    return torch.device(name)


def build(cfg: DictConfig) -> tuple[Any, torch.Generator]:
    """The run's objects and its generator, built from `cfg` the same way every time (a resumed
    run rebuilds them, then loads its checkpoint over them; `replay resume` checks its targets
    with rules.check_targets first)."""
    from replaycli.methods.base import Memory, Setting
    from replaycli.run.checkpoint import run_state
    from replaycli.run.loop import Run
    from replaycli.run.metrics import from_config
    from replaycli.run.together import Alone
    from replaycli.run.updates import PROTOCOLS
    from replaycli.scenario import task_mask

    check(cfg)
    method_class = rules.method_class(cfg)
    device = resolve_device(cfg.device)
    generator = settle(cfg)
    bench = benchmark(cfg, device)
    model = group(cfg, "model", num_classes=bench.n_classes, input_shape=bench.train_pool.sample_shape).to(device)
    rules.check_optimizer(cfg)
    optimizer = group(cfg, "optimizer", params=model.parameters())
    selection = group(cfg, "selection", model=model, generator=generator)
    buffer = group(cfg, "buffer", selection_strategy=selection, generator=generator)
    rules.check_memory(cfg, method_class, buffer, bench)
    mask = task_mask(bench).to(bench.train_pool.device) if cfg.scenario == "task_il" else None
    method = group(cfg, "strategy", model=model, optimizer=optimizer, mask=mask)
    shape = tuple(bench.train_pool.sample_shape)
    method.setting = Setting(bench.n_classes, shape, bench.n_experiences, generator, device)  # what it may ask
    method.check_input(shape)  # e.g. RAR's crops need images
    memory = Memory(buffer, cfg.mem_mb_size, generator) if buffer is not None else None
    run = Run(
        bench=bench,
        model=model,
        optimizer=optimizer,
        buffer=buffer,
        method=method,
        memory=memory,
        make_loader=loader_factory(cfg, generator),
        epochs=cfg.epochs,
        eval_mb_size=cfg.eval_mb_size,
        device=device,
        update=PROTOCOLS[cfg.buffer_update](method, buffer, memory, cfg.eval_mb_size),
        together=Alone(optimizer),
        mask=mask,
        metrics=from_config(cfg.get("metrics"), cfg.get("granularity")),
    )
    if cfg.get("eval_every") is not None:
        from replaycli.run.anytime import Anytime

        run.anytime = Anytime(cfg.eval_every, bench.test_stream, cfg.get("eval_sample", 1000), cfg.seed)
    run.pace, run.cost = pace_and_cost(cfg, run, shape)
    run.make_loader(bench.train_stream[0].dataset, None)  # the loader's keys: refused now, not at the first experience
    run_state(run, generator)  # what a checkpoint cannot keep is refused now, not at the first checkpoint
    return run, generator


def pace_and_cost(cfg: DictConfig, run: Any, shape: tuple[int, ...]) -> tuple[Any, Any]:
    """Which batches the run trains on (a budget, realtime: run/pace.py) and its cost counter
    (run/cost.py), when `metrics` has `cost` or the pace counts."""
    from replaycli.run import pace
    from replaycli.run.cost import Cost, per_sample_flops

    counted = run.metrics.on("cost") or cfg.get("realtime", False) or cfg.get("budget_unit", "steps") != "steps"
    cost = Cost(run.model, per_sample_flops(run.model, shape, run.device)) if counted else None
    if cfg.get("realtime", False):
        assert cost is not None  # counted: realtime paces by it
        return pace.Realtime(cost, cfg.train_mb_size, cfg.mem_mb_size), cost
    if cfg.get("budget") is not None:
        return pace.Budget(cfg.budget, cfg.get("budget_unit", "steps"), cost), cost
    return pace.Free(), cost


def check(cfg: DictConfig) -> None:
    """The config before anything is built: it resolves (`seed=${foo}` does not), the run's own
    keys, and every key of every group is an argument of the group's target."""
    try:
        tree = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [str(k) for k in cfg if k != "hydra"]), resolve=True)
    except Exception as e:  # noqa: BLE001 (omegaconf's interpolation errors)
        raise ConfigError(f"the config cannot be resolved: {first_line(e)}") from None
    rules.check_settings(cfg)
    working_directory_last(tree)
    rules.check_arguments(cfg, rules.INJECTED)


def working_directory_last(tree: Any) -> None:
    """A `_target_` of the user's own (mydata.make, my_methods.X) whose module is no installed one
    but a file of the working directory: the working directory is searched then, and last, after
    every installed package. A file there named like a package (sklearn.py, PIL.py in a received
    folder) never shadows it, and a config that names only installed targets never searches it."""
    import importlib.util

    cwd = os.getcwd()
    for _, target in rules.targets(tree):
        top = target.split(".")[0]
        here = os.path.isfile(os.path.join(cwd, f"{top}.py")) or os.path.isfile(os.path.join(cwd, top, "__init__.py"))
        if here and cwd not in sys.path and importlib.util.find_spec(top) is None:
            sys.path.append(cwd)


def settle(cfg: DictConfig) -> torch.Generator:
    """torch's process-wide settings for the run (threads, subnormals, determinism, the global seed)
    and the run's own generator."""
    if cfg.get("threads", 1) != "auto":  # one thread per process: torch's default spins on a shared machine
        torch.set_num_threads(cfg.get("threads", 1))
    torch.set_flush_denormal(True)  # subnormal floats in late experiences slowed steps by ~60%
    if cfg.deterministic:  # cuBLAS reads its workspace setting at its first call: set it before
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(cfg.deterministic)
    torch.manual_seed(cfg.seed)  # model initialisation and dropout
    return torch.Generator().manual_seed(cfg.seed)  # buffers, shuffles, augmentation


def benchmark(cfg: DictConfig, device: torch.device) -> Any:
    """The stream of `cfg` on `device`; a user's factory that returns no Benchmark is refused."""
    from replaycli.data.stream import Benchmark

    bench = group(cfg, "benchmark")
    if not isinstance(bench, Benchmark):
        raise ConfigError(
            f"benchmark={rules.option(cfg, 'benchmark', str(cfg.benchmark._target_))} returned "
            f"{str(bench)[:40]} (type {type(bench).__name__}); allowed: a Benchmark "
            "(replaycli.generators.nc_benchmark makes one)"
        )
    bench = bench.to(device)
    rules.check_scenario(cfg, bench)
    return bench


def loader_factory(cfg: DictConfig, generator: torch.Generator) -> Callable[..., Any]:
    """(data, buffer or None) -> the training loader of one experience."""

    def make(data: Any, buffer: Any) -> Any:
        return group(
            cfg,
            "loader",
            data=data,
            buffer=buffer,
            batch_size=cfg.train_mb_size,
            batch_size_mem=cfg.mem_mb_size,
            generator=generator,
        )

    return make


def logger(cfg: DictConfig, run_dir: Any) -> Any:
    from replaycli.run.loggers import NullLogger

    return group(cfg, "logger", run_dir=run_dir) or NullLogger()
