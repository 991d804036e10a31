"""The floor: a hand-written plain-PyTorch replay loop doing exactly the work of a `replay run`.

    python bench/floor.py CONFIG.yaml [--json OUT.json]

CONFIG.yaml is a resolved run config (what `replay run` writes as `config.yaml`, or what
bench/bench_speed.py composes). The floor supports the configs the bench uses: SplitMNIST,
SplitFMNIST or PermutedMNIST read from idx files; SimpleMLP; a ParametricBuffer grouped by class
with random selection (or a ClassBalancedBuffer, the same policy); the ReplayDataLoader with a
cycled, shuffled memory; Adam or SGD; the `metrics` a run measures (training accuracy, test loss,
the confusion matrix), per epoch or experience. Anything else exits with status 2.

It draws from one seeded torch.Generator in the same order as replaycli (epoch shuffle, memory
shuffles, buffer keys) and initialises the model from torch.manual_seed(seed), so on the same
config it computes the same batches, the same weights and the same accuracies: same work, no
framework. Only torch and PyYAML are imported. On CUDA (device=cuda, or auto where CUDA is
available) the data set, the model and the buffer's ids live on the GPU, as replaycli's do.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import nn

_MNIST = {"SplitMNIST": ("MNIST", 0.1307, 0.3081), "SplitFMNIST": ("FashionMNIST", 0.2860, 0.3530)}


def fail(msg: str) -> None:
    print(f"floor: {msg}", file=sys.stderr)
    sys.exit(2)


def read_idx(path: Path) -> torch.Tensor:
    """An idx file (big-endian header, then uint8 values) read straight into a uint8 tensor."""
    with open(path, "rb") as f:
        nd = f.read(4)[3]
        shape = struct.unpack(f">{nd}I", f.read(4 * nd))
        x = torch.empty(shape, dtype=torch.uint8)
        f.readinto(x.numpy().reshape(-1).data)
    return x


def load(cfg: dict) -> dict:
    """Train and test images (uint8 [N, 784]) and labels, the experiences' ids and permutations."""
    b = cfg["benchmark"]
    name = b["_target_"].rsplit(".", 1)[1]
    if name not in ("SplitMNIST", "SplitFMNIST", "PermutedMNIST"):
        fail(f"benchmark {name} is not supported (SplitMNIST, SplitFMNIST, PermutedMNIST)")
    folder, mean, std = _MNIST["SplitMNIST" if name == "PermutedMNIST" else name]
    raw = Path(os.path.expanduser(b["root"])) / folder / "raw"
    std32, mean32 = torch.tensor(std), torch.tensor(mean)  # float32, as replaycli keeps them
    d = {"scale": 1.0 / (255.0 * std32), "shift": mean32 / std32}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        d[split + "_x"] = read_idx(raw / f"{prefix}-images-idx3-ubyte").flatten(1)  # [N, 784] uint8
        d[split + "_y"] = read_idx(raw / f"{prefix}-labels-idx1-ubyte").long()  # [N]
    n_exp = int(b["n_experiences"])
    if name == "PermutedMNIST":
        g = torch.Generator().manual_seed(0 if b.get("seed") is None else int(b["seed"]))
        d["perms"] = torch.stack([torch.randperm(784, generator=g) for _ in range(n_exp)])  # [E, 784]
        for split in ("train", "test"):
            n = len(d[split + "_y"])
            d[split + "_exps"] = [torch.arange(i * n, (i + 1) * n) for i in range(n_exp)]
    else:
        if b.get("seed") is not None or b.get("fixed_class_order") is not None:
            fail("the floor uses the class order 0..9 (benchmark.seed and fixed_class_order null)")
        per = 10 // n_exp
        for split in ("train", "test"):
            y = d[split + "_y"]
            classes = [torch.arange(i * per, (i + 1) * per) for i in range(n_exp)]
            d[split + "_exps"] = [torch.isin(y, c).nonzero().flatten() for c in classes]
        d["perms"] = None
    dev = device(cfg)
    for k, v in d.items():  # the whole data set goes to the device once, like replaycli's pools
        if isinstance(v, torch.Tensor):
            d[k] = v.to(dev)
        elif isinstance(v, list):
            d[k] = [t.to(dev) for t in v]
    return d


