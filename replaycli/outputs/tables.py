"""`replay compare ... --format markdown|latex|csv`: the comparison as a table a paper can use.

Grouped by two keys (e.g. `--by strategy,buffer.max_size`), a markdown or LaTeX table is the
first key's values down, the second's across, each cell the first shown metric's mean ± spread;
grouped by one key (or none), a row per group and a column per shown metric. The best mean of each column is in
bold (highest, or lowest for forgetting). A line under the table says what the ± is and n. CSV is
for scripts: one row per group, every shown metric's mean, std, 95% CI half-width and n, nothing
in bold.
Standard library only."""

from __future__ import annotations

from typing import Any

from replaycli.outputs.compare import HIGHER_IS_BETTER, cell, digits_of, label, spread_words
from replaycli.outputs.files import csv_text, fmt

LATEX_SPECIAL = {
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
}


def latex_text(text: Any) -> str:
    return "".join(LATEX_SPECIAL.get(c, c) for c in str(text))


def best(groups: list[dict[str, Any]], metric: str) -> float | None:
    means = [g[f"{metric}_mean"] for g in groups if g[f"{metric}_mean"] is not None]
    return (max if HIGHER_IS_BETTER[metric] else min)(means) if means else None


def grid(d: dict[str, Any], ci: bool) -> tuple[list[str], list[list[tuple[str, bool]]]]:
    """The header and rows of (text, bold) cells."""
    keys, groups, metric, digits = d["by"], d["groups"], d["metrics"][0], digits_of(d)
    if len(keys) == 2:  # rows x columns of one metric
        down = list(dict.fromkeys(str(g[keys[0]]) for g in groups))
        across = list(dict.fromkeys(str(g[keys[1]]) for g in groups))
        at = {(str(g[keys[0]]), str(g[keys[1]])): g for g in groups}
        tops = {c: best([at[(r, c)] for r in down if (r, c) in at], metric) for c in across}
        header = [f"{keys[0]} \\ {keys[1]}", *across]
        rows = [
            [
                (r, False),
                *(
                    (cell(at[(r, c)], metric, ci, digits), at[(r, c)][f"{metric}_mean"] == tops[c])
                    if (r, c) in at
                    else ("-", False)
                    for c in across
                ),
            ]
            for r in down
        ]
        return header, rows
    tops = {m: best(groups, m) for m in d["metrics"]}
    header = [*keys, "n", *(label(d, m) for m in d["metrics"])]
    rows = [
        [
            *((str(g[k]), False) for k in keys),
            (str(g["n"]), False),
            *((cell(g, m, ci, digits), g[f"{m}_mean"] == tops[m] and tops[m] is not None) for m in d["metrics"]),
        ]
        for g in groups
    ]
    return header, rows


def markdown(d: dict[str, Any], ci: bool) -> str:
    header, rows = grid(d, ci)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(f"**{t}**" if b else t for t, b in row) + " |" for row in rows]
    what = f"{label(d, d['metrics'][0])}; " if len(d["by"]) == 2 else ""
    return "\n".join(lines) + f"\n\n{what}{spread_words(d, ci)}.\n"


def latex(d: dict[str, Any], ci: bool) -> str:
    header, rows = grid(d, ci)

    def tex(text: str, bold: bool) -> str:
        body = latex_text(text).replace(" ± ", r" $\pm$ ")
        return rf"\textbf{{{body}}}" if bold else body

    what = f"{label(d, d['metrics'][0])}; " if len(d["by"]) == 2 else ""
    caption = latex_text(what + spread_words(d, ci)).replace("±", r"$\pm$")
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
        r"\toprule",
        " & ".join(latex_text(h) for h in header) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(tex(t, b) for t, b in row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{caption}.}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def csv_table(d: dict[str, Any]) -> str:
    keys = d["by"]
    header = [*keys, "n", *(f"{m}_{s}" for m in d["metrics"] for s in ("mean", "std", "ci95"))]
    cells = lambda v: "" if v is None else fmt(v)  # noqa: E731
    rows = [
        [*(g[k] for k in keys), g["n"], *(cells(g[f"{m}_{s}"]) for m in d["metrics"] for s in ("mean", "std", "ci95"))]
        for g in d["groups"]
    ]
    return csv_text(header, rows)


def table(d: dict[str, Any], fmt_name: str, ci: bool = False) -> str:
    """The comparison `d` (replaycli.outputs.compare.displayed) as `fmt_name`: markdown, latex or csv."""
    if fmt_name == "csv":
        return csv_table(d)
    return markdown(d, ci) if fmt_name == "markdown" else latex(d, ci)
