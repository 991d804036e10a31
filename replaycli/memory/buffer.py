"""The storage policy: which samples the rehearsal memory keeps, as ids into the stream's pool.

One algorithm for every policy: add the new candidates, split `max_size` over the groups, keep
the best-scored of each group. Policies differ only in the group key (`groupby`: none, class,
task, experience) and the score: a random key drawn once per sample (no selection, or random
selection), which makes every group a reservoir sample, or a selection strategy's ranking of
the group. A group is always ordered best first, so shrinking it is truncation.

Shares: by default (`adaptive_size`) `max_size` is split over the groups seen so far, and a group
with fewer samples than its share keeps them all and lends the rest to the others (Avalanche
leaves it empty), so the buffer holds min(max_size, samples seen). With `adaptive_size=False`
each of `total_num_groups` groups has a fixed share, indexed by the group key (class id or
experience index, in 0..total_num_groups-1; the remainder goes to the lowest keys), never lent.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

import torch

from replaycli.data.dataset import StreamDataset, empty_dataset
from replaycli.errors import ConfigError, choice, flag, integer
from replaycli.memory.store import Store, fill_lengths, group_lengths, top_per_group

GROUPBY = (None, "class", "task", "experience")


class Selection(Protocol):
    """How a group's candidates are ranked (replaycli.selection)."""

    online: bool  # True: `scores` each sample once, on arrival (batch-by-batch insertion is exact);
    #               False: `rank` ranks a whole group anew whenever it takes new samples
    strategy: Any  # Avalanche's: the strategy whose model `make_sorted_indices` reads (set by `update`)

    def scores(self, data: StreamDataset) -> torch.Tensor:
        """A persistent score per new sample [n], higher kept first (online selections)."""

    def rank(self, data: StreamDataset, limit: int | None = None) -> torch.Tensor:
        """Positions of `data`, best first; only the first `limit` need be exact."""


class SortedIndices:
    """A selection that only defines Avalanche's `make_sorted_indices(strategy, data)`, with no
    base class: it ranks whole groups (`strategy` is what `update(strategy)` was given last)."""

    online = False

    def __init__(self, selection: Any):
        if not callable(getattr(selection, "make_sorted_indices", None)):
            raise ConfigError(
                f"selection {type(selection).__name__} has no rank(data, limit), no make_sorted_indices(strategy, "
                "data) and is not online (scores(data)); allowed: a class with one of them (replaycli.selection)"
            )
        self.selection, self.strategy = selection, None

    def rank(self, data: StreamDataset, limit: int | None = None) -> torch.Tensor:
        return torch.as_tensor(self.selection.make_sorted_indices(self.strategy, data), dtype=torch.int64)


