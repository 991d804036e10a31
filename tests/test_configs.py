"""Every option of every config group composes, builds and trains one step; every key is
documented where it is declared; every option file begins with the command that uses it."""

from __future__ import annotations

import re
import sys
from importlib.resources import files
from pathlib import Path

import pytest
import torch
from conftest import CONFIGS, compose_cfg, header_command, header_overrides
from omegaconf import OmegaConf
from rawfiles import (
    write_cifar10,
    write_cifar100,
    write_core50,
    write_image_folder,
    write_mnist,
    write_npz,
    write_svhn,
    write_tinyimagenet,
)

from replaycli.methods.base import Batch
from replaycli.run.build import build, logger
from replaycli.run.loop import update_memory

GROUPS = sorted(p.name for p in CONFIGS.iterdir() if p.is_dir() and any(p.glob("*.yaml")))
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONFIGS / g).glob("*.yaml"))]
YAMLS = sorted(CONFIGS.rglob("*.yaml"))
KEY = re.compile(r"^\s*(?:-\s+)?(?:override\s+)?[\w/@.+-]+\s*:(\s|$)")  # `key:`, `- [override] key:` (defaults)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """Tiny MNIST, FashionMNIST, CIFAR-10 and CIFAR-100 in torchvision's raw layout."""
    root = tmp_path_factory.mktemp("data")
    write_mnist(root, "MNIST", n_train=100, n_test=40)
    write_mnist(root, "FashionMNIST", n_train=100, n_test=40, seed=1)
    write_cifar10(root, per_batch=20, n_test=30)
    write_cifar100(root, n_train=200, n_test=100)
    # the user-data options' header commands name these, relative to the working directory (the test's)
    write_npz(root / "data.npz")
    for split, n in (("train", 2), ("test", 1)):
        write_image_folder(root / "DIR" / split, [f"c{k}" for k in range(10)], n, seed=len(split))
    write_svhn(root)
    write_tinyimagenet(root)
    write_core50(root)
    (root / "mydata.py").write_text(
        "import torch\nfrom replaycli.generators import nc_benchmark\n\n"
        "def make(n_experiences=2):\n    x, y = torch.randn(40, 6), torch.arange(40) % 4\n"
        "    return nc_benchmark((x, y), (x, y), n_experiences, shuffle=False)\n"
    )
    return root


def test_groups_are_the_ones_the_package_ships():
    assert {"benchmark", "buffer", "experiment", "loader", "model", "optimizer", "selection"} <= set(GROUPS)
    shipped = files("replaycli.configs")
    for group, option in OPTIONS:
        assert shipped.joinpath(group, f"{option}.yaml").is_file(), (group, option)


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_key_is_documented_where_declared(path):
    undocumented = []
    lines = path.read_text().splitlines()
    for n, line in enumerate(lines):
        if line.lstrip().startswith("#") or not KEY.match(line):
            continue
        inline = " #" in line
        above = n > 0 and lines[n - 1].lstrip().startswith("#")
        if not (inline or above):
            undocumented.append(f"line {n + 1}: {line.strip()}")
    assert not undocumented, f"{path.relative_to(CONFIGS)} keys without a comment: {undocumented}"


PRESETS = ("experiment", "protocol")  # groups without a default, added with +group=option


@pytest.mark.parametrize("group,option", OPTIONS, ids=lambda v: v)
def test_option_file_begins_with_the_command_that_uses_it(group, option):
    path = CONFIGS / group / f"{option}.yaml"
    wanted = f"+{group}={option}" if group in PRESETS else f"{group}={option}"
    assert wanted in header_overrides(path), f"{group}/{option}.yaml begins with {header_command(path)!r}"


