"""benchmark.blurry=[N, M] (i-Blurry-N-M, Koh et al. 2022): the stream's class proportions against
the definition, over seeds, with a negative control; refusals; a run and its resume."""

from __future__ import annotations

import torch
from conftest import run_cli, stopping_at
from scipy.stats import chisquare

from replaycli.benchmarks import SplitDigits


def homes(plain) -> dict[int, int]:
    """Each class's own experience in the plain stream a blurry one is made from."""
    return {c: e.current_experience for e in plain.train_stream for c in e.classes_in_this_experience}


def test_every_sample_once_disjoint_classes_stay_and_m_percent_of_the_others_move():
    n, m = 40, 10
    for seed in range(5):
        plain = SplitDigits(n_experiences=5, seed=seed)
        bench = SplitDigits(n_experiences=5, seed=seed, blurry=[n, m])
        ids = [i for e in bench.train_stream for i in e.dataset.ids.tolist()]
        assert sorted(ids) == sorted(i for e in plain.train_stream for i in e.dataset.ids.tolist())  # once each
        home = homes(plain)
        away = {c: 0 for c in home}
        total = {c: 0 for c in home}
        for k, e in enumerate(bench.train_stream):
            for c, count in enumerate(torch.bincount(e.dataset.y, minlength=10).tolist()):
                total[c] += count
                away[c] += count if home[c] != k else 0
            assert e.classes_in_this_experience == sorted(set(e.dataset.y.tolist()))
        stayed = [c for c in home if away[c] == 0]
        assert len(stayed) == round(n / 100 * 10)  # N% of the classes: none of their samples moves
        for c in home:
            if c not in stayed:  # M% of each other class, rounded per class
                assert away[c] == round(m / 100 * total[c])


def test_moved_samples_land_uniformly_on_the_other_experiences_and_a_skewed_stream_is_told_apart():
    """Where a moved sample goes, pooled over 20 seeds: a chi-square test accepts the uniform law
    over the other experiences, and rejects the counts of a stream that sends everything to the
    next experience (the negative control)."""
    offsets = torch.zeros(4)  # destination - home (mod 5), 1..4
    for seed in range(20):
        plain = SplitDigits(n_experiences=5, seed=seed)
        bench = SplitDigits(n_experiences=5, seed=seed, blurry=[0, 30])
        home = homes(plain)
        for k, e in enumerate(bench.train_stream):
            for c, count in enumerate(torch.bincount(e.dataset.y, minlength=10).tolist()):
                if count and home[c] != k:
                    offsets[(k - home[c]) % 5 - 1] += count
    assert chisquare(offsets.tolist()).pvalue > 0.001
    skewed = [offsets.sum().item(), 0.0, 0.0, 0.0]  # everything one experience later
    assert chisquare(skewed).pvalue < 1e-6


def test_bad_blurry_values_are_one_line(tmp_path):
    for arg, words in (
        ("benchmark.blurry=[40]", "benchmark.blurry=[40] is not allowed; allowed: [N, M], percentages in [0, 100]"),
        ("benchmark.blurry=[40,120]", "benchmark.blurry=[40, 120] is not allowed; allowed: [N, M]"),
    ):
        proc = run_cli("run", arg, f"hydra.run.dir={tmp_path / 'r'}")
        assert proc.returncode == 2 and proc.stderr.startswith(f"error: {words}"), proc.stderr
    tasks = run_cli(
        "run", "benchmark.blurry=[40,10]", "benchmark.return_task_id=true", f"hydra.run.dir={tmp_path / 'r'}"
    )
    assert tasks.returncode == 2 and "task labels mean nothing" in tasks.stderr
    assert not (tmp_path / "r").exists()


def test_a_blurry_run_records_its_stream_and_resumes_identically(tmp_path):
    args = ["benchmark.blurry=[40,10]", "epochs=1", "progress=none", "device=cpu", "seed=3"]
    assert run_cli("run", *args, f"hydra.run.dir={tmp_path / 'whole'}").returncode == 0
    rows = [
        list(map(int, r.split(",")))[1:]
        for r in (tmp_path / "whole" / "stream_histogram.csv").read_text().splitlines()[1:]
    ]
    plain = SplitDigits(n_experiences=5, seed=3)
    per_class = torch.bincount(torch.cat([e.dataset.y for e in plain.train_stream]), minlength=10).tolist()
    assert len(rows) == 5 and [sum(col) for col in zip(*rows, strict=True)] == per_class  # every sample once
    assert sum(1 for r in rows for c in r if c) > 2 * 5  # minor classes beside each experience's two
    with stopping_at(2):
        assert run_cli("run", *args, f"hydra.run.dir={tmp_path / 'cut'}").returncode == 130
    assert run_cli("resume", str(tmp_path / "cut")).returncode == 0
    for name in ("accuracy.csv", "buffer_histogram.csv", "stream_histogram.csv"):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "cut" / name).read_bytes(), name