def gather(d: dict, split: str, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised float images [B, 784] and labels [B] of `ids` (permuted ids: e * N + base)."""
    x, y = d[split + "_x"], d[split + "_y"]
    if d["perms"] is None:
        xb = x[ids]
    else:
        n = len(y)
        base = ids % n
        xb = x[base].gather(1, d["perms"][ids // n])
        ids = base
    return (xb * d["scale"]).sub_(d["shift"]), y[ids]  # (x / 255 - mean) / std, in two passes


def build_model(cfg: dict) -> nn.Module:
    m = cfg["model"]
    if not m["_target_"].endswith("SimpleMLP"):
        fail(f"model {m['_target_']} is not supported (SimpleMLP)")
    layers, width = [nn.Flatten()], 784
    for _ in range(int(m["hidden_layers"])):
        layers += [nn.Linear(width, m["hidden_size"]), nn.ReLU(inplace=True), nn.Dropout(m["drop_rate"])]
        width = m["hidden_size"]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def check(cfg: dict) -> None:
    buf, sel, ld = cfg["buffer"], cfg["selection"], cfg["loader"]
    kind = buf["_target_"].rsplit(".", 1)[1]
    by_class = (kind == "ParametricBuffer" and buf.get("groupby") == "class") or (
        kind == "ClassBalancedBuffer" and buf.get("adaptive_size", True)
    )
    if not by_class or not sel["_target_"].endswith("RandomExemplarsSelectionStrategy"):
        fail("the floor's buffer is class-grouped random (ParametricBuffer groupby=class, selection=random)")
    if ".ReplayDataLoader" not in ld["_target_"] or ld["task_balanced_dataloader"]:
        fail("the floor's loader is ReplayDataLoader without task_balanced_dataloader")
    if not (ld["shuffle"] and ld["oversample_small_tasks"]) or ld["drop_last"]:
        fail("the floor's loader shuffles, cycles the memory and keeps the last partial batch")
    if cfg["device"] == "cuda" and not torch.cuda.is_available():
        fail("device=cuda but CUDA is not available")


def device(cfg: dict) -> torch.device:
    """cuda for device=cuda, and for auto when CUDA is available (replaycli's rule); else cpu."""
    return torch.device("cuda" if cfg["device"] in ("cuda", "auto") and torch.cuda.is_available() else "cpu")


def update_buffer(mem_ids, mem_keys, new_ids, max_size, y_of, gen):
    """Class-grouped reservoir: one random key per sample, each class keeps its largest keys.

    Capacities split max_size evenly over the classes seen; a class smaller than its share
    keeps all it has and lends the rest (water-filling). Kept: by class, largest key first."""
    ids = torch.cat([mem_ids, new_ids])
    keys = torch.cat([mem_keys, torch.rand(len(new_ids), generator=gen).to(ids.device)])  # drawn on the CPU
    classes, cls = torch.unique(y_of(ids), return_inverse=True)
    sizes = torch.bincount(cls, minlength=len(classes)).tolist()
    caps, open_, left = [0] * len(sizes), list(range(len(sizes))), max_size
    while open_:
        base, rem = divmod(left, len(open_))
        shares = [base + (i < rem) for i in range(len(open_))]
        small = [g for g, s in zip(open_, shares, strict=True) if sizes[g] <= s]
        if not small:
            for g, s in zip(open_, shares, strict=True):
                caps[g] = s
            break
        for g in small:
            caps[g], left = sizes[g], left - sizes[g]
        open_ = [g for g in open_ if g not in small]
    order = torch.argsort(keys, descending=True, stable=True)
    order = order[torch.argsort(cls[order], stable=True)]  # by class, then largest key first
    counts, caps = torch.tensor(sizes, device=ids.device), torch.tensor(caps, device=ids.device)
    rank = torch.arange(len(order), device=ids.device) - (torch.cumsum(counts, 0) - counts)[cls[order]]
    keep = order[rank < caps[cls[order]]]
    return ids[keep], keys[keep]


def measured(cfg: dict) -> set[str]:
    """The config's `metrics` the floor computes too (training accuracy, test loss, confusion)."""
    names = set(cfg.get("metrics") or [])
    if any(cfg.get("granularity", {}).get(n) == "minibatch" for n in names):
        fail("the floor logs metrics per epoch or experience, not per minibatch")
    return names


def train(model, opt, d, cur, mem_ids, cfg, gen, names, on_first_step) -> dict:
    """`epochs` passes over the ids `cur`, each batch joined by a cycled, reshuffled memory batch."""
    bs, bs_mem, epochs = int(cfg["train_mb_size"]), int(cfg["mem_mb_size"]), int(cfg["epochs"])
    model.train()
    steps = math.ceil(len(cur) / bs)
    dev = cur.device
    total, correct, seen = torch.zeros((), device=dev), torch.zeros((), dtype=torch.int64, device=dev), 0
    for _ in range(epochs):
        order = cur[torch.randperm(len(cur), generator=gen).to(dev)]  # [n] this epoch's current ids
        mem = None
        if len(mem_ids):  # the memory, reshuffled and cycled over the epoch: [steps * bs_mem]
            reps = math.ceil(steps * bs_mem / len(mem_ids))
            mem = mem_ids[torch.cat([torch.randperm(len(mem_ids), generator=gen) for _ in range(reps)]).to(dev)]
        for s in range(steps):
            ids = order[s * bs : (s + 1) * bs]
            if mem is not None:
                ids = torch.cat([ids, mem[s * bs_mem : (s + 1) * bs_mem]])
            x, y = gather(d, "train", ids)  # [B, 784], [B]
            out = model(x)  # [B, 10]
            loss = F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()  # no sync per step
            if "accuracy" in names:  # training accuracy from the step's logits
                correct += (out.detach().argmax(1) == y).sum()
                seen += len(y)
            on_first_step()
    rec = {"loss": float(total) / max(steps * epochs, 1)}
    if "accuracy" in names:
        rec["train_accuracy"] = int(correct) / max(seen, 1)
    return rec


@torch.no_grad()
def evaluate(model, d, cfg, names) -> dict:
    """Accuracy (and, when asked, loss and the confusion matrix) on every test experience."""
    model.eval()
    eval_bs, accs, losses = int(cfg["eval_mb_size"]), [], []
    dev = d["test_y"].device
    confusion = torch.zeros(100, dtype=torch.int64, device=dev)
    for test in d["test_exps"]:
        correct, loss = torch.zeros((), dtype=torch.int64, device=dev), torch.zeros((), device=dev)
        for s in range(0, len(test), eval_bs):
            x, y = gather(d, "test", test[s : s + eval_bs])
            out = model(x)  # [B, 10]
            pred = out.argmax(1)
            correct += (pred == y).sum()
            if "loss" in names:
                loss += F.cross_entropy(out, y, reduction="sum")
            if "confusion" in names:
                confusion += torch.bincount(y * 10 + pred, minlength=100)
        accs.append(int(correct) / max(len(test), 1))
        losses.append(float(loss) / max(len(test), 1))
    rec = {"accuracy": accs}
    if "loss" in names:
        rec["test_loss"] = losses
    if "confusion" in names:
        rec["confusion"] = confusion.view(10, 10).tolist()
    return rec


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config")
    ap.add_argument("--json", help="write the per-experience timings and accuracies here")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="time phases by wall or process CPU clock")
    args = ap.parse_args(argv)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    cfg = yaml.safe_load(Path(args.config).read_text())
    check(cfg)
    names = measured(cfg)
    seed, max_size = int(cfg["seed"]), int(cfg["buffer"]["max_size"])
    torch.set_flush_denormal(True)  # as replay run does: same arithmetic, same numbers
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    d = load(cfg)
    model = build_model(cfg).to(device(cfg))
    opt_cfg = {k: v for k, v in cfg["optimizer"].items() if k not in ("_target_", "_partial_")}
    opt_name = cfg["optimizer"]["_target_"].rsplit(".", 1)[1]
    if opt_name not in ("Adam", "SGD"):
        fail(f"optimizer {opt_name} is not supported (Adam, SGD)")
    opt = getattr(torch.optim, opt_name)(model.parameters(), **opt_cfg)
    y_train = lambda ids: d["train_y"][ids % len(d["train_y"])]  # noqa: E731
    mem_ids = torch.empty(0, dtype=torch.int64, device=device(cfg))
    mem_keys = torch.empty(0, device=device(cfg))
    first: dict = {}

    def on_first_step() -> None:
        if not first:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            first.update(first_step_time=time.time(), first_step_cpu=time.process_time())

    records = []
    for e, cur in enumerate(d["train_exps"]):
        t0 = clock()
        trained = train(model, opt, d, cur, mem_ids, cfg, gen, names, on_first_step)
        t1 = clock()
        mem_ids, mem_keys = update_buffer(mem_ids, mem_keys, cur, max_size, y_train, gen)
        t2 = clock()
        test = evaluate(model, d, cfg, names)
        t3 = clock()
        records.append(
            {
                "experience": e,
                **test,
                **trained,
                "histogram": torch.bincount(y_train(mem_ids), minlength=10).tolist(),
                "train_seconds": t1 - t0,
                "buffer_seconds": t2 - t1,
                "eval_seconds": t3 - t2,
                "seconds": t3 - t0,
                "rss_mb": _rss_mb(),
                "end_time": time.time(),
            }
        )
    out = {**first, "records": records, "peak_rss_mb": _peak_rss_mb()}
    if args.json:
        Path(args.json).write_text(json.dumps(out))
    return out


def _peak_rss_mb() -> float:
    """Peak resident memory of this process image (VmHWM; getrusage would count the parent's)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def _rss_mb() -> float:
    """Resident memory now (not the peak), from /proc."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


if __name__ == "__main__":
    main()
