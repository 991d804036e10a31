"""One training step of S stacked MLPs (784-100-100-10, batch 20) four ways, interleaved (issue 23):

    OMP_NUM_THREADS=1 python bench/bench_batched_step.py --members 8 --steps 300

- `loop`: each member's own forward, backward and fused SGD (what members taking turns do);
- `vmapped`: the members' parameters stacked each step, one vmapped `functional_call`, one backward,
  each member's optimizer (what `hydra/launcher=batched` does, run/together.py);
- `leaves`: the stacked parameters as the leaves, one optimizer over them, vmapped;
- `baddbmm`: the same leaves, a hand-written batched product per Linear.
Process CPU per step of all S members, the rounds interleaved, medians of `--rounds`.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 10)
    )


def ways(s: int, b: int) -> dict[str, Callable[[], None]]:
    models = [mlp() for _ in range(s)]
    opts = [torch.optim.SGD(m.parameters(), lr=0.1, fused=True) for m in models]
    template = copy.deepcopy(models[0])
    names = [n for n, _ in template.named_parameters()]
    vmapped = torch.func.vmap(lambda p, x: torch.func.functional_call(template, p, (x,)))
    x, y = torch.randn(s, b, 1, 28, 28), torch.randint(0, 10, (s, b))

    def loop() -> None:
        for i, m in enumerate(models):
            loss = F.cross_entropy(m(x[i]), y[i])
            opts[i].zero_grad(set_to_none=True)
            loss.backward()
            opts[i].step()

    def stacked() -> None:
        params = [list(m.parameters()) for m in models]
        out = vmapped({n: torch.stack([p[k] for p in params]) for k, n in enumerate(names)}, x)
        for o in opts:
            o.zero_grad(set_to_none=True)
        torch.stack([F.cross_entropy(out[i], y[i]) for i in range(s)]).sum().backward()
        for o in opts:
            o.step()

    leaves = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]).requires_grad_() for n in names}
    opt = torch.optim.SGD(leaves.values(), lr=0.1, fused=True)

    def on_leaves() -> None:
        out = vmapped(leaves, x)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(out.reshape(s * b, -1), y.reshape(-1), reduction="sum").div(b).backward()
        opt.step()

    w = [leaves[n] for n in names]

    def baddbmm() -> None:
        h = x.reshape(s, b, -1)
        for k in range(0, len(w), 2):
            h = torch.baddbmm(w[k + 1].unsqueeze(1), h, w[k].transpose(1, 2))
            h = torch.relu(h) if k + 2 < len(w) else h
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(h.reshape(s * b, -1), y.reshape(-1), reduction="sum").div(b).backward()
        opt.step()

    return {"loop": loop, "vmapped": stacked, "leaves": on_leaves, "baddbmm": baddbmm}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(1)
    fns = ways(a.members, a.batch)
    for fn in fns.values():  # warm-up
        for _ in range(20):
            fn()
    per: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(a.rounds):
        for k, fn in fns.items():  # the ways alternate within every round
            t = time.process_time()
            for _ in range(a.steps):
                fn()
            per[k].append((time.process_time() - t) / a.steps * 1e3)
    base = statistics.median(per["loop"])
    print(f"S={a.members}, batch {a.batch}, {a.steps} steps x {a.rounds} rounds; ms per step of all members:")
    for k, v in per.items():
        print(f"  {k:8s} {statistics.median(v):6.2f} ms  ({statistics.median(v) / base:.2f}x loop)")


if __name__ == "__main__":
    main()
