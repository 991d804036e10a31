"""The DER paper's regularisation baselines, without a memory: online EWC (Schwarz et al., ICML
2018), Synaptic Intelligence (Zenke et al., ICML 2017) and Learning without Forgetting (Li and
Hoiem, ECCV 2016; multi-class, as the DER paper runs it). Each adds a penalty to the current
batch's cross-entropy; none keeps samples of the past (`buffer=none`, brought by their YAMLs)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from replaycli.data.dataset import StreamDataset
from replaycli.errors import integer, number
from replaycli.methods.base import Batch, Memory, Method, frozen_copy, per_sample_grads
from replaycli.scenario import masked


def trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def quadratic(model: torch.nn.Module, weight: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor]) -> torch.Tensor:
    """sum_i weight_i (theta_i - anchor_i)^2 over the trainable parameters."""
    return sum(((p - anchor[n]).pow(2) * weight[n]).sum() for n, p in trainable(model).items())  # type: ignore[return-value]


class OnlineEWC(Method):
    """Online EWC: after each experience the diagonal Fisher information of its data, F, is
    folded into a running one, F* <- gamma F* + F, and the parameters are anchored; the loss adds
    `e_lambda * sum F* (theta - theta*)^2` (no 1/2, as the reference code).

    F is the mean over the experience's samples of p(y|x) g^2, g the gradient of log p(y|x) at
    the true label, as Mammoth's `ewc_on` computes it (one sample at a time there; per-sample
    gradients in one `vmap` here, evaluation mode)."""

    needs_memory = False

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        mask: torch.Tensor | None = None,
        e_lambda: float = 90.0,
        gamma: float = 1.0,
        fisher_mb_size: int = 256,
    ):
        super().__init__(model, optimizer, mask)
        self.e_lambda = number("e_lambda", e_lambda)
        self.gamma = number("gamma", gamma)
        self.fisher_mb_size = integer("fisher_mb_size", fisher_mb_size)
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}
        self.data: StreamDataset | None = None  # the experience being trained (its Fisher at its end)

    def begin_experience(self, experience: int, data: StreamDataset) -> StreamDataset:
        self.data = data
        return data

    def step(self, batch: Batch, memory: Memory | None) -> tuple[torch.Tensor, torch.Tensor]:
        loss, out = super().step(batch, memory)
        if self.fisher:
            loss = loss + self.e_lambda * quadratic(self.model, self.fisher, self.anchor)
        return loss, out

    def fisher_of(self, data: StreamDataset) -> dict[str, torch.Tensor]:
        """The diagonal Fisher of `data` (the class doc), in batches of `fisher_mb_size`."""
        model = self.model
        total = {n: torch.zeros_like(p) for n, p in trainable(model).items()}
        data = data.eval()
        for s in range(0, len(data), self.fisher_mb_size):
            x, y, t = data.batch(torch.arange(s, min(len(data), s + self.fisher_mb_size), device=data.ids.device))
            g = per_sample_grads(model, lambda out, y, t: self.ce(out, y, t).neg(), x, y, t)  # [b, ...] each
            was = model.training
            model.eval()
            with torch.no_grad():  # p(y|x), the reference's weight of each sample's squared gradient
                prob = F.cross_entropy(masked(model(x), t, self.mask), y, reduction="none").neg().exp()  # [b]
            model.train(was)
            for n in total:
                total[n] += (prob.view(-1, *[1] * (g[n].dim() - 1)) * g[n].pow(2)).sum(0)
        return {n: v / max(len(data), 1) for n, v in total.items()}

    def end_experience(self, experience: int, memory: Memory | None) -> None:
        if self.data is None:
            return
        fisher = self.fisher_of(self.data)
        self.fisher = {n: self.gamma * self.fisher[n] + f if n in self.fisher else f for n, f in fisher.items()}
        self.anchor = {n: p.detach().clone() for n, p in trainable(self.model).items()}
        self.data = None  # not kept: the checkpoint holds the Fisher and the anchor only


class SI(Method):
    """Synaptic Intelligence: each parameter's contribution to the loss's decrease along the
    training path, omega += -g * (step's change of theta), g the gradient the step descended
    (the paper's path integral; Mammoth's `si` adds lr * g^2, the same under plain SGD). At each
    experience's end Omega += omega / ((theta - theta*)^2 + xi), omega is reset and theta* anchored;
    the loss adds `c * sum Omega (theta - theta*)^2`.

    A step sees the gradient and the parameters the previous step left (the loop descends after
    `step`): it folds that step in first; the experience's last step is folded in at its end."""

    needs_memory = False

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        mask: torch.Tensor | None = None,
        c: float = 0.5,
        xi: float = 1.0,
    ):
        super().__init__(model, optimizer, mask)
        self.c = number("c", c)
        self.xi = number("xi", xi, below=float("inf"))
        self.omega: dict[str, torch.Tensor] = {}  # this experience's path integral
        self.big_omega: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}  # theta*: the parameters at the last experience's end
        self.before: dict[str, torch.Tensor] = {}  # the parameters before the pending step's descent

    def fold(self) -> None:
        """Add the pending step (its gradient and change of the parameters) to omega."""
        with torch.no_grad():
            for n, p in trainable(self.model).items():
                if n in self.before and p.grad is not None:
                    part = -p.grad * (p - self.before[n])
                    self.omega[n] = self.omega[n] + part if n in self.omega else part
        self.before = {}

    def step(self, batch: Batch, memory: Memory | None) -> tuple[torch.Tensor, torch.Tensor]:
        self.fold()
        self.before = {n: p.detach().clone() for n, p in trainable(self.model).items()}
        if not self.anchor:  # the start: the path begins here
            self.anchor = {n: p.clone() for n, p in self.before.items()}
        loss, out = super().step(batch, memory)
        if self.big_omega:
            loss = loss + self.c * quadratic(self.model, self.big_omega, self.anchor)
        return loss, out

    def end_experience(self, experience: int, memory: Memory | None) -> None:
        self.fold()
        with torch.no_grad():
            for n, p in trainable(self.model).items():
                if n not in self.anchor:
                    continue
                w = self.omega.get(n, torch.zeros_like(p)) / ((p - self.anchor[n]).pow(2) + self.xi)
                self.big_omega[n] = self.big_omega[n] + w if n in self.big_omega else w
            self.anchor = {n: p.detach().clone() for n, p in trainable(self.model).items()}
        self.omega = {}


