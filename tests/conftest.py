"""Shared helpers: run the `replay` console script as a subprocess, and one small run reused by
several tests (runs cost seconds; the suite must stay fast on two cores)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


def replay_command() -> list[str]:
    """The installed `replay` script next to this Python, else the one on PATH, else the module."""
    script = shutil.which("replay", path=str(Path(sys.executable).parent)) or shutil.which("replay")
    return [script] if script else [sys.executable, "-m", "replaycli.cli"]


def replay(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`replay ARGS` in `cwd`, output captured (so progress falls back to plain lines)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_")}
    return subprocess.run(
        [*replay_command(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
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
    cwd = tmp_path_factory.mktemp("small_run")
    args = (*SMALL_RUN, f"hydra.run.dir={cwd / 'run'}")
    proc = replay("run", *args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return Done(args, proc, cwd / "run")