class Buffer:
    """A rehearsal memory of at most `max_size` samples; `buffer` is the dataset it holds now.

    `generator` makes the random keys reproducible (None: torch's global RNG); a selection
    strategy brings its own.
    """

    shares_key = "total_num_groups"  # the argument that fixes the shares (ClassBalancedBuffer: total_num_classes)
    scored_by: type | None = None  # the one selection class this policy scores by (GSS-greedy's gradients), None: any

    def __init__(
        self,
        max_size: int,
        groupby: str | None = None,
        selection_strategy: Selection | None = None,
        adaptive_size: bool = True,
        total_num_groups: int | None = None,
        generator: torch.Generator | None = None,
    ):
        self.max_size = integer("max_size", max_size, 0)
        ranks = hasattr(selection_strategy, "rank") or getattr(selection_strategy, "online", False)
        if selection_strategy is not None and not ranks:  # Avalanche's duck-typed selection
            selection_strategy = cast(Selection, SortedIndices(selection_strategy))  # ranks; online is False
        self.refuse_unpaired(selection_strategy)
        choice("groupby", groupby, GROUPBY)
        flag("adaptive_size", adaptive_size)
        if not adaptive_size:  # fixed shares, one per group key
            integer("total_num_groups", total_num_groups)
        self.groupby = groupby
        self.selection_strategy = selection_strategy
        self.adaptive_size = adaptive_size
        self.total_num_groups = total_num_groups
        self.generator = generator
        self.store = Store()

    @property
    def buffer(self) -> StreamDataset:
        return self.store.dataset() if self.store.pool is not None else empty_dataset()

    def __len__(self) -> int:
        return len(self.store)

    def add(self, data: StreamDataset, experience: int = 0, extras: dict[str, torch.Tensor] | None = None) -> None:
        """Offer every sample of `data` (from experience `experience`) to the memory; `extras`
        are per-sample rows to keep with them (e.g. DER's logits [n, C])."""
        groups = self.group_of(data, experience)
        if not self.adaptive_size and len(groups):  # refuse a key out of range before anything is stored
            self.refuse_keys(int(groups.max()) + 1)
        if self.full_reservoir(data, extras):  # every_batch's usual case: one sort, no host sync
            self.store.admit(data, experience, groups, self.new_scores(data), extras)
            return
        self.store.append(data, experience, groups, self.new_scores(data), extras)
        self._select(touched=groups)

    def full_reservoir(self, data: StreamDataset, extras: dict[str, torch.Tensor] | None) -> bool:
        """Whether `add` may take `Store.admit`'s path: a full memory of one group (the base
        grouping and shares, `groupby=None`), scores drawn on arrival, data of its pool and device
        with its extras. Every other case takes the general path, with the same result."""
        store, sel = self.store, self.selection_strategy
        return (
            self.groupby is None
            and self.adaptive_size
            and (sel is None or sel.online)
            and type(self).group_of is Buffer.group_of  # a policy of its own groups or shares: the general path
            and type(self).capacities is Buffer.capacities
            and len(store) == self.max_size > 0
            and data.pool is store.pool
            and data.ids.device == store.ids.device
            and set(extras or {}) == set(store.extras)
        )

    def resize(self, strategy: Any, new_size: int) -> None:
        """Change `max_size`; when shrinking, each group drops its last-ranked samples."""
        self.max_size = integer("new_size", new_size, 0)
        self._select(touched=None)

    def groups(self) -> dict[int, tuple[StreamDataset, int]]:
        """Group key -> (that group's data, best first; its capacity)."""
        if not len(self.store):
            return {}
        keys, dense = self.store.group_keys()
        caps = self.capacities(torch.bincount(dense).tolist())
        return {
            int(k): (self.store.dataset((dense == i).nonzero().flatten()), caps[i]) for i, k in enumerate(keys.tolist())
        }

    def sample(
        self, n: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """`n` stored samples drawn uniformly without replacement, with training transforms:
        (x, y, t, extras), the extras (e.g. `logits` [n, C]) row-aligned with x."""
        _, x, y, t, extras = self.sample_indexed(n, generator)
        return x, y, t, extras

    def sample_indexed(
        self, n: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """`sample`, led by the drawn samples' positions in the store [n] (to update their extras)."""
        store = self.store
        pos = torch.randperm(len(store), generator=generator)[:n].to(store.ids.device)
        x, y, t = store.dataset().train().batch(pos, generator)
        return pos, x, y, t, {k: v[pos] for k, v in store.extras.items()}

    def class_histogram(self, n_classes: int) -> torch.Tensor:
        """Samples per class in the buffer: int64 [n_classes]."""
        return torch.bincount(self.buffer.y.cpu(), minlength=n_classes)

    def refuse_unpaired(self, selection: Any) -> None:
        """A policy that scores by one selection (`scorer`) and a selection made for one policy
        (`for_buffer`) go together, both ways: the one rule of their pairing."""
        needs = self.scored_by
        made_for = getattr(selection, "for_buffer", None)  # a user's selection declares nothing
        if (needs is None or isinstance(selection, needs)) and (made_for is None or isinstance(self, made_for)):
            return
        policy, scorer = made_for or type(self), needs or type(selection)
        pair = f"buffer={getattr(policy, 'name', policy.__name__)} selection={getattr(scorer, 'name', scorer.__name__)}"
        raise ConfigError(
            f"{pair} go together (the buffer scores samples by the selection's gradients); got "
            f"{type(self).__name__} with {type(selection).__name__}; allowed: {pair}, or another buffer with "
            "selection=random|herding|closest_to_center"
        )

    def refuse_keys(self, n_keys: int, prefix: str = "") -> None:
        """Fixed shares (`adaptive_size=False`): each group key 0..n_keys-1 needs a share of its own
        (the one rule, for the stream when the run is built and for every sample added)."""
        if not self.adaptive_size and (self.total_num_groups or 0) < n_keys:
            raise ConfigError(
                f"{prefix}{self.shares_key}={self.total_num_groups} fixes fewer shares than the {n_keys} "
                f"{self.groupby or 'group'} keys; allowed: >= {n_keys}, or {prefix}adaptive_size=true"
            )

    # --- the policy ------------------------------------------------------------------------
    def group_of(self, data: StreamDataset, experience: int) -> torch.Tensor:
        """Group key of each sample of `data` [n]."""
        if self.groupby == "class":
            return data.y.to(data.ids.device)
        if self.groupby == "task":
            return data.tasks
        if self.groupby == "experience":
            return torch.full_like(data.ids, experience)
        return torch.zeros_like(data.ids)

    def capacities(self, sizes: list[int]) -> list[int]:
        """Capacity of each present group (sorted by key) holding `sizes` candidates."""
        if self.adaptive_size:
            return fill_lengths(sizes, self.max_size)
        assert self.total_num_groups is not None  # fixed shares: checked by the constructor
        shares = group_lengths(self.total_num_groups, self.max_size)  # fixed: indexed by the key itself
        keys, _ = self.store.group_keys()
        return [shares[k] for k in keys.tolist()]

    def new_scores(self, data: StreamDataset) -> torch.Tensor:
        """A score per sample of `data` [n], on its arrival: within a group, the higher are kept first."""
        sel = self.selection_strategy
        if sel is None:  # a reservoir: one random key per sample
            return torch.rand(len(data), generator=self.generator).to(data.ids.device)
        if sel.online:  # scored once, on arrival
            return sel.scores(data).to(data.ids.device)
        return torch.zeros(len(data), device=data.ids.device)  # ranked in _rescore

    def _rescore(self, touched: torch.Tensor) -> None:  # touched: the distinct keys [k]
        """Rank every touched group anew (scores of the others stand: they are only truncated)."""
        assert self.selection_strategy is not None  # only ranked groups are rescored
        store = self.store
        for key in touched.tolist():
            pos = (store.groups == key).nonzero().flatten()
            order = torch.as_tensor(
                self.selection_strategy.rank(store.dataset(pos), limit=self.max_size), dtype=torch.int64
            )
            scores = torch.empty(len(pos), dtype=torch.float32, device=store.scores.device)
            scores[order.to(scores.device)] = -torch.arange(len(pos), dtype=torch.float32, device=scores.device)
            store.scores[pos] = scores

    def _select(self, touched: torch.Tensor | None) -> None:
        if not len(self.store):
            return
        if touched is not None and self.selection_strategy is not None and not self.selection_strategy.online:
            self._rescore(torch.unique(touched))  # only ranked groups need the distinct keys (not every_batch's)
        _, dense = self.store.group_keys()
        caps = torch.tensor(self.capacities(torch.bincount(dense).tolist()), dtype=torch.int64, device=dense.device)
        self.store.keep(top_per_group(dense, self.store.scores, caps))
