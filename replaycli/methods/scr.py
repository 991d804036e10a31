"""Supervised Contrastive Replay (Mai et al., CVPR Workshops 2021)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from replaycli.data.transforms import CropFlip
from replaycli.errors import ConfigError, flag, integer, number
from replaycli.methods.base import Batch, Memory, Method, require_images
from replaycli.methods.icarl import class_means, normalized_features
from replaycli.methods.xder import supcon


class SCR(Method):
    """Each step: the current batch joined with a memory batch, each sample with one augmented view
    (random crop with zero padding, and a flip if `flip`), through the model's `features` body and a
    projection head (linear, ReLU, linear to `head_size`, L2-normalised); the loss is the
    supervised contrastive loss (Khosla et al. 2020) at `temperature`, mean over anchors. The
    classifier layer is never trained: the evaluation is the nearest class mean of the memory's
    normalised features, computed at each experience's end (as iCaRL's).

    Differs from the reference code: the augmentation is a batched crop and flip (the paper adds
    colour jitter and grey-scale for colour images); the head's parameters join the optimizer as
    a second parameter group when the method is built."""

    protocols = ("every_batch",)  # online, as the paper

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        mask: torch.Tensor | None = None,
        temperature: float = 0.07,
        head_size: int = 128,
        padding: int = 2,
        flip: bool = False,
    ):
        super().__init__(model, optimizer, mask)
        self.temperature = number("temperature", temperature, minimum=1e-6)
        classifier = getattr(model, "classifier", None)
        if not isinstance(classifier, nn.Linear):
            raise ConfigError(
                f"strategy=scr projects the features the model's linear `classifier` takes; {type(model).__name__} "
                "has none; allowed: model=mlp, cnn or resnet18"
            )
        d, size = classifier.in_features, integer("head_size", head_size)
        device = classifier.weight.device
        self.head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, size)).to(device)
        optimizer.add_param_group({"params": list(self.head.parameters())})
        self.augment = CropFlip(integer("padding", padding, 0), flag("flip", flip))
        self.means: torch.Tensor | None = None
        self.has_mean: torch.Tensor | None = None

    def check_input(self, sample_shape: tuple[int, ...]) -> None:
        require_images(sample_shape, "strategy=scr augments", "strategy=replay")

    def step(self, batch: Batch, memory: Memory | None) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch.x, batch.y
        if memory is not None:
            mx, my, _, _ = memory.sample()
            x, y = torch.cat([x, mx]), torch.cat([y, my])
        g = memory.generator if memory is not None else None
        body: nn.Module = self.model.features  # type: ignore[assignment]  # every model of replaycli has one
        feats = body(torch.cat([x, self.augment(x, g)])).flatten(1)  # [2N, d]: the samples, then their views
        z = F.normalize(self.head(feats), dim=1)
        n = len(x)
        loss = supcon(torch.stack([z[:n], z[n:]], 1), y, self.temperature) / (2 * n)
        head: nn.Module = self.model.classifier  # type: ignore[assignment]  # checked when built
        return loss, head(feats[: len(batch.x)]).detach()  # for the training accuracy only

    @torch.no_grad()
    def end_experience(self, experience: int, memory: Memory | None) -> None:
        if memory is None or not len(memory.buffer):
            return
        data = memory.buffer.buffer.eval()
        was = self.model.training
        self.model.eval()
        feats = torch.cat(
            [
                normalized_features(
                    self.model, data.batch(torch.arange(s, min(s + 256, len(data)), device=data.ids.device))[0]
                )
                for s in range(0, len(data), 256)
            ]
        )
        self.model.train(was)
        classifier: nn.Linear = self.model.classifier  # type: ignore[assignment]  # checked when built
        self.means, self.has_mean = class_means(feats, data.y.to(feats.device), classifier.out_features)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """-(squared distance) of each sample's normalised features to each class mean [B, C]."""
        if self.means is None or self.has_mean is None:
            return self.model(x)
        d = torch.cdist(normalized_features(self.model, x), self.means).pow(2)
        return (-d).masked_fill(~self.has_mean.to(d.device), float("-inf"))
