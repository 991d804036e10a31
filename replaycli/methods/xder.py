"""X-DER (Boschini et al., TPAMI 2022): DER++ whose stored logits are updated with the future."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from replaycli.data import StreamDataset
from replaycli.errors import number
from replaycli.methods.base import Batch, Memory, Method
from replaycli.run.loop import logits_of
from replaycli.scenario import masked


def transplant(stored: torch.Tensor, new: torch.Tensor, gt: torch.Tensor, cols: torch.Tensor, gamma: float) -> torch.Tensor:
    """X-DER's logit update: `stored` [n, C] with its columns `cols` [C] (bool) replaced by those of
    `new` [n, C], each row's transplanted part scaled by `gamma * stored[gt] / max(transplanted)`
    where its maximum exceeds the stored ground-truth logit (so that the old answer stays the top)."""
    part = new[:, cols]  # [n, k]
    gt_value = stored[torch.arange(len(gt), device=gt.device), gt]  # [n]
    top = part.max(1).values
    scale = torch.where(top > gt_value, gamma * gt_value / top, torch.ones_like(top))
    out = stored.clone()
    out[:, cols] = part * scale.unsqueeze(1)
    return out


def hinge(bad: torch.Tensor, good: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean of `bad + margin - good` over the rows where it is positive (0 when none is)."""
    gap = bad + margin - good
    return gap[gap > 0].mean() if (gap > 0).any() else gap.new_zeros(())


class XDER(Method):
    """The losses, as the reference code: cross-entropy of the current batch over the classes of
    this experience only; `alpha * MSE` of a memory batch's logits against the stored ones (all
    classes); `beta *` cross-entropy of a second memory batch over the classes of the past
    experiences; and `eta *` two margin (`m`) constraints: on the current batch, the largest
    softmax of a past class stays `m` below that of its own experience's classes, and (while classes
    are still to come) the largest logit of a future class stays `m` below the largest of the
    sample's own experience, on the current batch and both memory batches.

    The memory (class-balanced, filled once an experience is trained) keeps logits, which are
    updated once the experience is trained: the new exemplars' past-class logits, and the older
    exemplars' logits of this experience's and the future classes (from the trained model), both by
    `transplant` with `gamma`.

    Differs from the reference code: the SupCon consistency loss on the future heads (the paper's
    "future preparation" by contrastive learning on strong augmentations, `lambd`) is left out,
    as is the online update of replayed samples' logits during training (the update at each
    experience's end is kept).
    """

    protocols = ("after_experience",)  # the memory is rebuilt between experiences, as the reference code
    stores_logits = True
    memory_groupby = "class"

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, mask: torch.Tensor | None = None,
                 alpha: float = 0.93, beta: float = 0.35, gamma: float = 0.85, eta: float = 1.0, m: float = 0.3):
        super().__init__(model, optimizer, mask)
        self.alpha, self.beta = number("alpha", alpha), number("beta", beta)
        self.gamma, self.eta, self.m = number("gamma", gamma), number("eta", eta), number("m", m)
        self.exp_of = torch.zeros(0, dtype=torch.int64)  # [C] the experience a class was first seen in; -1: not yet
        self.current = 0

    def begin_experience(self, experience: int, data: StreamDataset) -> StreamDataset:
        self.current = experience
        if len(data):
            classes = torch.unique(data.y).cpu()
            n = max(len(self.exp_of), int(classes.max()) + 1)
            self.exp_of = torch.cat([self.exp_of, torch.full((n - len(self.exp_of),), -1, dtype=torch.int64)])
            new = classes[self.exp_of[classes] < 0]
            self.exp_of[new] = experience
        return data

    def experience_of(self, n_classes: int, device: torch.device) -> torch.Tensor:
        """[C] the experience each class was first seen in, -1 for those not seen yet."""
        pad = torch.full((n_classes - len(self.exp_of),), -1, dtype=torch.int64)
        return torch.cat([self.exp_of, pad]).to(device)

    def heads(self, n_classes: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[C] bool: the classes of past experiences, of this one, and the future ones."""
        e = self.experience_of(n_classes, device)
        return (e >= 0) & (e < self.current), e == self.current, e < 0

    def own_head(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each row's largest logit among the classes of its label's experience [B]."""
        e = self.experience_of(out.shape[1], out.device)
        same = e.unsqueeze(0) == e[y].unsqueeze(1)  # [B, C]
        return out.masked_fill(~same, float("-inf")).max(1).values

    def step(self, batch: Batch, memory: Memory | None) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(batch.x)  # [B, C]
        past, present, future = self.heads(out.shape[1], out.device)
        logits = masked(out, batch.t, self.mask)
        loss = F.cross_entropy(logits.masked_fill(~present, float("-inf")), batch.y)
        replayed = [(out, batch.y)]
        if memory is not None:
            mx1, my1, _, extras = memory.sample()
            out1 = self.model(mx1)
            loss = loss + self.alpha * F.mse_loss(out1, extras["logits"])
            mx2, my2, mt2, _ = memory.sample()
            out2 = self.model(mx2)
            if past.any():
                loss = loss + self.beta * F.cross_entropy(masked(out2, mt2, self.mask).masked_fill(~past, float("-inf")), my2)
            replayed += [(out1, my1), (out2, my2)]
        if past.any():  # past constraint: softmax over the seen classes, on the current batch
            p = F.softmax(out.masked_fill(~(past | present), float("-inf")), 1)
            bad = p.masked_fill(~past, 0).max(1).values.detach()
            loss = loss + self.eta * hinge(bad, p.masked_fill(~present, 0).max(1).values, self.m)
        if future.any():  # future constraint: the future classes' logits below the sample's own experience's
            o, y = torch.cat([r[0] for r in replayed]), torch.cat([r[1] for r in replayed])
            bad = o.masked_fill(~future, float("-inf")).max(1).values
            loss = loss + self.eta * hinge(bad, self.own_head(o, y), self.m)
        return loss, out

    @torch.no_grad()
    def end_experience(self, experience: int, memory: Memory | None) -> None:
        if memory is None or not len(memory.buffer):
            return
        store = memory.buffer.store
        stored, y = store.extras["logits"], memory.buffer.buffer.y
        past, present, future = self.heads(stored.shape[1], stored.device)
        new = store.exps == experience  # this experience's exemplars: their past classes' logits tempered
        if past.any() and new.any():
            stored[new] = transplant(stored[new], stored[new], y[new], past, self.gamma)
        old = ~new  # older exemplars: this experience's and the future classes from the trained model
        if old.any():
            now = logits_of(self.model, memory.buffer.buffer.subset(old.nonzero().flatten()), 256).to(stored.device)
            stored[old] = transplant(stored[old], now, y[old], present | future, self.gamma)
        store.extras["logits"] = stored

    def state_dict(self) -> dict[str, Any]:
        return {"exp_of": self.exp_of.clone(), "current": torch.tensor(self.current)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.exp_of, self.current = state["exp_of"].clone(), int(state["current"])
