"""A run's tables as a terminal shows them (rich): the accuracy matrix, each cell shaded by its
value, and the buffer's samples per class; printed at the end of a run and by `replay inspect`."""

from __future__ import annotations

import re
from typing import Any

CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # escape sequences, control bytes


def shown(tree: Any) -> Any:
    """`tree` (what a reader made of a run directory) with every string fit for a terminal: rich's
    markup escaped (`[/x]` in an error, an override or a path is text, not a tag) and escape
    sequences and control characters replaced by `?` (a received run cannot move the cursor,
    retitle the terminal or hide text)."""
    from rich.markup import escape

    if isinstance(tree, str):
        return escape(CONTROL.sub("?", tree.replace("\n", " ")))
    if isinstance(tree, dict):
        return {shown(k) if isinstance(k, str) else k: shown(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(shown(v) for v in tree)
    return tree


def _shade(a: float) -> str:
    return "green" if a >= 0.8 else "yellow" if a >= 0.5 else "red"


SHOWN = 40  # rows (or columns) a terminal table shows at most: the first and last halves, the rest elided


def kept(n: int) -> list[int | None]:
    """The indexes of `n` rows a table shows: all of them, or the first and the last SHOWN // 2
    with None for the gap (a run of 5,000 experiences is read in under a second, not minutes)."""
    if n <= SHOWN:
        return list(range(n))
    half = SHOWN // 2
    return [*range(half), None, *range(n - half, n)]


def gap(n: int) -> str:
    return f"... {n - SHOWN} left out (--json has all)"


def _matrix_table(title: str, rows: list[list], column: str, cells, last: str, summary) -> Any:
    """One row per experience trained: `cells(row)` under `column`0.., then `summary(row)`."""
    from rich.table import Table

    t = Table(title=title)
    t.add_column("trained", justify="right")
    columns = kept(len(rows[0]) if rows else 0)
    for j in columns:
        t.add_column("..." if j is None else f"{column}{j}", justify="right")
    t.add_column(last, justify="right", style="bold")
    for i in kept(len(rows)):
        if i is None:
            t.add_row(gap(len(rows)), *[""] * len(columns), "")
            continue
        shown = cells([rows[i][j] for j in columns if j is not None])
        it = iter(shown)
        t.add_row(str(i), *("..." if j is None else next(it) for j in columns), summary(rows[i]))
    return t


def accuracy_table(accuracy: list[list[float]], title: str = "accuracy (row: after training experience i)") -> Any:
    return _matrix_table(
        title,
        accuracy,
        "test ",
        lambda row: [f"[{_shade(a)}]{a:.3f}[/]" for a in row],
        "average",
        lambda row: f"{sum(row) / len(row):.3f}",
    )


def histogram_table(histograms: list[list[int]], title: str = "buffer samples per class") -> Any:
    return _matrix_table(title, histograms, "c", lambda row: list(map(str, row)), "total", lambda row: str(sum(row)))
