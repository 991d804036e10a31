"""Cost accounting (metrics: [cost]): each method's passes through the network against a hand
count on a tiny model, FLOPs against torch's own counter, and evaluation left out."""

from __future__ import annotations

import pytest
import torch
from conftest import build_run
from torch.utils.flop_counter import FlopCounterMode

from replaycli.methods.base import Batch, logits_of
from replaycli.run.cost import Meter
from replaycli.run.loop import train_step
from replaycli.run.meters import TrainMeter

B, M, CANDIDATES = 8, 4, 6
QUICK = ["device=cpu", "progress=none", "epochs=1", "model.hidden_size=16", "buffer.max_size=40"]
SIZES = [f"train_mb_size={B}", f"mem_mb_size={M}"]


def one_step(overrides: list[str], protocol: str = "every_batch"):
    """(forward, backward) samples of one step on experience 1's first batch, the memory holding
    experience 0 (40 samples), and the run."""
    run = build_run([*QUICK, *SIZES, f"buffer_update={protocol}", *overrides])
    exp0, exp1 = run.bench.train_stream[0], run.bench.train_stream[1]
    logits = logits_of(run.model, exp0.dataset, 256) if run.method.stores_logits else None
    if run.buffer is not None:  # a method without a memory: oEWC, SI
        run.buffer.add(exp0.dataset, 0, None if logits is None else {"logits": logits})
    loader = run.make_loader(exp1.dataset.train(), None)
    x, y, t, samples = next(iter(loader.batches(with_samples=True)))
    spent = Meter(run.cost)
    with run.cost.counting():
        train_step(run, Batch(x, y, t, 1), samples, TrainMeter(run.metrics, run.mask, 1), spent)
    return spent.record(), run


HAND = {  # (forward, backward) samples of one step with a non-empty memory
    "strategy=replay": (B + M, B + M),  # the batch joined with M memory samples
    "strategy=der": (B + M, B + M),  # the batch, and M memory samples for the logit MSE
    "strategy=derpp": (B + 2 * M, B + 2 * M),  # two memory batches
    "strategy=er_ace": (B + M, B + M),
    "strategy=weighted": (B + M, B + M),
    "strategy=agem": (B + M, B + M),  # the batch's gradient, the reference gradient; the step applies their mix
    # MIR: the virtual step on the batch (forward and gradient), the candidates before and after it
    # (no gradient), then the batch joined with the M chosen
    f"strategy=mir strategy.n_candidates={CANDIDATES}": (B + 2 * CANDIDATES + B + M, B + B + M),
    # GSS: ER's step, then the buffer scores the batch and n_memory stored samples by per-sample gradients
    "buffer=gss buffer.n_memory=5": (B + M + B + 5, B + M + B + 5),
    "strategy=rar strategy.repeats=3": (3 * (B + M), 3 * (B + M)),  # three updates on the augmented joined batch
    "strategy=clser": (B + M + 2 * M, B + M),  # the joined batch, and both semantic memories on the M (no gradient)
    "strategy=scr": (2 * (B + M), 2 * (B + M)),  # the joined batch and one view of each through the body
    "strategy=si": (B, B),  # no memory: its penalty is on the parameters
    "strategy=ewc_on": (B, B),
}


@pytest.mark.parametrize("overrides", list(HAND))
def test_a_steps_passes_match_a_hand_count(overrides):
    record, _ = one_step(overrides.split())
    assert (record["forward"], record["backward"]) == HAND[overrides]
    assert record["steps"] == 1


def test_xder_passes_two_memory_batches_and_fdr_one_after_its_first_descent():
    """X-DER's step without its future preparation (lambd=0; its views are model calls like any);
    FDR's two descents, the batch's and the memory batch's."""
    record, _ = one_step(["strategy=xder", "strategy.lambd=0"], "after_experience")
    assert (record["forward"], record["backward"]) == (B + 2 * M, B + 2 * M)
    record, _ = one_step(["strategy=fdr"], "after_experience")
    assert (record["forward"], record["backward"]) == (B + M, B + M)


def test_ewc_counts_its_fisher_at_the_experiences_end():
    from replaycli.run.loop import run_experience

    run = build_run([*QUICK, "strategy=ewc_on", "epochs=1"])
    record = run_experience(run, run.bench.train_stream[0], lambda *_: None)
    n = record["samples"]  # the steps pass each sample once; the Fisher twice forward (gradient and p), once back
    assert (record["cost"]["forward"], record["cost"]["backward"]) == (n + 2 * n, n + n)


