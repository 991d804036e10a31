"""The rehearsal memory's state and its one vectorised operation: keep the best of each group.

Every storage policy is this store plus a rule for group keys, scores and group capacities.
A stored sample is its int64 id into the pool, its task label, the experience it came from, its
group key, a score (higher is kept first) and any extras (e.g. DER's logits) as rows of tensors.
"""

from __future__ import annotations

import torch

from replaycli.data.dataset import StreamDataset
from replaycli.data.pool import Pool

FIELDS = ("ids", "tasks", "exps", "groups", "scores")


def group_lengths(num_groups: int, max_size: int) -> list[int]:
    """`max_size` split evenly over `num_groups`, the remainder going to the first groups."""
    if num_groups <= 0:
        return []
    base, rem = divmod(max_size, num_groups)
    return [base + (i < rem) for i in range(num_groups)]


def fill_lengths(sizes: list[int], max_size: int) -> list[int]:
    """Capacities for groups holding `sizes` candidates: an even split of `max_size`, where a
    group smaller than its share keeps all it has and its unused share goes to the others.

    The result sums to min(max_size, sum(sizes)); the remainder goes to the first groups.
    """
    caps = [0] * len(sizes)
    open_groups = list(range(len(sizes)))
    left = max_size
    while open_groups:
        shares = group_lengths(len(open_groups), left)
        small = [g for g, s in zip(open_groups, shares, strict=True) if sizes[g] <= s]
        if not small:
            for g, s in zip(open_groups, shares, strict=True):
                caps[g] = s
            break
        for g in small:
            caps[g] = sizes[g]
            left -= sizes[g]
        open_groups = [g for g in open_groups if g not in small]
    return caps


def top_per_group(groups: torch.Tensor, scores: torch.Tensor, caps: torch.Tensor) -> torch.Tensor:
    """Positions to keep: the `caps[g]` best-scored of each dense group g, grouped, best first
    (equal scores: the earlier position first).

    groups: [n] int64 in 0..G-1; scores: [n] float32; caps: [G] int64.
    """
    # one integer sort instead of two: the key is (group, descending score) in one int64
    key = (groups << 32) - _ordered(scores)  # _ordered is in [-2^31, 2^31): no carry between fields
    order = torch.argsort(key, stable=True)
    g = groups[order]
    counts = torch.bincount(groups, minlength=len(caps))
    starts = torch.cumsum(counts, 0) - counts  # [G] first position of each group
    rank = torch.arange(len(order), device=groups.device) - starts[g]
    return order[rank < caps[g]]


def _ordered(scores: torch.Tensor) -> torch.Tensor:
    """int64 [n] in the order of the float32 `scores` (-0.0 == 0.0): the IEEE bits as a signed
    int, with the magnitude bits of negatives flipped."""
    bits = (scores.to(torch.float32) + 0.0).view(torch.int32).to(torch.int64)  # + 0.0 turns -0.0 into 0.0
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


