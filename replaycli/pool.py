"""A pool: the images of one stream, loaded once, indexed by int64 ids.

Every dataset, experience and buffer of a benchmark is a tensor of ids into a pool. Images stay
uint8 in memory and are turned into normalised float batches only when a batch is gathered (and
augmented, for training), so memory is a quarter of a float copy and no code path copies the
stream per experience.
"""
from __future__ import annotations

import torch

from replaycli.transforms import Augment


class Pool:
    """Images `x` uint8 [N, C, H, W] and labels `y` int64 [N]; ids are positions in them."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        mean: float | tuple[float, ...] = 0.0,
        std: float | tuple[float, ...] = 1.0,
        augment: Augment | None = None,
    ):
        assert x.dtype == torch.uint8 and x.dim() == 4, "pool images are uint8 [N, C, H, W]"
        assert y.dtype == torch.int64 and len(y) == len(x)
        self.x = x
        self.y = y
        c = x.shape[1]
        self.mean = torch.as_tensor(mean, dtype=torch.float32).expand(c).reshape(1, c, 1, 1).clone()
        self.std = torch.as_tensor(std, dtype=torch.float32).expand(c).reshape(1, c, 1, 1).clone()
        self.augment = augment
        self._affine()

    def _affine(self) -> None:
        # (x / 255 - mean) / std as x * scale - shift: two passes over a batch instead of four
        self.scale, self.shift = 1.0 / (255.0 * self.std), self.mean / self.std  # [1, C, 1, 1]

    def __len__(self) -> int:
        return len(self.y)

    @property
    def device(self) -> torch.device:
        return self.x.device

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def to(self, device: torch.device | str) -> "Pool":
        """Move images and labels to `device` (in place); returns self."""
        self.x, self.y = self.x.to(device), self.y.to(device)
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        self._affine()
        return self

    def targets(self, ids: torch.Tensor) -> torch.Tensor:
        return self.y[ids.to(self.y.device)]

    def raw(self, ids: torch.Tensor) -> torch.Tensor:
        """uint8 images of `ids`: [B, C, H, W]."""
        # index_select copies whole rows; `x[ids]` indexes element by element, ~40x slower on CPU
        return self.x.index_select(0, ids.to(self.x.device))

    def images(
        self, ids: torch.Tensor, train: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Normalised float32 images of `ids` [B, C, H, W], augmented when `train` (on the uint8
        images, before normalisation: a quarter of the bytes, and padding is black)."""
        x = self.raw(ids)  # [B, C, H, W] uint8
        if train and self.augment is not None:
            x = self.augment(x, generator)
        return (x * self.scale).sub_(self.shift)  # uint8 * float32 -> a new float32 tensor, then in place


class PermutedPool(Pool):
    """A base pool seen through E fixed pixel permutations: id = e * N + base id.

    The permuted images are never stored: a batch is gathered from the base images and permuted
    in one vectorised `gather`, so 50 permutations cost no more memory than one.
    """

    def __init__(self, base: Pool, perms: torch.Tensor):
        n_pixels = base.x[0].numel()
        assert perms.dim() == 2 and perms.shape[1] == n_pixels
        super().__init__(base.x, base.y, 0.0, 1.0, base.augment)
        self.mean, self.std = base.mean, base.std
        self._affine()
        self.perms = perms.to(torch.int64)  # [E, C*H*W]
        self.n_base = len(base.y)

    def __len__(self) -> int:
        return self.n_base * len(self.perms)

    def to(self, device: torch.device | str) -> "PermutedPool":
        super().to(device)
        self.perms = self.perms.to(device)
        return self

    def targets(self, ids: torch.Tensor) -> torch.Tensor:
        return self.y[ids.to(self.y.device) % self.n_base]

    def raw(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.to(self.x.device)
        base, which = ids % self.n_base, ids // self.n_base
        flat = self.x.index_select(0, base).flatten(1)  # [B, C*H*W]
        return flat.gather(1, self.perms[which]).view(len(ids), *self.x.shape[1:])