@pytest.mark.parametrize("group,option", OPTIONS, ids=lambda v: v)
def test_every_option_composes_builds_and_trains_one_step(group, option, data_root, tmp_path, monkeypatch):
    """Compose the option with the command at the top of its file, build every object through the
    runner's own function (the logger too), and take one step of the method on the loader's batch."""
    if option == "gem":
        pytest.importorskip("quadprog")  # the gem extra (in the test extra; a bare torch machine may lack it)
    monkeypatch.chdir(data_root)  # benchmark.path=data.npz, benchmark.root=DIR, mydata.make
    monkeypatch.setattr(sys, "path", [*sys.path])  # build() adds the working directory for mydata.make
    path = CONFIGS / group / f"{option}.yaml"
    local = [f"data_root={data_root}", "download=false", "device=cpu", "progress=none", "train_mb_size=8"]
    cfg = compose_cfg(header_overrides(path) + local, hydra=True)
    if group not in PRESETS:
        assert cfg.hydra.runtime.choices[group] == option
        declared = OmegaConf.load(path)
        if group in declared and "_target_" not in declared:  # `# @package _global_`: the option's keys under its group
            declared = declared[group]
        if not OmegaConf.is_missing(declared, "_target_"):  # benchmark=custom: the command names it
            assert cfg[group].get("_target_") == declared._target_
    del cfg.hydra
    run, _ = build(cfg)
    log = logger(cfg, tmp_path)
    assert callable(log.experience_done) and callable(log.close)
    bench, buffer, method = run.bench, run.buffer, run.method
    assert type(method).__name__ == cfg.strategy._target_.rsplit(".", 1)[1]

    first, second = bench.train_stream[0], bench.train_stream[min(1, bench.n_experiences - 1)]
    method.begin_experience(0, first.dataset)  # as the loop does around the first experience
    if buffer is not None:
        if method.trains_on_memory or run.update.per_batch:  # as the loop does: before training, or batch by batch
            buffer.add(
                first.dataset,
                0,
                {"logits": torch.zeros(len(first.dataset), bench.n_classes)}
                if method.stores_logits and run.update.per_batch
                else None,
            )
        else:
            update_memory(run, first)
        assert 0 < len(buffer) <= cfg.buffer.max_size
        assert int(buffer.class_histogram(bench.n_classes).sum()) == len(buffer)
    method.end_experience(0, run.memory)
    joined = buffer is not None and method.joins_memory and not run.update.per_batch
    data = method.begin_experience(1, second.dataset).train()
    x, y, t, _ = next(iter(run.make_loader(data, buffer if joined else None).batches()))
    current = min(cfg.train_mb_size, len(data))
    assert len(y) > current if joined else len(y) == current  # joined: memory follows the current samples
    assert x.shape[1:] == bench.train_pool.sample_shape and x.dtype == torch.float32

    before = [p.detach().clone() for p in run.model.parameters()]
    run.model.train()
    loss, logits = method.step(Batch(x, y, t, 1), run.memory if buffer is not None and not joined else None)
    assert logits.shape == (len(y), bench.n_classes)
    run.optimizer.zero_grad()
    loss.backward()
    run.optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, run.model.parameters(), strict=True))


@pytest.mark.parametrize("model", [o for g, o in OPTIONS if g == "model"])
@pytest.mark.parametrize("bench_option", ["split_digits", "split_mnist", "split_cifar100"])
def test_every_model_fits_every_input_shape(model, bench_option, data_root):
    """The wiring sizes each model for the classes and image shape (1x8x8, 1x28x28, 3x32x32)."""
    cfg = compose_cfg([f"model={model}", f"benchmark={bench_option}", f"data_root={data_root}", "download=false"])
    run = build(cfg)[0]
    bench, net = run.bench, run.model.eval()
    x, _y, _t = bench.test_stream[0].dataset.eval().batch(torch.arange(3))
    with torch.no_grad():
        assert net(x).shape == (3, bench.n_classes)


def test_tutorial_preset_is_the_avalanche_example(data_root):
    cfg = compose_cfg(header_overrides(CONFIGS / "experiment" / "tutorial.yaml"))
    assert cfg.benchmark._target_.endswith("SplitMNIST")
    assert cfg.buffer._target_.endswith("ParametricBuffer") and cfg.buffer.max_size == 500
    assert cfg.buffer.groupby == "class" and cfg.selection._target_.endswith("RandomExemplarsSelectionStrategy")
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 0.001
    assert (cfg.train_mb_size, cfg.eval_mb_size, cfg.epochs, cfg.mem_mb_size) == (100, 100, 1, 32)


def test_the_wheel_ships_every_subpackage():
    """pyproject's explicit package list (configs/ is mapped in) names every folder of the package."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    root = CONFIGS.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(p.parent.relative_to(root).parts) for p in (root / "replaycli").rglob("__init__.py")}
    assert folders <= listed and "replaycli.configs" in listed, folders - listed
