"""The rules no single constructor can check: the run's own top-level keys, keys that no option
takes, and rules across groups, stated by what the classes declare (a method's `needs_memory`,
`protocols`, `memory_groupby`; a selection's `online`; a buffer's `groupby`), never by class
name. A rule about one value lives in the constructor that takes it. Each rule has one message.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from typing import TYPE_CHECKING, Any, NoReturn, cast

from omegaconf import DictConfig, OmegaConf

from replaycli.errors import ConfigError, batch, choice, first_line, flag, integer, number
from replaycli.scenario import SCENARIOS

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from replaycli.methods.base import Method

DEVICES = ("auto", "cpu", "cuda")  # and cuda:N, the N-th CUDA device (`device`)
PATH_KEYS = ("data_root", "benchmark.root", "benchmark.path", "benchmark.cache_dir")  # what a run reads: config.yaml
# keeps them absolute
PROGRESS = ("auto", "rich", "plain", "none")
KEEP_CHECKPOINT = ("last", "none", "all")  # what a complete run keeps of its checkpoints
PROTOCOLS = ("after_experience", "every_batch")  # buffer_update: when the memory takes samples
BUDGET_UNITS = ("steps", "samples", "flops")  # what `budget` counts (run/pace.py)
# what Python passes to every option of each group, beside the option's own YAML keys
OPTIONAL = ("buffer", "selection", "logger")  # groups a run may go without (buffer=none); the others it needs
INJECTED = {
    "benchmark": (),
    "model": ("num_classes", "input_shape"),
    "optimizer": ("params",),
    "selection": ("model", "generator"),
    "buffer": ("selection_strategy", "generator"),
    "strategy": ("model", "optimizer", "mask"),
    "loader": ("data", "buffer", "batch_size", "batch_size_mem", "generator"),
    "logger": ("run_dir",),
}


def option(cfg: DictConfig, group: str, fallback: str) -> str:
    """The option of `group` as the user typed it (`buffer=reservoir`), from Hydra's choices; else
    `fallback` (a config composed without Hydra's runtime section)."""
    picked = OmegaConf.select(cfg, f"hydra.runtime.choices.{group}")  # compose(return_hydra_config=True)
    if picked is None:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():  # inside hydra_main, where cfg has no hydra section
            picked = HydraConfig.get().runtime.choices.get(group)
    return fallback if picked is None else str(picked)


def options_with(group: str, text: str, present: bool = True) -> str:
    """The shipped options of `group` whose YAML contains `text` (or, `present=False`, does not),
    as `group=a, group=b`: what a message offers instead."""
    folder = resources.files("replaycli.configs") / group
    names = sorted(
        f.name[:-5] for f in folder.iterdir() if f.name.endswith(".yaml") and (text in f.read_text()) == present
    )
    return ", ".join(f"{group}={n}" for n in names)


def targets(tree: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, target) of every non-null `_target_` at any depth of a plain dict/list tree."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for k, v in items:
        key = f"{path}.{k}" if path else str(k)
        if k == "_target_" and v is not None:
            yield key, str(v)
        yield from targets(v, key)


def shipped_targets() -> set[str]:
    """Every `_target_` named by the YAML files replaycli ships (configs/)."""
    import yaml

    return {
        t for f in yaml_files(resources.files("replaycli.configs")) for _, t in targets(yaml.safe_load(f.read_text()))
    }


def yaml_files(folder: Traversable) -> Iterator[Traversable]:
    """Every `*.yaml` under `folder`, at any depth (a Traversable: the package may be a zip)."""
    for f in folder.iterdir():
        if f.is_dir():
            yield from yaml_files(f)
        elif f.name.endswith(".yaml"):
            yield f


def check_targets(cfg: DictConfig, trusted: set[str], source: str, hint: str) -> None:
    """Every `_target_` at any depth of `cfg` is shipped by replaycli or in `trusted`: a config
    read from a run directory is data, and must not name code to run (`hint`: how to allow one)."""
    try:
        tree = OmegaConf.to_container(cfg, resolve=True)
    except Exception as e:  # noqa: BLE001 (an interpolation omegaconf cannot resolve)
        raise ConfigError(f"{source} cannot be resolved ({first_line(e)})") from None
    allowed = shipped_targets() | trusted
    for key, target in targets(tree):
        if target not in allowed:
            raise ConfigError(
                f"{source} names {key}={target}, which replaycli does not ship; refused: "
                f"resume builds only replaycli's own targets and those you name ({hint} {target})"
            )


def check_known(cfg: DictConfig) -> None:
    """Every top-level key is one of config.yaml's or a group's: `+epoch=3` (a typo of `epochs`,
    added with `+`) would otherwise be kept and never read."""
    import difflib

    import yaml

    tree = yaml.safe_load((resources.files("replaycli.configs") / "config.yaml").read_text())
    groups = {next(iter(d)).split("/")[-1].split("@")[0] for d in tree["defaults"] if isinstance(d, dict)}
    known = (set(tree) - {"defaults"}) | groups  # the presets (experiment, protocol) set these, never keys of their own
    for key in map(str, cfg):
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(
                f"{key}={cfg[key]!r} is not a key of replay run{hint}; allowed: the run's keys (replay run --help) "
                "and the groups' keys, e.g. optimizer.lr"
            )


def check_settings(cfg: DictConfig) -> None:
    """The run's own keys (config.yaml's top level), and no other top-level key."""
    check_known(cfg)
    integer("seed", cfg.get("seed"), 0, 2**63 - 1)  # what torch.manual_seed takes
    integer("epochs", cfg.get("epochs"), 1)
    for key in ("train_mb_size", "mem_mb_size", "eval_mb_size"):
        batch(key, cfg.get(key))
    device(cfg.get("device"))
    choice("progress", cfg.get("progress"), PROGRESS)
    choice("keep_checkpoint", cfg.get("keep_checkpoint", "last"), KEEP_CHECKPOINT)
    if cfg.get("eval_every") is not None:
        integer("eval_every", cfg.get("eval_every"), 1, otherwise="null (at experience ends only)")
    integer("eval_sample", cfg.get("eval_sample", 1000), 1)
    choice("buffer_update", cfg.get("buffer_update"), PROTOCOLS)
    if cfg.get("budget") is not None:
        number("budget", cfg.get("budget"), 1.0)
    choice("budget_unit", cfg.get("budget_unit", "steps"), BUDGET_UNITS)
    if flag("realtime", cfg.get("realtime", False)) and cfg.get("buffer_update") != "every_batch":
        raise ConfigError(
            f"realtime=true sees the stream once, as it comes; buffer_update={cfg.get('buffer_update')} stores "
            "each experience at its end; allowed: buffer_update=every_batch, or realtime=false"
        )
    choice("scenario", cfg.get("scenario"), SCENARIOS)
    flag("download", cfg.get("download"))
    threads = cfg.get("threads", 1)
    if threads != "auto":
        integer("threads", threads, 1, 1024, otherwise="auto")
    flag("deterministic", cfg.get("deterministic"))


def locate(target: str) -> Any:
    """The object `target` names, through Hydra's public `get_object`, without the error line it
    logs when the target cannot be imported (the build then says so, in one line of ours)."""
    import logging

    from hydra.utils import get_object

    log = logging.getLogger("hydra.utils")
    was, log.disabled = log.disabled, True
    try:
        return get_object(target)
    finally:
        log.disabled = was


def check_arguments(cfg: DictConfig, injected: dict[str, tuple[str, ...]]) -> None:
    """Every key of every group's option is an argument its `_target_` takes, beside what Python
    passes (`injected`): `+model.foo=1` is refused here, not as a TypeError deep in the build."""
    import inspect

    for group, node in cfg.items():
        target = node.get("_target_") if isinstance(node, DictConfig) else None
        if target is None:
            continue
        try:
            params = inspect.signature(locate(str(target))).parameters.values()
        except Exception:  # noqa: BLE001 (not importable: the build says so, in one line)
            continue
        if any(p.kind == p.VAR_KEYWORD for p in params):
            continue  # takes anything: checked where the keywords land
        accepted = {p.name for p in params if p.kind != p.VAR_POSITIONAL} - set(injected.get(str(group), ()))
        for key in node:
            if not str(key).startswith("_") and key not in accepted:
                allowed = ", ".join(sorted(accepted)) or "none"
                raise ConfigError(f"{group!s}.{key!s}={node[key]!r} is not an argument of {target}; allowed: {allowed}")


def refuse_missing(group: str, node: Any) -> NoReturn:
    """A group the run needs, removed (`~model`) or left without a target: one ConfigError."""
    how = f"{group}._target_ is null" if isinstance(node, DictConfig) else f"~{group} removed it"
    raise ConfigError(f"{group} is required ({how}); allowed: {options_with(group, '_target_')}")


def method_class(cfg: DictConfig) -> type[Method]:
    node = cfg.get("strategy")
    if not isinstance(node, DictConfig) or node.get("_target_") is None:
        refuse_missing("strategy", node)
    target = str(node._target_)
    try:
        found = locate(target)
    except Exception as e:  # noqa: BLE001 (Hydra's ImportError / ValueError for a target it cannot load)
        why = " ".join(str(e).split())[:300]  # Hydra's message spans lines: the module that is missing is on the second
        raise ConfigError(f"strategy={option(cfg, 'strategy', target)} cannot be built: {why}") from None
    if not isinstance(found, type):
        raise ConfigError(f"strategy={option(cfg, 'strategy', target)} names {target}, which is not a class")
    method = cast("type[Method]", found)
    name = option(cfg, "strategy", method.__name__)
    if cfg.buffer_update not in method.protocols:
        raise ConfigError(
            f"strategy={name} is defined under {' and '.join(method.protocols)} only; "
            f"buffer_update={cfg.buffer_update} is not; allowed: buffer_update={', '.join(method.protocols)}"
        )
    return method


def check_scenario(cfg: DictConfig, bench: Any) -> None:
    if cfg.scenario == "task_il" and bench.n_tasks == 1:
        raise ConfigError("scenario=task_il masks logits by task label; set benchmark.return_task_id=true")


def check_optimizer(cfg: DictConfig) -> None:
    """torch's optimizers take any float: their rates must be finite and >= 0, lr > 0."""
    for key in ("lr", "weight_decay", "momentum", "dampening"):
        if key in cfg.optimizer:
            number(f"optimizer.{key}", cfg.optimizer[key])
    for key in ("fused", "nesterov", "amsgrad", "foreach", "maximize", "capturable", "differentiable"):
        if cfg.optimizer.get(key) is not None:  # torch takes any truthy value for these
            flag(f"optimizer.{key}", cfg.optimizer[key])
    if cfg.optimizer.get("lr") == 0:
        raise ConfigError("optimizer.lr=0 must be > 0")


def check_memory(cfg: DictConfig, method: type[Method], buffer: Any, bench: Any) -> None:
    """The buffer against the method, the update protocol, the top-level `groupby` and the stream."""
    name, kind = option(cfg, "strategy", method.__name__), option(cfg, "buffer", "none")
    parametric = options_with("buffer", "${groupby}")  # the options that read the top-level groupby
    if cfg.groupby is not None and (cfg.get("buffer") or {}).get("groupby") != cfg.groupby:
        raise ConfigError(
            f"groupby={cfg.groupby} needs a buffer with groups; buffer={kind} has none; allowed: {parametric}"
        )
    if buffer is None:
        if method.needs_memory:
            raise ConfigError(
                f"strategy={name} needs a memory but buffer=none; allowed: "
                + options_with("buffer", "_target_: null", present=False)
            )
        return
    if method.memory_groupby is not None and buffer.groupby != method.memory_groupby:
        raise ConfigError(
            f"strategy={name} needs a buffer grouped by {method.memory_groupby}; buffer={kind} groups by "
            f"{buffer.groupby or 'nothing'}; allowed: one that does, e.g. {parametric} "
            f"groupby={method.memory_groupby}"
        )
    if method.holds_everything:
        total = sum(len(e.dataset) for e in bench.train_stream)
        if buffer.max_size < total:
            raise ConfigError(
                f"strategy={name} trains on every sample seen so far; buffer.max_size={buffer.max_size} holds "
                f"fewer than the stream's {total} training samples; allowed: buffer.max_size >= {total}"
            )
    keys = {"class": bench.n_classes, "experience": bench.n_experiences, None: 1, "task": bench.n_tasks}
    buffer.refuse_keys(keys.get(buffer.groupby, 0), prefix="buffer.")  # fixed shares: one per key of the stream
    if (cfg.get("loader") or {}).get("task_balanced_dataloader"):  # the loader's own rule, for the whole stream
        from replaycli.loaders import refuse_small

        refuse_small("mem_mb_size", cfg.mem_mb_size, bench.n_tasks, "task labels of the stream (task-balanced loader)")
    selection = buffer.selection_strategy
    if cfg.buffer_update == "every_batch" and selection is not None and not selection.online:
        raise ConfigError(
            f"buffer_update=every_batch inserts batch by batch; selection={option(cfg, 'selection', '')} "
            "ranks whole groups; allowed: selection=random"
        )


def device(value: Any) -> str:
    """`value` if it names a device a run may train on: auto, cpu, cuda (the current CUDA device)
    or cuda:N (the N-th); else a ConfigError. Whether it exists here: `run.build.resolve_device`."""
    text = str(value)
    index = text[5:] if text.startswith("cuda:") else None
    if value in DEVICES or (
        isinstance(value, str) and index is not None and index.isdigit() and index == str(int(index))
    ):
        return text
    raise ConfigError(f"device={value!r} is not allowed; allowed: {', '.join(DEVICES)}, cuda:N (N = 0, 1, ...)")


def named(group: str, node: Any, e: ConfigError) -> ConfigError:
    """A constructor's refusal (`max_size=-5 must be ...`) with its key as typed: `buffer.max_size`
    when the key is one of the group's node, else as it was."""
    key = str(e).partition("=")[0]
    return ConfigError(f"{group}.{e}" if key in node else str(e))


def check_override_types(cfg: DictConfig, overrides: list[str]) -> None:
    """Each `key=value` of the command line that sets a key of a shipped option (buffer.max_size,
    optimizer.lr, loader.shuffle) holds a value of the type of that option's own default: an
    integer where the default is an integer, true or false where it is a boolean, a number where
    it is a float. Torch-free: `replay run` refuses a typo before importing torch; ranges and
    everything else about a value are the constructor's (`run.build`)."""
    import yaml

    root = resources.files("replaycli.configs")
    for item in overrides:
        key, eq, _ = item.lstrip("+").partition("=")
        group_name = key.split(".")[0]
        if not eq or "." not in key or key.startswith(("~", "hydra.")) or not (root / group_name).is_dir():
            continue
        chosen = option(cfg, group_name, "")
        source = root / group_name / f"{chosen}.yaml"
        if not chosen or not source.is_file():
            continue
        text = source.read_text()
        tree = yaml.safe_load(text) or {}
        path = key.split(".") if "@package _global_" in text.split("\n", 1)[0] else key.split(".")[1:]
        default: Any = tree
        for part in path:
            default = default.get(part) if isinstance(default, dict) else None
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if isinstance(default, bool):
            flag(key, value)  # the message every flag has
            continue
        if isinstance(default, int):
            wanted, fits = "an integer", isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            wanted, fits = "a number", isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            continue
        if not fits:
            raise ConfigError(
                f"{key}={value!r} is not allowed; allowed: {wanted} ({group_name}={chosen} has "
                f"{key.split('.', 1)[1]}: {default})"
            )
