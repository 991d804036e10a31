"""One experience of training: the method steps over the batches, the memory takes its samples
under the update protocol, the model is evaluated on the whole test stream."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from replaycli.benchmarks import Benchmark, Experience
from replaycli.memory.buffer import Buffer
from replaycli.methods.base import Batch, Memory, Method
from replaycli.run.cost import Meter
from replaycli.run.meters import TrainMeter, evaluate_stream
from replaycli.run.metrics import Metrics
from replaycli.run.pace import Free
from replaycli.run.together import Alone
from replaycli.run.updates import AfterExperience
from replaycli.scenario import task_mask


@dataclass
class Run:
    """Everything one run trains with; built by `replaycli.run.build`."""

    bench: Benchmark
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    buffer: Buffer | None  # None: no memory (fine-tuning)
    method: Method  # each step's loss (replaycli.methods)
    memory: Memory | None  # the buffer as a step draws from it
    make_loader: Callable[[Any, Buffer | None], Any]  # (data, buffer to join or None) -> batches
    epochs: int
    eval_mb_size: int
    device: torch.device
    update: AfterExperience  # the update protocol: when the memory takes samples (run/updates.py)
    together: Alone  # how a step descends, and the model the method calls: a batched group's (run/together.py)
    mask: torch.Tensor | None = None  # task-IL: bool [n_tasks, n_classes]
    metrics: Metrics = field(default_factory=Metrics)
    on_epoch: Callable[[dict[str, Any]], None] | None = None  # sees each epoch's record (the progress display)
    anytime: Any = None  # eval_every: the points during each experience (run/anytime.py)
    cost: Any = None  # metrics: [cost], a budget or realtime: the passes through the network (run/cost.py)
    pace: Any = field(default_factory=Free)  # which incoming batches are trained on: budget, realtime (run/pace.py)


def train_experience(run: Run, exp: Experience, on_step: Callable[[int, int, int], None]) -> dict[str, Any]:
    """Train `run.epochs` passes for `exp`: the mean training loss and the records `run.metrics` asks for."""
    k = exp.current_experience
    data, joined = run.update.begin(exp.dataset, k)  # GDumb: the memory; a joined buffer: replay's loader
    data = run.method.begin_experience(k, data)  # BiC holds a part out
    loader = run.make_loader(data.train(), joined)
    run.model.train()
    meter = TrainMeter(run.metrics, run.mask, k)
    steps, points = run.epochs * len(loader), []  # points: anytime evaluation's, with eval_every
    spent, pace = Meter(run.cost) if run.cost is not None else None, run.pace
    pace.begin()
    with run.together.installed(run.method):
        for epoch in range(run.epochs):
            for i, (x, y, t, samples) in enumerate(loader.batches(with_samples=run.update.per_batch)):
                if run.anytime is not None and run.anytime.due(done := epoch * len(loader) + i, steps):
                    points.append(run.anytime.point(run, exp.origin_experience, done))  # before this step
                if pace.admit(run, x, y, t):  # else: a budget spent, or the stream gone on (realtime)
                    train_step(run, Batch(x, y, t, k), samples, meter, spent)
                on_step(epoch, i, len(loader))
            record = meter.epoch_done(epoch)  # steps and seconds; loss and accuracy sync once, at the end
            if run.on_epoch is not None:
                run.on_epoch(record)
        if run.anytime is not None:  # the experience's end
            points.append(run.anytime.point(run, exp.origin_experience, steps))
    return (
        meter.experience_done()
        | ({"anytime": points} if run.anytime is not None else {})
        | pace.record()
        | ({"cost": spent} if spent is not None else {})  # a Meter: recorded once the experience's end is counted
    )


def train_step(run: Run, batch: Batch, samples: Any, meter: TrainMeter, spent: Meter | None) -> None:
    """One step on `batch`: the method's loss, the memory's update (every_batch), the descent."""
    if spent is not None:
        spent.step_begins()
    loss, out = run.method.step(batch, run.update.step_memory())  # out: [B, n_classes]
    run.update.after_step(samples, batch.experience, out)  # every_batch: the memory takes the batch
    run.together.descend(loss)  # zero_grad, backward, step
    meter.step(loss, out, batch.y, batch.t)  # keeps references: no kernel, no sync
    run.pace.paid(*(spent.step_cost() if spent is not None else (0, 0)))  # a budget of steps needs no counts


def update_memory(run: Run, exp: Experience) -> None:
    """The trained experience's end under the update protocol (after_experience: the memory takes it)."""
    run.update.end(run.model, exp.dataset, exp.current_experience)


def run_experience(run: Run, exp: Experience, on_step: Callable[[int, int, int], None]) -> dict[str, Any]:
    """Train, update the memory, evaluate: the record of one finished experience."""
    m, n_classes = run.metrics, run.bench.n_classes
    t0 = time.perf_counter()
    with run.cost.counting() if run.cost is not None else contextlib.nullcontext():
        trained = train_experience(run, exp, on_step)
        t1 = time.perf_counter()
        update_memory(run, exp)
        run.method.end_experience(exp.current_experience, run.memory)  # BiC's bias layer, iCaRL's class means, ...
    if "cost" in trained:
        trained["cost"] = trained["cost"].record()
    t2 = time.perf_counter()
    both = task_mask(run.bench).to(run.bench.test_pool.device) if run.mask is None and run.bench.n_tasks > 1 else None
    with run.together.installed(run.method):  # a batched group evaluates its members together
        test = evaluate_stream(
            run.model,
            run.bench.test_stream,
            run.eval_mb_size,
            run.mask,
            n_classes,
            loss=m.on("loss"),
            confusion=m.on("confusion"),
            task_il=both,
            predict=run.method.predict,
        )
        if (
            run.bench.valid_stream is not None
        ):  # the held-out part of the training stream: for choosing hyper-parameters
            valid = evaluate_stream(
                run.model,
                run.bench.valid_stream,
                run.eval_mb_size,
                run.mask,
                n_classes,
                task_il=both,
                predict=run.method.predict,
            )
            test["val_accuracy"] = valid["accuracy"]
            if both is not None:
                test["val_task_il_accuracy"] = valid["task_il_accuracy"]
    t3 = time.perf_counter()
    acc = test.pop("accuracy")
    return {
        "experience": exp.current_experience,
        **({"origin_experience": exp.origin_experience} if exp.origin_experience != exp.current_experience else {}),
        "n_experiences": run.bench.n_experiences,
        "samples": len(exp.dataset),
        "accuracy": acc,
        "average": sum(acc) / len(acc),
        **trained,  # loss, and train_accuracy, epochs, minibatches when asked
        **test,  # test_loss, stream_loss, confusion when asked
        "histogram": run.buffer.class_histogram(n_classes).tolist() if run.buffer is not None else [0] * n_classes,
        **({"stream_histogram": exp.dataset.y.bincount(minlength=n_classes).tolist()} if run.bench.mixed else {}),
        "train_seconds": t1 - t0,
        "buffer_seconds": t2 - t1,
        "eval_seconds": t3 - t2,
        "seconds": t3 - t0,
    }
