"""Checkpoints and `replay resume`: a run killed with SIGKILL mid-experience resumes to the same
files as an uninterrupted run; a corrupt checkpoint or a finished run gets a clear answer."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import CONFIGS, compose_cfg, header_overrides, options, replay, replay_command, run_cli

from replaycli.cli import main
from replaycli.outputs.rundir import ACCURACY, CHECKPOINT, HISTOGRAM, METRICS, SUMMARY, read_run

# enough epochs that one experience lasts long enough to be killed in its middle
KILL_ARGS = ["epochs=5", "seed=3", "buffer.max_size=40", "groupby=class", "progress=none", "model.hidden_size=64"]
SHORT_ARGS = [
    "epochs=1",
    "seed=1",
    "buffer.max_size=20",
    "benchmark.n_experiences=2",
    "progress=none",
    "model.hidden_size=32",
]


def start(run_dir: Path, args: list[str]) -> subprocess.Popen:
    cmd = [*replay_command(), "run", *args, f"hydra.run.dir={run_dir}"]  # the `replay` script, as a user runs it
    return subprocess.Popen(cmd, cwd=run_dir.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.is_file() else 0


def resume(run_dir: Path, capsys) -> tuple[int, str, str]:
    """`replay resume RUN_DIR` in this process: (exit code, stdout, stderr)."""
    code = main(["resume", str(run_dir)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A short run that went to the end."""
    from replaycli.run.runner import execute

    run = tmp_path_factory.mktemp("finished") / "run"
    execute(compose_cfg(SHORT_ARGS), run)
    return run


