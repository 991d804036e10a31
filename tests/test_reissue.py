"""A sweep re-issued into its own directory goes on where it stopped: each job skips its complete
run, resumes its checkpoint or runs, and the tables equal an uninterrupted sweep's (issue 24)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import run_cli, stopping_at

from replaycli.outputs import rundir

SWEEP = ("epochs=1", "device=cpu", "buffer.max_size=30", "seed=0,1,2")


def rows(root: Path) -> list[dict[str, str]]:
    with open(root / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    """The sweep, uninterrupted."""
    tmp = tmp_path_factory.mktemp("whole")
    proc = run_cli("run", "-m", *SWEEP, f"hydra.sweep.dir={tmp / 'sweep'}", cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    return tmp / "sweep"


def test_a_reissued_sweep_resumes_runs_and_skips_until_it_equals_the_uninterrupted_one(whole, tmp_path):
    root = tmp_path / "sweep"
    with stopping_at(1):  # Ctrl-C as job 0 begins its second experience: jobs 1 and 2 never start
        first = run_cli("run", "-m", *SWEEP, f"hydra.sweep.dir={root}", cwd=tmp_path)
    assert first.returncode != 0 and not (root / "1").exists()
    assert json.loads((root / "0" / "summary.json").read_text())["status"] == "interrupted"
    (root / "0" / "accuracy.csv").write_text("cut short")  # a table the kill left half-written

    again = run_cli("run", "-m", *SWEEP, f"hydra.sweep.dir={root}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"{root}: the sweep goes on: 0 of 3 jobs complete already" in again.stdout
    assert "resuming" in (root / "0" / "run.log").read_text()  # job 0 went on from its checkpoint
    for job in ("0", "1", "2"):
        for table in ("accuracy.csv", "buffer_histogram.csv"):
            assert (root / job / table).read_bytes() == (whole / job / table).read_bytes(), (job, table)
    assert [(r["seed"], r["status"]) for r in rows(root)] == [("0", "complete"), ("1", "complete"), ("2", "complete")]
    assert json.loads((root / "0" / "summary.json").read_text())["resumes"] == 1

    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("checkpoint.pt")}
    done = run_cli("run", "-m", *SWEEP, f"hydra.sweep.dir={root}", cwd=tmp_path)  # nothing left: one line
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.strip() == f"{root}: every one of its 3 jobs is complete; nothing to run"
    assert {p: p.stat().st_mtime_ns for p in root.rglob("checkpoint.pt")} == stamps  # nothing trained


def test_a_job_whose_run_is_complete_is_not_trained_again(whole, tmp_path):
    import shutil

    root = tmp_path / "sweep"
    shutil.copytree(whole, root)
    shutil.rmtree(root / "2")  # cancelled before it started
    stamp = (root / "0" / "checkpoint.pt").stat().st_mtime_ns
    proc = run_cli("run", "-m", *SWEEP, f"hydra.sweep.dir={root}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "2 of 3 jobs complete already" in proc.stdout
    assert (root / "0" / "checkpoint.pt").stat().st_mtime_ns == stamp
    assert (root / "2" / "accuracy.csv").read_bytes() == (whole / "2" / "accuracy.csv").read_bytes()
    assert rundir.read_run(root / "2").complete


def test_another_sweep_into_the_same_directory_is_refused_naming_the_difference(whole, tmp_path):
    import shutil

    root = tmp_path / "sweep"
    shutil.copytree(whole, root)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    proc = run_cli("run", "-m", "epochs=1", "device=cpu", "buffer.max_size=40", "seed=0,1,2", f"hydra.sweep.dir={root}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{root} holds another sweep (it was started with epochs=1 device=cpu buffer.max_size=30" in proc.stderr
    assert "not given now: buffer.max_size=30; new now: buffer.max_size=40" in proc.stderr
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_a_job_directory_of_another_config_is_refused_and_left_as_it_is(whole, tmp_path):
    import shutil

    root = tmp_path / "sweep"
    shutil.copytree(whole, root)
    (root / "1" / "summary.json").unlink()  # an incomplete run ...
    config = (root / "1" / "config.yaml").read_text().replace("epochs: 1", "epochs: 2")
    (root / "1" / "config.yaml").write_text(config)  # ... of a config this sweep would not write
    proc = run_cli("run", "-m", *SWEEP, f"hydra.sweep.dir={root}", cwd=tmp_path)
    assert proc.returncode == 2
    assert (
        f"{root / '1'} holds a run of another config; this job was not run" in (root / "1" / "failure.json").read_text()
    )
    assert (root / "1" / "config.yaml").read_text() == config and (root / "1" / "checkpoint.pt").is_file()
    assert [r["status"] for r in rows(root)] == ["complete", "failed", "complete"]


def test_inspect_names_what_is_missing_and_the_command_that_finishes_it(whole, tmp_path):
    import shlex
    import shutil

    root = tmp_path / "sweep"
    shutil.copytree(whole, root)
    shutil.rmtree(root / "2")
    (root / "1" / "summary.json").unlink()
    proc = run_cli("inspect", str(root), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("to finish it"))
    command = line.split(": ", 1)[1]
    assert command == f"replay run -m {' '.join(SWEEP)} hydra.sweep.dir={root}"
    done = run_cli(*shlex.split(command)[1:], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [r["status"] for r in rows(root)] == ["complete"] * 3
    assert "to finish it" not in run_cli("inspect", str(root), cwd=tmp_path).stdout


def test_a_job_that_failed_midway_goes_on_from_its_checkpoint_when_the_sweep_is_reissued(whole, tmp_path, monkeypatch):
    import replaycli.run.loop as loop

    real = loop.run_experience

    def failing(run, exp, on_step):  # the seed-1 job fails in its third experience (a full disk, a lost node)
        if exp.current_experience == 2 and run.bench is not None and seed_of(run) == 1:
            raise RuntimeError("lost the node")
        return real(run, exp, on_step)

    def seed_of(run) -> int:
        return int(run.method.setting.generator.initial_seed())

    monkeypatch.setattr(loop, "run_experience", failing)
    root = tmp_path / "sweep"
    first = run_cli("run", "-m", *SWEEP, f"hydra.sweep.dir={root}", cwd=tmp_path)
    assert first.returncode == 1 and "1 of 3 jobs failed (job 1: lost the node)" in first.stderr
    assert (root / "1" / "failure.json").is_file()
    monkeypatch.setattr(loop, "run_experience", real)
    again = run_cli("run", "-m", *SWEEP, f"hydra.sweep.dir={root}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "resuming" in (root / "1" / "run.log").read_text() and not (root / "1" / "failure.json").exists()
    for job in ("0", "1", "2"):
        assert (root / job / "accuracy.csv").read_bytes() == (whole / job / "accuracy.csv").read_bytes()


def test_resume_of_a_sweep_directory_issues_the_sweep_again(whole, tmp_path):
    import shutil

    root = tmp_path / "sweep"
    shutil.copytree(whole, root)
    shutil.rmtree(root / "2")
    proc = run_cli("resume", str(root), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"{root}: the sweep, issued again: replay run -m {' '.join(SWEEP)} hydra.sweep.dir={root}" in proc.stdout
    assert (root / "2" / "accuracy.csv").read_bytes() == (whole / "2" / "accuracy.csv").read_bytes()
    assert [r["status"] for r in rows(root)] == ["complete"] * 3


def test_resume_of_a_received_sweep_that_names_a_config_folder_is_refused(tmp_path):
    conf = tmp_path / "conf"
    (conf / "strategy").mkdir(parents=True)
    (conf / "strategy" / "mine.yaml").write_text("_target_: replaycli.methods.er.Replay\n_partial_: true\n")
    root = tmp_path / "sweep"
    args = ("--config-dir", str(conf), "strategy=mine", "epochs=1", "device=cpu", "seed=0,1")
    assert run_cli("run", "-m", *args, f"hydra.sweep.dir={root}", cwd=tmp_path).returncode == 0
    (root / "1" / "summary.json").unlink()
    proc = run_cli("resume", str(root), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"error: {root} was swept with --config-dir, which may build code of its own; refused" in proc.stderr
    assert f"to go on, issue it yourself: replay run -m --config-dir {conf} strategy=mine" in proc.stderr
    assert not (root / "1" / "summary.json").exists()
