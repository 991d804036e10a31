"""`replay run` end to end, as a subprocess: the run directory, sweeps, Hydra's flags, errors."""

from __future__ import annotations

import csv
import json
import math
from itertools import accumulate
from pathlib import Path

import pytest
import torch
import yaml
from conftest import SMALL_RUN, run_cli

from replaycli.benchmarks import SplitDigits
from replaycli.cli import VERBS

N_EXP, N_CLASSES = 5, 10
FILES = {"config.yaml", "accuracy.csv", "buffer_histogram.csv", "metrics.jsonl", "summary.json"}
SUMMARY_KEYS = {"final_accuracy", "forgetting", "bwt", "seconds", "seed", "device", "versions"}


def seen_so_far() -> list[int]:
    """Training samples seen after each experience of the default split_digits (classes in order)."""
    return list(accumulate(len(e.dataset) for e in SplitDigits(N_EXP).train_stream))


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def check_run_dir(path: Path, max_size: int) -> dict:
    """Assert the documented layout of a finished run dir; return the parsed files."""
    assert {p.name for p in path.iterdir()} >= FILES, sorted(p.name for p in path.iterdir())

    header, rows = read_csv(path / "accuracy.csv")
    assert header == ["trained", *(f"test_{j}" for j in range(N_EXP)), "average"]
    assert [int(r[0]) for r in rows] == list(range(N_EXP))
    acc = [[float(v) for v in r[1:-1]] for r in rows]
    assert all(0.0 <= a <= 1.0 for row in acc for a in row)
    assert [float(r[-1]) for r in rows] == pytest.approx([sum(row) / N_EXP for row in acc])

    header, rows = read_csv(path / "buffer_histogram.csv")
    assert header == ["trained", *(f"class_{k}" for k in range(N_CLASSES))]
    hist = [[int(v) for v in r[1:]] for r in rows]
    assert len(hist) == N_EXP and all(len(h) == N_CLASSES and min(h) >= 0 for h in hist)
    assert [sum(h) for h in hist] == [min(max_size, n) for n in seen_so_far()]
    for i, h in enumerate(hist):  # class-incremental, classes in order: only seen classes are stored
        assert sum(h[2 * (i + 1) :]) == 0

    lines = (path / "metrics.jsonl").read_text().splitlines()
    metrics = [json.loads(line) for line in lines]
    assert [m["experience"] for m in metrics] == list(range(N_EXP))
    for m, a, h in zip(metrics, acc, hist, strict=True):
        assert m["accuracy"] == a and m["histogram"] == h  # the same numbers as the tables
        assert math.isfinite(m["loss"]) and m["seconds"] > 0

    summary = json.loads((path / "summary.json").read_text())
    assert set(summary) >= SUMMARY_KEYS
    assert summary["final_accuracy"] == pytest.approx(sum(acc[-1]) / N_EXP)
    drops = [max(acc[i][j] for i in range(N_EXP - 1)) - acc[-1][j] for j in range(N_EXP - 1)]
    assert summary["forgetting"] == pytest.approx(sum(drops) / len(drops))
    assert summary["bwt"] == pytest.approx(sum(acc[-1][j] - acc[j][j] for j in range(N_EXP - 1)) / (N_EXP - 1))
    assert {"replaycli", "torch", "python"} <= set(summary["versions"])
    assert summary["seconds"] > 0

    config = yaml.safe_load((path / "config.yaml").read_text())
    assert config["buffer"]["max_size"] == max_size
    return {"acc": acc, "hist": hist, "metrics": metrics, "summary": summary, "config": config}


def test_replay_run_writes_the_documented_run_dir(small_run):
    run = check_run_dir(small_run.path, max_size=200)
    assert run["summary"]["seed"] == 0 and run["summary"]["device"] == "cpu"
    assert run["config"]["epochs"] == 1
    # replay keeps the earlier classes alive (without a buffer they fall to 0)
    assert min(run["acc"][-1][:-1]) > 0.5


def test_progress_falls_back_to_plain_lines_off_a_terminal(small_run):
    out = small_run.proc.stdout
    assert "\x1b[" not in out  # no terminal escapes when stdout is a pipe
    for i in range(1, N_EXP + 1):
        assert f"experience {i}/{N_EXP}" in out
    assert "accuracy" in out and "buffer samples per class" in out  # the final tables
    assert out.rstrip().endswith(f"outputs: {small_run.path}")


