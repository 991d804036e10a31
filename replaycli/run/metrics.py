"""Which metrics a run measures beyond its record, and how finely: the `metrics` list and the
`granularity` map of the config, checked into one `Metrics` value. Standard library only.

The record of a run is always written: the test accuracy on each test experience and its mean
over the stream (accuracy.csv), the buffer histogram, and each experience's mean training loss and
seconds (metrics.jsonl). The list adds:
- `accuracy`:  training accuracy, from the logits each step computed anyway;
- `loss`:      training loss per epoch or mini-batch; test loss per test experience and stream;
- `timing`:    seconds of each epoch; per-epoch and per-experience seconds in summary.json;
- `resources`: peak RSS, CPU time, peak GPU memory (CUDA) and the run directory's size;
- `cost`:      the samples each experience passed forward and backward through the network, its
               steps and FLOPs (run/cost.py); totals and FLOPs per step in summary.json;
- `confusion`: the confusion matrix of the whole test stream after each experience (confusion.csv).
Levels, finest first: minibatch, epoch (training), experience, stream (evaluation on the test
stream). `granularity.NAME` is the finest training level NAME is logged at; the coarser levels
come with it, and the evaluation levels are always measured.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from replaycli.errors import ConfigError, choice

NAMES = ("accuracy", "loss", "timing", "resources", "cost", "confusion")
LEVELS = ("minibatch", "epoch", "experience", "stream")
GRANULARITY = {  # the levels each metric's granularity may take; metrics not named here have none
    "accuracy": ("minibatch", "epoch", "experience"),
    "loss": ("minibatch", "epoch", "experience"),
    "timing": ("epoch", "experience"),
}
DEFAULT_GRANULARITY = {"accuracy": "epoch", "loss": "epoch", "timing": "epoch"}


@dataclass(frozen=True)
class Metrics:
    """The metrics on (`names`) and the granularity of each (`granularity[name]`, a level)."""

    names: tuple[str, ...] = ()
    granularity: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_GRANULARITY))

    def on(self, name: str) -> bool:
        return name in self.names

    def at(self, name: str, level: str) -> bool:
        """Whether `name` is logged at `level`: it is on and its granularity is `level` or finer."""
        if not self.on(name):
            return False
        finest = self.granularity.get(name, level)
        return LEVELS.index(finest) <= LEVELS.index(level)

    @property
    def per_epoch(self) -> bool:
        """Whether an experience's line in metrics.jsonl holds one record per epoch."""
        return any(self.at(n, "epoch") for n in GRANULARITY)

    @property
    def per_minibatch(self) -> bool:
        return any(self.at(n, "minibatch") for n in GRANULARITY)


def _names(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):  # metrics=confusion: a one-element list
        value = [value]
    if not isinstance(value, Iterable) or isinstance(value, Mapping):
        raise ConfigError(f"metrics={value!r} must be a list; allowed names: {', '.join(NAMES)}")
    names = [str(v) for v in value]
    for n in names:
        if n not in NAMES:
            raise ConfigError(f"metrics=[{','.join(names)}]: unknown metric {n!r}; allowed: {', '.join(NAMES)}")
    return tuple(dict.fromkeys(names))


def from_config(metrics: Any, granularity: Any = None) -> Metrics:
    """The `Metrics` of the config's `metrics` list and `granularity` map; ConfigError when a name
    or a level is not allowed. A config without them (a run from before metrics) measures none."""
    chosen = dict(DEFAULT_GRANULARITY)
    if granularity is not None and not isinstance(granularity, Mapping):
        raise ConfigError(
            f"granularity={granularity!r} is not allowed; allowed: keys of it, e.g. granularity.loss=minibatch "
            f"({', '.join(GRANULARITY)})"
        )
    for key, level in dict(granularity or {}).items():
        if key not in GRANULARITY:
            raise ConfigError(f"granularity.{key}: {key} has no granularity; allowed keys: {', '.join(GRANULARITY)}")
        choice(f"granularity.{key}", level, GRANULARITY[key])
        chosen[str(key)] = str(level)
    return Metrics(_names(metrics), chosen)
