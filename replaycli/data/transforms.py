"""Batched training augmentation: one call per mini-batch, never per sample.

An augmentation receives the batch's raw images (uint8 [B, C, H, W], before normalisation, on
the pool's device) and only moves pixels, so it works on a quarter of the bytes of a float batch
and pads with black, as torchvision's RandomCrop(padding=...) does before Normalize.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F


class Augment(Protocol):
    def __call__(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor: ...


def _rand(n: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    # generators live on the CPU; draw there and move, so runs are reproducible on any device
    return torch.rand(n, generator=generator).to(x.device)


class CropFlip:
    """Random crop with zero padding `padding` and a horizontal flip with probability 1/2.

    Both are one `gather` per batch: each output pixel reads its (padded, maybe mirrored) source.
    """

    def __init__(self, padding: int = 4, flip: bool = True):
        self.padding = padding
        self.flip = flip

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.padding
        if p <= 0 and not self.flip:
            return x
        oy = ox = torch.zeros(b, dtype=torch.long, device=x.device)  # [B] crop offsets
        if p > 0:
            oy = (_rand(b, x, generator) * (2 * p + 1)).long()
            ox = (_rand(b, x, generator) * (2 * p + 1)).long()
        j = torch.arange(w, device=x.device)
        cols = ox[:, None] + j  # [B, W] source column in the padded image
        if self.flip:
            mirror = (_rand(b, x, generator) < 0.5)[:, None]  # [B, 1]
            cols = torch.where(mirror, ox[:, None] + (w - 1 - j), cols)
        rows = oy[:, None] + torch.arange(h, device=x.device)  # [B, H]
        padded = F.pad(x, (p, p, p, p)) if p > 0 else x  # [B, C, H+2p, W+2p]
        src = rows[:, :, None] * (w + 2 * p) + cols[:, None, :]  # [B, H, W] flat source pixel
        out = padded.reshape(b, c, -1).gather(2, src.view(b, 1, h * w).expand(b, c, h * w))
        return out.view(b, c, h, w)
