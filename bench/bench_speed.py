"""replaycli against the floor (bench/floor.py, plain PyTorch) on the same config, in one run.

    python bench/bench_speed.py                       # every part, 5 alternating repetitions
    python bench/bench_speed.py --parts tutorial --reps 3
    python bench/bench_speed.py --profile             # + where replaycli's time goes (cProfile)

Parts:
  tutorial  `replay run +experiment=tutorial` on a 60,000-sample SplitMNIST vs the floor, each in
            its own process, alternating (and alternating who goes first): training, evaluation,
            buffer updates, start-up (process spawn to the end of the first training step) and
            peak RSS (VmHWM of each process, read by itself at its end).
  buffer    a class-grouped ParametricBuffer(500) update on experiences of 1,500 to 48,000
            samples (the 12,000 case is SplitMNIST's), replaycli vs the floor's update, in process.
  scale     50-experience PermutedMNIST (mnist-5k, 1,000 test digits, a 128-unit MLP): time per
            experience, buffer update and resident memory from the first full-buffer experience
            to the last.
  cifar     SplitCIFAR10 batches with random crop (padding 4) and flip: replaycli's batched
            CropFlip through its ReplayDataLoader vs a per-sample torchvision DataLoader.
Ratios are replaycli / floor (or baseline) from adjacent runs, median over repetitions: on a
shared machine that is what holds still while absolute times drift.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import datafiles  # noqa: E402

TUTORIAL = ["+experiment=tutorial"]
SCALE = ["+experiment=tutorial", "benchmark=permuted_mnist", "benchmark.n_experiences=50", "model.hidden_size=128"]
DEVICE = "cpu"  # both sides' device: set by --device
EXTRA: list[str] = []  # more overrides for the tutorial and scale runs: --override
med = statistics.median
CLOCK = "cpu"  # how both sides time their phases: set by --clock


def now() -> float:
    if DEVICE == "cuda":
        import torch

        torch.cuda.synchronize()
    return time.process_time() if CLOCK == "cpu" else time.perf_counter()


def compose(overrides: list[str]) -> str:
    """The resolved config of `replay run OVERRIDES`, as YAML (what the floor reads)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from omegaconf import OmegaConf

    with initialize_config_module(config_module="replaycli.configs", version_base="1.3"):
        return OmegaConf.to_yaml(hydra_compose(config_name="config", overrides=overrides), resolve=True)


def spawn(cmd: list[str], log: Path, env: dict | None = None) -> float:
    """Run `cmd` (output to `log`), stopping the bench if it fails; returns its spawn wall time."""
    t0 = time.time()
    with open(log, "w") as out:
        code = subprocess.run(
            cmd, check=False, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent, env=env
        ).returncode
    if code:
        sys.exit(f"bench: {Path(cmd[1]).name} failed (exit {code}); see {log}:\n{log.read_text()[-3000:]}")
    return t0


def run_replay(work: Path, tag: str, overrides: list[str], env_profile: str | None = None) -> dict:
    run_dir, probe_out = work / f"replay-{tag}", work / f"probe-{tag}.json"
    cmd = [
        sys.executable,
        str(HERE / "probe.py"),
        str(probe_out),
        "run",
        *overrides,
        "progress=none",
        f"hydra.run.dir={run_dir}",
    ]
    env = dict(os.environ, REPLAY_BENCH_CLOCK=CLOCK, **({"REPLAY_BENCH_PROFILE": env_profile} if env_profile else {}))
    t0 = spawn(cmd, work / f"replay-{tag}.log", env)
    probe = json.loads(probe_out.read_text())
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    for r, p_ in zip(records, probe["experiences"], strict=True):
        r["rss_mb"], r["end_time"] = p_["rss_mb"], p_["time"]
    return summarise(records, probe["first_step_time"] - t0, probe["first_step_cpu"], probe["peak_rss_mb"])


def run_floor(work: Path, tag: str, config: Path) -> dict:
    out = work / f"floor-{tag}.json"
    cmd = [sys.executable, str(HERE / "floor.py"), str(config), "--json", str(out), "--clock", CLOCK]
    t0 = spawn(cmd, work / f"floor-{tag}.log")
    d = json.loads(out.read_text())
    return summarise(d["records"], d["first_step_time"] - t0, d["first_step_cpu"], d["peak_rss_mb"])


