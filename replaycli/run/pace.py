"""Which incoming batches a step trains on: all of them (`Free`), as long as a compute budget lasts
(`budget=N`, Prabhu et al., CVPR 2023), or as the stream's pace allows (`realtime=true`, Ghunaim
et al., CVPR 2023). Costs are those `run/cost.py` counts; the loop asks `admit` before each step and
tells `paid` what the step cost.

- `Budget`: each experience (a time step: an experience, or a piece of an online stream) may
  spend `budget` in `unit` on its training steps: optimizer steps, samples (forward plus backward
  passes) or FLOPs. A step starts only when what is left covers the costliest step the run has
  taken so far, so once a run has taken a step with its memory in use, no budget is exceeded, and
  one is spent exactly when the stream is long enough and the steps divide it. The memory's update
  and the end-of-experience work (BiC's correction, iCaRL's means) are counted in the experience's
  cost, not in its budget.
- `Realtime`: each incoming batch is first predicted (the online accuracy: evaluation mode, not
  counted as cost), then trained on only if the stream has left time for it. Each batch arriving
  gives the time of one plain ER step on it (`train_mb_size + mem_mb_size` samples forward and
  backward, in FLOPs); time not used is lost (credit never exceeds one ER step), and a step that
  costs more borrows from the batches after it, which are then only predicted. A method costing C
  ER steps thus trains on one batch in C. Skipped batches are not offered to the memory either.
"""

from __future__ import annotations

from typing import Any

import torch

from replaycli.errors import choice, number
from replaycli.run.cost import Cost
from replaycli.run.rules import BUDGET_UNITS
from replaycli.scenario import masked


class Free:
    """Every incoming batch is trained on."""

    needs_cost = False

    def begin(self) -> None:
        """An experience begins."""

    def admit(self, run: Any, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> bool:
        return True

    def paid(self, forward: int, backward: int) -> None:
        """The admitted step cost `forward` and `backward` samples."""

    def record(self) -> dict[str, Any]:
        return {}


class Budget(Free):
    def __init__(self, budget: Any, unit: str, cost: Cost | None):  # None: a budget of steps, nothing counted
        self.budget, self.unit, self.cost = (
            number("budget", budget, 1.0),
            choice("budget_unit", unit, BUDGET_UNITS),
            cost,
        )
        self.needs_cost = unit != "steps"
        self.used = 0
        self.costliest = 0  # of every step the run has taken
        self.skipped = 0

    def price(self, forward: int, backward: int) -> int:
        if self.unit == "steps":
            return 1
        if self.unit == "samples":
            return forward + backward
        assert self.cost is not None  # counted for every unit but steps (run/build.py)
        return self.cost.flops(forward, backward)

    def begin(self) -> None:
        self.used, self.skipped = 0, 0

    def admit(self, run: Any, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> bool:
        ok = self.used + max(self.costliest, 1 if self.unit == "steps" else 0) <= self.budget
        self.skipped += not ok
        return ok

    def paid(self, forward: int, backward: int) -> None:
        price = self.price(forward, backward)
        self.used += price
        self.costliest = max(self.costliest, price)

    def record(self) -> dict[str, Any]:
        return {"budget_used": self.used, "skipped": self.skipped}


class Realtime(Free):
    needs_cost = True

    def __init__(self, cost: Cost, train_mb_size: int, mem_mb_size: int):
        self.cost = cost
        self.er = cost.flops(train_mb_size + mem_mb_size, train_mb_size + mem_mb_size)  # one plain ER step
        self.credit = 0
        self.begin()

    def begin(self) -> None:
        self.credit, self.skipped, self.trained, self.seen = 0, 0, 0, 0
        self.correct: Any = 0

    @torch.no_grad()
    def predict(self, run: Any, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> None:
        model = run.model
        was = model.training
        model.eval()
        with self.cost.counting(False):
            pred = masked(run.method.predict(x), t, run.mask).argmax(1)
        model.train(was)
        self.correct = self.correct + (pred == y).sum()  # a tensor: no sync per batch
        self.seen += len(y)

    def admit(self, run: Any, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> bool:
        self.predict(run, x, y, t)  # under every_batch (realtime's protocol) the batch is the stream's alone
        self.credit = min(self.credit + self.er, self.er)
        ok = self.credit > 0
        self.skipped += not ok
        self.trained += ok
        return ok

    def paid(self, forward: int, backward: int) -> None:
        self.credit -= self.cost.flops(forward, backward)

    def record(self) -> dict[str, Any]:
        return {
            "online_accuracy": float(self.correct) / self.seen if self.seen else None,
            "online_samples": self.seen,
            "skipped": self.skipped,
            "trained_batches": self.trained,
        }
