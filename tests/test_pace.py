"""Compute budgets (budget=N, budget_unit) and real-time evaluation (realtime=true): a budget is
never exceeded and is spent exactly when the stream is long enough; under realtime a method
costing C times ER's step trains on one batch in C; both resume to the same tables."""

from __future__ import annotations

import json
import math

import pytest
from conftest import run_cli, stopping_at

RUN = ["device=cpu", "progress=none", "epochs=1", "model.hidden_size=16", "train_mb_size=8", "mem_mb_size=8"]


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def run(tmp_path, name, *overrides):
    proc = run_cli("run", *RUN, *overrides, f"hydra.run.dir={tmp_path / name}")
    assert proc.returncode == 0, proc.stderr
    return records(tmp_path / name), json.loads((tmp_path / name / "summary.json").read_text())


def test_a_budget_of_steps_takes_exactly_that_many(tmp_path):
    rs, summary = run(tmp_path, "steps", "budget=5")
    for r in rs:  # every experience has more than 5 batches of 8
        batches = math.ceil(r["samples"] / 8)
        assert r["cost"]["steps"] == r["budget_used"] == 5 and r["skipped"] == batches - 5
    assert summary["cost"]["steps"] == 25 and summary["skipped"] == sum(r["skipped"] for r in rs)


def test_a_budget_of_samples_is_spent_exactly_when_the_steps_divide_it_and_never_exceeded(tmp_path):
    # ER under after_experience: 8 samples forward and back (16) in experience 0, 16 + 16 after
    rs, _ = run(tmp_path, "exact", "budget=160", "budget_unit=samples")
    assert [r["budget_used"] for r in rs] == [160] * 5
    assert [r["cost"]["steps"] for r in rs] == [10, 5, 5, 5, 5]
    assert all(r["cost"]["forward"] + r["cost"]["backward"] == 160 for r in rs)  # ER's memory update passes nothing
    rs, _ = run(tmp_path, "odd", "budget=170", "budget_unit=samples")
    assert [r["budget_used"] for r in rs] == [160, 160, 160, 160, 160]  # 10 x 16 and 5 x 32: one more would exceed


def test_a_flops_budget_is_never_exceeded_and_the_costlier_methods_take_fewer_steps(tmp_path):
    budget, steps = 1_000_000, {}
    for strategy in ("replay", "derpp", "mir"):
        every = ["buffer_update=every_batch", f"budget={budget}", "budget_unit=flops"]
        rs, summary = run(tmp_path, strategy, f"strategy={strategy}", *every)
        for r in rs:
            assert 0 < r["budget_used"] <= budget
            assert r["budget_used"] > budget - 2 * summary["flops_per_step"]  # what is left: less than a step or two
            assert r["skipped"] > 0  # the stream was longer than the budget
        steps[strategy] = summary["cost"]["steps"]
    assert steps["mir"] < steps["derpp"] < steps["replay"]


def test_realtime_trains_on_one_batch_in_c_the_measured_cost_ratio(tmp_path):
    er, er_summary = run(tmp_path, "er", "buffer_update=every_batch", "realtime=true")
    assert all(r["skipped"] == 0 for r in er)  # ER's own step: every batch
    er_step = er[-1]["cost"]["flops"] / er[-1]["cost"]["steps"]  # B + M forward and back, the memory full
    for strategy in ("derpp", "mir"):
        rs, summary = run(tmp_path, strategy, f"strategy={strategy}", "buffer_update=every_batch", "realtime=true")
        for r in rs[1:]:  # the memory full from the start
            ratio = r["cost"]["flops"] / r["cost"]["steps"] / er_step  # the measured C
            batches = r["trained_batches"] + r["skipped"]
            assert ratio > 1.4 and abs(r["trained_batches"] - batches / ratio) <= 1, (r, ratio)
    assert 0 <= summary["online_accuracy"] <= 1 and er_summary["online_accuracy"] > 0
    assert summary["skipped"] == sum(r["skipped"] for r in rs) > 0
    shown = run_cli("inspect", str(tmp_path / "mir")).stdout
    assert (
        f"{summary['skipped']} incoming batches not trained on; online accuracy {summary['online_accuracy']:.4f}"
        in shown
    )
    table = json.loads(run_cli("compare", str(tmp_path / "mir"), "--metric", "online_accuracy", "--json").stdout)
    assert table["groups"][0]["online_accuracy_mean"] == pytest.approx(summary["online_accuracy"])
    assert summary["online_accuracy"] == pytest.approx(
        sum(r["online_accuracy"] * r["online_samples"] for r in rs) / sum(r["online_samples"] for r in rs)
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["realtime=true"], "realtime=true sees the stream once, as it comes; buffer_update=after_experience"),
        (["realtime=true", "buffer_update=every_batch", "strategy=gdumb"], "strategy=gdumb is defined under after"),
        (["budget=0"], "budget=0 must be a finite number >= 1"),
        (["budget_unit=hours"], "budget_unit='hours' is not allowed; allowed: steps, samples, flops"),
        (["realtime=maybe"], "realtime='maybe' is not allowed; allowed: true, false"),
    ],
)
def test_bad_budget_and_realtime_settings_are_refused_in_one_line(tmp_path, overrides, message):
    proc = run_cli("run", *RUN, *overrides, f"hydra.run.dir={tmp_path / 'bad'}")
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "overrides",
    [["budget=3000", "budget_unit=samples"], ["strategy=derpp", "buffer_update=every_batch", "realtime=true"]],
)
def test_a_budgeted_and_a_realtime_run_resume_to_the_same_tables(tmp_path, overrides):
    run(tmp_path, "whole", *overrides)
    with stopping_at(2):
        assert run_cli("run", *RUN, *overrides, f"hydra.run.dir={tmp_path / 'cut'}").returncode == 130
    assert run_cli("resume", str(tmp_path / "cut")).returncode == 0
    assert (tmp_path / "whole" / "accuracy.csv").read_bytes() == (tmp_path / "cut" / "accuracy.csv").read_bytes()
    strip = ("seconds", "train_seconds", "buffer_seconds", "eval_seconds", "epochs")
    clean = [{k: v for k, v in r.items() if k not in strip} for r in records(tmp_path / "whole")]
    assert clean == [{k: v for k, v in r.items() if k not in strip} for r in records(tmp_path / "cut")]
