"""How replaycli's figures look and are written: size, palettes safe for colour-blind readers,
the accuracy axis, the title's description of a run, and the atomic save. matplotlib (Agg) is
imported here only, and only when a figure is drawn."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replaycli.outputs import files
from replaycli.outputs.files import OutputError

FIGSIZE, DPI = (6.4, 4.0), 100
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


@dataclass(frozen=True)
class Style:
    """How figures are written: file format, dots per inch, accuracy axis (`full`: 0 to 1)."""

    format: str = "png"
    dpi: int = DPI
    ylim: str = "full"

    def name(self, figure: str, suffix: str = "") -> str:
        return f"{figure}{suffix}.{self.format}"

    def accuracy_axis(self, ax: Any) -> None:
        if self.ylim == "full":
            ax.set_ylim(0, 1.02)


def colours(n: int) -> list[Any]:
    """`n` colours colour-blind readers tell apart: Okabe-Ito up to 8, Paul Tol's muted up to 10,
    then cividis (ordered: classes and experiences are numbered)."""
    if n <= len(OKABE_ITO):
        return list(OKABE_ITO[:n])
    if n <= len(TOL_MUTED):
        return list(TOL_MUTED[:n])
    cmap = pyplot().get_cmap("cividis")
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def figure() -> tuple[Any, Any]:
    plt = pyplot()
    plt.rcParams["axes.titlesize"] = 10  # two lines: what the figure shows, then the run's setting
    return plt.subplots(figsize=FIGSIZE, layout="constrained")


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

    def option(group: str) -> str | None:
        if group in leave_out or f"{group}._target_" in leave_out:
            return None
        chosen = params.get(group)
        if isinstance(chosen, str):
            return chosen
        target = params.get(f"{group}._target_")
        return str(target).rsplit(".", 1)[-1] if target else None

    parts = [option("benchmark"), option("strategy")]
    buffer = option("buffer")
    if buffer is not None and params.get("buffer._target_") is not None:
        size = params.get("buffer.max_size")
        extra = [str(size)] if size is not None and "buffer.max_size" not in leave_out else []
        if params.get("groupby") and "groupby" not in leave_out:
            extra.append(f"by {params['groupby']}")
        buffer += f"({', '.join(extra)})" if extra else ""
    elif buffer is not None:
        buffer = "no buffer"
    parts.append(buffer)
    return " · ".join(p for p in parts if p) or "runs"
