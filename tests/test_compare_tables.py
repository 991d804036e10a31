"""From a sweep to a paper: summary metrics, honest statistics, duplicate runs and the tables of
`replay compare --format`, on run directories with numbers chosen here (made_outputs.write_run)."""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
from pathlib import Path

import pytest
from conftest import run_cli
from made_outputs import write_run

from replaycli.outputs import formulas
from replaycli.outputs.compare import compare
from replaycli.outputs.tables import table

HIST = [[1, 1], [1, 1]]


def runs(root, table_of: dict[tuple, list[list[float]]]):
    """One run per (strategy, size, seed) with its accuracy matrix."""
    for (strategy, size, seed), acc in table_of.items():
        config = f"seed: {seed}\nstrategy:\n  _target_: {strategy}\nbuffer:\n  max_size: {size}\n"
        write_run(
            root / f"{strategy}-{size}-{seed}",
            acc,
            HIST[: len(acc)],
            [f"buffer.max_size={size}", f"seed={seed}", f"strategy._target_={strategy}"],
            config,
        )
    return root


def final(acc):
    return sum(acc[-1]) / len(acc[-1])


GRID = {
    ("er", 100, 0): [[0.9, 0.0], [0.6, 0.8]],
    ("er", 100, 1): [[0.8, 0.0], [0.5, 0.9]],
    ("er", 200, 0): [[0.9, 0.0], [0.7, 0.8]],
    ("er", 200, 1): [[0.9, 0.1], [0.8, 0.8]],
    ("der", 100, 0): [[0.9, 0.0], [0.7, 0.9]],
    ("der", 100, 1): [[0.9, 0.0], [0.6, 0.9]],
    ("der", 200, 0): [[0.9, 0.0], [0.8, 0.9]],
}


def test_average_incremental_accuracy_against_a_hand_computation(tmp_path):
    acc = [[0.9, 0.1, 0.0], [0.6, 0.8, 0.2], [0.5, 0.7, 0.9]]
    by_hand = (0.9 + (0.6 + 0.8) / 2 + (0.5 + 0.7 + 0.9) / 3) / 3  # seen so far, averaged over the steps
    assert formulas.average_incremental_accuracy(acc) == pytest.approx(by_hand)
    write_run(tmp_path / "r", acc, [[1, 1]] * 3)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["average_incremental_accuracy"] == pytest.approx(by_hand)
    # online: pieces 0, 0, 1 of 10, 30, 20 samples; seen-so-far 0.9, 0.8, 0.75; trapezoids over samples
    pieces = [[0.9, 0.0], [0.8, 0.1], [0.7, 0.8]]
    area = (10 * 0.9 + 30 * (0.9 + 0.8) / 2 + 20 * (0.8 + 0.75) / 2) / 60
    assert formulas.auc(pieces, [10, 30, 20], [0, 0, 1]) == pytest.approx(area)


def test_compare_shows_n_no_spread_for_one_run_and_sample_std(tmp_path):
    d = compare([runs(tmp_path, GRID)], ["strategy._target_", "buffer.max_size"])
    at = {(g["strategy._target_"], g["buffer.max_size"]): g for g in d["groups"]}
    assert at[("der", 200)]["n"] == 1 and at[("der", 200)]["final_accuracy_std"] is None
    er = [final(GRID[("er", 100, s)]) for s in (0, 1)]
    assert at[("er", 100)]["final_accuracy_mean"] == pytest.approx(statistics.fmean(er))
    assert at[("er", 100)]["final_accuracy_std"] == pytest.approx(statistics.stdev(er))  # n - 1
    from scipy.stats import t

    assert at[("er", 100)]["final_accuracy_ci95"] == pytest.approx(t.ppf(0.975, 1) * statistics.stdev(er) / 2**0.5)
    out = run_cli("compare", str(tmp_path), "--by", "strategy._target_,buffer.max_size").stdout
    row = next(line for line in out.splitlines() if line.strip().startswith("│") and "der" in line and "200" in line)
    assert "±" not in row and f"{final(GRID[('der', 200, 0)]):.4f}" in row  # one run: the mean alone
    assert "n = 1 to 2" in " ".join(out.split())


