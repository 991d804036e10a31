"""GSS-greedy (Aljundi et al., NeurIPS 2019): gradient-based sample selection as a storage policy.

A stored sample's score is the largest cosine similarity (plus 1, so in [0, 2]) of its loss
gradient to those of a few other stored samples: low means its gradient points where few others
do. A full memory replaces a stored sample, drawn in proportion to its score, by an incoming one
with probability `score / (score + incoming score)`, and only when the incoming batch's gradient
conflicts with every sampled one (batch score < 1), so the memory drifts towards diverse gradients.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from replaycli.data.dataset import StreamDataset
from replaycli.errors import integer
from replaycli.memory.buffer import Buffer
from replaycli.methods.base import per_sample_grads


class GradientSimilarity:
    """selection=gss: the loss gradients [n, P] buffer=gss scores samples by (no ranking of its
    own: `for_buffer` makes every other buffer refuse it when built)."""

    online = True
    name = "gss"  # the option, in messages
    for_buffer: type | None = None  # the one buffer class it scores for (GSSBuffer, set below)

    def __init__(self, model: torch.nn.Module, generator: torch.Generator | None = None):
        self.model = model

    def grads(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each sample's cross-entropy gradient w.r.t. the trainable parameters, flattened [n, P]
        (evaluation mode: batch-norm statistics as they stand, no dropout)."""
        g = per_sample_grads(self.model, F.cross_entropy, x, y)
        return torch.cat([v.flatten(1) for v in g.values()], 1)


def max_similarity(g: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """1 + the largest cosine similarity of each row of `g` [n, P] to the rows of `memory` [m, P]: [n]."""
    return 1 + (F.normalize(g, dim=1) @ F.normalize(memory, dim=1).T).max(1).values


class GSSBuffer(Buffer):
    """GSS-greedy over the whole stream (no groups). Samples are offered `chunk` at a time (a
    mini-batch under every_batch, the experience in chunks under after_experience), each chunk
    scored against `n_memory` stored samples drawn at random. Scores are kept as the buffer extra
    `similarity`.

    As the reference code (Mammoth's gss_buffer): while there is room a chunk is stored with its
    batch score (0.1 for the very first); a full memory replaces only when the batch score is
    below 1. As Aljundi's original code, the stored samples a chunk may replace are drawn at once,
    without replacement (the reference draws one per incoming sample). Gradients are recomputed
    each time (the reference caches stored samples' gradients, which go stale as the model trains).
    """

    name = "gss"  # the option, in messages
    scored_by = GradientSimilarity  # the one selection it scores by

    def __init__(
        self,
        max_size: int,
        selection_strategy: Any = None,
        generator: torch.Generator | None = None,
        n_memory: int = 10,
        chunk: int = 10,
    ):
        super().__init__(max_size, selection_strategy=selection_strategy, generator=generator)
        self.selection_strategy = None  # its own rule decides what is kept (`offer`), not the base's ranking
        self.scorer = selection_strategy
        self.n_memory = integer("n_memory", n_memory)
        self.chunk = integer("chunk", chunk)

    def add(self, data: StreamDataset, experience: int = 0, extras: dict[str, torch.Tensor] | None = None) -> None:
        for s in range(0, len(data), self.chunk):
            pos = torch.arange(s, min(s + self.chunk, len(data)), device=data.ids.device)
            self.offer(data.subset(pos), experience, {k: v[pos.to(v.device)] for k, v in (extras or {}).items()})

    def offer(self, part: StreamDataset, experience: int, extras: dict[str, torch.Tensor]) -> None:
        """One chunk: fill while there is room, then replace by the GSS-greedy rule."""
        store = self.store
        x, y, _ = part.eval().batch(torch.arange(len(part), device=part.ids.device))
        g = self.scorer.grads(x, y)  # [n, P]
        memory = None
        if len(store):
            pick = torch.randperm(len(store), generator=self.generator)[: self.n_memory].to(store.ids.device)
            mx, my, _ = store.dataset(pick).eval().batch(torch.arange(len(pick), device=store.ids.device))
            memory = self.scorer.grads(mx, my)  # [m, P]
        batch_score = float(max_similarity(g.mean(0, keepdim=True), memory)[0]) if memory is not None else 0.1
        room = max(self.max_size - len(store), 0)
        if room:
            fill = torch.arange(min(room, len(part)), device=part.ids.device)
            self.append(part.subset(fill), experience, extras, fill, torch.full((len(fill),), batch_score))
        rest = torch.arange(min(room, len(part)), len(part), device=part.ids.device)
        if not len(rest) or memory is None or batch_score >= 1 or not len(store):
            return
        single = max_similarity(g[rest], memory).cpu()  # [r] each incoming sample's own score
        stored = store.extras["similarity"].cpu()
        k = min(len(rest), len(stored))
        victims = torch.multinomial(stored / stored.sum(), k, replacement=False, generator=self.generator)  # [k]
        swap = torch.rand(k, generator=self.generator) < stored[victims] / (stored[victims] + single[:k])
        if swap.any():
            keep = torch.ones(len(store), dtype=torch.bool)
            keep[victims[swap]] = False
            store.keep(keep.nonzero().flatten().to(store.ids.device))
            chosen = rest[:k][swap.to(rest.device)]
            self.append(part.subset(chosen), experience, extras, chosen, single[:k][swap])

    def append(
        self,
        part: StreamDataset,
        experience: int,
        extras: dict[str, torch.Tensor],
        pos: torch.Tensor,
        similarity: torch.Tensor,
    ) -> None:
        rows = {k: v[pos.to(v.device)] for k, v in extras.items()}
        rows["similarity"] = similarity.to(part.ids.device, torch.float32)
        keys = torch.rand(len(part), generator=self.generator).to(part.ids.device)  # resize() truncates at random
        self.store.append(part, experience, torch.zeros_like(part.ids), keys, rows)


GradientSimilarity.for_buffer = GSSBuffer  # declared after both exist
