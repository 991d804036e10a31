"""Measuring a run (what `replaycli.run.metrics` asks for): training loss and accuracy from the tensors
each step already holds, the test stream's accuracy, loss and confusion matrix, and the
process's resources.

Nothing here syncs the device per step or per epoch: a step keeps references, and the values
reach Python once per experience, for its line in metrics.jsonl.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from itertools import accumulate
from typing import Any

import torch
import torch.nn.functional as F

from replaycli.benchmarks import Stream
from replaycli.errors import ConfigError
from replaycli.methods.base import logits_of
from replaycli.outputs import files
from replaycli.run.metrics import Metrics
from replaycli.scenario import masked


class TrainMeter:
    """The training loss and accuracy of one experience, at the granularity of `metrics`.

    A step keeps references to its loss and logits (no kernel, no sync); every CHUNK steps they
    are folded, on the device, into a vector of losses and one bool per sample (predicted right
    or not), so few small tensors stay alive (they would pin the heap) and memory stays bounded.
    The experience's end syncs once, for the experience's metrics.jsonl line.
    """

    CHUNK = 256  # steps kept as tensors before they are folded

    def __init__(self, metrics: Metrics, mask: torch.Tensor | None = None, experience: int = 0):
        self.mask = mask
        self.experience = experience
        self.accuracy = metrics.on("accuracy")
        self.records = metrics.per_epoch  # epoch records in the experience's line
        self.want = {
            key: metrics.at(name, level)
            for name, key, level in (  # what the records hold
                ("loss", "loss", "epoch"),
                ("accuracy", "accuracy", "epoch"),
                ("timing", "seconds", "epoch"),
                ("loss", "mb_loss", "minibatch"),
                ("accuracy", "mb_accuracy", "minibatch"),
            )
        }
        self.losses: list[torch.Tensor] = []  # the steps not folded yet: losses (0-d), and (accuracy)
        self.outs: list[torch.Tensor] = []  # logits [B, C], labels [B], tasks [B]
        self.ys: list[torch.Tensor] = []
        self.ts: list[torch.Tensor] = []
        self.loss_chunks: list[torch.Tensor] = []  # [k] the folded steps' losses
        self.hits: list[torch.Tensor] = []  # bool [n] their samples, predicted right or not
        self.sizes: list[int] = []  # samples per folded step
        self.steps = self.counted = 0  # steps so far; steps of the finished epochs
        self.epochs: list[dict[str, Any]] = []
        self.clock = time.perf_counter()

    def step(self, loss: torch.Tensor, out: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> None:
        """Keep the step's loss and logits; `out` [B, C] is aligned with `y` [B]."""
        self.losses.append(loss.detach())
        if self.accuracy:
            self.outs.append(out.detach())
            self.ys.append(y)
            if self.mask is not None:
                self.ts.append(t)
        self.steps += 1
        if len(self.losses) == self.CHUNK:
            self._fold()

    @torch.no_grad()
    def _fold(self) -> None:
        self.loss_chunks.append(torch.stack(self.losses))
        if self.accuracy:
            t = torch.cat(self.ts) if self.mask is not None else None
            self.hits.append(masked(torch.cat(self.outs), t, self.mask).max(1).indices == torch.cat(self.ys))  # [n]
            self.sizes += [len(y) for y in self.ys]
        self.losses, self.outs, self.ys, self.ts = [], [], [], []

    def epoch_done(self, epoch: int) -> dict[str, Any]:
        """The epoch's record so far: its steps and seconds (its loss and accuracy come with the
        experience's end, when the device is synced once)."""
        record: dict[str, Any] = {"epoch": epoch, "steps": self.steps - self.counted}
        self.counted = self.steps
        if self.want["seconds"]:
            last = self.losses[-1] if self.losses else self.loss_chunks[-1] if self.loss_chunks else None
            if last is not None and last.is_cuda:
                torch.cuda.synchronize(last.device)  # the epoch's kernels are done: its time is real
            now = time.perf_counter()
            record["seconds"], self.clock = now - self.clock, now
        self.epochs.append(record)
        return record

    @torch.no_grad()
    def experience_done(self) -> dict[str, Any]:
        """`loss` (mean over steps), `train_accuracy`, and the epoch and minibatch records asked for."""
        if self.losses:
            self._fold()
        if not self.loss_chunks:  # no step at all
            return {"loss": 0.0, **({"epochs": self.epochs} if self.records else {})}
        parts = [torch.cat(self.loss_chunks).double()]  # [S]
        if self.accuracy:
            hits = torch.cat(self.hits).cumsum(0)  # [N] right predictions so far
            ends = torch.tensor([n - 1 for n in accumulate(self.sizes)], device=hits.device)  # each step's last sample
            parts.append(hits[ends].double())  # [S] right predictions up to each step's end
        values = torch.cat(parts).tolist()  # the experience's one sync
        step_loss, upto = values[: self.steps], values[self.steps :]
        self._check_finite(step_loss)
        step_correct = [c - p for c, p in zip(upto, [0.0, *upto[:-1]], strict=False)]  # [] without accuracy
        out: dict[str, Any] = {"loss": sum(step_loss) / self.steps}
        if self.accuracy:
            out["train_accuracy"] = upto[-1] / sum(self.sizes)
        if self.records:
            out["epochs"] = self._epoch_records(step_loss, step_correct)
        if self.want["mb_loss"] or self.want["mb_accuracy"]:
            out["minibatches"] = self._minibatch_records(step_loss, step_correct)
        return out

    def _check_finite(self, step_loss: list[float]) -> None:
        """A non-finite training loss stops the run (it would only train to NaN): ConfigError."""
        bad = next((i for i, v in enumerate(step_loss) if not math.isfinite(v)), None)
        if bad is None:
            return
        first = 0
        for e in self.epochs:
            if bad < first + e["steps"]:
                break
            first += e["steps"]
        raise ConfigError(
            f"the training loss became {step_loss[bad]} at experience {self.experience}, epoch "
            f"{e['epoch']}, step {bad - first}; the run stopped (status failed); allowed: settings "
            "that keep it finite, e.g. a smaller optimizer.lr"
        )

    def _epoch_records(self, step_loss: list[float], step_correct: list[float]) -> list[dict[str, Any]]:
        start = 0
        for e in self.epochs:
            span = slice(start, start + e["steps"])
            if e["steps"] and self.want["loss"]:
                e["loss"] = sum(step_loss[span]) / e["steps"]
            if e["steps"] and self.want["accuracy"]:
                e["accuracy"] = sum(step_correct[span]) / sum(self.sizes[span])
            start += e["steps"]
        return self.epochs

    def _minibatch_records(self, step_loss: list[float], step_correct: list[float]) -> list[dict[str, Any]]:
        records, i = [], 0
        for e in self.epochs:
            for j in range(e["steps"]):
                mb: dict[str, Any] = {"epoch": e["epoch"], "step": j}
                if self.want["mb_loss"]:
                    mb["loss"] = step_loss[i]
                if self.want["mb_accuracy"]:
                    mb["accuracy"] = step_correct[i] / self.sizes[i]
                records.append(mb)
                i += 1
        return records