def test_duplicate_runs_are_flagged_and_counted_once(tmp_path):
    runs(tmp_path, GRID)
    write_run(
        tmp_path / "er-100-0-again",
        GRID[("er", 100, 0)],
        HIST,  # the same config and seed, run again
        ["buffer.max_size=100", "seed=0", "strategy._target_=er"],
        "seed: 0\nstrategy:\n  _target_: er\nbuffer:\n  max_size: 100\n",
    )
    d = compare([tmp_path], ["strategy._target_", "buffer.max_size"])
    er100 = next(g for g in d["groups"] if g["strategy._target_"] == "er" and g["buffer.max_size"] == 100)
    assert er100["n"] == 2 and len(d["duplicates"]) == 1 and len(d["duplicates"][0]) == 2
    kept = compare([tmp_path], ["strategy._target_", "buffer.max_size"], keep_duplicates=True)
    assert next(g for g in kept["groups"] if g["strategy._target_"] == "er" and g["buffer.max_size"] == 100)["n"] == 3
    out = run_cli("compare", str(tmp_path)).stdout
    assert "1 duplicate runs (same config and seed), counted once" in " ".join(out.split())


def test_markdown_table_is_method_by_size_with_the_best_of_each_column_in_bold(tmp_path):
    d = compare([runs(tmp_path, GRID)], ["strategy._target_", "buffer.max_size"])
    text = table(d, "markdown")
    lines = text.strip().splitlines()
    assert lines[0] == "| strategy._target_ \\ buffer.max_size | 100 | 200 |"
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in lines[2:4]}
    der100 = statistics.fmean(final(GRID[("der", 100, s)]) for s in (0, 1))
    er100 = statistics.fmean(final(GRID[("er", 100, s)]) for s in (0, 1))
    assert der100 > er100 and cells["der"][0].startswith(f"**{der100:.4f} ±") and not cells["er"][0].startswith("**")
    assert cells["der"][1] == f"**{final(GRID[('der', 200, 0)]):.4f}**"  # n = 1: no ±; the best of its column
    assert (
        "final accuracy; mean ± sample standard deviation (n - 1) over the runs (seeds) of each group, n = 1 to 2"
        in text
    )


def test_latex_table_structure_escapes_and_bold(tmp_path):
    d = compare([runs(tmp_path, GRID)], ["strategy._target_", "buffer.max_size"])
    tex = table(d, "latex", ci=True)
    assert tex.startswith("\\begin{table}[t]\n\\centering\n\\begin{tabular}{lrr}\n\\toprule\n")
    assert "strategy.\\_target\\_ \\textbackslash{} buffer.max\\_size & 100 & 200 \\\\" in tex
    assert tex.count("\\textbf{") == 2 and "$\\pm$" in tex and "\\bottomrule\n\\end{tabular}" in tex
    assert "95\\% confidence interval" in tex
    body = tex.split("\\midrule\n")[1].split("\\bottomrule")[0].strip().splitlines()
    assert all(line.count("&") == 2 and line.endswith("\\\\") for line in body)
    assert tex.count("{") == tex.count("}")


def test_csv_table_parses_back_to_the_numbers(tmp_path):
    d = compare([runs(tmp_path, GRID)], ["buffer.max_size"])
    rows = list(csv.DictReader(io.StringIO(table(d, "csv"))))
    assert [r["buffer.max_size"] for r in rows] == ["100", "200"] and [r["n"] for r in rows] == ["4", "3"]
    for r, g in zip(rows, d["groups"], strict=True):
        assert float(r["final_accuracy_mean"]) == g["final_accuracy_mean"]
        assert float(r["forgetting_std"]) == g["forgetting_std"]
    out = run_cli("compare", str(tmp_path), "--by", "buffer.max_size", "--format", "csv").stdout
    assert out == table(d, "csv")
    assert re.match(r"buffer.max_size,n,final_accuracy_mean,final_accuracy_std,final_accuracy_ci95,", out)


