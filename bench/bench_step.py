"""The DER paper's protocol step against a plain PyTorch loop (issue 23, step 0).

    OMP_NUM_THREADS=1 python bench/bench_step.py --reps 5

Seq-MNIST on the 5k MNIST files (synthetic digits of the same shape without them): 5 experiences
of 2 classes, the 784-100-100-10 MLP, SGD lr 0.1, batches of 10 current + 10 memory samples,
every_batch, a reservoir of 500 (DER: Mammoth's 128 memory samples at lr 0.03, as its preset). The
plain loop is what a researcher writes by hand: a uint8
tensor of the data, ids in a reservoir tensor filled by Algorithm R, one memory draw per step,
CE (ER) or CE + alpha MSE on stored logits (DER). replaycli runs `+experiment=er_seq_mnist` /
`der_seq_mnist`. Each side's figure is its process's CPU time inside the training of the
experiences (build, memory updates at experience ends and evaluation left out), per step; the
two sides alternate, `--reps` rounds, and the ratio is the median over rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import datafiles  # bench/'s own helper, beside this file


def plain(x: torch.Tensor, y: torch.Tensor, der: bool, mem: int, lr: float, seed: int = 0) -> float:
    """CPU seconds per step of the hand-written loop over the stream."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(784, 100),
        torch.nn.ReLU(),
        torch.nn.Linear(100, 100),
        torch.nn.ReLU(),
        torch.nn.Linear(100, 10),
    )
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    size, seen = 500, 0
    ids = torch.empty(0, dtype=torch.int64)
    logits = torch.empty(0, 10)
    spent, steps = 0.0, 0
    for e in range(5):
        mine = ((y == 2 * e) | (y == 2 * e + 1)).nonzero().flatten()
        order = mine[torch.randperm(len(mine), generator=g)]
        start = time.process_time()
        for s in range(0, len(order), 10):
            b = order[s : s + 10]
            xb, yb = x[b].float() / 255, y[b]
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            if len(ids):
                pos = torch.randperm(len(ids), generator=g)[:mem]
                m = ids[pos]
                mout = model(x[m].float() / 255)
                loss = loss + (F.mse_loss(mout, logits[pos]) if der else F.cross_entropy(mout, y[m]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            for i, sample in enumerate(b.tolist()):  # Algorithm R, one arrival at a time
                if seen < size:
                    ids = torch.cat([ids, torch.tensor([sample])])
                    logits = torch.cat([logits, out[i : i + 1].detach()])
                else:
                    j = int(torch.randint(seen + 1, (1,), generator=g))
                    if j < size:
                        ids[j], logits[j] = sample, out[i].detach()
                seen += 1
            steps += 1
        spent += time.process_time() - start
    return spent / steps


def replaycli_step(experiment: str, root: Path) -> float:
    """CPU seconds per step of `replay run +experiment=EXPERIMENT`'s training (bench_method_cost's measure)."""
    from bench_method_cost import cost

    overrides = [f"+experiment={experiment}", f"data_root={root}", "download=false", "progress=none", "device=cpu"]
    spent, steps = cost([*overrides, "threads=1", "metrics=[timing]"])
    return spent / steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as root:
        data, _ = datafiles.mnist_base()
        source = datafiles.write_mnist_root(Path(root))
        x = torch.from_numpy(data["train"][0].reshape(-1, 784).copy())
        y = torch.from_numpy(data["train"][1].astype("int64"))
        print(f"data: {source}; one torch thread; {a.reps} alternating rounds\n")
        print("| method | replaycli ms/step | plain loop ms/step | ratio (median of rounds) |\n|---|---:|---:|---:|")
        # each preset's own settings (Mammoth's best_args): ER 10 memory samples at lr 0.1; DER 128 at lr 0.03, alpha 1
        for label, experiment, der, mem, lr in (
            ("ER", "er_seq_mnist", False, 10, 0.1),
            ("DER", "der_seq_mnist", True, 128, 0.03),
        ):
            ours, floor = [], []
            for _ in range(a.reps):
                ours.append(replaycli_step(experiment, Path(root)))
                floor.append(plain(x, y, der, mem, lr))
            ratio = statistics.median(o / f for o, f in zip(ours, floor, strict=True))
            ms = [f"{1e3 * statistics.median(v):.3f}" for v in (ours, floor)]
            print(f"| {label} | {ms[0]} | {ms[1]} | {ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
