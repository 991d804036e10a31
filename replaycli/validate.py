"""Check a composed config before anything is trained or written: one `ConfigError` naming the
key, the bad value and what is allowed."""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from replaycli.errors import ConfigError

GROUPBY = (None, "class", "task", "experience")
DEVICES = ("auto", "cpu", "cuda")
PROGRESS = ("auto", "rich", "plain", "none")


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
