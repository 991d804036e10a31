"""Bad input is refused before any training: one line naming the bad value and what is allowed,
exit code 2, no traceback, and no run directory left behind. A failed sweep job fails alone."""
from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from replaycli.outputs import SUMMARY, read_run

CUDA = torch.cuda.is_available()

# (id, overrides, what the one-line message must say); {tmp} is the case's own directory
BAD = [
    ("unknown-option", ["buffer=foo"],
     ["buffer=foo is not an option of config group buffer",
      "allowed: class_balanced, experience_balanced, none, parametric, reservoir"]),
    ("unknown-model", ["model=transformer"], ["model=transformer", "allowed: cnn, mlp, resnet18"]),
    ("unknown-experiment", ["+experiment=nope"], ["experiment=nope", "digits_replay", "tutorial"]),
    ("unknown-key", ["foo=1"], ["unknown key foo in foo=1", "allowed keys: ", "epochs", "to add a key: +foo=1"]),
    ("unknown-nested-key", ["buffer.maxsize=3"],
     ["unknown key buffer.maxsize in buffer.maxsize=3", "did you mean buffer.max_size?",
      "allowed keys of buffer: max_size"]),
    ("key-of-another-option", ["loader=group_balanced", "loader.batch_size_mem=4"],
     ["unknown key loader.batch_size_mem", "allowed keys of loader: oversample_small_groups"]),
    ("bad-syntax", ["epochs=["], ["cannot parse override 'epochs=['", "allowed: key=value, group=option"]),
    ("sweep-without-m", ["buffer.max_size=1,2"], ["buffer.max_size=1,2", "--multirun"]),
    ("zero-epochs", ["epochs=0"], ["epochs=0 must be a positive integer"]),
    ("text-epochs", ["epochs=abc"], ["epochs='abc' must be a positive integer"]),
    ("negative-batch", ["train_mb_size=-4"], ["train_mb_size=-4 must be a positive integer"]),
    ("zero-eval-batch", ["eval_mb_size=0"], ["eval_mb_size=0 must be a positive integer"]),
    ("zero-memory-batch", ["loader.batch_size_mem=0"], ["loader.batch_size_mem=0 must be a positive integer"]),
    ("zero-buffer", ["buffer.max_size=0"], ["buffer.max_size=0 must be a positive integer"]),
    ("zero-hidden", ["model.hidden_size=0"], ["model.hidden_size=0 must be a positive integer"]),
    ("negative-lr", ["optimizer.lr=-0.1"], ["optimizer.lr=-0.1 must be a positive number"]),
    ("negative-seed", ["seed=-1"], ["seed=-1 must be an integer >= 0"]),
    ("bad-progress", ["progress=loud"], ["progress='loud' is not allowed; allowed: auto, rich, plain, none"]),
    ("bad-groupby", ["groupby=colour"], ["groupby='colour' is not allowed; allowed: null, class, task, experience"]),
    ("groupby-without-groups", ["buffer=reservoir", "groupby=class"],
     ["groupby=class needs a buffer with groups; buffer=reservoir has none", "allowed: buffer=parametric"]),
    ("n-experiences", ["benchmark.n_experiences=3"],
     ["n_experiences=3 does not divide the 10 classes of SplitDigits", "allowed: [1, 2, 5, 10]"]),
    ("class-order", ["benchmark.fixed_class_order=[0,1]"], ["fixed_class_order=[0, 1] must be a permutation"]),
    ("unknown-argument", ["+model.foo=1"],
     ["model.foo=1 is not an argument of replaycli.models.SimpleMLP",
      "allowed: drop_rate, hidden_layers, hidden_size"]),
    ("offline-data-missing", ["benchmark=split_mnist", "data_root={tmp}/nodata", "download=false"],
     ["mnist data not found under data_root={tmp}/nodata (download is off)", "train-images-idx3-ubyte"]),
    ("unwritable-output", ["hydra.run.dir={tmp}/blocker/run"],
     ["hydra.run.dir={tmp}/blocker/run cannot be created: {tmp}/blocker is not a directory",
      "allowed: a writable directory"]),
    ("sweep-unknown-option", ["-m", "buffer=reservoir,foo"], ["buffer=foo is not an option of config group buffer"]),
    ("sweep-unknown-key", ["-m", "epochs=1", "fooo=1,2"], ["unknown key fooo in fooo=1"]),
    ("conflicting-flags", ["-m", "--cfg", "job"],
     ["--cfg and --multirun given together; allowed: one of --run, --multirun"]),
]
if not CUDA:
    BAD.append(("cuda-missing", ["device=cuda"], ["device=cuda but CUDA is not available here; allowed: auto, cpu"]))


def replay(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    flags = [a for a in args if a.startswith("-")]  # Hydra's flags come before the overrides
    rest = [a for a in args if not a.startswith("-")]
    cmd = [sys.executable, "-m", "replaycli.cli", "run", *flags, "epochs=1", "progress=none", *rest]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def refused(tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """Every bad command line run once, a few at a time (each is a fresh process)."""
    def one(case):
        name, args, _ = case
        tmp = tmp_path_factory.mktemp(name)
        (tmp / "blocker").write_text("a file where a directory should be\n")
        return name, (tmp, replay([a.format(tmp=tmp) for a in args], tmp))

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(one, BAD))


@pytest.mark.parametrize("name, args, expected", BAD, ids=[c[0] for c in BAD])
def test_bad_input_is_one_line_exit_2_and_leaves_no_run_dir(refused, name, args, expected):
    tmp, p = refused[name]
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert p.stderr.startswith("error: ") and p.stderr.count("\n") == 1, p.stderr[-2000:]
    assert "Traceback" not in p.stderr + p.stdout
    for text in expected:
        assert text.format(tmp=tmp) in p.stderr, p.stderr
    left = [d for d in tmp.rglob("*") if d.is_dir() and d.name not in ("nodata",)]
    assert not [d for d in left if (d / ".hydra").exists() or list(d.glob("*.csv"))], left
    assert not (tmp / "outputs" / "runs").exists() or not any((tmp / "outputs" / "runs").iterdir())
    assert not (tmp / "outputs" / "sweeps").exists()


def test_hydra_flags_still_work(tmp_path):
    p = subprocess.run([sys.executable, "-m", "replaycli.cli", "run", "--cfg", "job", "buffer.max_size=7"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "max_size: 7" in p.stdout, p.stderr
    p = subprocess.run([sys.executable, "-m", "replaycli.cli", "run", "--cfg", "job", "fooo=1"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.startswith("error: unknown key fooo") and p.stderr.count("\n") == 1
    p = subprocess.run([sys.executable, "-m", "replaycli.cli", "run", "--help"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "buffer: class_balanced, experience_balanced" in p.stdout
    assert not (tmp_path / "outputs").exists()


def test_a_failed_sweep_job_does_not_take_the_others_down(tmp_path):
    sweep = tmp_path / "sweep"
    p = replay(["-m", "buffer.max_size=0,5", "benchmark.n_experiences=2", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert p.returncode == 2, p.stderr[-2000:]
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "buffer.max_size=0 must be a positive integer" in last, p.stderr
    assert "Traceback" not in p.stderr
    good = read_run(sweep / "1")  # the job after the failed one ran to its end
    assert good.complete and len(good.accuracy) == 2 and sum(good.histograms[-1]) == 5
    assert not (sweep / "0" / SUMMARY).exists()