# --- figures, checked through matplotlib's objects ---------------------------------------------
def legend_texts(fig):
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_sweep_figures_title_axis_and_legend_say_what_they_show(tmp_path):
    from replaycli.outputs import figures, plots

    d = compare([runs(tmp_path, GRID)], ["buffer.max_size", "strategy._target_"])
    fig = plots.final_accuracy(d["groups"], d["by"], "final accuracy\nsetting", plots.Style())
    ax = fig.axes[0]
    assert ax.get_title() == "final accuracy\nsetting" and ax.get_ylim() == (0.0, 1.02)
    assert legend_texts(fig) == [
        "strategy._target_=der (mean ± std over 1-2 seeds)",
        "strategy._target_=er (mean ± std over 2 seeds)",
    ]
    zoomed = plots.final_accuracy(d["groups"], d["by"], "t", plots.Style(ylim="auto"))
    assert zoomed.axes[0].get_ylim()[0] > 0.5  # --ylim auto: the data's range
    seen = plots.seen_accuracy(d["groups"], d["by"], "t", plots.Style())
    ax = seen.axes[0]
    assert ax.get_ylim() == (0.0, 1.02) and len(ax.collections) == 3  # a band for each group of 2 runs, none for n=1
    assert "buffer.max_size=200, strategy._target_=der (1 run each, no spread)" in legend_texts(seen)
    assert figures.colours(3) == list(figures.OKABE_ITO[:3])


def test_run_figures_describe_the_run_and_scale_to_20_experiences(tmp_path):
    from replaycli.outputs import plots

    acc = [[min(1.0, 0.05 * (i + j)) if j <= i else 0.0 for j in range(20)] for i in range(20)]
    fig = plots.accuracy_curves(acc, "accuracy per test experience\nx", plots.Style())
    ax = fig.axes[0]
    assert ax.get_ylim() == (0.0, 1.02) and len(legend_texts(fig)) == 21 and fig.axes[0].get_legend()._ncols == 2
    matrix = plots.accuracy_matrix(acc, "m", plots.Style())
    assert not matrix.axes[0].texts and len(matrix.axes[0].get_xticks()) == 20  # no cell numbers at 20 x 20
    conf = plots.confusion([[8, 2], [0, 10]], "c", plots.Style(), ["cat", "dog"])
    assert sorted(t.get_text() for t in conf.axes[0].texts) == ["0.20", "0.80", "1.00"]  # shares, as the colour bar
    params = {
        "benchmark": "split_mnist",
        "strategy": "der",
        "buffer": "reservoir",
        "buffer._target_": "x",
        "buffer.max_size": 500,
    }
    assert plots.describe(params) == "split_mnist · der · reservoir(500)"
    assert plots.describe(params, ("buffer.max_size",)) == "split_mnist · der · reservoir"
    assert plots.describe({**params, "buffer._target_": None}) == "split_mnist · der · no buffer"


def test_plot_formats_dpi_and_by_files(tmp_path):
    root = runs(tmp_path / "sweep", {k: v for k, v in GRID.items() if k[0] == "er"})
    one = root / "er-100-0"
    pdf = run_cli("plot", str(one), "--format", "pdf").stdout.split()
    assert pdf == [str(one / f"{n}.pdf") for n in ("accuracy_matrix", "accuracy_curves", "buffer_histogram")]
    assert all(Path(f).read_bytes()[:5] == b"%PDF-" for f in pdf)
    svg = run_cli("plot", str(one), "--format", "svg").stdout.split()
    assert all("<svg" in Path(f).read_text()[:2000] for f in svg)
    from matplotlib.image import imread

    png = run_cli("plot", str(one), "--dpi", "200").stdout.split()
    assert imread(png[0]).shape[:2] == (800, 1280) and png[0].endswith("accuracy_matrix_200dpi.png")
    bad = run_cli("plot", str(one), "--dpi", "5")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --dpi 5 is not allowed; allowed: 10 to 1200"


