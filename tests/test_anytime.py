"""Anytime evaluation (eval_every): the curve during each experience, its measures against a hand
computation, training left as it was, and a resumed run's curve identical to an uninterrupted one."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import run_cli, stopping_at

from replaycli.outputs import formulas

RUN = ["epochs=2", "benchmark.n_experiences=5", "progress=none", "device=cpu"]


def test_the_measures_against_a_hand_computation():
    records = [  # three experiences; points [step, accuracy on test 0..o]
        {"experience": 0, "anytime": [[0, [0.1]], [4, [0.9]], [8, [1.0]]]},
        {"experience": 1, "anytime": [[0, [1.0, 0.0]], [4, [0.6, 0.7]], [8, [0.8, 0.9]]]},
        {"experience": 2, "anytime": [[0, [0.8, 0.9, 0.0]], [5, [0.5, 0.4, 0.6]], [10, [0.7, 0.8, 0.9]]]},
    ]
    curve = formulas.anytime_curve(records)
    assert [(o, s) for o, s, _ in curve] == [
        (0, 0),
        (0, 4),
        (0, 8),
        (1, 8),
        (1, 12),
        (1, 16),
        (2, 16),
        (2, 21),
        (2, 26),
    ]
    m = formulas.anytime(records)
    means = [0.1, 0.9, 1.0, 0.5, 0.65, 0.85, 1.7 / 3, 1.5 / 3, 2.4 / 3]
    assert m["anytime_accuracy"] == pytest.approx(sum(means) / 9)
    # min-ACC: test 0 after experience 0: min(1.0, 0.6, 0.8, 0.8, 0.5, 0.7) = 0.5;
    # test 1 after experience 1: min(0.9, 0.4, 0.8) = 0.4
    assert m["min_accuracy"] == pytest.approx((0.5 + 0.4) / 2)
    assert m["worst_case_accuracy"] == pytest.approx(0.9 / 3 + (2 / 3) * 0.45)
    # the gap at switch 1: test 0 was 1.0 at the end of 0, lowest 0.6 during 1: 0.4;
    # at switch 2: test 0 0.8 -> 0.5 (0.3), test 1 0.9 -> 0.4 (0.5): 0.4
    assert m["stability_gaps"] == pytest.approx([0.4, 0.4]) and m["stability_gap"] == pytest.approx(0.4)
    one = formulas.anytime(records[:1])
    assert one["min_accuracy"] is None and one["stability_gap"] is None and one["stability_gaps"] == []


def read_curve(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_a_run_with_eval_every_trains_as_without_and_writes_its_curve(tmp_path):
    for name, extra in (("with", ["eval_every=3", "eval_sample=100"]), ("without", [])):
        proc = run_cli("run", *RUN, *extra, f"hydra.run.dir={tmp_path / name}")
        assert proc.returncode == 0, proc.stderr
    for table in ("accuracy.csv", "buffer_histogram.csv"):  # its own generator: training is as it was
        assert (tmp_path / "with" / table).read_bytes() == (tmp_path / "without" / table).read_bytes()
    assert not (tmp_path / "without" / "anytime.csv").exists()
    rows = read_curve(tmp_path / "with" / "anytime.csv")
    records = [json.loads(line) for line in (tmp_path / "with" / "metrics.jsonl").read_text().splitlines()]
    for r in records:  # at the start, every 3 steps, and at the end
        steps = r["anytime"][-1][0]
        assert [p[0] for p in r["anytime"]] == [*range(0, steps, 3), steps]
        assert all(len(acc) == r["experience"] + 1 for _, acc in r["anytime"])  # the seen test experiences
    assert len(rows) == sum(len(r["anytime"]) for r in records)
    assert [int(r["trained"]) for r in rows[:2]] == [0, 0] and rows[-1]["test_4"] != "" and rows[0]["test_1"] == ""
    # the sample: 100 test samples over 5 experiences, 20 each: every accuracy is a multiple of 1/20
    assert all(abs(float(r["test_0"]) * 20 - round(float(r["test_0"]) * 20)) < 1e-9 for r in rows)
    summary = json.loads((tmp_path / "with" / "summary.json").read_text())
    seen = [float(r["seen"]) for r in rows]
    assert summary["anytime_accuracy"] == pytest.approx(sum(seen) / len(seen))
    assert len(summary["stability_gaps"]) == 4 and summary["worst_case_accuracy"] is not None
    figures = run_cli("plot", str(tmp_path / "with")).stdout.split()
    assert str(tmp_path / "with" / "anytime.png") in figures
    table = run_cli("compare", str(tmp_path / "with"), "--metric", "anytime_accuracy,stability_gap", "--json")
    group = json.loads(table.stdout)["groups"][0]
    assert group["anytime_accuracy_mean"] == pytest.approx(summary["anytime_accuracy"])
    assert "stability gap" in run_cli("inspect", str(tmp_path / "with")).stdout


def test_a_resumed_anytime_run_is_byte_identical(tmp_path):
    args = [*RUN, "eval_every=4", "eval_sample=60"]
    assert run_cli("run", *args, f"hydra.run.dir={tmp_path / 'whole'}").returncode == 0
    with stopping_at(3):
        assert run_cli("run", *args, f"hydra.run.dir={tmp_path / 'cut'}").returncode == 130
    assert run_cli("resume", str(tmp_path / "cut")).returncode == 0
    for name in ("anytime.csv", "accuracy.csv", "metrics.jsonl"):
        whole, cut = (tmp_path / "whole" / name).read_text(), (tmp_path / "cut" / name).read_text()
        if name == "metrics.jsonl":  # seconds differ from run to run
            whole, cut = (
                [{k: v for k, v in json.loads(x).items() if "seconds" not in k} for x in t.splitlines()]
                for t in (whole, cut)
            )
            for r in whole + cut:
                r.pop("epochs", None)
        assert whole == cut, name


@pytest.mark.parametrize(
    "arg, words",
    [
        ("eval_every=0", "eval_every=0 must be a positive integer, or null (at experience ends only)"),
        ("eval_sample=0", "eval_sample=0 must be a positive integer"),
    ],
)
def test_bad_anytime_keys_are_one_line(tmp_path, arg, words):
    proc = run_cli("run", arg, f"hydra.run.dir={tmp_path / 'r'}")
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {words}" and not (tmp_path / "r").exists()


def test_anytime_points_of_a_batched_group_equal_the_single_runs(tmp_path):
    """Under hydra/launcher=batched (batch=true) the members meet at each point as at each step:
    their curves are those of the same seeds run one by one (bit for bit here; within the batched
    products' float reordering elsewhere, the tolerance of tests/test_batched.py)."""
    common = ["epochs=1", "strategy=der", "buffer_update=every_batch", "eval_every=5", "progress=none", "device=cpu"]
    batched = run_cli(
        "run", "-m", "hydra/launcher=batched", "hydra.launcher.batch=true", "seed=0,1", *common,
        f"hydra.sweep.dir={tmp_path / 'batched'}",
    )  # fmt: skip
    assert batched.returncode == 0, batched.stderr
    for seed in (0, 1):
        alone = run_cli("run", f"seed={seed}", *common, f"hydra.run.dir={tmp_path / str(seed)}")
        assert alone.returncode == 0, alone.stderr
        got, want = (
            read_curve(tmp_path / "batched" / str(seed) / "anytime.csv"),
            read_curve(tmp_path / str(seed) / "anytime.csv"),
        )
        assert [(r["trained"], r["step"]) for r in got] == [(r["trained"], r["step"]) for r in want]
        for g, w in zip(got, want, strict=True):  # equal here; within float reordering of the batched products
            assert [float(v or "nan") for v in g.values()] == pytest.approx(
                [float(v or "nan") for v in w.values()], abs=0.02, nan_ok=True
            )
