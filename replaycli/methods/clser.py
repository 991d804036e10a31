"""CLS-ER (Arani et al., ICLR 2022): experience replay with two semantic memories, exponential
moving averages of the model's weights that are updated stochastically, a plastic one (updated
often) and a stable one (rarely); the model is held consistent with whichever of them is more sure
of each memory sample's label; the stable one answers at evaluation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from replaycli.errors import fraction, number
from replaycli.methods.base import Batch, Memory, Method, frozen_copy


class CLSER(Method):
    """Each step: cross-entropy on the current batch joined with a memory batch, plus
    `reg_weight * MSE(model logits, semantic logits)` on the memory part, the semantic logits
    being the stable model's for a sample where it gives the true label a higher probability than
    the plastic one, else the plastic model's. After each descent, with probability
    `plastic_update_freq` (`stable_update_freq`) the plastic (stable) model takes
    theta_ema <- a theta_ema + (1 - a) theta, a = min(1 - 1 / (steps + 1), `plastic_alpha`
    (`stable_alpha`)), steps the descents so far. Evaluation uses the stable model.

    As the reference code (Mammoth-based `clser`), save: the memory batch goes through the model
    once, in the joined batch (the reference passes it twice: the same values and gradient without
    batch norm), and the update draws come from the run's generator (the reference's global
    `torch.rand`). A step sees the parameters the previous descent left (the loop descends after
    `step`): the semantic memories take that descent first; the experience's last at its end."""

    protocols = ("every_batch",)  # reservoir insertion of each batch, as the paper

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        mask: torch.Tensor | None = None,
        reg_weight: float = 0.1,
        plastic_update_freq: float = 0.9,
        plastic_alpha: float = 0.999,
        stable_update_freq: float = 0.7,
        stable_alpha: float = 0.999,
    ):
        super().__init__(model, optimizer, mask)
        self.reg_weight = number("reg_weight", reg_weight)
        self.plastic_update_freq = number("plastic_update_freq", plastic_update_freq, 0.0, below=1.0 + 1e-9)
        self.stable_update_freq = number("stable_update_freq", stable_update_freq, 0.0, below=1.0 + 1e-9)
        self.plastic_alpha = fraction("plastic_alpha", plastic_alpha)
        self.stable_alpha = fraction("stable_alpha", stable_alpha)
        self.plastic: torch.nn.Module | None = None
        self.stable: torch.nn.Module | None = None
        self.descents = 0  # optimizer steps taken: the EMA's warm-up
        self.pending = False  # a descent the semantic memories have not taken yet

    def semantic(self) -> None:
        """The semantic memories take the pending descent (each with its probability)."""
        if self.plastic is None or self.stable is None:
            self.plastic, self.stable = frozen_copy(self.model), frozen_copy(self.model)
        if not self.pending:
            return
        self.pending = False
        self.descents += 1
        g = self.setting.generator if self.setting is not None else None
        draws = torch.rand(2, generator=g).tolist()
        for ema, freq, alpha, u in (
            (self.plastic, self.plastic_update_freq, self.plastic_alpha, draws[0]),
            (self.stable, self.stable_update_freq, self.stable_alpha, draws[1]),
        ):
            if u < freq:
                a = min(1 - 1 / (self.descents + 1), alpha)
                with torch.no_grad():
                    for e, p in zip(ema.parameters(), self.model.parameters(), strict=True):
                        e.mul_(a).add_(p.detach(), alpha=1 - a)

    def step(self, batch: Batch, memory: Memory | None) -> tuple[torch.Tensor, torch.Tensor]:
        self.semantic()
        self.pending = True
        x, y, t = batch.x, batch.y, batch.t
        if memory is None:
            out = self.model(x)
            return self.ce(out, y, t), out
        mx, my, mt, _ = memory.sample()
        out = self.model(torch.cat([x, mx]))  # [B + M, C]
        loss = self.ce(out, torch.cat([y, my]), torch.cat([t, mt]))
        assert self.plastic is not None and self.stable is not None
        with torch.no_grad():
            stable, plastic = self.stable(mx), self.plastic(mx)
            rows = torch.arange(len(my), device=my.device)
            sure = F.softmax(stable, 1)[rows, my] > F.softmax(plastic, 1)[rows, my]
            target = torch.where(sure.unsqueeze(1), stable, plastic)
        loss = loss + self.reg_weight * F.mse_loss(out[len(x) :], target)
        return loss, out[: len(x)]

    def end_experience(self, experience: int, memory: Memory | None) -> None:
        self.semantic()  # the experience's last descent

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return (self.stable if self.stable is not None else self.model)(x)
