"""keep_checkpoint and `replay prune`: the disk a finished run no longer needs, and nothing else."""

from __future__ import annotations

import fcntl
import os
import time

import torch
from conftest import run_cli
from made_outputs import write_run

from replaycli.outputs.rundir import RunWriter

TINY = ["epochs=1", "benchmark.n_experiences=5", "progress=none"]


def test_keep_checkpoint_none_all_and_last(tmp_path):
    for keep in ("none", "all", "last"):
        proc = run_cli("run", *TINY, f"keep_checkpoint={keep}", f"hydra.run.dir={tmp_path / keep}")
        assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "none" / "checkpoint.pt").exists()  # complete: nothing to resume
    again = run_cli("resume", str(tmp_path / "none"))
    assert again.returncode == 0 and "already complete" in again.stdout
    kept = sorted(p.name for p in (tmp_path / "all" / "checkpoints").iterdir())
    assert kept == ["1.pt", "2.pt", "3.pt", "4.pt", "5.pt"]
    assert (tmp_path / "all" / "checkpoints" / "5.pt").read_bytes() == (tmp_path / "all" / "checkpoint.pt").read_bytes()
    for k in (1, 2, 5):
        ckpt = torch.load(tmp_path / "all" / "checkpoints" / f"{k}.pt", weights_only=False)
        assert ckpt["experiences_done"] == k
    assert (tmp_path / "last" / "checkpoint.pt").is_file() and not (tmp_path / "last" / "checkpoints").exists()
    same = ["accuracy.csv", "buffer_histogram.csv"]  # what a run computes does not depend on what it keeps
    for name in same:
        assert {(tmp_path / k / name).read_bytes() for k in ("none", "all", "last")} == {
            (tmp_path / "last" / name).read_bytes()
        }
    bad = run_cli("run", *TINY, "keep_checkpoint=some", f"hydra.run.dir={tmp_path / 'bad'}")
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "error: keep_checkpoint='some' is not allowed; allowed: last, none, all"
    )


def failed_run(path, days_ago: float, foreign: bool = False):
    w = RunWriter(path, 2, 2)
    w.write_config("seed: 0\n")
    (path / ".hydra").mkdir()
    (path / ".hydra" / "overrides.yaml").write_text("[]\n")
    w.write_summary({"status": "failed", "error": "ValueError: x"})
    (path / "checkpoint.pt").write_bytes(b"x" * 1000)
    when = time.time() - days_ago * 86400
    os.utime(path / "summary.json", (when, when))
    if foreign:
        (path / "notes.txt").write_text("mine\n")
    return path


def test_prune_is_a_dry_run_until_yes_and_removes_only_what_is_not_needed(tmp_path):
    root = tmp_path / "outputs" / "runs"
    done = write_run(root / "done", [[0.5, 0.5]], [[1, 1]])
    (done / "checkpoint.pt").write_bytes(b"c" * 2_000_000)
    (done / "checkpoints").mkdir()
    (done / "checkpoints" / "1.pt").write_bytes(b"c" * 1_000_000)
    killed = write_run(root / "killed", [[0.5, 0.5]], [[1, 1]], complete=False)
    (killed / "checkpoint.pt").write_bytes(b"k" * 1000)  # resumable: kept
    old = failed_run(root / "old", days_ago=10)
    recent = failed_run(root / "recent", days_ago=1)
    mixed = failed_run(root / "mixed", days_ago=30, foreign=True)  # a file of the user's: never removed
    before = {p: p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()}
    dry = run_cli("prune", str(tmp_path / "outputs"))
    assert dry.returncode == 0, dry.stderr
    assert {p: p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()} == before  # nothing removed
    lines = dry.stdout.splitlines()
    assert f"would remove {done / 'checkpoint.pt'} (2.0 MB): a complete run's checkpoint" in lines
    assert f"would remove {done / 'checkpoints'} (1.0 MB): a complete run's checkpoint" in lines
    assert any(line.startswith(f"would remove {old} (") and "failed 10 days ago" in line for line in lines)
    assert not any(str(p) in dry.stdout for p in (killed, recent, mixed))
    assert lines[-1].startswith("3.0 MB in 3; nothing was removed: replay prune")
    done_run = run_cli("prune", str(tmp_path / "outputs"), "--yes")
    assert done_run.returncode == 0 and done_run.stdout.splitlines()[-1] == "freed 3.0 MB in 3 of 3"
    assert not (done / "checkpoint.pt").exists() and not (done / "checkpoints").exists() and not old.exists()
    assert (done / "accuracy.csv").is_file() and (killed / "checkpoint.pt").is_file() and recent.is_dir()
    assert (mixed / "notes.txt").is_file()
    assert run_cli("inspect", str(done)).returncode == 0  # a pruned run still reads back
    assert "nothing to prune" in run_cli("prune", str(tmp_path / "outputs")).stdout
    everything = run_cli("prune", str(tmp_path / "outputs"), "--failed-days", "0", "--yes")
    assert not recent.exists() and mixed.is_dir() and everything.returncode == 0


def test_prune_leaves_a_run_in_use_and_refuses_bad_flags(tmp_path):
    done = write_run(tmp_path / "done", [[0.5, 0.5]], [[1, 1]])
    (done / "checkpoint.pt").write_bytes(b"c" * 10)
    fd = os.open(done, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a live replay process holds its run
    try:
        proc = run_cli("prune", str(done), "--yes")
    finally:
        os.close(fd)
    assert proc.returncode == 0 and (done / "checkpoint.pt").is_file()
    assert f"left: {done} is in use" in proc.stdout and "freed 0.0 MB in 0 of 1" in proc.stdout
    bad = run_cli("prune", str(done), "--failed-days", "-1")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --failed-days -1.0 is not allowed")
    none = run_cli("prune", str(tmp_path / "nothing"))
    assert none.returncode == 2 and "holds no run" in none.stderr
