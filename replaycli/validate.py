"""Check a composed config before anything is trained or written: one `ConfigError` naming the
key, the bad value and what is allowed."""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from replaycli.errors import ConfigError

GROUPBY = (None, "class", "task", "experience")
DEVICES = ("auto", "cpu", "cuda")
PROGRESS = ("auto", "rich", "plain", "none")
BUFFER_UPDATES = ("after_experience", "every_batch")
SCENARIOS = ("class_il", "task_il")
SCHEDULES = ("constant", "linear")


def _int(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{key}={value!r} must be {what}")


def _choice(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        names = ", ".join("null" if a is None else str(a) for a in allowed)
        raise ConfigError(f"{key}={value!r} is not allowed; allowed: {names}")


def buffer_kind(cfg: DictConfig) -> str | None:
    """The class name of the configured buffer, or None for buffer=none."""
    target = cfg.buffer.get("_target_")
    return None if target is None else str(target).rsplit(".", 1)[-1]


def validate(cfg: DictConfig) -> None:
    _int("seed", cfg.seed, 0)
    _int("epochs", cfg.epochs, 1)
    _int("train_mb_size", cfg.train_mb_size, 1)
    _int("eval_mb_size", cfg.eval_mb_size, 1)
    _choice("device", cfg.device, DEVICES)
    _choice("progress", cfg.progress, PROGRESS)
    _choice("groupby", cfg.groupby, GROUPBY)
    kind = buffer_kind(cfg)
    if kind is not None:
        _int("buffer.max_size", cfg.buffer.max_size, 1)
    if cfg.groupby is not None and kind != "ParametricBuffer":
        raise ConfigError(
            f"groupby={cfg.groupby} needs a buffer with groups; buffer={kind or 'none'} has none; allowed: buffer=parametric"
        )
    if "batch_size_mem" in cfg.loader:
        _int("loader.batch_size_mem", cfg.loader.batch_size_mem, 1)
    selection = str(cfg.selection.get("_target_", "")).rsplit(".", 1)[-1]
    if selection != "RandomExemplarsSelectionStrategy" and kind != "ParametricBuffer":
        raise ConfigError(f"selection={selection} ranks exemplars of buffer=parametric only; buffer={kind or 'none'}")
    _strategy(cfg, kind, selection)


def _number(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{key}={value!r} must be a number >= 0")


def _strategy(cfg: DictConfig, kind: str | None, selection: str) -> None:
    """The replay method's keys, the update protocol and the scenario."""
    _choice("buffer_update", cfg.buffer_update, BUFFER_UPDATES)
    _choice("scenario", cfg.scenario, SCENARIOS)
    if cfg.scenario == "task_il" and cfg.benchmark.get("return_task_id") is not True:
        raise ConfigError("scenario=task_il masks logits by task label; set benchmark.return_task_id=true")
    s = cfg.strategy
    name = str(s.get("_target_", "")).rsplit(".", 1)[-1].lower()
    if "mem_mb_size" in s:
        _int("strategy.mem_mb_size", s.mem_mb_size, 1)
    for key in ("alpha", "beta"):
        if key in s:
            _number(f"strategy.{key}", s[key])
    if "schedule" in s:
        _choice("strategy.schedule", s.schedule, SCHEDULES)
    if name != "replay" and kind is None:
        raise ConfigError(f"strategy={name} needs a memory but buffer=none; allowed: buffer=reservoir, parametric, class_balanced, experience_balanced")
    if name == "gdumb":
        if not (kind == "ClassBalancedBuffer" or (kind == "ParametricBuffer" and cfg.groupby == "class")):
            raise ConfigError(f"strategy=gdumb samples class-balanced; buffer={kind} is not; allowed: buffer=class_balanced, buffer=parametric groupby=class")
        if cfg.buffer_update != "after_experience":
            raise ConfigError("strategy=gdumb trains on its buffer after each experience; allowed: buffer_update=after_experience")
    if cfg.buffer_update == "every_batch" and selection != "RandomExemplarsSelectionStrategy":
        raise ConfigError(f"buffer_update=every_batch inserts by random (reservoir) keys; selection={selection} ranks whole experiences; allowed: selection=random")
