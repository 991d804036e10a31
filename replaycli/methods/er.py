"""Experience replay: cross-entropy on current samples joined with memory samples."""

from __future__ import annotations

import torch

from replaycli.methods.base import Batch, Memory, Method


class Replay(Method):
    """after_experience: the loader joins `mem_mb_size` memory samples to each batch;
    every_batch: they are drawn from the live buffer at every step. Without a buffer this is
    fine-tuning, the lower bound."""

    needs_memory = False
    batches = True
    joins_memory = True

    def step(self, batch: Batch, memory: Memory | None) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, t = batch.x, batch.y, batch.t
        if memory is not None:
            mx, my, mt, _ = memory.sample()
            x, y, t = torch.cat([x, mx]), torch.cat([y, my]), torch.cat([t, mt])
        out = self.model(x)  # [B + M, C]
        return self.ce(out, y, t), out[: len(batch.x)]
