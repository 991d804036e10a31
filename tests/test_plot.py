"""`replay plot`: PNG figures of a run and of a sweep, written into it, of the size promised."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import replay, run_cli
from made_outputs import real_sweep, write_run
from matplotlib.image import imread

from replaycli.outputs.figures import DPI, FIGSIZE
from replaycli.outputs.plots import RUN_FIGURES, SWEEP_FIGURES

PIXELS = (round(FIGSIZE[1] * DPI), round(FIGSIZE[0] * DPI))  # (rows, columns)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A copy of the session's sweep: plotting writes into it."""
    copy = tmp_path_factory.mktemp("plotted") / "sweep"
    shutil.copytree(real_sweep(tmp_path_factory)[1], copy)
    return copy


def check_png(path) -> None:
    image = imread(path)  # [rows, columns, RGBA]
    assert image.shape == (*PIXELS, 4)
    assert np.unique(image.reshape(-1, 4), axis=0).shape[0] > 50  # something drawn, not a blank page


def plotted(path, cwd, *args, process: bool = False) -> list[str]:
    proc = (replay if process else run_cli)("plot", str(path), *args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_a_run(sweep, tmp_path):
    files = plotted(sweep / "2", tmp_path, process=True)  # the subprocess smoke test of `plot`
    assert files == [str(sweep / "2" / f"{name}.png") for name in RUN_FIGURES[:3]]  # no confusion, no anytime curve
    for f in files:
        check_png(f)


def test_a_sweep(sweep, tmp_path):
    files = plotted(sweep, tmp_path)
    assert files == [str(sweep / f"{name}.png") for name in SWEEP_FIGURES]
    for f in files:
        check_png(f)
    by_seed = plotted(sweep, tmp_path, "--by", "seed")  # another x axis: its own files, the defaults kept
    assert by_seed == [str(sweep / f"{name}_by_seed.png") for name in SWEEP_FIGURES]


def test_an_incomplete_run_with_many_classes(tmp_path):
    acc = [[0.9 - 0.1 * i] * 12 for i in range(3)]  # 3 of 12 experiences done
    hists = [[(i + k) % 4 for k in range(25)] for i in range(3)]  # 25 classes: no legend, a colour map
    run = write_run(tmp_path / "run", acc, hists, complete=False)
    for f in plotted(run, tmp_path):
        check_png(f)


@pytest.mark.parametrize("what", ["empty", "failed job", "no experience"])
def test_nothing_to_plot_exits_2_with_one_line(sweep, tmp_path, what):
    path = {"empty": tmp_path, "failed job": sweep / "0", "no experience": tmp_path / "run"}[what]
    if what == "no experience":
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "config.yaml").write_text("seed: 0\n")
    proc = run_cli("plot", str(path), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path} ")
    assert not list(path.glob("*.png"))
