"""The run directory format (replaycli.outputs): written, read back, metrics, atomic writes."""

from __future__ import annotations

import csv
import json

import pytest

from replaycli.outputs import rundir
from replaycli.outputs.files import OutputError, write_atomic
from replaycli.outputs.formulas import bwt, forgetting
from replaycli.outputs.rundir import RunWriter, read_run

# rows: after training experience i; columns: accuracy on test experience j
ACC = [[0.90, 0.10, 0.00], [0.95, 0.80, 0.05], [0.50, 0.60, 0.70]]


def test_forgetting_and_bwt_on_a_hand_made_matrix():
    # forgetting: best earlier accuracy - final, over experiences 0 and 1:
    #   j=0: max(0.90, 0.95) - 0.50 = 0.45;  j=1: max(0.10, 0.80) - 0.60 = 0.20
    assert forgetting(ACC) == pytest.approx((0.45 + 0.20) / 2)
    # bwt: final - accuracy right after training on j:
    #   j=0: 0.50 - 0.90 = -0.40;  j=1: 0.60 - 0.80 = -0.20
    assert bwt(ACC) == pytest.approx((-0.40 - 0.20) / 2)


def test_metrics_of_short_and_partial_matrices():
    assert forgetting([[0.9, 0.0]]) == 0.0 and bwt([[0.9, 0.0]]) == 0.0  # one experience: nothing forgotten
    assert forgetting([]) == 0.0 and bwt([]) == 0.0
    two = ACC[:2]  # a run stopped after 2 of 3 experiences: only experience 0 counts
    assert forgetting(two) == pytest.approx(0.90 - 0.95)  # it improved: negative forgetting
    assert bwt(two) == pytest.approx(0.95 - 0.90)
    perfect = [[1.0, 0.0], [1.0, 1.0]]
    assert forgetting(perfect) == 0.0 and bwt(perfect) == 0.0


def _write_run(root, summary_extra=None):
    w = RunWriter(root, n_test=3, n_classes=4)
    w.write_config("seed: 0\nbuffer:\n  max_size: 6\n")
    hists = [[3, 3, 0, 0], [2, 1, 2, 1], [1, 2, 1, 2]]
    records = []
    for i, (acc, hist) in enumerate(zip(ACC, hists, strict=True)):
        record = {"experience": i, "accuracy": acc, "loss": 1.0 / (i + 1), "histogram": hist, "seconds": 0.5}
        records.append(record)
        w.add_experience(acc, hist, record)
        w.write_tables()
    w.write_summary({"status": "complete", "seconds": 1.5, "seed": 0, "device": "cpu", **(summary_extra or {})})
    return hists, records


def test_run_writer_round_trip(tmp_path):
    hists, records = _write_run(tmp_path / "run")
    run = read_run(tmp_path / "run")
    assert run.accuracy == ACC  # the float text is exact: the numbers come back bit for bit
    assert run.histograms == hists
    assert run.metrics == records
    assert run.config_text == "seed: 0\nbuffer:\n  max_size: 6\n"
    assert run.complete
    s = run.summary
    assert s["final_accuracy"] == pytest.approx(sum(ACC[-1]) / 3)
    assert s["forgetting"] == forgetting(ACC) and s["bwt"] == bwt(ACC)
    assert (s["seconds"], s["seed"], s["device"], s["experiences_done"]) == (1.5, 0, "cpu", 3)


def test_tables_have_the_documented_columns(tmp_path):
    _write_run(tmp_path)
    with open(tmp_path / rundir.ACCURACY, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["trained", "test_0", "test_1", "test_2", "average"]
    for i, row in enumerate(rows[1:]):
        assert int(row[0]) == i
        assert [float(v) for v in row[1:4]] == ACC[i]
        assert float(row[4]) == pytest.approx(sum(ACC[i]) / 3)
    with open(tmp_path / rundir.HISTOGRAM, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["trained", "class_0", "class_1", "class_2", "class_3"]
    assert [int(v) for v in rows[2][1:]] == [2, 1, 2, 1]
    lines = (tmp_path / rundir.METRICS).read_text().splitlines()
    assert [json.loads(line)["experience"] for line in lines] == [0, 1, 2]


def test_a_run_without_summary_reads_as_incomplete(tmp_path):
    w = RunWriter(tmp_path, n_test=3, n_classes=4)
    w.write_config("seed: 0\n")
    w.add_experience(ACC[0], [1, 1, 0, 0], {"experience": 0})
    w.write_tables()
    run = read_run(tmp_path)
    assert not run.complete and run.summary == {} and run.accuracy == [ACC[0]]


def test_reading_what_is_not_a_run_says_why(tmp_path):
    with pytest.raises(OutputError, match="not a run directory"):
        read_run(tmp_path)
    _write_run(tmp_path)
    (tmp_path / rundir.METRICS).write_text('{"experience": 0}\nnot json\n')
    with pytest.raises(OutputError, match="line 2"):
        read_run(tmp_path)


def test_atomic_writes_leave_no_temporary_files(tmp_path):
    _write_run(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {rundir.CONFIG, rundir.ACCURACY, rundir.HISTOGRAM, rundir.METRICS, rundir.SUMMARY} <= names
    assert not [n for n in names if n.endswith(".tmp") or n.startswith(".")]


def test_a_failed_write_keeps_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "accuracy.csv"
    write_atomic(path, "old,complete\n")

    def killed(src, dst):
        raise KeyboardInterrupt  # killed between writing the temporary file and the rename

    monkeypatch.setattr(rundir.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, "new,but,never,renamed\n")
    assert path.read_text() == "old,complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["accuracy.csv"]
