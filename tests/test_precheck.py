"""The checks made before torch is imported (run/precheck.py) are the constructors' own: for every
shipped option of the groups below and every number or text key it has, a bad value that the
early check refuses is refused by the build with the same words, and a good value passes both."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources

import pytest
import yaml
from conftest import build_run, compose_cfg

from replaycli.errors import ConfigError
from replaycli.run import precheck

GROUPS = ("buffer", "model", "selection", "loader", "strategy")  # built offline on split_digits


def cases() -> list[tuple[str, str, str]]:
    """(option override, key, bad value) for every scalar key of every shipped option of GROUPS."""
    found = []
    for group in GROUPS:
        for f in sorted((resources.files("replaycli.configs") / group).iterdir()):
            if not f.name.endswith(".yaml"):
                continue
            text = f.read_text()
            tree = yaml.safe_load(text) or {}
            node = tree.get(group, {}) if "@package _global_" in text.split("\n", 1)[0] else tree
            for key, default in (node or {}).items():
                if key.startswith("_") or isinstance(default, (dict, list)):
                    continue
                bad = "zzz" if isinstance(default, str) else "-1"
                if isinstance(default, bool) or default is None:
                    continue
                found.append((f"{group}={f.name[:-5]}", f"{group}.{key}", bad))
    return found


CASES = cases()


def test_there_are_cases_for_every_group():
    assert {c[0].split("=")[0] for c in CASES} == set(GROUPS) - {"loader"} and len(CASES) > 40  # loader: flags only


@pytest.mark.parametrize("option, key, bad", CASES, ids=[f"{c[1]}={c[2]}@{c[0]}" for c in CASES])
def test_an_early_refusal_is_the_builds_own(option, key, bad):
    overrides = [option, f"{key}={bad}"]
    if option == "strategy=gdumb" or option.startswith("buffer=gss"):
        overrides.append("buffer.max_size=20")
    cfg = compose_cfg(overrides, hydra=True)
    try:
        precheck.check(cfg)
    except ConfigError as early:
        with pytest.raises(ConfigError) as built:
            build_run(overrides)
        assert str(built.value) == str(early)  # the same rule, said once
    good = compose_cfg([option], hydra=True)
    precheck.check(good)  # the shipped defaults pass


def test_a_value_out_of_range_is_refused_before_torch_is_imported(tmp_path):
    probe = (
        "import sys; from replaycli.cli import main; c = main(sys.argv[1:]); print('TORCH', 'torch' in sys.modules, c)"
    )
    for args, words in (
        (["buffer.max_size=-3"], "buffer.max_size=-3 must be an integer >= 0"),
        (["groupby=clas"], "buffer.groupby='clas' is not allowed; allowed: null, class, task, experience"),
        (["strategy=der", "strategy.alpha=-1"], "strategy.alpha=-1 must be a finite number >= 0"),
        (["buffer=reservoir", "buffer.max_size=-1"], "buffer.max_size=-1 must be an integer >= 0"),
        (["model.hidden_size=0"], "model.hidden_size=0 must be a positive integer"),
    ):
        proc = subprocess.run(
            [sys.executable, "-c", probe, "run", *args, f"hydra.run.dir={tmp_path / 'r'}"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert proc.stdout.strip() == "TORCH False 2" and proc.stderr.strip() == f"error: {words}"
    assert not (tmp_path / "r").exists()


def test_what_follows_a_return_or_a_rebinding_is_left_to_the_build(tmp_path, monkeypatch):
    import ast

    source = """
from replaycli.errors import integer

class A:
    def __init__(self, n, m, k):
        integer("n", n, 0)
        m = m + 10
        integer("m", m, 0)
        if k == 0:
            return
        integer("k", k, 5)

def f(x, mode):
    if mode == "a":
        return None
    integer("x", x)
"""
    tree = ast.parse(source)
    monkeypatch.setattr(precheck, "module_tree", lambda module: tree if module == "replaycli.fake" else None)
    m, fn, cls = precheck.constructor(*precheck.definition("replaycli.fake.A"))
    precheck.check_function(m, fn, cls, {"n": 1, "m": -5, "k": 0})  # m is checked after +10; k after a return
    with pytest.raises(ConfigError, match="n=-1"):
        precheck.check_function(m, fn, cls, {"n": -1, "m": 0, "k": 0})
    m, fn, cls = precheck.constructor(*precheck.definition("replaycli.fake.f"))
    precheck.check_function(m, fn, cls, {"x": 0, "mode": "a"})  # after a conditional return: not checked here


def test_most_bad_values_are_refused_early():
    """Not vacuous: the early check refuses most of the cases above (model.init and a few others
    are checked outside a constructor's own body: by the build only)."""
    early = 0
    for option, key, bad in CASES:
        try:
            precheck.check(compose_cfg([option, f"{key}={bad}"], hydra=True))
        except ConfigError:
            early += 1
    assert early >= 35
