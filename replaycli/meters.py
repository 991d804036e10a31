"""Measuring a run (what `replaycli.metrics` asks for): training loss and accuracy from the tensors
each step already holds, the test stream's accuracy, loss and confusion matrix, and the
process's resources.

Nothing here syncs the device per step: a step keeps references, an epoch reduces them on the
device, and a value reaches Python once per log line (an epoch record, an experience record).
"""
from __future__ import annotations

import sys
import time
from typing import Any

import torch
import torch.nn.functional as F

from replaycli.benchmarks import Stream
from replaycli.metrics import Metrics
from replaycli.outputs import disk_bytes
from replaycli.strategies import masked


class TrainMeter:
    """The training loss and accuracy of one experience, at the granularity of `metrics`."""

    def __init__(self, metrics: Metrics, mask: torch.Tensor | None = None):
        self.mask = mask
        self.accuracy = metrics.on("accuracy")
        self.per_epoch, self.per_minibatch = metrics.per_epoch, metrics.per_minibatch  # looked up once
        self.shown = {key: metrics.at(name, level) for name, key, level in (  # what the records hold
            ("loss", "loss", "epoch"), ("accuracy", "accuracy", "epoch"), ("timing", "seconds", "epoch"),
            ("loss", "mb_loss", "minibatch"), ("accuracy", "mb_accuracy", "minibatch"))}
        self.losses: list[torch.Tensor] = []  # this epoch's step losses (0-d)
        self.outs: list[torch.Tensor] = []  # ... and logits [B, C], labels [B], tasks [B] (accuracy only)
        self.ys: list[torch.Tensor] = []
        self.ts: list[torch.Tensor] = []
        self.total: torch.Tensor | None = None  # [loss sum, correct] of the epochs not synced, on the device
        self.synced = [0.0, 0.0]  # ... and of those synced (per-epoch records)
        self.steps = self.samples = 0
        self.epochs: list[dict[str, Any]] = []
        self.minibatches: list[dict[str, Any]] = []
        self.clock = time.perf_counter()

    def step(self, loss: torch.Tensor, out: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> None:
        """Keep the step's loss and logits (no kernel, no sync); `out` [B, C] is aligned with `y` [B]."""
        self.losses.append(loss.detach())
        if self.accuracy:
            self.outs.append(out.detach())
            self.ys.append(y)
            if self.mask is not None:
                self.ts.append(t)

    def _reduce(self) -> tuple[torch.Tensor, list[float] | None]:
        """The kept steps summed on the device: [loss sum, correct]; with per-minibatch records also
        synced, as a list: the two sums, the step losses, the steps' correct counts."""
        losses = torch.stack(self.losses)  # [S]
        if not self.accuracy:
            sums = torch.stack([losses.sum(), torch.zeros_like(losses[0])])
            return sums, (torch.cat([sums, losses, torch.zeros_like(losses)]).tolist() if self.per_minibatch else None)
        t = torch.cat(self.ts) if self.mask is not None else None
        hit = masked(torch.cat(self.outs), t, self.mask).argmax(1) == torch.cat(self.ys)  # [N]
        sums = torch.stack([losses.sum(), hit.sum(dtype=losses.dtype)])
        if not self.per_minibatch:
            return sums, None
        sizes = torch.tensor([len(y) for y in self.ys], device=hit.device)
        step_of = torch.repeat_interleave(torch.arange(len(sizes), device=hit.device), sizes)  # [N]
        correct = torch.zeros_like(losses).index_add_(0, step_of, hit.to(losses.dtype))  # [S]
        return sums, torch.cat([sums, losses, correct]).tolist()

    def epoch_done(self, epoch: int) -> dict[str, Any]:
        """The epoch's record: its steps, and its loss, accuracy and seconds where asked (one sync)."""
        n, shown = len(self.losses), self.shown
        record: dict[str, Any] = {"epoch": epoch, "steps": n}
        if n == 0:
            return record
        sums, v = self._reduce()
        samples = sum(len(y) for y in self.ys)
        self.steps, self.samples = self.steps + n, self.samples + samples
        if not self.per_epoch:  # summed on the device, synced when the experience ends
            self.total = sums if self.total is None else self.total + sums
        else:
            v = sums.tolist() if v is None else v  # the epoch's one sync
            self.synced = [self.synced[0] + v[0], self.synced[1] + v[1]]
            if shown["loss"]:
                record["loss"] = v[0] / n
            if shown["accuracy"]:
                record["accuracy"] = v[1] / samples
            for i in range(n) if self.per_minibatch else ():
                mb: dict[str, Any] = {"epoch": epoch, "step": i}
                if shown["mb_loss"]:
                    mb["loss"] = v[2 + i]
                if shown["mb_accuracy"]:
                    mb["accuracy"] = v[2 + n + i] / len(self.ys[i])
                self.minibatches.append(mb)
            if shown["seconds"]:  # after the sync: the epoch's kernels are done, its time is real
                now = time.perf_counter()
                record["seconds"], self.clock = now - self.clock, now
            self.epochs.append(record)
        self.losses, self.outs, self.ys, self.ts = [], [], [], []
        return record

    def experience_done(self) -> dict[str, Any]:
        """`loss` (mean over steps), `train_accuracy` and the epoch and minibatch records asked for."""
        loss_sum, correct = self.synced
        if self.total is not None:
            unsynced = self.total.tolist()
            loss_sum, correct = loss_sum + unsynced[0], correct + unsynced[1]
        out: dict[str, Any] = {"loss": loss_sum / max(self.steps, 1)}
        if self.accuracy:
            out["train_accuracy"] = correct / max(self.samples, 1)
        if self.epochs:
            out["epochs"] = self.epochs
        if self.minibatches:
            out["minibatches"] = self.minibatches
        return out


@torch.no_grad()
def evaluate_stream(
    model: torch.nn.Module, stream: Stream, batch_size: int, mask: torch.Tensor | None = None,
    n_classes: int = 0, loss: bool = False, confusion: bool = False,
) -> dict[str, Any]:
    """`accuracy` (a fraction) on each experience of `stream`; with `loss`, `test_loss` per
    experience and `stream_loss` over every sample; with `confusion`, `confusion` [true][predicted]
    counts over the whole stream. Task-IL: predictions among the task's classes (`mask`).

    The logits of the whole stream are reduced at once at the end (a few kernels, one sync),
    not batch by batch."""
    model.eval()
    outs, ys, sizes = [], [], []
    for exp in stream:
        data = exp.dataset.eval()
        for start in range(0, len(data), batch_size):
            x, y, t = data.batch(torch.arange(start, min(start + batch_size, len(data)), device=data.ids.device))
            outs.append(masked(model(x), t, mask))  # [B, C]
            ys.append(y)
        sizes.append(len(data))
    if not outs:
        return {"accuracy": [0.0] * len(sizes)}
    out, y = torch.cat(outs), torch.cat(ys)  # [N, C], [N]: the stream, experience after experience
    pred = out.argmax(1)
    per_sample = (pred == y).to(out.dtype)  # [N] hits; with the loss [N, 2]: hits, cross-entropy
    if loss:
        per_sample = torch.stack([per_sample, F.cross_entropy(out, y, reduction="none")], 1)
    values = torch.stack([v.sum(0) for v in per_sample.split(sizes)]).tolist()  # the evaluation's one sync
    correct, loss_sums = (values, None) if not loss else ([v[0] for v in values], [v[1] for v in values])
    result: dict[str, Any] = {"accuracy": [c / max(n, 1) for c, n in zip(correct, sizes)]}
    if loss_sums is not None:
        result["test_loss"] = [ls / max(n, 1) for ls, n in zip(loss_sums, sizes)]
        result["stream_loss"] = sum(loss_sums) / max(sum(sizes), 1)
    if confusion:  # [true * C + predicted] counts
        flat = torch.bincount(y * n_classes + pred, minlength=n_classes * n_classes).tolist()
        result["confusion"] = [flat[k * n_classes:(k + 1) * n_classes] for k in range(n_classes)]
    return result


def resources(device: torch.device) -> dict[str, Any]:
    """Peak resident memory (MiB) and CPU seconds (user + system, getrusage) of this process so
    far; the peak memory PyTorch allocated on the GPU (MiB) on CUDA, else None."""
    try:
        import resource
    except ImportError:  # not a Unix
        return {}
    use = resource.getrusage(resource.RUSAGE_SELF)
    out: dict[str, Any] = {
        "peak_rss_mb": _vm_hwm_mb() or use.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10),
        "cpu_seconds": use.ru_utime + use.ru_stime,
    }
    cuda = torch.device(device).type == "cuda"
    out["gpu_peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
    return out


def _vm_hwm_mb() -> float | None:
    """Linux: the peak RSS of this process image (VmHWM). getrusage's ru_maxrss can carry a larger
    parent's peak over fork and exec (a run started by pytest or a launcher)."""
    try:
        with open("/proc/self/status") as f:
            return next((int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:")), None)
    except OSError:
        return None


def run_summary(metrics: Metrics, records: list[dict[str, Any]], device: torch.device, run_dir: Any) -> dict[str, Any]:
    """The keys `timing` and `resources` add to summary.json, from the experience records."""
    out: dict[str, Any] = {}
    if metrics.on("timing"):
        timing = {"experience_seconds": [r.get("seconds") for r in records]}
        for key in ("train_seconds", "buffer_seconds", "eval_seconds"):
            timing[key] = sum(r.get(key, 0.0) for r in records)
        if metrics.at("timing", "epoch"):
            timing["epoch_seconds"] = [[e.get("seconds") for e in r.get("epochs", [])] for r in records]
        out["timing"] = timing
    if metrics.on("resources"):
        out.update(resources(device))
        out["disk_bytes"] = disk_bytes(run_dir)
    return out
