"""`replay inspect` on a run, a sweep and an outputs directory, as JSON and as tables; no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import run_cli
from made_outputs import real_sweep, write_run

from replaycli.outputs import rundir, sweepdir


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return real_sweep(tmp_path_factory)[1]


def inspect_json(path, cwd):
    proc = run_cli("inspect", str(path), "--json", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_run_as_json_holds_what_the_run_wrote(sweep, tmp_path):
    d = inspect_json(sweep / "3", tmp_path)
    run = rundir.read_run(sweep / "3")
    assert d["kind"] == "run" and d["status"] == "complete" and d["error"] == ""
    assert d["overrides"] == [
        "buffer.max_size=20",
        "seed=1",
        "epochs=1",
        "benchmark.n_experiences=2",
        "progress=none",
        "device=cpu",
    ]
    assert d["accuracy"] == run.accuracy and d["histograms"] == run.histograms
    assert d["experiences_done"] == d["n_experiences"] == 2
    assert d["stream_accuracy"] == [sum(r) / 2 for r in run.accuracy]
    assert d["final_accuracy"] == run.summary["final_accuracy"] == d["stream_accuracy"][-1]
    first, last = d["per_experience"]
    assert first == {
        "experience": 0,
        "after_training_it": run.accuracy[0][0],
        "final": run.accuracy[1][0],
        "best": max(run.accuracy[0][0], run.accuracy[1][0]),
        "forgetting": run.accuracy[0][0] - run.accuracy[1][0],
    }
    assert last["forgetting"] == 0.0 and last["after_training_it"] == last["final"] == run.accuracy[1][1]


def test_a_run_as_tables(sweep, tmp_path):
    proc = run_cli("inspect", str(sweep / "3"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = rundir.read_run(sweep / "3")
    out = proc.stdout
    assert "status: complete, 2 of 2 experiences finished" in out
    assert "overrides: buffer.max_size=20 seed=1" in out
    assert f"final accuracy {run.summary['final_accuracy']:.4f}" in out
    assert "test 1" in out and "per experience" in out and "buffer samples per class" in out
    top = max(max(h) for h in run.histograms)
    from replaycli.outputs.inspect import bars

    for h in run.histograms:  # one bar line per experience, its total at the end
        assert bars(h, top) in out
        assert str(sum(h)) in out


def test_bars_scale_each_class_to_the_fullest():
    from replaycli.outputs.inspect import bars

    assert bars([0, 4, 8, 1], 8) == "·▄█▁"  # empty classes show as dots, a non-empty one never does
    assert bars([0, 0], 0) == "··"


def test_an_incomplete_run_says_so_and_shows_its_finished_experiences(tmp_path):
    run = write_run(
        tmp_path / "run",
        [[0.9, 0.0, 0.0], [0.6, 0.8, 0.0]],
        [[5, 0, 0], [3, 2, 0]],
        ["buffer.max_size=5"],
        config="benchmark:\n  n_experiences: 3\nseed: 0\n",
        complete=False,
    )
    d = inspect_json(run, tmp_path)
    assert d["status"] == "incomplete" and d["experiences_done"] == 2 and d["n_experiences"] == 3
    assert "final_accuracy" not in d and [e["experience"] for e in d["per_experience"]] == [0, 1]
    assert d["per_experience"][0]["forgetting"] == pytest.approx(0.3)
    proc = run_cli("inspect", str(run), cwd=tmp_path)
    assert "status: incomplete, 2 of 3 experiences finished" in proc.stdout
    assert "0.600" in proc.stdout and "0.800" in proc.stdout


def test_a_failed_job_shows_why(sweep, tmp_path):
    d = inspect_json(sweep / "0", tmp_path)
    assert d["status"] == "failed" and d["error"] == "buffer.max_size=-1 must be an integer >= 0"
    assert d["overrides"][:2] == ["buffer.max_size=-1", "seed=0"] and d["accuracy"] == []


def test_a_sweep_lists_its_jobs(sweep, tmp_path):
    d = inspect_json(sweep, tmp_path)
    assert d["kind"] == "sweep" and d["status_counts"] == {"failed": 2, "complete": 4}
    assert d["jobs"] == sweepdir.read_sweep_summary(sweep)
    proc = run_cli("inspect", str(sweep), cwd=tmp_path)
    assert proc.returncode == 0 and "6 jobs, 2 failed, 4 complete" in proc.stdout
    assert "common overrides: epochs=1 benchmark.n_experiences=2 progress=none device=cpu" in proc.stdout
    assert "buffer.max_size" in proc.stdout and "must be an integer >= 0" in proc.stdout


def test_an_outputs_dir_lists_runs_and_sweeps_newest_first(sweep, tmp_path):
    root = tmp_path / "outputs"
    for name, started in (("old", 1_000_000), ("new", 2_000_000), ("middle", 1_500_000)):
        write_run(root / "runs" / name, [[0.5]], [[1]], [f"seed={started}"], started=started)
    write_run(root / "runs" / "killed", [[0.25]], [[1]], complete=False, started=500_000)
    (root / "sweeps").mkdir()
    (root / "sweeps" / "s").symlink_to(sweep, target_is_directory=True)
    (root / "notes").mkdir()  # neither a run nor a sweep: left out
    d = inspect_json(root, tmp_path)
    assert d["kind"] == "outputs"
    assert [r["path"].rsplit("/", 1)[-1] for r in d["runs"]] == ["new", "middle", "old", "killed"]
    assert [r["status"] for r in d["runs"]] == ["complete"] * 3 + ["incomplete"]
    assert d["runs"][0]["final_accuracy"] == 0.5 and d["runs"][-1]["final_accuracy"] is None
    assert d["sweeps"] == [
        {
            "path": str(root / "sweeps" / "s"),
            "started": d["sweeps"][0]["started"],
            "jobs": 6,
            "complete": 4,
            "failed": 2,
            "swept": {"buffer.max_size": ["-1", "20", "40"], "seed": ["0", "1"]},
        }
    ]
    proc = run_cli("inspect", str(root), cwd=tmp_path)
    assert proc.returncode == 0 and "4 runs, 1 sweep (newest first)" in proc.stdout
    assert proc.stdout.index("new") < proc.stdout.index("middle") < proc.stdout.index("old")


@pytest.mark.parametrize("make", ["empty", "files", "missing"])
def test_a_directory_holding_no_run_exits_2_with_one_line(tmp_path, make):
    path = tmp_path / "here"
    if make != "missing":
        path.mkdir()
    if make == "files":
        (path / "notes.txt").write_text("hello")
        (path / "runs").mkdir()
    proc = run_cli("inspect", str(path), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0]
    assert ("holds no run" if make != "missing" else "is not a directory") in lines[0]


def test_bad_arguments_exit_2_with_one_line(tmp_path):
    proc = run_cli("inspect", str(tmp_path), "--bogus", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: replay inspect: unrecognized arguments: --bogus"


def test_inspect_imports_neither_torch_nor_hydra(sweep, tmp_path):
    code = (
        "import sys, contextlib, io\n"
        "from replaycli.cli import main\n"
        f"for path in [{str(sweep / '3')!r}, {str(sweep)!r}, {str(sweep.parent)!r}]:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        assert main(['inspect', path]) == 0\n"
        "        assert main(['inspect', path, '--json']) == 0\n"
        "heavy = sorted(m for m in ('torch', 'matplotlib', 'hydra', 'omegaconf', 'numpy') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_sweep_with_side_metrics_lists_only_its_overrides_as_swept(tmp_path):
    """The validation and task-IL columns are results, not swept keys (they differ job to job)."""
    import json

    from made_outputs import write_run

    from replaycli.outputs.rundir import SUMMARY

    sweep = tmp_path / "outputs" / "sweeps" / "s"
    for job, seed in ((0, 0), (1, 1)):
        run = write_run(sweep / str(job), [[0.5, 0.25]], [[1, 1]], overrides=[f"seed={seed}", "epochs=1"])
        summary = json.loads((run / SUMMARY).read_text())
        summary.update(final_val_accuracy=0.1 + job, final_task_il_accuracy=0.3 + job)
        (run / SUMMARY).write_text(json.dumps(summary))
    assert [r["final_val_accuracy"] for r in inspect_json(sweep, tmp_path)["jobs"]] == [0.1, 1.1]
    assert inspect_json(tmp_path / "outputs", tmp_path)["sweeps"][0]["swept"] == {"seed": ["0", "1"]}
    proc = run_cli("inspect", str(sweep), cwd=tmp_path)
    assert proc.returncode == 0 and "common overrides: epochs=1" in proc.stdout, proc.stdout
    assert "final_val_accuracy=" not in proc.stdout and "final_task_il_accuracy=" not in proc.stdout


def test_text_from_a_run_directory_is_shown_as_text(tmp_path):
    """Rich markup in an error, an override or a path ([/x] crashed inspect) is shown as written;
    escape sequences and control characters from a received run never reach the terminal."""
    import json

    from replaycli.outputs.rundir import SUMMARY

    overrides = ["seed=[/bold]1", '"note=\\e[2J\\ahi"']  # YAML's escapes: ESC and BEL in the override
    run = write_run(tmp_path / "run[/x]", [[0.5, 0.25]], [[1, 1]], overrides=overrides)
    summary = json.loads((run / SUMMARY).read_text())
    summary.update(status="failed", error="ValueError: bad [/red] \x1b]0;x\x07")
    (run / SUMMARY).write_text(json.dumps(summary))
    for target in (run, tmp_path):
        proc = run_cli("inspect", str(target), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout
    proc = run_cli("inspect", str(run), cwd=tmp_path)
    assert "run[/x]" in proc.stdout and "seed=[/bold]1" in proc.stdout and "bad [/red]" in proc.stdout
    assert inspect_json(run, tmp_path)["overrides"] == ["seed=[/bold]1", "note=\x1b[2J\x07hi"]  # --json: as written


def test_a_long_run_is_shown_in_bounded_tables(tmp_path):
    """A stream of many experiences (5,000 took inspect minutes): the tables show the first and
    last 20 rows and say how many are left out; --json keeps every one."""
    n = 100
    acc = [[0.5, 0.25] for _ in range(n)]
    run = write_run(tmp_path / "run", acc, [[1, 1]] * n)
    proc = run_cli("inspect", str(run), cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.count(f"... {n - 40} left out (--json has all)") == 2
    assert len(proc.stdout.splitlines()) < 150
    assert len(inspect_json(run, tmp_path)["accuracy"]) == n
