"""`replay compare`: runs grouped by config keys, mean/std/n over seeds, sorted by the key."""

from __future__ import annotations

import json
import statistics

import pytest
from conftest import replay, run_cli
from made_outputs import real_sweep, write_run

from replaycli.outputs import formulas, rundir


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return real_sweep(tmp_path_factory)[1]


def compare_json(*args, cwd):
    proc = run_cli("compare", *map(str, args), "--json", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_sweep_grouped_by_the_key_that_differs_averaged_over_seeds(sweep, tmp_path):
    d = compare_json(sweep, cwd=tmp_path)
    assert d["by"] == ["buffer.max_size"]  # seed differs too, but seeds are what is averaged over
    assert [g["buffer.max_size"] for g in d["groups"]] == [20, 40]
    assert [s["status"] for s in d["skipped"]] == ["failed", "failed"]
    jobs = {20: ["2", "3"], 40: ["4", "5"]}  # the sweep's job order: max_size major, seed minor
    for g in d["groups"]:
        runs = [rundir.read_run(sweep / j) for j in jobs[g["buffer.max_size"]]]
        finals = [sum(r.accuracy[-1]) / len(r.accuracy[-1]) for r in runs]
        forgets = [formulas.forgetting(r.accuracy) for r in runs]
        assert g["n"] == 2 and g["seeds"] == [0, 1]
        assert g["final_accuracy_mean"] == pytest.approx(statistics.fmean(finals))
        assert g["final_accuracy_std"] == pytest.approx(statistics.stdev(finals))
        assert g["forgetting_mean"] == pytest.approx(statistics.fmean(forgets))
        assert g["forgetting_std"] == pytest.approx(statistics.stdev(forgets))
        assert sorted(g["runs"]) == sorted(str(sweep / j) for j in jobs[g["buffer.max_size"]])


def test_the_table(sweep, tmp_path):
    proc = run_cli("compare", str(sweep), "--by", "buffer.max_size", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    d = compare_json(sweep, cwd=tmp_path)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("│")]  # the table rows
    assert len(lines) == 2 and " 20 " in lines[0] and " 40 " in lines[1]
    for line, g in zip(lines, d["groups"], strict=True):
        assert f"{g['final_accuracy_mean']:.4f} ± {g['final_accuracy_std']:.4f}" in line
    assert "left out 2 runs that are not complete" in proc.stdout


def test_any_key_any_paths_and_numeric_order(tmp_path):
    root = tmp_path / "outputs"
    finals = {(100, 0): 0.5, (100, 1): 0.7, (50, 0): 0.25, (200, 0): 0.9, (200, 1): 0.8, (200, 2): 1.0}
    for (size, seed), acc in finals.items():
        write_run(
            root / "runs" / f"m{size}s{seed}",
            [[acc, acc]],
            [[1, 1]],
            [f"buffer.max_size={size}", f"seed={seed}"],
            config=f"buffer:\n  max_size: {size}\nseed: {seed}\nepochs: 1\n",
        )
    write_run(
        root / "runs" / "killed",
        [[0.1, 0.0]],
        [[1, 1]],
        ["buffer.max_size=50"],
        config="buffer:\n  max_size: 50\nseed: 5\nepochs: 1\n",
        complete=False,
    )
    one = root / "runs" / "m100s0"
    d = compare_json(root, one, cwd=tmp_path)  # a run given twice counts once
    assert d["by"] == ["buffer.max_size"]
    assert [(g["buffer.max_size"], g["n"], g["seeds"]) for g in d["groups"]] == [
        (50, 1, [0]),
        (100, 2, [0, 1]),
        (200, 3, [0, 1, 2]),
    ]  # numeric order, not 100 < 200 < 50
    assert [g["final_accuracy_mean"] for g in d["groups"]] == pytest.approx([0.25, 0.6, 0.9])
    assert d["groups"][0]["final_accuracy_std"] is None  # one run: no spread, not a spread of 0
    assert [g["final_accuracy_std"] for g in d["groups"][1:]] == pytest.approx([statistics.stdev([0.5, 0.7]), 0.1])
    assert d["skipped"] == [{"path": str(root / "runs" / "killed"), "status": "incomplete"}]
    by_seed = compare_json(root, "--by", "seed", cwd=tmp_path)
    assert [(g["seed"], g["n"]) for g in by_seed["groups"]] == [(0, 3), (1, 2), (2, 1)]
    both = compare_json(root, "--by", "seed,buffer.max_size", cwd=tmp_path)
    assert both["by"] == ["seed", "buffer.max_size"] and all(g["n"] == 1 for g in both["groups"])
    flat = compare_json(root, "--by", "epochs", cwd=tmp_path)  # the same for all: one group
    assert [(g["epochs"], g["n"]) for g in flat["groups"]] == [(1, 6)]


def test_an_unknown_key_exits_2_naming_it(sweep, tmp_path):
    proc = run_cli("compare", str(sweep), "--by", "buffer.maxsize", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: --by buffer.maxsize: no run has this config key; did you mean buffer.max_size")


def test_no_run_or_no_complete_run_exits_2(tmp_path):
    proc = run_cli("compare", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and "holds no run" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    write_run(tmp_path / "run", [[0.5]], [[1]], complete=False)
    proc = replay("compare", str(tmp_path / "run"), cwd=tmp_path)  # the subprocess smoke test of `compare`
    assert (
        proc.returncode == 2 and proc.stderr.strip() == f"error: no complete run in {tmp_path / 'run'} (1 not complete)"
    )
