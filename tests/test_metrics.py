"""The metrics of a run: the config's list and granularities, per-epoch and per-minibatch records
computed from each step's logits, the test stream's confusion matrix (checked against one counted
sample by sample), timing and resources in summary.json, run.log, inspect and plot."""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
from conftest import build_run, compose_cfg, stopping_at

from replaycli.errors import ConfigError
from replaycli.outputs import rundir
from replaycli.outputs.rundir import read_confusion, read_run
from replaycli.run.metrics import Metrics, from_config

N_CLASSES = 10
# 2 experiences of 5 classes, 2 epochs each, a small model: a run of about a second, in process
TINY = [
    "device=cpu",
    "progress=none",
    "epochs=2",
    "benchmark.n_experiences=2",
    "model.hidden_size=32",
    "buffer.max_size=20",
    "train_mb_size=64",
]
ALL = [
    "metrics=[accuracy,loss,timing,resources,confusion]",
    "granularity.accuracy=minibatch",
    "granularity.loss=minibatch",
]


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """A tiny run with every metric at its finest, in process: its run dir, the model after each
    experience, and the (logits, labels) of every training step, as the method computed them."""
    import replaycli.run.loop
    from replaycli.methods.er import Replay
    from replaycli.run.runner import execute

    models, steps = [], []
    real_run, real_step = replaycli.run.loop.run_experience, Replay.step

    def run_and_keep_the_model(run, exp, on_step):
        record = real_run(run, exp, on_step)
        models.append(copy.deepcopy(run.model).eval())
        return record

    def step_and_keep_the_logits(self, batch, memory):
        loss, out = real_step(self, batch, memory)
        steps.append((out.detach().clone(), batch.y.clone(), loss.item()))
        return loss, out

    path = tmp_path_factory.mktemp("metrics") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(replaycli.run.loop, "run_experience", run_and_keep_the_model)
        mp.setattr(Replay, "step", step_and_keep_the_logits)
        cfg = compose_cfg([*TINY, *ALL])
        execute(cfg, path)
    return path, models, steps, build_run([*TINY, *ALL]).bench  # the same streams (a fixed class order)


# --- the config ----------------------------------------------------------------------------------
def test_the_list_and_the_granularities_are_checked():
    m = from_config(["accuracy", "loss", "confusion"], {"accuracy": "minibatch"})
    assert m.on("confusion") and not m.on("timing")
    assert m.at("accuracy", "minibatch") and m.at("accuracy", "epoch") and m.at("accuracy", "experience")
    assert not m.at("loss", "minibatch") and m.at("loss", "epoch")  # the default granularity: epoch
    assert m.per_epoch and m.per_minibatch
    none = from_config([])
    assert none == Metrics() and not none.per_epoch and not none.at("accuracy", "experience")
    assert not from_config(["accuracy"], {"accuracy": "experience"}).per_epoch
    assert from_config("confusion").names == ("confusion",)  # metrics=confusion: a list of one
    allowed = "allowed: accuracy, loss, timing, resources, cost, confusion"
    with pytest.raises(ConfigError, match=rf"unknown metric 'acuracy'; {allowed}"):
        from_config(["acuracy"])
    with pytest.raises(ConfigError, match=r"accuracy='hour' is not allowed; allowed: minibatch, epoch, experience"):
        from_config(["accuracy"], {"accuracy": "hour"})
    with pytest.raises(ConfigError, match=r"granularity.confusion: confusion has no granularity"):
        from_config(["confusion"], {"confusion": "epoch"})


