"""GEM (Lopez-Paz and Ranzato, NeurIPS 2017): gradient episodic memory, one constraint per past
experience, solved with quadprog (`pip install 'replaycli[gem]'`), as the reference code does."""

from __future__ import annotations

import numpy as np
import torch

from replaycli.errors import ConfigError, number
from replaycli.methods.base import Batch, Memory, Method


def project_to_cone(g: torch.Tensor, past: torch.Tensor, margin: float = 0.5, eps: float = 1e-3) -> torch.Tensor:
    """The gradient closest to `g` [P] whose dot product with every past experience's gradient
    (`past` [K, P]) is non-negative: the dual QP of the paper's equation 10, min_v 1/2 v'(GG')v +
    g'G'v subject to v >= margin-shifted zero, solved by quadprog in float64 as in the reference
    code's `project2cone2` (`margin`: its memory_strength; `eps` keeps GG' positive definite)."""
    import quadprog

    G = past.detach().double().cpu().numpy()  # [K, P]
    gn = g.detach().double().cpu().numpy()  # [P]
    P = G @ G.T
    P = 0.5 * (P + P.T) + np.eye(len(G)) * eps
    v = quadprog.solve_qp(P, -(G @ gn), np.eye(len(G)), np.zeros(len(G)) + margin)[0]
    return torch.from_numpy(v @ G + gn).to(g.dtype).to(g.device)


class GEM(Method):
    """Each step: the current batch's gradient, and one gradient per past experience on all of that
    experience's stored samples (the buffer groups by experience). When any of them conflicts with
    the step's (a negative dot product), the step takes the projection `project_to_cone` instead.

    As in the reference code: the memory of an experience is filled at its end (after_experience)
    and `margin` (memory_strength, 0.5 there and in Mammoth's seq-mnist setting) shifts the dual's
    bound. The reference code keeps `n_memories` per task; here `buffer.max_size` is shared by the
    experiences seen (ExperienceBalancedBuffer), so old experiences hold fewer samples later.
    """

    protocols = ("after_experience",)
    memory_groupby = "experience"

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        mask: torch.Tensor | None = None,
        margin: float = 0.5,
    ):
        super().__init__(model, optimizer, mask)
        self.margin = number("margin", margin)
        try:
            import quadprog  # noqa: F401  (checked before training, not at the first conflict)
        except ImportError:
            raise ConfigError(
                "strategy=gem solves its QP with quadprog, which is not installed; allowed: "
                "pip install 'replaycli[gem]'"
            ) from None

    def step(self, batch: Batch, memory: Memory | None) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(batch.x)
        loss = self.ce(out, batch.y, batch.t)
        groups = {k: d for k, (d, _) in memory.buffer.groups().items() if k != batch.experience} if memory else {}
        if memory is None or not groups:
            return loss, out
        g = self.flat_grad(loss, retain=True)
        past = []
        for data in groups.values():
            x, y, t = data.train().batch(torch.arange(len(data), device=data.ids.device), memory.generator)
            past.append(self.flat_grad(self.ce(self.model(x), y, t)))
        G = torch.stack(past)  # [K, P]
        if bool((G @ g < 0).any()):  # one sync a step: the QP runs on the CPU anyway
            g = project_to_cone(g, G, self.margin)
        return self.with_gradient(loss, g), out