def test_gem_passes_each_past_experiences_memory_forward_and_back():
    record, run = one_step(["strategy=gem", "buffer=experience_balanced"], "after_experience")
    held = len(run.buffer)  # all of it experience 0's, the one past experience
    assert (record["forward"], record["backward"]) == (B + held, B + held)


def hand_flops(model: torch.nn.Module) -> tuple[int, int]:
    """A linear network's FLOPs per sample: 2 in x out forward; backward the weights' gradient of
    every layer and the input's gradient of all but the first (its input needs none)."""
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    forward = sum(2 * m.in_features * m.out_features for m in linears)
    return forward, forward + sum(2 * m.in_features * m.out_features for m in linears[1:])


@pytest.mark.parametrize(
    "overrides", ["strategy=replay", "strategy=der", f"strategy=mir strategy.n_candidates={CANDIDATES}"]
)
def test_flops_are_the_passes_times_the_networks_own_and_agree_with_torchs_counter(overrides):
    _, run = one_step(overrides.split())
    assert (run.cost.flops_forward, run.cost.flops_backward) == hand_flops(run.model)
    exp1 = run.bench.train_stream[1]
    x, y, t, samples = next(iter(run.make_loader(exp1.dataset.train(), None).batches(with_samples=True)))
    spent = Meter(run.cost)
    with run.cost.counting(), FlopCounterMode(display=False) as torch_count:
        train_step(run, Batch(x, y, t, 1), samples, TrainMeter(run.metrics, run.mask, 1), spent)
    ours = spent.record()["flops"]
    assert ours == pytest.approx(torch_count.get_total_flops(), rel=0.02)  # the rest: the method's own vector work


def test_evaluation_and_anytime_points_are_not_counted_and_without_the_metric_nothing_is():
    from replaycli.run.loop import run_experience

    run = build_run([*QUICK, "eval_every=2", "eval_sample=50"])
    record = run_experience(run, run.bench.train_stream[0], lambda *_: None)
    assert record["cost"]["forward"] == record["cost"]["backward"] == record["samples"]  # one pass of each sample
    assert record["cost"]["flops"] == record["samples"] * sum(hand_flops(run.model))
    plain = build_run([*QUICK, "metrics=[accuracy]"])
    assert plain.cost is None and not any(m._forward_hooks for m in plain.model.modules())
    assert "cost" not in run_experience(plain, plain.bench.train_stream[0], lambda *_: None)


def test_counting_leaves_the_training_as_it_was(tmp_path):
    """The FLOPs probe runs a copy in evaluation mode: the default MLP's dropout draws nothing more."""
    from conftest import run_cli

    for name, metrics in (("counted", "metrics=[cost]"), ("plain", "metrics=[]")):
        args = ["device=cpu", "progress=none", "epochs=1", "strategy=derpp", "buffer_update=every_batch", metrics]
        assert run_cli("run", *args, f"hydra.run.dir={tmp_path / name}").returncode == 0
    for table in ("accuracy.csv", "buffer_histogram.csv"):
        assert (tmp_path / "counted" / table).read_bytes() == (tmp_path / "plain" / table).read_bytes()


@pytest.mark.parametrize("strategy", ["icarl", "bic", "lwf"])
def test_a_distillation_step_counts_the_old_models_forward_pass_and_no_backward_through_it(strategy):
    """iCaRL, BiC and LwF after an experience: the batch forward and back, the frozen old model
    forward only (its copy counts against the run's counter, its outputs take no gradient)."""
    run = build_run([*QUICK, *SIZES, "buffer_update=after_experience", f"strategy={strategy}"])
    exp0, exp1 = run.bench.train_stream[0], run.bench.train_stream[1]
    if run.buffer is not None:
        run.buffer.add(exp0.dataset, 0)
    run.method.begin_experience(0, exp0.dataset)
    x0, y0, t0, _ = next(iter(run.make_loader(exp0.dataset.train(), None).batches()))
    run.method.step(Batch(x0, y0, t0, 0), None)  # sizes what it has seen
    run.method.end_experience(0, run.memory)  # the old model (not counted: counting is off)
    run.method.begin_experience(1, exp1.dataset)
    x, y, t, samples = next(iter(run.make_loader(exp1.dataset.train(), None).batches(with_samples=True)))
    spent = Meter(run.cost)
    with run.cost.counting():
        train_step(run, Batch(x, y, t, 1), samples, TrainMeter(run.metrics, run.mask, 1), spent)
    record = spent.record()
    assert (record["forward"], record["backward"]) == (2 * B, B)