def dense_keys(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted distinct `keys` [G] and each key's index among them [n] (`torch.unique` with
    `return_inverse`, by counting when the keys are small non-negative ints, as group keys are)."""
    if len(keys) and int(keys.min()) >= 0 and int(keys.max()) < 4 * len(keys) + 1024:
        present = torch.bincount(keys) > 0  # [max + 1]
        index = torch.cumsum(present, 0) - 1  # dense index of each present key
        return present.nonzero().flatten(), index[keys]
    return torch.unique(keys, sorted=True, return_inverse=True)


def not_in(ids: torch.Tensor, stored: torch.Tensor, n: int) -> torch.Tensor:
    """Mask [len(ids)]: which `ids` are not in `stored` (both ids in 0..n-1): one scatter and one
    gather into a [n] bool mask, no sort."""
    seen = torch.zeros(n, dtype=torch.bool, device=ids.device)
    seen[stored] = True
    return ~seen[ids]


class Store:
    """Tensors of the stored samples, all of the same length, on the ids' device."""

    def __init__(self, device: torch.device | str | None = None):
        z = torch.empty(0, dtype=torch.int64, device=device)
        self.ids, self.tasks, self.exps, self.groups = z, z.clone(), z.clone(), z.clone()
        self.scores = torch.empty(0, dtype=torch.float32, device=device)
        self.extras: dict[str, torch.Tensor] = {}
        self.pool: Pool | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def dataset(self, positions: torch.Tensor | None = None) -> StreamDataset:
        if positions is None:
            return StreamDataset(self.pool, self.ids, self.tasks)
        return StreamDataset(self.pool, self.ids[positions], self.tasks[positions])

    def append(
        self,
        data: StreamDataset,
        exp: int,
        groups: torch.Tensor,
        scores: torch.Tensor,
        extras: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Add the samples of `data` not stored already (a stored sample keeps its score)."""
        if len(data) and self.pool is None:
            self.pool = data.pool
        if len(data) and data.pool is not self.pool:
            raise ValueError("a buffer holds samples of one stream (one pool) only")
        if len(self.ids) and self.ids.device != data.ids.device:
            self.to(data.ids.device)
        if not len(self.ids):
            new = torch.ones_like(data.ids, dtype=torch.bool)
        elif self.pool is not None:
            new = not_in(data.ids, self.ids, len(self.pool))
        else:
            new = ~torch.isin(data.ids, self.ids)
        extras = extras or {}
        if set(extras) != set(self.extras) and len(self.ids):
            raise ValueError(f"extras {sorted(extras)} differ from the stored {sorted(self.extras)}")
        n = int(new.sum())
        self.ids = torch.cat([self.ids, data.ids[new]])
        self.tasks = torch.cat([self.tasks, data.tasks[new]])
        self.exps = torch.cat([self.exps, torch.full((n,), exp, dtype=torch.int64, device=self.ids.device)])
        self.groups = torch.cat([self.groups, groups[new].to(self.ids.device)])
        self.scores = torch.cat([self.scores, scores[new].to(self.ids.device, torch.float32)])
        for k, v in extras.items():
            v = v[new.to(v.device)].detach()
            old = self.extras.get(k)
            self.extras[k] = v if old is None or not len(old) else torch.cat([old, v.to(old.device, old.dtype)])

    def admit(
        self,
        data: StreamDataset,
        exp: int,
        groups: torch.Tensor,
        scores: torch.Tensor,
        extras: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """A full store of one group offered `data`: keep the `len(self)` best of what it holds
        and the samples of `data` it does not hold yet, best first; what `append` then `keep`
        (`top_per_group`) would keep, in the same order, in one sort of fixed size with no host
        sync (every_batch's reservoir, at each step). Samples already held sort last."""
        size, pool = len(self.ids), self.pool
        assert pool is not None and size  # Buffer.full_reservoir says when
        new = not_in(data.ids, self.ids, len(pool))  # [b]
        scores = scores.to(self.ids.device, torch.float32)
        held = (~new).to(torch.int64) << 40  # after every candidate: _ordered's range is 32 bits
        key = torch.cat([-_ordered(self.scores), held - _ordered(scores)])
        keep = torch.argsort(key, stable=True)[:size]  # equal scores: the earlier position first, as top_per_group
        exps = torch.full_like(data.ids, exp)
        for name, tail in (
            ("ids", data.ids),
            ("tasks", data.tasks),
            ("exps", exps),
            ("groups", groups),
            ("scores", scores),
        ):
            setattr(self, name, torch.cat([getattr(self, name), tail.to(self.ids.device)])[keep])
        for k, v in (extras or {}).items():
            old = self.extras[k]
            self.extras[k] = torch.cat([old, v.detach().to(old.device, old.dtype)])[keep.to(old.device)]

    def keep(self, positions: torch.Tensor) -> None:
        for f in FIELDS:
            setattr(self, f, getattr(self, f)[positions])
        self.extras = {k: v[positions.to(v.device)] for k, v in self.extras.items()}

    def group_keys(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Sorted distinct group keys [G] and each sample's dense group index [n]."""
        return dense_keys(self.groups)

    def to(self, device: torch.device | str) -> Store:
        for f in FIELDS:
            setattr(self, f, getattr(self, f).to(device))
        self.extras = {k: v.to(device) for k, v in self.extras.items()}
        return self
