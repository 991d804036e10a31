"""Adding a replay method is one Python class and one YAML file, outside the package: the README's
"Extending" example, run end to end by `replay run` from the user's working directory."""

from __future__ import annotations

from pathlib import Path

from conftest import cli

from replaycli.outputs.rundir import read_run

METHOD = '''
import torch

from replaycli.methods.base import Method


class ScaledReplay(Method):
    """Replay's loss times `weight`, memory drawn from the live buffer at every step."""

    def __init__(self, model, optimizer, mask=None, weight=1.0):
        super().__init__(model, optimizer, mask)
        self.weight = weight

    def step(self, batch, memory):
        x, y, t = batch.x, batch.y, batch.t
        if memory is not None:
            mx, my, mt, _ = memory.sample()
            x, y, t = torch.cat([x, mx]), torch.cat([y, my]), torch.cat([t, mt])
        out = self.model(x)
        return self.weight * self.ce(out, y, t), out[:len(batch.x)]
'''
YAML = """# replay run --config-dir conf strategy=scaled buffer_update=every_batch
_target_: {module}.ScaledReplay
_partial_: true   # the model, optimizer and task mask are passed in Python
weight: 1.0       # the factor on the loss
"""
QUICK = [
    "epochs=1",
    "device=cpu",
    "progress=none",
    "metrics=[]",
    "benchmark.n_experiences=2",
    "model.hidden_size=32",
    "buffer_update=every_batch",
]


def test_a_method_from_the_working_directory_runs_end_to_end(tmp_path, capsys, monkeypatch):
    module = f"user_method_{tmp_path.name}"  # a fresh module name per test session
    (tmp_path / f"{module}.py").write_text(METHOD)
    (tmp_path / "conf" / "strategy").mkdir(parents=True)
    (tmp_path / "conf" / "strategy" / "scaled.yaml").write_text(YAML.format(module=module))
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> Path:
        out = tmp_path / "_".join(a.replace("=", "-").replace("/", "-") for a in args)
        code, _, err = cli("run", "--config-dir", "conf", *QUICK, *args, f"hydra.run.dir={out}", capsys=capsys)
        assert code == 0, err
        return out

    mine, builtin = run("strategy=scaled"), run("strategy=replay")
    assert f"_target_: {module}.ScaledReplay" in read_run(mine).config_text
    # weight 1 is replay's loss: the same numbers, to the last bit, through the same loop
    assert (mine / "accuracy.csv").read_bytes() == (builtin / "accuracy.csv").read_bytes()
    assert (mine / "buffer_histogram.csv").read_bytes() == (builtin / "buffer_histogram.csv").read_bytes()
    frozen = read_run(run("strategy=scaled", "strategy.weight=0.0"))  # no gradient: the model never moves
    assert len(set(map(tuple, frozen.accuracy))) == 1 and frozen.accuracy != read_run(mine).accuracy

    code, _, err = cli(
        "run",
        "--config-dir",
        "conf",
        *QUICK,
        "strategy=scaled",
        "+strategy.wieght=2",
        f"hydra.run.dir={tmp_path / 'typo'}",
        capsys=capsys,
    )
    assert code == 2 and "strategy.wieght=2 is not an argument of" in err and "allowed: weight" in err
    assert not (tmp_path / "typo").exists()


SELECTION = '''
import torch


class SmallestIds:
    """Keeps the samples with the smallest pool ids: one persistent score per sample."""

    online = True

    def __init__(self, model=None, generator=None):
        pass

    def scores(self, data):
        return -data.ids.to(torch.float32)
'''


def test_a_selection_strategy_from_the_working_directory_decides_what_the_buffer_keeps(tmp_path, capsys, monkeypatch):
    import torch

    module = f"user_selection_{tmp_path.name}"
    (tmp_path / f"{module}.py").write_text(SELECTION)
    (tmp_path / "conf" / "selection").mkdir(parents=True)
    (tmp_path / "conf" / "selection" / "smallest.yaml").write_text(
        f"# replay run --config-dir conf selection=smallest\n_target_: {module}.SmallestIds\n"
        "_partial_: true   # the model and the generator are passed in Python\n"
    )
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    code, _, err = cli(
        "run",
        "--config-dir",
        "conf",
        *QUICK,
        "selection=smallest",
        "buffer=reservoir",
        "buffer.max_size=20",
        f"hydra.run.dir={out}",
        capsys=capsys,
    )
    assert code == 0, err
    kept = torch.load(out / "checkpoint.pt", weights_only=True)["state"]["buffer"]["store"]["attrs"]["ids"]["value"]
    from replaycli.benchmarks import SplitDigits

    seen = torch.cat([e.dataset.ids for e in SplitDigits(n_experiences=2).train_stream])
    assert sorted(kept.tolist()) == sorted(seen.tolist())[:20]  # the 20 smallest ids of the whole stream


STATEFUL = '''
import copy

import torch
import torch.nn.functional as F

from replaycli.memory.buffer import Buffer
from replaycli.methods.base import Method


class Distill(Method):
    """Cross-entropy plus the squared distance of the logits to the previous experience's model."""

    def __init__(self, model, optimizer, mask=None, alpha=1.0):
        super().__init__(model, optimizer, mask)
        self.alpha = alpha
        self.old = None  # the model as it was at the end of the previous experience
        self.finished = []  # experiences done, a plain list

    def step(self, batch, memory):
        x, y, t = batch.x, batch.y, batch.t
        if memory is not None:
            mx, my, mt, _ = memory.sample()
            x, y, t = torch.cat([x, mx]), torch.cat([y, my]), torch.cat([t, mt])
        out = self.model(x)
        loss = self.ce(out, y, t)
        if self.old is not None:
            with torch.no_grad():
                target = self.old(x)
            loss = loss + self.alpha * F.mse_loss(out, target)
        return loss, out[:len(batch.x)]

    def end_experience(self, experience, memory):
        self.old = copy.deepcopy(self.model)
        self.finished.append(experience)


class FIFO(Buffer):
    """Keeps the samples that arrived last: each new sample's score is its arrival number."""

    def __init__(self, max_size, selection_strategy=None, generator=None):
        super().__init__(max_size, selection_strategy=selection_strategy, generator=generator)
        self.arrived = 0

    def new_scores(self, data):
        scores = torch.arange(self.arrived, self.arrived + len(data), dtype=torch.float32)
        self.arrived += len(data)
        return scores
'''


