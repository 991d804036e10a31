"""The Avalanche tutorial "Dataloading, Memory Buffers, and Replay", ported by changing imports only.

Each snippet below is the tutorial's code (its Avalanche imports in the comment above it). It is
run as a script twice: on the embedded SplitDigits (imported under the name SplitMNIST) and on
SplitMNIST reading torchvision's raw files from the default data folder under a fake HOME.
"""

from __future__ import annotations

import ast
import runpy
import textwrap

import pytest
import torch
from rawfiles import write_mnist

from replaycli.loaders import GroupBalancedDataLoader
from replaycli.selection import FeatureBasedExemplarsSelectionStrategy, closest_to_center, herding

IMPORTS = {
    # SplitDigits images are 8x8, so there the MLP's input size comes with the import
    "digits": """
        from functools import partial
        from replaycli import models
        from replaycli.benchmarks import SplitDigits as SplitMNIST
        SimpleMLP = partial(models.SimpleMLP, input_size=64)
    """,
    "mnist": """
        from replaycli.benchmarks import SplitMNIST
        from replaycli.models import SimpleMLP
    """,
}
COMMON_IMPORTS = """
    from replaycli.buffers import ParametricBuffer, ReservoirSamplingBuffer
    from replaycli.loaders import GroupBalancedDataLoader, ReplayDataLoader
    from replaycli.selection import (
        ClosestToCenterSelectionStrategy, HerdingSelectionStrategy, RandomExemplarsSelectionStrategy,
    )
"""

# from avalanche.benchmarks import SplitMNIST
# from avalanche.benchmarks.utils.data_loader import GroupBalancedDataLoader
TASK_BALANCED = """
benchmark = SplitMNIST(5, return_task_id=True)

dl = GroupBalancedDataLoader([exp.dataset for exp in benchmark.train_stream], batch_size=5)
for x, y, t in dl:
    print(t.tolist())
    break
"""

# from avalanche.training.storage_policy import ReservoirSamplingBuffer
RESERVOIR = """
from types import SimpleNamespace

benchmark = SplitMNIST(5, return_task_id=False)
storage_p = ReservoirSamplingBuffer(max_size=30)

print(f"Max buffer size: {storage_p.max_size}, current size: {len(storage_p.buffer)}")

for i in range(5):
    strategy_state = SimpleNamespace(experience=benchmark.train_stream[i])
    storage_p.update(strategy_state)
    print(f"Max buffer size: {storage_p.max_size}, current size: {len(storage_p.buffer)}")
    print(f"class targets: {storage_p.buffer.targets}\\n")
"""

# from avalanche.training.storage_policy import ParametricBuffer, RandomExemplarsSelectionStrategy
PARAMETRIC = """
from types import SimpleNamespace

benchmark = SplitMNIST(5, return_task_id=False)
storage_p = ParametricBuffer(
    max_size=30,
    groupby='class',
    selection_strategy=RandomExemplarsSelectionStrategy()
)

print(f"Max buffer size: {storage_p.max_size}, current size: {len(storage_p.buffer)}")
for i in range(5):
    strategy_state = SimpleNamespace(experience=benchmark.train_stream[i])
    storage_p.update(strategy_state)
    print(f"Max buffer size: {storage_p.max_size}, current size: {len(storage_p.buffer)}")
    print(f"class targets: {', '.join(str(e) for e in storage_p.buffer.targets)}\\n")

for k, v in storage_p.buffer_groups.items():
    print(f"(group {k}) -> size {len(v.buffer)}")

datas = [v.buffer for v in storage_p.buffer_groups.values()]
dl = GroupBalancedDataLoader(datas)

for x, y, t in dl:
    print(y.tolist())
    break
"""

# from avalanche.benchmarks.utils.data_loader import ReplayDataLoader
# (the tutorial's replay plugin builds this loader with oversample_small_tasks=True)
REPLAY = """
data = benchmark.train_stream[2].dataset
dl = ReplayDataLoader(data, storage_p.buffer, oversample_small_tasks=True, batch_size=100,
                      batch_size_mem=32, shuffle=True)
for x, y, t in dl:
    print(x.shape[0], y.shape[0], t.shape[0])
"""

# from avalanche.models import SimpleMLP
# from avalanche.training.storage_policy import HerdingSelectionStrategy, ClosestToCenterSelectionStrategy
FEATURE_BASED = """
from types import SimpleNamespace

benchmark = SplitMNIST(5, return_task_id=False)
model = SimpleMLP(num_classes=10)
policies = {
    'herding': ParametricBuffer(max_size=30, groupby='class',
                                selection_strategy=HerdingSelectionStrategy(model, 'features')),
    'closest': ParametricBuffer(max_size=30, groupby='class',
                                selection_strategy=ClosestToCenterSelectionStrategy(model, 'features')),
}
for name, storage_p in policies.items():
    for i in range(5):
        strategy_state = SimpleNamespace(experience=benchmark.train_stream[i], device='cpu')
        storage_p.update(strategy_state)
    print(f"{name}: current size: {len(storage_p.buffer)}")
"""


TRAIN_SIZE = {"digits": 1437, "mnist": 600}  # MNIST: 60 per class, 120 per experience


