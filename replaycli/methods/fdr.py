"""Function Distance Regularization (Benjamin et al., ICLR 2019), as the DER paper runs it."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from replaycli.methods.base import Batch, Memory, Method


class FDR(Method):
    """Each step, two descents: the current batch's cross-entropy, then, once the memory holds
    something, the mean L2 distance between the model's softmax outputs on a memory batch and the
    stored ones, `|| softmax(f(x)) - softmax(stored logits) ||_2` (the function-space distance). The
    memory takes each experience at its end, split evenly over the experiences seen, with the
    trained model's logits (`after_experience`, an experience-balanced buffer).

    As Mammoth's `fdr`: the first descent is taken inside the step (the optimizer's own step), the
    second is the loop's, so the loss the run records is the distance term once there is a memory.
    Mammoth runs the distance descent with the same optimizer and learning rate; so does this."""

    protocols = ("after_experience",)  # the stored outputs are those of each trained experience's model
    stores_logits = True
    memory_groupby = "experience"

    def step(self, batch: Batch, memory: Memory | None) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(batch.x)
        loss = self.ce(out, batch.y, batch.t)
        if memory is None:
            return loss, out
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        mx, _, _, extras = memory.sample()
        distance = (F.softmax(self.model(mx), 1) - F.softmax(extras["logits"], 1)).norm(dim=1).mean()
        return distance, out.detach()
