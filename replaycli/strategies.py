"""Replay methods: what one training step computes, and what the memory stores and when.

A method is a small class whose hooks `replaycli.train` calls (Mammoth's `observe`, split up):
`before_training` (the data to train on), `steps` (the batches), `loss` (forward and loss of one
step), `insert` and `after_training` (the memory updates). Two update protocols:
`after_experience` (the memory takes the whole experience once it is trained on) and
`every_batch` (reservoir insertion of each mini-batch, replay at every step from the first
experience on: the DER paper's protocol). Whatever a method keeps per sample (DER's logits) is a
buffer extra, so it follows its sample through selection, `resize`, `state_dict` and histograms.
"""
from __future__ import annotations

from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F

from replaycli.buffers import ExemplarsBuffer
from replaycli.data import StreamDataset
from replaycli.errors import ConfigError

Step = tuple[torch.Tensor, torch.Tensor, torch.Tensor, StreamDataset | None]  # x, y, t, the batch's samples
SCHEDULES = ("constant", "linear")


# --- helpers shared by the methods ---------------------------------------------------------------
def masked(out: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Task-IL: `out` [B, C] with the classes outside each sample's task set to -inf.

    `mask`: bool [n_tasks, C], the classes of each task; None (class-IL) leaves `out` as it is.
    """
    return out if mask is None else out.masked_fill(~mask[t], float("-inf"))


def ce(out: torch.Tensor, y: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return F.cross_entropy(masked(out, t, mask), y)


def task_mask(bench: Any) -> torch.Tensor:
    """bool [n_tasks, n_classes]: the classes of each task label of `bench`'s training stream."""
    n_tasks = max(e.task_label for e in bench.train_stream) + 1
    mask = torch.zeros(n_tasks, bench.n_classes, dtype=torch.bool)
    for e in bench.train_stream:
        mask[e.task_label, e.classes_in_this_experience] = True
    return mask


def has_memory(buffer: ExemplarsBuffer | None) -> bool:
    return buffer is not None and len(buffer) > 0


def sample_memory(
    buffer: ExemplarsBuffer, n: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """`n` stored samples drawn uniformly without replacement, with training transforms:
    (x, y, t, extras), the extras (e.g. `logits` [n, C]) row-aligned with x."""
    store = buffer.store
    pos = torch.randperm(len(store), generator=generator)[:n].to(store.ids.device)
    x, y, t = store.dataset().train().batch(pos, generator)
    return x, y, t, {k: v[pos] for k, v in store.extras.items()}


@torch.no_grad()
def logits_of(model: torch.nn.Module, data: StreamDataset, batch_size: int) -> torch.Tensor:
    """The model's logits [n, C] on `data` (evaluation mode and transforms)."""
    was_training = model.training
    model.eval()
    data = data.eval()
    device = data.ids.device
    outs = [model(data.batch(torch.arange(s, min(s + batch_size, len(data)), device=device))[0])
            for s in range(0, len(data), batch_size)]
    model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)


def _view(run: Any, exp: Any) -> SimpleNamespace:
    """What a buffer's `update` reads (feature-based selection needs the model and device)."""
    return SimpleNamespace(experience=exp, device=run.device, model=run.model)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{name}={value!r} must be a number >= 0")
    return float(value)


# --- the methods ---------------------------------------------------------------------------------
class Replay:
    """Plain rehearsal: cross-entropy on current samples joined with memory samples.

    after_experience: the loader joins the memory to each batch; every_batch: `mem_mb_size`
    memory samples are drawn from the live buffer at every step, then the batch is inserted.
    """

    stores_logits = False

    def __init__(self, every_batch: bool = False, mem_mb_size: int = 32, generator: torch.Generator | None = None):
        if isinstance(mem_mb_size, bool) or not isinstance(mem_mb_size, int) or mem_mb_size < 1:
            raise ConfigError(f"mem_mb_size={mem_mb_size!r} must be a positive integer")
        self.every_batch = every_batch
        self.mem_mb_size = mem_mb_size
        self.generator = generator
        self.experience = 0  # index of the experience being trained

    @property
    def joins_memory(self) -> bool:
        """Whether the loader joins the memory to the current batches (else `loss` draws it)."""
        return not self.every_batch

    def before_training(self, run: Any, exp: Any) -> StreamDataset:
        """The data to train on for `exp`."""
        self.experience = exp.current_experience
        return exp.dataset

    def steps(self, loader: Any) -> Iterable[Step]:
        if self.every_batch:
            return loader.batches(with_samples=True)
        return ((x, y, t, None) for x, y, t in loader)

    def loss(self, run: Any, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's loss and the logits [B, C] of its first B (current) samples."""
        n = len(x)
        if self.every_batch and has_memory(run.buffer):
            mx, my, mt, _ = sample_memory(run.buffer, self.mem_mb_size, self.generator)
            x, y, t = torch.cat([x, mx]), torch.cat([y, my]), torch.cat([t, mt])
        out = run.model(x)  # [B + M, C]
        return ce(out, y, t, run.mask), out[:n]

    def insert(self, run: Any, exp: Any, samples: StreamDataset, out: torch.Tensor) -> None:
        """every_batch: offer the batch's samples (and their logits, taken now) to the buffer."""
        if run.buffer is not None:
            extras = {"logits": out.detach()} if self.stores_logits else None
            run.buffer.update_from_dataset(samples, _view(run, exp), exp.current_experience, extras)

    def after_training(self, run: Any, exp: Any) -> None:
        """after_experience: offer the whole experience (with the trained model's logits)."""
        if run.buffer is not None and not self.every_batch:
            extras = {"logits": logits_of(run.model, exp.dataset, run.eval_mb_size)} if self.stores_logits else None
            run.buffer.update(_view(run, exp), extras=extras)

    def state_dict(self) -> dict[str, Any]:
        """Method state a checkpoint must keep beyond the buffer (per-sample state is in the buffer)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class Weighted(Replay):
    """`loss_current + alpha_t * loss_memory`, the memory batch kept apart from the current one.

    `schedule`: constant (alpha_t = alpha) or linear (alpha_t = alpha * t, t = experiences
    finished before the current one: the memory weighs as many experiences as it holds).
    """

    joins_memory = False

    def __init__(self, alpha: float = 1.0, schedule: str = "constant", **kwargs: Any):
        super().__init__(**kwargs)
        if schedule not in SCHEDULES:
            raise ConfigError(f"schedule={schedule!r} is not allowed; allowed: {', '.join(SCHEDULES)}")
        self.alpha = _number("alpha", alpha)
        self.schedule = schedule

    def alpha_at(self, t: int) -> float:
        return self.alpha * t if self.schedule == "linear" else self.alpha

    def loss(self, run: Any, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = run.model(x)  # [B, C]
        loss = ce(out, y, t, run.mask)
        alpha = self.alpha_at(self.experience)
        if alpha and has_memory(run.buffer):
            mx, my, mt, _ = sample_memory(run.buffer, self.mem_mb_size, self.generator)
            loss = loss + alpha * ce(run.model(mx), my, mt, run.mask)
        return loss, out


class DER(Replay):
    """Dark Experience Replay: the buffer keeps each sample's logits from when it was stored;
    the loss adds `alpha * MSE(logits, stored logits)` on a memory batch.

    Stored logits are raw (unmasked); under task-IL only the cross-entropy terms are masked.
    """

    stores_logits = True
    joins_memory = False

    def __init__(self, alpha: float = 1.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.alpha = _number("alpha", alpha)

    def loss(self, run: Any, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = run.model(x)  # [B, C]
        loss = ce(out, y, t, run.mask)
        if has_memory(run.buffer):
            mx, _, _, extras = sample_memory(run.buffer, self.mem_mb_size, self.generator)
            loss = loss + self.alpha * F.mse_loss(run.model(mx), extras["logits"])
        return loss, out


class DERpp(DER):
    """DER++: DER plus `beta * cross-entropy` on a second, independently drawn memory batch."""

    def __init__(self, alpha: float = 0.5, beta: float = 0.5, **kwargs: Any):
        super().__init__(alpha=alpha, **kwargs)
        self.beta = _number("beta", beta)

    def loss(self, run: Any, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, out = super().loss(run, x, y, t)
        if has_memory(run.buffer):
            mx, my, mt, _ = sample_memory(run.buffer, self.mem_mb_size, self.generator)
            loss = loss + self.beta * ce(run.model(mx), my, mt, run.mask)
        return loss, out


class GDumb(Replay):
    """GDumb: a class-balanced sampler fills the buffer from the stream; after each experience
    the model goes back to its initial weights (and the optimizer to a fresh state) and is
    trained on the buffer alone.

    The sampler is the class-balanced buffer (one random key per sample, classes split evenly,
    unused shares lent): the class counts and the uniform choice within a class of GDumb's
    greedy sampler, without its per-sample loop.
    """

    joins_memory = False

    def __init__(self, model: torch.nn.Module, **kwargs: Any):
        super().__init__(**kwargs)
        if self.every_batch:
            raise ConfigError("strategy=gdumb trains on its buffer after each experience; allowed: buffer_update=after_experience")
        self.init_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def before_training(self, run: Any, exp: Any) -> StreamDataset:
        super().before_training(run, exp)
        run.buffer.update(_view(run, exp))
        run.model.load_state_dict(self.init_state)  # re-initialise: only the buffer is learnt from
        run.optimizer.state.clear()  # e.g. Adam's moments of the previous model
        return run.buffer.buffer

    def after_training(self, run: Any, exp: Any) -> None:
        pass  # the buffer took the experience before training

    def state_dict(self) -> dict[str, Any]:
        return {f"init.{k}": v.cpu() for k, v in self.init_state.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = next(iter(self.init_state.values())).device if self.init_state else None
        self.init_state = {k[len("init."):]: v.to(device) for k, v in state.items() if k.startswith("init.")}