def test_threads_key_sets_torchs_threads_and_refuses_bad_values(tmp_path):
    import torch
    from conftest import build_run

    before = torch.get_num_threads()
    try:
        build_run(["threads=1", "device=cpu"])
        assert torch.get_num_threads() == 1
        build_run(["threads=2", "device=cpu"])
        assert torch.get_num_threads() == 2
        proc = run_cli("run", "threads=0", "progress=none", cwd=tmp_path)
        assert (
            proc.returncode == 2 and proc.stderr.strip() == "error: threads=0 must be an integer in [1, 1024], or auto"
        )
    finally:
        torch.set_num_threads(before)


def test_the_progress_line_shows_seen_so_far_and_stream_accuracy():
    from replaycli.run.progress import seen_accuracy

    record = {"experience": 1, "accuracy": [1.0, 0.5, 0.0, 0.0]}
    assert seen_accuracy(record) == 0.75  # experiences 0 and 1; the stream's average would be 0.375
    assert seen_accuracy({**record, "experience": 3, "origin_experience": 0}) == 1.0  # an online piece of 0


def test_the_latex_table_compiles_where_a_tex_engine_is_installed(tmp_path):
    import shutil
    import subprocess

    if shutil.which("pdflatex") is None:
        pytest.skip("no pdflatex here: test_latex_table_structure_escapes_and_bold checks the structure")
    d = compare([runs(tmp_path / "runs", GRID)], ["strategy._target_", "buffer.max_size"])
    (tmp_path / "table.tex").write_text(table(d, "latex", ci=True))
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n\\input{table.tex}\n\\end{document}\n"
    )
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "doc.pdf").read_bytes()[:5] == b"%PDF-"


# --- every recorded metric, percentages, display names -----------------------------------------
def runs_with_side_tables(root):
    """Two methods x two seeds, each with task-IL and validation tables beside accuracy.csv."""
    numbers = {("er", 0): 0.5, ("er", 1): 0.6, ("der_seq_mnist", 0): 0.7, ("der_seq_mnist", 1): 0.8}
    for (name, seed), a in numbers.items():
        write_run(
            root / f"{name}{seed}",
            [[a, 0.0], [a - 0.1, a]],
            HIST,
            [f"+experiment={name}", f"seed={seed}"],
            f"seed: {seed}\nexperiment: {name}\n",
            side={"task_il_accuracy": [[1.0, 0.0], [a + 0.2, 1.0]], "val_accuracy": [[a, 0.0], [a, a + 0.1]]},
        )
    return numbers


