"""Generated bad input, in process: override strings thrown at `replay run`, and damaged run
directories thrown at `resume`, `inspect`, `compare` and `plot`. Whatever comes, the exit code
is 0 or 2, an error is one line, there is never a traceback, and nothing is written outside the
run directory."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import run_cli, stopping_at
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# 10 examples each in the suite; REPLAY_FUZZ_EXAMPLES=200 for a longer search (200 found nothing on 2026-12-01)
FUZZ = settings(
    max_examples=int(os.environ.get("REPLAY_FUZZ_EXAMPLES", "10")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
KEYS = [
    "seed",
    "epochs",
    "train_mb_size",
    "mem_mb_size",
    "eval_mb_size",
    "progress",
    "groupby",
    "buffer_update",
    "scenario",
    "metrics",
    "deterministic",
    "buffer.max_size",
    "buffer.adaptive_size",
    "model.hidden_size",
    "model.drop_rate",
    "optimizer.lr",
    "strategy.alpha",
    "benchmark.n_experiences",
    "benchmark.return_task_id",
    "benchmark.seed",
    "buffer",
    "strategy",
    "selection",
    "loader",
    "model",
    "optimizer",
    "granularity.loss",
    "foo",
    "+foo",
    "+strategy.foo",
    "device",
]
VALUES = [
    "-1",
    "0",
    "1",
    "2",
    "nan",
    "inf",
    "-inf",
    "1e30",
    "99999999999999999999",
    "null",
    "true",
    "maybe",
    "${foo}",
    "[1,2]",
    "{a: 1}",
    "''",
    "abc",
    "class",
    "reservoir",
    "der",
    "derpp",
    "gdumb",
    "weighted",
    "herding",
    "cnn",
    "sgd",
    "every_batch",
    "task_il",
    "cuda",
    "none",
    "class_balanced",
    "minibatch",
]
BASE = ["epochs=1", "benchmark.n_experiences=2", "model.hidden_size=16", "progress=none", "download=false"]


def override() -> st.SearchStrategy[str]:
    deleted = st.sampled_from(["~seed", "~buffer.max_size", "~buffer", "~strategy.alpha", "=5", "~"])
    return st.one_of(st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), st.sampled_from(VALUES)), deleted)


def outside(root: Path, inside: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and inside not in p.parents]


def assert_clean(p, root: Path, inside: Path) -> None:
    assert p.returncode in (0, 2), (p.returncode, p.stderr[-3000:])
    assert "Traceback" not in p.stdout + p.stderr, p.stderr[-3000:]
    if p.returncode == 2:
        assert p.stderr.startswith("error: ") and p.stderr.strip().count("\n") == 0, p.stderr[-3000:]
    assert not outside(root, inside), outside(root, inside)


@FUZZ
@given(args=st.lists(override(), min_size=1, max_size=4))
def test_generated_overrides_are_run_or_refused_in_one_line(tmp_path_factory, args):
    root = tmp_path_factory.mktemp("fuzz_run")
    keys = [a.split("=")[0].lstrip("+~") for a in args]
    if len(set(keys)) < len(keys):  # Hydra takes a key once per command line
        return
    epochs = dict(a.split("=", 1) for a in args if "=" in a).get("epochs", "")
    if epochs.isdigit() and int(epochs) > 2:  # a run of 10^20 epochs is no bad input: it is a run that never ends
        return
    p = run_cli("run", *BASE, *args, f"data_root={root / 'run' / 'data'}", f"hydra.run.dir={root / 'run'}", cwd=root)
    assert_clean(p, root, root / "run")


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """A complete run and one stopped after its first experience (Ctrl-C)."""
    root = tmp_path_factory.mktemp("fuzz_made")
    complete = root / "complete"
    assert run_cli("run", *BASE, "device=cpu", f"hydra.run.dir={complete}", cwd=root).returncode == 0
    with stopping_at(1):
        assert run_cli("run", *BASE, "device=cpu", f"hydra.run.dir={root / 'stopped'}", cwd=root).returncode == 130
    return {"complete": complete, "stopped": root / "stopped"}


FILES = [
    "config.yaml",
    "accuracy.csv",
    "buffer_histogram.csv",
    "metrics.jsonl",
    "summary.json",
    "checkpoint.pt",
    "confusion.csv",
    "run.log",
    ".hydra/overrides.yaml",
    ".hydra/hydra.yaml",
]
DAMAGE = {
    "empty": b"",
    "binary": b"\xff\xfe\x00garbage\x80",
    "json list": b"[1, 2]",
    "json string": b'"complete"',
    "json null": b"null",
    "yaml list": b"- a\n- b\n",
    "ragged csv": b"trained,test_0,average\n0,0.5\n1,0.5,0.5,9\n",
    "wide csv": ("trained," + ",".join(f"c{i}" for i in range(20000)) + "\n").encode(),
    "text in numbers": b"trained,test_0,average\n0,abc,nan\n",
    "json lines of lists": b"[1]\n[2]\n",
    "truncated json": b'{"status": "comp',
    "deep yaml": b"a:\n" + b"  b:\n" * 50,
    "summary of wrong types": json.dumps({"status": "complete", "final_accuracy": "high", "seed": [1]}).encode(),
}


@FUZZ
@given(
    which=st.sampled_from(["complete", "stopped"]),
    damage=st.lists(st.tuples(st.sampled_from(FILES), st.sampled_from([*DAMAGE, "deleted"])), min_size=1, max_size=3),
    verb=st.sampled_from(["inspect", "compare", "plot", "resume"]),
)
def test_damaged_run_directories_are_read_or_refused_in_one_line(tmp_path_factory, made, which, damage, verb):
    root = tmp_path_factory.mktemp("fuzz_dir")
    run = root / "run"
    shutil.copytree(made[which], run)
    for name, how in damage:
        path = run / name
        if how == "deleted":
            path.unlink(missing_ok=True)
        else:
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(DAMAGE[how])
    p = run_cli(verb, str(run), cwd=root)
    assert_clean(p, root, run)