def test_parametric_groupby_class_keeps_classes_balanced(tmp_path):
    proc = run_cli("run", "buffer=parametric", "groupby=class", "epochs=1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (path,) = (tmp_path / "outputs" / "runs").iterdir()  # the default location, relative to cwd
    run = check_run_dir(path, max_size=200)
    assert run["config"]["groupby"] == "class" and run["config"]["buffer"]["groupby"] == "class"
    for i, h in enumerate(run["hist"]):
        seen = h[: 2 * (i + 1)]
        assert max(seen) - min(seen) <= 1, h  # 200 split evenly over the classes seen so far
    assert run["hist"][-1] == [20] * N_CLASSES


# 500 is more than the first experience holds (it keeps all 288); 200 is the default, so that job
# reruns the shared small run's config in another process, after two other jobs in its own
SIZES = [20, 50, 200, 500]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("sweep")
    proc = run_cli("run", "-m", f"buffer.max_size={','.join(map(str, SIZES))}", *SMALL_RUN, "progress=none", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    (path,) = (cwd / "outputs" / "sweeps").iterdir()  # the default location, relative to cwd
    return path


def test_multirun_sweep_writes_one_run_dir_per_job(sweep):
    jobs = sorted((p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    assert [p.name for p in jobs] == [str(i) for i in range(len(SIZES))]
    for job, size in zip(jobs, SIZES, strict=True):
        check_run_dir(job, max_size=size)


def test_same_seed_and_config_give_identical_files(small_run, sweep):
    rerun = sweep / str(SIZES.index(200))
    for name in ("accuracy.csv", "buffer_histogram.csv"):
        assert (rerun / name).read_bytes() == (small_run.path / name).read_bytes(), name


def test_a_run_composed_once_writes_what_hydras_main_writes(small_run, tmp_path):
    """A plain `replay run` is composed once and handed to Hydra's job runner; `-r` sends the same
    run through Hydra's main, which composes it again: the same files, Hydra's own record included."""
    proc = run_cli("run", "-r", *SMALL_RUN, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = (small_run.path, tmp_path / "run")
    for name in ("config.yaml", "accuracy.csv", "buffer_histogram.csv", ".hydra/config.yaml", ".hydra/overrides.yaml"):
        assert (runs[0] / name).read_bytes() == (runs[1] / name).read_bytes(), name
    plain, main = (
        (d / ".hydra" / "hydra.yaml").read_text().replace(str(d), "RUN").replace(str(d.parent), "CWD") for d in runs
    )
    assert "mode: RUN" in plain and "name: runner" in plain and plain == main


def test_replay_help_lists_the_verbs(tmp_path):
    proc = run_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for verb in VERBS:
        assert f"\n  {verb} " in proc.stdout, verb


def test_run_help_is_hydras(tmp_path):
    proc = run_cli("run", "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "== Configuration groups ==" in proc.stdout
    lines = proc.stdout.splitlines()
    groups = dict(ln.split(": ", 1) for ln in lines if ln.startswith(("benchmark: ", "buffer: ")))
    assert "split_digits" in groups["benchmark"] and "parametric" in groups["buffer"]
    assert not (tmp_path / "outputs").exists()


def test_cfg_job_prints_the_composed_config_and_runs_nothing(tmp_path):
    proc = run_cli("run", "--cfg", "job", "buffer=reservoir", "buffer.max_size=7", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["buffer"]["_target_"].endswith("ReservoirSamplingBuffer") and cfg["buffer"]["max_size"] == 7
    assert not (tmp_path / "outputs").exists()


def _one_line_error(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def _no_run_dir(cwd: Path) -> bool:
    runs = cwd / "outputs" / "runs"
    return not runs.exists() or not any(runs.iterdir())


def test_groupby_with_a_buffer_without_groups_is_a_one_line_error(tmp_path):
    line = _one_line_error(run_cli("run", "groupby=class", "buffer=reservoir", cwd=tmp_path))
    assert "groupby=class" in line and "buffer=reservoir" in line and "allowed: buffer=parametric" in line
    assert _no_run_dir(tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_device_cuda_without_cuda_is_a_one_line_error(tmp_path):
    line = _one_line_error(run_cli("run", "device=cuda", cwd=tmp_path))
    assert "device=cuda" in line and "cpu" in line
    assert _no_run_dir(tmp_path)


def test_unknown_verb_names_the_allowed_ones(tmp_path):
    line = _one_line_error(run_cli("trian", cwd=tmp_path))
    assert "'trian'" in line and "run" in line


def test_readme_test_command_is_what_ci_runs():
    root = Path(__file__).resolve().parents[1]
    lines = (root / ".ci" / "run").read_text().splitlines()
    ci = [ln for ln in lines if ln and not ln.startswith(("#", "set ", "cd "))]  # the commands it runs
    readme = (root / "README.md").read_text()
    assert ci[0] == "python3 -m pip install -e '.[test]' && python3 -m pytest -q"  # the README's, first
    assert f"```bash\n{ci[0]}\n```" in readme
    assert ci[1:5] == [  # then the habits: formatter, linter and type checker, pinned in the test extra
        "python3 -m ruff format --check replaycli hydra_plugins tests bench",
        "python3 -m ruff check replaycli hydra_plugins tests bench",
        "python3 -m mypy",
        "status=0",
    ]
    assert "bench/slurm_check.sh || status=$?" in ci[5]  # then the sweep on a real Slurm (exit 3: skipped)
    assert "```bash\npython3 -m pip install . && replay run\n```" in readme


def test_run_help_and_version_speak_of_replay_not_hydras_job(capsys):
    from importlib.metadata import version

    from conftest import cli

    code, out, _ = cli("run", "--version", capsys=capsys)
    assert code == 0 and out == f"replay {version('replaycli')} (Hydra {version('hydra-core')})\n"
    code, out, _ = cli("run", "--help", capsys=capsys)
    assert code == 0 and out.startswith("replay run [group=option ...] [key=value ...]: train a replay method")
    assert "runner" not in out and "powered by Hydra" not in out.lower()
