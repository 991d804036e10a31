"""Per-step training time: replaycli's batched data path against a per-sample torchvision
DataLoader pipeline, on the same device, model and MNIST-sized data, in one run.

    python bench/bench_dataloader.py                       # CPU, MLP and CNN
    python bench/bench_dataloader.py --device cuda --out dataloader.md

Both sides train the same model on the same replay step: 32 current samples joined with 32
memory samples (a buffer of 500), Adam, cross-entropy. replaycli: the pool stays uint8 on the
device, `ReplayDataLoader` gathers each batch by index and normalises it there. The baseline is
what Avalanche-style code does: torchvision's `MNIST` reader on the same idx files with
`ToTensor()` + `Normalize()` per sample (PIL images), one `DataLoader` for the experience and one
for the memory, collated on the CPU and moved with `.to(device)` every step. Steps are timed
after warm-up steps, the device synced; sides alternate; the ratio is the median over pairs.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import datafiles  # noqa: E402

MEAN, STD = 0.1307, 0.3081


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_model(kind: str, device: torch.device) -> torch.nn.Module:
    from replaycli.models import SimpleMLP, SmallCNN

    torch.manual_seed(0)
    model = SimpleMLP(10, input_shape=(1, 28, 28), drop_rate=0.0) if kind == "mlp" else SmallCNN(10, (1, 28, 28))
    return model.to(device)


def timed(batches, model: torch.nn.Module, device: torch.device, steps: int, warmup: int) -> float:
    """Seconds per step over `steps` steps after `warmup` steps (forward, backward, Adam)."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    it = iter(batches)
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        x, y = next(it)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return (time.perf_counter() - start) / steps


def replaycli_batches(root: Path, device: torch.device):
    """Endless (x, y) replay batches from replaycli's loader: 32 current + 32 memory."""
    from replaycli.benchmarks import SplitMNIST
    from replaycli.buffers import ReservoirSamplingBuffer
    from replaycli.loaders import ReplayDataLoader

    bench = SplitMNIST(n_experiences=5, root=str(root), download=False).to(device)
    buffer = ReservoirSamplingBuffer(500, generator=torch.Generator().manual_seed(0))
    buffer.add(bench.train_stream[0].dataset)
    data = bench.train_stream[1].dataset.train()
    g = torch.Generator().manual_seed(0)
    while True:
        loader = ReplayDataLoader(
            data, buffer.buffer, True, batch_size=32, batch_size_mem=32, shuffle=True, generator=g
        )
        for x, y, _t in loader:
            yield x, y


def torchvision_batches(root: Path, device: torch.device, workers: int):
    """Endless (x, y) batches from per-sample torchvision pipelines, moved to `device` each step."""
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    mnist = datasets.MNIST(str(root), train=True, download=False, transform=tf)
    y = mnist.targets
    current = Subset(mnist, torch.isin(y, torch.tensor([2, 3])).nonzero().flatten().tolist())
    memory = Subset(mnist, torch.isin(y, torch.tensor([0, 1])).nonzero().flatten()[:500].tolist())

    def cycle(ds):
        while True:
            yield from DataLoader(ds, batch_size=32, shuffle=True, num_workers=workers)

    for (x, yc), (mx, my) in zip(cycle(current), cycle(memory), strict=False):
        yield torch.cat([x, mx]).to(device), torch.cat([yc, my]).to(device)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--reps", type=int, default=3, help="alternating repetitions of each side")
    ap.add_argument("--steps", type=int, default=200, help="timed steps per repetition")
    ap.add_argument("--workers", type=int, default=0, help="the baseline DataLoader's num_workers")
    ap.add_argument("--out", help="also write the markdown table to this file")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_dataloader: --device cuda but CUDA is not available here")
    lines = [
        "| model | replaycli (ms/step) | torchvision per-sample (ms/step) | ratio (median of pairs) | target |",
        "|---|---:|---:|---:|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        origin = datafiles.write_mnist_root(root, train_repeat=2)
        for kind in args.models.split(","):
            ours, theirs = [], []
            for _ in range(args.reps):  # alternate the sides: a shared machine drifts
                ours.append(timed(replaycli_batches(root, device), make_model(kind, device), device, args.steps, 20))
                theirs.append(
                    timed(
                        torchvision_batches(root, device, args.workers),
                        make_model(kind, device),
                        device,
                        args.steps,
                        20,
                    )
                )
            ratio = statistics.median(t / o for o, t in zip(ours, theirs, strict=True))
            lines.append(
                f"| {kind} | {1e3 * statistics.median(ours):.3f} | {1e3 * statistics.median(theirs):.3f} "
                f"| {ratio:.1f}x | >= 20x |"
            )
            print(lines[-1], flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    text = (
        f"Per-step training time, replay batches of 32 + 32 on {origin} (28x28), {name}, torch "
        f"{torch.__version__}, {args.steps} steps x {args.reps} alternating repetitions, baseline "
        f"num_workers={args.workers}:\n\n" + "\n".join(lines) + "\n"
    )
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
