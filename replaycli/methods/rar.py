"""RAR (Zhang et al., NeurIPS 2022): repeated augmented rehearsal."""

from __future__ import annotations

import torch

from replaycli.data.transforms import CropFlip
from replaycli.errors import flag, integer
from replaycli.methods.base import Batch, Memory, Method, require_images


class RAR(Method):
    """Experience replay repeated: each incoming batch is trained on `repeats` times, each time
    joined with a fresh memory batch and the whole joined batch augmented anew (random crop with
    `padding`, a horizontal flip when `flip`), so the memory is passed over many more times than the
    stream without overfitting its few samples. The first `repeats - 1` updates are taken here, the
    last by the loop. Online in the paper (every_batch, a reservoir); after_experience works too.

    Differs from the reference code: crop and flip only (its RandAugment, N=1 M=14, is left out) on
    the normalised batch, so padding is 0 after normalisation (black for normalize=unit, the mean
    grey for standard); the paper's reinforcement-learned iteration count is left out (`repeats` is fixed).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        mask: torch.Tensor | None = None,
        repeats: int = 3,
        padding: int = 2,
        flip: bool = False,
    ):
        super().__init__(model, optimizer, mask)
        self.repeats = integer("repeats", repeats)
        self.augment = CropFlip(integer("padding", padding, 0), flag("flip", flip))

    def check_input(self, sample_shape: tuple[int, ...]) -> None:
        require_images(sample_shape, "strategy=rar augments", "strategy=replay")

    def step(self, batch: Batch, memory: Memory | None) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_input(tuple(batch.x.shape[1:]))  # checked when the run is built; here for the Python API
        for r in range(self.repeats):
            x, y, t = batch.x, batch.y, batch.t
            if memory is not None:
                mx, my, mt, _ = memory.sample()
                x, y, t = torch.cat([x, mx]), torch.cat([y, my]), torch.cat([t, mt])
            out = self.model(self.augment(x, memory.generator if memory is not None else None))  # [B + M, C]
            loss = self.ce(out, y, t)
            if r < self.repeats - 1:  # the repeated updates; the loop takes the last
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
        return loss, out[: len(batch.x)]