@torch.no_grad()
def evaluate_stream(
    model: torch.nn.Module,
    stream: Stream,
    batch_size: int,
    mask: torch.Tensor | None = None,
    n_classes: int = 0,
    loss: bool = False,
    confusion: bool = False,
    task_il: torch.Tensor | None = None,
    predict: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """`accuracy` (a fraction) on each experience of `stream`; with `loss`, `test_loss` per
    experience and `stream_loss` over every sample; with `confusion`, `confusion` [true][predicted]
    counts over the whole stream. Task-IL: predictions among the task's classes (`mask`).
    `task_il` (a task mask, for a class-IL run of a stream with task labels): also
    `task_il_accuracy`, the same logits' argmax among each sample's task classes (Mammoth's
    task-IL figure from a class-IL run). `predict` (x -> scores [B, C]) is the classifier, the
    model's logits when None (a method's own, e.g. iCaRL's nearest mean of exemplars).

    The scores of the whole stream are reduced at once (a few kernels, one sync)."""
    out, y, t, sizes = stream_scores(model, stream, batch_size, mask, predict)
    if out is None:
        return {"accuracy": [0.0] * len(sizes)}
    pred = out.max(1).indices  # the argmax (first of equal maxima), faster on the CPU
    columns = [(pred == y).to(out.dtype)]  # [N] hits; then cross-entropy, task-IL hits: [N, k]
    if loss:
        columns.append(F.cross_entropy(out, y, reduction="none"))
    if task_il is not None:
        columns.append((masked(out, t, task_il).max(1).indices == y).to(out.dtype))
    values = torch.stack([v.sum(0) for v in torch.stack(columns, 1).split(sizes)]).tolist()  # the evaluation's one sync
    result: dict[str, Any] = {"accuracy": [v[0] / max(n, 1) for v, n in zip(values, sizes, strict=True)]}
    if task_il is not None:
        result["task_il_accuracy"] = [v[-1] / max(n, 1) for v, n in zip(values, sizes, strict=True)]
    if loss:
        result["test_loss"] = [v[1] / max(n, 1) for v, n in zip(values, sizes, strict=True)]
        result["stream_loss"] = sum(v[1] for v in values) / max(sum(sizes), 1)
    if confusion:  # [true * C + predicted] counts
        flat = torch.bincount(y * n_classes + pred, minlength=n_classes * n_classes).tolist()
        result["confusion"] = [flat[k * n_classes : (k + 1) * n_classes] for k in range(n_classes)]
    return result


def stream_scores(
    model: torch.nn.Module,
    stream: Stream,
    batch_size: int,
    mask: torch.Tensor | None,
    predict: Callable[[torch.Tensor], torch.Tensor] | None,
) -> tuple[Any, Any, Any, list[int]]:
    """The scores [N, C] of the samples of `stream`, experience after experience (masked to each
    sample's task classes by `mask`), their labels [N] and task labels [N], and each experience's
    size; (None, None, None, sizes) when the stream holds no sample."""
    outs, ys, ts, sizes = [], [], [], []
    for exp in stream:
        data = exp.dataset
        sizes.append(len(data))
        if len(data):
            out = logits_of(model, data, batch_size, predict)  # evaluation mode and transforms
            ts.append(data.tasks.to(out.device))
            outs.append(masked(out, ts[-1], mask))
            ys.append(data.y)
    if not outs:
        return None, None, None, sizes
    return torch.cat(outs), torch.cat(ys), torch.cat(ts), sizes


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
        out["disk_bytes"] = files.disk_bytes(run_dir)
    return out