def summarise(records: list[dict], startup: float, startup_cpu: float, rss: float) -> dict:
    """One run's totals and per-experience series from its metrics records."""
    return {
        "train": sum(r["train_seconds"] for r in records),
        "eval": sum(r["eval_seconds"] for r in records),
        "buffer_ms": 1000 * med(r["buffer_seconds"] for r in records),
        "startup": startup,
        "startup_cpu": startup_cpu,
        "rss": rss,
        "seconds": [r["seconds"] for r in records],
        "buffer_each": [r["buffer_seconds"] for r in records],
        "rss_each": [r["rss_mb"] for r in records],
        "accuracy": [r["accuracy"] for r in records],
        "wall_each": [b["end_time"] - a["end_time"] for a, b in itertools.pairwise(records)],  # exp 1, 2, ...
    }


def alternate(reps: int, a, b) -> tuple[list[dict], list[dict]]:
    """`reps` runs of a() and b(), adjacent, the first of each pair alternating."""
    ra, rb = [], []
    for i in range(reps):
        for f in (a, b) if i % 2 == 0 else (b, a):
            (ra if f is a else rb).append(f(i))
        print(
            f"  rep {i + 1}/{reps}: replaycli train {ra[-1]['train']:.2f}s eval {ra[-1]['eval']:.2f}s | "
            f"floor train {rb[-1]['train']:.2f}s eval {rb[-1]['eval']:.2f}s",
            flush=True,
        )
    return ra, rb


def paired(ra: list[dict], rb: list[dict], key: str) -> tuple[float, float, float]:
    """(median of replaycli, median of the floor, median of the per-repetition ratios)."""
    return med(r[key] for r in ra), med(r[key] for r in rb), med(x[key] / y[key] for x, y in zip(ra, rb, strict=True))


def part_tutorial(work: Path, reps: int, lines: list[str]) -> None:
    root = work / "mnist60k"
    origin = datafiles.write_mnist_root(root, train_repeat=12)
    overrides = [*TUTORIAL, f"device={DEVICE}", f"data_root={root}", "download=false", *EXTRA]
    config = work / "tutorial.yaml"
    config.write_text(compose(overrides))
    print(f"tutorial: 60,000-sample SplitMNIST ({origin} x 12), {reps} alternating repetitions", flush=True)
    ra, rb = alternate(
        reps, lambda i: run_replay(work, f"tutorial{i}", overrides), lambda i: run_floor(work, f"tutorial{i}", config)
    )
    same = all(x["accuracy"] == y["accuracy"] for x, y in zip(ra, rb, strict=True))
    rows = [
        ("training (s, 5 experiences)", "train", "<= 1.10x the floor", lambda r: r <= 1.10),
        ("evaluation (s, 5 x 10,000 test digits)", "eval", "<= 1.20x the floor", lambda r: r <= 1.20),
        ("buffer update (ms, 12,000 samples)", "buffer_ms", "< 5 ms", None),
        ("start-up (s, spawn to the end of the first step)", "startup", "< 3 s", None),
        ("start-up CPU time (s, the same span)", "startup_cpu", "", None),
        ("peak RSS (MB)", "rss", "<= the floor's", lambda r: r <= 1.0),
    ]
    lines += [
        f"### Tutorial replay config on 60,000-sample SplitMNIST ({origin} x 12), {reps} repetitions",
        "",
        f"`replay run {' '.join(overrides)}` vs `python bench/floor.py <that config>`; "
        f"identical accuracy matrices in every repetition: **{'yes' if same else 'NO'}**.",
        "",
        "| measure | replaycli (median) | floor (median) | ratio (median of pairs) | target | met |",
        "|---|---:|---:|---:|---|---|",
    ]
    for name, key, target, ok in rows:
        a, b, ratio = paired(ra, rb, key)
        met = ok(ratio) if ok else {"buffer_ms": a < 5, "startup": a < 3}.get(key)
        verdict = "" if met is None else "yes" if met else "no"
        lines.append(f"| {name} | {a:.3f} | {b:.3f} | {ratio:.3f}x | {target} | {verdict} |")
    lines.append("")