def test_task_il_and_validation_are_columns_and_selectable(tmp_path):
    numbers = runs_with_side_tables(tmp_path)
    d = compare([tmp_path], ["experiment"])
    assert d["metrics"] == [
        "final_accuracy",
        "average_incremental_accuracy",
        "forgetting",
        "bwt",
        "final_task_il_accuracy",
        "final_val_accuracy",
    ]  # auc and validation task-IL: recorded by no run, so not shown
    by_name = {g["experiment"]: g for g in d["groups"]}
    for name in ("er", "der_seq_mnist"):
        a = [numbers[(name, s)] for s in (0, 1)]
        assert by_name[name]["final_task_il_accuracy_mean"] == pytest.approx(statistics.fmean((x + 1.2) / 2 for x in a))
        assert by_name[name]["final_val_accuracy_mean"] == pytest.approx(statistics.fmean((2 * x + 0.1) / 2 for x in a))
    proc = run_cli("compare", str(tmp_path), "--metric", "final_val_accuracy,final_task_il_accuracy", "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    header = proc.stdout.splitlines()[0]
    assert header == (
        "experiment,n,final_val_accuracy_mean,final_val_accuracy_std,final_val_accuracy_ci95,"
        "final_task_il_accuracy_mean,final_task_il_accuracy_std,final_task_il_accuracy_ci95"
    )
    rich = run_cli("compare", str(tmp_path)).stdout
    assert "task-IL accuracy" in rich and "validation accuracy" in rich


def test_percent_and_labels_in_every_format(tmp_path):
    numbers = runs_with_side_tables(tmp_path)
    args = ["compare", str(tmp_path), "--percent", "--label", "der_seq_mnist=DER", "--label", "experiment=method"]
    md = run_cli(*args, "--metric", "final_accuracy", "--format", "markdown").stdout
    finals = [(numbers[("der_seq_mnist", s)] - 0.05) * 100 for s in (0, 1)]  # the last row's mean: a - 0.05
    der, std = statistics.fmean(finals), statistics.stdev(finals)
    assert md.splitlines()[0] == "| method | n | final accuracy (%) |"
    assert f"| DER | 2 | **{der:.2f} ± {std:.2f}** |" in md
    assert "der_seq_mnist" not in md
    tex = run_cli(*args, "--format", "latex").stdout
    assert "DER &" in tex and "final accuracy (\\%)" in tex
    js = json.loads(run_cli(*args, "--json").stdout)
    assert js["by"] == ["method"] and {g["method"] for g in js["groups"]} == {"DER", "er"}
    assert next(g for g in js["groups"] if g["method"] == "DER")["final_accuracy_mean"] == pytest.approx(der)
    rich = run_cli(*args).stdout
    assert "DER" in rich and "method" in rich and f"{der:.2f} ± {std:.2f}" in rich


@pytest.mark.parametrize(
    "flag, words",
    [
        (["--metric", "accuracy"], "--metric accuracy: not a metric; allowed: final_accuracy,"),
        (["--metric", "auc"], "--metric auc: no run records it; recorded: final_accuracy,"),
        (["--label", "DER"], "--label DER: allowed: OLD=NEW"),
    ],
)
def test_bad_metric_or_label_is_one_line_exit_2(tmp_path, flag, words):
    runs_with_side_tables(tmp_path)
    proc = run_cli("compare", str(tmp_path), *flag)
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: {words}") and len(proc.stderr.splitlines()) == 1


def test_a_table_without_an_interval_does_not_import_scipy(tmp_path):
    import subprocess
    import sys

    runs_with_side_tables(tmp_path)
    probe = (
        "import sys; from replaycli.outputs.compare import main; main([{!r}] + {!r}); "
        "print('SCIPY', 'scipy' in sys.modules)"
    )
    for flags, imported in (([], False), (["--format", "markdown"], False), (["--ci"], True)):
        out = subprocess.run(
            [sys.executable, "-c", probe.format(str(tmp_path), flags)], capture_output=True, text=True, check=True
        ).stdout
        assert f"SCIPY {imported}" in out


# --- figures for a paper -------------------------------------------------------------------------
def pdf_fonts(path: Path) -> set[bytes]:
    """The font subtypes a PDF embeds, read from its font dictionaries (matplotlib writes them
    uncompressed)."""
    return set(re.findall(rb"/Subtype\s*/(Type3|TrueType|Type1|CIDFontType[02]|Type0)", path.read_bytes()))


def test_pdf_fonts_are_truetype_and_svg_text_is_text(tmp_path):
    import shutil
    import subprocess

    root = runs(tmp_path / "sweep", GRID)
    made = run_cli("plot", str(root), "--format", "pdf").stdout.split()
    truetype = {b"TrueType", b"Type0", b"CIDFontType2"}  # Type 42: plain, or as a CID font for "±"
    assert made and all(pdf_fonts(Path(f)) and pdf_fonts(Path(f)) <= truetype for f in made)  # never Type 3
    if shutil.which("pdffonts"):  # poppler's own reading, where installed
        for f in made:
            table = subprocess.run(["pdffonts", f], capture_output=True, text=True, check=True).stdout
            assert "TrueType" in table and "Type 3" not in table
    svg = run_cli("plot", str(root / "er-100-0"), "--format", "svg").stdout.split()
    text = Path(svg[0]).read_text()
    assert "<text" in text and "test experience" in text  # the axis label as text, not glyph outlines


def test_sizes_for_a_column_and_a_page_with_type_that_reads(tmp_path):
    one = runs(tmp_path, {("er", 100, 0): GRID[("er", 100, 0)]}) / "er-100-0"
    from matplotlib.image import imread

    for size, (w, h) in (("column", (3.5, 2.6)), ("page", (7.0, 3.2)), ("3.3x2.5", (3.3, 2.5))):
        made = run_cli("plot", str(one), "--size", size, "--format", "pdf").stdout.split()
        box = re.search(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)", Path(made[0]).read_bytes())
        assert box and (float(box[1]), float(box[2])) == pytest.approx((w * 72, h * 72))
        png = run_cli("plot", str(one), "--size", size).stdout.split()
        assert imread(png[0]).shape[:2] == (round(h * 100), round(w * 100))
    from replaycli.outputs import figures, plots

    fig = plots.accuracy_curves([[0.9, 0.1], [0.5, 0.8]], "t", figures.Style(size="column"))
    ax = fig.axes[0]
    assert ax.xaxis.label.get_fontsize() == 8.0 and ax.get_legend().get_texts()[0].get_fontsize() >= 6.5
    bad = run_cli("plot", str(one), "--size", "huge")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --size huge: allowed: screen, column, page or WxH")


def test_no_title_categories_as_points_log_sizes_and_two_keys_two_encodings(tmp_path):
    from replaycli.outputs import plots

    d = compare([runs(tmp_path, GRID)], ["strategy._target_", "buffer.max_size"])
    fig = plots.final_accuracy(d["groups"], d["by"], "t", plots.Style(titles=False))
    ax = fig.axes[0]
    assert ax.get_title() == "" and [t.get_text() for t in ax.get_xticklabels()] == ["der", "er"]
    assert all(line.get_linestyle() == "None" for line in ax.lines)  # methods have no order: no joining line
    sizes = compare([runs(tmp_path / "s", {(m, n, 0): GRID[("er", 100, 0)] for m in ("er",) for n in (100, 200, 500)})])
    ax = plots.final_accuracy(sizes["groups"], sizes["by"], "t", plots.Style()).axes[0]
    assert ax.get_xscale() == "log" and [t.get_text() for t in ax.get_xticklabels()] == ["100", "200", "500"]
    assert ax.lines[0].get_linestyle() == "-"  # numbers are ordered: joined
    lin = plots.final_accuracy(sizes["groups"], sizes["by"], "t", plots.Style(xscale="linear")).axes[0]
    assert lin.get_xscale() == "linear"
    # three keys: x, colour by the second, line style and marker by the third
    grid3 = {(m, n, s): GRID[("er", 100, 0)] for m in ("er", "der") for n in (100, 200) for s in (0, 1)}
    root3 = tmp_path / "three"
    for (m, n, s), acc in grid3.items():
        write_run(
            root3 / f"{m}{n}{s}",
            acc,
            HIST,
            [f"strategy._target_={m}", f"buffer.max_size={n}", f"seed={s}"],
            f"seed: 0\nstrategy:\n  _target_: {m}\nbuffer:\n  max_size: {n}\nlr: {0.1 * (s + 1)}\n",
        )
    d3 = compare([root3], ["lr", "strategy._target_", "buffer.max_size"])
    ax = plots.final_accuracy(d3["groups"], d3["by"], "t", plots.Style()).axes[0]
    look = {
        c.get_label().split(" (")[0]: (c[0].get_color(), c[0].get_linestyle(), c[0].get_marker()) for c in ax.containers
    }
    assert (
        look["strategy._target_=der, buffer.max_size=100"][0] == look["strategy._target_=der, buffer.max_size=200"][0]
    )
    assert (
        look["strategy._target_=der, buffer.max_size=100"][1:] == look["strategy._target_=er, buffer.max_size=100"][1:]
    )
    assert look["strategy._target_=der, buffer.max_size=100"][0] != look["strategy._target_=er, buffer.max_size=100"][0]
    assert look["strategy._target_=er, buffer.max_size=100"][2] != look["strategy._target_=er, buffer.max_size=200"][2]


def test_experiences_from_1_class_names_and_a_subtitle_true_of_every_curve(tmp_path):
    from replaycli.outputs import figures, plots

    acc = [[0.9, 0.0, 0.0], [0.5, 0.8, 0.0], [0.4, 0.6, 0.9]]
    ax = plots.accuracy_curves(acc, "t", figures.Style()).axes[0]
    assert list(ax.lines[0].get_xdata()) == [1, 2, 3] and legend_texts(ax.figure)[0] == "test 1"
    m = plots.accuracy_matrix(acc, "t", figures.Style()).axes[0]
    assert [t.get_text() for t in m.get_xticklabels()] == ["1", "2", "3"]
    one = write_run(tmp_path / "named", acc, [[2, 0], [1, 1], [1, 1]])
    (one / "class_names.json").write_text('["cat", "dog"]\n')
    run_cli("plot", str(one))
    fig = plots.buffer_histogram([[2, 0], [1, 1]], "t", figures.Style(), plots.rundir.class_names(one, 2))
    assert legend_texts(fig) == ["cat", "dog"] and [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["1", "2"]
    assert json.loads(run_cli("inspect", str(one), "--json").stdout)["class_names"] == ["cat", "dog"]
    assert "one bar per class, cat, dog" in " ".join(run_cli("inspect", str(one)).stdout.split())
    shared = {"benchmark": "split_mnist", "buffer": "reservoir", "buffer._target_": "x", "buffer.max_size": 500}
    runs_params = [{**shared, "strategy": "der"}, {**shared, "strategy": "er"}, {**shared, "strategy": "icarl"}]
    assert figures.common(runs_params, ("experiment",)) == "split_mnist · reservoir(500)"  # no method: they differ


def test_a_figure_with_other_options_never_overwrites_another(tmp_path):
    one = runs(tmp_path, {("er", 100, 0): GRID[("er", 100, 0)]}) / "er-100-0"
    first = run_cli("plot", str(one)).stdout.split()
    before = [Path(f).read_bytes() for f in first]
    zoomed = run_cli("plot", str(one), "--ylim", "auto").stdout.split()
    paper = run_cli("plot", str(one), "--size", "column", "--no-title").stdout.split()
    assert len(set(first) | set(zoomed) | set(paper)) == 9  # three options, nine files
    assert [Path(f).read_bytes() for f in first] == before
    assert paper[0].endswith("accuracy_matrix_column_notitle.png") and zoomed[1].endswith(
        "accuracy_curves_ylimauto.png"
    )


def test_a_column_figure_has_its_legend_below_naming_values_and_the_labels_asked_for(tmp_path):
    from replaycli.outputs import compare as comparing
    from replaycli.outputs import plots

    root = runs(tmp_path / "sweep", GRID)
    labels = ["der=DER", "strategy._target_=method"]
    d = comparing.displayed(compare([root], ["buffer.max_size", "strategy._target_"]), labels=labels)
    fig = plots.final_accuracy(d["groups"], d["by"], "t", plots.Style(size="column"))
    assert fig.axes[0].get_legend() is None and len(fig.legends) == 1  # below the axes, across the figure
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts[0].startswith("DER (") and texts[1].startswith("er (")  # values; the keys in the title
    assert fig.legends[0].get_title().get_text() == "method"
    made = run_cli("plot", str(root), "--size", "column", "--label", "der=DER", "--label", "strategy._target_=method")
    assert made.returncode == 0, made.stderr
    assert all("_column_labels-" in Path(f).name for f in made.stdout.split())


def test_inspect_of_a_sweep_shows_task_il_and_validation_where_jobs_record_them(tmp_path):
    sweep = tmp_path / "sweep"
    for job, a in ((0, 0.5), (1, 0.7)):
        write_run(
            sweep / str(job),
            [[a, 0.0], [a - 0.1, a]],
            HIST,
            [f"seed={job}"],
            f"seed: {job}\n",
            side={"task_il_accuracy": [[1.0, 0.0], [0.9, 1.0]], "val_accuracy": [[a, 0.0], [a, 0.8]]},
        )
    out = run_cli("inspect", str(sweep)).stdout
    header = next(line for line in out.splitlines() if "final acc" in line)
    assert "task-IL" in header and "validation" in header and "AUC" not in header
    row = next(line for line in out.splitlines() if line.startswith("│   1 "))
    assert "0.950" in row and "0.750" in row  # task-IL (0.9 + 1.0) / 2, validation (0.7 + 0.8) / 2
