"""Replay methods and update protocols: each mechanism checked on split_digits (small MLP, tiny
buffers), then every strategy run end to end by `replay run`."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import build_run, compose_cfg, options, run_cli

from replaycli.errors import ConfigError
from replaycli.methods.base import Batch
from replaycli.methods.der import DERpp
from replaycli.methods.gdumb import GDumb
from replaycli.methods.weighted import Weighted
from replaycli.outputs.rundir import read_run
from replaycli.run.loop import Run, run_experience, train_experience, update_memory
from replaycli.run.meters import evaluate_stream
from replaycli.run.runner import execute
from replaycli.scenario import masked

QUICK = ["device=cpu", "progress=none", "epochs=1", "model.hidden_size=32", "buffer.max_size=40"]


def build(overrides: list[str]) -> Run:
    """The runner's objects for `overrides`, built by the runner's own function."""
    return build_run(QUICK + overrides)


def no_step(*_: int) -> None:
    pass


def stored(run: Run) -> dict[int, torch.Tensor]:
    """Stored logits by sample id."""
    store = run.buffer.store
    return dict(zip(store.ids.tolist(), store.extras["logits"], strict=True))


# --- DER: logits taken at insertion, never touched afterwards ------------------------------------
@pytest.mark.parametrize("protocol", ["after_experience", "every_batch"])
@pytest.mark.parametrize("method", ["der", "derpp"])
def test_stored_logits_are_the_models_output_at_insertion_and_never_change(method, protocol):
    run = build([f"strategy={method}", f"buffer_update={protocol}", "buffer=reservoir", "model.drop_rate=0.0"])
    pool = run.bench.train_pool  # no augmentation, no dropout: train and eval outputs agree
    expected: dict[int, torch.Tensor] = {}
    offer = run.buffer.add

    def spy(dataset, experience=0, extras=None):
        with torch.no_grad():
            now = run.model(pool.images(dataset.ids))  # the model as it is when the samples are offered
        torch.testing.assert_close(extras["logits"], now, rtol=0, atol=1e-5)
        held = set(run.buffer.store.ids.tolist())
        expected.update({i: row for i, row in zip(dataset.ids.tolist(), now, strict=True) if i not in held})
        offer(dataset, experience, extras)

    run.buffer.add = spy
    drifted = 0.0
    for exp in run.bench.train_stream[:3]:
        run_experience(run, exp, no_step)
        logits = stored(run)
        assert len(logits) == len(run.buffer) > 0
        for i, row in logits.items():
            torch.testing.assert_close(row, expected[i], rtol=0, atol=0)  # exactly as inserted
        with torch.no_grad():
            drifted = max(
                drifted,
                float((run.model(pool.images(run.buffer.store.ids)) - run.buffer.store.extras["logits"]).abs().max()),
            )
    assert drifted > 0.1  # the model moved on, the stored logits did not
    assert set(run.buffer.store.exps.tolist()) >= {0, 1, 2}


def test_stored_logits_follow_their_samples_through_resize_and_a_checkpoint():
    from replaycli.run.state import Refs, round_trip

    run = build(["strategy=der", "buffer=class_balanced"])
    for exp in run.bench.train_stream[:2]:
        run_experience(run, exp, no_step)
    before = stored(run)
    run.buffer.resize(None, 10)
    after = stored(run)
    assert len(after) == 10 and set(after) <= set(before)
    for i, row in after.items():
        assert torch.equal(row, before[i])
    twin = build(["strategy=der", "buffer=class_balanced"]).buffer
    round_trip(run.buffer, twin, Refs({"pool": run.bench.train_pool}, torch.device("cpu")))
    assert torch.equal(twin.store.ids, run.buffer.store.ids)
    assert torch.equal(twin.store.extras["logits"], run.buffer.store.extras["logits"])


def test_der_loss_adds_alpha_mse_and_derpp_beta_ce_on_two_memory_batches():
    run = build(["strategy=derpp", "strategy.alpha=0.3", "strategy.beta=0.7", "buffer=reservoir"])
    run_experience(run, run.bench.train_stream[0], no_step)
    x, y, t = run.bench.train_stream[1].dataset.train().batch(torch.arange(8))
    gen = run.memory.generator
    state = gen.get_state()
    loss, out = run.method.step(Batch(x, y, t, 1), run.memory)
    gen.set_state(state)  # draw the same two memory batches again
    m1, _, _, e1 = run.memory.sample()
    m2, y2, _, _ = run.memory.sample()
    assert isinstance(run.method, DERpp) and not torch.equal(m1, m2) and len(m1) == 32
    want = (
        F.cross_entropy(run.model(x), y)
        + 0.3 * F.mse_loss(run.model(m1), e1["logits"])
        + 0.7 * F.cross_entropy(run.model(m2), y2)
    )
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(out, run.model(x))


# --- weighted replay -----------------------------------------------------------------------------
def test_alpha_schedule_values():
    assert [Weighted(None, None, alpha=0.5).alpha_at(t) for t in range(5)] == [0.5] * 5
    assert [Weighted(None, None, alpha=0.5, schedule="linear").alpha_at(t) for t in range(5)] == [
        0.0,
        0.5,
        1.0,
        1.5,
        2.0,
    ]
    with pytest.raises(ConfigError, match="schedule='cosine' is not allowed; allowed: constant, linear"):
        Weighted(None, None, schedule="cosine")


def test_weighted_loss_keeps_current_and_memory_apart_with_alpha_of_the_experience():
    run = build(["strategy=weighted", "strategy.alpha=0.5", "strategy.schedule=linear", "buffer=reservoir"])
    for exp in run.bench.train_stream[:3]:
        run_experience(run, exp, no_step)
    exp = run.bench.train_stream[3]
    assert not run.method.joins_memory and run.method.alpha_at(exp.current_experience) == 1.5
    x, y, t = next(iter(run.make_loader(exp.dataset.train(), None)))
    assert set(y.tolist()) <= set(exp.classes_in_this_experience)  # no memory joined to the batch
    state = run.memory.generator.get_state()
    loss, _ = run.method.step(Batch(x, y, t, exp.current_experience), run.memory)
    run.memory.generator.set_state(state)
    mx, my, _, _ = run.memory.sample()
    assert set(my.tolist()) <= {c for e in run.bench.train_stream[:3] for c in e.classes_in_this_experience}
    torch.testing.assert_close(loss, F.cross_entropy(run.model(x), y) + 1.5 * F.cross_entropy(run.model(mx), my))


# --- GDumb ----------------------------------------------------------------------------------------
def test_gdumb_reinitialises_the_model_and_trains_on_its_class_balanced_buffer_alone():
    run = build(["strategy=gdumb", "buffer.max_size=30", "optimizer.lr=0.01"])
    method = run.method
    assert isinstance(method, GDumb)
    init = {k: v.clone() for k, v in run.model.state_dict().items()}
    trained_on: list[torch.Tensor] = []
    make_loader = run.make_loader
    run.make_loader = lambda data, buffer: trained_on.append(data.ids) or make_loader(data, buffer)
    run_experience(run, run.bench.train_stream[0], no_step)
    trained = {k: v.clone() for k, v in run.model.state_dict().items()}
    assert any(not torch.equal(trained[k], init[k]) for k in init)
    assert run.optimizer.state  # Adam holds moments of the trained model

    exp = run.bench.train_stream[1]
    run.buffer.add(exp.dataset, 1)  # what the loop does first for a method that trains on its memory
    method.begin_experience(1, run.buffer.buffer)
    now = run.model.state_dict()
    assert all(torch.equal(now[k], init[k]) for k in init)  # back to the initial weights ...
    assert all(not torch.equal(now[k], trained[k]) for k in init)  # ... not the trained ones
    assert not run.optimizer.state
    assert run.buffer.class_histogram(10).tolist() == [8, 8, 7, 7, 0, 0, 0, 0, 0, 0]  # 30 over 4 classes
    train_experience(run, exp, no_step)
    assert torch.equal(trained_on[-1], run.buffer.store.ids)  # the buffer alone, not the stream


# --- every_batch protocol ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["replay", "der"])
def test_every_batch_inserts_and_replays_from_the_first_experience(method):
    run = build([f"strategy={method}", "buffer_update=every_batch", "buffer=reservoir", "train_mb_size=16"])
    exp0 = run.bench.train_stream[0]
    sizes, drawn = [], []
    original = run.model.forward
    run.model.forward = lambda x: (drawn.append(len(x)), original(x))[1]

    def on_step(epoch: int, i: int, n: int) -> None:
        ids = run.buffer.store.ids
        assert bool(torch.isin(ids, exp0.dataset.ids).all()) and set(run.buffer.store.exps.tolist()) == {0}
        sizes.append(len(run.buffer))

    train_experience(run, exp0, on_step)
    assert sizes[0] == 16 and sizes[1] == 32 and sizes[-1] == 40  # one batch in per step, up to max_size
    assert drawn[0] == 16 and sum(drawn) > 16 * len(sizes)  # memory replayed from the second step on
    update_memory(run, exp0)  # a no-op under every_batch
    assert len(run.buffer) == 40
    train_experience(run, run.bench.train_stream[1], no_step)
    assert set(run.buffer.store.exps.tolist()) == {0, 1}  # a reservoir of the whole stream so far


# --- task-IL -------------------------------------------------------------------------------------
def test_task_il_masks_training_and_evaluation_logits():
    run = build(["scenario=task_il", "benchmark.return_task_id=true", "strategy=der", "buffer=reservoir"])
    mask = run.mask
    assert mask.shape == (5, 10) and mask.sum(1).tolist() == [2] * 5
    for e in run.bench.train_stream:
        assert mask[e.task_label].nonzero().flatten().tolist() == e.classes_in_this_experience

    out = torch.randn(4, 10, requires_grad=True)
    t, y = torch.tensor([0, 0, 3, 4]), torch.tensor([1, 0, 7, 8])
    F.cross_entropy(masked(out, t, mask), y).backward()
    assert bool((out.grad[~mask[t]] == 0).all()) and bool((out.grad[mask[t]] != 0).all())

    head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with torch.no_grad():
        head[1].weight.zero_()
        head[1].bias.copy_(torch.arange(10.0))  # always predicts class 9 in class-IL
    assert evaluate_stream(head, run.bench.test_stream, 256)["accuracy"][0] == 0.0
    per_task = evaluate_stream(head, run.bench.test_stream, 256, mask)["accuracy"]  # the task's last class
    for e, acc in zip(run.bench.test_stream, per_task, strict=True):
        share = float((e.dataset.y == max(e.classes_in_this_experience)).float().mean())
        assert acc == pytest.approx(share)


# --- configuration ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides,message",
    [
        (["strategy=der", "buffer=none"], "strategy=der needs a memory but buffer=none"),
        (
            ["strategy=gdumb", "buffer=reservoir"],
            "strategy=gdumb needs a buffer grouped by class; buffer=reservoir groups by nothing; "
            "allowed: one that does, e.g. buffer=parametric groupby=class",
        ),
        (["strategy=gdumb", "buffer=parametric", "groupby=task"], "buffer=parametric groups by task"),
        (["strategy=gdumb", "buffer_update=every_batch"], "allowed: buffer_update=after_experience"),
        (["buffer_update=always"], "buffer_update='always' is not allowed; allowed: after_experience, every_batch"),
        (["scenario=task_il"], "scenario=task_il masks logits by task label; set benchmark.return_task_id=true"),
        (["strategy=weighted", "strategy.schedule=cosine"], "strategy.schedule='cosine' is not allowed"),
        (["strategy=derpp", "strategy.beta=-1"], "strategy.beta=-1 must be a finite number >= 0"),
        (["strategy=der", "strategy.alpha=nan"], "strategy.alpha=nan must be a finite number >= 0"),
        (["strategy=der", "mem_mb_size=0"], r"mem_mb_size=0 must be an integer in \[1, 1048576\]"),
        (["buffer_update=every_batch", "selection=herding"], "allowed: selection=random"),
    ],
)
def test_bad_strategy_settings_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("+", r"\+")):
        build(overrides)


def test_every_strategy_runs_end_to_end(tmp_path):
    """`replay run -m` over the strategies (one process), then DER++ under every_batch and task-IL
    through the same runner in this process."""
    args = QUICK + ["benchmark.n_experiences=2"]
    sweep = run_cli(
        "run",
        "-m",
        "strategy=replay,weighted,gdumb,der,derpp",
        *args,
        f"hydra.sweep.dir={tmp_path}/sweep",
        cwd=tmp_path,
    )
    assert sweep.returncode == 0, sweep.stderr
    online = compose_cfg(
        QUICK
        + [
            "strategy=derpp",
            "buffer_update=every_batch",
            "scenario=task_il",
            "benchmark.return_task_id=true",
            "benchmark.n_experiences=2",
        ]
    )
    execute(online, tmp_path / "online")
    runs = sorted((tmp_path / "sweep").glob("[0-9]*")) + [tmp_path / "online"]
    assert len(runs) == 6
    for path in runs:
        for name in ("config.yaml", "accuracy.csv", "buffer_histogram.csv", "metrics.jsonl", "summary.json"):
            assert (path / name).is_file(), (path, name)
        rec = read_run(path)
        assert rec.complete and len(rec.accuracy) == 2 and 0.0 < rec.summary["final_accuracy"] <= 1.0
        assert sum(rec.histograms[-1]) == 40
    targets = [read_run(p).config_text.split("strategy:")[1].split("_target_: ")[1].split()[0] for p in runs]
    assert targets == [
        f"replaycli.methods.{c}"
        for c in ("er.Replay", "weighted.Weighted", "gdumb.GDumb", "der.DER", "der.DERpp", "der.DERpp")
    ]


@pytest.mark.parametrize("strategy", [*options("strategy"), "buffer=gss"])
def test_every_strategy_runs_alone_with_its_papers_protocol(strategy, tmp_path, capsys):
    """`replay run strategy=X` and nothing else about the method: its YAML brings the protocol
    (update, buffer, optimizer) it needs; only the run's size is made small here."""
    from replaycli.cli import main

    if strategy == "gem":
        pytest.importorskip("quadprog")  # the gem extra
    chosen = strategy if "=" in strategy else f"strategy={strategy}"
    small = ["epochs=1", "progress=none", "benchmark.n_experiences=2", "model.hidden_size=16", "device=cpu"]
    code = main(["run", chosen, *small, f"hydra.run.dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert read_run(tmp_path / "run").complete and len(read_run(tmp_path / "run").accuracy) == 2


def test_an_every_batch_reservoir_step_makes_no_host_sync_once_the_memory_is_full(monkeypatch):
    """ER under every_batch, the DER paper's protocol: once the reservoir is full, a step (memory
    draw, forward, the memory's update, backward, SGD) reads no value back to the host (it made
    four per step: `Store.admit` replaced them)."""
    run = build_run(
        ["buffer=reservoir", "buffer_update=every_batch", "buffer.max_size=40", "optimizer=sgd", "train_mb_size=10"]
    )
    exp0, exp1 = run.bench.train_stream[0], run.bench.train_stream[1]
    train_experience(run, exp0, no_step)
    assert len(run.buffer) == 40  # full
    syncs = []
    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__"):
        real = getattr(torch.Tensor, name)

        def counted(self, *a, _real=real, _name=name, **k):
            syncs.append(_name)
            return _real(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    steps = []
    run.metrics = type(run.metrics)()  # no per-step records: what is measured syncs once, at the epoch's end
    real_step = run.method.step

    def step(batch, memory):
        syncs.clear()  # the loader's epoch set-up and the epoch's end are not the step
        out = real_step(batch, memory)
        steps.append(len(syncs))
        return out

    monkeypatch.setattr(run.method, "step", step)
    counts = []
    real_after = run.update.after_step

    def after(samples, k, out):
        real_after(samples, k, out)
        counts.append(len(syncs))

    monkeypatch.setattr(run.update, "after_step", after)
    train_experience(run, exp1, no_step)
    assert len(counts) > 10 and counts == [0] * len(counts), counts[:10]
