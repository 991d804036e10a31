"""The command line of `replay run`, before Hydra sees it: Hydra's own errors (a bad override,
an unknown key or option, conflicting flags) and an unwritable output directory become one
`ConfigError`, before any directory is made. The values are checked where they are built
(replaycli.run.build)."""

from __future__ import annotations

import difflib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from replaycli.errors import ConfigError, first_line

JOB = "runner"  # Hydra's job name (hydra.job.name): Hydra's main names it after the task's module, run/runner.py


def check_writable(key: str, path: str | Path) -> None:
    """A ConfigError unless `path` is a directory we can write in, or can be created as one."""
    probe = Path(path).expanduser().absolute()
    long = next((p for p in probe.parts if len(p.encode()) > 255), None)  # NAME_MAX on Linux and macOS
    if long is not None:
        raise ConfigError(
            f"{key}={path} has a name of {len(long.encode())} bytes ({long[:20]}...); allowed: at most 255"
        )
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent  # the nearest existing ancestor: where the first mkdir happens
    allowed = "allowed: a writable directory" + (f" (set {key}=...)" if key.startswith("hydra.") else "")
    if not probe.is_dir():
        raise ConfigError(f"{key}={path} cannot be created: {probe} is not a directory; {allowed}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".replay-probe-", dir=probe))
    except OSError as e:
        raise ConfigError(f"{key}={path} is not writable ({e.strerror or e}: {probe}); {allowed}") from e


HYDRA_FLAGS = {  # what Hydra's argparse takes (replay run --help)
    "--help",
    "-h",
    "--hydra-help",
    "--version",
    "--cfg",
    "-c",
    "--resolve",
    "--package",
    "-p",
    "--run",
    "-r",
    "--multirun",
    "-m",
    "--shell-completion",
    "-sc",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--info",
    "-i",
}
SHELL = ("install=", "uninstall=", "query=")  # what --shell-completion does
REFUSED_FLAGS = {  # Hydra's flags replay run does not pass on, and why
    "--experimental-rerun": "it unpickles FILE, and a pickle can carry code; replay resume RUN_DIR goes on with a run"
}
MODES = {  # Hydra's flags that choose what it does: at most one of them
    "--run": "--run",
    "-r": "--run",
    "--multirun": "--multirun",
    "-m": "--multirun",
    "--cfg": "--cfg",
    "-c": "--cfg",
    "--info": "--info",
    "-i": "--info",
    "--shell-completion": "--shell-completion",
    "-sc": "--shell-completion",
}


def prepare(args: list[str]) -> tuple[list[str], Path | None, Path | None, DictConfig | None, Path | None]:
    """`replay run ARGS` checked before anything runs: (ARGS without `--overwrite`, the run or sweep
    directory, the outermost directory above it that this run will create, and, for a plain single
    run, its config as composed, Hydra's section included, for `runner.launch`; and where
    `--overwrite` set the old run or sweep aside). A directory that holds a run or a sweep already
    is refused, unless `--overwrite` (it is set aside, then removed once the new one has written);
    a sweep re-issued into its own directory goes on (`reissued`)."""
    overwrite = "--overwrite" in args
    args = [a for a in args if a != "--overwrite"]
    target, made, cfg = check_command_line(args)
    aside = None
    if target is not None and target.is_dir() and {p.name for p in target.iterdir()} == {".hydra"}:
        shutil.rmtree(target / ".hydra")  # Hydra's record of a run stopped before it began: nothing of it to keep
    if target is not None and target.is_dir() and any(target.iterdir()):
        from replaycli.outputs import sweepdir

        sweep = is_multirun(args)
        what = "a sweep" if sweep else "a run"
        # what --overwrite may remove: a run (or a sweep's job), or a sweep, each holding nothing but what replaycli
        # writes; never a folder that merely holds runs (outputs/runs), nor one with a file of someone else's
        other = sweepdir.foreign(target, sweep)
        if sweep and other is None and not overwrite:  # the same sweep again: it finishes what is missing
            reissued(target, args)
        elif not overwrite or other is not None:  # --overwrite replaces a run or a sweep, never other files
            held = f"holds {what} already" if other is None else f"holds {other}, which is not a replaycli run or sweep"
            way = "or --overwrite to replace it" if other is None else "--overwrite replaces only a run or a sweep"
            raise ConfigError(
                f"{target} {held}; nothing was written; allowed: another directory, "
                f"replay resume {target} (a run), {way}"
            )
        else:
            from replaycli.run.runner import held as holding

            with holding(target):  # a run training there now is refused, not replaced under it
                aside = set_aside(target)  # removed once the new run has written, put back if it is refused
    if target is not None and cfg is None:  # pin the directory composed here (a ${now:...} default would differ
        key = "hydra.sweep.dir" if is_multirun(args) else "hydra.run.dir"  # in Hydra's own composition)
        args = [a for a in args if not a.startswith(f"{key}=")] + [f"{key}={target}"]
    return args, target, made, cfg, aside


def holding(target: Path) -> Any:
    """The run or sweep directory `target`, made and held (`runner.held`) from the moment its
    command line is checked until the command ends: of two runs started together into one
    directory, the second is refused in one line before it writes anything (Hydra's `.hydra/` of
    the first included). The lock is the process's: the run inside it takes it again freely."""
    from replaycli.run.runner import held

    target.mkdir(parents=True, exist_ok=True)
    return held(target)


def quiet_launcher(sweep: Path) -> None:
    """submitit's warning that it cannot read a cluster's accounting (`Bypassing sacct error ...`),
    twice on the terminal per poll where Slurm keeps none: it goes to `<sweep>/.submitit/launcher.log`
    instead, with the job states it could not read."""
    import logging

    class ToLog(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            text = record.getMessage()
            if "Bypassing sacct error" not in text:
                return True
            try:
                (sweep / ".submitit").mkdir(parents=True, exist_ok=True)
                with open(sweep / ".submitit" / "launcher.log", "a") as f:
                    f.write(f"{record.levelname} {text}\n")
            except OSError:
                pass
            return False

    logging.getLogger("submitit").addFilter(ToLog())


class Finished(Exception):
    """A re-issued sweep whose every job is complete: one line, exit 0, nothing trained."""


def task_overrides(args: list[str]) -> list[str]:
    """The overrides of `replay run ARGS` that Hydra records as the task's (not Hydra's own)."""
    args = config_name(config_dir(args)[0])[0]  # the flags' values are no overrides
    return [a for a in args if not a.startswith(("-", "hydra.", "hydra/", "+hydra", "~hydra"))]


def reissued(target: Path, args: list[str]) -> None:
    """`replay run -m ARGS` into the sweep directory `target` that holds a sweep already: the same
    sweep (the same task overrides, as typed) goes on, each job skipping its complete run and
    resuming its checkpoint (`runner.own_run`), and failed, cancelled and never-started jobs run;
    another sweep is refused in one line naming the difference; a sweep with every job complete
    is `Finished`."""
    from omegaconf import OmegaConf

    from replaycli.outputs import rundir, sweepdir

    try:
        before = [str(o) for o in OmegaConf.load(target / sweepdir.MULTIRUN).hydra.overrides.task]
    except Exception:  # noqa: BLE001 (no multirun.yaml, or not Hydra's: not a sweep to go on with)
        before = None
    now = task_overrides(args)
    if before is None or sorted(before) != sorted(now):
        gone = [o for o in before or [] if o not in now]
        new = [o for o in now if o not in (before or [])]
        why = (
            "no multirun.yaml records how it was started"
            if before is None
            else (
                f"it was started with {' '.join(before) or 'no overrides'}"
                + (f"; not given now: {' '.join(gone)}" if gone else "")
                + (f"; new now: {' '.join(new)}" if new else "")
            )
        )
        raise ConfigError(
            f"{target} holds another sweep ({why}); nothing was written; allowed: the same overrides (the sweep "
            "goes on where it stopped), another directory, or --overwrite to replace it"
        )
    jobs = planned_jobs(args)
    complete = 0
    for i in range(len(jobs)):
        try:
            complete += rundir.read_run(target / str(i)).complete
        except (OSError, rundir.OutputError):
            pass
    if jobs and complete == len(jobs):
        raise Finished(f"{target}: every one of its {len(jobs)} jobs is complete; nothing to run")
    print(f"{target}: the sweep goes on: {complete} of {len(jobs) or '?'} jobs complete already", flush=True)


def set_aside(target: Path) -> Path:
    """`--overwrite`: the old run or sweep renamed to a hidden sibling, until the new one has
    written (`settle_aside`): a new run refused after the command line was read loses nothing."""
    aside = target.parent / f".{target.name}.replaced-{os.getpid()}"
    os.rename(target, aside)
    return aside


def settle_aside(aside: Path | None, target: Path | None) -> None:
    """The old run set aside by `--overwrite`: removed when the new one wrote into `target`, put
    back when it wrote nothing (refused, or stopped before its first file)."""
    if aside is None or target is None or not aside.exists():
        return
    if target.is_dir() and any(p.is_file() for p in target.rglob("*") if not p.is_relative_to(target / ".hydra")):
        shutil.rmtree(aside, ignore_errors=True)
    else:
        shutil.rmtree(target, ignore_errors=True)
        os.rename(aside, target)


def is_multirun(args: list[str]) -> bool:
    return "-m" in args or "--multirun" in args


def planned_jobs(args: list[str]) -> list[list[str]]:
    """The task overrides of each job of `replay run -m ARGS`, in the basic sweeper's order (every
    combination, the last sweep varying fastest); [] when a sweep only Hydra can enumerate."""
    import itertools

    overrides = task_overrides(args)
    values = sweep_values(overrides, parse(overrides))
    return [list(c) for c in itertools.product(*values)] if values is not None else []


def hydra_argv(args: list[str]) -> list[str]:
    """sys.argv for Hydra: its value-less flags first (argparse wants them before the overrides);
    the program named `replay` for the shell-completion script, `replay run` otherwise."""
    completion = any(a.split("=")[0] in ("-sc", "--shell-completion") for a in args)
    bare = {"-m", "--multirun", "-r", "--run", "--resolve", "-h", "--help", "--hydra-help", "--version"}
    return [
        "replay" if completion else "replay run",
        *[a for a in args if a in bare],
        *[a for a in args if a not in bare],
    ]


def launcher_failure(e: Exception, args: list[str], target: Path | None, made: Path | None) -> None:
    """One ConfigError for an exception raised inside a launcher plugin (submitit_slurm where
    there is no Slurm), the sweep directory it left removed; returns for any other exception."""
    import traceback

    if not any(
        "hydra_plugins" in f.filename or "submitit" in f.filename for f in traceback.extract_tb(e.__traceback__)
    ):
        return
    if (
        target is not None
        and target.is_dir()
        and not any(p.is_dir() and (p / "config.yaml").is_file() for p in target.iterdir())
    ):
        shutil.rmtree(target, ignore_errors=True)  # no job ran: what is there is the launcher's
    remove_if_empty(made)
    sweeper = next((a for a in args if a.startswith("hydra/sweeper=")), None)
    if sweeper is not None and any("sweeper" in f.filename for f in traceback.extract_tb(e.__traceback__)):
        raise ConfigError(f"{sweeper} stopped the sweep ({type(e).__name__}: {e}); see the jobs' lines above") from None
    launcher = next((a.split("=", 1)[1] for a in args if a.startswith("hydra/launcher=")), "basic")
    raise ConfigError(
        f"hydra/launcher={launcher} could not launch the sweep ({type(e).__name__}: {e}); "
        "allowed here: hydra/launcher=basic, joblib or submitit_local"
    ) from None


def flag_value(args: list[str], names: tuple[str, ...]) -> tuple[list[str], str | None]:
    """`args` without the flag `names` and its value (`-f VALUE` or `-f=VALUE`), and that value
    (None when absent; "" when the flag ends the line)."""
    rest, found, it = [], None, iter(args)
    for a in it:
        flag, eq, value = a.partition("=")
        if flag in names:
            found = value if eq else next(it, "")
        else:
            rest.append(a)
    return rest, found


def config_dir(args: list[str]) -> tuple[list[str], str | None]:
    """`args` without `--config-dir DIR` / `-cd DIR` (or `=DIR`), and DIR (None when absent)."""
    rest, found = flag_value(args, ("--config-dir", "-cd"))
    if found is not None and not Path(found).is_dir():  # Hydra says it in three lines, or not at all (compose)
        raise ConfigError(f"--config-dir {found or '(nothing)'} is not a directory; allowed: a folder of config groups")
    return rest, found


def config_name(args: list[str]) -> tuple[list[str], str | None]:
    """`args` without `--config-name NAME` / `-cn NAME` (or `=NAME`), and NAME (None when absent)."""
    rest, found = flag_value(args, ("--config-name", "-cn"))
    if found is not None and (not found or found.startswith("-")):
        raise ConfigError(
            f"--config-name {found or '(nothing)'} is no name; allowed: the name of a config of --config-dir, "
            "without .yaml"
        )
    return rest, found


def check_command_line(args: list[str]) -> tuple[Path | None, Path | None, DictConfig | None]:
    """Compose what `replay run ARGS` would run: a bad override, an unknown key or option or an
    unwritable output directory becomes one ConfigError, and no directory is made. With -m every
    value of every sweep is composed, so an unknown key or option stops the sweep up front. Any
    other flag (--cfg, --help, --config-dir, ...) leaves the command line to Hydra. The values are
    checked by each job (replaycli.run.build). Returns the run or sweep directory it will write,
    for a single run the outermost directory above it that does not exist yet (what a refused run
    must not leave behind), and a plain single run's config, composed as Hydra's main composes it
    (its mode, its job name), which is then run without composing again; Nones where Hydra's
    other flags leave them unknown."""
    from hydra import compose, initialize_config_dir, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from replaycli.run import precheck, rules

    args, extra = config_dir(args)  # the flags with a value composed here: a user's own config folder,
    args, name = config_name(args)  # and the config of it (or of ours) to start from
    flags = [f for f in check_flags(args) if f not in ("-r", "--run")]  # -r is a plain run: the same guard
    if any(f not in ("-m", "--multirun") for f in flags):
        return None, None, None
    multirun = bool(flags)
    single = not multirun and extra is None and name is None  # composed once, here, and run as composed
    search = [f"hydra.searchpath=[file://{Path(extra).absolute()}]"] if extra else []
    variants = command_lines([a for a in args if not a.startswith("-")], multirun)
    if not variants:
        return None, None, None
    primary = extra is not None and name is not None  # -cn of the user's folder: it is the primary one, ours after
    if primary:
        search = ["hydra.searchpath=[pkg://replaycli.configs]"]
    with (
        initialize_config_dir(str(Path(str(extra)).absolute()), version_base="1.3", job_name=JOB)
        if primary
        else initialize_config_module("replaycli.configs", version_base="1.3", job_name=JOB)
    ):
        for variant in variants:
            try:
                cfg = compose(
                    name or "config",
                    overrides=variant + (["hydra.mode=RUN"] if single else search),
                    return_hydra_config=True,
                )
            except (HydraException, OmegaConfBaseException) as e:
                raise ConfigError(hydra_message(e)) from None
            except (ValueError, TypeError) as e:  # `buffer=-1`: an option that is no name; Hydra's TypeError for a
                # list of numbers given to a group of a user's --config-dir (the shipped groups refuse lists in parse)
                raise ConfigError(
                    f"cannot compose {' '.join(variant)} ({first_line(e)}); allowed: group=option "
                    "with an option's name (replay run --help lists them)"
                ) from None
            if not multirun and resolves(cfg):  # a run, before torch is imported (a sweep's jobs check their own
                rules.check_settings(cfg)  # values: one bad job fails alone): the run's own keys, the types of the
                rules.check_override_types(cfg, variant)  # options' keys typed, and the shipped constructors' own
                precheck.check(cfg)  # checks of each group's values; a typo costs no second of CPU
        key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
        check_writable(key, OmegaConf.select(cfg, key))
        raw = OmegaConf.to_container(cfg.hydra.sweep, resolve=False) if multirun else {}  # ${hydra.job.num}: as typed
        subdir = Path(str(raw.get("subdir", "0")) if isinstance(raw, dict) else "0")
        if subdir.is_absolute() or ".." in subdir.parts:  # a job's directory is inside its sweep
            raise ConfigError(f"hydra.sweep.subdir={subdir} leaves the sweep directory; allowed: a path inside it")
    target = Path(OmegaConf.select(cfg, key))  # as composed: relative to the working directory
    return target, first_missing(target.parent), cfg if single else None


def resolves(cfg: DictConfig) -> bool:
    """Whether the run's keys of `cfg` resolve as composed here, outside a job (`${hydra:...}`
    resolves only inside one)."""
    try:
        OmegaConf.to_container(OmegaConf.masked_copy(cfg, [str(k) for k in cfg if k != "hydra"]), resolve=True)
    except Exception:  # noqa: BLE001 (omegaconf's interpolation errors: the job's build says which, in one line)
        return False
    return True


def check_flags(args: list[str]) -> list[str]:
    """The flags among `args` (Hydra's): at most one that chooses what Hydra does, none unknown."""
    flags = [a for a in args if a.startswith("-")]
    refused = next((f.split("=")[0] for f in flags if f.split("=")[0] in REFUSED_FLAGS), None)
    if refused is not None:
        raise ConfigError(f"{refused} is refused: {REFUSED_FLAGS[refused]}")
    names = {f.split("=")[0] for f in flags}
    if "--resolve" in names and not names & {"--cfg", "-c", "--help", "-h"}:  # Hydra raises a bare ValueError
        raise ConfigError("--resolve shows a resolved config; allowed: with --cfg job|hydra|all, or --help")
    if names & {"-sc", "--shell-completion"} and not any(a.startswith(SHELL) for a in args):
        raise ConfigError(
            "--shell-completion needs what to do; allowed: install=bash|zsh|fish, uninstall=..., query=..."
        )
    modes = {MODES[f.split("=")[0]] for f in flags if f.split("=")[0] in MODES}
    if len(modes) > 1:  # Hydra raises a bare ValueError for this, outside its error reporting
        allowed = ", ".join(dict.fromkeys(MODES.values()))
        raise ConfigError(f"{' and '.join(sorted(modes))} given together; allowed: one of {allowed}")
    unknown = [f for f in flags if f.split("=")[0] not in HYDRA_FLAGS]
    if unknown:  # argparse would print its 8-line usage
        raise ConfigError(
            f"unknown flag {unknown[0]}; allowed: {', '.join(sorted(HYDRA_FLAGS))}, --overwrite (see replay run --help)"
        )
    return flags


def parse(overrides: list[str]) -> list:
    """Hydra's parse of each override; a bad one is a ConfigError."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser, parsed, shipped = OverridesParser.create(), [], groups()
    for arg in overrides:
        try:
            parsed.append(parser.parse_override(arg))
        except HydraException as e:
            raise ConfigError(hydra_message(e, arg)) from None
        o = parsed[-1]
        if not o.key_or_group:  # `=5`: Hydra's grammar takes it, its loader does not
            raise ConfigError(hydra_message(ValueError("no key before '='"), arg))
        if o.key_or_group in shipped and not o.is_delete() and isinstance(o.value(), list):
            # Hydra merges a list of options into one node: buffer=[reservoir,none] would run without a memory
            key = arg.partition("=")[0]
            raise ConfigError(
                f"{arg} gives config group {o.key_or_group} a list of options; allowed: one option, "
                f"{key}=OPTION, or a sweep over options: -m {key}=A,B"
            )
    return parsed


def groups() -> set[str]:
    """The config groups replaycli ships (configs/<group>/<option>.yaml), experiment included."""
    from importlib import resources

    root = resources.files("replaycli.configs")
    return {d.name for d in root.iterdir() if d.is_dir() and any(f.name.endswith(".yaml") for f in d.iterdir())}


def sweep_values(overrides: list[str], parsed: list) -> list[list[str]] | None:
    """Each override's values as `key=value` (one, as typed, for an override that is no sweep);
    None when a sweep only Hydra's sweeper can enumerate (glob, interval)."""
    try:
        return [
            [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override() else [a]
            for a, o in zip(overrides, parsed, strict=True)
        ]
    except Exception:  # noqa: BLE001 (Hydra raises several kinds here)
        return None


def command_lines(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override lists to compose: `overrides` itself; with -m, the first value of every sweep,
    then each other value of each sweep in turn ([] for a sweep only Hydra's sweeper can
    enumerate). A bad override is a ConfigError."""
    parsed = parse(overrides)
    if not multirun:
        return [overrides]
    values = sweep_values(overrides, parsed)
    if values is None:
        return []
    empty = next((a for a, vs in zip(overrides, values, strict=True) if not vs), None)
    if empty is not None:  # range(0,0), an empty choice(): a sweep of no job
        raise ConfigError(f"{empty} sweeps no value; allowed: a sweep of one value or more")
    base = [vs[0] for vs in values]
    return [base] + [base[:i] + [v] + base[i + 1 :] for i, vs in enumerate(values) for v in vs[1:]]


def first_missing(path: Path) -> Path | None:
    """The outermost ancestor of `path` (or `path`) that does not exist, or None."""
    path = path.absolute()
    missing = None
    while not path.exists() and path != path.parent:
        missing, path = path, path.parent
    return missing


def remove_if_empty(path: Path | None) -> None:
    """Remove `path` if it holds nothing but empty directories (left by a refused run)."""
    if path is not None and path.is_dir() and not any(p.is_file() or p.is_symlink() for p in path.rglob("*")):
        shutil.rmtree(path, ignore_errors=True)


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
