"""X-DER (Boschini et al., TPAMI 2022): DER++ whose stored logits are updated with the future."""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F

from replaycli.data.dataset import StreamDataset
from replaycli.data.transforms import CropFlip
from replaycli.errors import flag, integer, number
from replaycli.methods.base import Batch, Memory, Method, logits_of, require_images
from replaycli.scenario import masked


def transplant(
    stored: torch.Tensor, new: torch.Tensor, gt: torch.Tensor, cols: torch.Tensor, gamma: float
) -> torch.Tensor:
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


def supcon(features: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020), summed over anchors: `features` [N, V, d]
    (V views of N samples, L2-normalised), `labels` [N]. Every view is an anchor; its positives are
    the other views with its label."""
    n, v = features.shape[:2]
    z = features.transpose(0, 1).reshape(n * v, -1)  # [V*N, d] view-major, as the reference code
    lab = labels.repeat(v)
    logits = z @ z.T / temperature
    logits = logits - logits.max(1, keepdim=True).values.detach()
    self_mask = torch.eye(n * v, dtype=torch.bool, device=z.device)
    positive = (lab.unsqueeze(0) == lab.unsqueeze(1)) & ~self_mask
    log_prob = logits - torch.logsumexp(logits.masked_fill(self_mask, float("-inf")), 1, keepdim=True)
    mean_pos = (log_prob * positive).sum(1) / positive.sum(1).clamp(min=1)
    return -mean_pos.sum()


def first_occurrences(pos: torch.Tensor) -> torch.Tensor:
    """bool [n]: whether each entry of `pos` is the first with its value (duplicates across two
    memory batches are updated once)."""
    order = torch.argsort(pos, stable=True)
    first = torch.ones_like(pos, dtype=torch.bool)
    sorted_pos = pos[order]
    first[order[1:]] = sorted_pos[1:] != sorted_pos[:-1]
    return first


class XDER(Method):
    """The losses, as the reference code: cross-entropy of the current batch over the classes of
    this experience only; `alpha * MSE` of a memory batch's logits against the stored ones (all
    classes); `beta *` cross-entropy of a second memory batch over the classes of the past
    experiences; and `eta *` two margin (`m`) constraints: on the current batch, the largest
    softmax of a past class stays `m` below that of its own experience's classes, and (while classes
    are still to come) the largest logit of a future class stays `m` below the largest of the
    sample's own experience, on the current batch and both memory batches.

    Future preparation: `lambd *` a supervised contrastive loss (temperature `simclr_temp`) on the
    future classes' logits, split into heads of as many classes as this experience has, of
    `simclr_num_aug` augmented views (random crop `padding`, flip) of up to `simclr_batch_size`
    current and as many memory samples.

    The memory (class-balanced, filled once an experience is trained) keeps logits, updated with
    `transplant` (`gamma`): during training, a replayed exemplar of a past experience takes the
    present and future classes' logits of its forward pass, with probability 1 / (times replayed
    this experience); once the experience is trained, the new exemplars' past-class logits are
    tempered and the older exemplars take this experience's and the future classes' logits of the
    trained model.

    Differs from the reference code: future heads are the unseen classes in id order cut into
    chunks of this experience's size (the reference knows the stream's fixed heads); the views are
    our batched crop and flip (the reference's strong augmentation adds colour jitter and
    grayscale); batch-norm statistics are updated by the contrastive forward pass (the reference
    freezes them there).
    """

    protocols = ("after_experience",)  # the memory is rebuilt between experiences, as the reference code
    stores_logits = True
    memory_groupby = "class"

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        mask: torch.Tensor | None = None,
        alpha: float = 0.93,
        beta: float = 0.35,
        gamma: float = 0.85,
        eta: float = 1.0,
        m: float = 0.3,
        lambd: float = 0.1,
        simclr_temp: float = 5.0,
        simclr_batch_size: int = 64,
        simclr_num_aug: int = 2,
        padding: int = 2,
        flip: bool = False,
        online_update: bool = True,
    ):
        super().__init__(model, optimizer, mask)
        self.alpha, self.beta = number("alpha", alpha), number("beta", beta)
        self.gamma, self.eta, self.m = number("gamma", gamma), number("eta", eta), number("m", m)
        self.lambd, self.simclr_temp = number("lambd", lambd), number("simclr_temp", simclr_temp)
        self.simclr_batch_size, self.simclr_num_aug = (
            integer("simclr_batch_size", simclr_batch_size),
            integer("simclr_num_aug", simclr_num_aug),
        )
        self.augment = CropFlip(integer("padding", padding, 0), flag("flip", flip))
        self.online_update = flag("online_update", online_update)
        self.exp_of = torch.zeros(0, dtype=torch.int64)  # [C] the experience a class was first seen in; -1: not yet
        self.current = 0
        self.replays = torch.zeros(0)  # [buffer size] times each stored sample was replayed this experience
        self._heads: Any = None  # (key, (past, present, future), (any past, any future)): see heads()

    def begin_experience(self, experience: int, data: StreamDataset) -> StreamDataset:
        self.current = experience
        self.replays = torch.zeros(0)  # the memory does not change during an experience (after_experience)
        self._heads = None  # the classes' experiences change here only
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
        """[C] bool: the classes of past experiences, of this one, and the future ones (built once
        per experience and device, with whether any past and any future class exists)."""
        key = (n_classes, str(device), self.current)
        if self._heads is None or self._heads[0] != key:
            e = self.experience_of(n_classes, device)
            masks = ((e >= 0) & (e < self.current), e == self.current, e < 0)
            self._heads = (key, masks, (bool(masks[0].any()), bool(masks[2].any())))
        return self._heads[1]

    def has_past_future(self) -> tuple[bool, bool]:
        """Whether this experience has past classes, and future ones (after `heads`)."""
        return self._heads[2]

    def own_head(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each row's largest logit among the classes of its label's experience [B]."""
        e = self.experience_of(out.shape[1], out.device)
        same = e.unsqueeze(0) == e[y].unsqueeze(1)  # [B, C]
        return out.masked_fill(~same, float("-inf")).max(1).values

    def step(self, batch: Batch, memory: Memory | None) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(batch.x)  # [B, C]
        past, present, future = self.heads(out.shape[1], out.device)
        any_past, any_future = self.has_past_future()
        logits = masked(out, batch.t, self.mask)
        loss = F.cross_entropy(logits.masked_fill(~present, float("-inf")), batch.y)
        replayed = [(out, batch.y)]
        if memory is not None:
            p1, mx1, my1, _, ex1 = memory.sample_indexed()
            out1 = self.model(mx1)
            loss = loss + self.alpha * F.mse_loss(out1, ex1["logits"])
            p2, mx2, my2, mt2, ex2 = memory.sample_indexed()
            out2 = self.model(mx2)
            if any_past:
                loss = loss + self.beta * F.cross_entropy(
                    masked(out2, mt2, self.mask).masked_fill(~past, float("-inf")), my2
                )
            replayed += [(out1, my1), (out2, my2)]
            if self.online_update:
                self.update_replayed(
                    memory,
                    torch.cat([p1, p2]),
                    torch.cat([out1, out2]).detach(),
                    torch.cat([my1, my2]),
                    torch.cat([ex1["logits"], ex2["logits"]]),
                    present | future,
                )
        if any_future and self.lambd > 0:
            loss = loss + self.lambd * self.future_preparation(batch, memory, present, future)
        if any_past:  # past constraint: softmax over the seen classes, on the current batch
            p = F.softmax(out.masked_fill(~(past | present), float("-inf")), 1)
            bad = p.masked_fill(~past, 0).max(1).values.detach()
            loss = loss + self.eta * hinge(bad, p.masked_fill(~present, 0).max(1).values, self.m)
        if any_future:  # future constraint: the future classes' logits below the sample's own experience's
            o, y = torch.cat([r[0] for r in replayed]), torch.cat([r[1] for r in replayed])
            bad = o.masked_fill(~future, float("-inf")).max(1).values
            loss = loss + self.eta * hinge(bad, self.own_head(o, y), self.m)
        return loss, out

    @torch.no_grad()
    def update_replayed(
        self,
        memory: Memory,
        pos: torch.Tensor,
        out: torch.Tensor,
        y: torch.Tensor,
        stored: torch.Tensor,
        cols: torch.Tensor,
    ) -> None:
        """The reference's online update: each replayed exemplar of a past experience (once per
        step) takes this step's logits of `cols` with probability 1 / (times replayed so far)."""
        store = memory.buffer.store
        if len(self.replays) != len(store):
            self.replays = torch.zeros(len(store), device=pos.device)
        self.replays = self.replays.to(pos.device)
        e = self.experience_of(out.shape[1], out.device)
        take = first_occurrences(pos) & (e[y] < self.current) & (e[y] >= 0)
        self.replays.index_add_(0, pos[take], torch.ones(int(take.sum()), device=pos.device))
        draw = torch.rand(len(pos), generator=memory.generator).to(pos.device)
        take = take & (draw * self.replays[pos] < 1)
        if take.any():
            store.extras["logits"][pos[take]] = transplant(stored[take], out[take], y[take], cols, self.gamma)

    def check_input(self, sample_shape: tuple[int, ...]) -> None:
        if self.lambd > 0:  # the SupCon future preparation crops and flips views
            require_images(sample_shape, "strategy=xder's future preparation augments", "strategy.lambd=0")

    def future_preparation(
        self, batch: Batch, memory: Memory | None, present: torch.Tensor, future: torch.Tensor
    ) -> torch.Tensor:
        """SupCon on the future classes' logits of augmented views, per future head, averaged."""
        x, y = batch.x[: self.simclr_batch_size], batch.y[: self.simclr_batch_size]
        if memory is not None:
            mx, my, _, _ = memory.buffer.sample(self.simclr_batch_size, memory.generator)
            x, y = torch.cat([mx, x]), torch.cat([my, y])
        self.check_input(tuple(x.shape[1:]))  # checked when the run is built; here for the Python API
        views = self.augment(
            x.repeat_interleave(self.simclr_num_aug, 0), memory.generator if memory is not None else None
        )
        out = self.model(views).view(len(x), self.simclr_num_aug, -1)  # [N, V, C]
        cols = future.nonzero().flatten()
        heads = cols.split(max(int(present.sum()), 1))
        total = cast(torch.Tensor, sum(supcon(F.normalize(out[:, :, h], dim=2), y, self.simclr_temp) for h in heads))
        return total / (len(heads) * len(x))

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