def test_an_unknown_metric_is_a_one_line_error_and_leaves_no_run_dir(tmp_path):
    from conftest import run_cli

    proc = run_cli("run", "metrics=[accuracy,foo]", "epochs=1", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == (
        "error: metrics=[accuracy,foo]: unknown metric 'foo'; "
        "allowed: accuracy, loss, timing, resources, cost, confusion\n"
    )
    assert "Traceback" not in proc.stdout + proc.stderr and not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ("granularity.loss=stream", "granularity.loss='stream' is not allowed; allowed: minibatch, epoch, experience"),
        ("granularity.timing=minibatch", "granularity.timing='minibatch' is not allowed; allowed: epoch, experience"),
        ("metrics=[loss,confusions]", "unknown metric 'confusions'"),
    ],
)
def test_bad_granularities_are_one_line_errors_in_process(tmp_path, monkeypatch, capsys, override, message):
    from replaycli.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["run", override, "epochs=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "outputs").exists()


# --- the confusion matrix ------------------------------------------------------------------------
def by_hand(model: torch.nn.Module, bench) -> list[list[int]]:
    """The confusion matrix of the test stream, one sample at a time, counted in Python."""
    counts = [[0] * N_CLASSES for _ in range(N_CLASSES)]
    with torch.no_grad():
        for exp in bench.test_stream:
            data = exp.dataset.eval()
            for i in range(len(data)):
                x, y, _t = data[i]
                counts[y][int(model(x[None]).argmax())] += 1
    return counts


def test_the_saved_confusion_matrix_is_the_one_counted_by_hand(full):
    path, models, _steps, bench = full
    saved = read_confusion(path)
    assert len(saved) == len(models) == 2  # one matrix per experience, stacked
    for trained, model in enumerate(models):
        assert saved[trained] == by_hand(model, bench), f"after experience {trained}"


def test_confusion_rows_sum_to_the_test_class_counts_and_the_diagonal_is_the_accuracy(full):
    path, _models, _steps, bench = full
    run = read_run(path)
    labels = torch.cat([e.dataset.y for e in bench.test_stream])
    counts = torch.bincount(labels, minlength=N_CLASSES).tolist()
    for trained, matrix in enumerate(run.confusion):
        assert [sum(row) for row in matrix] == counts
        for j, exp in enumerate(bench.test_stream):  # class-IL: experience j's classes are its own
            classes = exp.classes_in_this_experience
            correct = sum(matrix[k][k] for k in classes)
            assert correct / sum(counts[k] for k in classes) == pytest.approx(run.accuracy[trained][j])


def test_confusion_csv_has_the_documented_layout(full):
    path = full[0]
    import numpy as np

    text = (path / rundir.CONFUSION).read_text().splitlines()
    assert text[0] == "trained,true," + ",".join(f"pred_{k}" for k in range(N_CLASSES))
    table = np.loadtxt(path / rundir.CONFUSION, delimiter=",", skiprows=1, dtype=int)
    assert table.shape == (2 * N_CLASSES, 2 + N_CLASSES)
    assert table[:, 0].tolist() == [0] * N_CLASSES + [1] * N_CLASSES  # trained
    assert table[:N_CLASSES, 1].tolist() == list(range(N_CLASSES))  # true
    assert table[:, 2:].reshape(2, N_CLASSES, N_CLASSES).tolist() == read_confusion(path)
    assert "confusion" not in (path / rundir.METRICS).read_text()  # in its own file only


# --- training records ----------------------------------------------------------------------------
def test_epoch_and_minibatch_records_come_from_the_steps_logits(full):
    path, _models, steps, _bench = full
    records = read_run(path).metrics
    assert len(records) == 2
    mbs = [mb for r in records for mb in r["minibatches"]]
    assert len(mbs) == len(steps)  # one record per training step
    for mb, (out, y, loss) in zip(mbs, steps, strict=True):
        assert mb["accuracy"] == pytest.approx(float((out.argmax(1) == y).float().mean()))
        assert mb["loss"] == pytest.approx(loss, rel=1e-6)
    it = iter(steps)
    for r in records:
        assert [e["epoch"] for e in r["epochs"]] == [0, 1]  # epochs=2: two records per experience
        hits = samples = 0
        for e in r["epochs"]:
            assert set(e) == {"epoch", "steps", "loss", "accuracy", "seconds"} and e["seconds"] > 0
            mine = [next(it) for _ in range(e["steps"])]
            assert e["loss"] == pytest.approx(sum(s[2] for s in mine) / len(mine), rel=1e-6)
            h, n = sum(int((o.argmax(1) == y).sum()) for o, y, _ in mine), sum(len(y) for _, y, _ in mine)
            assert e["accuracy"] == pytest.approx(h / n)
            hits, samples = hits + h, samples + n
        assert r["train_accuracy"] == pytest.approx(hits / samples)
        n = sum(e["steps"] for e in r["epochs"])
        assert r["loss"] == pytest.approx(sum(e["loss"] * e["steps"] for e in r["epochs"]) / n)
        assert len(r["test_loss"]) == 2 and r["stream_loss"] > 0


def test_folding_logits_into_hits_changes_no_number(tmp_path, monkeypatch):
    """Kept logits are folded into one bool per sample every CHUNK steps: the chunk size changes
    no record (task-IL, whose masked logits decide the hits, here)."""
    from replaycli.run.meters import TrainMeter
    from replaycli.run.runner import execute

    cfg = compose_cfg([*TINY, *ALL, "scenario=task_il", "benchmark.return_task_id=true"])
    execute(cfg, tmp_path / "kept")
    monkeypatch.setattr(TrainMeter, "CHUNK", 3)  # every third step, across epochs
    execute(cfg, tmp_path / "folded")

    def numbers(path):
        return [
            {k: v for k, v in r.items() if "seconds" not in k and k != "epochs"}
            | {"epochs": [{k: v for k, v in e.items() if k != "seconds"} for e in r["epochs"]]}
            for r in read_run(path).metrics
        ]

    kept = numbers(tmp_path / "kept")
    assert kept == numbers(tmp_path / "folded") and 0 < kept[-1]["train_accuracy"] <= 1


def test_summary_has_timing_and_resources(full):
    path = full[0]
    s = read_run(path).summary
    assert s["status"] == "complete"
    assert s["peak_rss_mb"] > 10 and s["cpu_seconds"] > 0 and s["gpu_peak_memory_mb"] is None  # on the CPU
    files = [p for p in path.rglob("*") if p.is_file() and p.name != rundir.SUMMARY]
    assert 0 < s["disk_bytes"] <= sum(p.stat().st_size for p in files)  # run.log grows after the summary
    t = s["timing"]
    assert len(t["experience_seconds"]) == 2 and all(x > 0 for x in t["experience_seconds"])
    assert [len(e) for e in t["epoch_seconds"]] == [2, 2]
    assert sum(map(sum, t["epoch_seconds"])) <= t["train_seconds"] <= sum(t["experience_seconds"])


def test_no_metrics_writes_todays_files_only(tmp_path):
    from replaycli.run.runner import execute

    execute(compose_cfg([*TINY, "epochs=1", "metrics=[]"]), tmp_path / "run")
    run = read_run(tmp_path / "run")
    assert not (tmp_path / "run" / rundir.CONFUSION).exists() and run.confusion == []
    for r in run.metrics:
        assert set(r) == {
            "experience",
            "n_experiences",
            "samples",
            "accuracy",
            "average",
            "loss",
            "histogram",
            "train_seconds",
            "buffer_seconds",
            "eval_seconds",
            "seconds",
        }
    assert not {"peak_rss_mb", "cpu_seconds", "disk_bytes", "timing"} & set(run.summary)


def test_the_default_run_logs_epochs_and_resources(small_run):
    """`replay run epochs=1`: the default metrics, one epoch record per experience."""
    run = read_run(small_run.path)
    for r in run.metrics:
        (epoch,) = r["epochs"]
        assert set(epoch) == {"epoch", "steps", "loss", "accuracy", "seconds"} and "minibatches" not in r
        assert 0 <= r["train_accuracy"] <= 1 and len(r["test_loss"]) == len(run.accuracy[0])
    assert {"peak_rss_mb", "cpu_seconds", "gpu_peak_memory_mb", "disk_bytes", "timing"} <= set(run.summary)


# --- run.log, resume, inspect, plot --------------------------------------------------------------
def test_run_log_is_what_the_terminal_showed(small_run):
    log = rundir.read_log(small_run.path)
    assert log == small_run.proc.stdout  # progress=auto off a terminal: plain lines, then the tables
    assert "\x1b[" not in log and re.search(r"  epoch 1/1: \d+ batches \(\d+\.\d\d s\)", log)
    assert re.search(
        r"  loss \d\.\d{4}  train accuracy \d\.\d{4}  seen-so-far accuracy \d\.\d{4}  stream accuracy \d\.\d{4}", log
    )


def test_resume_writes_the_same_confusion_matrix_and_logs_both_sessions(tmp_path):
    from replaycli.run.runner import execute, resume_run

    cfg = compose_cfg([*TINY, "epochs=1", "benchmark.n_experiences=5", "metrics=[confusion]"])
    execute(cfg, tmp_path / "whole")
    with stopping_at(2), pytest.raises(KeyboardInterrupt):
        execute(cfg, tmp_path / "cut")
    assert len(read_confusion(tmp_path / "cut")) == 2
    assert resume_run(tmp_path / "cut") == 0
    for name in (rundir.CONFUSION, rundir.ACCURACY):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    log = rundir.read_log(tmp_path / "cut")
    assert "stopped: KeyboardInterrupt" in log and f"resuming {tmp_path / 'cut'} after experience 2/5" in log
    assert log.count("experience 5/5") == 1 and log.rstrip().endswith(f"outputs: {tmp_path / 'cut'}")


def test_inspect_shows_the_confusion_matrix_and_plot_draws_it(full, capsys):
    from replaycli.outputs import inspect as inspecting
    from replaycli.outputs import plots

    path = full[0]
    assert inspecting.main([str(path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["confusion"] == read_confusion(path)
    assert d["resources"]["disk_bytes"] == read_run(path).summary["disk_bytes"]
    assert [len(r["epoch_loss"]) for r in d["training"]] == [2, 2]
    assert inspecting.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "confusion on the test stream after experience 1" in out and "training (per epoch" in out
    last = read_confusion(path)[-1]
    assert all(str(sum(row)) in out for row in last)
    files = plots.plot(path)
    assert files[-1] == path / f"{plots.CONFUSION_FIGURE}.png" and files[-1].stat().st_size > 1000


def test_tensorboard_gets_the_epoch_records(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from replaycli.run.loggers import TensorBoardLogger

    logger = TensorBoardLogger(tmp_path)
    for i in range(2):
        epochs = [{"epoch": e, "steps": 3, "loss": 1.0, "accuracy": 0.25 * (2 * i + e)} for e in range(2)]
        logger.experience_done(
            {
                "experience": i,
                "accuracy": [0.5],
                "average": 0.5,
                "loss": 0.5,
                "histogram": [1],
                "train_accuracy": 0.5,
                "stream_loss": 0.75,
                "epochs": epochs,
            }
        )
    logger.close()
    ea = EventAccumulator(str(tmp_path / "tensorboard"))
    ea.Reload()
    assert [(e.step, e.value) for e in ea.Scalars("accuracy/train_epoch")] == [(0, 0.0), (1, 0.25), (2, 0.5), (3, 0.75)]
    assert [e.value for e in ea.Scalars("loss/test_stream")] == [0.75, 0.75]


def test_a_run_that_shows_nothing_renders_no_tables_into_its_log(tmp_path, capsys):
    """progress=none (and a sweep's job): the final tables are not rendered at all (0.35 s a run);
    the CSVs hold them. The log keeps the run's lines."""
    from conftest import cli

    code, out, err = cli("run", *TINY, "epochs=1", "progress=none", f"hydra.run.dir={tmp_path / 'run'}", capsys=capsys)
    log = rundir.read_log(tmp_path / "run")
    assert code == 0 and "experience 1/" in log and "buffer samples per class" not in log, err
    assert "accuracy (row" not in log and "accuracy (row" not in out