def test_sigkill_mid_experience_then_resume_matches_an_uninterrupted_run(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
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
    assert run_cli("run", *KILL_ARGS, f"hydra.run.dir={whole}", cwd=tmp_path).returncode == 0  # the reference

    # killed: every file whole, the finished experiences there, the run marked incomplete
    rec = read_run(killed)
    done = len(rec.accuracy)
    assert 2 <= done < 5 and not (killed / SUMMARY).exists()
    assert not rec.complete and rec.status == "incomplete" and rec.resumable
    assert len(rec.histograms) == len(rec.metrics) == done
    ckpt = torch.load(killed / CHECKPOINT, weights_only=True)  # plain tensors and containers only
    assert ckpt["experiences_done"] == done
    ids = ckpt["state"]["buffer"]["store"]["attrs"]["ids"]["value"]  # the buffer holds ids into the stream
    assert ids.dtype == torch.int64 and len(ids) == 40
    assert set(ckpt["rng"]) == {"torch", "generator", "cuda"}  # nothing draws from numpy or Python
    p = run_cli("inspect", str(killed), "--json", cwd=tmp_path)  # what a user sees of the killed run
    shown = json.loads(p.stdout)
    assert p.returncode == 0 and shown["status"] == "incomplete" and shown["experiences_done"] == done

    p = run_cli("resume", str(killed), cwd=tmp_path)  # a process of its own is the kill's; the resume reads the disk
    assert p.returncode == 0, p.stderr
    assert f"after experience {done}/5" in p.stdout
    for name in (ACCURACY, HISTOGRAM):
        assert (killed / name).read_bytes() == (whole / name).read_bytes(), name
    rec, ref = read_run(killed), read_run(whole)
    assert rec.complete and rec.summary["resumes"] == 1 and len(rec.metrics) == 5
    assert rec.summary["final_accuracy"] == ref.summary["final_accuracy"]
    assert [m["loss"] for m in rec.metrics] == [m["loss"] for m in ref.metrics]
    assert not list(killed.glob(".*.tmp")), "a stale temporary file was left behind"


def test_resume_of_a_complete_run_says_so_and_changes_nothing(finished, capsys):
    before = {p.name: p.read_bytes() for p in finished.iterdir() if p.is_file()}
    code, out, err = resume(finished, capsys)
    assert code == 0, err
    assert "already complete (2 experiences); nothing to resume" in out
    assert {p.name: p.read_bytes() for p in finished.iterdir() if p.is_file()} == before


def test_resume_and_inspect_as_the_installed_command(finished, tmp_path):
    """The subprocess smoke tests of `replay resume` and `replay inspect`: the `replay` script on a
    finished run (neither imports torch for it)."""
    p = replay("resume", str(finished), cwd=tmp_path)
    assert p.returncode == 0 and "already complete (2 experiences); nothing to resume" in p.stdout, p.stderr
    p = replay("inspect", str(finished), "--json", cwd=tmp_path)
    shown = json.loads(p.stdout)
    assert p.returncode == 0 and shown["status"] == "complete" and shown["experiences_done"] == 2, p.stderr


def test_resume_after_the_last_checkpoint_only_writes_the_summary(finished, tmp_path, capsys):
    run = shutil.copytree(finished, tmp_path / "run")
    (run / SUMMARY).unlink()  # killed after its last checkpoint, before the summary
    acc = (run / ACCURACY).read_bytes()
    code, _out, err = resume(run, capsys)
    assert code == 0, err
    assert read_run(run).complete and (run / ACCURACY).read_bytes() == acc


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncate", "is unreadable (truncated or corrupt"),
        ("garbage", "is unreadable (truncated or corrupt"),
        ("pickle", "holds objects other than tensors, dicts, lists and numbers"),  # weights_only=True
        (
            "config-changed",
            "was not saved with this config.yaml (it was edited, or the checkpoint comes from another run)",
        ),
        ("foreign", "is not a replaycli checkpoint"),
        ("missing", "no checkpoint.pt in"),
    ],
)
def test_a_damaged_checkpoint_is_a_clear_error_not_a_traceback(finished, tmp_path, capsys, damage, message):
    run = shutil.copytree(finished, tmp_path / "run")
    (run / SUMMARY).unlink()
    ckpt = run / CHECKPOINT
    if damage == "truncate":
        ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    elif damage == "garbage":
        ckpt.write_bytes(b"\x00not a checkpoint" * 100)
    elif damage == "pickle":
        torch.save({"format": 1, "object": Path("x")}, ckpt)
    elif damage == "config-changed":  # the model in config.yaml is no longer the one saved
        config = run / "config.yaml"
        config.write_text(config.read_text().replace("hidden_size: 32", "hidden_size: 16"))
    elif damage == "foreign":
        torch.save({"weights": torch.zeros(3)}, ckpt)
    else:
        ckpt.unlink()
    acc = (run / ACCURACY).read_bytes()
    code, _out, err = resume(run, capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err and "Traceback" not in err
    assert (run / ACCURACY).read_bytes() == acc  # nothing written is lost


@pytest.mark.parametrize(
    "target, message", [("nowhere", "is not a directory"), ("empty", "is not a run directory (no config.yaml)")]
)
def test_resume_of_something_that_is_not_a_run(tmp_path, capsys, target, message):
    (tmp_path / "empty").mkdir()
    code, _out, err = resume(tmp_path / target, capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err


# --- in process: every option and every consumer of randomness resumes exactly ------------------
# Every option of the groups that keep state across experiences, run with the command its YAML
# begins with: a new YAML is covered the moment it exists. Then the keys that are no option.
STATEFUL_GROUPS = ("strategy", "buffer", "selection", "loader")
OPTIONS = [header_overrides(CONFIGS / g / f"{o}.yaml") for g in STATEFUL_GROUPS for o in options(g)]
KEYS = [
    ["model.drop_rate=0.5"],  # dropout draws from torch's global RNG
    ["selection=herding", "groupby=class", "loader=group_balanced"],
    ["strategy=bic", "strategy.bias_steps=50"],  # BiC's correction with 50 Adam steps, not 500: what is checked is that
    # it resumes
    [
        "strategy=xder",
        "strategy.online_update=true",
        "strategy.lambd=0.1",
    ],  # stored logits rewritten, SupCon views drawn
    ["strategy=der", "buffer_update=every_batch", "buffer=reservoir"],  # logits from each step, as buffer extras
    # the data layer's protocol: a held-out validation stream, an online stream, task-IL beside class-IL
    ["benchmark.validation=0.2", "benchmark.experience_size=150", "benchmark.return_task_id=true"],
]
SMALL = [
    "epochs=1",
    "seed=5",
    "train_mb_size=64",
    "model.hidden_size=32",
    "buffer.chunk=32",
]  # GSS: chunks of 32, not 10 (fewer per-sample gradients, the same draws to resume)


@pytest.mark.parametrize("overrides", OPTIONS + KEYS, ids=" ".join)
def test_interrupted_then_resumed_equals_uninterrupted(overrides, capsys):
    """`replay check`: whole, and stopped at the middle experience then resumed, the same tables
    byte for byte and the same checkpoint (model, optimizer, method, buffer, selection)."""
    if "strategy=gem" in overrides:
        pytest.importorskip("quadprog")  # the gem extra
    small = [a for a in SMALL if not a.startswith("buffer.chunk") or "buffer=gss" in overrides]
    code = main(["check", *small, *overrides])
    out = capsys.readouterr().out
    assert code == 0 and "resume: identical to the uninterrupted run" in out, out
    assert "compared accuracy.csv, buffer_histogram.csv" in out and "checkpoint.pt" in out


BROKEN = '''
from replaycli.methods.base import Method


class Drifting(Method):
    """Keeps its state where no checkpoint looks: on the class, shared by every instance."""

    steps = 0

    def step(self, batch, memory):
        type(self).steps += 1
        out = self.model(batch.x)
        return self.ce(out, batch.y, batch.t) * (1.0 if type(self).steps % 7 else 0.0), out
'''


def test_check_finds_a_method_that_does_not_resume(tmp_path, capsys, monkeypatch):
    """The negative control of `replay check`: state outside the object differs after a resume."""
    module = f"user_broken_{tmp_path.name}"
    (tmp_path / f"{module}.py").write_text(BROKEN)
    (tmp_path / "conf" / "strategy").mkdir(parents=True)
    (tmp_path / "conf" / "strategy" / "drifting.yaml").write_text(f"_target_: {module}.Drifting\n_partial_: true\n")
    monkeypatch.chdir(tmp_path)
    code = main(["check", "--config-dir", "conf", "strategy=drifting", *SMALL[:-1]])
    out = capsys.readouterr().out
    assert code == 1 and "accuracy.csv: differs" in out and "difference(s) from the uninterrupted run" in out, out


def test_check_refuses_a_missing_config_dir(capsys):
    code = main(["check", "--config-dir", "/nonexistent-folder", "epochs=1"])
    err = capsys.readouterr().err
    assert (
        code == 2
        and err == "error: --config-dir /nonexistent-folder is not a directory; allowed: a folder of config groups\n"
    )


def test_check_refuses_a_stream_of_one_experience(capsys):
    code = main(["check", "benchmark.n_experiences=1", "epochs=1"])
    err = capsys.readouterr().err
    assert code == 2 and "error: the stream has 1 experience; allowed: at least 2" in err, err
