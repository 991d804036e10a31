"""hydra/launcher=batched: jobs that differ only in seed train as one group in one process, and each
member's run directory holds what its single run writes (run/together.py, run/launcher.py)."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from replaycli.outputs import rundir
from replaycli.run.together import Group

DER = ("strategy=der", "buffer_update=every_batch", "buffer.max_size=40", "epochs=1", "device=cpu")


def sweep(tmp: Path, name: str, *args: str):
    proc = run_cli("run", "-m", *args, f"hydra.sweep.dir={tmp / name}", cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    return proc, tmp / name


def rows(root: Path) -> list[dict[str, str]]:
    with open(root / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def singles(tmp_path_factory):
    """Three seeds of DER under every_batch, each a single job of Hydra's basic launcher."""
    tmp = tmp_path_factory.mktemp("singles")
    return sweep(tmp, "basic", *DER, "seed=0,1,2")[1]


def test_members_of_a_batched_group_equal_their_single_runs(singles, tmp_path):
    proc, root = sweep(tmp_path, "batched", "hydra/launcher=batched", "hydra.launcher.batch=true", *DER, "seed=0,1,2")
    assert "[jobs 0-2] seed=0,1,2: 3 runs train as one batched model" in proc.stdout
    assert [r["seed"] for r in rows(root)] == ["0", "1", "2"]
    assert [r["status"] for r in rows(root)] == ["complete"] * 3
    for job in ("0", "1", "2"):
        # the memory took the same samples: each member drew from its own generator as its single run
        assert (root / job / "buffer_histogram.csv").read_bytes() == (
            singles / job / "buffer_histogram.csv"
        ).read_bytes()
        # the batched matrix products may sum in another order than the single run's (here they do
        # not: the same bits); bench/RESULTS.md measured at most 0.003 of final accuracy over 32 seeds
        one, member = (rundir.read_run(d / job).accuracy for d in (singles, root))
        assert len(one) == len(member) == 5
        for a, b in zip(one, member, strict=True):
            assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 0.02
        assert abs(sum(one[-1]) - sum(member[-1])) / len(one[-1]) <= 0.005
        assert sorted(p.name for p in (root / job).iterdir()) == sorted(p.name for p in (singles / job).iterdir())
        # each member counts its own passes through the group's model: those of its single run (metrics: [cost])
        cost = [json.loads((d / job / "summary.json").read_text())["cost"] for d in (singles, root)]
        assert cost[0] == cost[1] and cost[0]["forward"] > 0
    single, batched = (torch.load(d / "0" / "checkpoint.pt", weights_only=False) for d in (singles, root))
    for key, value in single["state"]["model"].items():  # what resume reads: the member's own model
        assert torch.allclose(value, batched["state"]["model"][key], atol=1e-5), key


def test_a_method_that_cannot_batch_takes_turns_with_its_single_runs_numbers(tmp_path):
    args = ("strategy=agem", "epochs=1", "device=cpu", "buffer.max_size=30")
    _, basic = sweep(tmp_path, "basic", *args, "seed=3,4")
    proc, root = sweep(tmp_path, "turns", "hydra/launcher=batched", "hydra.launcher.batch=true", *args, "seed=3,4")
    assert "[jobs 0-1] seed=3,4: one after another in this process (the step of AGEM" in proc.stdout
    for job in ("0", "1"):  # alone in its turn, with its own global random state: the same bits
        assert (root / job / "accuracy.csv").read_bytes() == (basic / job / "accuracy.csv").read_bytes()


def test_jobs_group_by_everything_but_the_seed_and_at_most_max_group(tmp_path):
    proc, root = sweep(
        tmp_path,
        "grouped",
        "hydra/launcher=batched",
        "hydra.launcher.max_group=2",
        "epochs=1",
        "device=cpu",
        "buffer.max_size=20,30",
        "seed=0,1,2",
    )
    assert "[jobs 0-1] seed=0,1: one after another in this process (on the CPU" in proc.stdout  # batch=auto
    assert "[jobs 3-4] seed=0,1:" in proc.stdout and "[jobs 2-2]" not in proc.stdout  # job 2 and 5 alone
    assert [(r["buffer.max_size"], r["seed"], r["status"]) for r in rows(root)] == [
        (m, s, "complete") for m in ("20", "30") for s in ("0", "1", "2")
    ]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("hydra.launcher.batch=maybe", "hydra.launcher.batch='maybe' is not allowed; allowed: auto, true, false"),
        ("hydra.launcher.max_group=0", "hydra.launcher.max_group=0 must be a positive integer"),
    ],
)
def test_a_bad_launcher_setting_is_one_line(tmp_path, override, message):
    proc = run_cli("run", "-m", "hydra/launcher=batched", override, "seed=0,1", cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


class Toy:
    """What a group reads of a member's run."""

    def __init__(self, seed: int):
        torch.manual_seed(seed)
        self.model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.device = torch.device("cpu")


def steps(member, n: int, x: torch.Tensor, fail_at: int | None = None) -> list[float]:
    out = []
    for i in range(n):
        if i == fail_at:
            raise RuntimeError("member failed")
        loss = member.run.model(x).sum() if member.group.mode != "batched" else seat(member)(x).sum()
        member.descend(loss)
        out.append(float(loss.detach()))
    return out


def seat(member):
    from replaycli.run.together import Seat

    return Seat(member)


def test_a_member_that_fails_or_ends_early_leaves_the_others_training(monkeypatch):
    import replaycli.run.together as together

    monkeypatch.setattr(together, "unbatchable", lambda run: None)
    group, x = Group(3, batch="true"), torch.ones(5, 3)
    losses: dict[int, object] = {}
    toys = [Toy(i) for i in range(3)]  # built one after another, as the runner's build lock has them

    def member(i: int) -> None:
        try:
            m = group.join(i, toys[i])
            losses[i] = steps(m, 6 if i != 2 else 2, x, fail_at=3 if i == 1 else None)
        except RuntimeError as e:
            losses[i] = e
        finally:
            group.gone(i)

    threads = [threading.Thread(target=member, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a member waits for one that is gone"
    assert group.mode == "batched"
    assert str(losses[1]) == "member failed" and len(losses[2]) == 2
    alone = Toy(0)  # member 0's numbers are those of its model trained alone
    expect = []
    for _ in range(6):
        loss = alone.model(x).sum()
        alone.optimizer.zero_grad()
        loss.backward()
        alone.optimizer.step()
        expect.append(float(loss.detach()))
    assert losses[0] == pytest.approx(expect, rel=1e-6)


def test_a_reissued_batched_sweep_runs_only_the_member_that_is_missing(tmp_path):
    import shutil

    args = ("hydra/launcher=batched", "hydra.launcher.batch=true", "epochs=1", "device=cpu", "seed=0,1,2")
    _, root = sweep(tmp_path, "s", *args)
    kept = (root / "0" / "checkpoint.pt").stat().st_mtime_ns
    before = (root / "1" / "accuracy.csv").read_bytes()
    shutil.rmtree(root / "1")  # a member that never ran
    proc, _ = sweep(tmp_path, "s", *args)  # the two complete members leave the group at once: no wait for them
    assert "the sweep goes on: 2 of 3 jobs complete already" in proc.stdout
    assert (root / "0" / "checkpoint.pt").stat().st_mtime_ns == kept
    assert (root / "1" / "accuracy.csv").read_bytes() == before
    assert [r["status"] for r in rows(root)] == ["complete"] * 3
