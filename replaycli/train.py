"""The training loop: for each experience, train (the replay method computes each step's loss),
update the memory, evaluate on the whole test stream."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from replaycli.benchmarks import Benchmark, Experience, Stream
from replaycli.buffers import ExemplarsBuffer
from replaycli.meters import TrainMeter, evaluate_stream
from replaycli.metrics import Metrics
from replaycli.strategies import Replay


@dataclass
class Run:
    """Everything one run trains with; built by `replaycli.wiring`."""

    bench: Benchmark
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    buffer: ExemplarsBuffer | None
    make_loader: Callable[..., Any]  # (data, buffer) -> iterable of (x, y, t)
    epochs: int
    eval_mb_size: int
    device: torch.device
    strategy: Replay = field(default_factory=Replay)  # the replay method (replaycli.strategies)
    mask: torch.Tensor | None = None  # task-IL: bool [n_tasks, n_classes], the classes of each task
    metrics: Metrics = field(default_factory=Metrics)  # what is measured beyond the record (replaycli.metrics)
    on_epoch: Callable[[dict[str, Any]], None] | None = None  # sees each epoch's record (the progress display)


def train_experience(run: Run, exp: Experience, on_step: Callable[[int, int, int], None]) -> dict[str, Any]:
    """Train `run.epochs` passes over the method's data for `exp`: the mean training loss, and the
    per-epoch and per-minibatch records `run.metrics` asks for."""
    method = run.strategy
    data = method.before_training(run, exp)  # exp.dataset; GDumb: its buffer, model re-initialised
    loader = run.make_loader(data.train(), run.buffer if method.joins_memory else None)
    run.model.train()
    meter = TrainMeter(run.metrics, run.mask)
    for epoch in range(run.epochs):
        for i, (x, y, t, samples) in enumerate(method.steps(loader)):
            loss, out = method.loss(run, x, y, t)  # x: [B, C, H, W], y, t: [B]; out: [B, n_classes]
            if samples is not None:  # every_batch: the memory takes the batch (logits of this model)
                method.insert(run, exp, samples, out)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            run.optimizer.step()
            meter.step(loss, out, y, t)  # keeps references: no kernel, no sync
            on_step(epoch, i, len(loader))
        record = meter.epoch_done(epoch)  # steps and seconds; loss and accuracy sync once, at the end
        if run.on_epoch is not None:
            run.on_epoch(record)
    return meter.experience_done()


def update_buffer(run: Run, exp: Experience) -> None:
    run.strategy.after_training(run, exp)  # after_experience: the memory takes the experience


def evaluate(model: torch.nn.Module, stream: Stream, batch_size: int, mask: torch.Tensor | None = None) -> list[float]:
    """Accuracy (a fraction) on each experience of `stream`; task-IL: among the task's classes (`mask`)."""
    return evaluate_stream(model, stream, batch_size, mask)["accuracy"]


def class_histogram(run: Run) -> list[int]:
    n = run.bench.n_classes
    return run.buffer.class_histogram(n).tolist() if run.buffer is not None else [0] * n


def run_experience(run: Run, exp: Experience, on_step: Callable[[int, int, int], None]) -> dict[str, Any]:
    """Train, update the memory, evaluate: the record of one finished experience."""
    m = run.metrics
    t0 = time.perf_counter()
    trained = train_experience(run, exp, on_step)
    t1 = time.perf_counter()
    update_buffer(run, exp)
    t2 = time.perf_counter()
    test = evaluate_stream(run.model, run.bench.test_stream, run.eval_mb_size, run.mask, run.bench.n_classes,
                           loss=m.on("loss"), confusion=m.on("confusion"))
    t3 = time.perf_counter()
    acc = test.pop("accuracy")
    return {
        "experience": exp.current_experience,
        "accuracy": acc,
        "average": sum(acc) / len(acc),
        **trained,  # loss, and train_accuracy, epochs, minibatches when asked
        **test,  # test_loss, stream_loss, confusion when asked
        "histogram": class_histogram(run),
        "train_seconds": t1 - t0,
        "buffer_seconds": t2 - t1,
        "eval_seconds": t3 - t2,
        "seconds": t3 - t0,
    }
