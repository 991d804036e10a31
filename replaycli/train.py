"""The training loop: for each experience, train on current data joined with memory, update the
memory, evaluate on the whole test stream."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F

from replaycli.benchmarks import Benchmark, Experience, Stream
from replaycli.buffers import ExemplarsBuffer


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


def train_experience(run: Run, exp: Experience, on_step: Callable[[int, int, int], None]) -> float:
    """Train `run.epochs` passes over `exp` (plus memory); returns the mean training loss."""
    loader = run.make_loader(exp.dataset.train(), run.buffer)
    run.model.train()
    total, steps = torch.zeros((), device=run.device), 0
    for epoch in range(run.epochs):
        for i, (x, y, _t) in enumerate(loader):
            loss = F.cross_entropy(run.model(x), y)  # x: [B, C, H, W], y: [B]
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            run.optimizer.step()
            total += loss.detach()  # no sync per step
            steps += 1
            on_step(epoch, i, len(loader))
    return float(total) / max(steps, 1)


def update_buffer(run: Run, exp: Experience) -> None:
    if run.buffer is not None:
        run.buffer.update(SimpleNamespace(experience=exp, device=run.device, model=run.model))


@torch.no_grad()
def evaluate(model: torch.nn.Module, stream: Stream, batch_size: int) -> list[float]:
    """Accuracy (a fraction) on each experience of `stream`."""
    model.eval()
    accs = []
    for exp in stream:
        data = exp.dataset.eval()
        correct = torch.zeros((), dtype=torch.int64, device=data.ids.device)
        for start in range(0, len(data), batch_size):
            pos = torch.arange(start, min(start + batch_size, len(data)), device=data.ids.device)
            x, y, _ = data.batch(pos)
            correct += (model(x).argmax(1) == y).sum()
        accs.append(int(correct) / max(len(data), 1))
    return accs


def class_histogram(run: Run) -> list[int]:
    n = run.bench.n_classes
    return run.buffer.class_histogram(n).tolist() if run.buffer is not None else [0] * n


def run_experience(run: Run, exp: Experience, on_step: Callable[[int, int, int], None]) -> dict[str, Any]:
    """Train, update the memory, evaluate: the record of one finished experience."""
    t0 = time.perf_counter()
    loss = train_experience(run, exp, on_step)
    t1 = time.perf_counter()
    update_buffer(run, exp)
    t2 = time.perf_counter()
    acc = evaluate(run.model, run.bench.test_stream, run.eval_mb_size)
    t3 = time.perf_counter()
    return {
        "experience": exp.current_experience,
        "accuracy": acc,
        "average": sum(acc) / len(acc),
        "loss": loss,
        "histogram": class_histogram(run),
        "train_seconds": t1 - t0,
        "buffer_seconds": t2 - t1,
        "eval_seconds": t3 - t2,
        "seconds": t3 - t0,
    }
