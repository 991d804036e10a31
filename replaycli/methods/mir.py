"""MIR (Aljundi et al., NeurIPS 2019): maximally interfered retrieval."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from replaycli.errors import integer
from replaycli.methods.base import Batch, Memory, Method
from replaycli.scenario import masked


class MIR(Method):
    """Each step: draw `n_candidates` stored samples, take a virtual SGD step on the current batch
    (the optimizer's learning rate), and replay the `mem_mb_size` candidates whose loss that step
    would raise most; the loss is CE on the current batch joined with them. Online in the paper
    (every_batch, a reservoir); after_experience works as well (the memory is then the past only).

    As the reference code: the virtual step is plain SGD whatever the optimizer (it only ranks the
    candidates), the ranking uses the candidates' loss before and after it, and the chosen samples
    are trained on with the real step. Batch norm statistics are those of the current mode.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        mask: torch.Tensor | None = None,
        n_candidates: int = 50,
    ):
        super().__init__(model, optimizer, mask)
        self.n_candidates = integer("n_candidates", n_candidates)

    def interference(self, batch: Batch, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """[n] each candidate's loss after a virtual SGD step on `batch` minus its loss before."""
        names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        params = [p for p in self.model.parameters() if p.requires_grad]
        grads = torch.autograd.grad(self.ce(self.model(batch.x), batch.y, batch.t), params)
        lr = self.optimizer.param_groups[0]["lr"]
        with torch.no_grad():
            before = F.cross_entropy(masked(self.model(x), t, self.mask), y, reduction="none")
            stepped = {n: p - lr * g for n, p, g in zip(names, params, grads, strict=True)}
            after = F.cross_entropy(
                masked(functional_call(self.model, stepped, (x,)), t, self.mask), y, reduction="none"
            )
        return after - before

    def step(self, batch: Batch, memory: Memory | None) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, t = batch.x, batch.y, batch.t
        if memory is not None:
            cx, cy, ct, _ = memory.buffer.sample(self.n_candidates, memory.generator)
            chosen = self.interference(batch, cx, cy, ct).topk(min(memory.batch_size, len(cy))).indices
            x, y, t = torch.cat([x, cx[chosen]]), torch.cat([y, cy[chosen]]), torch.cat([t, ct[chosen]])
        out = self.model(x)
        return self.ce(out, y, t), out[: len(batch.x)]
