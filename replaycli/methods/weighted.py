"""Weighted replay: `loss_current + alpha_t * loss_memory`, the two mini-batches kept apart."""

from __future__ import annotations

import torch

from replaycli.errors import choice, number
from replaycli.methods.base import Batch, Memory, Method

SCHEDULES = ("constant", "linear")


class Weighted(Method):
    """`schedule`: constant (alpha_t = alpha) or linear (alpha_t = alpha * t, t = experiences
    finished before the current one: the memory weighs as many experiences as it holds)."""

    batches = True

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        mask: torch.Tensor | None = None,
        alpha: float = 1.0,
        schedule: str = "constant",
    ):
        super().__init__(model, optimizer, mask)
        choice("schedule", schedule, SCHEDULES)
        self.alpha = number("alpha", alpha)
        self.schedule = schedule

    def alpha_at(self, t: int) -> float:
        return self.alpha * t if self.schedule == "linear" else self.alpha

    def step(self, batch: Batch, memory: Memory | None) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(batch.x)  # [B, C]
        loss = self.ce(out, batch.y, batch.t)
        alpha = self.alpha_at(batch.experience)
        if alpha and memory is not None:
            mx, my, mt, _ = memory.sample()
            loss = loss + alpha * self.ce(self.model(mx), my, mt)
        return loss, out
