"""logger=wandb (offline, read back from its transaction log) and logger=mlflow (a local file
store, read back with MLflow's client): the numbers of accuracy.csv, the config, one run across a
resume, and what is refused."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from conftest import run_cli, stopping_at

from replaycli.errors import ConfigError
from replaycli.outputs import rundir

RUN = ["epochs=1", "benchmark.n_experiences=5", "buffer.max_size=20", "progress=none", "device=cpu"]


def wandb_records(path: Path) -> list:
    """The protobuf records of a W&B transaction log (`run-<id>.wandb`): a 7-byte header (":W&B",
    magic, version), then LevelDB log records (crc32c, length, type) in 32 KiB blocks; W&B ships no
    Python reader of it."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, records, parts = path.read_bytes(), 7, [], b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # a block's tail too short for a header: padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        parts += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL, or LAST of FIRST/MIDDLE.../LAST
            rec = pb.Record()
            rec.ParseFromString(parts)
            records.append(rec)
            parts = b""
    return records


def wandb_history(run_dir: Path) -> tuple[dict[str, list], dict[str, str], set[str]]:
    """(key -> values in order, config key -> JSON, run ids) over every W&B run file of `run_dir`."""
    history: dict[str, list] = {}
    config: dict[str, str] = {}
    ids = set()
    for f in sorted((run_dir / "wandb").rglob("run-*.wandb")):
        for rec in wandb_records(f):
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                ids.add(rec.run.run_id)
                config.update({i.key: i.value_json for i in rec.run.config.update})
            elif kind == "config":
                config.update({i.key: i.value_json for i in rec.config.update})
            elif kind == "history":
                for item in rec.history.item:
                    history.setdefault(item.key or "/".join(item.nested_key), []).append(json.loads(item.value_json))
    return history, config, ids


def test_wandb_offline_logs_the_tables_numbers_and_the_config(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    proc = run_cli("run", "logger=wandb", *RUN, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = rundir.read_run(tmp_path / "run")
    history, config, ids = wandb_history(tmp_path / "run")
    assert len(ids) == 1
    for j in range(5):
        assert history[f"accuracy/experience_{j}"] == pytest.approx([row[j] for row in run.accuracy])
    assert history["experience"] == [0, 1, 2, 3, 4]
    assert history["buffer/size"] == [sum(h) for h in run.histograms]
    assert json.loads(config["buffer"])["max_size"] == 20  # the run's config.yaml
    assert not any(p.name != "wandb" for p in (tmp_path / "run").iterdir() if p.name not in rundir.RUN_FILES)


def test_wandb_a_resumed_run_logs_into_the_same_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    with stopping_at(2):
        stopped = run_cli("run", "logger=wandb", *RUN, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert stopped.returncode == 130
    assert run_cli("resume", str(tmp_path / "run"), cwd=tmp_path).returncode == 0
    history, _, ids = wandb_history(tmp_path / "run")
    assert len(ids) == 1 and (tmp_path / "run" / "wandb" / "run_id").read_text().strip() in ids
    assert history["experience"] == [0, 1, 2, 3, 4]  # each experience once, across the two processes
    run = rundir.read_run(tmp_path / "run")
    assert history["accuracy/stream"] == pytest.approx([sum(r) / len(r) for r in run.accuracy])


def mlflow_run(run_dir: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(run_dir / "mlruns").absolute().as_uri())
    run_id = (run_dir / "mlruns" / "run_id").read_text().strip()
    return client, client.get_run(run_id)


def test_mlflow_file_store_has_the_tables_numbers_the_params_and_one_run_across_a_resume(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    with stopping_at(1):
        assert (
            run_cli("run", "logger=mlflow", *RUN, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path).returncode == 130
        )
    assert run_cli("resume", str(tmp_path / "run"), cwd=tmp_path).returncode == 0
    client, run = mlflow_run(tmp_path / "run")
    table = rundir.read_run(tmp_path / "run")
    for j in range(5):
        got = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, f"accuracy/experience_{j}"))
        assert got == [(i, pytest.approx(row[j])) for i, row in enumerate(table.accuracy)]
    sizes = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "buffer/class_0")]
    assert sorted(sizes) == [(i, h[0]) for i, h in enumerate(table.histograms)]
    assert run.data.params["buffer.max_size"] == "20" and run.data.params["epochs"] == "1"
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["config.yaml"]
    assert run.info.status == "FINISHED"
    assert len(client.search_runs([run.info.experiment_id])) == 1  # the resume went on in the same run


def test_loggers_refuse_paths_outside_the_run_and_bad_modes(tmp_path):
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    from replaycli.run.loggers import MLflowLogger, WandbLogger

    for make in (lambda: WandbLogger(tmp_path, subdir="../x"), lambda: MLflowLogger(tmp_path, subdir="/tmp/x")):
        with pytest.raises(ConfigError, match="leaves the run directory"):
            make()
    with pytest.raises(ConfigError, match=r"logger.mode='cloud' is not allowed; allowed: online, offline, disabled"):
        WandbLogger(tmp_path, mode="cloud")
    assert not any(tmp_path.iterdir())  # nothing made before the first experience
