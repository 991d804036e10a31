"""Shared helpers: compose a config and build a run the way `replay run` does, call the CLI in
this process, run the `replay` console script as a subprocess (one smoke test per verb), and one
small run reused by several tests (runs cost seconds; the suite must stay fast on two cores)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests draw the same examples every run (derandomized, no example database), so the suite
# passes or fails the same way each day; HYPOTHESIS_PROFILE=explore draws new ones, for a search.
settings.register_profile("suite", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))


def pytest_collection_finish(session) -> None:
    """One process runs some 200 small runs and 700 tests: Python's cyclic collector kept scanning
    the long-lived objects (modules, Hydra's and omegaconf's structures), 4.8 s of the suite's CPU
    (measured with gc.callbacks, 2026-12-04). What exists once the tests are collected is frozen out
    of its scans, and the youngest generation is collected less often; no test depends on when."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


# bench/gpu_check.sh runs the device-sensitive tests with REPLAY_TEST_DEVICE=cuda: every
# `device=cpu` a test passes through the helpers below then means that device
DEVICE = os.environ.get("REPLAY_TEST_DEVICE", "cpu")


def on_device(args) -> list[str]:
    return [f"device={DEVICE}" if a == "device=cpu" else a for a in args]


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def options(group: str) -> list[str]:
    """The options replaycli ships for config group `group` (configs/GROUP/*.yaml)."""
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def header_command(path: Path) -> str:
    """The first line after Hydra's `# @package` header, which must name the command."""
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    return next(ln for ln in lines if not re.match(r"^\s*#\s*@", ln))


def header_overrides(path: Path) -> list[str]:
    """The overrides of the `replay run ...` command heading `path` (flags such as -m dropped); a
    note may follow the command after two spaces or a parenthesis."""
    command = re.split(r"\s{2,}|\s\(", header_command(path).lstrip("#").strip())[0]
    words = shlex.split(command)
    assert words[:2] == ["replay", "run"], f"{path}: first line {header_command(path)!r}"
    return [w for w in words[2:] if not w.startswith("-")]


def compose_cfg(overrides: list[str] | tuple[str, ...] = (), hydra: bool = False):
    """The config `replay run OVERRIDES` composes (with Hydra's section when `hydra`)."""
    from hydra import compose, initialize_config_module

    with initialize_config_module("replaycli.configs", version_base="1.3"):
        return compose("config", overrides=on_device(overrides), return_hydra_config=hydra)


def build_run(overrides: list[str] | tuple[str, ...] = ()):
    """The run's objects for OVERRIDES, built by the runner's own function (Hydra's section
    composed too, so that messages name the options as typed)."""
    from replaycli.run.build import build

    return build(compose_cfg(overrides, hydra=True))[0]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`replay ARGS` in this process, from `cwd`, stdout and stderr captured: what `replay`
    (a subprocess) returns, without the seconds of starting Python, torch and Hydra again."""
    from replaycli.cli import main

    out, err, before = io.StringIO(), io.StringIO(), os.getcwd()
    try:
        os.chdir(cwd or before)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(on_device(args))
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess(["replay", *args], code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def stopping_at(experience: int):
    """Ctrl-C at the start of experience `experience` of every run trained in this process meanwhile."""
    import replaycli.run.loop as loop

    real = loop.run_experience

    def stop(run, exp, on_step):
        if exp.current_experience == experience:
            raise KeyboardInterrupt
        return real(run, exp, on_step)

    loop.run_experience = stop
    try:
        yield
    finally:
        loop.run_experience = real


def cli(*args: str, capsys) -> tuple[int, str, str]:
    """`replay ARGS` in this process: (exit code, stdout, stderr)."""
    from replaycli.cli import main

    code = main(on_device(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def replay_command() -> list[str]:
    """The installed `replay` script next to this Python, else the one on PATH, else the module."""
    script = shutil.which("replay", path=str(Path(sys.executable).parent)) or shutil.which("replay")
    return [script] if script else [sys.executable, "-m", "replaycli.cli"]


def replay(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`replay ARGS` in `cwd`, output captured (so progress falls back to plain lines)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_")}
    return subprocess.run(
        [*replay_command(), *on_device(args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@dataclass
class Done:
    """A finished `replay run`: its arguments, its process and its run directory."""

    args: tuple[str, ...]
    proc: subprocess.CompletedProcess
    path: Path


# The run most tests share: the default config (split_digits, parametric buffer of 200, replay
# loader), shortened to one epoch and pinned to the CPU so that reruns are bit-for-bit comparable.
SMALL_RUN = ("epochs=1", "device=cpu")


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Done:
    """`replay run epochs=1 device=cpu`, in this process (output captured, as off a terminal);
    `replay run` itself runs as a subprocess in the sweep of made_outputs.real_sweep."""
    cwd = tmp_path_factory.mktemp("small_run")
    args = (*SMALL_RUN, f"hydra.run.dir={cwd / 'run'}")
    proc = run_cli("run", *args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return Done(args, proc, cwd / "run")
