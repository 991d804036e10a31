"""How replaycli's figures look and are written: size and type size, palettes safe for colour-blind
readers, line styles for a second key, the accuracy axis, the title's description of what the
runs share, fonts a publisher accepts, the file name and the atomic save. matplotlib (Agg) is
imported here only, and only when a figure is drawn.

Sizes (`--size`): `screen` (default, 6.4 x 4 in, 10 pt), `column` (3.5 x 2.6 in, 8 pt: one column of
a two-column paper), `page` (7 x 3.2 in, 9 pt: the width of such a page), or `WxH` in inches. Text
in a PDF is TrueType (Type 42: IEEE PDF eXpress and ACM reject Type 3), in an SVG it stays text.
A figure drawn with options other than the defaults is written under a name that says them
(`final_accuracy_column_notitle.pdf`), so no option overwrites another's figure."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replaycli.outputs import files
from replaycli.outputs.files import OutputError

FIGSIZE, DPI = (6.4, 4.0), 100
SIZES = {"screen": (FIGSIZE, 10.0), "column": ((3.5, 2.6), 8.0), "page": ((7.0, 3.2), 9.0)}  # inches, points
DASHES = ("-", "--", ":", "-.")  # a second key's values, after colour has the first's
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
TOL_MUTED = (
    "#332288",
    "#88CCEE",
    "#44AA99",
    "#117733",
    "#999933",
    "#DDCC77",
    "#CC6677",
    "#882255",
    "#AA4499",
    "#DDDDDD",
)  # Paul Tol's muted scheme (and its pale grey): ten colours colour-blind readers tell apart


def size_of(text: str) -> tuple[tuple[float, float], float]:
    """(width, height) in inches and the type size in points of `--size text`."""
    if text in SIZES:
        return SIZES[text]
    w, x, h = text.lower().partition("x")
    try:
        width, height = float(w), float(h)
    except ValueError:
        width = height = float("nan")
    if not x or not (1.0 <= width <= 20.0 and 1.0 <= height <= 20.0):
        raise OutputError(f"--size {text}: allowed: {', '.join(SIZES)} or WxH in inches (1 to 20), e.g. 3.3x2.5")
    return (width, height), 8.0 if width < 4.5 else 9.0 if width < 6.5 else 10.0


@dataclass(frozen=True)
class Style:
    """How figures are written: file format, dots per inch, accuracy axis (`full`: 0 to 1), size
    (`size_of`), with titles or without (a paper's caption says it), the x axis of a sweep's key
    (`auto`: log for positive numbers spanning 4x or more, categories for text)."""

    format: str = "png"
    dpi: int = DPI
    ylim: str = "full"
    size: str = "screen"
    titles: bool = True
    xscale: str = "auto"
    labels: tuple[str, ...] = ()  # display names, OLD=NEW (replay compare --label)

    def name(self, figure: str, suffix: str = "") -> str:
        """The file name: the options that differ from the defaults are part of it."""
        options = [
            "" if self.size == "screen" else self.size.replace(".", "p"),
            "" if self.titles else "notitle",
            "" if self.ylim == "full" else f"ylim{self.ylim}",
            "" if self.xscale == "auto" else f"x{self.xscale}",
            "" if self.dpi == DPI or self.format != "png" else f"{self.dpi}dpi",
            "" if not self.labels else "labels-" + hashlib.sha256("\n".join(self.labels).encode()).hexdigest()[:6],
        ]
        return f"{figure}{suffix}{''.join('_' + o for o in options if o)}.{self.format}"

    def accuracy_axis(self, ax: Any) -> None:
        if self.ylim == "full":
            ax.set_ylim(0, 1.02)

    def label(self, ax: Any, xlabel: str, ylabel: str, title: str) -> None:
        ax.set(xlabel=xlabel, ylabel=ylabel)
        if self.titles:
            ax.set_title(title)


def colours(n: int) -> list[Any]:
    """`n` colours colour-blind readers tell apart: Okabe-Ito up to 8, Paul Tol's muted up to 10,
    then cividis (ordered: classes and experiences are numbered)."""
    if n <= len(OKABE_ITO):
        return list(OKABE_ITO[:n])
    if n <= len(TOL_MUTED):
        return list(TOL_MUTED[:n])
    cmap = pyplot().get_cmap("cividis")
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def looks(values: list[Any], second: list[Any] | None = None) -> list[tuple[Any, str, str]]:
    """(colour, line style, marker) for each position: colour by `values` (a first key's), line
    style and marker by `second` (a second key's) when given, so neither key's reading depends on
    the other's."""
    firsts = list(dict.fromkeys(map(str, values)))
    palette = colours(len(firsts))
    seconds = list(dict.fromkeys(map(str, second))) if second is not None else []
    out = []
    for i, v in enumerate(values):
        k = seconds.index(str(second[i])) if second is not None else 0
        out.append((palette[firsts.index(str(v))], DASHES[k % len(DASHES)], MARKERS[k % len(MARKERS)]))
    return out


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    plt.rcParams["pdf.fonttype"] = 42  # TrueType in PDF (Type 3 is refused by IEEE PDF eXpress and ACM)
    plt.rcParams["ps.fonttype"] = 42
    plt.rcParams["svg.fonttype"] = "none"  # SVG text stays text
    return plt


def figure(style: Style) -> tuple[Any, Any]:
    plt = pyplot()
    size, points = size_of(style.size)
    plt.rcParams["font.size"] = points  # legends and annotations are given relative to it
    plt.rcParams["axes.titlesize"] = points  # two lines: what the figure shows, then the runs' setting
    plt.rcParams["axes.labelsize"] = points
    plt.rcParams["legend.fontsize"] = points - 1
    return plt.subplots(figsize=size, layout="constrained")


def narrow(style: Style) -> bool:
    """A figure for one column (under 4.5 in wide): its legend goes below the axes, its entries
    name values only and the legend's title the keys."""
    return size_of(style.size)[0][0] < 4.5


def entry(keys: list[str], values: list[Any], style: Style) -> str:
    """A legend entry: `key=value, ...`, or in a narrow figure the values alone (`keyed` titles them)."""
    if narrow(style):
        return ", ".join(map(str, values)) or "all runs"
    return ", ".join(f"{k}={v}" for k, v in zip(keys, values, strict=True)) or "all runs"


def keyed(keys: list[str], note: str | None, style: Style) -> str | None:
    """The legend's title: the spread when every entry shares it, and in a narrow figure the keys."""
    said = [", ".join(keys)] if narrow(style) and keys else []
    return ": ".join(said + ([note] if note else [])) or None


def legend(fig: Any, ax: Any, style: Style, title: str | None = None, columns: int = 1) -> None:
    """The legend of `ax`: inside the axes, or, in a figure narrower than 4.5 in (a column), below
    them across the figure, where long labels fit; `title` says once what every entry shares."""
    handles, labels = ax.get_legend_handles_labels()
    if narrow(style):
        ncol = 2 if max(map(len, labels), default=0) <= 24 else 1  # two columns of long labels overflow a column
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncol=ncol,
            title=title,
            fontsize="small",
            title_fontsize="small",
        )
    else:
        ax.legend(handles, labels, title=title, fontsize="small", title_fontsize="small", ncol=columns)


def save(fig: Any, path: Path, style: Style) -> Path:
    """Write `fig` to `path` atomically (a temporary file, then a rename), as every output is."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format=style.format, dpi=style.dpi)  # no bbox_inches="tight": every figure keeps its size
    pyplot().close(fig)
    try:
        files.write_atomic(path, buf.getvalue())
    except OSError as e:
        raise OutputError(
            f"cannot write {path} ({e.strerror or e}); allowed: a writable run or sweep directory"
        ) from None
    return path


def describe(params: dict[str, Any], leave_out: tuple[str, ...] = ()) -> str:
    """ "benchmark · method · buffer(size)" from a run's config (the options as typed, else the
    classes), without the keys in `leave_out` (what a sweep varies)."""
    return " · ".join(p for p in parts(params, leave_out) if p) or "runs"


def common(many: list[dict[str, Any]], leave_out: tuple[str, ...] = ()) -> str:
    """What every one of the runs `many` (their configs) shares, as `describe` says it: a part
    (benchmark, method, buffer) that differs between two runs is left out."""
    each = [parts(p, leave_out) for p in many]
    shared = [p for i, p in enumerate(each[0]) if p and all(e[i] == p for e in each)]
    return " · ".join(shared) or "runs"


def parts(params: dict[str, Any], leave_out: tuple[str, ...] = ()) -> list[str | None]:
    """The benchmark, the method and the buffer of a run's config (None where not said)."""

    def option(group: str) -> str | None:
        if group in leave_out or f"{group}._target_" in leave_out:
            return None
        chosen = params.get(group)
        if isinstance(chosen, str):
            return chosen
        target = params.get(f"{group}._target_")
        return str(target).rsplit(".", 1)[-1] if target else None

    said = [option("benchmark"), option("strategy")]
    buffer = option("buffer")
    if buffer is not None and params.get("buffer._target_") is not None:
        size = params.get("buffer.max_size")
        extra = [str(size)] if size is not None and "buffer.max_size" not in leave_out else []
        if params.get("groupby") and "groupby" not in leave_out:
            extra.append(f"by {params['groupby']}")
        buffer += f"({', '.join(extra)})" if extra else ""
    elif buffer is not None:
        buffer = "no buffer"
    said.append(buffer)
    return said
