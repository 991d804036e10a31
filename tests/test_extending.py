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
YAML = '''# replay run --config-dir conf strategy=scaled buffer_update=every_batch
_target_: {module}.ScaledReplay
_partial_: true   # the model, optimizer and task mask are passed in Python
weight: 1.0       # the factor on the loss
'''
QUICK = ["epochs=1", "device=cpu", "progress=none", "metrics=[]", "benchmark.n_experiences=2",
         "model.hidden_size=32", "buffer_update=every_batch"]


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

    code, _, err = cli("run", "--config-dir", "conf", *QUICK, "strategy=scaled", "+strategy.wieght=2",
                       f"hydra.run.dir={tmp_path / 'typo'}", capsys=capsys)
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
        "_partial_: true   # the model and the generator are passed in Python\n")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    code, _, err = cli("run", "--config-dir", "conf", *QUICK, "selection=smallest", "buffer=reservoir",
                       "buffer.max_size=20", f"hydra.run.dir={out}", capsys=capsys)
    assert code == 0, err
    kept = torch.load(out / "checkpoint.pt", weights_only=True)["state"]["buffer"]["store"]["ids"]
    from replaycli.benchmarks import SplitDigits

    seen = torch.cat([e.dataset.ids for e in SplitDigits(n_experiences=2).train_stream])
    assert sorted(kept.tolist()) == sorted(seen.tolist())[:20]  # the 20 smallest ids of the whole stream