@pytest.fixture(params=["digits", "mnist"])
def run(request, tmp_path, monkeypatch):
    """Run snippets as one script with the replaycli imports of the benchmark under test."""
    if request.param == "mnist":
        home = tmp_path / "home"
        write_mnist(home / ".cache" / "replaycli" / "data", n_train=TRAIN_SIZE["mnist"], n_test=60)
        monkeypatch.setenv("HOME", str(home))  # the default root is ~/.cache/replaycli/data

    def run_snippets(*snippets: str) -> dict:
        torch.manual_seed(0)  # the tutorial relies on torch's global RNG
        src = textwrap.dedent(IMPORTS[request.param]) + textwrap.dedent(COMMON_IMPORTS) + "\n".join(snippets)
        path = tmp_path / "snippet.py"
        path.write_text(src)
        return runpy.run_path(str(path), run_name="__main__")

    run_snippets.source = request.param
    return run_snippets


def _printed(out: str, prefix: str) -> list[str]:
    return [line[len(prefix) :] for line in out.splitlines() if line.startswith(prefix)]


def test_group_balanced_over_task_streams(run, capsys):
    ns = run(TASK_BALANCED)
    assert capsys.readouterr().out.splitlines() == ["[0, 1, 2, 3, 4]"]
    assert [exp.task_label for exp in ns["benchmark"].train_stream] == [0, 1, 2, 3, 4]
    assert len(ns["benchmark"].train_pool) == TRAIN_SIZE[run.source]  # the files under the fake HOME


def test_reservoir_buffer_snippet(run, capsys):
    ns = run(RESERVOIR)
    out = capsys.readouterr().out
    sizes = _printed(out, "Max buffer size: ")
    assert sizes == ["30, current size: 0"] + ["30, current size: 30"] * 5
    printed = [ast.literal_eval(s) for s in _printed(out, "class targets: ")]
    stream = ns["benchmark"].train_stream
    seen: set[int] = set()
    for i, targets in enumerate(printed):
        newest = set(stream[i].classes_in_this_experience)
        seen |= newest
        assert len(targets) == 30 and set(targets) <= seen
        # a uniform sample of all seen so far: holds both new and (after the first) old classes;
        # each fails by chance with probability below 0.8 ** 30 ~ 1e-3
        assert set(targets) & newest
        assert i == 0 or set(targets) - newest
    assert printed[-1] == list(ns["storage_p"].buffer.targets)


def test_parametric_buffer_and_group_balanced_loader(run, capsys):
    ns = run(PARAMETRIC)
    out = capsys.readouterr().out
    storage_p = ns["storage_p"]
    sizes = _printed(out, "Max buffer size: ")
    assert sizes == ["30, current size: 0"] + ["30, current size: 30"] * 5
    last = [int(v) for v in _printed(out, "class targets: ")[-1].split(", ")]
    assert sorted(last) == sorted(i for i in range(10) for _ in range(3))
    assert sorted(storage_p.buffer_groups) == list(range(10))
    assert _printed(out, "(group ") == [f"{k}) -> size 3" for k in range(10)]
    first_batch = ast.literal_eval(out.strip().splitlines()[-1])  # tutorial: default batch_size=32
    assert sorted(first_batch) == sorted(i for i in range(10) for _ in range(3))

    batches = list(GroupBalancedDataLoader(storage_p.buffer_datasets, batch_size=30))
    assert len(batches) == 1
    x, y, _t = batches[0]
    assert x.shape[0] == 30 and torch.equal(torch.bincount(y, minlength=10), torch.full((10,), 3))


def test_replay_dataloader_batches(run, capsys):
    ns = run(PARAMETRIC, REPLAY)
    out = capsys.readouterr().out
    n = len(ns["data"])
    lines = [tuple(int(v) for v in line.split()) for line in out.splitlines() if line[:1].isdigit()]
    full, rest = divmod(n, 100)
    assert full >= 1
    assert lines == [(132, 132, 132)] * full + ([(rest + 32,) * 3] if rest else [])


def test_feature_based_selection_within_parametric_buffer(run, capsys):
    ns = run(FEATURE_BASED)
    out = capsys.readouterr().out
    assert out.splitlines() == ["herding: current size: 30", "closest: current size: 30"]
    model, stream = ns["model"], ns["benchmark"].train_stream
    extractor = FeatureBasedExemplarsSelectionStrategy(model, "features")
    # herding's first 3 do not depend on the limit (test_selection checks it)
    for name, rank in (("herding", lambda f: herding(f, limit=3)), ("closest", closest_to_center)):
        groups = ns["policies"][name].buffer_groups
        assert sorted(groups) == list(range(10))
        for c in range(10):
            data = stream[c // 2].dataset
            members = data.subset((data.y == c).nonzero().flatten())
            best = members.ids[rank(extractor.features(members))[:3]]
            assert groups[c].buffer.ids.tolist() == best.tolist()  # the 3 best-ranked of the class


def test_targets_print_and_join(run, capsys):
    ns = run(TASK_BALANCED)
    capsys.readouterr()
    ds = ns["benchmark"].train_stream[0].dataset
    print(ds.targets)
    print(", ".join(str(e) for e in ds.targets))
    out = capsys.readouterr().out.splitlines()
    assert ast.literal_eval(out[0]) == ds.y.tolist()
    assert out[1] == ", ".join(map(str, ds.y.tolist())) and set(ds.targets) == {0, 1}
