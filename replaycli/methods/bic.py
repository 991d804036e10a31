"""BiC (Wu et al., CVPR 2019): large scale incremental learning with a bias-correction layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from replaycli.data.dataset import StreamDataset
from replaycli.data.protocols import held_out
from replaycli.errors import fraction, integer, number
from replaycli.memory.buffer import Buffer
from replaycli.methods.base import Batch, Memory, Method, frozen_copy


def corrected(out: torch.Tensor, newest: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """The bias-correction layer: `alpha * logit + beta` on the `newest` classes [C] (bool), the
    other logits as they are. `ab` = (alpha, beta)."""
    return torch.where(newest.unsqueeze(0), ab[0] * out + ab[1], out)


def grown(mask: torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    """bool `mask` padded with False to at least `n` classes, on `device`."""
    mask = mask.to(device)
    return torch.cat([mask, torch.zeros(n - len(mask), dtype=torch.bool, device=device)]) if len(mask) < n else mask


class BiC(Method):
    """Stage 1, each step: cross-entropy over the classes seen so far on the current batch joined
    with exemplars (the loader joins them), weighted `1 - lam`, plus `lam * T^2 *` the distillation
    of the previous model's (bias-corrected) softmax at temperature T over the old classes, with
    `lam = old / seen` classes (the paper's n / (n + m)). `val_fraction` of each class of each
    experience is held out of training into a class-balanced validation memory of `val_size`.
    Stage 2, once the experience is trained: the two parameters (alpha, beta) of the correction of
    the newest classes' logits are fitted by Adam (`bias_lr`, `bias_steps` full-batch steps) to the
    cross-entropy on that validation memory, the model frozen; evaluation uses the corrected logits.

    Differs from Mammoth's bic: lam is the paper's old/seen (Mammoth uses 1/(task+1)), the
    validation memory is kept beside the exemplar memory (its own `val_size`, not carved from the
    buffer), and stage 2 runs on cached logits, full batch (the model is frozen there).
    """

    protocols = ("after_experience",)  # the paper's batches of classes: stage 2 runs between experiences
    joins_memory = True

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        mask: torch.Tensor | None = None,
        temperature: float = 2.0,
        val_fraction: float = 0.1,
        val_size: int = 100,
        bias_lr: float = 0.001,
        bias_steps: int = 500,
    ):
        super().__init__(model, optimizer, mask)
        self.temperature = number("temperature", temperature)
        self.val_fraction = fraction("val_fraction", val_fraction)
        self.val = Buffer(integer("val_size", val_size), groupby="class")  # held-out samples, class-balanced
        self.bias_lr = number("bias_lr", bias_lr)
        self.bias_steps = integer("bias_steps", bias_steps, 0)
        self.seen = torch.zeros(0, dtype=torch.bool)  # [C] classes seen so far
        self.old = torch.zeros(0, dtype=torch.bool)  # [C] classes seen before this experience
        self.ab = torch.tensor([1.0, 0.0])  # the correction now
        self.old_model: torch.nn.Module | None = None  # the previous experience's model ...
        self.old_newest = torch.zeros(0, dtype=torch.bool)  # ... its corrected classes ...
        self.old_ab = torch.tensor([1.0, 0.0])  # ... and their correction
        self.has_old, self.lam = False, 0.0  # whether old classes exist, and their share: set per experience

    def begin_experience(self, experience: int, data: StreamDataset) -> StreamDataset:
        self.old = self.seen.clone()
        if len(data):
            self.seen = grown(self.seen, int(data.y.max()) + 1, self.seen.device)
            self.seen = self.seen.index_fill(0, torch.unique(data.y).to(self.seen.device), True)
        self.has_old = bool(self.old.any())  # both fixed for the experience: read once, not synced every step
        self.lam = float(self.old.sum()) / max(float(self.seen.sum()), 1.0)  # the paper's n / (n + m)
        keep, out = held_out(data.y, self.val_fraction, torch.default_generator)  # the run's RNG: seeded, checkpointed
        self.val.add(data.subset(out), experience)
        return data.subset(keep)

    def newest(self) -> torch.Tensor:
        """[C] the classes first seen in this experience: those the correction applies to."""
        return self.seen & ~grown(self.old, len(self.seen), self.seen.device)

    def step(self, batch: Batch, memory: Memory | None) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(batch.x)  # [B, C]
        if len(self.seen) != out.shape[1] or self.seen.device != out.device:  # sized once, to the model's classes
            self.seen, self.old, self.old_newest = (
                grown(m, out.shape[1], out.device) for m in (self.seen, self.old, self.old_newest)
            )
        loss = self.ce(out.masked_fill(~self.seen, float("-inf")), batch.y, batch.t)
        if self.old_model is None or not self.has_old:
            return loss, out
        with torch.no_grad():
            previous = corrected(self.old_model(batch.x), self.old_newest, self.old_ab.to(out.device))[:, self.old]
        T, lam = self.temperature, self.lam
        distill = -(F.softmax(previous / T, 1) * F.log_softmax(out[:, self.old] / T, 1)).sum(1).mean()
        return (1 - lam) * loss + lam * T * T * distill, out

    def end_experience(self, experience: int, memory: Memory | None) -> None:
        device = next(self.model.parameters()).device
        self.ab = torch.tensor([1.0, 0.0], device=device)
        if self.old.any() and len(self.val):
            self.ab = self.fit_correction()
        self.old_model = frozen_copy(self.model)
        self.old_newest, self.old_ab = self.newest().clone(), self.ab.clone()

    def fit_correction(self) -> torch.Tensor:
        """(alpha, beta) minimising the validation memory's cross-entropy over the seen classes."""
        data = self.val.buffer.eval()
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            x, y, t = data.batch(torch.arange(len(data), device=data.ids.device))
            out = self.model(x)  # raw: -inf times alpha would make alpha's gradient NaN
        self.model.train(was_training)
        ab = torch.tensor([1.0, 0.0], device=out.device, requires_grad=True)
        opt = torch.optim.Adam([ab], lr=self.bias_lr)
        newest, unseen = self.newest().to(out.device), ~self.seen.to(out.device)
        for _ in range(self.bias_steps):
            opt.zero_grad()
            self.ce(corrected(out, newest, ab).masked_fill(unseen, float("-inf")), y, t).backward()
            opt.step()
        return ab.detach()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return corrected(out, grown(self.newest(), out.shape[1], out.device), self.ab.to(out.device))
