"""Streams without clean boundaries beyond i-Blurry (data/boundaries.py): Si-Blurry, class
repetition and linear-decay boundaries, their class proportions against the definitions over
seeds with a negative control each, refusals, and a run and its resume."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import run_cli, stopping_at
from scipy.stats import binomtest, chisquare

from replaycli.benchmarks import SplitDigits


def ids_of(stream) -> list[int]:
    return sorted(i for e in stream for i in e.dataset.ids.tolist())


def counts(stream) -> list[list[int]]:
    return [torch.bincount(e.dataset.y, minlength=10).tolist() for e in stream]


@pytest.mark.parametrize("shape", [{"si_blurry": [20, 10]}, {"repetition": 0.4}, {"boundary": 0.6}])
def test_every_training_sample_lands_in_exactly_one_experience(shape):
    for seed in range(3):
        plain, bench = SplitDigits(n_experiences=5, seed=seed), SplitDigits(n_experiences=5, seed=seed, **shape)
        assert ids_of(bench.train_stream) == ids_of(plain.train_stream)
        assert ids_of(bench.test_stream) == ids_of(plain.test_stream)  # the test samples too, each once
        assert len(bench.train_stream) == 5 and bench.mixed
        for e in bench.train_stream:
            assert e.classes_in_this_experience == sorted(set(e.dataset.y.tolist()))


def test_si_blurry_deals_classes_into_experiences_of_random_sizes_and_moves_m_percent_of_the_blurry():
    n, m, sizes = 20, 10, set()
    offsets = torch.zeros(4)
    for seed in range(20):
        bench = SplitDigits(n_experiences=5, seed=seed, si_blurry=[n, m])
        test_home = {c: k for k, e in enumerate(bench.test_stream) for c in e.classes_in_this_experience}
        assert len(test_home) == 10 and sum(len(e.classes_in_this_experience) for e in bench.test_stream) == 10
        rows = counts(bench.train_stream)
        total = [sum(col) for col in zip(*rows, strict=True)]
        away = [total[c] - rows[test_home[c]][c] for c in range(10)]  # the test stream is dealt as the training
        assert sum(a == 0 for a in away) == round(n / 100 * 10)  # the disjoint classes stay whole
        assert all(a == 0 or a == round(m / 100 * total[c]) for c, a in enumerate(away))
        sizes.add(tuple(len(e.classes_in_this_experience) for e in bench.test_stream))
        for k, row in enumerate(rows):
            for c, count in enumerate(row):
                if test_home[c] != k:
                    offsets[(k - test_home[c]) % 5 - 1] += count
    assert len(sizes) > 5 and all(min(s) >= 1 for s in sizes)  # random sizes: not i-Blurry's two and two
    assert chisquare(offsets.tolist()).pvalue > 0.001  # moved samples land uniformly on the others
    assert chisquare([offsets.sum().item(), 0.0, 0.0, 0.0]).pvalue < 1e-6  # negative control: all one experience on


def appearances(p, seeds=range(20)):
    """(later experiences a class came again in, later experiences it could have) over seeds."""
    again = could = 0
    for seed in seeds:
        plain = SplitDigits(n_experiences=5, seed=seed)
        home = {c: e.current_experience for e in plain.train_stream for c in e.classes_in_this_experience}
        rows = counts(SplitDigits(n_experiences=5, seed=seed, repetition=p).train_stream)
        for c in range(10):
            at = [k for k in range(5) if rows[k][c]]
            assert at[0] == home[c]  # first in its own experience
            share = [rows[k][c] for k in at]
            assert max(share) - min(share) <= 1  # split evenly
            again += len(at) - 1
            could += 4 - home[c]
    return again, could


def test_a_class_comes_again_with_probability_p_and_a_wrong_p_is_told_apart():
    again, could = appearances(0.3)
    assert binomtest(again, could, 0.3).pvalue > 0.001
    assert binomtest(again, could, 0.5).pvalue < 1e-4  # negative control: the counts reject another P
    assert appearances(0.0, range(2))[0] == 0
    again, could = appearances(1.0, range(2))
    assert again == could


def test_per_class_probabilities():
    p = [0.0] * 5 + [1.0] * 5
    bench = SplitDigits(n_experiences=5, repetition=p)
    rows = counts(bench.train_stream)
    for c in range(10):
        at = [k for k in range(5) if rows[k][c]]
        assert at == ([c // 2] if c < 5 else list(range(c // 2, 5)))


def test_linear_decay_sends_w_over_8_to_each_neighbour_and_a_sharp_stream_is_told_apart():
    w, moved, total = 0.8, 0, 0
    for seed in range(10):
        plain = SplitDigits(n_experiences=5, seed=seed)
        bench = SplitDigits(n_experiences=5, seed=seed, boundary=w)
        home = {c: e.current_experience for e in plain.train_stream for c in e.classes_in_this_experience}
        for k in (1, 2, 3):  # middle experiences: what of theirs landed in the next one
            total += len(plain.train_stream[k].dataset)
            moved += sum(int((bench.train_stream[k + 1].dataset.y == c).sum()) for c in home if home[c] == k)
        first = bench.train_stream[0].dataset.y.tolist()
        assert all(home[c] <= 1 for c in first)  # the first keeps its outer side; only its neighbour comes in
        e = bench.train_stream[2].dataset  # in order of place: the previous experience's samples come first
        pos = torch.arange(len(e), dtype=torch.float64)
        old = torch.tensor([home[c] == 1 for c in e.y.tolist()])
        assert pos[old].max() < (w / 2 + 0.1) * len(e)  # all within the first W/2 of the experience, and thinning
        window = (w / 2) * len(e)
        assert (pos[old] < window / 4).sum() > (pos[old] > 3 * window / 4).sum()
    assert binomtest(moved, total, w / 8).pvalue > 0.001
    assert binomtest(moved, total, w / 8 * 1.5).pvalue < 1e-4  # negative control: a wider mix is rejected
    assert binomtest(0, total, w / 8).pvalue < 1e-6  # and so is a stream with sharp boundaries


@pytest.mark.parametrize(
    ("arg", "words"),
    [
        ("benchmark.si_blurry=[40]", "benchmark.si_blurry=[40] is not allowed; allowed: [N, M]"),
        ("benchmark.repetition=2", "benchmark.repetition=2 is not allowed; allowed: a probability in [0, 1]"),
        ("benchmark.repetition=[0.1,0.2]", "allowed: a probability in [0, 1] or a list of one per class (10)"),
        ("benchmark.boundary=0", "benchmark.boundary=0 is not allowed; allowed: a width in (0, 1]"),
        ("benchmark.boundary=0.5 benchmark.repetition=0.1", "are two shapes of the stream; allowed: one of"),
        ("benchmark.boundary=0.5 benchmark.return_task_id=true", "benchmark.boundary mixes the experiences' samples"),
    ],
)
def test_bad_values_are_one_line(tmp_path, arg, words):
    proc = run_cli("run", *arg.split(), "epochs=1", "progress=none", f"hydra.run.dir={tmp_path / 'x'}")
    assert proc.returncode == 2 and words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_run_records_its_stream_and_resumes_to_the_same_tables(tmp_path):
    args = ["benchmark.boundary=0.6", "benchmark.experience_size=100", "epochs=1", "progress=none", "device=cpu"]
    assert run_cli("run", *args, f"hydra.run.dir={tmp_path / 'whole'}").returncode == 0
    rows = (tmp_path / "whole" / "stream_histogram.csv").read_text().splitlines()[1:]
    bench = SplitDigits(n_experiences=5, boundary=0.6)
    assert len(rows) == sum(math.ceil(len(e.dataset) / 100) for e in bench.train_stream)  # the pieces of each
    with stopping_at(3):
        assert run_cli("run", *args, f"hydra.run.dir={tmp_path / 'cut'}").returncode == 130
    assert run_cli("resume", str(tmp_path / "cut")).returncode == 0
    for name in ("accuracy.csv", "buffer_histogram.csv", "stream_histogram.csv"):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "cut" / name).read_bytes(), name
