"""`replay plot PATH [--by KEY]`: PNG figures of a run or a sweep, written into its directory.

A run: the accuracy matrix as a heatmap, the accuracy on each test experience over time, the
buffer's class histogram per experience as stacked bars, and (with `metrics=[...,confusion]`) the
test stream's confusion matrix after the last experience. A sweep: the final accuracy against the
swept key (mean and std over seeds as error bars), and per group the accuracy on the experiences
seen so far, after each experience.
Every figure is FIGSIZE at DPI (640 x 400 pixels). matplotlib (Agg) is imported here only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from replaycli.outputs import compare, rundir, sweepdir
from replaycli.outputs.rundir import OutputError

FIGSIZE, DPI = (6.4, 4.0), 100
RUN_FIGURES = ("accuracy_matrix.png", "accuracy_curves.png", "buffer_histogram.png")
CONFUSION_FIGURE = "confusion.png"  # runs with a confusion matrix only
SWEEP_FIGURES = ("final_accuracy.png", "seen_accuracy.png")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    """Write `fig` to `path` atomically (a temporary file, then a rename), as every output is."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)  # no bbox_inches="tight": every figure keeps its size in pixels
    _pyplot().close(fig)
    try:
        rundir.write_atomic(path, buf.getvalue())
    except OSError as e:
        raise OutputError(f"cannot write {path} ({e.strerror or e}); allowed: a writable run or sweep directory") from None
    return path


