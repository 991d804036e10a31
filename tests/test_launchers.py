"""Tuning on validation with Hydra's Optuna sweeper, and a real submitit run (its local launcher)."""

from __future__ import annotations

import csv
import re

import pytest
import yaml
from conftest import cli

SHORT = ["epochs=1", "model.hidden_size=16", "benchmark.validation=0.2"]


def summary_rows(sweep):
    return list(csv.DictReader((sweep / "summary.csv").open()))


def test_optuna_picks_by_validation_and_reports_the_test_accuracy_of_its_choice(tmp_path, capsys, monkeypatch):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(
        "run",
        "-m",
        "hydra/sweeper=tune",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.sampler.seed=3",
        "optimizer.lr=interval(0.0001,0.01)",
        *SHORT,
        capsys=capsys,
    )
    assert code == 0, err
    sweep = next((tmp_path / "outputs" / "sweeps").iterdir())
    rows = summary_rows(sweep)
    assert len(rows) == 4 and all(r["status"] == "complete" for r in rows)
    best = max(rows, key=lambda r: float(r["final_val_accuracy"]))  # chosen on validation, never on test
    found = re.search(
        r"chosen by validation: job (\d+) \(.*\): final validation accuracy (\S+), its test accuracy (\S+) "
        r"\(4 jobs compared on validation only\)",
        out,
    )
    assert found, out
    assert found.group(1) == best["job"]
    assert float(found.group(2)) == pytest.approx(float(best["final_val_accuracy"]), abs=5e-5)
    assert float(found.group(3)) == pytest.approx(float(best["final_accuracy"]), abs=5e-5)
    optuna = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert optuna["best_value"] == pytest.approx(float(best["final_val_accuracy"]))
    assert optuna["best_params"]["optimizer.lr"] == pytest.approx(float(best["optimizer.lr"]))


def test_optuna_without_a_validation_stream_or_minimising_is_refused(tmp_path, capsys, monkeypatch):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(
        "run",
        "-m",
        "hydra/sweeper=tune",
        "hydra.sweeper.n_trials=1",
        "optimizer.lr=interval(0.001,0.01)",
        "epochs=1",
        capsys=capsys,
    )
    assert (
        code == 2
        and "maximises final_val_accuracy, the accuracy on a validation stream; allowed: benchmark.validation" in err
    )
    code, _, err = cli(
        "run",
        "-m",
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=1",
        "optimizer.lr=interval(0.001,0.01)",
        *SHORT,
        capsys=capsys,
    )
    assert code == 2 and "hydra.sweeper.direction=minimize; allowed: hydra.sweeper.direction=maximize" in err


def test_submitit_local_runs_a_job_in_a_process_of_its_own(tmp_path, capsys, monkeypatch):
    """submitit's launcher pickles the job and runs it in a process of its own (a Slurm job is the same
    but for the scheduler); the sweep is launched from this process. Jobs of one sweep in several
    processes, their summary rows and progress lines: the joblib sweep (test_sweep)."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(
        "run",
        "-m",
        "hydra/launcher=submitit_local",
        "seed=3",
        "epochs=1",
        "benchmark.n_experiences=2",
        "model.hidden_size=16",
        "device=cpu",
        capsys=capsys,
    )
    assert code == 0, err[-2000:]
    sweep = next((tmp_path / "outputs" / "sweeps").iterdir())
    rows = summary_rows(sweep)
    assert [(r["job"], r["seed"], r["status"]) for r in rows] == [("0", "3", "complete")]
    assert (sweep / ".submitit").is_dir()  # submitit ran the job
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.out"))
    assert re.search(r"\[job 0/1\] seed=3 .*: complete, final accuracy", logs)  # the job's line, in its log
    said = [ln for ln in out.splitlines() if ln.startswith("[job ")]  # and on this terminal, said by the launcher's
    assert len(said) == 1 and re.match(r"\[job 0/1\] seed=3 .*: complete, final accuracy \d\.\d{4}", said[0])


def session_processes(sid: int) -> list[int]:
    """The live processes of session `sid` (from /proc: a replay run and every worker it started)."""
    import os

    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":  # the 6th field: session id (after state, ppid, pgrp)
                found.append(int(entry))
    return found


@pytest.mark.skipif(not __import__("os").path.isdir("/proc"), reason="reads /proc")
def test_a_killed_joblib_sweep_leaves_no_worker_training_for_nobody(tmp_path):
    """SIGKILL of the sweep's process: its joblib workers notice, record their runs interrupted
    (resumable by issuing the sweep again) and end, instead of training on for minutes."""
    import json
    import os
    import signal
    import subprocess
    import time

    from conftest import replay_command

    sweep = tmp_path / "sweep"
    proc = subprocess.Popen(
        [*replay_command(), "run", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1", "epochs=2000"]
        + ["progress=none", "device=cpu", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while not all((sweep / j / "checkpoint.pt").is_file() for j in "01"):  # both workers are training
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30
    while session_processes(proc.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert session_processes(proc.pid) == []
    for j in "01":
        summary = json.loads((sweep / j / "summary.json").read_text())
        assert summary["status"] == "interrupted" and (sweep / j / "checkpoint.pt").is_file()
