"""The `replay` command: one small function per verb."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

from replaycli.errors import ConfigError
from replaycli.outputs.files import OutputError

USAGE = """usage: replay VERB [ARGS]

verbs:
  run [hydra flags] [overrides]   train over an experience stream with replay (replay run --help)
  inspect PATH [--json]           what a run, a sweep or an outputs directory holds
  compare PATH... [--by KEY]      runs grouped by config keys: mean, std and n over seeds
  plot PATH [--by KEY]            PNG figures of a run, a sweep or an outputs directory, written into each
  resume RUN_DIR [--trust T]      go on with a stopped run after its last finished experience
  check [overrides]               does this run resume to the same numbers? (a new method, buffer, ...)
  prune PATH... [--yes]           remove the checkpoints of complete runs and runs that failed long ago

examples:
  replay run
  replay run buffer=parametric groupby=class buffer.max_size=200
  replay run -m buffer.max_size=100,200,500
  replay inspect outputs
  replay compare outputs/sweeps/<sweep> --by buffer.max_size
  replay plot outputs/sweeps/<sweep>
"""


def run(args: list[str]) -> int:
    """`replay run [hydra flags] [overrides] [--overwrite]`."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from replaycli.run import cmdline
    from replaycli.run.runner import Refused, hydra_main, launch

    if args == ["--version"]:  # replaycli's version first; Hydra's alone said nothing of ours
        from importlib.metadata import version

        from replaycli import __version__

        print(f"replay {__version__} (Hydra {version('hydra-core')})")
        return 0
    if any("launcher=batched" in a for a in args):
        from replaycli.run.launcher import register

        register()
    try:
        args, target, made, cfg, aside = cmdline.prepare(args)  # Hydra's own errors in one line, before any directory
    except cmdline.Finished as e:  # a re-issued sweep with nothing left to run
        print(e, flush=True)
        return 0
    if sys.stderr.isatty() and (cfg is not None or cmdline.is_multirun(args)):  # what the next seconds go to
        print("replay run: loading PyTorch and the data ...", file=sys.stderr, flush=True)
    sys.argv = cmdline.hydra_argv(args)
    if target is not None and cmdline.is_multirun(args):
        cmdline.quiet_launcher(target)
        if any(a.startswith("hydra/launcher=submitit") for a in args):  # its jobs print in logs of their own
            from replaycli.run.sweep import watch

            watch(target)
    before = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing: one line below
    holding = contextlib.ExitStack()
    try:
        if target is not None:  # ours from now on: a second replay started into it meanwhile is refused, unwritten
            holding.enter_context(cmdline.holding(target))
        if cfg is not None:  # a plain single run, composed once by prepare
            launch(cfg)
        else:  # a sweep, or Hydra's own flags
            hydra_main()
    except Refused as e:  # refused before anything was written: no directory left behind
        cmdline.remove_if_empty(made)
        raise e.args[0] from None
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM in a sweep: its summary.csv, unstarted jobs listed too
        if target is not None and target.is_dir() and cmdline.is_multirun(args):
            from replaycli.outputs.sweepdir import finishing_command, write_interrupted

            write_interrupted(target, cmdline.planned_jobs(args))
            e.sweep_command = finishing_command(target)  # type: ignore[attr-defined]  # issued again, it goes on
        raise
    except SystemExit as e:  # Hydra's --help, the sweep callback's exit status
        return e.code if isinstance(e.code, int) else int(e.code is not None)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(cmdline.hydra_message(e)) from None
    except Exception as e:
        cmdline.launcher_failure(e, args, target, made)
        raise
    finally:
        holding.close()
        cmdline.settle_aside(aside, target)  # --overwrite: the old run goes only once the new one has written
        if before is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = before
    return 0


