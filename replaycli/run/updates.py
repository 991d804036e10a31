"""The update protocol: when the memory takes samples, and what each step sees of it. The loop
calls one of these objects at three points (an experience begins, a step is taken, the experience
is trained), so it reads as plain statements; a method's declarations (`trains_on_memory`,
`joins_memory`, `stores_logits`) are read here and nowhere else.

- `AfterExperience` (`buffer_update=after_experience`): the memory takes each experience once it
  has been trained on (DER: with the trained model's logits); a method that `joins_memory` trains
  on current batches joined with memory samples by the loader, the others draw from the memory.
- `EveryBatch` (`buffer_update=every_batch`, the DER paper's protocol): each incoming batch is
  offered to the buffer right after its step (DER: with that step's logits), and every step draws
  from the live memory, from the first experience on.
Under both, a method that `trains_on_memory` (GDumb) has the memory take the experience first and
trains on the memory alone.
"""

from __future__ import annotations

from typing import Any

import torch

from replaycli.data.dataset import StreamDataset
from replaycli.memory.buffer import Buffer
from replaycli.methods.base import Memory, Method, logits_of


class AfterExperience:
    """The memory takes each experience once trained (the default protocol)."""

    per_batch = False  # the loader hands each batch's own samples to `after_step`

    def __init__(self, method: Method, buffer: Buffer | None, memory: Memory | None, eval_mb_size: int):
        self.method, self.buffer, self.memory, self.eval_mb_size = method, buffer, memory, eval_mb_size
        self.joined = False  # this experience's loader joins memory samples into each batch

    def begin(self, dataset: StreamDataset, experience: int) -> tuple[StreamDataset, Buffer | None]:
        """What the experience trains on, and the buffer its loader joins into each batch (or None)."""
        self.joined = self.buffer is not None and self.method.joins_memory and not self.per_batch
        if self.buffer is not None and self.method.trains_on_memory:  # GDumb: the memory is all it trains on
            self.buffer.add(dataset, experience)
            dataset = self.buffer.buffer
        return dataset, self.buffer if self.joined else None

    def step_memory(self) -> Memory | None:
        """What a step may draw from: None while the buffer is empty or when the loader joined it."""
        return self.memory if self.buffer is not None and len(self.buffer) and not self.joined else None

    def after_step(self, samples: Any, experience: int, out: torch.Tensor) -> None:
        """After a step's loss (before its backward): `samples` are the batch's own samples."""

    def end(self, model: torch.nn.Module, dataset: StreamDataset, experience: int) -> None:
        """The experience is trained: the memory takes it (DER: with the trained model's logits)."""
        if self.buffer is None or self.method.trains_on_memory:
            return
        logits = logits_of(model, dataset, self.eval_mb_size) if self.method.stores_logits else None
        self.buffer.add(dataset, experience, None if logits is None else {"logits": logits})


class EveryBatch(AfterExperience):
    """Each incoming batch is offered to the buffer after its step; replay at every step."""

    per_batch = True

    def after_step(self, samples: Any, experience: int, out: torch.Tensor) -> None:
        if self.buffer is not None:  # the memory takes the batch, with this step's logits
            self.buffer.add(samples, experience, {"logits": out.detach()} if self.method.stores_logits else None)

    def end(self, model: torch.nn.Module, dataset: StreamDataset, experience: int) -> None:
        pass  # every batch was offered already


PROTOCOLS = {"after_experience": AfterExperience, "every_batch": EveryBatch}  # buffer_update=NAME
