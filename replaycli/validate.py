"""Check user input before anything is trained or written: one `ConfigError` naming the key, the
bad value and what is allowed.

`check_command_line` runs before Hydra (which would print its own multi-line errors and create
the run directory first); `validate` checks a composed config; `check_writable` an output path.
"""
from __future__ import annotations

import difflib
import os
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from replaycli.errors import ConfigError
from replaycli.metrics import from_config as check_metrics

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


def option(cfg: DictConfig, group: str, fallback: str) -> str:
    """The option of `group` as the user typed it (`buffer=reservoir`), from Hydra's choices; else
    `fallback` (a config composed without Hydra's runtime section)."""
    choice = OmegaConf.select(cfg, f"hydra.runtime.choices.{group}")  # compose(return_hydra_config=True)
    if choice is None:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():  # inside hydra_main, where cfg has no hydra section
            choice = HydraConfig.get().runtime.choices.get(group)
    return fallback if choice is None else str(choice)


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
            f"groupby={cfg.groupby} needs a buffer with groups; buffer={option(cfg, 'buffer', kind or 'none')} "
            "has none; allowed: buffer=parametric"
        )
    if "batch_size_mem" in cfg.loader:
        _int("loader.batch_size_mem", cfg.loader.batch_size_mem, 1)
    selection = str(cfg.selection.get("_target_", "")).rsplit(".", 1)[-1]
    if selection != "RandomExemplarsSelectionStrategy" and kind != "ParametricBuffer":
        raise ConfigError(
            f"selection={option(cfg, 'selection', selection)} ranks exemplars of buffer=parametric only; "
            f"buffer={option(cfg, 'buffer', kind or 'none')} has no ranking; allowed: buffer=parametric"
        )
    _sizes(cfg)
    _strategy(cfg, kind, selection)
    check_metrics(cfg.get("metrics"), cfg.get("granularity"))  # the metrics list and the granularities


def _positive_number(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{key}={value!r} must be a positive number")


def _sizes(cfg: DictConfig) -> None:
    """Sizes, counts and rates of the model, selection, optimizer and benchmark groups."""
    for key in ("hidden_size", "width", "nf"):
        if key in cfg.model:
            _int(f"model.{key}", cfg.model[key], 1)
    if "hidden_layers" in cfg.model:
        _int("model.hidden_layers", cfg.model.hidden_layers, 0)
    rate = cfg.model.get("drop_rate", 0.0)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        raise ConfigError(f"model.drop_rate={rate!r} must be a number in [0, 1)")
    if "batch_size" in cfg.selection:
        _int("selection.batch_size", cfg.selection.batch_size, 1)
    for key in ("total_num_classes", "num_experiences"):
        if cfg.buffer.get(key) is not None:
            _int(f"buffer.{key}", cfg.buffer[key], 1)
    if "n_experiences" in cfg.benchmark:
        _int("benchmark.n_experiences", cfg.benchmark.n_experiences, 1)
    _positive_number("optimizer.lr", cfg.optimizer.get("lr"))
    for key in ("weight_decay", "momentum"):
        if key in cfg.optimizer:
            _number(f"optimizer.{key}", cfg.optimizer[key])
    _choice("download", cfg.download, (True, False))


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


def check_arguments(cfg: DictConfig, groups: tuple[str, ...] = ("benchmark", "model", "buffer", "selection", "loader", "optimizer", "strategy")) -> None:
    """Every key of each group's config is an argument its `_target_` takes (e.g. `+model.foo=1`
    is refused here, not as a TypeError deep in the build). Imports the targets."""
    from hydra.utils import get_object

    for group in groups:
        node = cfg.get(group)
        target = node.get("_target_") if isinstance(node, DictConfig) else None
        if target is None:
            continue
        accepted = _accepted(get_object(str(target)))
        if accepted is None:
            continue
        for key in node:
            if not str(key).startswith("_") and key not in accepted:
                allowed = ", ".join(sorted(accepted))
                raise ConfigError(f"{group}.{key}={node[key]!r} is not an argument of {target}; allowed: {allowed}")


def _accepted(target: Any) -> set[str] | None:
    """The argument names `target` takes; None when it takes **kwargs (checked where they land)."""
    import inspect

    params = inspect.signature(target).parameters.values()
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind != p.VAR_POSITIONAL}


