"""A pool: the samples of one stream, loaded once, indexed by int64 ids.

Every dataset, experience and buffer of a benchmark is a tensor of ids into a pool. Samples keep
their own dtype in memory (uint8 images stay uint8, float features stay float) and become
normalised float32 batches only when a batch is gathered (and augmented, for training), so
memory is a quarter of a float copy for images and no code path copies the stream per
experience. A pool may also sit in a memory-mapped file (`replaycli.data.cache`): batches are then
gathered from the file and moved to the device, and the pages read are handed back to the
kernel as the run goes, so a data set larger than RAM trains with bounded memory.
"""

from __future__ import annotations

from typing import Any

import torch

from replaycli.data.transforms import Augment

NORMALIZE = ("standard", "unit", "none")  # benchmark.normalize: (x/255 - mean)/std, x/255, x as stored
FAULT_AROUND = (
    1 << 16
)  # bytes the kernel maps around each page fault (vm fault_around_bytes): what a row costs at least


def _per_channel(value: float | tuple[float, ...] | list[float] | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`value` as float32 [1, C, 1, ...] broadcasting over a batch of `x` (C = x.shape[1])."""
    c = x.shape[1] if x.dim() > 1 else 1
    shape = (1, c) + (1,) * max(x.dim() - 2, 0)
    return torch.as_tensor(value, dtype=torch.float32).expand(c).reshape(shape).clone()


class Pool:
    """Samples `x` [N, ...] (any dtype) and labels `y` int64 [N]; ids are positions in them.

    A gathered batch is `(x / max_value - mean) / std` in float32, with `mean` and `std` per
    channel (dimension 1); `max_value` defaults to 255 for uint8 images and 1 otherwise.
    `mapped`: the memory map `x` lives in (its pages are released as batches are read).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        mean: float | tuple[float, ...] = 0.0,
        std: float | tuple[float, ...] = 1.0,
        augment: Augment | None = None,
        max_value: float | None = None,
        mapped: Any = None,
    ):
        assert x.dim() >= 2, "pool samples are [N, ...] with at least one feature"
        assert y.dtype == torch.int64 and y.dim() == 1 and len(y) == len(x)
        self.x = x
        self.y = y
        self.max_value = float(255.0 if max_value is None and x.dtype == torch.uint8 else max_value or 1.0)
        self.mean, self.std = _per_channel(mean, x), _per_channel(std, x)
        self.augment = augment
        self.mapped = mapped
        self._device = x.device
        self._unread = 0  # bytes gathered from the map since its pages were last released
        self._affine()

    def _affine(self) -> None:
        # (x / max_value - mean) / std as x * scale - shift: two passes over a batch instead of four
        self.scale, self.shift = 1.0 / (self.max_value * self.std), self.mean / self.std  # [1, C, 1, ...]
        self.identity = bool((self.scale == 1).all() and (self.shift == 0).all())

    def __len__(self) -> int:
        return len(self.y)

    @property
    def device(self) -> torch.device:
        """Where batches are gathered to (a memory-mapped pool's samples stay in the file)."""
        return self._device

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def normalized(self, how: str, stats: tuple[Any, Any] | None = None) -> Pool:
        """Set the normalisation (`benchmark.normalize`, in place; returns self): `standard`
        with `stats` (mean, std per channel of x/255 for images; computed on this pool when
        None), `unit` x/255 (uint8 images only), `none` the values as stored."""
        from replaycli.errors import ConfigError, choice

        choice("normalize", how, NORMALIZE)
        image = self.x.dtype == torch.uint8
        if how == "unit" and not image:
            raise ConfigError(
                f"normalize=unit divides uint8 images by 255; these samples are {str(self.x.dtype)[6:]}; "
                "allowed: standard, none"
            )
        self.max_value = 255.0 if image and how != "none" else 1.0
        mean, std = (0.0, 1.0) if how != "standard" else stats or channel_stats(self.x, self.max_value)
        self.mean, self.std = _per_channel(mean, self.x).to(self.device), _per_channel(std, self.x).to(self.device)
        self._affine()
        return self

    def to(self, device: torch.device | str) -> Pool:
        """Move labels, statistics and (unless memory-mapped) samples to `device`, in place."""
        if self.mapped is None:
            self.x = self.x.to(device)
        self.y = self.y.to(device)
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        self._device = torch.device(device)
        self._affine()
        return self

    def targets(self, ids: torch.Tensor) -> torch.Tensor:
        return self.y[ids.to(self.y.device)]

    def raw(self, ids: torch.Tensor) -> torch.Tensor:
        """The stored samples of `ids` [B, ...], on the pool's device."""
        # index_select copies whole rows; `x[ids]` indexes element by element, ~40x slower on CPU
        x = self.x.index_select(0, ids.to(self.x.device))
        if self.mapped is not None:
            self._release(len(ids) * max(x[0].numel() * x.element_size(), FAULT_AROUND))
            x = x.to(self._device)
        return x

    def _release(self, nbytes: int) -> None:
        # the pages a batch read stay in the page cache (a re-read is a minor fault) but leave this
        # process's resident set every 256 MiB mapped: the RSS stays bounded on a file larger than RAM
        self._unread += nbytes
        if self._unread >= 1 << 28:
            self.mapped.release()
            self._unread = 0

    def images(
        self,
        ids: torch.Tensor,
        train: bool = False,
        generator: torch.Generator | None = None,
        stored: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Normalised float32 samples of `ids` [B, ...], augmented when `train` (on the stored
        images, before normalisation: a quarter of the bytes, and padding is black). `stored`:
        `raw(ids)` already gathered (read ahead by the loader)."""
        x = self.raw(ids) if stored is None else stored  # [B, ...] as stored
        if train and self.augment is not None:
            x = self.augment(x, generator)
        if self.identity:
            return x.to(torch.float32)  # `raw` made a new tensor: nothing of the pool is shared
        return (x * self.scale).sub_(self.shift)  # uint8 * float32 -> a new float32 tensor, then in place


def channel_stats(x: torch.Tensor, max_value: float, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Mean and std per channel (dimension 1) of `x / max_value`, in float64, chunk by chunk
    (a memory-mapped pool is read once, never copied whole)."""
    c = x.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    squares = torch.zeros(c, dtype=torch.float64)
    for s in range(0, len(x), chunk):
        part = x[s : s + chunk].to(torch.float64).div_(max_value).transpose(0, 1).reshape(c, -1)
        total += part.sum(1)
        squares += part.square().sum(1)
    n = len(x) * (x[0].numel() // c)
    mean = total / n
    std = (squares / n - mean.square()).clamp(min=0).sqrt().clamp(min=1e-8)
    return mean.tolist(), std.tolist()


class MappedPool(Pool):
    """A base pool seen through E fixed pixel maps: id = e * N + base id.

    Map e gives, for each output pixel, the base pixel it reads (-1: black). A permutation
    (PermutedMNIST) and a nearest-neighbour rotation (RotatedMNIST) are both such maps. The
    mapped images are never stored: a batch is gathered from the base images and mapped in one
    vectorised `gather`, so 50 maps cost no more memory than one.
    """

    def __init__(self, base: Pool, maps: torch.Tensor):
        n_pixels = base.x[0].numel()
        assert maps.dim() == 2 and maps.shape[1] == n_pixels
        super().__init__(base.x, base.y, 0.0, 1.0, base.augment, base.max_value, base.mapped)
        self.mean, self.std = base.mean, base.std
        self._affine()
        self.black = bool((maps < 0).any())
        self.maps = (maps.to(torch.int64) + 1) if self.black else maps.to(torch.int64)  # [E, C*H*W]; 0 = black
        self.n_base = len(base.y)

    def __len__(self) -> int:
        return self.n_base * len(self.maps)

    def to(self, device: torch.device | str) -> MappedPool:
        super().to(device)
        self.maps = self.maps.to(device)
        return self

    def targets(self, ids: torch.Tensor) -> torch.Tensor:
        return self.y[ids.to(self.y.device) % self.n_base]

    def raw(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.to(self._device)
        base, which = ids % self.n_base, ids // self.n_base
        flat = super().raw(base).flatten(1)  # [B, C*H*W]
        if self.black:  # column 0 is the black pixel the -1 entries read
            flat = torch.cat([flat.new_zeros(len(ids), 1), flat], 1)
        return flat.gather(1, self.maps[which]).view(len(ids), *self.x.shape[1:])
