"""Anytime evaluation (`eval_every=K`; Koh et al., ICLR 2022; De Lange et al., ICLR 2023): during
each experience, at its start, every K training steps and at its end, the accuracy on each test
experience seen so far (the current one included), on a fixed sample of the test stream
(`eval_sample` samples spread evenly over its experiences, drawn once from a generator of its own
seeded by `seed`: the run's own generator and the model never see it, so the training and the
end-of-experience tables are those of the same run without it).

Each experience's record keeps its points (`anytime`: [step, [accuracy on test 0..o]], o the test
experience it trains on); `RunWriter` writes them to anytime.csv and summary.json gets the
measures of `formulas.anytime` (average anytime accuracy, min-ACC, WC-ACC, the stability gap at
each switch)."""

from __future__ import annotations

import contextlib
import math
from types import SimpleNamespace
from typing import Any

import torch

from replaycli.run.meters import evaluate_stream


class Anytime:
    """The sample of each test experience, and when a point is due."""

    def __init__(self, every: int, test_stream: Any, sample: int, seed: int):
        self.every = every
        g = torch.Generator().manual_seed(seed)  # its own: the run's generator is not drawn from
        share = math.ceil(sample / max(len(test_stream), 1))
        self.stream = []
        for exp in test_stream:
            data = exp.dataset
            pick = torch.randperm(len(data), generator=g)[: min(share, len(data))].sort().values
            self.stream.append(SimpleNamespace(dataset=data.subset(pick)))

    def due(self, step: int, steps: int) -> bool:
        """A point after `step` of an experience of `steps` steps (step 0: before the first)."""
        return step % self.every == 0 or step == steps

    def point(self, run: Any, origin: int, step: int) -> list[Any]:
        """[step, accuracy on each test experience 0..origin], evaluated as at an experience's end."""
        seen = self.stream[: origin + 1]
        with run.cost.counting(False) if run.cost is not None else contextlib.nullcontext():  # evaluation is free
            accuracy = self.evaluate(run, seen)
        return [step, accuracy]

    def evaluate(self, run: Any, seen: list[Any]) -> list[float]:
        return evaluate_stream(
            run.model,
            seen,  # type: ignore[arg-type]  # what evaluate_stream reads of a stream: each experience's dataset
            run.eval_mb_size,
            run.mask,
            run.bench.n_classes,
            predict=run.method.predict,
        )["accuracy"]
