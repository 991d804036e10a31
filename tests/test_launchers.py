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