def part_buffer(work: Path, reps: int, lines: list[str]) -> None:
    from types import SimpleNamespace

    import floor
    import torch

    from replaycli.benchmarks import Experience
    from replaycli.buffers import ParametricBuffer
    from replaycli.data.dataset import StreamDataset
    from replaycli.data.pool import Pool

    print("buffer: grouped ParametricBuffer(500) updates", flush=True)
    y = torch.arange(250_000) % 10  # a pool whose class c holds the ids = c (mod 10)
    pool = Pool(torch.zeros(len(y), 1, 1, 1, dtype=torch.uint8), y).to(DEVICE)
    y = y.to(DEVICE)
    prev = (y < 2).nonzero().flatten()[:12_000]  # experience 0: classes 0, 1 (fills the buffer)
    rows = []
    for n in (1_500, 3_000, 6_000, 12_000, 24_000, 48_000):
        new = ((y == 2) | (y == 3)).nonzero().flatten()[:n]  # experience 1: n samples of classes 2, 3
        times_r, times_f = [], []
        for i in range(max(reps, 5) * 4):
            g = torch.Generator().manual_seed(i)
            buf = ParametricBuffer(500, groupby="class", generator=g)
            buf.update(SimpleNamespace(experience=Experience(StreamDataset(pool, prev), 0, [0, 1], 0)))
            exp = SimpleNamespace(experience=Experience(StreamDataset(pool, new), 1, [2, 3], 0))
            t = now()
            buf.update(exp)
            times_r.append(now() - t)
            assert len(buf) == 500 and buf.class_histogram(10)[:4].tolist() == [125] * 4
            empty = torch.empty(0, dtype=torch.int64, device=DEVICE)
            ids, keys = floor.update_buffer(empty, empty.float(), prev, 500, lambda i: y[i], g)
            t = now()
            floor.update_buffer(ids, keys, new, 500, lambda i: y[i], g)
            times_f.append(now() - t)
        rows.append((n, 1000 * med(times_r), 1000 * med(times_f)))
    # linear growth: a fixed cost plus a per-sample cost, fitted by least squares
    ns, ts = [r[0] for r in rows], [r[1] for r in rows]
    slope, fixed = _fit(ns, ts)
    worst = max(abs(t - (fixed + slope * n)) / t for n, t in zip(ns, ts, strict=True))
    lines += [
        "### Grouped buffer update (ParametricBuffer 500, groupby=class, random), buffer full before",
        "",
        "| experience size | replaycli (ms) | floor (ms) | replaycli us/sample |",
        "|---:|---:|---:|---:|",
    ]
    lines += [f"| {n:,} | {a:.2f} | {b:.2f} | {1000 * a / n:.3f} |" for n, a, b in rows]
    lines += [
        "",
        f"Fit: {fixed:.2f} ms + {1000 * slope:.3f} us x samples; largest deviation from the line "
        f"{100 * worst:.0f}%. 12,000-sample update: {rows[3][1]:.2f} ms (target < 5 ms: "
        f"{'met' if rows[3][1] < 5 else 'not met'}).",
        "",
    ]


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return slope, my - slope * mx


def part_scale(work: Path, reps: int, lines: list[str]) -> None:
    root = work / "mnist5k"
    origin = datafiles.write_mnist_root(root, train_repeat=1, n_test=1000)
    overrides = [*SCALE, f"device={DEVICE}", f"data_root={root}", "download=false", *EXTRA]
    config = work / "scale.yaml"
    config.write_text(compose(overrides))
    print(f"scale: 50-experience PermutedMNIST ({origin}), {reps} alternating repetitions", flush=True)
    ra, rb = alternate(
        reps, lambda i: run_replay(work, f"scale{i}", overrides), lambda i: run_floor(work, f"scale{i}", config)
    )
    lines += [
        f"### Scale: 50-experience PermutedMNIST ({origin}: 5,000 training digits per experience, 1,000 test "
        f"digits x 50 permutations evaluated after every experience), {reps} repetition(s)",
        "",
        f"`replay run {' '.join(overrides)}`",
        "",
        "| measure | replaycli | floor | target |",
        "|---|---:|---:|---|",
    ]
    for name, fn, target in (
        ("experience time, first full-buffer (exp 1-5, s)", lambda r: med(r["seconds"][1:6]), ""),
        ("experience time, last (exp 45-49, s)", lambda r: med(r["seconds"][-5:]), ""),
        ("last / first full-buffer", lambda r: med(r["seconds"][-5:]) / med(r["seconds"][1:6]), "within 0.80-1.20"),
        (
            "trend over exp 1-49: line through 7 block medians (% change)",
            lambda r: _drift(r["seconds"][1:]),
            "within +-20%",
        ),
        ("wall time per experience incl. checkpoint and outputs, exp 1-5 (s)", lambda r: med(r["wall_each"][:5]), ""),
        (
            "wall time per experience incl. checkpoint and outputs, exp 45-49 (s)",
            lambda r: med(r["wall_each"][-5:]),
            "(wall: noisy here)",
        ),
        ("buffer update, exp 1-5 (ms)", lambda r: 1000 * med(r["buffer_each"][1:6]), ""),
        ("buffer update, exp 45-49 (ms)", lambda r: 1000 * med(r["buffer_each"][-5:]), "flat (same size each)"),
        ("resident memory after exp 1 (MB)", lambda r: r["rss_each"][1], ""),
        ("resident memory after exp 49 (MB)", lambda r: r["rss_each"][-1], "no growth"),
        ("training total (s)", lambda r: r["train"], ""),
        ("evaluation total (s)", lambda r: r["eval"], ""),
    ):
        a, b = med(fn(r) for r in ra), med(fn(r) for r in rb)
        lines.append(f"| {name} | {a:.3f} | {b:.3f} | {target} |")
    lines.append("")