def write_stateful(tmp_path: Path) -> str:
    """The issue's toy method and toy policy, each one class and one YAML as README "Extending" says."""
    module = f"user_stateful_{tmp_path.name}"
    (tmp_path / f"{module}.py").write_text(STATEFUL)
    for group, name, body in (
        ("strategy", "distill", "Distill\n_partial_: true\nalpha: 1.0\n"),
        ("buffer", "fifo", "FIFO\n_partial_: true\nmax_size: 60\n"),
    ):
        (tmp_path / "conf" / group).mkdir(parents=True, exist_ok=True)
        (tmp_path / "conf" / group / f"{name}.yaml").write_text(f"_target_: {module}.{body}")
    return module


def test_a_users_stateful_method_and_policy_resume_to_the_same_numbers(tmp_path, capsys, monkeypatch):
    """Neither class writes state_dict: the checkpoint keeps their attributes (the previous model,
    a list, a counter), and an interrupted run resumes to the uninterrupted run's files, byte for
    byte. Without that state the resumed run differs (checked by dropping it from the checkpoint)."""
    import torch
    from conftest import stopping_at

    from replaycli.run.runner import resume_run

    module = write_stateful(tmp_path)
    monkeypatch.chdir(tmp_path)
    args = ["--config-dir", "conf", *QUICK, "benchmark.n_experiences=5", "strategy=distill", "buffer=fifo"]

    def run(name: str) -> Path:
        code, _, err = cli("run", *args, f"hydra.run.dir={tmp_path / name}", capsys=capsys)
        assert code == 0, err
        return tmp_path / name

    whole = run("whole")
    trusted = (f"{module}.Distill", f"{module}.FIFO")
    for name in ("cut", "forgetful"):
        with stopping_at(2):  # Ctrl-C at the start of the third experience
            code, _, err = cli("run", *args, f"hydra.run.dir={tmp_path / name}", capsys=capsys)
        assert code != 0 and read_run(tmp_path / name).resumable, err
    ckpt = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    method, buffer = ckpt["state"]["method"], ckpt["state"]["buffer"]
    assert method["old"]["__state__"] == "module" and method["finished"]["items"] == [0, 1]
    assert buffer["arrived"] == sum(len(e.dataset) for e in read_stream(5)[:2])  # every sample of both, once

    assert resume_run(tmp_path / "cut", trusted) == 0
    for table in ("accuracy.csv", "buffer_histogram.csv"):
        assert (tmp_path / "cut" / table).read_bytes() == (whole / table).read_bytes(), table

    # the negative control: the same resume without the method's previous model and the policy's counter
    forgetful = tmp_path / "forgetful"
    ckpt = torch.load(forgetful / "checkpoint.pt", weights_only=True)
    ckpt["state"]["method"]["old"], ckpt["state"]["buffer"]["arrived"] = None, 0
    torch.save(ckpt, forgetful / "checkpoint.pt")
    assert resume_run(forgetful, trusted) == 0
    assert (forgetful / "accuracy.csv").read_bytes() != (whole / "accuracy.csv").read_bytes()
    assert (forgetful / "buffer_histogram.csv").read_bytes() != (whole / "buffer_histogram.csv").read_bytes()


def read_stream(n: int) -> list:
    from replaycli.benchmarks import SplitDigits

    return list(SplitDigits(n_experiences=n).train_stream)


def test_a_method_is_told_the_stream_it_trains_on():
    """`Method.setting`: classes, sample shape, experiences, the run's generator and device, set
    once the run is built, so a method asks instead of re-deriving them from its first batch."""
    from conftest import build_run

    run = build_run(["benchmark.n_experiences=2", "device=cpu"])
    s = run.method.setting
    assert (s.num_classes, s.input_shape, s.n_experiences) == (10, (1, 8, 8), 2)  # the 8x8 digits
    assert s.generator is run.memory.generator and s.device == run.device


Pair = __import__("collections").namedtuple("Pair", "count scale")


def test_the_checkpoint_keeps_the_kind_of_a_container():
    """A defaultdict comes back with its factory (a plain dict would raise KeyError after a
    resume), an OrderedDict as one, a namedtuple as its class."""
    import collections

    import torch

    from replaycli.run.state import Refs, round_trip

    class Counts:
        def __init__(self):
            self.seen = collections.defaultdict(int)
            self.order = collections.OrderedDict()
            self.pair = Pair(0, torch.ones(1))

    saved, fresh = Counts(), Counts()
    saved.seen["a"] += 2
    saved.order["b"] = 1
    saved.pair = Pair(3, torch.full((1,), 2.0))
    round_trip(saved, fresh, Refs({}, torch.device("cpu")))
    assert type(fresh.seen) is collections.defaultdict and fresh.seen["a"] == 2 and fresh.seen["new"] == 0
    assert type(fresh.order) is collections.OrderedDict and list(fresh.order.items()) == [("b", 1)]
    assert type(fresh.pair) is Pair and fresh.pair.count == 3 and torch.equal(fresh.pair.scale, torch.full((1,), 2.0))
