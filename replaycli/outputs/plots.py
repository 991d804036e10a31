"""`replay plot PATH [--by KEY] [--format png|pdf|svg] [--dpi N] [--ylim full|auto] [--size S]
[--no-title] [--xscale auto|linear|log|category]`: figures of a run or a sweep, written into its
directory.

A run: the accuracy matrix as a heatmap, the accuracy on each test experience over time with the
seen-so-far mean, the buffer's class histogram per experience as stacked bars, and (with
`metrics=[...,confusion]`) the test stream's confusion matrix after the last experience. A sweep:
the final accuracy against the swept key (mean ± std over the seeds of each point as error bars;
a key of text or `--xscale category` is points, never joined by a line; positive numbers spanning 4x
or more on a log axis), and per group the accuracy on the experiences seen so far, after each
experience, with a band of ± one std over its seeds. A second key is the colour, a third the line
style and marker. Experiences are numbered from 1, classes by their names (class_names.json) where
the data had names. Titles say what every curve shares (benchmark, method, buffer), unless
`--no-title`; legends say n and what the spread is over; accuracy axes run from 0 to 1 unless
`--ylim auto`. Colours are the Okabe-Ito palette (safe for colour-blind readers), Paul Tol's muted
one for 9-10, then cividis. A sweep plotted `--by KEY` writes `<figure>_by_<KEY>.<format>`, and any
option other than the defaults adds its name (figures.Style.name): no figure overwrites another's.
Sizes and fonts: replaycli.outputs.figures. matplotlib is imported by `figures`, when a figure is
drawn.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from replaycli.outputs import compare, formulas, rundir, sweepdir
from replaycli.outputs.figures import (
    DPI,
    SIZES,
    Style,
    colours,
    common,
    describe,
    entry,
    figure,
    keyed,
    legend,
    looks,
    save,
    size_of,
)
from replaycli.outputs.files import OutputError
from replaycli.outputs.rundir import RUN_FIGURES
from replaycli.outputs.sweepdir import SWEEP_FIGURES

FORMATS = ("png", "pdf", "svg")
CONFUSION_FIGURE, ANYTIME_FIGURE = RUN_FIGURES[3:5]  # runs with a confusion matrix, an anytime curve only


# --- a run ------------------------------------------------------------------------------------
def numbered(ax: Any, axis: str, n: int) -> None:
    """Ticks at positions 0..n-1 labelled from 1 (experiences are counted from 1), at most ~20."""
    ticks = range(0, n, max(1, math.ceil(n / 20)))
    (ax.set_xticks if axis == "x" else ax.set_yticks)(list(ticks), [str(i + 1) for i in ticks])


def accuracy_matrix(acc: list[list[float]], title: str, style: Style) -> Any:
    fig, ax = figure(style)
    im = ax.imshow(acc, vmin=0.0, vmax=1.0, cmap="cividis", aspect="auto")  # [trained, tested]
    if len(acc[0]) <= 10 and len(acc) <= 12:
        for i, row in enumerate(acc):
            for j, a in enumerate(row):
                ax.text(
                    j, i, f"{a:.2f}", ha="center", va="center", fontsize="small", color="white" if a < 0.6 else "black"
                )
    style.label(ax, "test experience", "after training experience", title)
    numbered(ax, "x", len(acc[0]))
    numbered(ax, "y", len(acc))
    fig.colorbar(im, ax=ax, label="accuracy")
    return fig


def accuracy_curves(acc: list[list[float]], title: str, style: Style, origins: list[int] | None = None) -> Any:
    fig, ax = figure(style)
    steps = list(range(1, len(acc) + 1))  # after experience 1, 2, ...
    origins = list(range(len(acc))) if origins is None else origins
    n = len(acc[0])
    palette = colours(n)
    for j in range(n):
        start = next((i for i, o in enumerate(origins) if o >= j), len(acc))  # from when it is trained on
        ax.plot(
            steps[start:],
            [row[j] for row in acc[start:]],
            marker="o" if len(acc) <= 20 else None,
            ms=3,
            lw=1,
            color=palette[j],
            label=f"test {j + 1}",
        )
    ax.plot(steps, formulas.seen(acc, origins), color="black", lw=2.5, label="seen so far (mean)")
    style.label(ax, "after training experience", "accuracy", title)
    style.accuracy_axis(ax)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(
        fontsize="x-small" if n > 10 else "small", ncol=1 if n <= 10 else 2, loc="upper left", bbox_to_anchor=(1.0, 1.0)
    )
    return fig


def buffer_histogram(hists: list[list[int]], title: str, style: Style, names: list[str]) -> Any:
    fig, ax = figure(style)
    n = len(hists[0])
    palette = colours(n)
    bottom = [0] * len(hists)
    for k in range(n):
        counts = [h[k] for h in hists]
        ax.bar(range(len(hists)), counts, bottom=bottom, color=palette[k], label=names[k] if n <= 20 else None)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    style.label(ax, "after training experience", "samples in the buffer", title)
    numbered(ax, "x", len(hists))
    if n <= 20:
        ax.legend(fontsize="x-small" if n > 10 else "small", ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def confusion(matrix: list[list[int]], title: str, style: Style, names: list[str]) -> Any:
    """Rows: true class, columns: predicted; colour and numbers: the share of the true class."""
    fig, ax = figure(style)
    n = len(matrix)
    shares = [[c / max(sum(row), 1) for c in row] for row in matrix]
    im = ax.imshow(shares, vmin=0.0, vmax=1.0, cmap="Blues", aspect="auto")
    if n <= 10:
        for i, row in enumerate(shares):
            for j, share in enumerate(row):
                if matrix[i][j]:
                    ax.text(
                        j,
                        i,
                        f"{share:.2f}",
                        ha="center",
                        va="center",
                        fontsize="x-small",
                        color="white" if share > 0.6 else "black",
                    )
    style.label(ax, "predicted class", "true class", title)
    if n <= 20:
        ax.set_xticks(range(n), names, rotation=90 if max(map(len, names)) > 3 else 0)
        ax.set_yticks(range(n), names)
    fig.colorbar(im, ax=ax, label="share of the true class")
    return fig


def plot_run(path: Path, style: Style | None = None) -> list[Path]:
    style = style or Style()
    rec = rundir.read_run(path)
    if not rec.accuracy:
        raise OutputError(f"{path} has no finished experience to plot yet")
    state = sweepdir.status(path)
    what = describe(sweepdir.run_params(path))
    what += "" if state == "complete" else f" ({state})"
    final = sum(rec.accuracy[-1]) / len(rec.accuracy[-1])
    origins = rundir.origins(rec.metrics[: len(rec.accuracy)])
    names = rundir.class_names(path, len(rec.histograms[0]) if rec.histograms else 0)
    figures = [
        save(
            accuracy_matrix(rec.accuracy, f"accuracy, final {final:.3f}\n{what}", style),
            path / style.name(RUN_FIGURES[0]),
            style,
        ),
        save(
            accuracy_curves(rec.accuracy, f"accuracy per test experience\n{what}", style, origins),
            path / style.name(RUN_FIGURES[1]),
            style,
        ),
        save(
            buffer_histogram(rec.histograms, f"buffer samples per class\n{what}", style, names),
            path / style.name(RUN_FIGURES[2]),
            style,
        ),
    ]
    if rec.confusion:
        title = f"confusion on the test stream after experience {len(rec.confusion)}\n{what}"
        matrix = rec.confusion[-1]
        names = rundir.class_names(path, len(matrix))
        figures.append(save(confusion(matrix, title, style, names), path / style.name(CONFUSION_FIGURE), style))
    curve = formulas.anytime_curve(rec.metrics[: len(rec.accuracy)])
    if curve:
        title = f"anytime accuracy (every {curve[1][1] - curve[0][1] if len(curve) > 1 else 0} steps)\n{what}"
        figures.append(save(anytime(curve, title, style), path / style.name(ANYTIME_FIGURE), style))
    return figures


def anytime(curve: list[tuple[int, int, list[float]]], title: str, style: Style) -> Any:
    """The anytime curve (eval_every): the accuracy on each seen test experience and their mean
    against training steps, a dashed line at each switch to a new experience (where the stability
    gap opens)."""
    fig, ax = figure(style)
    n = max(len(acc) for _, _, acc in curve)
    palette = colours(n)
    for j in range(n):
        xs = [step for _, step, acc in curve if len(acc) > j]
        ax.plot(xs, [acc[j] for _, _, acc in curve if len(acc) > j], lw=1, color=palette[j], label=f"test {j + 1}")
    ax.plot(
        [step for _, step, _ in curve],
        [sum(acc) / len(acc) for _, _, acc in curve],
        color="black",
        lw=2,
        label="seen so far (mean)",
    )
    for (o, step, _), (before, _, _) in zip(curve[1:], curve, strict=False):
        if o != before:
            ax.axvline(step, color="grey", ls="--", lw=0.8)
    style.label(ax, "training step (dashed: a new experience begins)", "accuracy (test sample)", title)
    style.accuracy_axis(ax)
    legend(fig, ax, style, columns=1 if n <= 10 else 2)
    return fig


# --- a sweep ----------------------------------------------------------------------------------
def spread_note(groups: list[dict[str, Any]]) -> tuple[str | None, bool]:
    """(the legend's title, whether each entry says its own spread): said once when every group
    has the same number of runs, else per entry."""
    ns = {g["n"] for g in groups}
    return (spread_label(sorted(ns)), False) if len(ns) == 1 else (None, True)


def spread_label(ns: list[int]) -> str:
    """What a point's or a band's spread is over: `mean ± std over 3 seeds`, or `1 run, no spread`."""
    if max(ns) == 1:
        return "1 run each, no spread"
    n = str(ns[0]) if len(set(ns)) == 1 else f"{min(ns)}-{max(ns)}"
    return f"mean ± std over {n} seeds"


def axis_kind(groups: list[dict[str, Any]], x_key: str, style: Style) -> str:
    """How the swept key is drawn: `category` (text, or asked), `log` (positive numbers spanning 4x
    or more: memory sizes 100, 200, 500), else `linear`; `--xscale` decides where it is not auto."""
    numeric = bool(x_key) and all(compare.sort_key(g.get(x_key))[0] == 0 for g in groups)
    if style.xscale != "auto":
        if style.xscale != "category" and not numeric:
            raise OutputError(
                f"--xscale {style.xscale}: {x_key or 'the x axis'} is not numeric; allowed: category, auto"
            )
        if style.xscale == "log" and min(float(g[x_key]) for g in groups) <= 0:
            raise OutputError(f"--xscale log: {x_key} has values <= 0; allowed: linear, category, auto")
        return style.xscale
    if not numeric:
        return "category"
    xs = [float(g[x_key]) for g in groups]
    return "log" if min(xs) > 0 and max(xs) / min(xs) >= 4 else "linear"


def final_accuracy(groups: list[dict[str, Any]], keys: list[str], title_text: str, style: Style) -> Any:
    """The final accuracy against the first key; a line per value of the second key (its colour)
    and the third (its line style and marker); a categorical key: points with error bars, dodged."""
    fig, ax = figure(style)
    x_key = keys[0] if keys else ""  # "": one point, all runs
    kind = axis_kind(groups, x_key, style) if x_key else "category"
    cats = list(dict.fromkeys(str(g.get(x_key)) for g in groups)) if x_key else ["all runs"]
    lines: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for g in groups:
        lines.setdefault(tuple(str(g[k]) for k in keys[1:3]), []).append(g)
    names = list(lines)
    title, each = spread_note(groups)
    styles = looks([n[0] if n else "" for n in names], [n[1] for n in names] if len(keys) >= 3 else None)
    for i, ((name, gs), (colour, dash, marker)) in enumerate(zip(lines.items(), styles, strict=True)):
        if kind == "category":
            dodge = (i - (len(lines) - 1) / 2) * min(0.3, 0.6 / max(len(lines), 1))
            xs = [(cats.index(str(g.get(x_key))) if x_key else 0) + dodge for g in gs]
        else:
            xs = [float(g[x_key]) for g in gs]
        ys = [g["final_accuracy_mean"] for g in gs]
        errs = [g["final_accuracy_std"] or 0.0 for g in gs]
        label = entry(keys[1:3], list(name), style)
        ax.errorbar(
            xs,
            ys,
            yerr=errs if any(errs) else None,
            marker=marker,
            ls="none" if kind == "category" else dash,  # categories have no order: never joined
            capsize=3,
            color=colour,
            label=f"{label} ({spread_label([g['n'] for g in gs])})" if each else label,
        )
    if kind == "category":
        ax.set_xticks(range(len(cats)), cats, rotation=30 if sum(map(len, cats)) > 40 else 0)
        ax.set_xlim(-0.5, len(cats) - 0.5)
    else:
        xs = sorted({float(g[x_key]) for g in groups})
        if kind == "log":
            ax.set_xscale("log")
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.minorticks_off()
    style.label(ax, x_key or "all runs", "final accuracy (test stream)", title_text)
    style.accuracy_axis(ax)
    ax.grid(alpha=0.3)
    legend(fig, ax, style, keyed(keys[1:3], title, style))
    return fig


def seen_accuracy(groups: list[dict[str, Any]], keys: list[str], title_text: str, style: Style) -> Any:
    """After each experience (from 1), the accuracy on the experiences trained so far: the mean
    over each group's runs, with a band of ± one std over them (at the last experience: the final
    accuracy). Colour: the first key's value; line style and marker: the second's."""
    import statistics

    fig, ax = figure(style)
    title, each = spread_note(groups)
    styles = looks(
        [g[keys[0]] if keys else "" for g in groups], [g[keys[1]] for g in groups] if len(keys) >= 2 else None
    )
    for (colour, dash, marker), g in zip(styles, groups, strict=True):
        recs = [rundir.read_run(p) for p in g["runs"]]
        curves = [formulas.seen(r.accuracy, rundir.origins(r.metrics[: len(r.accuracy)])) for r in recs]
        steps = min(len(c) for c in curves)
        mean = [sum(c[t] for c in curves) / len(curves) for t in range(steps)]
        label = entry(keys, [g[k] for k in keys], style)
        xs = range(1, steps + 1)
        ax.plot(
            xs,
            mean,
            ls=dash,
            marker=marker if steps <= 20 else None,
            ms=3,
            color=colour,
            label=f"{label} ({spread_label([g['n']])})" if each else label,
        )
        if len(curves) > 1:
            std = [statistics.stdev(c[t] for c in curves) for t in range(steps)]
            ax.fill_between(
                xs,
                [m - s for m, s in zip(mean, std, strict=True)],
                [m + s for m, s in zip(mean, std, strict=True)],
                color=colour,
                alpha=0.2,
                lw=0,
            )
    style.label(ax, "after training experience", "accuracy, seen so far", title_text)
    style.accuracy_axis(ax)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    legend(fig, ax, style, keyed(keys, title, style), columns=1 if len(groups) <= 10 else 2)
    return fig


def plot_sweep(path: Path, by: list[str] | None = None, style: Style | None = None) -> list[Path]:
    style = style or Style()
    d = compare.displayed(compare.compare([path], by, ci=False), labels=list(style.labels))
    keys, groups = d["by"], d["groups"]
    what = common([sweepdir.run_params(Path(r)) for g in groups for r in g["runs"]], tuple(keys))
    suffix = f"_by_{'_'.join(keys)}" if by else ""  # --by: its own files, never the default figures
    return [
        save(
            final_accuracy(groups, keys, f"final accuracy\n{what}", style),
            path / style.name(SWEEP_FIGURES[0], suffix),
            style,
        ),
        save(
            seen_accuracy(groups, keys, f"accuracy on the experiences seen so far\n{what}", style),
            path / style.name(SWEEP_FIGURES[1], suffix),
            style,
        ),
    ]


def plot(path: str | Path, by: list[str] | None = None, style: Style | None = None) -> list[Path]:
    """Write the figures of a run or a sweep into it (or of every run and sweep of an outputs
    directory, into each); returns their paths."""
    style = style or Style()
    path = Path(path)
    if rundir.is_run(path):
        return plot_run(path, style)
    if sweepdir.is_sweep(path):
        return plot_sweep(path, by, style)
    if sweepdir.is_job(path):
        raise OutputError(
            f"{path} is a job that {sweepdir.status(path)} before it wrote a run "
            f"({sweepdir.error(path) or 'no config.yaml'}); nothing to plot"
        )
    runs, sweeps = sweepdir.find_outputs(path, links=False) if path.is_dir() else ([], [])  # writes stay in the tree
    if runs or sweeps:  # an outputs directory: every sweep and run in it that has something to plot
        files: list[Path] = []
        for child in sweeps + runs:
            try:
                files += plot(child, by, style)
            except OutputError:  # a run killed before its first experience: nothing to draw
                continue
        if files:
            return files
    raise OutputError(
        f"{path} is not a run or a sweep directory; allowed: a directory with config.yaml, "
        "or a sweep directory (replay inspect lists them)"
    )


def main(args: list[str]) -> int:
    """`replay plot PATH [--by KEY] [--format F] [--dpi N] [--ylim full|auto]`: prints the paths written."""
    from replaycli.errors import ConfigError
    from replaycli.outputs.verbargs import ArgParser, keys, label_option

    p = ArgParser(prog="replay plot", description="Write figures of a run or a sweep into its directory.")
    p.add_argument("path", metavar="PATH", help="a run directory or a sweep directory")
    p.add_argument(
        "--by",
        action="append",
        metavar="KEY",
        help="a sweep's x axis (then its lines): config keys; default: the keys that differ. "
        "Writes <figure>_by_<KEY> files beside the default ones",
    )
    p.add_argument("--format", choices=FORMATS, default="png", help="png (default), pdf or svg")
    p.add_argument("--dpi", type=int, default=DPI, help=f"dots per inch (default {DPI}: 640 x 400 pixels)")
    p.add_argument(
        "--ylim",
        choices=("full", "auto"),
        default="full",
        help="accuracy axes from 0 to 1 (full, default) or zoomed to the data (auto)",
    )
    p.add_argument(
        "--size",
        default="screen",
        metavar="S",
        help=f"{', '.join(f'{k} ({w:g} x {h:g} in, {pt:g} pt)' for k, ((w, h), pt) in SIZES.items())}, "
        "or WxH in inches; default screen",
    )
    p.add_argument("--no-title", action="store_true", help="no titles (a paper's caption says what a figure shows)")
    label_option(p, "a sweep's display name for a key or a value, as replay compare's")
    p.add_argument(
        "--xscale",
        choices=("auto", "linear", "log", "category"),
        default="auto",
        help="a sweep's x axis: auto (log for positive numbers spanning 4x or more, categories for text)",
    )
    a = p.parse_args(args)
    if not 10 <= a.dpi <= 1200:
        raise ConfigError(f"--dpi {a.dpi} is not allowed; allowed: 10 to 1200")
    size_of(a.size)  # a bad size: one line before anything is drawn
    style = Style(a.format, a.dpi, a.ylim, a.size.lower(), not a.no_title, a.xscale, tuple(a.label or ()))
    files = plot(a.path, keys(a.by), style)  # errors: one line and exit 2, in replaycli.cli
    for f in files:
        print(f)
    return 0
