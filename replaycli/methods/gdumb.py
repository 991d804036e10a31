"""GDumb (Prabhu et al., ECCV 2020): a class-balanced memory, and a model trained on it alone."""

from __future__ import annotations

import torch

from replaycli.data.dataset import StreamDataset
from replaycli.methods.base import Batch, Memory, Method


class GDumb(Method):
    """The class-balanced buffer takes each experience first; then the model goes back to its
    initial weights (the optimizer to a fresh state) and trains `epochs` passes on the buffer.

    The sampler is the class-balanced buffer (one random key per sample, classes split evenly,
    unused shares lent): the class counts and the uniform choice within a class of GDumb's
    greedy sampler, without its per-sample loop.
    """

    protocols = ("after_experience",)
    batches = True
    trains_on_memory = True
    memory_groupby = "class"

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, mask: torch.Tensor | None = None):
        super().__init__(model, optimizer, mask)
        self.init_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def step(self, batch: Batch, memory: Memory | None) -> tuple[torch.Tensor, torch.Tensor]:
        return super().step(batch, None)  # the batch is memory already

    def begin_experience(self, experience: int, data: StreamDataset) -> StreamDataset:
        self.model.load_state_dict(self.init_state)  # re-initialise: only the buffer is learnt from
        self.optimizer.state.clear()  # e.g. Adam's moments of the previous model
        return data
