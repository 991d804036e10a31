"""Dark Experience Replay (Buzzega et al., NeurIPS 2020): DER and DER++."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from replaycli.errors import number
from replaycli.methods.base import Batch, Memory, Method


class DER(Method):
    """The buffer keeps each sample's logits from when it was stored; the loss adds
    `alpha * MSE(logits, stored logits)` on a memory batch.

    Stored logits: under every_batch those of the step's own forward pass, under after_experience
    those of the trained model (evaluation mode). They are raw (unmasked): under task-IL only the
    cross-entropy terms are masked.
    """

    batches = True
    stores_logits = True

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        mask: torch.Tensor | None = None,
        alpha: float = 1.0,
    ):
        super().__init__(model, optimizer, mask)
        self.alpha = number("alpha", alpha)

    def step(self, batch: Batch, memory: Memory | None) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(batch.x)  # [B, C]
        loss = self.ce(out, batch.y, batch.t)
        if memory is not None:
            mx, _, _, extras = memory.sample()
            loss = loss + self.alpha * F.mse_loss(self.model(mx), extras["logits"])
        return loss, out


class DERpp(DER):
    """DER++: DER plus `beta * cross-entropy` on a second, independently drawn memory batch."""

    batches = True

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        mask: torch.Tensor | None = None,
        alpha: float = 0.5,
        beta: float = 0.5,
    ):
        super().__init__(model, optimizer, mask, alpha)
        self.beta = number("beta", beta)

    def step(self, batch: Batch, memory: Memory | None) -> tuple[torch.Tensor, torch.Tensor]:
        loss, out = super().step(batch, memory)
        if memory is not None:
            mx, my, mt, _ = memory.sample()
            loss = loss + self.beta * self.ce(self.model(mx), my, mt)
        return loss, out
