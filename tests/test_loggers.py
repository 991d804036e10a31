"""logger=tensorboard: event files with the per-experience scalars and the buffer histogram."""

from __future__ import annotations

import sys

import pytest
from conftest import compose_cfg, run_cli

from replaycli.errors import ConfigError
from replaycli.outputs import rundir
from replaycli.run.build import logger as build_logger
from replaycli.run.loggers import NullLogger, TensorBoardLogger

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def events(log_dir) -> EventAccumulator:
    ea = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0})
    ea.Reload()
    return ea


def test_each_experience_is_one_step(tmp_path):
    logger = TensorBoardLogger(tmp_path, subdir="tb")
    assert not (tmp_path / "tb").exists()  # nothing written before the first experience
    records = [
        {
            "experience": 0,
            "accuracy": [0.75, 0.0],
            "average": 0.375,
            "loss": 1.5,
            "histogram": [3, 1, 0],
            "seconds": 2.0,
        },
        {"experience": 1, "accuracy": [0.5, 1.0], "average": 0.75, "loss": 0.5, "histogram": [1, 1, 2], "seconds": 1.0},
        {"experience": 2, "accuracy": [0.5, 1.0], "average": 0.75, "loss": 0.5, "histogram": [0, 0, 0], "seconds": 1.0},
    ]
    for r in records:
        logger.experience_done(r)
    logger.close()
    ea = events(tmp_path / "tb")
    assert [(e.step, e.value) for e in ea.Scalars("accuracy/experience_0")] == [(0, 0.75), (1, 0.5), (2, 0.5)]
    assert [e.value for e in ea.Scalars("accuracy/stream")] == [0.375, 0.75, 0.75]
    assert [e.value for e in ea.Scalars("loss/train")] == [1.5, 0.5, 0.5]
    assert [e.value for e in ea.Scalars("buffer/size")] == [4, 4, 0]
    hists = ea.Histograms("buffer/classes")  # an empty buffer has no histogram
    assert [h.step for h in hists] == [0, 1]
    h = hists[1].histogram_value
    assert list(h.bucket) == [1, 1, 2] and h.num == 4 and h.min == 0 and h.max == 2
    assert h.sum == 0 * 1 + 1 * 1 + 2 * 2 and h.sum_squares == 0 + 1 + 8


def test_a_run_with_logger_tensorboard(tmp_path):
    proc = run_cli(
        "run",
        "logger=tensorboard",
        "epochs=1",
        "benchmark.n_experiences=2",
        "buffer.max_size=20",
        "progress=none",
        "device=cpu",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    run = rundir.read_run(tmp_path / "run")
    ea = events(tmp_path / "run" / "tensorboard")
    for j in range(2):  # float32 in the event file
        assert [e.value for e in ea.Scalars(f"accuracy/experience_{j}")] == pytest.approx([r[j] for r in run.accuracy])
    assert [list(h.histogram_value.bucket) for h in ea.Histograms("buffer/classes")] == run.histograms


def test_without_the_package_a_one_line_config_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.raises(ConfigError, match=r"logger=tensorboard needs the tensorboard package: pip install"):
        TensorBoardLogger(tmp_path)


def test_logger_none_logs_nothing(tmp_path):
    cfg = compose_cfg(["logger=none"])
    logger = build_logger(cfg, tmp_path)
    logger.experience_done({"experience": 0})
    logger.close()
    assert isinstance(logger, NullLogger) and not any(tmp_path.iterdir())