def _drift(seconds: list[float], blocks: int = 7) -> float:
    """Change from start to end of a least-squares line through the medians of `blocks` equal
    blocks of experiences, as % of its start (block medians: one slow experience cannot tilt it)."""
    size = len(seconds) // blocks
    meds = [med(seconds[i * size : (i + 1) * size]) for i in range(blocks)]
    slope, start = _fit(list(range(blocks)), meds)
    return 100 * slope * (blocks - 1) / start


def part_cifar(work: Path, reps: int, lines: list[str]) -> None:
    from types import SimpleNamespace

    import torch
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    from replaycli.benchmarks import SplitCIFAR10
    from replaycli.buffers import ParametricBuffer
    from replaycli.loaders import ReplayDataLoader

    root = work / "cifar"
    datafiles.write_cifar10_root(root)
    bench = SplitCIFAR10(5, root=root, download=False).to(DEVICE)
    g = torch.Generator().manual_seed(0)
    buf = ParametricBuffer(500, groupby="class", generator=g)
    buf.update(SimpleNamespace(experience=bench.train_stream[0]))
    data = bench.train_stream[1].dataset.train()  # 10,000 samples, plus the memory of 500
    pool = bench.train_pool

    class PerSample(Dataset):  # what torchvision's CIFAR10 does per sample: PIL image, then transforms
        def __init__(self, ids):
            from PIL import Image

            self.image, self.x = Image.fromarray, pool.x.permute(0, 2, 3, 1).cpu().numpy()  # [N, 32, 32, 3]
            self.y, self.ids = pool.y.tolist(), ids.tolist()
            mean, std = pool.mean.flatten().tolist(), pool.std.flatten().tolist()
            self.tf = T.Compose(
                [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)]
            )

        def __len__(self):
            return len(self.ids)

        def __getitem__(self, i):
            j = self.ids[i]
            return self.tf(self.image(self.x[j])), self.y[j]

    per_sample = PerSample(torch.cat([data.ids, buf.buffer.ids]))

    def ours(_i):
        t, n = time.perf_counter(), 0
        loader = ReplayDataLoader(data, buf.buffer, True, batch_size=100, batch_size_mem=32, shuffle=True, generator=g)
        for x, _y, _t in loader:
            n += len(x)
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        return {"rate": n / (time.perf_counter() - t)}

    def theirs(workers):
        def go(_i):
            t, n = time.perf_counter(), 0
            for x, _y in DataLoader(per_sample, batch_size=132, shuffle=True, num_workers=workers):
                n += len(x)
            return {"rate": n / (time.perf_counter() - t)}

        return go

    print("cifar: batched CropFlip vs per-sample torchvision DataLoader", flush=True)
    results = {}
    for workers in (0, 2):
        ra, rb = [], []
        for i in range(max(2, reps // 2)):
            for f in (ours, theirs(workers)) if i % 2 == 0 else (theirs(workers), ours):
                (ra if f is ours else rb).append(f(i))
        results[workers] = paired(ra, rb, "rate")
    lines += [
        "### Data-bound: SplitCIFAR10 batches (100 current + 32 memory), random crop (padding 4) and flip",
        "",
        "| pipeline | samples/s | replaycli's speed-up | target |",
        "|---|---:|---:|---|",
    ]
    lines.append(f"| replaycli: ReplayDataLoader, uint8 pool, batched CropFlip | {results[0][0]:,.0f} | | |")
    for w, (_a, b, r) in results.items():
        name = f"torchvision per-sample transforms, DataLoader num_workers={w}"
        lines.append(f"| {name} | {b:,.0f} | {r:.1f}x | >= 10x |")
    lines.append("")


def profile(work: Path, lines: list[str]) -> None:
    import io
    import pstats

    root = work / "mnist60k"
    if not root.exists():
        datafiles.write_mnist_root(root, train_repeat=12)
    prof = work / "replay.prof"
    overrides = [*TUTORIAL, f"device={DEVICE}", f"data_root={root}", "download=false", *EXTRA]
    run_replay(work, "profile", overrides, env_profile=str(prof))
    buf = io.StringIO()
    stats = pstats.Stats(str(prof), stream=buf)
    stats.sort_stats("tottime").print_stats(25)
    lines += [
        "### cProfile of one tutorial run, from its first step to its end (top 25 by own time)",
        "",
        "```",
        *_trim(buf.getvalue()),
        "```",
        "",
    ]


def _trim(text: str) -> list[str]:
    out = [line.rstrip() for line in text.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(out) if "ncalls" in line), 0)
    return out[max(0, start - 2) :]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="tutorial,buffer,scale,cifar", help="comma-separated subset of the default")
    ap.add_argument("--reps", type=int, default=5, help="alternating repetitions of each side (scale: --scale-reps)")
    ap.add_argument("--scale-reps", type=int, default=1)
    ap.add_argument("--profile", action="store_true", help="also profile one replaycli tutorial run")
    ap.add_argument("--out", help="also write the markdown tables to this file")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads on both sides (0: torch's default); see bench/RESULTS.md",
    )
    ap.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="time the phases (train, buffer, eval) by process CPU time or wall time, on both sides",
    )
    ap.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="both sides' device (cuda: data, model and buffer on the GPU; timed by wall clock)",
    )
    ap.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one more `replay run` override for the tutorial and scale runs (both sides), repeatable",
    )
    ap.add_argument("--workdir", help="keep data, run dirs and logs here (default: a temporary folder)")
    args = ap.parse_args()
    parts = args.parts.split(",")
    unknown = set(parts) - {"tutorial", "buffer", "scale", "cifar"}
    if unknown:
        sys.exit(f"bench: unknown part(s) {', '.join(sorted(unknown))}; allowed: tutorial, buffer, scale, cifar")
    global CLOCK, DEVICE
    CLOCK, DEVICE = ("wall" if args.device == "cuda" else args.clock), args.device
    EXTRA.extend(args.override)
    if args.threads > 0:  # children read OMP_NUM_THREADS at start-up; this process sets it directly
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
        import torch

        torch.set_num_threads(args.threads)
    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="replay-bench-")
    work = Path(args.workdir or tmp.name).resolve()
    work.mkdir(parents=True, exist_ok=True)
    threads = args.threads if args.threads > 0 else "torch default"
    lines = [
        f"Machine: {os.cpu_count()} CPU cores, CUDA: {_cuda()}, device: {DEVICE}, torch threads per process: "
        f"{threads}, phases timed by {CLOCK} clock; {time.strftime('%Y-%m-%d %H:%M')}",
        "",
    ]
    for part in parts:
        run_part = {"tutorial": part_tutorial, "buffer": part_buffer, "scale": part_scale, "cifar": part_cifar}[part]
        run_part(work, args.scale_reps if part == "scale" else args.reps, lines)
    if args.profile:
        profile(work, lines)
    text = "\n".join(lines)
    print("\n" + text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if tmp:
        tmp.cleanup()


def _cuda() -> str:
    probe = [sys.executable, "-c", "import torch; print(torch.cuda.is_available())"]
    out = subprocess.run(probe, check=False, capture_output=True, text=True)
    return "available" if out.stdout.strip() == "True" else "none"


if __name__ == "__main__":
    main()