class LwF(Method):
    """Learning without Forgetting, multi-class: the cross-entropy of the current batch over every
    class, plus `alpha * T^2 * KL` between the previous model's and the model's softened outputs
    (temperature T) over the classes seen before this experience. The previous model is a frozen
    copy taken at each experience's end. Differs from Mammoth's `lwf`: no warm-up of the new
    head before each experience (the paper's optional first stage)."""

    needs_memory = False

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        mask: torch.Tensor | None = None,
        alpha: float = 1.0,
        temperature: float = 2.0,
    ):
        super().__init__(model, optimizer, mask)
        self.alpha = number("alpha", alpha)
        self.temperature = number("temperature", temperature, minimum=1e-6)
        self.old_model: torch.nn.Module | None = None
        self.has_old = False  # classes of earlier experiences to distil (a flag: no sync per step)
        self.seen = torch.zeros(0, dtype=torch.bool)  # [C] classes trained on in earlier experiences
        self.now = torch.zeros(0, dtype=torch.bool)  # [C] ... and in this one

    def step(self, batch: Batch, memory: Memory | None) -> tuple[torch.Tensor, torch.Tensor]:
        loss, out = super().step(batch, memory)
        if len(self.now) != out.shape[1]:
            self.now = torch.zeros(out.shape[1], dtype=torch.bool)
            self.seen = self.now.clone()
        self.now = self.now.to(out.device).index_fill(0, batch.y, True)
        if self.old_model is not None and self.has_old:
            old = self.seen.to(out.device)
            with torch.no_grad():
                target = F.softmax(self.old_model(batch.x)[:, old] / self.temperature, 1)
            log_p = F.log_softmax(out[:, old] / self.temperature, 1)
            distill = F.kl_div(log_p, target, reduction="batchmean")
            loss = loss + self.alpha * self.temperature**2 * distill
        return loss, out

    def end_experience(self, experience: int, memory: Memory | None) -> None:
        self.old_model = frozen_copy(self.model)
        self.seen = self.seen.to(self.now.device) | self.now if len(self.seen) == len(self.now) else self.now.clone()
        self.has_old = bool(self.seen.any())
