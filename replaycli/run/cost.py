"""What a run spends (`metrics: [..., cost]`): every pass of samples through the network, counted
as it happens, and its FLOPs.

- A forward pass of n samples is counted where the network's body (`model.features`, the model
  itself when it has none) is called, whoever calls it: a method's step, its virtual step (MIR), a
  frozen copy of the model (BiC, a distillation), the class means (iCaRL), the memory's own
  scoring or logits. A call that takes gradients counts as one backward pass of its samples too:
  every shipped method backpropagates each such call once (through `backward()` or, A-GEM's, GEM's
  and MIR's, `autograd.grad`; tests/test_cost.py counts them by hand). Watching for the gradient
  itself (a tensor hook) cost 30-40 us of a 0.4 ms Seq-MNIST step; this costs a counter. Evaluation is not
  counted.
- Work inside `torch.func` transforms (GSS's per-sample gradients) is charged by its caller
  with `charge(model, forward=n, backward=n)`: the transform hides its batch from the hook.
- FLOPs: the network's forward and backward FLOPs per sample, measured once with
  `torch.utils.flop_counter.FlopCounterMode` on a copy of the model, times the samples counted.
  They are the network's FLOPs, the unit the budget papers count; a method's own vector work (a
  projection, a cosine similarity) is not in them, and a call of the body alone is charged the
  whole network's (the head of replaycli's models is about 1% of it).
"""

from __future__ import annotations

import contextlib
import copy
import weakref
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

MARK = "_replaycli_cost"  # set on the counting hook, so a batched group's copy of the model can drop it
_COUNTERS: weakref.WeakKeyDictionary[nn.Module, Cost] = weakref.WeakKeyDictionary()


def body(model: nn.Module) -> nn.Module:
    """The module whose calls are counted: the model's `features` body, or the model."""
    features = getattr(model, "features", None)
    return features if isinstance(features, nn.Module) else model


def uncounted(model: nn.Module) -> nn.Module:
    """`model` (a copy) without the counting hooks a deepcopy carried over."""
    for m in model.modules():
        for key, fn in list(m._forward_hooks.items()):
            if getattr(fn, MARK, False):
                del m._forward_hooks[key]
    return model


def per_sample_flops(model: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> tuple[int, int]:
    """(forward, backward) FLOPs of one training sample through `model`, measured on a copy in
    evaluation mode (no dropout drawn from the global random state, no statistics updated: the run
    is as it would be without it); dropout and batch norm add no matrix products."""
    from torch.utils.flop_counter import FlopCounterMode

    probe = uncounted(copy.deepcopy(model)).eval()
    x = torch.zeros(2, *input_shape, device=device)
    with FlopCounterMode(display=False) as forward:
        out = probe(x)
    with FlopCounterMode(display=False) as backward:
        out.float().sum().backward()
    return forward.get_total_flops() // 2, backward.get_total_flops() // 2


class Cost:
    """The samples passed forward and backward through one model while `on`."""

    def __init__(self, model: nn.Module, flops: tuple[int, int]):
        self.forward = self.backward = 0
        self.on = False
        self.flops_forward, self.flops_backward = flops
        cost = self

        def counted(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            x = inputs[0] if inputs else None
            if cost.on and isinstance(x, torch.Tensor) and not torch._C._functorch.is_functorch_wrapped_tensor(x):
                cost.passed(x.shape[0], output)

        setattr(counted, MARK, True)
        body(model).register_forward_hook(counted)  # a deepcopy (a frozen old model) counts here too
        _COUNTERS[model] = self

    def passed(self, n: int, output: Any) -> None:
        """n samples went forward, giving `output`; with gradients, they go back once too."""
        self.forward += n
        if isinstance(output, torch.Tensor) and output.requires_grad:
            self.backward += n

    def flops(self, forward: int, backward: int) -> int:
        return forward * self.flops_forward + backward * self.flops_backward

    def counts(self) -> tuple[int, int]:
        return self.forward, self.backward

    @contextlib.contextmanager
    def counting(self, on: bool = True) -> Iterator[None]:
        """Counted (`on`) or not (evaluation) inside; as before after."""
        was, self.on = self.on, on
        try:
            yield
        finally:
            self.on = was


def charge(model: nn.Module, forward: int = 0, backward: int = 0) -> None:
    """Count passes the hook cannot see (inside `torch.func` transforms) against `model`'s run."""
    cost = _COUNTERS.get(model)
    if cost is not None and cost.on:
        cost.forward += forward
        cost.backward += backward


def passed(model: nn.Module, n: int, output: Any) -> None:
    """n samples went through `model` elsewhere (a batched group's model), giving `output`."""
    cost = _COUNTERS.get(model)
    if cost is not None and cost.on:
        cost.passed(n, output)


class Meter:
    """One experience's spending: its steps, and what all of its counted work passed."""

    def __init__(self, cost: Cost):
        self.cost = cost
        self.start = cost.counts()
        self.steps = 0
        self.mark = self.start

    def step_begins(self) -> None:
        self.mark = self.cost.counts()

    def step_cost(self) -> tuple[int, int]:
        """(forward, backward) samples of the step since `step_begins`, counting one more step."""
        self.steps += 1
        f, b = self.cost.counts()
        return f - self.mark[0], b - self.mark[1]

    def record(self) -> dict[str, Any]:
        f, b = self.cost.forward - self.start[0], self.cost.backward - self.start[1]
        flops = self.cost.flops(f, b)
        per_step = flops / self.steps if self.steps else 0.0
        return {"steps": self.steps, "forward": f, "backward": b, "flops": flops, "flops_per_step": per_step}
