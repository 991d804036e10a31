"""Checkpoints and `replay resume`: a run killed with SIGKILL mid-experience resumes to the same
files as an uninterrupted run; a corrupt checkpoint or a finished run gets a clear answer."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from replaycli.outputs import ACCURACY, CHECKPOINT, HISTOGRAM, METRICS, SUMMARY, read_run

# enough epochs that one experience lasts long enough to be killed in its middle
KILL_ARGS = ["epochs=3", "seed=3", "buffer.max_size=40", "groupby=class", "progress=none"]
SHORT_ARGS = ["epochs=1", "seed=1", "buffer.max_size=20", "benchmark.n_experiences=2", "progress=none"]


def replay(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "replaycli.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def start(run_dir: Path, args: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "replaycli.cli", "run", *args, f"hydra.run.dir={run_dir}"]
    return subprocess.Popen(cmd, cwd=run_dir.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.is_file() else 0


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A short run that went to the end."""
    root = tmp_path_factory.mktemp("finished")
    p = replay("run", *SHORT_ARGS, f"hydra.run.dir={root / 'run'}", cwd=root)
    assert p.returncode == 0, p.stderr
    return root / "run"


def test_sigkill_mid_experience_then_resume_matches_an_uninterrupted_run(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    reference = start(whole, KILL_ARGS)
    victim = start(killed, KILL_ARGS)
    try:
        deadline = time.monotonic() + 240
        while lines(killed / METRICS) < 2:  # two experiences finished: the third is under way
            assert victim.poll() is None, victim.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(victim.pid, signal.SIGKILL)
    finally:
        victim.kill()
        victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert reference.wait(timeout=240) == 0, reference.communicate()

    # killed: every file whole, the finished experiences there, the run marked incomplete
    rec = read_run(killed)
    done = len(rec.accuracy)
    assert 2 <= done < 5 and not (killed / SUMMARY).exists()
    assert not rec.complete and rec.status == "incomplete" and rec.resumable
    assert len(rec.histograms) == len(rec.metrics) == done
    ckpt = torch.load(killed / CHECKPOINT, weights_only=True)  # plain tensors and containers only
    assert ckpt["experiences_done"] == done
    ids = ckpt["state"]["buffer"]["store"]["ids"]  # the buffer holds ids into the stream
    assert ids.dtype == torch.int64 and len(ids) == 40
    assert {"torch", "generator", "numpy", "python"} <= set(ckpt["rng"])

    p = replay("resume", str(killed), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert f"after experience {done}/5" in p.stdout
    for name in (ACCURACY, HISTOGRAM):
        assert (killed / name).read_bytes() == (whole / name).read_bytes(), name
    rec, ref = read_run(killed), read_run(whole)
    assert rec.complete and rec.summary["resumes"] == 1 and len(rec.metrics) == 5
    assert rec.summary["final_accuracy"] == ref.summary["final_accuracy"]
    assert [m["loss"] for m in rec.metrics] == [m["loss"] for m in ref.metrics]
    assert not list(killed.glob(".*.tmp")), "a stale temporary file was left behind"


def test_resume_of_a_complete_run_says_so_and_changes_nothing(finished):
    before = {p.name: p.read_bytes() for p in finished.iterdir() if p.is_file()}
    p = replay("resume", str(finished), cwd=finished.parent)
    assert p.returncode == 0, p.stderr
    assert "already complete (2 experiences); nothing to resume" in p.stdout
    assert {p.name: p.read_bytes() for p in finished.iterdir() if p.is_file()} == before


def test_resume_after_the_last_checkpoint_only_writes_the_summary(finished, tmp_path):
    run = shutil.copytree(finished, tmp_path / "run")
    (run / SUMMARY).unlink()  # killed after its last checkpoint, before the summary
    acc = (run / ACCURACY).read_bytes()
    p = replay("resume", str(run), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert read_run(run).complete and (run / ACCURACY).read_bytes() == acc


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncate", "is unreadable (truncated or corrupt"),
        ("garbage", "is unreadable (truncated or corrupt"),
        ("pickle", "is unreadable (truncated or corrupt"),  # weights_only refuses arbitrary objects
        ("foreign", "is not a replaycli checkpoint"),
        ("missing", "no checkpoint.pt in"),
    ],
)
def test_a_damaged_checkpoint_is_a_clear_error_not_a_traceback(finished, tmp_path, damage, message):
    run = shutil.copytree(finished, tmp_path / "run")
    (run / SUMMARY).unlink()
    ckpt = run / CHECKPOINT
    if damage == "truncate":
        ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    elif damage == "garbage":
        ckpt.write_bytes(b"\x00not a checkpoint" * 100)
    elif damage == "pickle":
        torch.save({"format": 1, "object": Path("x")}, ckpt)
    elif damage == "foreign":
        torch.save({"weights": torch.zeros(3)}, ckpt)
    else:
        ckpt.unlink()
    acc = (run / ACCURACY).read_bytes()
    p = replay("resume", str(run), cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.startswith("error: ") and p.stderr.count("\n") == 1, p.stderr
    assert message in p.stderr and "Traceback" not in p.stderr
    assert (run / ACCURACY).read_bytes() == acc  # nothing written is lost


@pytest.mark.parametrize(
    "target, message",
    [
        ("nowhere", "is not a directory"),
        ("empty", "is not a run directory (no config.yaml)"),
    ],
)
def test_resume_of_something_that_is_not_a_run(tmp_path, target, message):
    (tmp_path / "empty").mkdir()
    p = replay("resume", str(tmp_path / target), cwd=tmp_path)
    assert p.returncode == 2 and message in p.stderr and p.stderr.count("\n") == 1, p.stderr
