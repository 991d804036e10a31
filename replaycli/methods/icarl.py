"""iCaRL (Rebuffi et al., CVPR 2017): herding exemplars, sigmoid BCE with distillation on the old
classes, and classification by the nearest mean of exemplars."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from replaycli.data.dataset import StreamDataset
from replaycli.methods.base import Batch, Memory, Method, frozen_copy, logits_of


def normalized_features(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's `features` of `x`, flattened and L2-normalised [B, d] (the paper's phi)."""
    features: torch.nn.Module = model.features  # type: ignore[assignment]  # every model of replaycli has one
    return F.normalize(features(x).flatten(1), dim=1)


def class_means(features: torch.Tensor, y: torch.Tensor, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each class's mean of `features` [n, d], normalised again [n_classes, d], and which classes
    have any sample [n_classes] (the others' rows are 0)."""
    counts = torch.bincount(y, minlength=n_classes)  # [C]
    sums = torch.zeros(n_classes, features.shape[1], dtype=features.dtype, device=features.device).index_add_(
        0, y, features
    )
    return F.normalize(sums / counts.clamp(min=1).unsqueeze(1), dim=1), counts > 0


class ICaRL(Method):
    """Training: the current batch joined with memory samples (the loader joins them, as the
    paper trains on the new data and the exemplars together); binary cross-entropy with logits over
    the classes seen so far, whose targets are the one-hot labels for the classes new in this
    experience and the previous model's sigmoid outputs for the older ones (distillation).
    Exemplars: the class-balanced buffer with herding selection (the preset). Evaluation: the
    nearest mean of exemplars, on L2-normalised features of the model's `features` body.

    As the paper: features and means normalised (Mammoth's icarl does not normalise). A fixed
    memory is `buffer.max_size=K`; a growing one, m per class, is `buffer.adaptive_size=false
    buffer.total_num_classes=C buffer.max_size=m*C`. The paper's flipped-image means are left out.
    """

    protocols = ("after_experience",)  # the paper's class-incremental batches: the memory changes between experiences
    joins_memory = True
    memory_groupby = "class"  # one set of exemplars per class: the class means

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, mask: torch.Tensor | None = None):
        super().__init__(model, optimizer, mask)
        self.old_model: torch.nn.Module | None = None  # the model as the previous experience left it
        self.old = torch.zeros(0, dtype=torch.bool)  # [C] classes seen before this experience
        self.seen = torch.zeros(0, dtype=torch.bool)  # [C] classes seen so far
        self.has_old = False
        self.means: torch.Tensor | None = None  # [C, d] the exemplars' class means; None: the model's logits
        self.has_mean = torch.zeros(0, dtype=torch.bool)  # [C]

    def begin_experience(self, experience: int, data: StreamDataset) -> StreamDataset:
        self.old = self.seen.clone()
        self.has_old = bool(self.old.any())  # fixed for the experience: read once, not synced every step
        return data

    def loss(self, out: torch.Tensor, targets: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Mean BCE-with-logits over the seen classes (and, under task-IL, the sample's task's)."""
        cols = self.seen.unsqueeze(0).expand_as(out)
        if self.mask is not None:
            cols = cols & self.mask[t]
        return F.binary_cross_entropy_with_logits(out[cols], targets[cols])

    def step(self, batch: Batch, memory: Memory | None) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(batch.x)  # [B, C]
        if len(self.seen) != out.shape[1]:
            self.seen = torch.zeros(out.shape[1], dtype=torch.bool, device=out.device)
            self.old = self.seen.clone()
        self.seen = self.seen.to(out.device).index_fill(0, batch.y, True)
        targets = F.one_hot(batch.y, out.shape[1]).to(out.dtype)  # [B, C]
        if self.old_model is not None and self.has_old:
            with torch.no_grad():
                previous = torch.sigmoid(self.old_model(batch.x))
            old = self.old.to(out.device)
            targets = torch.where(old.unsqueeze(0), previous, targets)
        return self.loss(out, targets, batch.t), out

    @torch.no_grad()
    def end_experience(self, experience: int, memory: Memory | None) -> None:
        self.old_model = frozen_copy(self.model)
        if memory is None or not len(memory.buffer):
            self.means = None
            return
        data = memory.buffer.buffer
        feats = logits_of(self.model, data, 256, fn=lambda x: normalized_features(self.model, x))
        n_classes = logits_of(self.model, data.subset(torch.arange(1)), 1).shape[1]  # the logits' width
        self.means, self.has_mean = class_means(feats, data.y.to(feats.device), n_classes)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """-(squared distance) of each sample's normalised features to each class mean [B, C];
        classes without exemplars -inf."""
        if self.means is None:
            return self.model(x)
        d = torch.cdist(normalized_features(self.model, x), self.means).pow(2)
        return (-d).masked_fill(~self.has_mean.to(d.device), float("-inf"))