# --- a run ------------------------------------------------------------------------------------
def accuracy_matrix(acc: list[list[float]], title: str, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE, layout="constrained")
    im = ax.imshow(acc, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")  # [trained, tested]
    if len(acc[0]) <= 10:
        for i, row in enumerate(acc):
            for j, a in enumerate(row):
                ax.text(j, i, f"{a:.2f}", ha="center", va="center", fontsize=8, color="white" if a < 0.6 else "black")
    ax.set(xlabel="test experience", ylabel="after training experience", title=title)
    ax.set_xticks(range(len(acc[0])))
    ax.set_yticks(range(len(acc)))
    fig.colorbar(im, ax=ax, label="accuracy")
    return _save(fig, path)


def accuracy_curves(acc: list[list[float]], title: str, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE, layout="constrained")
    steps = list(range(len(acc)))
    for j in range(len(acc[0])):
        # test experience j from when it is trained on
        ax.plot(steps[j:], [row[j] for row in acc[j:]], marker="o", ms=3, lw=1, label=f"test {j}")
    seen = [sum(row[: t + 1]) / len(row[: t + 1]) for t, row in enumerate(acc)]  # experiences 0..t
    ax.plot(steps, seen, color="black", lw=2.5, label="seen so far")
    ax.set(xlabel="after training experience", ylabel="accuracy", ylim=(0, 1.02), title=title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=7, ncol=2 if len(acc[0]) > 6 else 1, loc="lower left")
    return _save(fig, path)


def buffer_histogram(hists: list[list[int]], title: str, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE, layout="constrained")
    n = len(hists[0])
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20" if n <= 20 else "viridis")
    bottom = [0] * len(hists)
    for k in range(n):
        counts = [h[k] for h in hists]
        ax.bar(range(len(hists)), counts, bottom=bottom, color=cmap(k / max(n - 1, 1) if n > 20 else k),
               label=f"class {k}" if n <= 20 else None)
        bottom = [b + c for b, c in zip(bottom, counts)]
    ax.set(xlabel="after training experience", ylabel="samples in the buffer", title=title)
    ax.set_xticks(range(len(hists)))
    if n <= 20:
        ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def confusion(matrix: list[list[int]], title: str, path: Path) -> Path:
    """Rows: true class, columns: predicted; colour: the share of the true class (row-normalised)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE, layout="constrained")
    n = len(matrix)
    shares = [[c / max(sum(row), 1) for c in row] for row in matrix]
    im = ax.imshow(shares, vmin=0.0, vmax=1.0, cmap="Blues", aspect="auto")
    if n <= 10:
        for i, row in enumerate(matrix):
            for j, c in enumerate(row):
                if c:
                    ax.text(j, i, str(c), ha="center", va="center", fontsize=7,
                            color="white" if shares[i][j] > 0.6 else "black")
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    if n <= 20:
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
    fig.colorbar(im, ax=ax, label="share of the true class")
    return _save(fig, path)


def plot_run(path: Path) -> list[Path]:
    rec = rundir.read_run(path)
    if not rec.accuracy:
        raise OutputError(f"{path} has no finished experience to plot yet")
    state = sweepdir.status(path)
    name = f"{path.parent.name}/{path.name}" if path.name.isdigit() else path.name  # a sweep's job
    name += "" if state == "complete" else f" ({state})"
    final = sum(rec.accuracy[-1]) / len(rec.accuracy[-1])
    figures = [
        accuracy_matrix(rec.accuracy, f"{name}: accuracy, final {final:.3f}", path / RUN_FIGURES[0]),
        accuracy_curves(rec.accuracy, f"{name}: accuracy per test experience", path / RUN_FIGURES[1]),
        buffer_histogram(rec.histograms, f"{name}: buffer samples per class", path / RUN_FIGURES[2]),
    ]
    if rec.confusion:
        title = f"{name}: test stream after experience {len(rec.confusion) - 1}"
        figures.append(confusion(rec.confusion[-1], title, path / CONFUSION_FIGURE))
    return figures


# --- a sweep ----------------------------------------------------------------------------------
def _series(groups: list[dict[str, Any]], keys: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The groups split into lines: the first key is the x axis, the others name the line."""
    lines: dict[str, list[dict[str, Any]]] = {}
    for g in groups:
        label = ", ".join(f"{k}={g[k]}" for k in keys[1:]) or "mean ± std over seeds"
        lines.setdefault(label, []).append(g)
    return lines


def final_accuracy(groups: list[dict[str, Any]], keys: list[str], title: str, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE, layout="constrained")
    x_key = keys[0] if keys else None
    cats = list(dict.fromkeys(str(g.get(x_key)) for g in groups)) if x_key else ["all runs"]
    numeric = x_key is not None and all(compare.sort_key(g.get(x_key))[0] == 0 for g in groups)
    for label, gs in _series(groups, keys).items():
        xs = [float(g[x_key]) if numeric else cats.index(str(g.get(x_key))) if x_key else 0 for g in gs]
        ax.errorbar(xs, [g["final_accuracy_mean"] for g in gs], yerr=[g["final_accuracy_std"] for g in gs],
                    marker="o", capsize=4, label=f"{label} (n={'/'.join(str(g['n']) for g in gs)})")
    if numeric:
        xs = sorted({float(g[x_key]) for g in groups})
        if xs[0] > 0 and xs[-1] / xs[0] >= 8:
            ax.set_xscale("log", base=2)  # memory sizes are swept by doubling
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.minorticks_off()
    else:
        ax.set_xticks(range(len(cats)), cats)
    ax.set(xlabel=x_key or "all runs", ylabel="final accuracy (stream)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def seen_accuracy(groups: list[dict[str, Any]], keys: list[str], title: str, path: Path) -> Path:
    """After each experience, the accuracy on the experiences trained so far, the mean over each
    group's runs (at the last experience: the final accuracy)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE, layout="constrained")
    cmap = plt.get_cmap("tab10")
    for i, g in enumerate(groups):
        accs = [rundir.read_run(p).accuracy for p in g["runs"]]
        curves = [[sum(row[: t + 1]) / len(row[: t + 1]) for t, row in enumerate(acc)] for acc in accs]
        steps = min(len(c) for c in curves)
        mean = [sum(c[t] for c in curves) / len(curves) for t in range(steps)]
        label = ", ".join(f"{k}={g[k]}" for k in keys) or "all runs"
        ax.plot(range(steps), mean, marker="o", ms=3, color=cmap(i % 10), label=f"{label} (n={g['n']})")
    ax.set(xlabel="after training experience", ylabel="accuracy on seen experiences", title=title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_sweep(path: Path, by: list[str] | None = None) -> list[Path]:
    d = compare.compare([path], by)
    keys, groups = d["by"], d["groups"]
    name = path.name
    return [
        final_accuracy(groups, keys, f"{name}: final accuracy", path / SWEEP_FIGURES[0]),
        seen_accuracy(groups, keys, f"{name}: accuracy on the experiences seen", path / SWEEP_FIGURES[1]),
    ]


def plot(path: str | Path, by: list[str] | None = None) -> list[Path]:
    """Write the figures of a run or a sweep into it (or of every run and sweep of an outputs
    directory, into each); returns their paths."""
    path = Path(path)
    if rundir.is_run(path):
        return plot_run(path)
    if sweepdir.is_sweep(path):
        return plot_sweep(path, by)
    if sweepdir.is_job(path):
        raise OutputError(f"{path} is a job that {sweepdir.status(path)} before it wrote a run "
                          f"({sweepdir.error(path) or 'no config.yaml'}); nothing to plot")
    runs, sweeps = sweepdir.find_outputs(path) if path.is_dir() else ([], [])
    if runs or sweeps:  # an outputs directory: every sweep and run in it that has something to plot
        files: list[Path] = []
        for child in sweeps + runs:
            try:
                files += plot(child, by)
            except OutputError:  # a run killed before its first experience: nothing to draw
                continue
        if files:
            return files
    raise OutputError(f"{path} is not a run or a sweep directory; allowed: a directory with config.yaml, "
                      "or a sweep directory (replay inspect lists them)")


def main(args: list[str]) -> int:
    """`replay plot PATH [--by KEY]`: prints the paths of the figures written."""
    from replaycli.verbargs import ArgParser, keys

    p = ArgParser(prog="replay plot", description="Write PNG figures of a run or a sweep into its directory.")
    p.add_argument("path", metavar="PATH", help="a run directory or a sweep directory")
    p.add_argument("--by", action="append", metavar="KEY",
                   help="a sweep's x axis (then its lines): config keys; default: the keys that differ")
    a = p.parse_args(args)
    files = plot(a.path, keys(a.by))  # ConfigError / OutputError: one line and exit 2, in replaycli.cli
    for f in files:
        print(f)
    return 0