def resume(args: list[str]) -> int:
    """`replay resume RUN_DIR [--trust TARGET ...]`: exit 0 when the run finishes, or when it was
    already complete."""
    usage = "usage: replay resume RUN_DIR [--trust TARGET ...] | replay resume SWEEP_DIR"
    if args in (["-h"], ["--help"]):
        print(
            usage + "\n  go on with a stopped run after its last finished experience; --trust allows a\n"
            "  _target_ of its config.yaml that replaycli does not ship (your own method, say)"
        )
        return 0
    dirs, trusted = [], []
    it = iter(args)
    for a in it:
        if a == "--trust":
            trusted.append(next(it, ""))
        elif a.startswith("-"):
            raise ConfigError(f"resume: unknown flag {a}; {usage}")
        else:
            dirs.append(a)
    if len(dirs) != 1 or "" in trusted:
        raise ConfigError(f"resume takes one RUN_DIR, got {' '.join(args) or 'nothing'}; {usage}")
    from replaycli.outputs.sweepdir import MULTIRUN, finishing_args, finishing_command
    from replaycli.run.runner import resume_run

    where = Path(dirs[0])
    if (where / MULTIRUN).is_file() and not (where / "config.yaml").exists():  # a sweep: issued again, it goes on
        words, command = finishing_args(where), finishing_command(where)
        if words is None:
            raise ConfigError(
                f"{where}/{MULTIRUN} does not say how the sweep was started; allowed: a sweep of replay run -m"
            )
        own = [w for w in words if "_target_" in w or w.startswith(("--config-dir", "-cd", "hydra.callbacks"))]
        if own:  # a received sweep builds replaycli's own targets only, as a received run
            raise ConfigError(
                f"{where} was swept with {own[0]}, which may build code of its own; refused: replay resume runs "
                f"replaycli's own targets only; to go on, issue it yourself: {command}"
            )
        print(f"{where}: the sweep, issued again: {command}", flush=True)
        return run(words)
    return resume_run(where, tuple(trusted))


def check(args: list[str]) -> int:
    from replaycli.run.selfcheck import main as check_main

    return check_main(args)


def inspect(args: list[str]) -> int:
    from replaycli.outputs.inspect import main as inspect_main

    return inspect_main(args)


def compare(args: list[str]) -> int:
    from replaycli.outputs.compare import main as compare_main

    return compare_main(args)


def plot(args: list[str]) -> int:
    from replaycli.outputs.plots import main as plot_main

    return plot_main(args)


def prune(args: list[str]) -> int:
    from replaycli.outputs.prune import main as prune_main

    return prune_main(args)


VERBS = {
    "run": run,
    "resume": resume,
    "check": check,
    "inspect": inspect,
    "compare": compare,
    "plot": plot,
    "prune": prune,
}


def complete(argv: list[str]) -> int:
    """Shell completion (`replay run -sc install=bash`, then `eval`): verbs after `replay`, Hydra's
    groups, options and keys after `replay run`; other verbs complete paths (the shell's default)."""
    if not any(a.startswith("query=") for a in argv[1:]):  # install= / uninstall=: Hydra prints the script
        return run(argv)
    line = os.environ.get("COMP_LINE", "")
    words = line.split()
    if len(words) <= 1 or (len(words) == 2 and not line.endswith(" ")):  # the verb itself
        prefix = words[1] if len(words) == 2 else ""
        print(" ".join(v for v in VERBS if v.startswith(prefix)))
        return 0
    if words[1] != "run":
        return 0
    cut = line.index(" run") + len(" run")  # Hydra completes `replay ARGS`: drop the verb
    os.environ["COMP_LINE"] = line[: cut - 4] + line[cut:]
    point = int(os.environ.get("COMP_POINT", len(line)))
    os.environ["COMP_POINT"] = str(max(0, point - 4))
    return run(argv)


READERS = ("inspect", "compare", "plot", "prune")  # verbs that only read a directory someone may have sent


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    if argv[0] in ("-sc", "--shell-completion"):  # what the completion script calls at each TAB
        return complete(argv)
    if argv[0] in ("--version", "-V"):
        from replaycli import __version__

        print(f"replay {__version__}")
        return 0
    verb = argv[0]
    if verb not in VERBS:
        print(f"error: unknown verb {verb!r}; allowed: {', '.join(VERBS)}", file=sys.stderr)
        return 2
    if verb in ("run", "resume", "check") and threading.current_thread() is threading.main_thread():
        from replaycli.run.runner import interrupted

        signal.signal(signal.SIGTERM, interrupted)
    try:
        return VERBS[verb](argv[1:])
    except (ConfigError, OutputError) as e:
        print(f"error: {' '.join(str(e).splitlines())}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `replay inspect ... | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, ArithmeticError, OSError, RecursionError) as e:
        if verb not in READERS:
            raise  # a bug of ours: its traceback is what a report needs
        print(
            f"error: {' '.join(argv[1:])}: not a run or sweep replaycli wrote ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:200]})",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt as e:
        where = getattr(e, "run_dir", None) or "RUN_DIR"
        again = getattr(e, "sweep_command", None)
        print(
            f"error: interrupted; the sweep goes on where it stopped with: {again}"
            if again
            else f"error: interrupted; go on after the last finished experience with: replay resume {where}",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
