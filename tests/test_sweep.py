"""The sweep summary: a real sweep through the joblib launcher (jobs in other processes), and the
callback's contract on hand-made jobs."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from made_outputs import real_sweep, write_run
from omegaconf import OmegaConf

from replaycli.errors import ConfigError
from replaycli.outputs import formulas, rundir, sweepdir
from replaycli.run.sweep import SweepSummary


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return real_sweep(tmp_path_factory)


def test_joblib_sweep_runs_every_job_and_writes_its_summary(sweep):
    proc, root = sweep
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout  # the jobs ran in the launcher's worker processes
    # 2 jobs failed: exit 2 (bad config values), one line naming the first, no traceback
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("error: 2 of 6 jobs failed (job 0: buffer.max_size=-1 must be an integer >= 0)")
    assert f"summary: {root / 'summary.csv'}" in proc.stdout

    with open(root / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["job"] for r in rows] == [str(i) for i in range(6)]
    assert list(rows[0])[:3] == ["job", "buffer.max_size", "seed"]  # overrides as columns, in order
    assert [(r["buffer.max_size"], r["seed"]) for r in rows] == [
        ("-1", "0"),
        ("-1", "1"),
        ("20", "0"),
        ("20", "1"),
        ("40", "0"),
        ("40", "1"),
    ]
    assert [r["status"] for r in rows] == ["failed"] * 2 + ["complete"] * 4
    for r in rows[:2]:
        assert r["error"] == "buffer.max_size=-1 must be an integer >= 0" and r["final_accuracy"] == ""
        failure = json.loads((root / r["job"] / "failure.json").read_text())
        assert failure["type"] == "ConfigError" and f"seed={r['seed']}" in failure["overrides"]
    for r in rows[2:]:  # the other jobs' outputs are complete, and the summary agrees with them
        run = rundir.read_run(root / r["job"])
        assert run.complete and len(run.accuracy) == 2 and sum(run.histograms[-1]) == int(r["buffer.max_size"])
        assert float(r["final_accuracy"]) == sum(run.accuracy[-1]) / 2
        assert float(r["forgetting"]) == formulas.forgetting(run.accuracy)
        assert float(r["bwt"]) == formulas.bwt(run.accuracy)
        assert int(r["experiences_done"]) == 2 and float(r["seconds"]) > 0 and r["error"] == ""
    assert sweepdir.read_sweep_summary(root) == sweepdir.sweep_rows(root)  # written and read back alike


def _job_config(tmp_path: Path, num: int) -> OmegaConf:
    return OmegaConf.create(
        {
            "hydra": {
                "mode": RunMode.MULTIRUN,
                "sweep": {"dir": "sweep"},
                "runtime": {"cwd": str(tmp_path), "output_dir": str(tmp_path / "sweep" / str(num))},
            }
        }
    )


def _failed(error: Exception, overrides: list[str]) -> JobReturn:
    ret = JobReturn(overrides=overrides, status=JobStatus.FAILED)
    ret.return_value = error
    return ret


def test_a_failed_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    write_run(sweep / "0", [[0.5, 0.25], [0.75, 0.5]], [[2, 0], [1, 1]], ["buffer.max_size=2"])
    ret = _failed(ConfigError("buffer.max_size=0 must be a positive integer"), ["buffer.max_size=0"])
    SweepSummary().on_job_end(_job_config(tmp_path, 1), ret)
    assert ret.status == JobStatus.COMPLETED  # the sweeper does not raise: the other jobs run
    failure = sweepdir.read_failure(sweep / "1")
    assert failure["type"] == "ConfigError" and failure["overrides"] == ["buffer.max_size=0"]
    assert "ConfigError: buffer.max_size=0" in failure["traceback"]
    rows = sweepdir.read_sweep_summary(sweep)  # written at the end of each job already
    assert [(r["job"], r["buffer.max_size"], r["status"]) for r in rows] == [(0, "2", "complete"), (1, "0", "failed")]
    assert rows[0]["final_accuracy"] == 0.625 and rows[0]["forgetting"] == -0.25 and rows[0]["bwt"] == 0.25
    assert rows[1]["final_accuracy"] is None and rows[1]["error"] == "buffer.max_size=0 must be a positive integer"


def test_a_job_in_a_single_run_is_left_alone(tmp_path):
    cfg = _job_config(tmp_path, 0)
    cfg.hydra.mode = RunMode.RUN
    ret = _failed(RuntimeError("boom"), [])
    SweepSummary().on_job_end(cfg, ret)
    assert ret.status == JobStatus.FAILED and not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("error, code", [(ConfigError("bad value"), 2), (RuntimeError("out of memory\ndetails"), 1)])
def test_the_end_of_a_sweep_with_a_failed_job_exits_non_zero(tmp_path, capsys, error, code):
    write_run(tmp_path / "sweep" / "0", [[1.0]], [[3]], ["seed=0"])
    SweepSummary().on_job_end(_job_config(tmp_path, 1), _failed(error, ["seed=1"]))
    with pytest.raises(SystemExit) as e:
        SweepSummary().on_multirun_end(_job_config(tmp_path, 0))
    assert e.value.code == code
    err = capsys.readouterr().err.strip().splitlines()
    first_line = str(error).splitlines()[0]
    assert err == [f"error: 1 of 2 jobs failed (job 1: {first_line}); see {tmp_path / 'sweep' / 'summary.csv'}"]


def test_the_end_of_a_complete_sweep_writes_the_summary(tmp_path, capsys):
    for i in range(2):
        write_run(tmp_path / "sweep" / str(i), [[0.5 + i / 4]], [[1, 1]], [f"seed={i}"])
    (tmp_path / "sweep" / "summary.csv").write_text("stale\n")
    SweepSummary().on_multirun_end(_job_config(tmp_path, 0))  # no exit: every job is complete
    out = capsys.readouterr().out  # the results table, then where the summary is
    assert out.endswith(f"summary: {tmp_path / 'sweep' / 'summary.csv'}\n") and "final accuracy" in out
    rows = sweepdir.read_sweep_summary(tmp_path / "sweep")
    assert [(r["job"], r["seed"], r["status"], r["final_accuracy"]) for r in rows] == [
        (0, "0", "complete", 0.5),
        (1, "1", "complete", 0.75),
    ]


def test_a_job_killed_midway_reads_as_incomplete_and_fails_the_sweep(tmp_path):
    write_run(tmp_path / "sweep" / "0", [[1.0, 0.0]], [[1, 1]], ["seed=0"])
    write_run(tmp_path / "sweep" / "1", [[0.5, 0.0]], [[1, 1]], ["seed=1"], complete=False)
    rows = sweepdir.sweep_rows(tmp_path / "sweep")
    assert [r["status"] for r in rows] == ["complete", "incomplete"]
    assert rows[1]["experiences_done"] == 1 and rows[1]["final_accuracy"] is None
    with pytest.raises(SystemExit) as e:
        SweepSummary().on_multirun_end(_job_config(tmp_path, 0))
    assert e.value.code == 1
    assert sweepdir.read_sweep_summary(tmp_path / "sweep") == rows


# --- what a sweep shows: one line per finished job, labelled, then its results table ------------
JOB_LINE = re.compile(
    r"^\[job (\d)/6\] (buffer\.max_size=\S+ seed=\d) .*: (complete|failed)(, final accuracy \d\.\d{4}, "
    r"\d+\.\d s)?.*  \[[#.]{20}\] (\d)/6"
)


def test_a_parallel_sweep_prints_one_labelled_line_per_job_then_its_table(sweep):
    proc, _root = sweep
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[job ")]
    assert len(lines) == 6  # progress=none (or auto) in a sweep: no per-job lines but one at its end
    matches = [JOB_LINE.match(ln) for ln in lines]
    assert all(matches), lines
    assert sorted(int(m.group(1)) for m in matches) == list(range(6))
    assert sorted(int(m.group(5)) for m in matches) == list(range(1, 7))  # the sweep's count, in any job's process
    for m in matches:
        assert m.group(3) == ("failed" if m.group(2).startswith("buffer.max_size=-1") else "complete")
    assert "experience 1/2" not in proc.stdout
    table_at, summary_at = proc.stdout.index("grouped by buffer.max_size"), proc.stdout.index("summary: ")
    assert table_at < summary_at and "n = 2" in " ".join(proc.stdout[table_at:summary_at].split())


def test_an_explicit_progress_labels_every_line_and_the_summary_is_appended_not_rebuilt(tmp_path, capsys, monkeypatch):
    from conftest import cli

    calls = []
    real = sweepdir.sweep_rows
    monkeypatch.setattr(sweepdir, "sweep_rows", lambda root: calls.append(root) or real(root))
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(
        "run",
        "-m",
        "seed=0,1",
        "buffer.max_size=10,20",
        "epochs=1",
        "benchmark.n_experiences=2",
        "progress=plain",
        "model.hidden_size=16",
        capsys=capsys,
    )
    assert code == 0, err
    assert len(calls) == 1  # read whole once, at the end: each job appended its own row
    job_lines = [ln for ln in out.splitlines() if ln.startswith("[job ")]
    assert {ln.split("]")[0] for ln in job_lines} == {
        "[job 0",
        "[job 1",
        "[job 2",
        "[job 3",
        "[job 0/4",
        "[job 1/4",
        "[job 2/4",
        "[job 3/4",
    }
    assert any(ln.startswith("[job 2] experience 2/2: ") for ln in job_lines)
    sweep_root = next((tmp_path / "outputs" / "sweeps").iterdir())
    rows = list(csv.DictReader((sweep_root / "summary.csv").open()))
    assert [r["job"] for r in rows] == ["0", "1", "2", "3"] and all(r["status"] == "complete" for r in rows)


def test_rows_appended_while_a_sweep_runs_read_back(tmp_path):
    sweepdir.start_sweep_summary(tmp_path, ["buffer.max_size", "seed"])
    for i, size in enumerate((10, 20)):
        sweepdir.append_sweep_row(
            tmp_path,
            {
                "job": i,
                "buffer.max_size": str(size),
                "seed": "0",
                "status": "complete",
                "final_accuracy": 0.5 + i / 10,
                "error": "",
            },
        )
    rows = sweepdir.read_sweep_summary(tmp_path)
    assert [(r["job"], r["buffer.max_size"], r["final_accuracy"]) for r in rows] == [(0, "10", 0.5), (1, "20", 0.6)]