# --- before Hydra: the command line and the output directory ---------------------------------
def first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def check_writable(key: str, path: str | Path) -> None:
    """A ConfigError unless `path` is a directory we can write in, or can be created as one."""
    probe = Path(path).expanduser().absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent  # the nearest existing ancestor: where the first mkdir happens
    allowed = "allowed: a writable directory" + (f" (set {key}=...)" if key.startswith("hydra.") else "")
    if not probe.is_dir():
        raise ConfigError(f"{key}={path} cannot be created: {probe} is not a directory; {allowed}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".replay-probe-", dir=probe))
    except OSError as e:
        raise ConfigError(f"{key}={path} is not writable ({e.strerror or e}: {probe}); {allowed}") from e


MODES = {  # Hydra's flags that choose what it does: at most one of them
    "--run": "--run", "-r": "--run", "--multirun": "--multirun", "-m": "--multirun",
    "--cfg": "--cfg", "-c": "--cfg", "--info": "--info", "-i": "--info",
    "--shell-completion": "--shell-completion", "-sc": "--shell-completion",
}


def check_command_line(args: list[str]) -> None:
    """Compose what `replay run ARGS` would run before Hydra does: a bad override, an unknown key
    or option, an unwritable output directory or (single runs) a bad value becomes one
    ConfigError, and no directory is made. With -m every value of every sweep is composed, so an
    unknown key or option stops the sweep up front. Any other flag (--cfg, --help,
    --config-dir, ...) leaves the command line to Hydra."""
    from hydra import compose, initialize_config_module
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    flags = [a for a in args if a.startswith("-")]
    modes = {MODES[f.split("=")[0]] for f in flags if f.split("=")[0] in MODES}
    if len(modes) > 1:  # Hydra raises a bare ValueError for this, outside its error reporting
        allowed = ", ".join(dict.fromkeys(MODES.values()))
        raise ConfigError(f"{' and '.join(sorted(modes))} given together; allowed: one of {allowed}")
    if any(f not in ("-m", "--multirun") for f in flags):
        return
    multirun = bool(flags)
    overrides = [a for a in args if not a.startswith("-")]
    parser = OverridesParser.create()
    parsed = []
    for arg in overrides:
        try:
            parsed.append(parser.parse_override(arg))
        except HydraException as e:
            raise ConfigError(hydra_message(e, arg)) from None
    variants = [overrides]
    if multirun:  # the first value of every sweep, then each other value of each sweep in turn
        try:
            values = {
                i: [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
                for i, o in enumerate(parsed) if o.is_sweep_override()
            }
        except Exception:  # a sweep only Hydra's sweeper can enumerate (glob, interval): its job
            return
        base = [values[i][0] if i in values else o for i, o in enumerate(overrides)]
        variants = [base] + [base[:i] + [v] + base[i + 1:] for i, vs in values.items() for v in vs[1:]]
    with initialize_config_module("replaycli.configs", version_base="1.3"):
        for variant in variants:
            try:
                cfg = compose("config", overrides=variant, return_hydra_config=True)
            except (HydraException, OmegaConfBaseException) as e:
                raise ConfigError(hydra_message(e)) from None
        key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
        check_writable(key, OmegaConf.select(cfg, key))
    if not multirun:  # a sweep checks each job's values in the job: one bad job fails alone
        validate(cfg)


def hydra_message(e: BaseException, override: str | None = None) -> str:
    """One line for an error of Hydra's composition: what was given and what is allowed."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf import errors as oe

    if isinstance(e, OverrideParseException) or override is not None:
        bad = getattr(e, "override", None) or override
        return (
            f"cannot parse override {bad!r} ({first_line(e)}); allowed: key=value, group=option, "
            "+key=value (add a key), ~key (delete one); see https://hydra.cc/docs/advanced/override_grammar/basic"
        )
    if isinstance(e, MissingConfigException) and "/" in str(e.missing_cfg_file or ""):
        group, _, option = str(e.missing_cfg_file).rpartition("/")
        return f"{group}={option} is not an option of config group {group}; allowed: {', '.join(e.options or [])}"
    cause = e.__cause__
    if isinstance(cause, (oe.ConfigAttributeError, oe.ConfigKeyError)) and str(e).startswith("Could not override"):
        key = str(cause.full_key or cause.key)
        parent, _, leaf = key.rpartition(".")
        node = cause.parent_node
        keys = node.keys() if isinstance(node, DictConfig) else []
        known = [str(k) for k in keys if not str(k).startswith("_") and k != "hydra"]
        given = str(e).partition("use +")[2].strip() or key  # the override as typed, e.g. foo=1
        close = difflib.get_close_matches(leaf, known, n=1)
        hint = f" (did you mean {parent + '.' if parent else ''}{close[0]}?)" if close else ""
        where = f" of {parent}" if parent else ""
        return f"unknown key {key} in {given}{hint}; allowed keys{where}: {', '.join(known)}; to add a key: +{given}"
    lines = [ln.strip() for ln in str(e).split("Config search path")[0].splitlines() if ln.strip()]
    return "; ".join(lines) or type(e).__name__
