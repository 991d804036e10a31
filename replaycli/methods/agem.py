"""A-GEM (Chaudhry et al., ICLR 2019): averaged gradient episodic memory."""

from __future__ import annotations

import torch

from replaycli.methods.base import Batch, Memory, Method


def project(g: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """`g` unchanged when it agrees with `ref` (g . ref >= 0), else projected onto the plane
    orthogonal to `ref`: g - (g . ref / ref . ref) ref (the paper's equation 11)."""
    dot = torch.dot(g, ref).clamp(max=0.0)  # 0 when they agree: g unchanged (no device sync to decide it)
    return g - dot / torch.dot(ref, ref).clamp(min=1e-12) * ref


class AGEM(Method):
    """Each step: the gradient of the current batch's loss, and a reference gradient of a memory
    batch's loss (`mem_mb_size` samples of the past, the paper's averaged episodic memory); when
    they conflict the step's gradient is projected (`project`). The step returns a loss whose
    value is the current batch's cross-entropy and whose gradient is the projected one, so the
    loop's `backward()` and optimizer step apply it unchanged.

    As in the paper and Mammoth's `agem`, the memory is filled at the end of each experience
    (`after_experience`); under `every_batch` it is Mammoth's `agem_r` (reservoir A-GEM).
    """

    def step(self, batch: Batch, memory: Memory | None) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(batch.x)
        loss = self.ce(out, batch.y, batch.t)
        if memory is None:
            return loss, out
        g = self.flat_grad(loss, retain=True)
        mx, my, mt, _ = memory.sample()
        ref = self.flat_grad(self.ce(self.model(mx), my, mt))
        return self.with_gradient(loss, project(g, ref)), out
