"""Batched training augmentation on float tensors: one call per mini-batch, never per sample."""
from __future__ import annotations

from typing import Protocol

import torch


class Augment(Protocol):
    def __call__(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor: ...


def _rand(n: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    # generators live on the CPU; draw there and move, so runs are reproducible on any device
    return torch.rand(n, generator=generator).to(x.device)


class CropFlip:
    """Random crop with zero padding `padding` and a horizontal flip with probability 1/2."""

    def __init__(self, padding: int = 4, flip: bool = True):
        self.padding = padding
        self.flip = flip

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        b, _, h, w = x.shape
        p = self.padding
        if p > 0:
            padded = torch.nn.functional.pad(x, (p, p, p, p))  # [B, C, H+2p, W+2p]
            oy = (_rand(b, x, generator) * (2 * p + 1)).long()  # [B] crop offsets
            ox = (_rand(b, x, generator) * (2 * p + 1)).long()
            rows = oy[:, None] + torch.arange(h, device=x.device)  # [B, H]
            cols = ox[:, None] + torch.arange(w, device=x.device)  # [B, W]
            bi = torch.arange(b, device=x.device)[:, None, None]
            x = padded[bi, :, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
            x = x.permute(0, 3, 1, 2)
        if self.flip:
            mask = (_rand(b, x, generator) < 0.5).view(b, 1, 1, 1)
            x = torch.where(mask, x.flip(3), x)
        return x.contiguous()
